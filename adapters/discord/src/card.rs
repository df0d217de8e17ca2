//! `Card` → a Discord message: one embed and button rows.
//!
//! Embeds render Markdown, so every user string is escaped ([`escape_markdown`]); mentions
//! never ping because every message the bot sends carries empty `allowed_mentions`.

use callbridge_chat::{Card, CardAction, CardStatus, Prompt, fill, human_seconds};
use serde_json::{Value, json};
use std::fmt::Write;

/// Discord's limit on an embed description is 4096 characters; lists stop well before.
const LIST_BUDGET: usize = 3000;
/// At most five action rows per message: one for Join/Lock/End, four for knocks.
const MAX_KNOCK_ROWS: usize = 4;

/// No `@everyone`, role or user pings from anything the bot sends.
pub fn no_mentions() -> Value {
    json!({"parse": []})
}

/// Escapes Discord Markdown in a user string, and breaks mention syntax. Links stay links: a
/// masked link needs `[…]`, which is escaped, and a bare URL is harmless.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            // A zero-width space after `@` keeps `@everyone` and `@here` from reading as mentions.
            '@' => out.push_str("@\u{200B}"),
            c => out.push(c),
        }
    }
    out
}

fn within_budget(items: impl ExactSizeIterator<Item = String>, sep: &str) -> String {
    callbridge_chat::text::within_budget(items, sep, LIST_BUDGET, |s| s.chars().count())
}

/// The card as a message body (`embeds`, `components`, `allowed_mentions`) for create or edit.
pub fn render(card: &Card) -> Value {
    let e = escape_markdown;
    let w = card.words();
    let (kind, icon) = (card.kind_label(), card.icon());
    let (status, color) = match card.status {
        CardStatus::Open => (w.open, 0x2ecc71),
        CardStatus::Locked => (w.locked, 0xe67e22),
        CardStatus::Full => (w.full, 0xe74c3c),
        CardStatus::Ended => (w.ended, 0x7f8c8d),
        CardStatus::Expired => (w.expired, 0x7f8c8d),
    };
    let mut d = String::new();
    match card.host_name.as_deref() {
        Some(h) => {
            let _ = writeln!(d, "{}", fill(w.hosted_by, &[("kind", kind), ("host", &format!("**{}**", e(h)))]));
        }
        None => {
            let _ = writeln!(d, "{kind}");
        }
    }
    let _ = writeln!(d, "{}", card.route_line());
    let _ = writeln!(d, "{status}");
    // Each reader sees the start in their own time zone.
    if let (Some((at, _)), false) = (&card.starts, card.status.is_over()) {
        let _ = writeln!(d, "{}", fill(w.starts, &[("when", &format!("<t:{at}:F> (<t:{at}:R>)"))]));
    }
    if let Some(attendance) = &card.attendance {
        if attendance.is_empty() {
            let _ = write!(d, "\n{}", w.nobody_joined);
        } else {
            let lines = attendance.iter().map(|a| {
                let when = fill(w.joined_at, &[("time", &e(&a.joined)), ("duration", &human_seconds(a.seconds))]);
                format!("• {} — {when}", e(&a.name))
            });
            let _ = write!(d, "\n**{}** ({}):\n{}", w.attendance, attendance.len(), within_budget(lines, "\n"));
        }
    } else {
        if card.present.is_empty() {
            let _ = writeln!(d, "\n{}", w.nobody_in);
        } else {
            let names = within_budget(card.present.iter().map(|n| e(n)), ", ");
            let _ = writeln!(d, "\n**{} ({}):** {names}", w.in_the_call, card.present.len());
        }
        if card.entered > card.present.len() {
            let _ = writeln!(d, "{}", fill(w.joined_so_far, &[("n", &card.entered.to_string())]));
        }
        if !card.knocks.is_empty() {
            let names = within_budget(card.knocks.iter().map(|k| format!("{} (#{})", e(&k.name), k.code())), ", ");
            let _ = writeln!(d, "\n✋ **{}:** {names}", w.asking);
        }
        if !card.ringing.is_empty() {
            let names = within_budget(card.ringing.iter().map(|r| format!("{} {}", e(&r.name), r.state.label(w))), ", ");
            let _ = writeln!(d, "\n**{}:** {names}", w.ringing);
        }
    }
    // The lists keep their own budgets; this keeps the whole under Discord's 4096.
    if d.chars().count() > 4000 {
        d = d.chars().take(3990).collect::<String>() + "…";
    }
    let title: String = card.title.as_deref().map(e).unwrap_or_else(|| kind.to_owned()).chars().take(240).collect();
    let mut embed = json!({
        "title": format!("{icon} {title}"),
        "description": d.trim_end(),
        "color": color,
    });
    if !card.status.is_over() {
        embed["url"] = json!(card.link);
    }
    json!({"embeds": [embed], "components": components(card), "allowed_mentions": no_mentions()})
}

fn button(label: &str, style: u8, action: &CardAction) -> Value {
    let label: String = label.chars().take(80).collect();
    json!({"type": 2, "style": style, "label": label, "custom_id": action.encode()})
}

/// Join (a link button), Join as me (a personal link under the presser's Discord name),
/// Lock/Unlock and End, then Admit/Deny per knock. None once it ended.
fn components(card: &Card) -> Value {
    let w = card.words();
    if card.status.is_over() {
        return json!([{"type": 1, "components": [button(w.call_again, 1, &CardAction::CallAgain)]}]);
    }
    let lock = match card.status {
        CardStatus::Locked => button(w.unlock, 2, &CardAction::Unlock),
        _ => button(w.lock, 2, &CardAction::Lock),
    };
    let mut rows = vec![json!({"type": 1, "components": [
        {"type": 2, "style": 5, "label": w.join, "url": card.link},
        button(w.join_as_me, 1, &CardAction::JoinAsMe),
        lock,
        button(w.end, 4, &CardAction::End),
        button(w.ring_me, 2, &CardAction::RingMe),
    ]})];
    for knock in card.knocks.iter().take(MAX_KNOCK_ROWS) {
        let name: String = knock.name.chars().take(40).collect();
        rows.push(json!({"type": 1, "components": [
            button(&fill(w.admit, &[("name", &name)]), 3, &CardAction::Admit(knock.id.clone())),
            button(&fill(w.deny, &[("name", &name)]), 4, &CardAction::Deny(knock.id.clone())),
        ]}));
    }
    Value::Array(rows)
}

/// A private prompt: its text as typed (Markdown escaped, no pings) and its buttons in a row.
pub fn prompt(prompt: &Prompt) -> Value {
    let text: String = escape_markdown(&prompt.text).chars().take(2000).collect();
    let buttons: Vec<Value> = prompt
        .buttons
        .iter()
        .map(|(label, action)| button(label, if *action == CardAction::Decline { 4 } else { 3 }, action))
        .collect();
    let components = if buttons.is_empty() { json!([]) } else { json!([{"type": 1, "components": buttons}]) };
    json!({"content": text, "components": components, "allowed_mentions": no_mentions()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_chat::Kind;
    use callbridge_chat::{Attendance, Knock};

    fn card() -> Card {
        Card {
            room_id: "r".into(),
            title: Some("**Stand** <@&1> up".into()),
            host_name: Some("@everyone [x](http://evil)".into()),
            kind: Kind::Video,
            private: false,
            status: CardStatus::Open,
            present: vec!["Bob_`code`".into()],
            entered: 2,
            link: "http://127.0.0.1:8080/r/abc".into(),
            knocks: vec![Knock { id: "k1".into(), name: "~~Eve~~".into() }],
            attendance: None,
            ringing: Vec::new(),
            starts: None,
            lang: Default::default(),
        }
    }

    #[test]
    fn user_strings_are_inert() {
        let v = render(&card());
        let d = v["embeds"][0]["description"].as_str().unwrap();
        assert!(d.contains("@\u{200B}everyone \\[x\\](http://evil)"), "{d}");
        assert!(d.contains("Bob\\_\\`code\\`"), "{d}");
        assert!(d.contains("\\~\\~Eve\\~\\~"), "{d}");
        assert_eq!(v["allowed_mentions"], json!({"parse": []}));
        assert_eq!(v["embeds"][0]["url"], "http://127.0.0.1:8080/r/abc");
    }

    #[test]
    fn buttons_follow_status_and_fit_discord_limits() {
        let mut c = card();
        c.knocks = (0..9).map(|i| Knock { id: format!("k{i}"), name: "n".repeat(100) }).collect();
        let v = render(&c);
        let rows = v["components"].as_array().unwrap();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0]["components"][0]["style"], 5);
        assert!(rows.iter().flat_map(|r| r["components"].as_array().unwrap()).all(|b| b["label"].as_str().unwrap().chars().count() <= 80));
        c.status = CardStatus::Ended;
        c.attendance = Some((0..300).map(|i| Attendance { name: format!("{}{i}", "a".repeat(60)), joined: "12:00".into(), seconds: 61 }).collect());
        let v = render(&c);
        assert_eq!(v["components"][0]["components"][0]["custom_id"], "again", "an ended card offers a new call");
        let d = v["embeds"][0]["description"].as_str().unwrap();
        assert!(d.chars().count() <= 4096 && d.contains("Attendance** (300)") && d.contains("… and"), "{}", d.len());
        let mut crowded = card();
        crowded.present = (0..300).map(|i| format!("{}{i}", "p".repeat(60))).collect();
        crowded.knocks = (0..300).map(|i| Knock { id: format!("k{i}"), name: "k".repeat(64) }).collect();
        crowded.host_name = Some("h".repeat(64));
        let d = render(&crowded)["embeds"][0]["description"].as_str().unwrap().to_owned();
        assert!(d.chars().count() <= 4096, "{}", d.chars().count());
    }
}
