//! Names and titles carrying HTML, Markdown, mentions and bidirectional overrides stay inert on
//! every surface: the join page, the API, the Telegram card and the bot's replies.

mod common;
#[path = "support/telegram_double.rs"]
mod telegram_double;

use common::{Db, Harness, TestDb, config, eventually};
use reqwest::StatusCode;
use std::time::Duration;
use telegram_double::{BOT_TOKEN, BotApiDouble};

const GROUP: i64 = -1005555555555;
const HOST: i64 = 444;
const HOST_NAME: &str = "<b>Eve</b> **bold** @everyone \u{202E}nimda";
const TITLE: &str = "<script>alert(1)</script> _it_ [x](javascript:alert(1)) @channel";
const GUEST: &str = "<img src=x onerror=alert(1)> `code` \u{2066}@here";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_render_inert_everywhere() {
    let double = BotApiDouble::start().await;
    double.start_bot(HOST);
    let db = TestDb::new(Db::Sqlite).await;
    let mut c = config(&db);
    let telegram = callbridge_telegram::Settings {
        token: Some(callbridge::config::Secret::new(BOT_TOKEN)),
        api_url: double.url.parse().unwrap(),
        debounce: Duration::from_millis(100),
        poll_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    c.adapters.push(Box::new(telegram));
    let h = Harness::start(c).await;
    let wait = Duration::from_secs(15);

    double.say(GROUP, HOST, HOST_NAME, &format!("/call voice {TITLE}"));
    let card = || double.messages_in(GROUP).into_iter().find(|(_, m)| m.reply_markup.to_string().contains("\"url\""));
    assert!(eventually(wait, || async { card().is_some() }).await, "a card is posted");
    let (_, shown) = card().unwrap();
    let room = shown.reply_markup["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    assert_eq!(h.join(&room, GUEST, None).await.0, StatusCode::OK);
    assert!(eventually(wait, || async { card().is_some_and(|(_, m)| m.text.contains("In the call (1)")) }).await);

    // The card: HTML parse mode with every user string escaped; Markdown is not parsed in that
    // mode, so it shows as typed; bidi overrides are gone.
    let (_, shown) = card().unwrap();
    assert_eq!(shown.parse_mode.as_deref(), Some("HTML"));
    let text = &shown.text;
    for inert in ["&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;b&gt;Eve&lt;/b&gt; **bold** @everyone nimda", "&lt;img src=x onerror=alert(1)&gt; `code` @here", "[x](javascript:alert(1))"] {
        assert!(text.contains(inert), "card lacks {inert:?}: {text}");
    }
    for live in ["<script", "<b>Eve", "<img", "\u{202E}", "\u{2066}"] {
        assert!(!text.contains(live), "card carries {live:?}: {text}");
    }
    // Bot replies carry no parse mode at all: what users typed is shown as typed.
    double.say(GROUP, HOST, HOST_NAME, "/who");
    assert!(eventually(wait, || async { double.messages_in(GROUP).iter().any(|(_, m)| m.text.starts_with("In the call (1)")) }).await);
    let reply = double.calls_of("sendMessage").into_iter().find(|c| c.body["text"].as_str().is_some_and(|t| t.starts_with("In the call"))).unwrap();
    assert!(reply.body.get("parse_mode").is_none_or(|p| p.is_null()), "{:?}", reply.body);

    // The join page: escaped, and no bidi override.
    let page = h.http.get(format!("{}/r/{room}", h.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers().get("content-security-policy").expect("a CSP").to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "title escaped on the join page");
    assert!(html.contains("&#60;b&#62;Eve&#60;/b&#62;"), "host escaped on the join page");
    assert!(!html.contains("<script>alert") && !html.contains("<b>Eve") && !html.contains('\u{202E}'));

    // The API hands the strings back as data, minus the overrides.
    let v = h.room(&room).await;
    assert_eq!(v["title"], TITLE);
    assert_eq!(v["participants"][0]["name"], GUEST.replace('\u{2066}', ""));
    assert!(!v.to_string().contains('\u{202E}'));
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
}
