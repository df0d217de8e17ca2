//! Fuzzes the chat command parser every adapter shares.
//!
//! Input: the first byte picks the prefix (bits 0–1) and the bot's username (bits 2–3); the
//! rest is the message text (invalid UTF-8 is replaced, as a chat platform would hand us text).
//! Beyond "never panics", it checks what `parse_command` promises its callers.
#![no_main]

use callbridge_chat::{Command, Kind, PRIVATE_WORD, parse_command};
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
    match &command {
        Command::Call { kind, title, mesh } => {
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
            }
        }
        Command::Admit { name } | Command::Deny { name } => assert!(arg_ok(name), "bad name {name:?} from {text:?}"),
        Command::Lock | Command::Unlock | Command::End | Command::Who | Command::Help => {}
    }

    // The canonical spelling of a parsed command parses back to the same command.
    let canonical = render(&command, prefix);
    assert_eq!(
        parse_command(&canonical, prefix, None),
        Some(command.clone()),
        "{text:?} parsed to {command:?}, but its canonical form {canonical:?} does not"
    );
}

/// How a user would type `command` (the crate has no renderer; this is the documented syntax).
fn render(command: &Command, prefix: &str) -> String {
    let word = |w: &str| format!("{prefix}{w}");
    match command {
        Command::Call { kind, title, mesh } => {
            let mut s = word("call");
            for part in [kind.map(Kind::as_str), mesh.then_some(PRIVATE_WORD), title.as_deref()].into_iter().flatten() {
                s.push(' ');
                s.push_str(part);
            }
            s
        }
        Command::Lock => word("lock"),
        Command::Unlock => word("unlock"),
        Command::End => word("end"),
        Command::Who => word("who"),
        Command::Help => word("help"),
        Command::Admit { name } => format!("{} {name}", word("admit")),
        Command::Deny { name } => format!("{} {name}", word("deny")),
    }
}
