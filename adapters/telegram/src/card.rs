//! `Card` → Telegram HTML and inline keyboard.

pub use callbridge_chat::text::escape_html;
use callbridge_chat::{Card, CardAction, CardStatus, Prompt, human_seconds};
use std::fmt::Write;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

/// Telegram refuses a message over 4096 characters (counted after entity parsing, in UTF-16
/// units); the lists of names stop well before that, so a full room of long names still posts.
const LIST_BUDGET: usize = 2800;

fn within_budget(items: impl ExactSizeIterator<Item = String>, sep: &str, budget: usize) -> String {
    callbridge_chat::text::within_budget(items, sep, budget, visible_len)
}

/// Length as Telegram counts it: UTF-16 units of the text once tags and entities are parsed.
fn visible_len(html: &str) -> usize {
    let (mut n, mut in_tag, mut in_entity) = (0, false, false);
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            '&' => {
                in_entity = true;
                n += 1;
            }
            ';' if in_entity => in_entity = false,
            _ if in_entity => {}
            c => n += c.len_utf16(),
        }
    }
    n
}

/// The card's text. Every user string goes through [`escape_html`].
pub fn render_html(card: &Card) -> String {
    let e = escape_html;
    let (kind, icon) = (card.kind_label(), card.icon());
    let mut s = String::new();
    let title = card.title.as_deref().map(e).unwrap_or_else(|| kind.to_owned());
    let _ = writeln!(s, "{icon} <b>{title}</b>");
    let host = card.host_name.as_deref().map(e);
    match host {
        Some(h) => {
            let _ = writeln!(s, "{kind} hosted by {h}");
        }
        None => {
            let _ = writeln!(s, "{kind}");
        }
    }
    let _ = writeln!(s, "{}", card.route_line());
    let status = match card.status {
        CardStatus::Open => "🟢 Open",
        CardStatus::Locked => "🔒 Locked — no new joiners",
        CardStatus::Full => "⛔ Full",
        CardStatus::Ended => "⚫ Ended",
        CardStatus::Expired => "⚫ Expired",
    };
    let _ = writeln!(s, "{status}");
    if let (Some((_, when)), false) = (&card.starts, card.status.is_over()) {
        let _ = writeln!(s, "🕒 Starts {}", e(when));
    }
    if let Some(attendance) = &card.attendance {
        if attendance.is_empty() {
            let _ = write!(s, "\nNobody joined.");
        } else {
            let _ = writeln!(s, "\n<b>Attendance</b> ({}):", attendance.len());
            let lines = attendance
                .iter()
                .map(|a| format!("• {} — joined {} UTC, {}", e(&a.name), e(&a.joined), human_seconds(a.seconds)));
            let _ = writeln!(s, "{}", within_budget(lines, "\n", LIST_BUDGET));
        }
        return s.trim_end().to_owned();
    }
    if card.present.is_empty() {
        let _ = writeln!(s, "\nNobody is in yet.");
    } else {
        let names = within_budget(card.present.iter().map(|n| e(n)), ", ", LIST_BUDGET);
        let _ = writeln!(s, "\n<b>In the call ({}):</b> {names}", card.present.len());
    }
    if card.entered > card.present.len() {
        let _ = writeln!(s, "{} joined so far", card.entered);
    }
    if !card.knocks.is_empty() {
        let names = within_budget(card.knocks.iter().map(|k| format!("{} (#{})", e(&k.name), k.code())), ", ", 600);
        let _ = writeln!(s, "\n✋ <b>Asking to join:</b> {names}");
    }
    if !card.ringing.is_empty() {
        let names = within_budget(card.ringing.iter().map(|r| format!("{} {}", e(&r.name), r.state.label())), ", ", 600);
        let _ = writeln!(s, "\n<b>Ringing:</b> {names}");
    }
    let _ = write!(s, "\n{}", e(&card.link));
    s.trim_end().to_owned()
}

/// The card's buttons: Join (a URL button) and Join as me (a personal link, sent privately),
/// Lock/Unlock and End, Admit/Deny per knock. An ended card has none.
pub fn render_keyboard(card: &Card) -> InlineKeyboardMarkup {
    if card.status.is_over() {
        return InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("📞 Call again", CardAction::CallAgain.encode())]]);
    }
    let mut rows = Vec::new();
    if let Ok(url) = url::Url::parse(&card.link) {
        rows.push(vec![
            InlineKeyboardButton::url("Join", url),
            InlineKeyboardButton::callback("🙋 Join as me", CardAction::JoinAsMe.encode()),
        ]);
    }
    let lock = match card.status {
        CardStatus::Locked => InlineKeyboardButton::callback("🔓 Unlock", CardAction::Unlock.encode()),
        _ => InlineKeyboardButton::callback("🔒 Lock", CardAction::Lock.encode()),
    };
    rows.push(vec![
        lock,
        InlineKeyboardButton::callback("End", CardAction::End.encode()),
        InlineKeyboardButton::callback("🔔 Ring me", CardAction::RingMe.encode()),
    ]);
    for knock in card.knocks.iter().take(10) {
        let name: String = knock.name.chars().take(24).collect();
        rows.push(vec![
            InlineKeyboardButton::callback(format!("✅ Admit {name}"), CardAction::Admit(knock.id.clone()).encode()),
            InlineKeyboardButton::callback(format!("✖ Deny {name}"), CardAction::Deny(knock.id.clone()).encode()),
        ]);
    }
    InlineKeyboardMarkup::new(rows)
}

/// A private prompt's buttons, side by side (none once it was answered).
pub fn prompt_keyboard(prompt: &Prompt) -> InlineKeyboardMarkup {
    let row: Vec<_> = prompt.buttons.iter().map(|(label, action)| InlineKeyboardButton::callback(label.chars().take(40).collect::<String>(), action.encode())).collect();
    if row.is_empty() { InlineKeyboardMarkup::default() } else { InlineKeyboardMarkup::new([row]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_chat::Kind;
    use callbridge_chat::{Attendance, Knock};

    fn card() -> Card {
        Card {
            room_id: "r".into(),
            title: Some("<b>Stand</b> & \"up\"".into()),
            host_name: Some("Ada <i>".into()),
            kind: Kind::Voice,
            private: false,
            status: CardStatus::Open,
            present: vec!["Bob & <Co>".into()],
            entered: 2,
            link: "http://127.0.0.1:8080/r/abc".into(),
            knocks: vec![Knock { id: "k1".into(), name: "<script>".into() }],
            attendance: None,
            ringing: Vec::new(),
            starts: None,
        }
    }

    #[test]
    fn user_strings_are_escaped() {
        let html = render_html(&card());
        assert!(html.contains("&lt;b&gt;Stand&lt;/b&gt; &amp; &quot;up&quot;"), "{html}");
        assert!(html.contains("Ada &lt;i&gt;"), "{html}");
        assert!(html.contains("Bob &amp; &lt;Co&gt;"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<i>") && !html.contains("<script>") && !html.contains("<b>Stand"));
    }

    #[test]
    fn keyboard_follows_status() {
        let k = render_keyboard(&card());
        assert_eq!(k.inline_keyboard.len(), 3);
        let mut ended = card();
        ended.status = CardStatus::Ended;
        ended.attendance = Some(vec![Attendance { name: "<b>x</b>".into(), joined: "12:00".into(), seconds: 61 }]);
        let again = render_keyboard(&ended).inline_keyboard;
        assert_eq!((again.len(), again[0].len()), (1, 1), "an ended card offers Call again alone");
        let html = render_html(&ended);
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt; — joined 12:00 UTC, 1m 01s"), "{html}");
    }

    #[test]
    fn a_full_room_of_long_names_stays_under_telegrams_limit() {
        let long = "<&>".repeat(21) + "x";
        let mut c = card();
        c.title = Some("t".repeat(200));
        c.present = (0..500).map(|i| format!("{long}{i}")).collect();
        c.knocks = (0..100).map(|i| Knock { id: format!("k{i}"), name: long.clone() }).collect();
        let html = render_html(&c);
        assert!(visible_len(&html) <= 4096, "{}", visible_len(&html));
        assert!(html.contains("In the call (500)") && html.contains("more"), "{html}");
        c.status = CardStatus::Ended;
        c.attendance = Some((0..500).map(|i| Attendance { name: format!("{long}{i}"), joined: "12:00".into(), seconds: 61 }).collect());
        let html = render_html(&c);
        assert!(visible_len(&html) <= 4096 && html.contains("Attendance</b> (500)") && html.contains("… and"), "{html}");
        assert_eq!(visible_len("a &amp; <b>é</b>😀"), 7);
    }
}
