//! Gateway mode: the bot keeps a websocket to Discord (serenity's client and shard) and gets
//! interactions over it, so it needs no public URL. Each interaction goes through the same
//! [`DiscordAdapter::interaction`](crate::DiscordAdapter::interaction) as in endpoint mode; the immediate answer is POSTed to the
//! interaction's callback instead of being the HTTP response.

use super::DiscordAdapter;
use callbridge_chat::{Backoff, Inbound};
use serde_json::json;
use serenity::all::{ApplicationId, ClientBuilder, Context, EventHandler, GatewayIntents, HttpBuilder, Interaction, Ready};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Discord's own API base: with it, serenity's rate limiter stays on.
const DISCORD: &str = "https://discord.com";

struct Handler {
    adapter: Arc<DiscordAdapter>,
    inbox: mpsc::Sender<Inbound>,
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        tracing::info!(bot = %ready.user.name, "discord gateway connected");
        self.adapter.health.ok();
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        // Back to Discord's JSON (serenity leaves out the top-level `type`).
        let mut raw = match serde_json::to_value(&interaction) {
            Ok(v) => v,
            Err(error) => return tracing::warn!(%error, "discord: cannot read an interaction"),
        };
        raw["type"] = json!(u8::from(interaction.kind()));
        let (id, token) = (raw["id"].as_str().unwrap_or_default().to_owned(), raw["token"].as_str().unwrap_or_default().to_owned());
        let (answer, event) = match self.adapter.interaction(raw.to_string().as_bytes()) {
            Ok(done) => done,
            Err(why) => return tracing::warn!(%why, "discord: an interaction we cannot handle"),
        };
        // Answer first: the bridge's reply edits this answer.
        if let Err(error) = self.adapter.respond(&id, &token, answer).await {
            return tracing::warn!(%error, "discord: cannot answer an interaction");
        }
        if let Some(event) = event
            && self.inbox.send(event.into()).await.is_err()
        {
            tracing::warn!("discord: the bridge has stopped");
        }
    }
}

/// Keeps the gateway connection until `cancel` fires, reconnecting with backoff.
pub async fn run(adapter: Arc<DiscordAdapter>, inbox: mpsc::Sender<Inbound>, cancel: CancellationToken) {
    let settings = adapter.settings.clone();
    let token = settings.token.as_ref().map(|t| t.expose().to_owned()).unwrap_or_default();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let api = settings.api_url.as_str().trim_end_matches('/');
        let mut http = HttpBuilder::new(&token).application_id(ApplicationId::new(adapter.application_id.0));
        if let Some(client) = &settings.http_client {
            http = http.client(client.clone());
        }
        if api != DISCORD {
            // serenity only honours another base URL with its own rate limiter off; ours (the
            // pacer, the buckets in `rest`) still applies to every card and reply.
            http = http.proxy(api).ratelimiter_disabled(true);
        }
        let handler = Handler { adapter: adapter.clone(), inbox: inbox.clone() };
        let built = ClientBuilder::new_with_http(http.build(), GatewayIntents::empty()).event_handler(handler).await;
        let mut client = match built {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "discord: cannot build the gateway client; retrying");
                adapter.health.failed(&error, false);
                if !backoff.wait(&cancel).await {
                    return;
                }
                continue;
            }
        };
        let shards = client.shard_manager.clone();
        tokio::select! {
            _ = cancel.cancelled() => {
                shards.shutdown_all().await;
                adapter.health.stopped();
                return;
            }
            result = client.start() => {
                let why = result.err().map_or_else(|| "the gateway connection ended".to_owned(), |e| e.to_string());
                tracing::warn!(%why, "discord: the gateway connection ended; reconnecting");
                adapter.health.failed(&why, false);
                if !backoff.wait(&cancel).await {
                    return;
                }
            }
        }
    }
}
