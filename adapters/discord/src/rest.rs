//! Discord's REST API with the bot token, within its rate limits.
//!
//! Each route (method and path) is a bucket: when an answer says `X-RateLimit-Remaining: 0`,
//! the next call on that route waits `X-RateLimit-Reset-After` first. A 429 becomes
//! [`SendError::RetryAfter`] with Discord's `retry_after`, so the core's pacer holds the whole
//! channel. A 429 that says it is global (`X-RateLimit-Global: true`, `"global": true`) holds
//! every call of the bot for `retry_after`, into any channel, but for interaction answers,
//! which Discord keeps out of the global limit. 5xx and timeouts are transient; other
//! refusals are final.

use callbridge_chat::SendError;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What Discord asks bots to send as their User-Agent.
pub const USER_AGENT: &str = concat!("DiscordBot (https://github.com/callbridge/callbridge, ", env!("CARGO_PKG_VERSION"), ")");

/// The bucket key of the bot's global limit (no route looks like it).
const GLOBAL: &str = "global";

pub struct Rest {
    http: reqwest::Client,
    base: String,
    authorization: String,
    timeout: Duration,
    /// route (or [`GLOBAL`]) → no call before this. A std Mutex, never held across `.await`.
    buckets: Mutex<HashMap<String, Instant>>,
}

impl Rest {
    pub fn new(settings: &super::Settings) -> reqwest::Result<Rest> {
        let http = match &settings.http_client {
            Some(given) => given.clone(),
            None => reqwest::Client::builder().user_agent(USER_AGENT).build()?,
        };
        Ok(Rest {
            http,
            base: format!("{}/api/v10", settings.api_url.as_str().trim_end_matches('/')),
            authorization: format!("Bot {}", settings.token.as_ref().map_or("", |t| t.expose()).trim().trim_start_matches("Bot ")),
            timeout: settings.request_timeout,
            buckets: Mutex::default(),
        })
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `route` until `until`, forgetting routes whose wait is over (webhook routes carry
    /// one-off interaction tokens).
    fn hold(&self, route: String, until: Instant) {
        let mut buckets = self.bucket();
        let now = Instant::now();
        buckets.retain(|_, at| *at > now);
        buckets.insert(route, until);
    }

    /// One call; `Value::Null` for 204.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, SendError> {
        let route = format!("{method} {path}");
        // Interaction answers (`/interactions/…`, `/webhooks/…`) are outside the global limit.
        let global = !path.starts_with("/interactions/") && !path.starts_with("/webhooks/");
        let wait_until = {
            let buckets = self.bucket();
            let (own, all) = (buckets.get(&route).copied(), global.then(|| buckets.get(GLOBAL).copied()).flatten());
            own.max(all)
        };
        if let Some(at) = wait_until.filter(|at| *at > Instant::now()) {
            tokio::time::sleep_until(at).await;
        }
        let mut request = self.http.request(method, format!("{}{path}", self.base)).header("Authorization", &self.authorization);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = tokio::time::timeout(self.timeout, async {
            let response = request.send().await?;
            let headers = response.headers().clone();
            let status = response.status();
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, bytes))
        })
        .await;
        let (status, headers, bytes) = match answer {
            Err(_) => return Err(SendError::Transient(format!("no answer within {:?}", self.timeout))),
            // Paths carry interaction tokens: never let them into an error (or a log).
            Ok(Err(e)) => return Err(SendError::Transient(e.without_url().to_string())),
            Ok(Ok(a)) => a,
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let seconds = |v: Option<String>| v.and_then(|v| v.parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0);
        if header("x-ratelimit-remaining").as_deref() == Some("0")
            && let Some(after) = seconds(header("x-ratelimit-reset-after"))
        {
            self.hold(route.clone(), Instant::now() + Duration::from_secs_f64(after.min(3600.0)));
        }
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                let after = seconds(json["retry_after"].as_f64().map(|s| s.to_string())).or_else(|| seconds(header("retry-after"))).unwrap_or(1.0);
                let wait = Duration::from_secs_f64(after.min(3600.0));
                let is_global = json["global"].as_bool() == Some(true) || header("x-ratelimit-global").as_deref() == Some("true");
                if is_global {
                    self.hold(GLOBAL.to_owned(), Instant::now() + wait);
                }
                self.hold(route, Instant::now() + wait);
                Err(SendError::RetryAfter(wait))
            }
            s if s.is_server_error() => Err(SendError::Transient(format!("Discord answered {s}"))),
            s if s.is_success() => Ok(json),
            // Gone for good: the message, channel or webhook no longer exists, or the bot may no
            // longer post there. Anything else must not make the updater give up on a card: a
            // reset token, a bad request, or the edit budget of a message older than an hour
            // (400 with code 30046), which the updater's backoff waits out with the latest state.
            s @ (StatusCode::NOT_FOUND | StatusCode::FORBIDDEN) => {
                Err(SendError::Refused(format!("Discord answered {s}: {}", json["message"].as_str().unwrap_or(""))))
            }
            s => Err(SendError::Transient(format!("Discord answered {s}: {}", json["message"].as_str().unwrap_or("")))),
        }
    }
}
