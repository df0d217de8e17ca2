//! The binary: `check-config`, and minting and steering a room from the shell against a
//! running daemon.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

/// The binary with none of this environment's `CALLBRIDGE_*` settings.
fn callbridge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_callbridge"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CALLBRIDGE_")) {
        c.env_remove(key);
    }
    c.env("RUST_LOG", "warn");
    c
}

#[test]
fn check_config_names_the_unknown_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:9\"\n\n[rooms]\nmax_participant = 5\n").unwrap();
    let out = callbridge().args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("line 5") && err.contains("max_participant"), "{err}");
}

#[test]
fn check_config_prints_the_effective_config_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, "[api]\ntoken = \"hunter2-file\"\n").unwrap();
    let out = callbridge().args(["check-config", "--config"]).arg(&path).env("CALLBRIDGE_STORAGE_URL", "postgres://u:pw-env@h/db").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[rooms]") && text.contains("max_participants = 50") && text.contains("media = \"sfu\"") && text.contains("<redacted>"), "{text}");
    assert!(!text.contains("hunter2") && !text.contains("pw-env"), "{text}");
    // Only the database password is hidden: which server, which database, as whom, are shown.
    assert!(text.contains("url = \"postgres://u:<redacted>@h/db\""), "{text}");
    // The effective public_url (the default, from listen).
    assert!(text.contains("public_url = \"http://127.0.0.1:8080\""), "{text}");
    // no file at all is valid: the embedded defaults
    assert!(callbridge().arg("check-config").output().unwrap().status.success());
}

/// `check-config` on `text`: (exit success, stdout, stderr).
fn check_config(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let out = callbridge().args(["check-config", "--config"]).arg(&path).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Setups that are valid TOML with valid values and still broken for users: refused with the
/// key and why, or accepted with a warning, by `check-config` as by the daemon.
#[test]
fn check_config_refuses_or_warns_where_users_would_meet_a_broken_setup() {
    const TELEGRAM: &str = "[telegram]\ntoken = \"123:abc-token\"\n";
    // A chat adapter on with the links naming 0.0.0.0: refused.
    let (ok, _, err) = check_config(&format!("[server]\nlisten = \"0.0.0.0:8080\"\n{TELEGRAM}"));
    assert!(!ok && err.contains("server.public_url") && err.contains("http://0.0.0.0:8080"), "{err}");
    // On loopback: a warning that only this machine opens the links.
    let (ok, out, err) = check_config(TELEGRAM);
    assert!(ok && out.contains("# warning: server.public_url") && err.contains("only this machine"), "{out}{err}");
    // http:// for anything but localhost: browsers refuse camera and microphone.
    let (ok, _, err) = check_config("[server]\npublic_url = \"http://call.example.org\"\n");
    assert!(ok && err.contains("camera and microphone"), "{err}");
    let (ok, _, err) = check_config("[server]\npublic_url = \"http://localhost:8080\"\n");
    assert!(ok && err.is_empty(), "localhost is a secure origin: {err}");
    // Discord's interactions endpoint without https: refused.
    let discord = "[discord]\nmode = \"interactions\"\ntoken = \"discord-bot-token\"\napplication_id = \"12\"\n\
                   public_key = \"0000000000000000000000000000000000000000000000000000000000000000\"\n";
    let (ok, _, err) = check_config(&format!("[server]\npublic_url = \"http://localhost:8080\"\n{discord}"));
    assert!(!ok && err.contains("server.public_url") && err.contains("/discord/interactions") && err.contains("https"), "{err}");
    let (ok, _, _) = check_config(&format!("[server]\npublic_url = \"https://call.example.org\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n{discord}"));
    assert!(ok);
    // https in front means a proxy: without trusted_proxies every client would be the proxy.
    let (ok, _, err) = check_config("[server]\npublic_url = \"https://call.example.org\"\n");
    assert!(ok && err.contains("server.trusted_proxies"), "{err}");
    let (ok, _, err) = check_config("[server]\npublic_url = \"https://call.example.org\"\ntrust_forwarded_for = true\n");
    assert!(ok && err.is_empty(), "{err}");
    // No warning names a secret.
    let (_, out, err) = check_config(TELEGRAM);
    assert!(!out.contains("abc-token") && !err.contains("abc-token"), "{out}{err}");
}

/// Per-chat policy and gateways: `check-config` prints each listed chat's effective policy,
/// and refuses a bad entry naming its line and key.
#[test]
fn check_config_prints_each_chats_policy_and_names_a_bad_key() {
    let good = r#"
[chat_defaults]
language = "fr"

[[gateways]]
name = "friends"
chats = [
  { platform = "telegram", chat = "-1001234567890" },
  { platform = "matrix", chat = "!abcdef:example.org" },
]

[[chats]]
gateway = "friends"
who_may_call = "admins"

[[chats]]
platform = "telegram"
chat = "-1001234567890"
language = "es"
kind = "voice"
max_participants = 20
"#;
    let (ok, out, err) = check_config(good);
    assert!(ok, "{err}");
    let line = |needle: &str| out.lines().find(|l| l.starts_with(needle)).unwrap_or_else(|| panic!("{needle} in {out}")).to_owned();
    let telegram = line("# telegram -1001234567890 (gateway \"friends\"): ");
    for want in ["who_may_call = \"admins\"", "max_participants = 20", "kind = \"voice\"", "language = \"es\"", "timezone = \"UTC\""] {
        assert!(telegram.contains(want), "{want} in {telegram}");
    }
    let matrix = line("# matrix !abcdef:example.org (gateway \"friends\"): ");
    assert!(matrix.contains("language = \"fr\"") && matrix.contains("who_may_call = \"admins\"") && matrix.contains("max_participants = 50"), "{matrix}");
    assert!(line("# any other chat: ").contains("who_may_call = \"anyone\""), "{out}");

    for (text, want) in [
        ("[[chats]]\nplatform = \"telegram\"\nchat = \"-1\"\nwho_may_call = \"mods\"\n", "line 4"),
        ("\n[[chats]]\nplatform = \"telegram\"\nchat = \"my group\"\n", "line 3: invalid value for chats[0].chat"),
        ("[[chats]]\nplatform = \"slack\"\nchat = \"C1\"\n", "line 2: invalid value for chats[0].platform"),
        ("[[chats]]\nplatform = \"telegram\"\nchat = \"-1\"\nlanguage = \"de\"\n", "line 4"),
    ] {
        let (ok, _, err) = check_config(text);
        assert!(!ok && err.contains("c.toml") && err.contains(want), "{text}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_minted_and_steered_from_the_shell() {
    let tdb = TestDb::new(Db::Sqlite).await;
    let h = Harness::start(config(&tdb)).await;
    let run = |args: Vec<String>| {
        let base = h.base.clone();
        tokio::task::spawn_blocking(move || {
            callbridge().args(&args).args(["--server", &base]).env("CALLBRIDGE_API_TOKEN", API_TOKEN).output().unwrap()
        })
    };
    let out = run(vec!["create".into(), "--title".into(), "From the shell".into(), "--kind".into(), "voice".into(), "--json".into()]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["url"], format!("{}/r/{id}", h.base));
    assert_eq!(created["kind"], "voice");

    assert_eq!(h.join(&id, "Ada", None).await.0, reqwest::StatusCode::OK);
    let out = run(vec!["lock".into(), id.clone()]).await.unwrap();
    assert!(out.status.success());
    assert_eq!(h.join(&id, "Bob", None).await.0, reqwest::StatusCode::LOCKED);
    let out = run(vec!["show".into(), id.clone()]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("From the shell") && text.contains("locked") && text.contains("Ada"), "{text}");
    assert!(run(vec!["end".into(), id.clone()]).await.unwrap().status.success());
    assert_eq!(h.join(&id, "Cy", None).await.0, reqwest::StatusCode::GONE);
    // a wrong token is refused with the daemon's message
    let out = tokio::task::spawn_blocking({
        let base = h.base.clone();
        move || callbridge().args(["show", "AAAAAAAAAAAAAAAAAAAAAA", "--server", &base]).env("CALLBRIDGE_API_TOKEN", "wrong").output().unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no power"));
    h.stop().await;
}

/// The README's first command: the daemon with no config file and no environment, on its
/// embedded defaults (SQLite under ./data, http://127.0.0.1:8080), minting a room from the
/// shell, admitting a joiner, and stopping cleanly on SIGTERM. It needs port 8080 free, as a
/// newcomer's machine has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_command_runs_on_embedded_defaults() {
    const BASE: &str = "http://127.0.0.1:8080";
    // Another process on 8080 would answer in the daemon's place: say so rather than test it.
    if let Err(error) = std::net::TcpListener::bind("127.0.0.1:8080") {
        panic!("port 8080 is taken ({error}): the first command needs it free, as on a newcomer's machine");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon(callbridge().current_dir(dir.path()).spawn().unwrap());
    let http = reqwest::Client::new();
    let up = eventually(Duration::from_secs(30), || async { http.get(format!("{BASE}/healthz")).send().await.is_ok_and(|r| r.status() == 200) }).await;
    assert!(up, "the daemon on its embedded defaults did not answer {BASE}/healthz");
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon exited: whatever answers on 8080 is not it");

    let out = tokio::task::spawn_blocking({
        let path = dir.path().to_owned();
        move || callbridge().current_dir(path).args(["create", "--title", "Standup", "--json"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (id, host) = (created["id"].as_str().unwrap(), created["host_token"].as_str().unwrap());
    assert_eq!(created["url"], format!("{BASE}/r/{id}"));
    let joined = http.post(format!("{BASE}/r/{id}/join")).json(&serde_json::json!({"name": "Ada"})).send().await.unwrap();
    assert_eq!(joined.status(), 200);
    let room: serde_json::Value =
        http.get(format!("{BASE}/api/v1/rooms/{id}")).bearer_auth(host).send().await.unwrap().json().await.unwrap();
    assert_eq!(room["participants"][0]["name"], "Ada", "{room}");

    let stopped = Command::new("kill").args(["-TERM", &daemon.0.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    let status = tokio::task::spawn_blocking(move || daemon.0.wait().unwrap()).await.unwrap();
    assert!(status.success(), "the daemon exited with {status} on SIGTERM");
    assert!(dir.path().join("data").read_dir().unwrap().next().is_some(), "no database under ./data");
    // Hardening point 8: what the daemon writes is its user's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("data"), 0o700, "the data directory");
        for file in ["data/callbridge.db", "data/api-token"] {
            assert_eq!(mode(file), 0o600, "{file}");
        }
        for journal in ["data/callbridge.db-wal", "data/callbridge.db-shm"] {
            if dir.path().join(journal).exists() {
                assert_eq!(mode(journal), 0o600, "{journal}");
            }
        }
    }
}

/// A daemon the test started, killed if the test fails before stopping it, so that it does not
/// keep port 8080.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
