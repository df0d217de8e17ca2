//! `RoomService`: the one door to rooms. Web handlers, the CLI's API calls and chat commands
//! all come through here; it runs the store's rules and publishes an event for each change.

use crate::identity::{Identity, IdentityKey, PERSONAL_LINK_TTL_MS};
use crate::config::Config;
use crate::room::RoomKind;
use crate::events::{EventBus, RoomEventKind};
use crate::room::{Admission, CreatedRoom, JoinRequest, NewRoom, Refusal, RoomView, clean_name, clean_title};
use crate::store::{AdmissionWriter, HostCheck, KnockAnswer, KnockOutcome, RemoveOutcome, StateChange, Store, StoreError};
use std::sync::Arc;

/// Errors a caller can act on, each with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error("room not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Options for minting a room; unset ones come from `[rooms]`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub title: Option<String>,
    pub kind: Option<RoomKind>,
    pub host_name: Option<String>,
    pub host_ref: Option<String>,
    pub chat_ref: Option<String>,
    pub max_participants: Option<u32>,
}

/// The room service. Cheap to clone.
#[derive(Clone)]
pub struct RoomService {
    pub store: Store,
    pub events: EventBus,
    admissions: AdmissionWriter,
    config: Arc<Config>,
    base_url: Arc<str>,
    identity: IdentityKey,
}

impl RoomService {
    pub fn new(store: Store, events: EventBus, admissions: AdmissionWriter, config: Arc<Config>, identity: IdentityKey) -> Self {
        let base_url = config.public_url().into();
        RoomService { store, events, admissions, config, base_url, identity }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The base URL links are minted with.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A room's join link.
    pub fn room_url(&self, room_id: &str) -> String {
        format!("{}/r/{room_id}", self.base_url)
    }

    /// A room's host link: the host token rides in the fragment, which browsers never send
    /// to a server, so it stays out of access logs and `Referer` headers.
    pub fn host_url(&self, room_id: &str, host_token: &str) -> String {
        format!("{}/r/{room_id}#host={host_token}", self.base_url)
    }

    /// A link that joins `name` (vouched for by a chat, as `user_ref`) into a room, whatever
    /// name the joiner types; it works for [`PERSONAL_LINK_TTL_MS`]. The token rides in the
    /// fragment, like the host token.
    pub fn personal_url(&self, room_id: &str, user_ref: &str, name: &str) -> String {
        let expires = self.store.clock().now_ms() + PERSONAL_LINK_TTL_MS;
        format!("{}/r/{room_id}#as={}", self.base_url, self.identity.sign(room_id, user_ref, name, expires))
    }

    /// Who a personal link's token says the joiner is.
    pub fn identity(&self, room_id: &str, token: &str) -> Result<Identity, ServiceError> {
        self.identity.verify(room_id, token, self.store.clock().now_ms()).map_err(ServiceError::Invalid)
    }

    /// Mints a room.
    pub async fn create(&self, opts: CreateOptions) -> Result<CreatedRoom, ServiceError> {
        let title = clean_title(opts.title.as_deref()).map_err(ServiceError::Invalid)?;
        let host_name = match opts.host_name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => Some(clean_name(n).map_err(ServiceError::Invalid)?),
            None => None,
        };
        let max = opts.max_participants.unwrap_or(self.config.rooms.max_participants);
        if !(1..=crate::config::MAX_PARTICIPANTS_LIMIT).contains(&max) {
            return Err(ServiceError::Invalid("max_participants must be between 1 and 1000"));
        }
        let new = NewRoom {
            title,
            kind: opts.kind.unwrap_or(self.config.rooms.default_kind),
            host_name,
            host_ref: opts.host_ref,
            chat_ref: opts.chat_ref,
            max_participants: max,
            knock: self.config.rooms.knock,
        };
        let created = self.store.create_room(&new).await?;
        tracing::info!(room_id = %created.id, kind = new.kind.as_str(), "room created");
        self.events.publish(&created.id, RoomEventKind::Created);
        Ok(created)
    }

    /// Asks to enter. The name is checked here; the rules run in the store.
    pub async fn join(&self, mut req: JoinRequest) -> Result<Admission, ServiceError> {
        req.name = clean_name(&req.name).map_err(ServiceError::Invalid)?;
        if !crate::ids::is_room_id(&req.room_id) {
            return Ok(Admission::Refused(Refusal::NotFound));
        }
        let room_id = req.room_id.clone();
        let admission = self.admissions.join(req).await?;
        match &admission {
            Admission::Admitted(a) => self.events.publish(
                &room_id,
                RoomEventKind::Joined { participant_id: a.participant_id.clone(), name: a.name.clone(), rejoin: a.rejoin },
            ),
            Admission::Refused(Refusal::Expired) => self.events.publish(&room_id, RoomEventKind::Ended { expired: true }),
            Admission::Refused(_) => {}
        }
        Ok(admission)
    }

    /// Locks (`true`) or unlocks a room.
    pub async fn set_locked(&self, room_id: &str, locked: bool) -> Result<StateChange, ServiceError> {
        if !crate::ids::is_room_id(room_id) {
            return Ok(StateChange::NotFound);
        }
        let change = self.store.set_locked(room_id, locked).await?;
        if change == StateChange::Changed {
            tracing::info!(room_id, locked, "room lock changed");
            self.events.publish(room_id, if locked { RoomEventKind::Locked } else { RoomEventKind::Unlocked });
        }
        Ok(change)
    }

    /// Ends a room for everyone.
    pub async fn end(&self, room_id: &str) -> Result<StateChange, ServiceError> {
        if !crate::ids::is_room_id(room_id) {
            return Ok(StateChange::NotFound);
        }
        let change = self.store.end_room(room_id).await?;
        if change == StateChange::Changed {
            tracing::info!(room_id, "room ended");
            self.events.publish(room_id, RoomEventKind::Ended { expired: false });
        }
        Ok(change)
    }

    /// Removes and bans a participant.
    pub async fn remove(&self, room_id: &str, participant_id: &str) -> Result<RemoveOutcome, ServiceError> {
        if !crate::ids::is_room_id(room_id) || !crate::ids::is_participant_id(participant_id) {
            return Ok(RemoveOutcome::NotFound);
        }
        let outcome = self.store.remove_participant(room_id, participant_id).await?;
        if let RemoveOutcome::Removed(name) = &outcome {
            tracing::info!(room_id, participant_id, "participant removed");
            self.events.publish(
                room_id,
                RoomEventKind::Removed { participant_id: participant_id.to_owned(), name: name.clone() },
            );
        }
        Ok(outcome)
    }

    /// Asks to enter a locked room.
    pub async fn knock(&self, room_id: &str, name: &str) -> Result<KnockOutcome, ServiceError> {
        let name = clean_name(name).map_err(ServiceError::Invalid)?;
        if !crate::ids::is_room_id(room_id) {
            return Ok(KnockOutcome::Refused(Refusal::NotFound));
        }
        let outcome = self.store.knock(room_id, &name).await?;
        if let KnockOutcome::Waiting { knock_id, .. } = &outcome {
            self.events.publish(room_id, RoomEventKind::Knocked { knock_id: knock_id.clone(), name });
        }
        Ok(outcome)
    }

    /// Admits or denies a knock.
    pub async fn answer_knock(&self, room_id: &str, knock_id: &str, admit: bool) -> Result<KnockAnswer, ServiceError> {
        if !crate::ids::is_room_id(room_id) || !crate::ids::is_participant_id(knock_id) {
            return Ok(KnockAnswer::NotFound);
        }
        let answer = self.store.answer_knock(room_id, knock_id, admit).await?;
        if let KnockAnswer::Answered(name) = &answer {
            self.events.publish(
                room_id,
                RoomEventKind::KnockAnswered { knock_id: knock_id.to_owned(), name: name.clone(), admitted: admit },
            );
        }
        Ok(answer)
    }

    /// The state of a room.
    pub async fn view(&self, room_id: &str, with_knocks: bool) -> Result<RoomView, ServiceError> {
        if !crate::ids::is_room_id(room_id) {
            return Err(ServiceError::NotFound);
        }
        self.store.room_view(room_id, &self.base_url, with_knocks).await?.ok_or(ServiceError::NotFound)
    }

    /// Whether `token` is the room's host token.
    pub async fn is_host(&self, room_id: &str, token: &str) -> Result<HostCheck, ServiceError> {
        if !crate::ids::is_room_id(room_id) {
            return Ok(HostCheck::NoRoom);
        }
        Ok(self.store.check_host_token(room_id, token).await?)
    }
}
