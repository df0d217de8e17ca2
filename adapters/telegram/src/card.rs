//! `Card` → Telegram HTML and inline keyboard.

use callbridge_chat::{Card, CardAction, CardStatus, Kind, human_seconds};
use std::fmt::Write;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

/// Escapes text for Telegram's HTML parse mode (`<`, `>`, `&`, `"`).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The card's text. Every user string goes through [`escape_html`].
pub fn render_html(card: &Card) -> String {
    let e = escape_html;
    let kind = match card.kind {
        Kind::Video => "Video call",
        Kind::Voice => "Voice call",
    };
    let icon = match card.kind {
        Kind::Video => "🎥",
        Kind::Voice => "🎙",
    };
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
    let status = match card.status {
        CardStatus::Open => "🟢 Open",
        CardStatus::Locked => "🔒 Locked — no new joiners",
        CardStatus::Full => "⛔ Full",
        CardStatus::Ended => "⚫ Ended",
        CardStatus::Expired => "⚫ Expired",
    };
    let _ = writeln!(s, "{status}");
    if let Some(attendance) = &card.attendance {
        if attendance.is_empty() {
            let _ = write!(s, "\nNobody joined.");
        } else {
            let _ = writeln!(s, "\n<b>Attendance</b> ({}):", attendance.len());
            for a in attendance {
                let _ = writeln!(s, "• {} — joined {} UTC, {}", e(&a.name), e(&a.joined), human_seconds(a.seconds));
            }
        }
        return s.trim_end().to_owned();
    }
    if card.present.is_empty() {
        let _ = writeln!(s, "\nNobody is in yet.");
    } else {
        let names: Vec<String> = card.present.iter().map(|n| e(n)).collect();
        let _ = writeln!(s, "\n<b>In the call ({}):</b> {}", card.present.len(), names.join(", "));
    }
    if card.entered > card.present.len() {
        let _ = writeln!(s, "{} joined so far", card.entered);
    }
    if !card.knocks.is_empty() {
        let names: Vec<String> = card.knocks.iter().map(|k| e(&k.name)).collect();
        let _ = writeln!(s, "\n✋ <b>Asking to join:</b> {}", names.join(", "));
    }
    let _ = write!(s, "\n{}", e(&card.link));
    s.trim_end().to_owned()
}

/// The card's buttons: Join (a URL button), Lock/Unlock and End, Admit/Deny per knock. An
/// ended card has none.
pub fn render_keyboard(card: &Card) -> InlineKeyboardMarkup {
    if card.status.is_over() {
        return InlineKeyboardMarkup::default();
    }
    let mut rows = Vec::new();
    if let Ok(url) = url::Url::parse(&card.link) {
        rows.push(vec![InlineKeyboardButton::url("Join", url)]);
    }
    let lock = match card.status {
        CardStatus::Locked => InlineKeyboardButton::callback("🔓 Unlock", CardAction::Unlock.encode()),
        _ => InlineKeyboardButton::callback("🔒 Lock", CardAction::Lock.encode()),
    };
    rows.push(vec![lock, InlineKeyboardButton::callback("End", CardAction::End.encode())]);
    for knock in card.knocks.iter().take(10) {
        let name: String = knock.name.chars().take(24).collect();
        rows.push(vec![
            InlineKeyboardButton::callback(format!("✅ Admit {name}"), CardAction::Admit(knock.id.clone()).encode()),
            InlineKeyboardButton::callback(format!("✖ Deny {name}"), CardAction::Deny(knock.id.clone()).encode()),
        ]);
    }
    InlineKeyboardMarkup::new(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_chat::{Attendance, Knock};

    fn card() -> Card {
        Card {
            room_id: "r".into(),
            title: Some("<b>Stand</b> & \"up\"".into()),
            host_name: Some("Ada <i>".into()),
            kind: Kind::Voice,
            status: CardStatus::Open,
            present: vec!["Bob & <Co>".into()],
            entered: 2,
            link: "http://127.0.0.1:8080/r/abc".into(),
            knocks: vec![Knock { id: "k1".into(), name: "<script>".into() }],
            attendance: None,
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
        assert!(render_keyboard(&ended).inline_keyboard.is_empty());
        let html = render_html(&ended);
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt; — joined 12:00 UTC, 1m 01s"), "{html}");
    }
}
