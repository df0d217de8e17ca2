//! `Card` → Telegram HTML and inline keyboard.

pub use callbridge_chat::text::escape_html;
use callbridge_chat::{Card, CardAction, CardStatus, Prompt, fill, human_seconds};
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
    let w = card.words();
    let (kind, icon) = (card.kind_label(), card.icon());
    let mut s = String::new();
    let title = card.title.as_deref().map(e).unwrap_or_else(|| kind.to_owned());
    let _ = writeln!(s, "{icon} <b>{title}</b>");
    match card.host_name.as_deref().map(e) {
        Some(host) => {
            let _ = writeln!(s, "{}", fill(w.hosted_by, &[("kind", kind), ("host", &host)]));
        }
        None => {
            let _ = writeln!(s, "{kind}");
        }
    }
    let _ = writeln!(s, "{}", card.route_line());
    let status = match card.status {
        CardStatus::Open => w.open,
        CardStatus::Locked => w.locked,
        CardStatus::Full => w.full,
        CardStatus::Ended => w.ended,
        CardStatus::Expired => w.expired,
    };
    let _ = writeln!(s, "{status}");
    if let (Some((_, when)), false) = (&card.starts, card.status.is_over()) {
        let _ = writeln!(s, "{}", fill(w.starts, &[("when", &e(when))]));
    }
    if let Some(attendance) = &card.attendance {
        if attendance.is_empty() {
            let _ = write!(s, "\n{}", w.nobody_joined);
        } else {
            let _ = writeln!(s, "\n<b>{}</b> ({}):", w.attendance, attendance.len());
            let lines = attendance.iter().map(|a| {
                let when = fill(w.joined_at, &[("time", &e(&a.joined)), ("duration", &human_seconds(a.seconds))]);
                format!("• {} — {when}", e(&a.name))
            });
            let _ = writeln!(s, "{}", within_budget(lines, "\n", LIST_BUDGET));
        }
        return s.trim_end().to_owned();
    }
    if card.present.is_empty() {
        let _ = writeln!(s, "\n{}", w.nobody_in);
    } else {
        let names = within_budget(card.present.iter().map(|n| e(n)), ", ", LIST_BUDGET);
        let _ = writeln!(s, "\n<b>{} ({}):</b> {names}", w.in_the_call, card.present.len());
    }
    if card.entered > card.present.len() {
        let _ = writeln!(s, "{}", fill(w.joined_so_far, &[("n", &card.entered.to_string())]));
    }
    if !card.knocks.is_empty() {
        let names = within_budget(card.knocks.iter().map(|k| format!("{} (#{})", e(&k.name), k.code())), ", ", 600);
        let _ = writeln!(s, "\n✋ <b>{}:</b> {names}", w.asking);
    }
    if !card.ringing.is_empty() {
        let names = within_budget(card.ringing.iter().map(|r| format!("{} {}", e(&r.name), r.state.label(w))), ", ", 600);
        let _ = writeln!(s, "\n<b>{}:</b> {names}", w.ringing);
    }
    let _ = write!(s, "\n{}", e(&card.link));
    s.trim_end().to_owned()
}

/// Whether Telegram takes `url` as a link button: http(s) to a host with a dot in it (a
/// domain or an IPv4 address). `http://localhost:8080` gets 400 BUTTON_URL_INVALID.
pub fn link_button_accepted(url: &url::Url) -> bool {
    matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|host| host.contains('.') && !host.starts_with('['))
}

/// The card's buttons: Join (a URL button, where Telegram takes the link) and Join as me (a
/// personal link, sent privately), Lock/Unlock and End, Admit/Deny per knock. An ended card
/// offers Call again alone.
pub fn render_keyboard(card: &Card) -> InlineKeyboardMarkup {
    let w = card.words();
    if card.status.is_over() {
        return InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(w.call_again, CardAction::CallAgain.encode())]]);
    }
    let mut rows = Vec::new();
    // Where Telegram would refuse the link as a button, the text carries it alone.
    let mut join = Vec::new();
    if let Ok(url) = url::Url::parse(&card.link)
        && link_button_accepted(&url)
    {
        join.push(InlineKeyboardButton::url(w.join, url));
    }
    join.push(InlineKeyboardButton::callback(w.join_as_me, CardAction::JoinAsMe.encode()));
    rows.push(join);
    let lock = match card.status {
        CardStatus::Locked => InlineKeyboardButton::callback(w.unlock, CardAction::Unlock.encode()),
        _ => InlineKeyboardButton::callback(w.lock, CardAction::Lock.encode()),
    };
    rows.push(vec![
        lock,
        InlineKeyboardButton::callback(w.end, CardAction::End.encode()),
        InlineKeyboardButton::callback(w.ring_me, CardAction::RingMe.encode()),
    ]);
    for knock in card.knocks.iter().take(10) {
        let name: String = knock.name.chars().take(24).collect();
        rows.push(vec![
            InlineKeyboardButton::callback(fill(w.admit, &[("name", &name)]), CardAction::Admit(knock.id.clone()).encode()),
            InlineKeyboardButton::callback(fill(w.deny, &[("name", &name)]), CardAction::Deny(knock.id.clone()).encode()),
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
            lang: Default::default(),
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
    fn a_link_telegram_refuses_as_a_button_stays_in_the_text() {
        let accepted = |u: &str| link_button_accepted(&url::Url::parse(u).unwrap());
        assert!(accepted("https://calls.example.org/r/x") && accepted("http://127.0.0.1:8080/r/x"));
        assert!(!accepted("http://localhost:8080/r/x") && !accepted("http://[::1]:8080/r/x") && !accepted("http://callbox/r/x"));
        let mut c = card();
        c.link = "http://localhost:8080/r/abc".into();
        let join = &render_keyboard(&c).inline_keyboard[0];
        assert_eq!(join.len(), 1, "Join as me alone: {join:?}");
        assert!(render_html(&c).ends_with("http://localhost:8080/r/abc"));
        assert_eq!(render_keyboard(&card()).inline_keyboard[0].len(), 2, "Join and Join as me");
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
