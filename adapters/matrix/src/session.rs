//! Logging in once, then restoring.
//!
//! The first start logs in (with the password, or adopts the configured access token's
//! device) and writes the session to `session.json` (mode 0600) beside matrix-sdk's SQLite
//! stores. Every later start restores it, so the bot keeps one device, its encryption keys and
//! its sync token: no new login, and no old message handled twice.

use crate::{MatrixError, Settings};
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::config::RequestConfig;
use matrix_sdk::ruma::{OwnedDeviceId, OwnedUserId};
use matrix_sdk::{Client, SessionMeta, SessionTokens};
use std::path::Path;

const SESSION_FILE: &str = "session.json";

/// Marks a store whose history has been skipped (see [`crate::inbound`]).
pub(crate) const SYNCED_MARKER: &str = "callbridge-synced";

/// The session on disk, with the homeserver it belongs to.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    homeserver: String,
    #[serde(flatten)]
    session: MatrixSession,
}

/// A logged-in client: restored from `store_dir`, or logged in and saved there.
pub async fn connect(settings: &Settings, store_dir: &Path, on_secret: fn(&str)) -> Result<Client, MatrixError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| MatrixError::Setup(format!("{what}: {e}"));
    std::fs::create_dir_all(store_dir).map_err(|e| setup("cannot create the store directory", &e))?;
    // The crypto store holds the bot's encryption keys: for its owner's eyes only.
    #[cfg(unix)]
    std::fs::set_permissions(store_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| setup("cannot restrict the store directory", &e))?;
    let saved = read_saved(store_dir)?.filter(|s| {
        // A changed homeserver, user or access token starts over with the new one.
        let user = s.session.meta.user_id.as_str();
        s.homeserver == settings.homeserver().as_str()
            && (user == settings.user || s.session.meta.user_id.localpart() == settings.user)
            && settings.access_token().is_none_or(|t| t == s.session.tokens.access_token)
    });
    if saved.is_none() {
        // The stores belong to the old device; a new login must not inherit its crypto state.
        clear_stores(store_dir)?;
    }
    let client = Client::builder()
        .homeserver_url(settings.homeserver().as_str())
        .sqlite_store(store_dir, None)
        // One attempt per request: the core paces and retries with the server's retry_after.
        .request_config(RequestConfig::new().retry_limit(1).timeout(settings.request_timeout))
        .build()
        .await
        .map_err(|e| setup("cannot build the client", &e))?;
    if let Some(saved) = saved {
        on_secret(&saved.session.tokens.access_token);
        client.restore_session(saved.session).await.map_err(|e| setup("cannot restore the session", &e))?;
        return Ok(client);
    }
    let session = match (settings.access_token(), settings.password()) {
        (Some(token), _) => {
            let (user_id, device_id) = whoami(settings, token).await?;
            MatrixSession {
                meta: SessionMeta { user_id, device_id },
                tokens: SessionTokens { access_token: token.to_owned(), refresh_token: None },
            }
        }
        (None, Some(password)) => {
            client
                .matrix_auth()
                .login_username(&settings.user, password)
                .initial_device_display_name(&settings.device_name)
                .send()
                .await
                .map_err(|e| setup("login failed", &e))?;
            client.matrix_auth().session().ok_or_else(|| MatrixError::Setup("login gave no session".into()))?
        }
        (None, None) => return Err(MatrixError::Setup("matrix.password or matrix.access_token is required".into())),
    };
    on_secret(&session.tokens.access_token);
    if settings.access_token().is_some() {
        client.restore_session(session.clone()).await.map_err(|e| setup("cannot adopt the access token", &e))?;
    }
    write_saved(store_dir, &Saved { homeserver: settings.homeserver().to_string(), session })?;
    tracing::info!(user = %client.user_id().map(|u| u.to_string()).unwrap_or_default(), "matrix: logged in; session saved");
    Ok(client)
}

/// The user and device an access token belongs to.
async fn whoami(settings: &Settings, token: &str) -> Result<(OwnedUserId, OwnedDeviceId), MatrixError> {
    #[derive(serde::Deserialize)]
    struct WhoAmI {
        user_id: OwnedUserId,
        device_id: Option<OwnedDeviceId>,
    }
    let url = settings.homeserver().join("_matrix/client/v3/account/whoami").map_err(|e| MatrixError::Setup(e.to_string()))?;
    let failed = |e: matrix_sdk::reqwest::Error| MatrixError::Setup(format!("whoami failed: {}", e.without_url()));
    let body = matrix_sdk::reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .timeout(settings.request_timeout)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(failed)?
        .bytes()
        .await
        .map_err(failed)?;
    let me: WhoAmI = serde_json::from_slice(&body).map_err(|e| MatrixError::Setup(format!("whoami answered oddly: {e}")))?;
    let device = me.device_id.ok_or_else(|| MatrixError::Setup("the access token has no device (an appservice token?)".into()))?;
    Ok((me.user_id, device))
}

/// The access token and device of the session this node saved for these settings, if any.
pub(crate) fn saved_session(settings: &Settings, dir: &Path) -> Result<Option<(String, String)>, MatrixError> {
    Ok(read_saved(dir)?.filter(|s| s.homeserver == settings.homeserver().as_str()).map(|s| {
        (s.session.tokens.access_token.clone(), s.session.meta.device_id.to_string())
    }))
}

fn read_saved(dir: &Path) -> Result<Option<Saved>, MatrixError> {
    let path = dir.join(SESSION_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| MatrixError::Setup(format!("{} is damaged ({e}); remove it to log in again", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MatrixError::Setup(format!("cannot read {}: {e}", path.display()))),
    }
}

fn write_saved(dir: &Path, saved: &Saved) -> Result<(), MatrixError> {
    use std::io::Write;
    let path = dir.join(SESSION_FILE);
    let tmp = dir.join(format!("{SESSION_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(&serde_json::to_vec(saved).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| MatrixError::Setup(format!("cannot write {}: {e}", path.display())))
}

/// Removes matrix-sdk's stores (not the directory's other files).
fn clear_stores(dir: &Path) -> Result<(), MatrixError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return Err(MatrixError::Setup(format!("cannot read {}: {e}", dir.display()))),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("matrix-sdk-") || name == SYNCED_MARKER {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}
