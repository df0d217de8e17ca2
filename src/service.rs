//! `RoomService`: the one door to rooms. Web handlers, room sockets, the CLI's API calls, chat
//! commands, the card updater and the housekeeping sweeps all come through here; it runs the
//! store's rules and publishes an event for each change. The store and the event bus are its
//! own: nothing else reads or writes them.
//!
//! Host powers are decided in one place, [`RoomService::authorize`], for the web, the socket
//! and the chat alike.

mod rings;
mod schedule;

pub use rings::CALL_LOG_ENDED;
use crate::clock::Clock;
use crate::config::{Config, MAX_PARTICIPANTS_LIMIT, Secret};
use crate::events::{EventBus, RoomEventKind, Subscription};
use crate::identity::{Identity, IdentityKey, PERSONAL_LINK_TTL_MS};
use crate::ids::{KnockId, ParticipantId, RoomId, secret_eq};
use crate::room::{Admission, CreatedRoom, JoinRequest, Media, NewRoom, Refusal, RoomKind, RoomView, clean_name, clean_title};
use crate::store::{
    AdmissionWriter, Backend, Home, HostCheck, Timing, KnockAnswer, KnockOutcome, PostedCard, PresenceChange, RemoveOutcome, StateChange,
    Store, StoreError,
};
use callbridge_chat::{ChatRef, MessageRef, knock_code};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often SQLite's WAL is copied into the database file, beside the admission writer.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// How long inbound updates are remembered as taken (no platform redelivers one later).
const CLAIMS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Errors a caller can act on, each with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A display name that breaks the naming rules (`invalid_name`).
    #[error("{0}")]
    InvalidName(&'static str),
    /// Any other value that breaks a rule (`invalid_request`).
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
    /// The platform of `chat_ref`.
    pub platform: Option<String>,
    pub chat_name: Option<String>,
    /// A scheduled call's start (milliseconds since the epoch).
    pub starts_at: Option<i64>,
    pub media: Option<Media>,
    pub max_participants: Option<u32>,
    /// Whether the room takes requests to join while locked; unset: `[rooms] knock`.
    pub knock: Option<bool>,
}

/// Whether a room view carries the pending requests to join (hosts see them, guests do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knocks {
    Shown,
    Hidden,
}

/// A lock's new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    Locked,
    Unlocked,
}

/// A host's answer to a request to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnockDecision {
    Admit,
    Deny,
}

/// Which pending request to join a chat command names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnockMatch {
    One(KnockId),
    /// Several wait under that name: their codes, to name one by.
    Several(Vec<String>),
    Nobody,
}

/// What a posted card shows, by the digest of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardState<'a> {
    /// A state that will change again: the card is kept current.
    Shows(&'a str),
    /// The room's final state: the card needs no more edits.
    Final(&'a str),
    /// The card can be edited no more (its message is gone, or the bot was removed).
    Abandoned,
}

/// What someone presents to claim host powers over a room.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// A token from the web or a room socket: the API token, or the room's host token.
    Token(&'a str),
    /// A chat user, as their platform reports them.
    ChatUser { user_ref: &'a str, chat_admin: bool },
}

/// The powers a credential gives over a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// None: a guest at most.
    Guest,
    /// The room's host: its host token, its host in the chat, or an admin of that chat.
    Host,
    /// The API token: host powers over every room.
    Api,
}

impl Power {
    /// Whether this is host power over the room (the API token's included).
    pub fn is_host(self) -> bool {
        self != Power::Guest
    }
}

/// The room service. Cheap to clone.
#[derive(Clone)]
pub struct RoomService {
    store: Store,
    events: EventBus,
    admissions: AdmissionWriter,
    config: Arc<Config>,
    base_url: Arc<str>,
    identity: IdentityKey,
    api_token: Secret,
    /// This node's id in the `nodes` table.
    node: Arc<str>,
    /// With PostgreSQL: what proves a request comes from another node of the deployment.
    node_key: Option<Secret>,
    /// The tasks that carry events between nodes (PostgreSQL), stopped last.
    link: Link,
}

/// The event link to the other nodes: stopped by [`RoomService::close`], after the node's
/// last events (its people leaving) went out.
#[derive(Clone, Default)]
struct Link {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl RoomService {
    /// Opens the database (migrating it), starts the admission writers and SQLite's
    /// checkpoints on `tracker`; they stop when `cancel` fires.
    ///
    /// With PostgreSQL, the node joins its deployment: it shares the node key and starts the
    /// event link to the other nodes (its first [`heartbeat`](Self::heartbeat) sets its clock).
    pub async fn start(
        config: Arc<Config>,
        api_token: Secret,
        clock: Clock,
        node: Arc<str>,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<RoomService, ServiceError> {
        let store = Store::connect(&config.storage_url(), config.storage.max_connections, clock).await?;
        let shared = store.backend() == Backend::Postgres;
        let node_key = match shared {
            true => Some(Secret::new(store.secret("node_key", crate::ids::new_token).await?)),
            false => None,
        };
        let events = EventBus::default();
        let link = Link::default();
        if shared {
            start_link(&config.storage_url(), &events, &node, &link).await?;
        }
        let timing = Timing {
            expire_ms: config.rooms.expire_after.as_millis() as i64,
            grace_ms: config.rooms.presence_grace.as_millis() as i64,
        };
        let admissions = AdmissionWriter::start(store.clone(), timing, tracker, cancel.clone())?;
        let identity_key = store.secret("identity_key", IdentityKey::generate_hex).await?;
        let identity = IdentityKey::from_hex(&identity_key).ok_or(ServiceError::Invalid("the stored identity key is not 32 bytes of hex"))?;
        if store.backend() == Backend::Sqlite {
            tracker.spawn(checkpoints(store.clone(), cancel));
        }
        let base_url = config.public_url().into();
        Ok(RoomService { store, events, admissions, config, base_url, identity, api_token, node, node_key, link })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every room change from now on, in order.
    pub fn subscribe(&self) -> Subscription {
        self.events.subscribe()
    }

    /// The base URL links are minted with.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A room's join link.
    pub fn room_url(&self, room: &RoomId) -> String {
        format!("{}/r/{room}", self.base_url)
    }

    /// A room's host link: the host token rides in the fragment, which browsers never send
    /// to a server, so it stays out of access logs and `Referer` headers.
    pub fn host_url(&self, room: &RoomId, host_token: &str) -> String {
        format!("{}/r/{room}#host={host_token}", self.base_url)
    }

    /// A link that joins `name` (vouched for by a chat, as `user_ref`) into a room, whatever
    /// name the joiner types; it works for [`PERSONAL_LINK_TTL_MS`]. The token rides in the
    /// fragment, like the host token.
    pub fn personal_url(&self, room: &RoomId, user_ref: &str, name: &str) -> String {
        let expires = self.store.clock().now_ms() + PERSONAL_LINK_TTL_MS;
        format!("{}/r/{room}#as={}", self.base_url, self.identity.sign(room, user_ref, name, expires))
    }

    /// Who a personal link's token says the joiner is.
    pub fn identity(&self, room: &RoomId, token: &str) -> Result<Identity, ServiceError> {
        self.identity.verify(room, token, self.store.clock().now_ms()).map_err(ServiceError::Invalid)
    }

    /// The powers `credential` gives over `room` (the one place host powers are decided).
    /// A wrong token and an unknown room both give none, so tokens cannot probe for rooms.
    pub async fn authorize(&self, room: &RoomId, credential: Credential<'_>) -> Result<Power, ServiceError> {
        match credential {
            Credential::Token(token) if self.is_api_token(token) => Ok(Power::Api),
            Credential::Token(token) => Ok(match self.store.check_host_token(room, token).await? {
                HostCheck::Host => Power::Host,
                HostCheck::NotHost | HostCheck::NoRoom => Power::Guest,
            }),
            Credential::ChatUser { chat_admin: true, .. } => Ok(Power::Host),
            Credential::ChatUser { user_ref, chat_admin: false } => {
                let host = self.store.room_host_ref(room).await?;
                Ok(if host.as_deref() == Some(user_ref) { Power::Host } else { Power::Guest })
            }
        }
    }

    /// The time by the daemon's clock, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.store.clock().now_ms()
    }

    /// Whether `token` is the API token (compared in constant time).
    pub fn is_api_token(&self, token: &str) -> bool {
        secret_eq(token, self.api_token.expose())
    }

    /// Mints a room.
    pub async fn create(&self, opts: CreateOptions) -> Result<CreatedRoom, ServiceError> {
        let title = clean_title(opts.title.as_deref()).map_err(ServiceError::Invalid)?;
        let host_name = match opts.host_name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => Some(clean_name(n).map_err(ServiceError::InvalidName)?),
            None => None,
        };
        let media = opts.media.unwrap_or(self.config.rooms.media);
        // A room of the configured media takes the configured size; another media its own default.
        let max = match opts.max_participants {
            Some(max) => max,
            None if media == self.config.rooms.media => self.config.rooms.max_participants(),
            None => media.default_max_participants(),
        };
        if !(1..=MAX_PARTICIPANTS_LIMIT).contains(&max) {
            return Err(ServiceError::Invalid("max_participants must be between 1 and 1000"));
        }
        if max > media.most_participants() {
            return Err(ServiceError::Invalid("a mesh room holds at most 8 people: ask for \"media\": \"sfu\" for more"));
        }
        let new = NewRoom {
            title,
            kind: opts.kind.unwrap_or(self.config.rooms.default_kind),
            host_name,
            host_ref: opts.host_ref,
            chat_ref: opts.chat_ref,
            platform: opts.platform,
            // A chat's name is shown in private messages: cut to a title's length, no controls.
            chat_name: opts.chat_name.map(|n| n.chars().filter(|c| !c.is_control()).take(crate::room::MAX_TITLE_CHARS).collect::<String>()).filter(|n| !n.trim().is_empty()),
            starts_at: opts.starts_at,
            media,
            max_participants: max,
            knock: opts.knock.unwrap_or(self.config.rooms.knock),
        };
        let created = self.store.create_room(&new).await?;
        tracing::info!(room_id = %created.id, kind = new.kind.as_str(), media = media.as_str(), "room created");
        self.events.publish(&created.id, RoomEventKind::Created);
        Ok(created)
    }

    /// Asks to enter. The name is checked here; the rules run in the store.
    pub async fn join(&self, mut req: JoinRequest) -> Result<Admission, ServiceError> {
        let started = std::time::Instant::now();
        req.name = match clean_name(&req.name) {
            Ok(name) => name,
            Err(why) => {
                metrics::counter!("callbridge_joins_total", "outcome" => "invalid").increment(1);
                return Err(ServiceError::InvalidName(why));
            }
        };
        let room = req.room_id.clone();
        let admission = self.admissions.join(req).await?;
        let outcome = match &admission {
            Admission::Admitted(a) if a.rejoin => "rejoined",
            Admission::Admitted(_) => "admitted",
            Admission::Refused(refusal) => refusal.code(),
        };
        metrics::counter!("callbridge_joins_total", "outcome" => outcome).increment(1);
        metrics::histogram!("callbridge_admission_seconds").record(started.elapsed().as_secs_f64());
        match &admission {
            Admission::Admitted(a) => self.events.publish(
                &room,
                RoomEventKind::Joined { participant_id: a.participant_id.clone(), name: a.name.clone(), rejoin: a.rejoin },
            ),
            Admission::Refused(Refusal::Expired) => self.events.publish(&room, RoomEventKind::Ended { expired: true }),
            Admission::Refused(_) => {}
        }
        Ok(admission)
    }

    /// Locks or unlocks a room.
    pub async fn set_lock(&self, room: &RoomId, lock: Lock) -> Result<StateChange, ServiceError> {
        let change = self.store.set_locked(room, lock == Lock::Locked).await?;
        if change == StateChange::Changed {
            tracing::info!(room_id = %room, ?lock, "room lock changed");
            self.events.publish(room, if lock == Lock::Locked { RoomEventKind::Locked } else { RoomEventKind::Unlocked });
        }
        Ok(change)
    }

    /// Ends a room for everyone.
    pub async fn end(&self, room: &RoomId) -> Result<StateChange, ServiceError> {
        let change = self.store.end_room(room).await?;
        if change == StateChange::Changed {
            tracing::info!(room_id = %room, "room ended");
            self.events.publish(room, RoomEventKind::Ended { expired: false });
        }
        Ok(change)
    }

    /// Removes and bans a participant.
    pub async fn remove(&self, room: &RoomId, participant: &ParticipantId) -> Result<RemoveOutcome, ServiceError> {
        let outcome = self.store.remove_participant(room, participant).await?;
        if let RemoveOutcome::Removed(name) = &outcome {
            tracing::info!(room_id = %room, participant_id = %participant, "participant removed");
            self.events.publish(room, RoomEventKind::Removed { participant_id: participant.clone(), name: name.clone() });
        }
        Ok(outcome)
    }

    /// Mutes (`true`) or lets speak again (`false`) the audio or video of one participant
    /// (`who`) or of everyone present but `except`, for everyone else: the SFU stops their
    /// media, and their page turns the device off and tells them. Returns whom it applied to
    /// (empty: nobody present by that id); `Ok(None)` when the room has ended.
    pub async fn mute(
        &self,
        room: &RoomId,
        who: Option<&ParticipantId>,
        except: Option<&str>,
        audio: Option<bool>,
        video: Option<bool>,
    ) -> Result<Option<Vec<ParticipantId>>, ServiceError> {
        let view = self.view(room, Knocks::Hidden).await?;
        if view.ended {
            return Ok(None);
        }
        let targets: Vec<ParticipantId> = view
            .present()
            .filter(|p| who.is_none_or(|w| w.as_str() == p.id) && except != Some(p.id.as_str()))
            .map(|p| ParticipantId::trusted(p.id.clone()))
            .collect();
        for participant_id in &targets {
            tracing::info!(room_id = %room, %participant_id, ?audio, ?video, "participant muted by a host");
            self.events.publish(room, RoomEventKind::Muted { participant_id: participant_id.clone(), audio, video });
        }
        Ok(Some(targets))
    }

    /// Asks to enter a locked room.
    pub async fn knock(&self, room: &RoomId, name: &str) -> Result<KnockOutcome, ServiceError> {
        let name = clean_name(name).map_err(ServiceError::InvalidName)?;
        let outcome = self.store.knock(room, &name).await?;
        if let KnockOutcome::Waiting { knock_id, .. } = &outcome {
            self.events.publish(room, RoomEventKind::Knocked { knock_id: knock_id.clone(), name });
        }
        Ok(outcome)
    }

    /// Where a request to join stands (`pending`, `admitted`, `denied`); `None` unless `token`
    /// is that request's own.
    pub async fn knock_status(&self, room: &RoomId, knock: &KnockId, token: &str) -> Result<Option<String>, ServiceError> {
        Ok(self.store.knock_status(room, knock, token).await?)
    }

    /// The pending request to join that `word` names in a chat command: its short code (as the
    /// card shows it, `#` optional), or a name only one waiting person has. Anyone with the
    /// link can knock under any name, so a name shared by two is never guessed between.
    pub async fn find_pending_knock(&self, room: &RoomId, word: &str) -> Result<KnockMatch, ServiceError> {
        let pending = self.store.pending_knocks(room).await?;
        let (word, name) = (word.trim(), word.trim().to_lowercase());
        let code = word.trim_start_matches('#');
        let by_code: Vec<_> = pending.iter().filter(|(id, _)| knock_code(id) == code).collect();
        let by_name: Vec<_> = pending.iter().filter(|(_, n)| n.to_lowercase() == name).collect();
        Ok(match (by_code.as_slice(), by_name.as_slice()) {
            ([(id, _)], _) | ([], [(id, _)]) => KnockMatch::One(KnockId::trusted(id.clone())),
            ([], []) => KnockMatch::Nobody,
            (_, named) => KnockMatch::Several(named.iter().chain(&by_code).map(|(id, _)| knock_code(id).to_owned()).collect()),
        })
    }

    /// Admits or denies a knock.
    pub async fn answer_knock(&self, room: &RoomId, knock: &KnockId, decision: KnockDecision) -> Result<KnockAnswer, ServiceError> {
        let admitted = decision == KnockDecision::Admit;
        let answer = self.store.answer_knock(room, knock, admitted).await?;
        if let KnockAnswer::Answered(name) = &answer {
            self.events.publish(room, RoomEventKind::KnockAnswered { knock_id: knock.clone(), name: name.clone(), admitted });
        }
        Ok(answer)
    }

    /// The state of a room.
    pub async fn view(&self, room: &RoomId, knocks: Knocks) -> Result<RoomView, ServiceError> {
        self.store.room_view(room, &self.base_url, knocks == Knocks::Shown).await?.ok_or(ServiceError::NotFound)
    }

    /// Whether `token` belongs to an admitted participant of the room.
    pub async fn is_participant(&self, room: &RoomId, token: &str) -> Result<bool, ServiceError> {
        Ok(self.store.is_participant(room, token).await?)
    }

    /// A room page opened on this node: `None` unless `token` is an admitted participant of an
    /// open room. Publishes the arrival when the participant was away.
    pub async fn page_opened(&self, room: &RoomId, token: &str) -> Result<Option<PresenceChange>, ServiceError> {
        let Some((who, arrived)) = self.store.connect_participant(room, token, &self.node).await? else { return Ok(None) };
        if arrived {
            let participant_id = ParticipantId::trusted(who.participant_id.clone());
            self.events.publish(room, RoomEventKind::Arrived { participant_id, name: who.name.clone() });
        }
        Ok(Some(who))
    }

    /// A participant's page on this node closed and did not come back within the grace period.
    pub async fn page_left(&self, room: &RoomId, participant: &ParticipantId) -> Result<(), ServiceError> {
        if let Some(left) = self.store.leave_participant(room, participant, &self.node).await? {
            self.publish_left(left);
        }
        Ok(())
    }

    fn publish_left(&self, left: PresenceChange) {
        let room = RoomId::trusted(left.room_id);
        let participant_id = ParticipantId::trusted(left.participant_id);
        self.events.publish(&room, RoomEventKind::Left { participant_id, name: left.name });
    }

    /// Tells the other nodes this one is alive and where they reach it; with PostgreSQL,
    /// follows the database's clock first.
    pub async fn heartbeat(&self) -> Result<(), ServiceError> {
        if self.is_shared() {
            follow_server_clock(&self.store).await?;
        }
        Ok(self.store.heartbeat(&self.node, &self.config.internal_url()).await?)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Whether several nodes may share the database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.node_key.is_some()
    }

    /// The deployment's node key (PostgreSQL), which requests between nodes carry.
    pub fn node_key(&self) -> Option<&str> {
        self.node_key.as_ref().map(Secret::expose)
    }

    /// Whether `key` is the deployment's node key (compared in constant time).
    pub fn is_node_key(&self, key: &str) -> bool {
        self.node_key.as_ref().is_some_and(|k| secret_eq(key, k.expose()))
    }

    /// Which node serves the room's page sockets: its home when that node is alive, else this
    /// node, which becomes its home. Always this node on SQLite.
    pub async fn room_home(&self, room: &RoomId) -> Result<Home, ServiceError> {
        if !self.is_shared() {
            return Ok(Home::Here);
        }
        let stale = crate::cluster::NODE_STALE.as_millis() as i64;
        Ok(self.store.room_home(room, &self.node, stale).await?)
    }

    /// This node now leads `platform`'s adapter: webhooks other nodes receive come here.
    pub async fn lead_adapter(&self, platform: &str) -> Result<(), ServiceError> {
        Ok(self.store.set_adapter_value(platform, "leader", &self.node).await?)
    }

    /// Where the node leading `platform`'s adapter is reached, when it is alive.
    pub async fn adapter_leader_url(&self, platform: &str) -> Result<Option<String>, ServiceError> {
        let Some(leader) = self.store.adapter_value(platform, "leader").await? else { return Ok(None) };
        if leader == *self.node {
            return Ok(None);
        }
        Ok(self.store.node_url(&leader, crate::cluster::NODE_STALE.as_millis() as i64).await?)
    }

    /// A value `platform`'s adapter keeps in the database.
    pub async fn adapter_value(&self, platform: &str, key: &str) -> Result<Option<String>, ServiceError> {
        Ok(self.store.adapter_value(platform, &format!("a:{key}")).await?)
    }

    /// Saves a value `platform`'s adapter keeps.
    pub async fn set_adapter_value(&self, platform: &str, key: &str, value: &str) -> Result<(), ServiceError> {
        Ok(self.store.set_adapter_value(platform, &format!("a:{key}"), value).await?)
    }

    /// Takes an inbound update of `platform` for an adapter's `run` (see `Store::claim_update`).
    pub async fn claim_update(&self, platform: &str, key: &str, run: &str, payload: Option<&str>) -> Result<bool, ServiceError> {
        Ok(self.store.claim_update(platform, key, run, payload).await?)
    }

    /// Marks an inbound update's handling finished.
    pub async fn finish_update(&self, platform: &str, key: &str) -> Result<(), ServiceError> {
        Ok(self.store.finish_update(platform, key).await?)
    }

    /// Inbound updates other runs of `platform`'s adapter (here or on other nodes) took and
    /// never finished.
    pub async fn unfinished_updates(&self, platform: &str, run: &str) -> Result<Vec<(String, Option<String>)>, ServiceError> {
        Ok(self.store.unfinished_updates(platform, run).await?)
    }

    /// This node stops cleanly: it leaves the deployment, and everyone whose page it held is
    /// marked left at once (their pages reconnect to another node and rejoin).
    pub async fn retire(&self) -> Result<(), ServiceError> {
        let left = self.store.retire(&self.node).await?;
        tracing::info!(left = left.len(), "this node retired");
        left.into_iter().for_each(|p| self.publish_left(p));
        Ok(())
    }

    /// Marks as left the participants of nodes silent for `node_stale` and those admitted
    /// `connect_timeout` ago whose page never came; publishes each departure.
    pub async fn sweep_presence(&self, node_stale: Duration, connect_timeout: Duration) -> Result<(), ServiceError> {
        let left = self.store.sweep_presence(node_stale.as_millis() as i64, connect_timeout.as_millis() as i64).await?;
        left.into_iter().for_each(|p| self.publish_left(p));
        Ok(())
    }

    /// Expires the rooms unused for `[rooms] expire_after`; publishes each. Forgets inbound
    /// updates taken long ago.
    pub async fn sweep_expired(&self) -> Result<(), ServiceError> {
        for id in self.store.sweep_expired(self.config.rooms.expire_after.as_millis() as i64).await? {
            self.events.publish(&RoomId::trusted(id), RoomEventKind::Ended { expired: true });
        }
        self.store.prune_claims(CLAIMS_KEPT.as_millis() as i64).await?;
        Ok(())
    }

    /// Records a card just posted in a chat of `platform`.
    pub async fn record_card(&self, platform: &str, card: &PostedCard) -> Result<(), ServiceError> {
        Ok(self.store.insert_card(platform, card).await?)
    }

    /// Every card of `platform` whose final state is not shown yet.
    pub async fn open_cards(&self, platform: &str) -> Result<Vec<PostedCard>, ServiceError> {
        Ok(self.store.open_cards(platform).await?)
    }

    /// Remembers what a posted card shows now.
    pub async fn update_card(&self, platform: &str, card: &PostedCard, state: CardState<'_>) -> Result<(), ServiceError> {
        let (rendered, closed) = match state {
            CardState::Shows(digest) => (Some(digest), false),
            CardState::Final(digest) => (Some(digest), true),
            CardState::Abandoned => (None, true),
        };
        Ok(self.store.update_card(platform, card, rendered, closed).await?)
    }

    /// Whether a card of `room` was posted in `chat` on `platform`.
    pub async fn card_in(&self, room: &RoomId, platform: &str, chat: &ChatRef) -> Result<bool, ServiceError> {
        Ok(self.store.card_in(room, platform, chat).await?)
    }

    /// The room a posted card shows.
    pub async fn room_of_card(&self, platform: &str, chat: &ChatRef, message: &MessageRef) -> Result<Option<RoomId>, ServiceError> {
        Ok(self.store.room_of_message(platform, chat, message).await?)
    }

    /// The chat's most recent room that has not ended.
    pub async fn latest_open_room(&self, platform: &str, chat: &ChatRef) -> Result<Option<RoomId>, ServiceError> {
        Ok(self.store.latest_open_room(platform, chat).await?)
    }

    /// Rooms open, participants present and knocks pending (for metrics).
    pub async fn counts(&self) -> Result<crate::store::Counts, ServiceError> {
        Ok(self.store.counts().await?)
    }

    /// Each database pool's size and idle connections (for metrics).
    pub fn pool_use(&self) -> Vec<(&'static str, u32, usize)> {
        self.store.pool_use()
    }

    /// `sqlite` or `postgres`.
    pub fn storage_name(&self) -> &'static str {
        match self.store.backend() {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        self.store.ping().await.is_ok()
    }

    /// Stops the event link (sending what is queued) and closes the database, waiting for
    /// running queries (after the workers stopped).
    pub async fn close(&self) {
        self.link.cancel.cancel();
        self.link.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.link.tasks.wait()).await.is_err() {
            tracing::warn!("the event link to other nodes did not stop in time");
        }
        self.store.close().await;
    }
}

/// Sets the node's clock to follow the database server's (see [`crate::clock`]): the wall
/// clock is read on both sides of the query, and the server's reading set against their mean.
async fn follow_server_clock(store: &Store) -> Result<(), StoreError> {
    let before = store.clock().wall_ms();
    let server = store.server_time_ms().await?;
    let after = store.clock().wall_ms();
    store.clock().follow(server, before + (after - before) / 2);
    Ok(())
}

/// Starts the event link: the outbox's sender and the listener (connected before this
/// returns, so no event committed after start is missed).
async fn start_link(url: &str, events: &EventBus, node: &str, link: &Link) -> Result<(), ServiceError> {
    use crate::cluster::notify;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(url).await.map_err(StoreError::from)?;
    let Some(listener) = notify::listen(url, &link.cancel).await else { return Ok(()) };
    let (outbox, queued) = tokio::sync::mpsc::channel(notify::OUTBOX);
    events.set_outbox(outbox);
    link.tasks.spawn(notify::publish(pool, node.to_owned(), queued, link.cancel.clone()));
    link.tasks.spawn(notify::receive(listener, events.clone(), node.to_owned(), link.cancel.clone()));
    Ok(())
}

/// Keeps SQLite's WAL short from outside the writer's path (see `Store::checkpoint`).
async fn checkpoints(store: Store, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(error) = store.checkpoint().await {
            tracing::debug!(%error, "checkpoint skipped");
        }
    }
}
