//! The join card: what every adapter renders for a room, and the buttons it may carry.

use crate::command::Kind;
use crate::lang::{CardWords, Lang};
use serde::Serialize;

/// Where a room stands, as a card shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CardStatus {
    Open,
    Locked,
    Full,
    Ended,
    Expired,
}

impl CardStatus {
    /// Whether the room is over (no buttons but the summary).
    pub fn is_over(self) -> bool {
        matches!(self, CardStatus::Ended | CardStatus::Expired)
    }
}

/// A pending request to join a locked room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Knock {
    /// The knock id, carried back by Admit/Deny buttons.
    pub id: String,
    pub name: String,
}

/// How many characters of a knock id its short code shows.
pub const KNOCK_CODE_LEN: usize = 4;

impl Knock {
    /// The short code a card shows beside the name, for `/admit CODE`: the id's last
    /// characters, which are random (62^4 codes, so two waiting at once almost never share one).
    pub fn code(&self) -> &str {
        knock_code(&self.id)
    }
}

/// The short code of a knock id (see [`Knock::code`]).
pub fn knock_code(id: &str) -> &str {
    let start = id.char_indices().rev().nth(KNOCK_CODE_LEN - 1).map_or(0, |(i, _)| i);
    &id[start..]
}

/// One line of the attendance summary of an ended room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Attendance {
    pub name: String,
    /// When the participant first joined, as `HH:MM` UTC.
    pub joined: String,
    /// Time spent connected, over every visit.
    pub seconds: i64,
}

/// Where one rung person stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RingState {
    Ringing,
    Accepted,
    Declined,
    Missed,
    /// No private message reached them (they never opened a private chat with the bot).
    Unreachable,
}

impl RingState {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            RingState::Ringing => "ringing",
            RingState::Accepted => "accepted",
            RingState::Declined => "declined",
            RingState::Missed => "missed",
            RingState::Unreachable => "unreachable",
        }
    }

    pub fn parse(word: &str) -> Option<RingState> {
        [RingState::Ringing, RingState::Accepted, RingState::Declined, RingState::Missed, RingState::Unreachable]
            .into_iter()
            .find(|s| s.as_str() == word)
    }

    /// How a card shows it, after the name.
    pub fn label(self, words: &CardWords) -> &'static str {
        match self {
            RingState::Ringing => words.ring_ringing,
            RingState::Accepted => words.ring_accepted,
            RingState::Declined => words.ring_declined,
            RingState::Missed => words.ring_missed,
            RingState::Unreachable => words.ring_unreachable,
        }
    }
}

/// One person rung into the call, as the card's "Ringing" section shows them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RingLine {
    pub name: String,
    pub state: RingState,
}

/// A room as a chat card shows it. User strings (title, names) are raw: adapters escape them
/// for their markup.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Card {
    pub room_id: String,
    pub title: Option<String>,
    pub host_name: Option<String>,
    pub kind: Kind,
    /// A private room: a browser-to-browser mesh, whose media never passes through the server.
    pub private: bool,
    pub status: CardStatus,
    /// Who is in the room now (holding a place), in order of arrival.
    pub present: Vec<String>,
    /// How many people ever entered.
    pub entered: usize,
    /// The join link.
    pub link: String,
    /// Pending requests to join.
    pub knocks: Vec<Knock>,
    /// Who came, when and for how long; set once the room is over.
    pub attendance: Option<Vec<Attendance>>,
    /// The people rung into the call, and how each answered.
    pub ringing: Vec<RingLine>,
    /// A scheduled call not started yet: its start, in seconds since the epoch, and as the
    /// chat's time zone writes it ("Thu 3 Dec, 18:00 (Europe/Madrid)").
    pub starts: Option<(i64, String)>,
    /// The language of the chat it is posted in (left out of an English card's digest, so
    /// cards posted before languages existed are not edited for nothing).
    #[serde(skip_serializing_if = "is_english")]
    pub lang: Lang,
}

fn is_english(lang: &Lang) -> bool {
    *lang == Lang::En
}

impl Card {
    /// The card's words, in its chat's language.
    pub fn words(&self) -> &'static CardWords {
        self.lang.card()
    }

    /// "Video call", "Private voice call", …
    pub fn kind_label(&self) -> &'static str {
        let w = self.words();
        match (self.kind, self.private) {
            (Kind::Video, false) => w.video_call,
            (Kind::Voice, false) => w.voice_call,
            (Kind::Video, true) => w.private_video_call,
            (Kind::Voice, true) => w.private_voice_call,
        }
    }

    pub fn icon(&self) -> &'static str {
        match self.kind {
            Kind::Video => "🎥",
            Kind::Voice => "🎙",
        }
    }

    /// Where the call's media travels, in one line.
    pub fn route_line(&self) -> &'static str {
        if self.private { self.words().route_mesh } else { self.words().route_sfu }
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A press on a card button.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CardAction {
    Lock,
    Unlock,
    End,
    /// Admit the knock with this id.
    Admit(String),
    /// Deny the knock with this id.
    Deny(String),
    /// Ask for a personal link that joins the presser under their chat name (no host powers).
    JoinAsMe,
    /// On a private prompt: yes (answer a ring and join; admit a knock).
    Accept,
    /// On a private prompt: no (decline a ring; deny a knock).
    Decline,
    /// Switch whether the presser is rung for this chat's calls.
    RingMe,
    /// On an ended card: a new room with the same title, kind and ring list.
    CallAgain,
}

impl CardAction {
    /// A compact form for button payloads (Telegram allows 64 bytes of callback data).
    pub fn encode(&self) -> String {
        match self {
            CardAction::Lock => "lock".into(),
            CardAction::Unlock => "unlock".into(),
            CardAction::End => "end".into(),
            CardAction::Admit(id) => format!("admit:{id}"),
            CardAction::Deny(id) => format!("deny:{id}"),
            CardAction::JoinAsMe => "me".into(),
            CardAction::Accept => "accept".into(),
            CardAction::Decline => "decline".into(),
            CardAction::RingMe => "ringme".into(),
            CardAction::CallAgain => "again".into(),
        }
    }

    /// The inverse of [`encode`](Self::encode); `None` for anything else.
    pub fn decode(data: &str) -> Option<CardAction> {
        let valid_id = |id: &str| !id.is_empty() && id.len() <= 40 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        match data.split_once(':') {
            None => match data {
                "lock" => Some(CardAction::Lock),
                "unlock" => Some(CardAction::Unlock),
                "end" => Some(CardAction::End),
                "me" => Some(CardAction::JoinAsMe),
                "accept" => Some(CardAction::Accept),
                "decline" => Some(CardAction::Decline),
                "ringme" => Some(CardAction::RingMe),
                "again" => Some(CardAction::CallAgain),
                _ => None,
            },
            Some(("admit", id)) if valid_id(id) => Some(CardAction::Admit(id.into())),
            Some(("deny", id)) if valid_id(id) => Some(CardAction::Deny(id.into())),
            Some(_) => None,
        }
    }
}

/// `1h 05m`, `3m 20s`, `45s`: a duration for people.
pub fn human_seconds(seconds: i64) -> String {
    let s = seconds.max(0);
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip() {
        for a in [
            CardAction::Lock,
            CardAction::Unlock,
            CardAction::End,
            CardAction::Admit("abc123".into()),
            CardAction::Deny("Z9".into()),
            CardAction::JoinAsMe,
            CardAction::Accept,
            CardAction::Decline,
            CardAction::RingMe,
            CardAction::CallAgain,
        ] {
            assert_eq!(CardAction::decode(&a.encode()), Some(a));
        }
        for bad in ["", "lock:", "admit:", "admit:a b", "admit:<b>", "deny", "foo:bar", "locks"] {
            assert_eq!(CardAction::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human_seconds(45), "45s");
        assert_eq!(human_seconds(200), "3m 20s");
        assert_eq!(human_seconds(3900), "1h 05m");
        assert_eq!(human_seconds(-3), "0s");
    }
}
