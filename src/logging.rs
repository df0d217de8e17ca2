//! Logs: `tracing` to stderr, filtered by `RUST_LOG`, with every configured secret masked.
//!
//! Our own code never logs a secret, but libraries log what they send at `debug`/`trace` (a
//! websocket frame that identifies the bot carries its token). So each formatted line passes
//! through [`Redact`], which replaces the configured secrets with `<redacted>`. Secrets that
//! exist only at run time (a session token from a login) are added with [`mask`].

use std::io::Write;
use std::sync::{Arc, RwLock};

/// Secrets learned after start (see [`mask`]).
static LEARNED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Masks `secret` in every later log line too.
pub fn mask(secret: &str) {
    if secret.len() >= 8 {
        let mut learned = LEARNED.write().unwrap_or_else(|e| e.into_inner());
        if !learned.iter().any(|s| s == secret) {
            learned.push(secret.to_owned());
        }
    }
}

/// The default filter when `RUST_LOG` is unset; each platform adds its own (`log_filter`).
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=warn";

/// Installs the global subscriber; `secrets` are masked in every line. `platform_filters` are
/// the chat platforms' default directives for their libraries, used when `RUST_LOG` is unset.
pub fn init(mut secrets: Vec<String>, platform_filters: &[&str]) {
    // Longest first, so a secret that contains another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let secrets: Arc<[String]> = secrets.into_iter().filter(|s| s.len() >= 8).collect();
    let default = [DEFAULT_FILTER].iter().chain(platform_filters).filter(|f| !f.is_empty()).copied().collect::<Vec<_>>().join(",");
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    // Websocket frames are logged as raw bytes, which no mask can match: never log them.
    for quiet in ["tungstenite=info", "tokio_tungstenite=info"] {
        filter = filter.add_directive(quiet.parse().expect("a valid directive"));
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || Redact { out: std::io::stderr(), secrets: secrets.clone() })
        .init();
}

/// A writer that masks secrets in what passes through it. The fmt layer writes each event
/// with one `write_all`, so a secret is never split across calls.
pub struct Redact<W: Write> {
    pub out: W,
    pub secrets: Arc<[String]>,
}

/// `text` with every secret of `secrets`, and every one learned at run time, masked; `None`
/// when it holds none.
fn masked(text: &str, secrets: &[String]) -> Option<String> {
    let learned = LEARNED.read().unwrap_or_else(|e| e.into_inner());
    let all = secrets.iter().chain(learned.iter());
    if !all.clone().any(|s| text.contains(s.as_str())) {
        return None;
    }
    Some(all.fold(text.to_owned(), |text, s| text.replace(s.as_str(), "<redacted>")))
}

/// `text` with the given secrets, and every one learned at run time, masked (for what the
/// daemon shows outside its logs, such as an adapter's last error on `/healthz`). Secrets are
/// masked longest first, so one that contains another is masked whole.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<String> = secrets.iter().filter(|s| s.len() >= 8).cloned().collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    masked(text, &secrets).unwrap_or_else(|| text.to_owned())
}

impl<W: Write> Write for Redact<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        match masked(&text, &self.secrets) {
            Some(masked) => self.out.write_all(masked.as_bytes())?,
            None => self.out.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_shown_elsewhere_is_masked_too() {
        let secrets = ["sekrit-token-1".to_owned(), "sekrit-token-1-longer".to_owned(), "short".to_owned()];
        assert_eq!(redact("GET /botsekrit-token-1-longer/getMe and sekrit-token-1 (short)", &secrets), "GET /bot<redacted>/getMe and <redacted> (short)");
        assert_eq!(redact("nothing here", &secrets), "nothing here");
    }

    #[test]
    fn secrets_are_masked() {
        let mut out = Vec::new();
        let mut w = Redact { out: &mut out, secrets: vec!["sekrit-token-1".to_owned()].into() };
        w.write_all(b"IDENTIFY {\"token\":\"Bot sekrit-token-1\"} and sekrit-token-1\n").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "IDENTIFY {\"token\":\"Bot <redacted>\"} and <redacted>\n");
        mask("learned-at-run-time");
        let mut out = Vec::new();
        Redact { out: &mut out, secrets: Arc::from([]) }.write_all(b"token learned-at-run-time\n").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "token <redacted>\n");
    }
}
