//! Prometheus metrics, on a listener of their own (`[metrics] listen`; no section, no
//! listener), so they are never public by accident.
//!
//! Counters and histograms are recorded where things happen, through the `metrics` crate's
//! macros; `metrics-exporter-prometheus` keeps them and renders the text format. Gauges of state
//! (rooms open, people present, sockets, adapters, the database pools) are read when Prometheus
//! scrapes. Labels are never room ids, names or tokens: only platforms, outcomes, kinds.
//! Every metric is listed, with what it counts, in [`describe`] and in the README.

use crate::bridge::adapters::Adapters;
use crate::live::Live;
use crate::service::RoomService;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tokio_util::sync::CancellationToken;

/// Bucket bounds of every `_seconds` histogram: from a millisecond to ten seconds.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's recorder, installed on first use (one per process: tests that run several
/// daemons in one process share it).
pub fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS).ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot install the metrics recorder");
                    None
                }
            }
        })
        .clone()
}

/// What the scrape handler reads.
#[derive(Clone)]
pub struct Scrape {
    pub handle: PrometheusHandle,
    pub rooms: RoomService,
    pub live: Live,
    pub adapters: Adapters,
}

/// Serves `GET /metrics` on `listener` until `cancel`.
pub async fn serve(listener: tokio::net::TcpListener, scrape: Scrape, cancel: CancellationToken) {
    let app = axum::Router::new().route("/metrics", axum::routing::get(metrics)).with_state(scrape);
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned()).await {
        tracing::warn!(%error, "the metrics listener stopped");
    }
}

async fn metrics(State(s): State<Scrape>) -> impl IntoResponse {
    match s.rooms.counts().await {
        Ok(counts) => {
            metrics::gauge!("callbridge_rooms_open").set(counts.rooms_open as f64);
            metrics::gauge!("callbridge_participants_present").set(counts.present as f64);
            metrics::gauge!("callbridge_knocks_pending").set(counts.knocks_pending as f64);
        }
        Err(error) => tracing::debug!(%error, "cannot count rooms for metrics"),
    }
    metrics::gauge!("callbridge_room_sockets").set(s.live.socket_count() as f64);
    for (platform, leader, health) in s.adapters.health() {
        metrics::gauge!("callbridge_adapter_leader", "platform" => platform).set(f64::from(u8::from(leader)));
        metrics::gauge!("callbridge_adapter_up", "platform" => platform).set(f64::from(u8::from(leader && health.connected)));
    }
    for (pool, size, idle) in s.rooms.pool_use() {
        metrics::gauge!("callbridge_db_connections", "pool" => pool, "state" => "idle").set(idle as f64);
        metrics::gauge!("callbridge_db_connections", "pool" => pool, "state" => "in_use").set((size as usize).saturating_sub(idle) as f64);
    }
    s.handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.handle.render())
}

/// The outcome label of a platform request's result.
pub fn send_outcome<T>(result: &Result<T, callbridge_chat::SendError>) -> &'static str {
    use callbridge_chat::SendError;
    match result {
        Ok(_) => "ok",
        Err(SendError::RetryAfter(_)) => "429",
        Err(SendError::NotModified) => "not_modified",
        Err(SendError::Transient(why)) if why.starts_with("no answer within") => "timeout",
        Err(SendError::Transient(_)) => "5xx",
        Err(SendError::Refused(_)) => "refused",
        Err(SendError::Unsupported) => "unsupported",
    }
}

/// HELP lines for every metric.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("callbridge_joins_total", "Join attempts by outcome (admitted, rejoined, locked, full, ended, banned, not_found, invalid)");
    describe_histogram!("callbridge_admission_seconds", Unit::Seconds, "Time to decide a join, from the request to the answer");
    describe_gauge!("callbridge_rooms_open", "Rooms not ended (the whole deployment)");
    describe_gauge!("callbridge_participants_present", "Participants with a connected room page (the whole deployment)");
    describe_gauge!("callbridge_knocks_pending", "Requests to join a locked room that wait for a host (the whole deployment)");
    describe_gauge!("callbridge_room_sockets", "Room page sockets connected to this node");
    describe_counter!("callbridge_card_sends_total", "Card posts and edits by platform, kind (post, edit) and outcome (ok, 429, 5xx, timeout, refused, not_modified)");
    describe_histogram!("callbridge_card_freshness_seconds", Unit::Seconds, "Time from a room change until its card shows it, by platform");
    describe_counter!("callbridge_chat_commands_total", "Chat commands by platform and command");
    describe_gauge!("callbridge_adapter_leader", "1 when this node runs the platform's adapter");
    describe_gauge!("callbridge_adapter_up", "1 when this node runs the adapter and it reaches its platform");
    describe_gauge!("callbridge_db_connections", "Database connections by pool (write, read) and state (idle, in_use)");
    describe_histogram!("callbridge_db_wait_seconds", Unit::Seconds, "Time the admission writer waited for its database connection");
    describe_gauge!("callbridge_sfu_peers", "SFU peer connections on this node");
    describe_gauge!("callbridge_sfu_streams", "Streams the SFU forwards on this node: a track to one receiver each");
    describe_counter!("callbridge_sfu_frames_forwarded_total", "Media frames the SFU forwarded, by kind (audio, video)");
    describe_counter!("callbridge_sfu_bytes_forwarded_total", Unit::Bytes, "Media payload bytes the SFU forwarded, by kind");
}
