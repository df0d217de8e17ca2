//! `GET /r/{id}/ws`: the room page's socket. It carries presence (the participant is in the
//! room while it is open, plus a grace period), room updates, and the WebRTC signaling relay.

use super::AppState;
use super::error::ApiError;
use crate::events::RoomEventKind;
use crate::live::{Outbound, PeerInfo, SOCKET_QUEUE, frame};
use crate::store::{HostCheck, PresenceChange};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Largest frame a page may send (SDP offers are a few KiB).
const MAX_FRAME: usize = 64 * 1024;
/// Frames a page may send per second before it is disconnected as a flood.
const MAX_FRAMES_PER_SECOND: u32 = 200;
/// Keeps idle connections open through proxies.
const PING_EVERY: Duration = Duration::from_secs(25);

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    pub token: String,
    /// The host token, for host views (knocks in room updates).
    pub host: Option<String>,
}

/// Upgrades an admitted participant's request; 401 for anyone else.
pub async fn ws(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let unauthorized = || ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", "not an admitted participant of this room");
    if !crate::ids::is_room_id(&id) {
        return Err(unauthorized());
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => {
            let known = state.rooms.store.is_participant(&id, &q.token).await.map_err(crate::service::ServiceError::from)?;
            return if known { Ok(rejection.into_response()) } else { Err(unauthorized()) };
        }
    };
    let connected = state.rooms.store.connect_participant(&id, &q.token, &state.node_id).await;
    let Some((who, arrived)) = connected.map_err(crate::service::ServiceError::from)? else { return Err(unauthorized()) };
    if arrived {
        state.rooms.events.publish(&id, RoomEventKind::Arrived { participant_id: who.participant_id.clone(), name: who.name.clone() });
    }
    let host = match &q.host {
        Some(token) => state.rooms.is_host(&id, token).await? == HostCheck::Host,
        None => false,
    };
    let tracker = state.tracker.clone();
    Ok(upgrade
        // Small buffers: a daemon holds thousands of these sockets, and signaling frames are
        // small. Writes flush at once (latency), and a page that stops reading cannot make its
        // socket buffer more than 1 MiB.
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| tracker.track_future(session(state, who, host, socket))))
}

async fn session(state: AppState, who: PresenceChange, host: bool, socket: WebSocket) {
    let PresenceChange { room_id: room, participant_id: pid, name } = who;
    let (tx, mut rx) = mpsc::channel(SOCKET_QUEUE);
    let (conn, peers) = state.live.register(&room, &pid, &name, host, tx);
    let (mut sink, mut stream) = socket.split();

    let welcome = welcome(&state, &room, &pid, &name, host, &peers).await;
    state.live.broadcast(&room, Some(&pid), Outbound::Text(frame(json!({"type": "peer-joined", "peer": {"id": &pid, "name": &name}}))));
    let mut open = sink.send(Message::Text(welcome)).await.is_ok();

    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let (mut window, mut frames) = (Instant::now(), 0u32);
    while open {
        tokio::select! {
            _ = state.cancel.cancelled() => {
                let _ = close(&mut sink, "shutdown").await;
                break;
            }
            out = rx.recv() => match out {
                Some(Outbound::Text(text)) => open = sink.send(Message::Text(text)).await.is_ok(),
                Some(Outbound::Close(reason)) => {
                    let _ = close(&mut sink, reason).await;
                    break;
                }
                None => break,
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if window.elapsed() >= Duration::from_secs(1) {
                        (window, frames) = (Instant::now(), 0);
                    }
                    frames += 1;
                    if frames > MAX_FRAMES_PER_SECOND {
                        tracing::warn!(room_id = %room, participant_id = %pid, "signaling flood; disconnecting");
                        let _ = close(&mut sink, "flood").await;
                        break;
                    }
                    relay(&state, &room, &pid, &text);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => open = sink.send(Message::Ping(Default::default())).await.is_ok(),
        }
    }

    if state.live.unregister(&room, &pid, conn) {
        state.live.broadcast(&room, None, Outbound::Text(frame(json!({"type": "peer-left", "id": &pid}))));
        start_grace(state, room, pid);
    }
}

/// After the grace period, a participant with no socket again has left.
fn start_grace(state: AppState, room: String, pid: String) {
    let grace = state.rooms.config().rooms.presence_grace;
    let tracker = state.tracker.clone();
    tracker.spawn(async move {
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            _ = tokio::time::sleep(grace) => {}
        }
        if state.live.is_connected(&room, &pid) {
            return;
        }
        match state.rooms.store.leave_participant(&room, &pid, &state.node_id).await {
            Ok(Some(left)) => state.rooms.events.publish(&room, RoomEventKind::Left { participant_id: left.participant_id, name: left.name }),
            Ok(None) => {}
            Err(error) => tracing::warn!(room_id = %room, %error, "cannot record a departure; the presence sweep will"),
        }
    });
}

async fn welcome(state: &AppState, room: &str, pid: &str, name: &str, host: bool, peers: &[PeerInfo]) -> axum::extract::ws::Utf8Bytes {
    let view = match state.rooms.view(room, host).await {
        Ok(v) => serde_json::to_value(v).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    // Browsers need TURN credentials in clear; only admitted participants ever get them.
    let ice: Vec<Value> = state
        .rooms
        .config()
        .rooms
        .ice_servers
        .iter()
        .map(|s| {
            let mut v = json!({"urls": s.urls});
            if let Some(u) = &s.username {
                v["username"] = json!(u);
            }
            if let Some(c) = &s.credential {
                v["credential"] = json!(c.expose());
            }
            v
        })
        .collect();
    let peers: Vec<Value> = peers.iter().map(|p| json!({"id": p.id, "name": p.name})).collect();
    frame(json!({
        "type": "welcome",
        "self": {"id": pid, "name": name, "host": host},
        "peers": peers,
        "room": view,
        "ice_servers": ice,
    }))
}

/// Handles one frame from a page: signaling to one peer, or its media state to all.
fn relay(state: &AppState, room: &str, from: &str, text: &str) {
    let Ok(msg) = serde_json::from_str::<Value>(text) else { return };
    match msg.get("type").and_then(Value::as_str) {
        Some("signal") => {
            let (Some(to), Some(data)) = (msg.get("to").and_then(Value::as_str), msg.get("data")) else { return };
            let out = frame(json!({"type": "signal", "from": from, "data": data}));
            state.live.send_to(room, to, Outbound::Text(out));
        }
        Some("media") => {
            let flag = |k: &str| msg.get(k).and_then(Value::as_bool).unwrap_or(false);
            let out = frame(json!({"type": "peer-media", "id": from, "audio": flag("audio"), "video": flag("video"), "screen": flag("screen")}));
            state.live.broadcast(room, Some(from), Outbound::Text(out));
        }
        _ => {}
    }
}

async fn close(sink: &mut futures::stream::SplitSink<WebSocket, Message>, reason: &'static str) -> Result<(), axum::Error> {
    sink.send(Message::Text(frame(json!({"type": "closed", "reason": reason})))).await?;
    sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: reason.into() }))).await
}
