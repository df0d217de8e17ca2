//! Interactions: the Ed25519 check Discord requires, the slash commands we register, and
//! interaction payloads → neutral [`ChatEvent`]s.

use super::DiscordAdapter;
use callbridge_chat::{ActionAck, Actor, CardAction, ChatEvent, ChatRef, Command, Kind, Lang, MENU, MessageRef, StartAt, UserRef};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A signed request older (or newer) than this is refused: a captured request cannot be
/// replayed later.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// How many remembered interaction ids make a pass over them to forget the old ones.
const SEEN_PRUNE_AT: usize = 10_000;

/// Permission bits that give host powers: Administrator and Manage Channels.
const ADMINISTRATOR: u64 = 1 << 3;
const MANAGE_CHANNELS: u64 = 1 << 4;

pub(crate) fn public_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The slash commands of the port's menu, as `PUT /applications/{id}/commands` takes them.
pub fn command_definitions() -> Value {
    let commands = MENU.iter().map(|c| {
        let mut command = json!({"type": 1, "name": c.name, "description": c.description});
        if c.name == "call" {
            command["options"] = json!([
                {"type": 3, "name": "kind", "description": "Video or voice", "required": false,
                 "choices": [{"name": "video", "value": "video"}, {"name": "voice", "value": "voice"}]},
                {"type": 3, "name": "title", "description": "What the call is about", "required": false, "max_length": 120},
                {"type": 5, "name": "private", "description": "Browser to browser, at most 8 people: media never passes through the server",
                 "required": false},
                {"type": 5, "name": "ring", "description": "Ring everyone here who asked to be rung", "required": false},
                {"type": 3, "name": "when", "description": "Schedule it: in 30m, at 18:00, tomorrow 9:00", "required": false, "max_length": 40}
            ]);
        }
        if c.name == "ringme" || c.name == "notify" {
            command["options"] = json!([{"type": 5, "name": "on", "description": "On or off (leave out to switch)", "required": false}]);
        }
        if c.name == "unring" {
            command["options"] = json!([
                {"type": 6, "name": "who", "description": "Take back just this person's ring (leave out: all yours still ringing)", "required": false}
            ]);
        }
        if c.name == "ring" {
            command["options"] = json!([
                {"type": 6, "name": "who", "description": "Ring just this person (leave out: everyone who asked to be rung)", "required": false},
                {"type": 3, "name": "message", "description": "A message for the people rung", "required": false, "max_length": 200}
            ]);
        }
        command
    });
    Value::Array(commands.collect())
}

#[derive(Deserialize)]
struct Interaction {
    #[serde(default)]
    id: String,
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    token: String,
    guild_id: Option<String>,
    channel_id: Option<String>,
    member: Option<Member>,
    user: Option<User>,
    data: Option<Data>,
    message: Option<MessageId>,
    /// The partial channel Discord sends with an interaction (its name, for rings).
    channel: Option<Channel>,
    /// The user's own Discord language (`es-ES`), for what the adapter answers itself.
    locale: Option<String>,
}

#[derive(Deserialize)]
struct Channel {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Member {
    user: User,
    nick: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    /// The member's permissions in the channel, a decimal string of bits.
    permissions: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: String,
    username: String,
    global_name: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    name: Option<String>,
    #[serde(default)]
    options: Vec<CommandOption>,
    custom_id: Option<String>,
}

#[derive(Deserialize)]
struct CommandOption {
    name: String,
    value: Option<Value>,
}

#[derive(Deserialize)]
struct MessageId {
    id: String,
}

impl DiscordAdapter {
    /// Whether a request really comes from Discord: an Ed25519 signature by the application's
    /// key over timestamp + body, with the timestamp within [`MAX_CLOCK_SKEW_SECS`] of `now`.
    pub fn verify(&self, signature_hex: Option<&str>, timestamp: Option<&str>, body: &[u8], now_unix: u64) -> bool {
        let (Some(key), Some(signature_hex), Some(timestamp)) = (&self.key, signature_hex, timestamp) else { return false };
        let Some(sent) = timestamp.parse::<u64>().ok() else { return false };
        if sent.abs_diff(now_unix) > MAX_CLOCK_SKEW_SECS {
            return false;
        }
        let Some(bytes) = hex::decode(signature_hex).ok().and_then(|b| <[u8; 64]>::try_from(b).ok()) else { return false };
        let message = [timestamp.as_bytes(), body].concat();
        key.verify(&message, &Signature::from_bytes(&bytes)).is_ok()
    }

    /// Turns a verified interaction into Discord's immediate answer and, for commands and
    /// button presses, the event for the bridge.
    /// An interaction seen before (a replay of a signed request within its window) gets the same
    /// answer and no event: it is never acted on twice.
    pub fn interaction(&self, body: &[u8]) -> Result<(Value, Option<ChatEvent>), String> {
        let i: Interaction = serde_json::from_slice(body).map_err(|e| format!("not an interaction: {e}"))?;
        let (answer, event) = self.answer(&i)?;
        if event.is_some() && !self.first_sight(&i.id) {
            tracing::warn!(interaction = %i.id, "discord: an interaction came again; not acting on it twice");
            return Ok((answer, None));
        }
        Ok((answer, event))
    }

    /// Whether `id` is new, remembering it for the signature window (and a little more).
    fn first_sight(&self, id: &str) -> bool {
        if id.is_empty() {
            return true;
        }
        let window = Duration::from_secs(2 * MAX_CLOCK_SKEW_SECS);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= SEEN_PRUNE_AT {
            seen.retain(|_, at| at.elapsed() < window);
        }
        match seen.get(id) {
            Some(at) if at.elapsed() < window => false,
            _ => {
                seen.insert(id.to_owned(), Instant::now());
                true
            }
        }
    }

    fn answer(&self, i: &Interaction) -> Result<(Value, Option<ChatEvent>), String> {
        match i.kind {
            1 => Ok((json!({"type": 1}), None)),
            2 => {
                let data = i.data.as_ref().ok_or("a command without data")?;
                let (chat, actor) = self.origin(i)?;
                let option = |name: &str| {
                    data.options.iter().find(|o| o.name == name).and_then(|o| o.value.as_ref()).and_then(Value::as_str).map(str::to_owned)
                };
                let flag = |name: &str| data.options.iter().find(|o| o.name == name).and_then(|o| o.value.as_ref()).and_then(Value::as_bool);
                let command = match data.name.as_deref().unwrap_or("") {
                    "call" => Command::Call {
                        kind: option("kind").as_deref().and_then(Kind::parse),
                        title: option("title").map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()),
                        mesh: flag("private") == Some(true),
                        ring: flag("ring") == Some(true),
                        // The whole option must be a start time.
                        at: match option("when") {
                            Some(when) => match StartAt::parse(when.trim()) {
                                Some((at, "")) => Some(at),
                                // Told to the caller alone, at once.
                                _ => {
                                    let text = i.locale.as_deref().and_then(Lang::from_tag).unwrap_or_default().card().when_hint;
                                    return Ok((json!({"type": 4, "data": {"content": text, "flags": 64}}), None));
                                }
                            },
                            None => None,
                        },
                    },
                    "ringme" => Command::RingMe { on: flag("on") },
                    "notify" => Command::Notify { on: flag("on") },
                    // A mentionable option carries the user's id.
                    "ring" => Command::Ring {
                        targets: option("who").map(|id| format!("<@{id}>")).into_iter().collect(),
                        message: option("message").map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()),
                    },
                    "unring" => Command::Unring { targets: option("who").map(|id| format!("<@{id}>")).into_iter().collect() },
                    "calls" => Command::Calls,
                    "lock" => Command::Lock,
                    "unlock" => Command::Unlock,
                    "end" => Command::End,
                    "who" => Command::Who,
                    "help" => Command::Help,
                    other => return Err(format!("unknown command {other:?}")),
                };
                let answer = Some(ActionAck(i.token.clone()));
                let chat_name = i.channel.as_ref().and_then(|c| c.name.as_deref()).map(|n| format!("#{n}"));
                let event = ChatEvent::Command { chat, actor, command, private: i.guild_id.is_none(), answer, chat_name };
                // "Thinking…", seen by the caller alone; the bridge's answer fills it in.
                Ok((json!({"type": 5, "data": {"flags": 64}}), Some(event)))
            }
            3 => {
                let custom_id = i.data.as_ref().and_then(|d| d.custom_id.as_deref()).ok_or("a button press without custom_id")?;
                let action = CardAction::decode(custom_id).ok_or("not one of our buttons")?;
                let message = i.message.as_ref().ok_or("a button press without its message")?.id.clone();
                let (chat, actor) = self.origin(i)?;
                let event = ChatEvent::Action { chat, message: MessageRef(message), actor, action, ack: ActionAck(i.token.clone()) };
                // Acknowledged now; the card's edit shows the outcome.
                Ok((json!({"type": 6}), Some(event)))
            }
            other => Err(format!("unsupported interaction type {other}")),
        }
    }

    /// The channel and the person behind an interaction, with their host powers in the guild.
    fn origin(&self, i: &Interaction) -> Result<(ChatRef, Actor), String> {
        let chat = ChatRef(i.channel_id.clone().ok_or("an interaction without a channel")?);
        let actor = match (&i.member, &i.user) {
            (Some(m), _) => {
                let bits = m.permissions.as_deref().and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
                let by_role = m.roles.iter().filter_map(|r| r.parse().ok()).any(|r| self.settings.admin_role_ids.contains(&r));
                Actor {
                    user: UserRef(m.user.id.clone()),
                    display_name: m.nick.clone().or_else(|| m.user.global_name.clone()).unwrap_or_else(|| m.user.username.clone()),
                    is_admin: bits & (ADMINISTRATOR | MANAGE_CHANNELS) != 0 || by_role,
                    handle: Some(m.user.username.clone()),
                }
            }
            // A direct message with the bot: nobody else to administer it.
            (None, Some(u)) => Actor {
                user: UserRef(u.id.clone()),
                display_name: u.global_name.clone().unwrap_or_else(|| u.username.clone()),
                is_admin: false,
                handle: Some(u.username.clone()),
            },
            (None, None) => return Err("an interaction without a user".into()),
        };
        Ok((chat, actor))
    }
}
