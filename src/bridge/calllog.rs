//! The chat's call log (`/calls`) and the ended card's **Call again**.
//!
//! A link stays valid until its call ends or goes unused for `[rooms] expire_after` (90 days,
//! as WhatsApp's), so the log's open calls can simply be used again.

use super::ringing::title_of;
use super::texts::Texts;
use super::{Bridge, CallRequest, Outcome};
use crate::ids::RoomId;
use crate::room::{RoomView, RoomKind};
use crate::service::Knocks;
use crate::store::OptIn;
use callbridge_chat::{Actor, ChatRef, Kind, fill, human_seconds};

/// Characters of names one log line lists before "and N more".
const NAMES_BUDGET: usize = 160;

impl Bridge {
    /// `/calls`: the open calls first (title, host, who is in, the link), then the last that
    /// ended (when, how long, who came).
    pub(super) async fn call_log(&self, chat: &ChatRef, t: &Texts) -> String {
        let p = self.adapter.command_prefix();
        let rooms = match self.rooms.chat_calls(self.adapter.platform(), chat).await {
            Ok(rooms) => rooms,
            Err(error) => {
                tracing::warn!(%error, "cannot read the call log");
                return t.went_wrong.into();
            }
        };
        let mut open = Vec::new();
        let mut ended = Vec::new();
        for room in rooms {
            let Ok(view) = self.rooms.view(&room, Knocks::Hidden).await else { continue };
            if view.ended { ended.push(ended_line(t, &view)) } else { open.push(open_line(t, &view)) }
        }
        if open.is_empty() && ended.is_empty() {
            return fill(t.log_empty, &[("p", p)]);
        }
        let mut out = String::from(t.log_heading);
        if open.is_empty() {
            out.push_str(&format!("\n{}", t.log_none_open));
        } else {
            out.push_str(&format!("\n\n{}\n{}", t.log_open, open.join("\n")));
        }
        if !ended.is_empty() {
            out.push_str(&format!("\n\n{}\n{}", fill(t.log_ended, &[("n", &ended.len().to_string())]), ended.join("\n")));
        }
        out
    }

    /// **Call again** on an ended card: a new room with the same title, kind and media, hosted
    /// by the presser, its card in this chat, and the people rung last time rung again.
    pub(super) async fn call_again(&self, chat: &ChatRef, room: &RoomId, actor: &Actor) -> Outcome {
        let t = self.t(chat);
        let view = self.rooms.view(room, Knocks::Hidden).await.map_err(|_| t.call_unavailable.to_owned())?;
        if !view.ended {
            return Err(t.still_on.into());
        }
        let platform = self.adapter.platform();
        let rung: Vec<OptIn> = self
            .rooms
            .rings_of(room)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.platform == platform && r.user_ref != actor.user.0)
            .map(|r| OptIn { user_ref: r.user_ref, name: r.name, handle: None })
            .collect();
        let request = CallRequest {
            kind: Some(match view.kind {
                RoomKind::Video => Kind::Video,
                RoomKind::Voice => Kind::Voice,
            }),
            title: view.title.clone(),
            media: Some(view.media),
            private: false,
            ring: super::RingList::These(rung),
            chat_name: view.chat_name.clone(),
            message: None,
            starts_at: None,
        };
        match self.call(chat, actor, request).await {
            // What `/call` would say in the chat (a refusal, or the host link it could not
            // send privately) is the presser's alone here.
            Some(text) => Err(text),
            None => Ok(t.new_call_open.into()),
        }
    }
}

/// "🟢 “Standup” — hosted by Ada — in now: Bob, Cy\n   https://…"
fn open_line(t: &Texts, view: &RoomView) -> String {
    let mut line = format!("🟢 {}", title_of(t, view));
    if let Some(host) = &view.host_name {
        line.push_str(&fill(t.log_hosted_by, &[("host", host)]));
    }
    let present: Vec<&str> = view.participants.iter().filter(|p| p.left_at.is_none() && !p.removed).map(|p| p.name.as_str()).collect();
    if present.is_empty() {
        line.push_str(t.log_nobody_in);
    } else {
        line.push_str(&fill(t.log_in_now, &[("n", &present.len().to_string()), ("names", &names(&present))]));
    }
    line.push_str(&format!("\n   {}", view.url));
    line
}

/// "⚫ “Retro” — 3 Dec 10:02 UTC, 45m 10s — came: Ada, Bob"
fn ended_line(t: &Texts, view: &RoomView) -> String {
    let started = chrono::DateTime::parse_from_rfc3339(&view.created_at).ok();
    let ended = view.ended_at.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let mut line = format!("⚫ {}", title_of(t, view));
    if let Some(end) = ended {
        line.push_str(&format!(" — {} UTC", end.format(t.date_format)));
        if let Some(start) = started {
            line.push_str(&format!(", {}", human_seconds((end - start).num_seconds())));
        }
    }
    let came: Vec<&str> = view.participants.iter().map(|p| p.name.as_str()).collect();
    if came.is_empty() {
        line.push_str(t.log_nobody_came);
    } else {
        line.push_str(&fill(t.log_came, &[("n", &came.len().to_string()), ("names", &names(&came))]));
    }
    line
}

/// Names joined by commas within [`NAMES_BUDGET`], then "and N more".
fn names(list: &[&str]) -> String {
    callbridge_chat::text::within_budget(list.iter().map(|n| n.to_string()), ", ", NAMES_BUDGET, |s| s.chars().count())
}
