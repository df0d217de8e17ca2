//! Commands typed in a chat, and the one parser every adapter shares.

/// The kind of room a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Video,
    Voice,
}

impl Kind {
    /// `video`, `voice` (or `audio`), any case.
    pub fn parse(word: &str) -> Option<Kind> {
        match word.to_ascii_lowercase().as_str() {
            "video" => Some(Kind::Video),
            "voice" | "audio" => Some(Kind::Voice),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Video => "video",
            Kind::Voice => "voice",
        }
    }
}

/// When a scheduled call starts, as typed after `/call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// `in 30m`, `in 2h`, `in 1h30m`: that long from now.
    In(std::time::Duration),
    /// `at 18:00` (the next time the chat's clock shows it), `today 17:30`, `tomorrow 9:00`
    /// (`at` may follow the day), in the chat's time zone.
    At { day: Day, hour: u8, minute: u8 },
}

/// Which day a clock time of [`StartAt::At`] falls on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Day {
    /// Today if that time is still ahead, else tomorrow.
    Next,
    Today,
    Tomorrow,
}

/// The longest `in …` a call may be scheduled ahead.
pub const MOST_AHEAD: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

impl StartAt {
    /// Reads a schedule from the start of `words`: `in 30m`, `at 18:00`, `tomorrow 9:00`,
    /// `today at 6pm`. Returns it and the words after it.
    pub fn parse(words: &str) -> Option<(StartAt, &str)> {
        let (first, rest) = split_word(words);
        match first.to_ascii_lowercase().as_str() {
            "in" => {
                let (span, rest) = split_word(rest);
                // Whole seconds: a start needs no finer grain, and the command then reads
                // back from its canonical form (`in 1.0002m` is `in 60s`).
                let d = humantime::parse_duration(span)
                    .ok()
                    .map(|d| std::time::Duration::from_secs(d.as_secs()))
                    .filter(|d| *d >= std::time::Duration::from_secs(60) && *d <= MOST_AHEAD)?;
                Some((StartAt::In(d), rest))
            }
            "at" => {
                let (time, rest) = split_word(rest);
                let (hour, minute) = clock_time(time)?;
                Some((StartAt::At { day: Day::Next, hour, minute }, rest))
            }
            day @ ("today" | "tomorrow") => {
                let day = if day == "today" { Day::Today } else { Day::Tomorrow };
                let (word, after) = split_word(rest);
                let (time, rest) = if word.eq_ignore_ascii_case("at") { split_word(after) } else { (word, after) };
                let (hour, minute) = clock_time(time)?;
                Some((StartAt::At { day, hour, minute }, rest))
            }
            _ => None,
        }
    }
}

/// The first word of `s` and the rest, trimmed.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// `18:00`, `9:05`, `9`, `18h`, `9am`, `6:30pm`, `12pm` (noon): hour and minute.
fn clock_time(word: &str) -> Option<(u8, u8)> {
    let w = word.to_ascii_lowercase();
    let (w, half) = match (w.strip_suffix("am"), w.strip_suffix("pm")) {
        (Some(t), _) => (t.to_owned(), Some(false)),
        (_, Some(t)) => (t.to_owned(), Some(true)),
        _ => (w.strip_suffix('h').map(str::to_owned).unwrap_or(w), None),
    };
    let (h, m) = match w.split_once(':') {
        Some((h, m)) if m.len() == 2 => (h, m),
        Some(_) => return None,
        None => (w.as_str(), "0"),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return None;
    }
    let (mut hour, minute): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    if let Some(pm) = half {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = (hour % 12) + if pm { 12 } else { 0 };
    }
    (hour < 24 && minute < 60).then_some((hour, minute))
}

/// The word after `/call` that asks for a private room: a browser-to-browser mesh of at most
/// 8 people, whose media never passes through the server.
pub const PRIVATE_WORD: &str = "private";

/// A chat command, platform-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/call [voice|video] [private] [ring] [in 30m | at 18:00 | tomorrow 9:00] [title]`:
    /// mint a room (`private`: a mesh) and post its join card; `ring` rings the chat's
    /// opted-in members (at once, or at the start of a scheduled call).
    Call { kind: Option<Kind>, title: Option<String>, mesh: bool, ring: bool, at: Option<StartAt> },
    /// `/lock`: refuse new joiners in the chat's latest open room.
    Lock,
    /// `/unlock`: let new joiners in again.
    Unlock,
    /// `/end`: end the chat's latest open room for everyone.
    End,
    /// `/who`: who is in the chat's latest open room.
    Who,
    /// `/admit NAME`: admit a pending request to join.
    Admit { name: String },
    /// `/deny NAME`: deny a pending request to join.
    Deny { name: String },
    /// `/ringme [on|off]`: whether the sender is rung for this chat's calls (no word: toggles).
    RingMe { on: Option<bool> },
    /// `/ring [@name …] [message]`: ring the named people, or every opted-in member of the
    /// chat not in the call, into the chat's open call.
    Ring { targets: Vec<String>, message: Option<String> },
    /// `/unring [@name …]`: take back the rings of the named people (none named: every ring
    /// of the sender's still unanswered). The host may take back anyone's.
    Unring { targets: Vec<String> },
    /// `/calls`: the chat's call log.
    Calls,
    /// `/notify [on|off]`: the host hears privately who arrives in their call.
    Notify { on: Option<bool> },
    /// `/help`: what the bot does.
    Help,
}

impl Command {
    /// The command's name, as typed after the prefix (a metrics label).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Call { .. } => "call",
            Command::Lock => "lock",
            Command::Unlock => "unlock",
            Command::End => "end",
            Command::Who => "who",
            Command::Admit { .. } => "admit",
            Command::Deny { .. } => "deny",
            Command::RingMe { .. } => "ringme",
            Command::Ring { .. } => "ring",
            Command::Unring { .. } => "unring",
            Command::Calls => "calls",
            Command::Notify { .. } => "notify",
            Command::Help => "help",
        }
    }

    /// Whether the command is about a group's members, and means nothing in a private chat.
    pub fn in_group_only(&self) -> bool {
        matches!(self, Command::RingMe { .. } | Command::Ring { .. } | Command::Unring { .. })
    }

    /// Whether the core may need to know if the sender administers the chat: the host powers,
    /// taking back others' rings, and `/call` (a chat's policy may keep calls to its admins).
    /// The core decides; an adapter asks the platform only for these, since that question
    /// costs a request.
    pub fn asks_admin(&self) -> bool {
        matches!(
            self,
            Command::Lock
                | Command::Unlock
                | Command::End
                | Command::Admit { .. }
                | Command::Deny { .. }
                | Command::Notify { .. }
                | Command::Unring { .. }
                | Command::Call { .. }
        )
    }
}

/// A command as a chat's menu lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// What follows the prefix (`call`).
    pub name: &'static str,
    /// The arguments it takes, as help shows them (`[voice|video] [title]`), or empty.
    pub usage: &'static str,
    /// One line on what it does (at most 100 characters: Discord's limit).
    pub description: &'static str,
}

/// The commands every platform's menu shows, in order: the one source of Telegram's
/// `setMyCommands`, Discord's registration and the bridge's help.
pub const MENU: &[CommandInfo] = &[
    CommandInfo {
        name: "call",
        usage: "[voice|video] [private] [ring] [in 30m|at 18:00|tomorrow 9:00] [title]",
        description: "Start a call, or schedule one, and post its join card (ring: ring people)",
    },
    CommandInfo { name: "lock", usage: "", description: "Stop new people joining the call (host or admins)" },
    CommandInfo { name: "unlock", usage: "", description: "Let new people join the call again" },
    CommandInfo { name: "end", usage: "", description: "End the call for everyone (host or admins)" },
    CommandInfo { name: "who", usage: "", description: "Who is in the call" },
    CommandInfo { name: "ringme", usage: "[on|off]", description: "Be rung privately when someone rings this chat's call" },
    CommandInfo { name: "ring", usage: "[@name …] [message]", description: "Ring people into the call: the named ones, or everyone who asked to be rung" },
    CommandInfo { name: "unring", usage: "[@name …]", description: "Take back rings you made (the host: anyone's)" },
    CommandInfo { name: "calls", usage: "", description: "This chat's calls: open ones with their links, and the last ended" },
    CommandInfo { name: "notify", usage: "[on|off]", description: "Hear privately who arrives in your call (host)" },
    CommandInfo { name: "help", usage: "", description: "What this bot does" },
];

/// The word after `/call` that rings the chat's opted-in members at once.
pub const RING_WORD: &str = "ring";

/// Most people one `/ring` names (more are ignored).
pub const MAX_RING_TARGETS: usize = 20;

/// The leading words that name people (`@ada`, a Discord `<@123>`, a Matrix
/// `@ada:example.org`), at most [`MAX_RING_TARGETS`], and the rest.
fn mentions(args: &str) -> (Vec<String>, &str) {
    let mut targets = Vec::new();
    let mut rest = args;
    while rest.starts_with('@') || rest.starts_with("<@") {
        let (word, tail) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim_start()),
            None => (rest, ""),
        };
        if targets.len() < MAX_RING_TARGETS && word.len() > 1 {
            targets.push(word.to_owned());
        }
        rest = tail;
    }
    (targets, rest)
}

/// `on`, `off`, or nothing (`None`); any other word is not the command.
fn on_off(args: &str) -> Option<Option<bool>> {
    match args.to_ascii_lowercase().as_str() {
        "" => Some(None),
        "on" | "yes" => Some(Some(true)),
        "off" | "no" => Some(Some(false)),
        _ => None,
    }
}

/// Longest command text the parser looks at; anything longer is not a command.
const MAX_COMMAND_BYTES: usize = 4096;

/// Parses a chat message into a command.
///
/// `prefix` is what starts a command (`/` on Telegram and Discord, `!` or `/` on Matrix).
/// `bot_username`, when known, lets `/call@BotName` through and drops commands addressed to
/// another bot (`/call@OtherBot`), as Telegram groups with several bots expect. Returns `None`
/// for anything that is not one of our commands.
pub fn parse_command(text: &str, prefix: &str, bot_username: Option<&str>) -> Option<Command> {
    if prefix.is_empty() || text.len() > MAX_COMMAND_BYTES {
        return None;
    }
    let rest = text.trim_start().strip_prefix(prefix)?;
    let (head, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let name = match head.split_once('@') {
        Some((name, to)) => {
            let ours = bot_username.is_some_and(|me| me.trim_start_matches('@').eq_ignore_ascii_case(to));
            if !ours {
                return None;
            }
            name
        }
        None => head,
    };
    let single_arg = || Some(args.to_owned()).filter(|a| !a.is_empty());
    match name.to_ascii_lowercase().as_str() {
        "call" => {
            // Leading option words, in any order: a kind, `private` for a mesh room, `ring`, and
            // a start time.
            let (mut kind, mut mesh, mut ring, mut at, mut title) = (None, false, false, None, args);
            loop {
                let (first, tail) = split_word(title);
                if let (None, Some(k)) = (kind, Kind::parse(first)) {
                    kind = Some(k);
                } else if !mesh && first.eq_ignore_ascii_case(PRIVATE_WORD) {
                    mesh = true;
                } else if !ring && first.eq_ignore_ascii_case(RING_WORD) {
                    ring = true;
                } else if let (None, Some((when, rest))) = (at, StartAt::parse(title)) {
                    at = Some(when);
                    title = rest;
                    continue;
                } else {
                    break;
                }
                title = tail;
            }
            let title = Some(title.trim().to_owned()).filter(|t| !t.is_empty());
            Some(Command::Call { kind, title, mesh, ring, at })
        }
        "ringme" => Some(Command::RingMe { on: on_off(args)? }),
        "notify" => Some(Command::Notify { on: on_off(args)? }),
        "ring" => {
            let (targets, rest) = mentions(args);
            let message = Some(rest.trim().to_owned()).filter(|m| !m.is_empty());
            Some(Command::Ring { targets, message })
        }
        "unring" => Some(Command::Unring { targets: mentions(args).0 }),
        "calls" => Some(Command::Calls),
        "lock" => Some(Command::Lock),
        "unlock" => Some(Command::Unlock),
        "end" => Some(Command::End),
        "who" => Some(Command::Who),
        "admit" => Some(Command::Admit { name: single_arg()? }),
        "deny" => Some(Command::Deny { name: single_arg()? }),
        "help" | "start" => Some(Command::Help),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Option<Command> {
        parse_command(text, "/", Some("CallBot"))
    }

    #[test]
    fn call_with_kind_and_title() {
        assert_eq!(p("/call"), Some(Command::Call { kind: None, title: None, mesh: false, ring: false, at: None }));
        assert_eq!(p("/call Standup"), Some(Command::Call { kind: None, title: Some("Standup".into()), mesh: false, ring: false, at: None }));
        assert_eq!(
            p("/call voice Daily standup "),
            Some(Command::Call { kind: Some(Kind::Voice), title: Some("Daily standup".into()), mesh: false, ring: false, at: None })
        );
        assert_eq!(p("/call VIDEO"), Some(Command::Call { kind: Some(Kind::Video), title: None, mesh: false, ring: false, at: None }));
        assert_eq!(p("/CALL Audio x"), Some(Command::Call { kind: Some(Kind::Voice), title: Some("x".into()), mesh: false, ring: false, at: None }));
        assert_eq!(p("/call videogames"), Some(Command::Call { kind: None, title: Some("videogames".into()), mesh: false, ring: false, at: None }));
        assert_eq!(p("/call private"), Some(Command::Call { kind: None, title: None, mesh: true, ring: false, at: None }));
        assert_eq!(
            p("/call Voice PRIVATE Family"),
            Some(Command::Call { kind: Some(Kind::Voice), title: Some("Family".into()), mesh: true, ring: false, at: None })
        );
        assert_eq!(
            p("/call private video private"),
            Some(Command::Call { kind: Some(Kind::Video), title: Some("private".into()), mesh: true, ring: false, at: None })
        );
    }

    #[test]
    fn ringing_commands() {
        assert_eq!(p("/ringme"), Some(Command::RingMe { on: None }));
        assert_eq!(p("/ringme OFF"), Some(Command::RingMe { on: Some(false) }));
        assert_eq!(p("/notify on"), Some(Command::Notify { on: Some(true) }));
        assert_eq!(p("/ring"), Some(Command::Ring { targets: vec![], message: None }));
        assert_eq!(p("/ring  come now "), Some(Command::Ring { targets: vec![], message: Some("come now".into()) }));
        assert_eq!(
            p("/ring @ada <@123> @bob:example.org join us @later"),
            Some(Command::Ring {
                targets: vec!["@ada".into(), "<@123>".into(), "@bob:example.org".into()],
                message: Some("join us @later".into())
            })
        );
        assert_eq!(p("/ring @ <b>hi</b>"), Some(Command::Ring { targets: vec![], message: Some("<b>hi</b>".into()) }));
        let many = format!("/ring {}", "@x ".repeat(50));
        let Some(Command::Ring { targets, message: None }) = p(&many) else { panic!("{many}") };
        assert_eq!(targets.len(), MAX_RING_TARGETS);
        assert_eq!(p("/call ring video Standup"), Some(Command::Call { kind: Some(Kind::Video), title: Some("Standup".into()), mesh: false, ring: true, at: None }));
        assert_eq!(p("/calls"), Some(Command::Calls));
    }

    #[test]
    fn scheduled_calls() {
        use std::time::Duration;
        let at = |text: &str| match p(text) {
            Some(Command::Call { at, title, .. }) => (at, title),
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(at("/call in 30m Standup"), (Some(StartAt::In(Duration::from_secs(1800))), Some("Standup".into())));
        assert_eq!(at("/call in 1h30m"), (Some(StartAt::In(Duration::from_secs(5400))), None));
        assert_eq!(at("/call in 1.5m"), (Some(StartAt::In(Duration::from_secs(90))), None));
        assert_eq!(at("/call in 1.000222222m"), (Some(StartAt::In(Duration::from_secs(60))), None), "whole seconds");
        assert_eq!(at("/call at 18:00 Standup"), (Some(StartAt::At { day: Day::Next, hour: 18, minute: 0 }), Some("Standup".into())));
        assert_eq!(at("/call tomorrow 9:05 x"), (Some(StartAt::At { day: Day::Tomorrow, hour: 9, minute: 5 }), Some("x".into())));
        assert_eq!(at("/call today at 6:30pm"), (Some(StartAt::At { day: Day::Today, hour: 18, minute: 30 }), None));
        assert_eq!(at("/call voice ring at 12am Night"), (Some(StartAt::At { day: Day::Next, hour: 0, minute: 0 }), Some("Night".into())));
        assert_eq!(at("/call at 9h"), (Some(StartAt::At { day: Day::Next, hour: 9, minute: 0 }), None));
        // Not a time: the words are the title.
        for text in ["/call in person", "/call at home", "/call at 25:00", "/call at 9:5", "/call in 10s", "/call in 90d", "/call tomorrow", "/call at 13pm"] {
            assert_eq!(at(text).0, None, "{text}");
        }
        assert_eq!(at("/call at 9:5").1, Some("at 9:5".into()));
        assert_eq!(p("/unring @ada <@1>"), Some(Command::Unring { targets: vec!["@ada".into(), "<@1>".into()] }));
        assert_eq!(p("/unring"), Some(Command::Unring { targets: vec![] }));
    }

    #[test]
    fn addressed_commands() {
        assert_eq!(p("/call@CallBot Standup"), Some(Command::Call { kind: None, title: Some("Standup".into()), mesh: false, ring: false, at: None }));
        assert_eq!(p("/lock@callbot"), Some(Command::Lock));
        assert_eq!(p("/lock@OtherBot"), None);
        assert_eq!(parse_command("/lock@CallBot", "/", None), None);
        assert_eq!(p("/lock@"), None);
    }

    #[test]
    fn other_commands() {
        assert_eq!(p("/lock"), Some(Command::Lock));
        assert_eq!(p("/unlock"), Some(Command::Unlock));
        assert_eq!(p(" /end"), Some(Command::End));
        assert_eq!(p("/who"), Some(Command::Who));
        assert_eq!(p("/help"), Some(Command::Help));
        assert_eq!(p("/start"), Some(Command::Help));
        assert_eq!(p("/admit  Ada Lovelace "), Some(Command::Admit { name: "Ada Lovelace".into() }));
        assert_eq!(p("/deny Bob"), Some(Command::Deny { name: "Bob".into() }));
        assert_eq!(p("/admit"), None);
        assert_eq!(parse_command("!call x", "!", None), Some(Command::Call { kind: None, title: Some("x".into()), mesh: false, ring: false, at: None }));
    }

    #[test]
    fn the_menu_parses_and_names_the_host_commands() {
        for info in MENU {
            let text = format!("/{}", info.name);
            assert!(p(&text).is_some(), "{text}");
            assert!(info.description.len() <= 100, "{}", info.name);
        }
        assert!(p("/lock").unwrap().asks_admin() && p("/admit x").unwrap().asks_admin() && p("/call").unwrap().asks_admin());
        assert!(!p("/who").unwrap().asks_admin() && !p("/ringme").unwrap().asks_admin());
    }

    #[test]
    fn not_commands() {
        for text in ["", "/", "call", "hello /call", "/callz", "/unknown", "/ringme maybe", "//call", "/ call", "!call"] {
            assert_eq!(p(text), None, "{text:?}");
        }
        assert_eq!(parse_command("/call", "", None), None);
    }

    #[test]
    fn hostile_input_is_data() {
        let t = p("/call <b>x</b> & \"y\"").unwrap();
        assert_eq!(t, Command::Call { kind: None, title: Some("<b>x</b> & \"y\"".into()), mesh: false, ring: false, at: None });
        assert_eq!(p(&format!("/call {}", "x".repeat(5000))), None);
        assert_eq!(p("/call\u{0}\u{202e}"), None);
        // Multi-byte characters around the split points never panic.
        for text in ["/call é", "/callé", "/call\u{3000}voice\u{3000}ü", "/é", "/call@é", "/admit 😀"] {
            let _ = p(text);
        }
        assert_eq!(p("/call\nvoice\ntitle"), Some(Command::Call { kind: Some(Kind::Voice), title: Some("title".into()), mesh: false, ring: false, at: None }));
    }
}
