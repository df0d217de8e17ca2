//! `callbridge doctor`'s question to the homeserver: does the bot's account work, and does this
//! node hold a device with its keys (so it can read encrypted rooms)? Asked over plain HTTP,
//! without opening the crypto store a running daemon holds, and without leaving a device
//! behind: a password check logs in and out again.

use crate::Settings;
use crate::session::saved_session;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

pub async fn probe(settings: &Settings, store_dir: &Path) -> Result<String, String> {
    let homeserver = settings.homeserver().as_str().trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| e.to_string())?;
    let unreachable = |e: reqwest::Error| format!("the homeserver at {homeserver} does not answer: {}", e.without_url());
    // A session this node saved: is its device still the bot's, with keys on disk?
    if let Some((token, device)) = saved_session(settings, store_dir).map_err(|e| e.to_string())? {
        let whoami = http.get(format!("{homeserver}/_matrix/client/v3/account/whoami")).bearer_auth(&token).send().await.map_err(unreachable)?;
        if !whoami.status().is_success() {
            return Err(format!("the homeserver no longer accepts this node's session ({}); remove {}/session.json to log in again", whoami.status(), store_dir.display()));
        }
        let me: Value = whoami.json().await.unwrap_or_default();
        let keys = std::fs::read_dir(store_dir).map(|d| d.flatten().any(|f| f.file_name().to_string_lossy().contains("crypto"))).unwrap_or(false);
        if !keys {
            return Err(format!("no encryption keys for device {device} in {}: encrypted rooms would be unreadable", store_dir.display()));
        }
        return Ok(format!("{} answers; this node's device {device} has its keys, so it can decrypt", me["user_id"].as_str().unwrap_or("the bot")));
    }
    if let Some(token) = settings.access_token() {
        let whoami = http.get(format!("{homeserver}/_matrix/client/v3/account/whoami")).bearer_auth(token).send().await.map_err(unreachable)?;
        let me: Value = whoami.json().await.unwrap_or_default();
        return match me["user_id"].as_str() {
            Some(user) => Ok(format!("the access token works for {user} (device {})", me["device_id"].as_str().unwrap_or("?"))),
            None => Err(format!("the homeserver refuses the access token ({})", me["errcode"].as_str().unwrap_or("no answer"))),
        };
    }
    let password = settings.password().ok_or("neither password nor access_token is set")?;
    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": settings.user}, "password": password,
        "initial_device_display_name": "callbridge doctor"});
    let answer = http.post(format!("{homeserver}/_matrix/client/v3/login")).json(&login).send().await.map_err(unreachable)?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or_default();
    let Some(token) = body["access_token"].as_str() else {
        return Err(format!("the homeserver refuses the password for {} ({status}, {})", settings.user, body["errcode"].as_str().unwrap_or("no errcode")));
    };
    // The check's own device goes again at once.
    let _ = http.post(format!("{homeserver}/_matrix/client/v3/logout")).bearer_auth(token).json(&json!({})).send().await;
    Ok(format!("the password works for {}; this node logs in as its own device at first start", body["user_id"].as_str().unwrap_or(&settings.user)))
}
