//! A burst of joins into a room whose card lives in a Telegram group: how long until the card
//! shows everyone, how many edits it took, and how many 429s came back.
//!
//!     cargo bench --bench telegram_card [-- --rounds 5 --joins 50 --spread-ms 1000]
//!
//! The real daemon (SQLite, rooms of `--joins` places, default `[telegram]` pacing and debounce) runs in this process
//! against the Bot API double of the tests, which enforces Telegram's flood control on arrival
//! (≥ 1 s between a bot's sends or edits in a group, ≤ 20 a minute, ≤ 30 a second for the bot)
//! and answers 429 with
//! `retry_after` when the bot breaks it. Each round: the host types `/call` in a fresh group,
//! the card appears, and 1.5 s later `--joins` people join over HTTP, evenly spread over
//! `--spread-ms`. The clock runs from the first join until the card reads "In the call (N)".
//! Target (per round): ≤ 3 s, ≤ 3 edits, zero 429s.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support/telegram_double.rs"]
mod telegram_double;

use common::{Db, Harness, TestDb, config, eventually};
use std::time::{Duration, Instant};
use telegram_double::{BOT_TOKEN, BotApiDouble};

const HOST: i64 = 111;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let (rounds, joins, spread) = (arg("--rounds", 5), arg("--joins", 50), arg("--spread-ms", 1000));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(rounds, joins, spread));
}

struct Round {
    shown_after: Duration,
    edits: usize,
    rate_limited: usize,
}

async fn run(rounds: u64, joins: u64, spread_ms: u64) {
    let double = BotApiDouble::start().await;
    double.start_bot(HOST);
    let db = TestDb::new(Db::Sqlite).await;
    let mut c = config(&db);
    // A mesh room's default of 8 would turn most of the burst away; this is a town-hall room.
    c.rooms.max_participants = Some((joins as u32).max(8));
    let telegram = callbridge_telegram::Settings {
        token: Some(callbridge::config::Secret::new(BOT_TOKEN)),
        api_url: double.url.parse().unwrap(),
        poll_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    c.adapters.push(Box::new(telegram.clone()));
    let pacing = (telegram.min_interval, telegram.per_minute, telegram.debounce);
    let h = Harness::start(c).await;
    println!(
        "telegram card benchmark: {joins} joins over {spread_ms} ms, {rounds} rounds; pacing ≥ {:?} apart, ≤ {}/min, debounce {:?}",
        pacing.0, pacing.1, pacing.2
    );

    let mut results = Vec::new();
    for round in 0..rounds {
        let group = -1_001_000_000_000 - round as i64;
        double.say(group, HOST, "Host", &format!("/call Burst {round}"));
        let card = |double: &BotApiDouble| {
            double.messages_in(group).into_iter().find(|(_, m)| m.reply_markup.to_string().contains("\"url\""))
        };
        assert!(eventually(Duration::from_secs(10), || async { card(&double).is_some() }).await, "the card is posted");
        let (message, shown) = card(&double).unwrap();
        let url = shown.reply_markup["inline_keyboard"][0][0]["url"].as_str().unwrap().to_owned();
        let room = url.rsplit('/').next().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(1500)).await;

        let limited_before = double.rate_limited();
        let start = Instant::now();
        let tasks: Vec<_> = (0..joins)
            .map(|i| {
                let (http, base, room) = (h.http.clone(), h.base.clone(), room.clone());
                tokio::spawn(async move {
                    tokio::time::sleep_until((start + Duration::from_millis(i * spread_ms / joins.max(1))).into()).await;
                    let r = http.post(format!("{base}/r/{room}/join")).json(&serde_json::json!({"name": format!("Guest {i}")})).send().await;
                    assert_eq!(r.unwrap().status(), 200, "join {i} admitted");
                })
            })
            .collect();
        let want = format!("In the call ({joins})");
        let shown_after = loop {
            if double.message(group, message).is_some_and(|m| m.text.contains(&want)) {
                break start.elapsed();
            }
            assert!(start.elapsed() < Duration::from_secs(60), "the card never showed all {joins}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        for t in tasks {
            t.await.unwrap();
        }
        // Let anything still queued go out, so late edits are counted too.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let edits = double
            .calls_of("editMessageText")
            .iter()
            .filter(|c| c.at >= start && c.body["chat_id"] == group && c.body["message_id"] == message)
            .count();
        let r = Round { shown_after, edits, rate_limited: double.rate_limited() - limited_before };
        println!(
            "round {round}: card showed all {joins} after {:>5} ms, {} edits, {} × 429",
            r.shown_after.as_millis(),
            r.edits,
            r.rate_limited
        );
        results.push(r);
    }
    h.stop().await;
    db.drop_db().await;

    let worst = results.iter().map(|r| r.shown_after).max().unwrap_or_default();
    let max_edits = results.iter().map(|r| r.edits).max().unwrap_or_default();
    let limited: usize = results.iter().map(|r| r.rate_limited).sum();
    let met = worst <= Duration::from_secs(3) && max_edits <= 3 && limited == 0;
    println!("\n| rounds | joins in | worst time to show all | most edits | 429s | target (≤ 3 s, ≤ 3 edits, 0 × 429) |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {rounds} | {joins} over {spread_ms} ms | {:.2} s | {max_edits} | {limited} | {} |",
        worst.as_secs_f64(),
        if met { "met" } else { "NOT met" }
    );
}
