//! Room events across nodes, through PostgreSQL's LISTEN/NOTIFY.
//!
//! Every event published on this node goes to an outbox; one task sends what is queued with
//! `pg_notify` in one statement per batch (in order: a transaction's notifications arrive in
//! the order sent). Every node listens on the same channel on a connection of its own and
//! republishes what other nodes sent into its local bus. A listener that lost its connection
//! may have missed notifications: it tells the bus to resynchronise (subscribers re-read
//! every room they show), as a lagged subscriber does.

use crate::events::{EventBus, RoomEvent};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The channel every node of a deployment listens on.
const CHANNEL: &str = "callbridge_events";
/// Events waiting to go out; a burst beyond it is dropped with a warning (the other nodes
/// then re-read those rooms on their next change).
pub const OUTBOX: usize = 16 * 1024;
/// Most events sent in one statement.
const BATCH: usize = 256;
/// How long a stopping node keeps trying to send what is queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// An event on the wire: who sent it, a sequence number (PostgreSQL folds identical payloads
/// of one transaction into one), and the event.
#[derive(Serialize, Deserialize)]
struct Wire {
    node: String,
    seq: u64,
    event: RoomEvent,
}

/// Sends the outbox's events to the other nodes until `cancel`, then what is still queued.
pub async fn publish(pool: PgPool, node: String, mut outbox: mpsc::Receiver<RoomEvent>, cancel: CancellationToken) {
    let mut seq = 0u64;
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => break,
            e = outbox.recv() => match e { Some(e) => e, None => return },
        };
        let mut batch = vec![first];
        while batch.len() < BATCH
            && let Ok(e) = outbox.try_recv()
        {
            batch.push(e);
        }
        let payloads = encode(&node, &mut seq, batch);
        while let Err(error) = send(&pool, &payloads).await {
            tracing::warn!(%error, "cannot send room events to the other nodes; retrying");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
    // Stopping: what this node decided last (its people leaving) still reaches the others.
    outbox.close();
    let mut rest = Vec::new();
    while let Ok(e) = outbox.try_recv() {
        rest.push(e);
    }
    for chunk in encode(&node, &mut seq, rest).chunks(BATCH) {
        if !matches!(tokio::time::timeout(FLUSH_TIMEOUT, send(&pool, chunk)).await, Ok(Ok(()))) {
            tracing::warn!("stopping: some room events did not reach the other nodes");
            return;
        }
    }
}

fn encode(node: &str, seq: &mut u64, events: Vec<RoomEvent>) -> Vec<String> {
    events
        .into_iter()
        .filter_map(|event| {
            *seq += 1;
            serde_json::to_string(&Wire { node: node.to_owned(), seq: *seq, event }).ok()
        })
        .collect()
}

async fn send(pool: &PgPool, payloads: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n")
        .bind(CHANNEL)
        .bind(payloads)
        .execute(pool)
        .await?;
    Ok(())
}

/// Connects the listener (retrying until it works or `cancel`); `None` when cancelled.
pub async fn listen(url: &str, cancel: &CancellationToken) -> Option<PgListener> {
    let mut wait = Duration::from_millis(250);
    loop {
        let attempt = async {
            let mut listener = PgListener::connect(url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match attempt.await {
            Ok(listener) => return Some(listener),
            Err(error) => tracing::warn!(%error, "cannot listen for other nodes' events; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Republishes the other nodes' events into `bus` until `cancel`.
pub async fn receive(mut listener: PgListener, bus: EventBus, node: String, cancel: CancellationToken) {
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            n = listener.try_recv() => n,
        };
        match next {
            Ok(Some(notification)) => match serde_json::from_str::<Wire>(notification.payload()) {
                Ok(wire) if wire.node != node => bus.republish(wire.event),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "an unreadable event from another node; ignored"),
            },
            // The connection dropped and comes back on the next call: what was sent meanwhile
            // is lost, so everything shown is re-read.
            Ok(None) => {
                tracing::warn!("lost the connection that hears other nodes' events; re-reading every room shown");
                bus.resync();
            }
            Err(error) => {
                tracing::warn!(%error, "cannot hear other nodes' events; retrying");
                bus.resync();
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
