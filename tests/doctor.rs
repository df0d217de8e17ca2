//! `callbridge doctor`, the real binary against the Telegram and Discord doubles, a real Synapse,
//! a real coturn and the real PostgreSQL: every check passes with good settings; a bad Telegram
//! token, a Discord token the double refuses, a wrong Matrix password and a stopped PostgreSQL
//! each fail their own line with a clear message and a non-zero exit; no secret is printed.

mod common;
#[path = "support/coturn.rs"]
mod coturn;
#[path = "support/discord_double.rs"]
mod discord_double;
#[path = "support/synapse.rs"]
mod synapse;
#[path = "support/telegram_double.rs"]
mod telegram_double;

use common::{API_TOKEN, Db, Harness, TestDb, config};
use std::process::Command;
use synapse::Synapse;

/// coturn's shared secret in these tests.
const TURN_SECRET: &str = "turn-shared-secret-1234";

#[derive(Clone)]
struct Setup {
    db_url: String,
    telegram_token: String,
    telegram_url: String,
    discord_token: String,
    discord_url: String,
    homeserver: String,
    matrix_user: String,
    matrix_password: String,
    turn_port: u16,
}

fn config_text(s: &Setup, dir: &std::path::Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{web}\"\npublic_url = \"https://call.example.org\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
         [storage]\nurl = \"{db}\"\ndata_dir = \"{dir}\"\n[api]\ntoken = \"{API_TOKEN}\"\n\
         [rooms]\nice_servers = []\n[rooms.turn]\nurls = [\"turn:127.0.0.1:{turn}?transport=udp\"]\nsecret = \"{turn_secret}\"\n\
         [sfu]\nlisten = \"127.0.0.1:0\"\n\
         [telegram]\ntoken = \"{tg}\"\napi_url = \"{tg_url}\"\n\
         [discord]\ntoken = \"{dc}\"\napplication_id = \"{app}\"\napi_url = \"{dc_url}\"\n\
         [matrix]\nhomeserver = \"{hs}\"\nuser = \"{user}\"\npassword = \"{pw}\"\n",
        web = common::free_port(),
        db = s.db_url,
        dir = dir.display(),
        turn = s.turn_port,
        turn_secret = TURN_SECRET,
        tg = s.telegram_token,
        tg_url = s.telegram_url,
        dc = s.discord_token,
        app = discord_double::APP_ID,
        dc_url = s.discord_url,
        hs = s.homeserver,
        user = s.matrix_user,
        pw = s.matrix_password,
    )
}

/// `doctor` on `setup`: (exit success, what it printed).
fn doctor(setup: &Setup) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callbridge.toml");
    std::fs::write(&path, config_text(setup, dir.path())).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callbridge"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CALLBRIDGE_")) {
        cmd.env_remove(key);
    }
    let out = cmd.args(["doctor", "--config"]).arg(&path).env("RUST_LOG", "error").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The line of one check.
fn line<'a>(text: &'a str, what: &str) -> &'a str {
    text.lines().find(|l| l[4..].trim_start().starts_with(what)).unwrap_or_else(|| panic!("no {what} line in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_good_settings_and_names_each_bad_one() {
    let tg = telegram_double::BotApiDouble::start().await;
    let dc = discord_double::DiscordDouble::start().await;
    let hs = Synapse::start().await;
    let bot = hs.register("doctorbot", false).await;
    let db = TestDb::new(Db::Postgres).await;
    // The database as a daemon of this build leaves it: migrated.
    Harness::start(config(&db)).await.stop().await;
    let coturn = coturn::Coturn::start(TURN_SECRET);
    let good = Setup {
        db_url: db.url.clone(),
        telegram_token: telegram_double::BOT_TOKEN.into(),
        telegram_url: tg.url.clone(),
        discord_token: discord_double::BOT_TOKEN.into(),
        discord_url: dc.url.clone(),
        homeserver: hs.url.clone(),
        matrix_user: bot.user_id.clone(),
        matrix_password: bot.password.clone(),
        turn_port: coturn.port,
    };
    let secrets = [telegram_double::BOT_TOKEN, discord_double::BOT_TOKEN, bot.password.as_str(), TURN_SECRET, API_TOKEN];
    let no_secret = |text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret in doctor's output:\n{text}");
        }
    };

    let all_good = good.clone();
    let (ok, text) = tokio::task::spawn_blocking(move || doctor(&all_good)).await.unwrap();
    assert!(ok, "every check passes:\n{text}");
    for what in ["database", "telegram", "discord", "matrix", "public_url", "sfu", "turn 127.0.0.1"] {
        assert!(line(&text, what).starts_with("ok"), "{what}:\n{text}");
    }
    assert!(line(&text, "database").contains("migrations current"), "{text}");
    assert!(line(&text, "telegram").contains("@CallbridgeBot"), "{text}");
    no_secret(&text);

    let cases: [(&str, Setup, &str); 4] = [
        ("telegram", Setup { telegram_token: "999:wrong-telegram-token".into(), ..good.clone() }, "refuses the token"),
        ("discord", Setup { discord_token: "wrong.discord.token".into(), ..good.clone() }, "refuses the token"),
        ("matrix", Setup { matrix_password: "wrong-matrix-password".into(), ..good.clone() }, "refuses the password"),
        ("database", Setup { db_url: format!("postgres://postgres@127.0.0.1:{}/test", common::free_port()), ..good.clone() }, "does not answer"),
    ];
    for (what, setup, why) in cases {
        let (ok, text) = tokio::task::spawn_blocking(move || doctor(&setup)).await.unwrap();
        assert!(!ok, "{what}: a failed check makes the exit non-zero:\n{text}");
        let bad = line(&text, what);
        assert!(bad.starts_with("FAIL") && bad.contains(why), "{what}: {bad}\n{text}");
        let others = text.lines().filter(|l| l.starts_with("FAIL")).count();
        assert_eq!(others, 1, "{what}: only its own line fails:\n{text}");
        no_secret(&text);
        for wrong in ["wrong-telegram-token", "wrong.discord.token", "wrong-matrix-password"] {
            assert!(!text.contains(wrong), "{text}");
        }
    }
    db.drop_db().await;
}
