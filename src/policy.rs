//! Per-chat policy and gateways: `[[chats]]`, `[chat_defaults]` and `[[gateways]]`.
//!
//! A chat's effective policy is read key by key: its own `[[chats]]` entry, then the entry of
//! its gateway, then `[chat_defaults]`, then `[rooms]` (kind, media, size, knock, time zone)
//! and the built-in defaults. A gateway is a set of chats, on any platforms, that share every
//! call started in one of them.
//!
//! Chat ids are checked by their platform's shape and every mistake names its line: the
//! entries keep the byte spans TOML gave them, turned into lines once the file is read.

use crate::room::{Media, RoomKind};
use callbridge_chat::Lang;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The platforms a chat or gateway may name.
pub const PLATFORMS: [&str; 3] = ["discord", "matrix", "telegram"];

/// Who may start a call in a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhoMayCall {
    #[default]
    Anyone,
    /// The chat's admins (as the platform says: Telegram administrators, Discord Manage
    /// Channels, Matrix moderators).
    Admins,
}

/// One `[[chats]]` entry, or `[chat_defaults]` (which names no chat). Every key is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatEntry {
    /// A single chat: its platform and id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat: Option<Spanned<String>>,
    /// Or every chat of a gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub who_may_call: Option<WhoMayCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_participants: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<RoomKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knock: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_on_start: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<Lang>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// People (`platform:user id`) who hear each knock privately, besides the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knock_notices: Option<Vec<String>>,
    /// The entry's line in the file (0: not from a file).
    #[serde(skip)]
    pub line: usize,
}

/// One `[[gateways]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub name: Spanned<String>,
    pub chats: Vec<GatewayChat>,
}

/// A chat of a gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayChat {
    pub platform: Spanned<String>,
    pub chat: Spanned<String>,
    #[serde(skip)]
    pub line: usize,
}

/// A chat's policy, every key decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatPolicy {
    pub who_may_call: WhoMayCall,
    pub max_participants: u32,
    pub kind: RoomKind,
    pub media: Media,
    pub knock: bool,
    pub lock_on_start: bool,
    pub language: Lang,
    pub timezone: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub knock_notices: Vec<String>,
}

impl ChatPolicy {
    /// `timezone`, read (checked by validation; UTC if it were not).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }
}

/// The chats section of the file: what [`crate::config::Config`] keeps.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Policies {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chats: Vec<ChatEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_defaults: Option<ChatEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<Gateway>,
}

/// A policy mistake: where, which key, why.
#[derive(Debug, PartialEq)]
pub struct PolicyError {
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl Policies {
    /// Turns the entries' byte spans into lines of `text`.
    pub fn locate(&mut self, text: &str) {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        for entry in self.chats.iter_mut().chain(self.chat_defaults.as_mut()) {
            let span = [&entry.platform, &entry.chat, &entry.gateway].into_iter().flatten().map(|s| s.span().start).min();
            entry.line = span.map_or(0, line_of);
        }
        for gateway in &mut self.gateways {
            for chat in &mut gateway.chats {
                chat.line = line_of(chat.platform.span().start.min(chat.chat.span().start));
            }
        }
    }

    /// The gateway `chat` belongs to, if any.
    pub fn gateway_of(&self, platform: &str, chat: &str) -> Option<&Gateway> {
        self.gateways.iter().find(|g| g.chats.iter().any(|c| c.is(platform, chat)))
    }

    /// The policy of `chat` on `platform`; `rooms` gives what no entry sets.
    pub fn policy(&self, platform: &str, chat: &str, rooms: &crate::config::RoomsConfig) -> ChatPolicy {
        let own = self.chats.iter().find(|e| e.names(platform, chat));
        let gateway = self.gateway_of(platform, chat).and_then(|g| self.chats.iter().find(|e| e.gateway.as_ref().is_some_and(|n| n.get_ref() == g.name.get_ref())));
        let layers: Vec<&ChatEntry> = [own, gateway, self.chat_defaults.as_ref()].into_iter().flatten().collect();
        macro_rules! pick {
            ($key:ident) => {
                layers.iter().find_map(|e| e.$key.clone())
            };
        }
        let media = pick!(media).unwrap_or(rooms.media);
        // A size set for another media than the chat's would not fit it: each media its own.
        let max_participants = pick!(max_participants).unwrap_or(if media == rooms.media { rooms.max_participants() } else { media.default_max_participants() });
        ChatPolicy {
            who_may_call: pick!(who_may_call).unwrap_or_default(),
            max_participants,
            kind: pick!(kind).unwrap_or(rooms.default_kind),
            media,
            knock: pick!(knock).unwrap_or(rooms.knock),
            lock_on_start: pick!(lock_on_start).unwrap_or(false),
            language: pick!(language).unwrap_or_default(),
            timezone: pick!(timezone).unwrap_or_else(|| rooms.timezone.clone()),
            knock_notices: pick!(knock_notices).unwrap_or_default(),
        }
    }

    /// Every listed chat (own entries and gateways' chats), once, in file order.
    pub fn listed(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let own = self.chats.iter().filter_map(|e| Some((e.platform.as_ref()?.get_ref().clone(), e.chat.as_ref()?.get_ref().clone())));
        let gated = self.gateways.iter().flat_map(|g| g.chats.iter().map(|c| (c.platform.get_ref().clone(), c.chat.get_ref().clone())));
        for pair in own.chain(gated) {
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
        out
    }

    /// Checks every entry against `rooms`; the first mistake, with its line and key.
    pub fn validate(&self, rooms: &crate::config::RoomsConfig) -> Result<(), PolicyError> {
        let err = |line: usize, key: String, message: String| Err(PolicyError { line, key, message });
        if let Some(d) = &self.chat_defaults {
            if d.platform.is_some() || d.chat.is_some() || d.gateway.is_some() {
                return err(d.line, "chat_defaults".into(), "names no chat: platform, chat and gateway belong in [[chats]]".into());
            }
            check_keys(d, "chat_defaults")?;
        }
        let mut gateway_names: Vec<&str> = Vec::new();
        let mut gated: Vec<(&str, &str, &str)> = Vec::new();
        for (g, gateway) in self.gateways.iter().enumerate() {
            let name = gateway.name.get_ref().as_str();
            if name.trim().is_empty() || gateway_names.contains(&name) {
                let line = gateway.chats.first().map_or(0, |c| c.line.saturating_sub(1));
                return err(line, format!("gateways[{g}].name"), format!("{name:?}: a gateway needs a name of its own"));
            }
            gateway_names.push(name);
            if gateway.chats.len() < 2 {
                return err(gateway.chats.first().map_or(0, |c| c.line), format!("gateways[{g}].chats"), "a gateway joins at least two chats".into());
            }
            for (c, chat) in gateway.chats.iter().enumerate() {
                let key = format!("gateways[{g}].chats[{c}]");
                check_chat(chat.platform.get_ref(), chat.chat.get_ref()).or_else(|(what, why)| err(chat.line, format!("{key}.{what}"), why))?;
                if let Some((_, _, other)) = gated.iter().find(|(p, id, _)| *p == chat.platform.get_ref() && *id == chat.chat.get_ref()) {
                    let why = format!("{} {} is already in gateway {other:?}: a chat belongs to one gateway", chat.platform.get_ref(), chat.chat.get_ref());
                    return err(chat.line, key, why);
                }
                gated.push((chat.platform.get_ref(), chat.chat.get_ref(), name));
            }
        }
        let mut seen: Vec<(&str, &str)> = Vec::new();
        let mut seen_gateways: Vec<&str> = Vec::new();
        for (i, entry) in self.chats.iter().enumerate() {
            let key = |k: &str| format!("chats[{i}].{k}");
            match (&entry.platform, &entry.chat, &entry.gateway) {
                (Some(platform), Some(chat), None) => {
                    check_chat(platform.get_ref(), chat.get_ref()).or_else(|(what, why)| err(entry.line, key(what), why))?;
                    let pair = (platform.get_ref().as_str(), chat.get_ref().as_str());
                    if seen.contains(&pair) {
                        return err(entry.line, key("chat"), format!("{} {} is named twice in [[chats]]", pair.0, pair.1));
                    }
                    seen.push(pair);
                }
                (None, None, Some(gateway)) => {
                    let name = gateway.get_ref().as_str();
                    if !gateway_names.contains(&name) {
                        return err(entry.line, key("gateway"), format!("no [[gateways]] entry is named {name:?}"));
                    }
                    if seen_gateways.contains(&name) {
                        return err(entry.line, key("gateway"), format!("gateway {name:?} is named twice in [[chats]]"));
                    }
                    seen_gateways.push(name);
                }
                (_, _, Some(_)) => return err(entry.line, key("gateway"), "either a gateway or a platform and chat, not both".into()),
                _ => return err(entry.line, format!("chats[{i}]"), "needs platform and chat (or gateway)".into()),
            }
            check_keys(entry, &format!("chats[{i}]"))?;
        }
        // Every listed chat's size fits its media once the layers are merged.
        for (platform, chat) in self.listed() {
            let policy = self.policy(&platform, &chat, rooms);
            let most = policy.media.most_participants();
            if !(1..=most).contains(&policy.max_participants) {
                let line = self.chats.iter().find(|e| e.names(&platform, &chat)).map_or(0, |e| e.line);
                return err(line, "max_participants".into(), format!("{platform} {chat}: must be 1..={most} for a {} room", policy.media.as_str()));
            }
        }
        Ok(())
    }
}

impl ChatEntry {
    fn names(&self, platform: &str, chat: &str) -> bool {
        self.platform.as_ref().is_some_and(|p| p.get_ref() == platform) && self.chat.as_ref().is_some_and(|c| c.get_ref() == chat)
    }
}

impl GatewayChat {
    fn is(&self, platform: &str, chat: &str) -> bool {
        self.platform.get_ref() == platform && self.chat.get_ref() == chat
    }
}

/// The keys any entry may set, checked alone.
fn check_keys(entry: &ChatEntry, at: &str) -> Result<(), PolicyError> {
    let err = |k: &str, message: String| Err(PolicyError { line: entry.line, key: format!("{at}.{k}"), message });
    if let Some(tz) = &entry.timezone
        && tz.parse::<chrono_tz::Tz>().is_err()
    {
        return err("timezone", "must be an IANA time zone name, such as UTC or Europe/Madrid".into());
    }
    if let Some(max) = entry.max_participants
        && !(1..=crate::config::MAX_PARTICIPANTS_LIMIT).contains(&max)
    {
        return err("max_participants", format!("must be 1..={}", crate::config::MAX_PARTICIPANTS_LIMIT));
    }
    for who in entry.knock_notices.iter().flatten() {
        let ok = who.split_once(':').is_some_and(|(p, id)| PLATFORMS.contains(&p) && check_user(p, id));
        if !ok {
            return err("knock_notices", format!("{who:?} is not platform:user (telegram:123456789, discord:80351110224678912, matrix:@ana:example.org)"));
        }
    }
    Ok(())
}

/// A chat id's shape on its platform: `Err((key, why))`.
fn check_chat(platform: &str, chat: &str) -> Result<(), (&'static str, String)> {
    let ok = match platform {
        // A chat id: an integer; groups and channels are negative.
        "telegram" => chat.parse::<i64>().is_ok_and(|n| n != 0),
        // A channel id: a snowflake.
        "discord" => snowflake(chat),
        // A room id: `!opaque:server`, or `!opaque` from room version 12 on (an alias would
        // change hands; the id does not).
        "matrix" => chat.strip_prefix('!').is_some_and(|id| !id.is_empty() && !id.starts_with(':') && !id.contains(char::is_whitespace)),
        other => return Err(("platform", format!("unknown platform {other:?}: one of {}", PLATFORMS.join(", ")))),
    };
    if ok {
        return Ok(());
    }
    let shape = match platform {
        "telegram" => "a Telegram chat id is an integer, such as -1001234567890",
        "discord" => "a Discord channel id is a number of 17 to 20 digits",
        _ => "a Matrix room id starts with ! (!abcdef:example.org), an alias (#…) is not one",
    };
    Err(("chat", format!("{chat:?}: {shape}")))
}

fn snowflake(id: &str) -> bool {
    (17..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

fn check_user(platform: &str, id: &str) -> bool {
    match platform {
        "telegram" => id.parse::<u64>().is_ok_and(|n| n > 0),
        "discord" => snowflake(id),
        _ => id.starts_with('@') && id.split_once(':').is_some_and(|(l, s)| l.len() > 1 && !s.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoomsConfig;

    fn read(text: &str) -> Result<Policies, String> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            chats: Vec<ChatEntry>,
            chat_defaults: Option<ChatEntry>,
            #[serde(default)]
            gateways: Vec<Gateway>,
        }
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut p = Policies { chats: file.chats, chat_defaults: file.chat_defaults, gateways: file.gateways };
        p.locate(text);
        p.validate(&RoomsConfig::default()).map_err(|e| format!("line {}: {}: {}", e.line, e.key, e.message))?;
        Ok(p)
    }

    const GATEWAY: &str = r#"
[[gateways]]
name = "friends"
chats = [
  { platform = "telegram", chat = "-1001234567890" },
  { platform = "discord", chat = "123456789012345678" },
  { platform = "matrix", chat = "!abcdef:example.org" },
]

[chat_defaults]
language = "fr"

[[chats]]
gateway = "friends"
who_may_call = "admins"
timezone = "Europe/Madrid"

[[chats]]
platform = "telegram"
chat = "-1001234567890"
language = "es"
kind = "voice"
media = "mesh"
max_participants = 6
"#;

    #[test]
    fn layers_apply_key_by_key() {
        let p = read(GATEWAY).unwrap();
        let rooms = RoomsConfig::default();
        let tg = p.policy("telegram", "-1001234567890", &rooms);
        assert_eq!((tg.language, tg.kind, tg.media, tg.max_participants), (Lang::Es, RoomKind::Voice, Media::Mesh, 6));
        assert_eq!((tg.who_may_call, tg.timezone.as_str()), (WhoMayCall::Admins, "Europe/Madrid"), "from the gateway");
        let mx = p.policy("matrix", "!abcdef:example.org", &rooms);
        assert_eq!((mx.language, mx.who_may_call, mx.max_participants), (Lang::Fr, WhoMayCall::Admins, 50));
        let other = p.policy("telegram", "-42", &rooms);
        assert_eq!((other.language, other.who_may_call, other.timezone.as_str()), (Lang::Fr, WhoMayCall::Anyone, "UTC"));
        assert_eq!(p.gateway_of("discord", "123456789012345678").map(|g| g.name.get_ref().as_str()), Some("friends"));
        assert_eq!(p.listed().len(), 3);
    }

    #[test]
    fn mistakes_name_their_line_and_key() {
        let bad = |text: &str, want: &str| {
            let got = read(text).unwrap_err();
            assert!(got.contains(want), "{got}\nwanted: {want}");
        };
        bad("[[chats]]\nplatform = \"icq\"\nchat = \"1\"\n", "line 2: chats[0].platform: unknown platform \"icq\"");
        bad("[[chats]]\nplatform = \"telegram\"\nchat = \"group\"\n", "line 2: chats[0].chat: \"group\": a Telegram chat id is an integer");
        bad("[[chats]]\nplatform = \"discord\"\nchat = \"12\"\n", "chats[0].chat");
        bad("[[chats]]\nplatform = \"matrix\"\nchat = \"#alias:example.org\"\n", "a Matrix room id");
        bad("[[chats]]\nplatform = \"telegram\"\nchat = \"-1\"\n\n[[chats]]\nplatform = \"telegram\"\nchat = \"-1\"\n", "line 6: chats[1].chat: telegram -1 is named twice");
        bad("[[chats]]\nplatform = \"telegram\"\nchat = \"-1\"\nlanguage = \"de\"\n", "unknown variant `de`");
        bad("[[chats]]\nplatform = \"telegram\"\nchat = \"-1\"\ntimezone = \"Mars/Base\"\n", "line 2: chats[0].timezone");
        bad("[[chats]]\nplatform = \"telegram\"\nchat = \"-1\"\nwho_may_call = \"mods\"\n", "unknown variant `mods`");
        bad("[[chats]]\nplatform = \"telegram\"\nchat = \"-1\"\nmedia = \"mesh\"\nmax_participants = 20\n", "must be 1..=8 for a mesh room");
        bad("[[chats]]\ngateway = \"nope\"\n", "line 2: chats[0].gateway: no [[gateways]] entry is named \"nope\"");
        bad("[[chats]]\nplatform = \"telegram\"\nchat = \"-1\"\nknock_notices = [\"ana\"]\n", "chats[0].knock_notices");
        bad("[[chats]]\nplatform = \"telegram\"\nchat = \"-1\"\ncolour = \"red\"\n", "unknown field `colour`");
        let twice = "[[gateways]]\nname = \"a\"\nchats = [\n { platform = \"telegram\", chat = \"-1\" },\n { platform = \"telegram\", chat = \"-2\" },\n]\n\
                     [[gateways]]\nname = \"b\"\nchats = [\n { platform = \"telegram\", chat = \"-3\" },\n { platform = \"telegram\", chat = \"-1\" },\n]\n";
        bad(twice, "line 11: gateways[1].chats[1]: telegram -1 is already in gateway \"a\"");
    }
}
