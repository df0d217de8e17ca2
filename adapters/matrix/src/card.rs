//! `Card` → a Matrix `m.notice`: an HTML `formatted_body` and a plain `body` fallback.
//!
//! Every user string (title, names, the link) is escaped. Reactions on the card stand in
//! for buttons, so the card says which ones work.

use callbridge_chat::text::escape_html;
use callbridge_chat::{Card, CardAction, CardStatus, Prompt, fill, human_seconds};
use matrix_sdk::ruma::events::Mentions;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

/// Bytes one list of names may take, escaped. A Matrix event is at most 64 KiB, and an edit
/// carries the card twice (fallback and `m.new_content`), each as HTML and plain text, then
/// grows by a third when encrypted; three lists within this budget stay well inside.
const LIST_BUDGET: usize = 2500;

fn within_budget(items: impl ExactSizeIterator<Item = String>, sep: &str, budget: usize) -> String {
    callbridge_chat::text::within_budget(items, sep, budget, str::len)
}

/// The reaction keys that act as card buttons, and what each does.
pub const REACTIONS: &[(&str, CardAction)] = &[
    ("🔒", CardAction::Lock),
    ("🔓", CardAction::Unlock),
    ("⏹", CardAction::End),
    ("🙋", CardAction::JoinAsMe),
    ("🔔", CardAction::RingMe),
    ("🔁", CardAction::CallAgain),
    // On a private prompt (a ring, a knock for the host).
    ("✅", CardAction::Accept),
    ("❌", CardAction::Decline),
];

/// The action a reaction key stands for; emoji variation selectors are ignored, since clients
/// differ in whether they send them.
pub fn reaction_action(key: &str) -> Option<CardAction> {
    let bare: String = key.chars().filter(|c| !matches!(c, '\u{FE0E}' | '\u{FE0F}')).collect();
    REACTIONS.iter().find(|(k, _)| *k == bare).map(|(_, a)| a.clone())
}

/// A private prompt as a notice: its text as typed, and which reaction answers how (the
/// notice has HTML, like a card, so reactions on it are taken as presses).
pub fn prompt_content(prompt: &Prompt) -> RoomMessageEventContent {
    let key = |action: &CardAction| REACTIONS.iter().find(|(_, a)| a == action).map_or("", |(k, _)| k);
    // The reaction stands for the label's own emoji, if it has one.
    let words = |label: &str| label.trim_start_matches(|c: char| !c.is_alphanumeric()).to_owned();
    let hint = prompt.buttons.iter().map(|(label, action)| format!("{} {}", key(action), words(label))).collect::<Vec<_>>().join(" · ");
    let (mut plain, mut html) = (prompt.text.clone(), escape_html(&prompt.text).replace('\n', "<br>"));
    if !hint.is_empty() {
        let react = prompt.lang.card().react;
        plain.push_str(&format!("\n\n{react}: {hint}"));
        html.push_str(&format!("<br><br><sub>{react}: {}</sub>", escape_html(&hint)));
    }
    let mut content = RoomMessageEventContent::notice_html(plain, html);
    content.mentions = Some(Mentions::new());
    content
}

/// A card rendered both ways.
pub struct Rendered {
    pub plain: String,
    pub html: String,
}

/// Renders a card. `prefix` is the command prefix (`!`), for the knock hint.
pub fn render(card: &Card, prefix: &str) -> Rendered {
    let mut plain = Renderer { out: String::new(), html: false };
    let mut html = Renderer { out: String::new(), html: true };
    for r in [&mut plain, &mut html] {
        r.card(card, prefix);
    }
    Rendered { plain: plain.out.trim_end().to_owned(), html: html.out.trim_end_matches("<br>").to_owned() }
}

/// One pass over the card, writing either HTML or plain text.
struct Renderer {
    out: String,
    html: bool,
}

impl Renderer {
    fn text(&self, s: &str) -> String {
        if self.html { escape_html(s) } else { s.to_owned() }
    }
    fn bold(&self, s: &str) -> String {
        if self.html { format!("<b>{s}</b>") } else { s.to_owned() }
    }
    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push_str(if self.html { "<br>" } else { "\n" });
    }

    fn card(&mut self, card: &Card, prefix: &str) {
        let w = card.words();
        let (kind, icon) = (card.kind_label(), card.icon());
        let title = card.title.as_deref().map(|t| self.text(t)).unwrap_or_else(|| kind.to_owned());
        let title = self.bold(&title);
        self.line(&format!("{icon} {title}"));
        match card.host_name.as_deref() {
            Some(h) => {
                let h = self.text(h);
                self.line(&fill(w.hosted_by, &[("kind", kind), ("host", &h)]));
            }
            None => self.line(kind),
        }
        self.line(card.route_line());
        self.line(match card.status {
            CardStatus::Open => w.open,
            CardStatus::Locked => w.locked,
            CardStatus::Full => w.full,
            CardStatus::Ended => w.ended,
            CardStatus::Expired => w.expired,
        });
        if let (Some((_, when)), false) = (&card.starts, card.status.is_over()) {
            let line = fill(w.starts, &[("when", &self.text(when))]);
            self.line(&line);
        }
        if let Some(attendance) = &card.attendance {
            self.line("");
            if attendance.is_empty() {
                self.line(w.nobody_joined);
            } else {
                let heading = self.bold(&format!("{} ({}):", w.attendance, attendance.len()));
                self.line(&heading);
                let sep = if self.html { "<br>" } else { "\n" };
                let lines = attendance.iter().map(|a| {
                    let when = fill(w.joined_at, &[("time", &self.text(&a.joined)), ("duration", &human_seconds(a.seconds))]);
                    format!("• {} — {when}", self.text(&a.name))
                });
                let list = within_budget(lines, sep, LIST_BUDGET);
                self.line(&list);
            }
            self.line("");
            let hint = self.small(w.react_again);
            self.line(&hint);
            return;
        }
        self.line("");
        if card.present.is_empty() {
            self.line(w.nobody_in);
        } else {
            let names = within_budget(card.present.iter().map(|n| self.text(n)), ", ", LIST_BUDGET);
            let heading = self.bold(&format!("{} ({}):", w.in_the_call, card.present.len()));
            self.line(&format!("{heading} {names}"));
        }
        if card.entered > card.present.len() {
            self.line(&fill(w.joined_so_far, &[("n", &card.entered.to_string())]));
        }
        if !card.knocks.is_empty() {
            let names = within_budget(card.knocks.iter().map(|k| format!("{} (#{})", self.text(&k.name), k.code())), ", ", LIST_BUDGET);
            let heading = self.bold(&format!("{}:", w.asking));
            let hint = self.text(&fill(w.admit_hint, &[("admit", &format!("{prefix}admit")), ("deny", &format!("{prefix}deny"))]));
            self.line(&format!("✋ {heading} {names} {hint}"));
        }
        if !card.ringing.is_empty() {
            let names = within_budget(card.ringing.iter().map(|r| format!("{} {}", self.text(&r.name), r.state.label(w))), ", ", LIST_BUDGET);
            let heading = self.bold(&format!("{}:", w.ringing));
            self.line(&format!("{heading} {names}"));
        }
        self.line("");
        let link = self.text(&card.link);
        if self.html {
            self.line(&format!("<a href=\"{link}\">{}</a> · {link}", w.join_the_call));
        } else {
            self.line(&fill(w.join_line, &[("link", &link)]));
        }
        let hint = self.small(w.react_hint);
        self.line(&hint);
    }

    /// A line of small print (a hint).
    fn small(&self, s: &str) -> String {
        if self.html { format!("<sub>{s}</sub>") } else { s.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_chat::Kind;
    use callbridge_chat::{Attendance, Knock};

    fn card() -> Card {
        Card {
            room_id: "r".into(),
            title: Some("<b>x</b> & 'y'".into()),
            host_name: Some("<img src=x onerror=alert(1)>".into()),
            kind: Kind::Video,
            private: false,
            status: CardStatus::Open,
            present: vec!["Ada".into(), "<script>".into()],
            entered: 3,
            link: "http://127.0.0.1:8080/r/abc?x=\"1\"&y=2".into(),
            knocks: vec![Knock { id: "k1".into(), name: "Eve & co".into() }],
            attendance: None,
            ringing: Vec::new(),
            starts: None,
            lang: Default::default(),
        }
    }

    #[test]
    fn every_user_string_is_escaped_in_html() {
        let r = render(&card(), "!");
        assert!(r.html.contains("&lt;b&gt;x&lt;/b&gt; &amp; &#39;y&#39;"), "{}", r.html);
        assert!(r.html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(r.html.contains("&lt;script&gt;"));
        assert!(r.html.contains("Eve &amp; co"));
        assert!(r.html.contains("href=\"http://127.0.0.1:8080/r/abc?x=&quot;1&quot;&amp;y=2\""));
        assert!(!r.html.contains("<script") && !r.html.contains("<img"));
        assert!(r.html.contains("!admit CODE") && r.html.contains("Eve &amp; co (#k1)"), "{}", r.html);
        // The plain fallback carries the raw text (it is never interpreted as markup).
        assert!(r.plain.contains("<b>x</b> & 'y'") && r.plain.contains("In the call (2): Ada, <script>"));
        assert!(r.plain.contains("3 joined so far"));
    }

    #[test]
    fn ended_cards_show_attendance() {
        let mut c = card();
        c.status = CardStatus::Ended;
        c.attendance = Some(vec![Attendance { name: "Ada".into(), joined: "10:00".into(), seconds: 200 }]);
        let r = render(&c, "!");
        assert!(r.plain.contains("⚫ Ended") && r.plain.contains("• Ada — joined 10:00 UTC, 3m 20s"), "{}", r.plain);
        assert!(!r.plain.contains("Join:"));
    }

    #[test]
    fn huge_rooms_stay_within_an_event() {
        let mut c = card();
        c.present = (0..1000).map(|i| format!("{}{i}", "&".repeat(60))).collect();
        c.knocks = (0..1000).map(|i| Knock { id: format!("k{i}"), name: "😀".repeat(64) }).collect();
        let r = render(&c, "!");
        assert!(r.html.len() + r.plain.len() < 12_000, "{}", r.html.len() + r.plain.len());
        assert!(r.plain.contains("more"));
    }

    #[test]
    fn reactions_map_to_actions() {
        assert_eq!(reaction_action("🔒"), Some(CardAction::Lock));
        assert_eq!(reaction_action("⏹\u{FE0F}"), Some(CardAction::End));
        assert_eq!(reaction_action("🔓"), Some(CardAction::Unlock));
        assert_eq!(reaction_action("🙋"), Some(CardAction::JoinAsMe));
        assert_eq!(reaction_action("👍"), None);
    }

    #[test]
    fn a_prompt_names_its_reactions_in_its_language() {
        let prompt = Prompt {
            text: "📞 Ana te está llamando: «<b>x</b>».".into(),
            buttons: vec![("✅ Aceptar".into(), CardAction::Accept), ("✖ Rechazar".into(), CardAction::Decline)],
            lang: callbridge_chat::Lang::Es,
        };
        let json = serde_json::to_value(prompt_content(&prompt)).unwrap();
        let (body, html) = (json["body"].as_str().unwrap(), json["formatted_body"].as_str().unwrap());
        assert!(body.ends_with("\n\nReacciona: ✅ Aceptar · ❌ Rechazar"), "{body}");
        assert!(html.contains("«&lt;b&gt;x&lt;/b&gt;»") && html.contains("<sub>Reacciona: ✅ Aceptar · ❌ Rechazar</sub>"), "{html}");
    }
}
