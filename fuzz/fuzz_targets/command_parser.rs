//! Fuzzes the chat command parser every adapter shares.
//!
//! Input: the first byte picks the prefix (bits 0–1) and the bot's username (bits 2–3); the
//! rest is the message text (invalid UTF-8 is replaced, as a chat platform would hand us text).
//! Beyond "never panics", it checks what `parse_command` promises its callers.
#![no_main]

use callbridge_chat::{Command, Day, Kind, MAX_RING_TARGETS, PRIVATE_WORD, RING_WORD, StartAt, parse_command};
use libfuzzer_sys::fuzz_target;

/// `""` must always give `None`; `"ü"` is a multi-byte prefix (split points off ASCII).
const PREFIXES: [&str; 4] = ["/", "!", "", "ü"];
const BOTS: [Option<&str>; 4] = [None, Some("CallbridgeBot"), Some("@CallbridgeBot"), Some("callbridgebot")];
const MAX_COMMAND_BYTES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, text)) = data.split_first() else { return };
    let prefix = PREFIXES[usize::from(choice & 3)];
    let bot = BOTS[usize::from((choice >> 2) & 3)];
    let text = String::from_utf8_lossy(text);
    check(&text, prefix, bot);
});

fn check(text: &str, prefix: &str, bot: Option<&str>) {
    let parsed = parse_command(text, prefix, bot);

    // Leading whitespace never matters (chat clients add it), within the length bound.
    if text.len() < MAX_COMMAND_BYTES {
        assert_eq!(parse_command(&format!(" {text}"), prefix, bot), parsed, "leading space changed {text:?}");
    }

    let Some(command) = parsed else { return };
    assert!(!prefix.is_empty(), "an empty prefix parsed {text:?}");
    assert!(text.len() <= MAX_COMMAND_BYTES, "over-long text parsed");
    let rest = text.trim_start().strip_prefix(prefix).unwrap_or_else(|| panic!("{text:?} parsed without the prefix"));

    // A command addressed to a bot (`/cmd@Name`) parses only when Name is ours.
    let head = rest.split(char::is_whitespace).next().unwrap_or("");
    if let Some((_, to)) = head.split_once('@') {
        let me = bot.unwrap_or_else(|| panic!("{text:?} addressed to @{to} parsed with no bot name"));
        assert!(me.trim_start_matches('@').eq_ignore_ascii_case(to), "{text:?} is for another bot than {me}");
    }

    // Arguments are the user's text, trimmed, never empty, never rewritten.
    let arg_ok = |a: &str| !a.is_empty() && a == a.trim() && text.contains(a);
    let mention = |w: &str| w.starts_with('@') || w.starts_with("<@");
    let targets_ok = |targets: &[String]| {
        assert!(targets.len() <= MAX_RING_TARGETS, "{} targets from {text:?}", targets.len());
        for t in targets {
            assert!(mention(t) && t.len() > 1 && !t.contains(char::is_whitespace) && text.contains(t.as_str()), "bad target {t:?} from {text:?}");
        }
    };
    match &command {
        Command::Call { kind, title, mesh, ring, at } => {
            if let Some(t) = title {
                assert!(arg_ok(t), "bad title {t:?} from {text:?}");
                // Had the first word been a kind (or `private`), it would have been taken as one.
                let first = t.split(char::is_whitespace).next().unwrap_or("");
                if kind.is_none() {
                    assert_eq!(Kind::parse(first), None, "kind word left in the title of {text:?}");
                }
                if !mesh {
                    assert!(!first.eq_ignore_ascii_case(PRIVATE_WORD), "`private` left in the title of {text:?}");
                }
                if !ring {
                    assert!(!first.eq_ignore_ascii_case(RING_WORD), "`ring` left in the title of {text:?}");
                }
                if at.is_none() {
                    assert!(StartAt::parse(t).is_none(), "a start time left in the title of {text:?}");
                }
            }
        }
        Command::Admit { name } | Command::Deny { name } => assert!(arg_ok(name), "bad name {name:?} from {text:?}"),
        Command::Ring { targets, message } => {
            targets_ok(targets);
            if let Some(m) = message {
                // Every leading @-word was taken as a person (or dropped past the limit).
                assert!(arg_ok(m) && !mention(m), "bad message {m:?} from {text:?}");
            }
        }
        Command::Unring { targets } => targets_ok(targets),
        Command::Lock | Command::Unlock | Command::End | Command::Who | Command::Help => {}
        Command::RingMe { .. } | Command::Notify { .. } | Command::Calls => {}
    }

    // The canonical spelling of a parsed command parses back to the same command, when it fits
    // the length bound: it may be longer than what was typed (`in 2m` is `in 120s`), and a
    // text over the bound is refused whatever it says.
    let canonical = render(&command, prefix);
    let expected = (canonical.len() <= MAX_COMMAND_BYTES).then(|| command.clone());
    assert_eq!(
        parse_command(&canonical, prefix, None),
        expected,
        "{text:?} parsed to {command:?}, but its canonical form {canonical:?} does not"
    );
}

fn on_off(on: Option<bool>) -> &'static str {
    match on {
        None => "",
        Some(true) => " on",
        Some(false) => " off",
    }
}

/// How a user would type `command` (the crate has no renderer; this is the documented syntax).
fn render(command: &Command, prefix: &str) -> String {
    let word = |w: &str| format!("{prefix}{w}");
    match command {
        Command::Call { kind, title, mesh, ring, at } => {
            let when = at.map(|at| match at {
                StartAt::In(d) => format!("in {}s", d.as_secs()),
                StartAt::At { day, hour, minute } => {
                    let day = match day {
                        Day::Next => "at",
                        Day::Today => "today",
                        Day::Tomorrow => "tomorrow",
                    };
                    format!("{day} {hour:02}:{minute:02}")
                }
            });
            let parts = [kind.map(Kind::as_str), mesh.then_some(PRIVATE_WORD), ring.then_some(RING_WORD), when.as_deref(), title.as_deref()];
            std::iter::once(word("call")).chain(parts.into_iter().flatten().map(str::to_owned)).collect::<Vec<_>>().join(" ")
        }
        Command::RingMe { on } => format!("{}{}", word("ringme"), on_off(*on)),
        Command::Notify { on } => format!("{}{}", word("notify"), on_off(*on)),
        Command::Calls => word("calls"),
        Command::Ring { targets, message } => {
            std::iter::once(word("ring")).chain(targets.iter().cloned()).chain(message.clone()).collect::<Vec<_>>().join(" ")
        }
        Command::Unring { targets } => std::iter::once(word("unring")).chain(targets.iter().cloned()).collect::<Vec<_>>().join(" "),
        Command::Lock => word("lock"),
        Command::Unlock => word("unlock"),
        Command::End => word("end"),
        Command::Who => word("who"),
        Command::Help => word("help"),
        Command::Admit { name } => format!("{} {name}", word("admit")),
        Command::Deny { name } => format!("{} {name}", word("deny")),
    }
}
