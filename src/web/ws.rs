//! `GET /r/{id}/ws`: the room page's socket. It carries presence (the participant is in the
//! room while it is open, plus a grace period), room updates, and the WebRTC signaling relay.

use super::AppState;
use super::error::ApiError;
use crate::ids::{ParticipantId, RoomId};
use crate::live::{Outbound, PeerInfo, socket_queue};
use crate::room::{Media, RoomKind, RoomView};
use crate::service::{Credential, Knocks};
use crate::sfu::Command as SfuCommand;
use crate::signaling::{FromPage, IceServerRef, Me, PeerRef, ToPage};
use crate::cluster::proxy;
use crate::store::{Home, PresenceChange};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// Largest frame a page may send: signaling only (a mesh offer is a few KiB; an SFU page's
/// answer for its 24 receiving tracks about 15 KiB); media never passes here.
const MAX_FRAME: usize = 32 * 1024;
/// Most bytes buffered for writing on one socket: above the largest frame the daemon sends (a
/// room view of 50 people with their knocks).
const WRITE_BUFFER: usize = 128 * 1024;
/// Frames of any kind a page may send per second before it is disconnected as a flood.
const MAX_FRAMES_PER_SECOND: u32 = 200;
/// Signaling frames a page may send to one other page per second; more are dropped.
const MAX_SIGNALS_PER_TARGET_PER_SECOND: u32 = 50;
/// Keeps idle connections open through proxies, and finds pages that stopped answering.
const PING_EVERY: Duration = Duration::from_secs(25);
/// A page that sent nothing (not even a pong) for this long is gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// How long one frame may take to go out before the page counts as stalled and is dropped:
/// a page that stops reading would otherwise hold its session, its place and its queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The room page's credentials in the query string: still taken from scripts, but the page
/// itself sends them as WebSocket subprotocols (see [`Credentials`]), so they stay out of
/// every access log.
#[derive(Debug, Default, Deserialize)]
pub struct WsQuery {
    pub token: Option<String>,
    /// The host token, for host views (knocks in room updates).
    pub host: Option<String>,
}

/// The subprotocol the room page speaks; the bridge answers with it.
const PROTOCOL: &str = "callbridge";

/// Who opens a room socket: the participant token, and the host token for a host view. The
/// room page offers them as subprotocols beside [`PROTOCOL`] (`token.…`, `host.…`, in the
/// `Sec-WebSocket-Protocol` header: tokens are letters and digits, as subprotocols must be),
/// which no proxy writes to its access log, unlike a query string.
#[derive(Debug, Default)]
struct Credentials {
    token: Option<String>,
    host: Option<String>,
}

impl Credentials {
    fn of(headers: &HeaderMap, query: WsQuery) -> Credentials {
        let offered = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(','));
        let mut found = Credentials::default();
        for protocol in offered.map(str::trim) {
            if let Some(token) = protocol.strip_prefix("token.") {
                found.token = Some(token.to_owned());
            } else if let Some(host) = protocol.strip_prefix("host.") {
                found.host = Some(host.to_owned());
            }
        }
        Credentials { token: found.token.or(query.token), host: found.host.or(query.host) }
    }
}

/// Upgrades an admitted participant's request; 401 for anyone else.
pub async fn ws(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    _: super::join::WithinSocketRate,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let unauthorized = || ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", "not an admitted participant of this room");
    let Some(id) = RoomId::parse(&id) else { return Err(unauthorized()) };
    let q = Credentials::of(&headers, query.map(|Query(q)| q).unwrap_or_default());
    let Some(token) = q.token.as_deref() else { return Err(unauthorized()) };
    // Checked on a reader first: a flood of made-up tokens never queues for the one
    // connection SQLite writes on, where locks, ends and admissions wait.
    if !state.rooms.is_participant(&id, token).await? {
        return Err(unauthorized());
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return Ok(rejection.into_response()),
    };
    // A room's sockets meet on its home node (see `cluster`): a socket that reached another
    // node is passed on there, unless another node passed it here.
    if !proxy::from_peer(&headers, &state.rooms)
        && let Home::At(home) = state.rooms.room_home(&id).await?
    {
        let key = state.rooms.node_key().unwrap_or_default();
        let upstream = proxy::open_upstream(&home, &id, raw_query.as_deref(), &headers, key).await.map_err(|status| match status {
            axum::http::StatusCode::UNAUTHORIZED => unauthorized(),
            status => ApiError::new(status, "unavailable", "the node serving this room does not answer; try again"),
        })?;
        let (cancel, tracker) = (state.cancel.clone(), state.tracker.clone());
        return Ok(bounded(upgrade).on_upgrade(move |socket| tracker.track_future(proxy::relay(socket, upstream, cancel))));
    }
    let Some(who) = state.rooms.page_opened(&id, token).await? else { return Err(unauthorized()) };
    let host = match &q.host {
        Some(token) => state.rooms.authorize(&id, Credential::Token(token)).await?.is_host(),
        None => false,
    };
    let tracker = state.tracker.clone();
    Ok(bounded(upgrade)
        .on_upgrade(move |socket| tracker.track_future(session(state, id, who, host, socket))))
}

/// A room socket's limits, served here or passed on: small buffers, since a daemon holds
/// thousands of these sockets and signaling frames are small. Writes flush at once (latency),
/// and a page that stops reading pins at most this buffer beside its queue
/// ([`crate::live::SOCKET_QUEUE_BYTES`]).
fn bounded(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_FRAME)
        .protocols([PROTOCOL])
}

async fn session(state: AppState, room: RoomId, who: PresenceChange, host: bool, socket: WebSocket) {
    let pid = ParticipantId::trusted(who.participant_id);
    let name = who.name;
    let (tx, mut rx) = socket_queue();
    let (conn, peers) = state.live.register(&room, &pid, &name, host, tx);
    let (mut sink, mut stream) = socket.split();

    let knocks = if host { Knocks::Shown } else { Knocks::Hidden };
    let view = state.rooms.view(&room, knocks).await.ok();
    let page = Page {
        room: room.clone(),
        pid: pid.clone(),
        conn,
        // An SFU room's media goes through the SFU; `None` for a mesh (or an unreadable room).
        sfu: view.as_ref().filter(|v| v.media == Media::Sfu).map(|v| v.kind == RoomKind::Voice),
        last_offer: Default::default(),
    };
    let welcome = welcome(&state, &pid, &name, host, &peers, view.as_ref());
    state.live.broadcast(&room, Some(&pid), Outbound::Text(ToPage::PeerJoined { peer: PeerRef { id: &pid, name: &name } }.frame()));
    let mut open = send(&mut sink, Message::Text(welcome)).await;

    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let (mut window, mut frames) = (Instant::now(), 0u32);
    let mut last_heard = Instant::now();
    let mut signals = SignalBudget::default();
    while open {
        tokio::select! {
            _ = state.cancel.cancelled() => {
                let _ = close(&mut sink, "shutdown").await;
                break;
            }
            out = rx.recv() => match out {
                Some(Outbound::Text(text)) => open = send(&mut sink, Message::Text(text)).await,
                Some(Outbound::Close(reason)) => {
                    let _ = close(&mut sink, reason).await;
                    break;
                }
                None => break,
            },
            incoming = stream.next() => {
                let Some(Ok(message)) = incoming else { break };
                last_heard = Instant::now();
                // Every frame counts against the flood limit, whatever its kind.
                if window.elapsed() >= Duration::from_secs(1) {
                    (window, frames) = (Instant::now(), 0);
                }
                frames += 1;
                if frames > MAX_FRAMES_PER_SECOND {
                    tracing::warn!(room_id = %room, participant_id = %pid, "frame flood; disconnecting");
                    let _ = close(&mut sink, "flood").await;
                    break;
                }
                match message {
                    Message::Text(text) => relay(&state, &page, &text, &mut signals),
                    Message::Close(_) => break,
                    Message::Binary(_) | Message::Ping(_) | Message::Pong(_) => {}
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    tracing::info!(room_id = %room, participant_id = %pid, "room page silent; dropping it");
                    break;
                }
                open = send(&mut sink, Message::Ping(Default::default())).await;
            }
        }
    }

    if page.sfu.is_some() {
        state.sfu.send(SfuCommand::Leave { room: room.clone(), pid: pid.clone(), conn });
    }
    if state.live.unregister(&room, &pid, conn) {
        state.live.broadcast(&room, None, Outbound::Text(ToPage::PeerLeft { id: &pid }.frame()));
        start_grace(state, room, pid);
    }
}

/// After the grace period, a participant with no socket again has left.
fn start_grace(state: AppState, room: RoomId, pid: ParticipantId) {
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
        if let Err(error) = state.rooms.page_left(&room, &pid).await {
            tracing::warn!(room_id = %room, %error, "cannot record a departure; the presence sweep will");
        }
    });
}

fn welcome(state: &AppState, pid: &str, name: &str, host: bool, peers: &[PeerInfo], view: Option<&RoomView>) -> axum::extract::ws::Utf8Bytes {
    // Browsers need TURN credentials in clear; only admitted participants ever get them, and
    // with `[rooms.turn]` their own, which expire.
    let rooms = &state.rooms.config().rooms;
    let turn = rooms.turn.as_ref().map(|t| (t, crate::turn::credentials(t, pid, state.rooms.now_ms())));
    let ice_servers = rooms
        .ice_servers
        .iter()
        .map(|s| IceServerRef { urls: &s.urls, username: s.username.as_deref(), credential: s.credential.as_ref().map(|c| c.expose()) })
        .chain(turn.as_ref().map(|(t, c)| IceServerRef { urls: &t.urls, username: Some(&c.username), credential: Some(&c.credential) }))
        .collect();
    ToPage::Welcome {
        me: Me { id: pid, name, host },
        peers: peers.iter().map(|p| PeerRef { id: &p.id, name: &p.name }).collect(),
        room: view,
        ice_servers,
    }
    .frame()
}

/// Sends one frame, within [`SEND_TIMEOUT`]; `false` when the page is gone or stalled.
async fn send(sink: &mut futures::stream::SplitSink<WebSocket, Message>, message: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await, Ok(Ok(())))
}

/// Signaling frames sent to each other page in the current second.
#[derive(Default)]
struct SignalBudget {
    window: Option<Instant>,
    sent: std::collections::HashMap<String, u32>,
}

impl SignalBudget {
    /// Whether one more frame to `to` fits this second's budget.
    fn allows(&mut self, to: &str) -> bool {
        if self.window.is_none_or(|w| w.elapsed() >= Duration::from_secs(1)) {
            self.window = Some(Instant::now());
            self.sent.clear();
        }
        let sent = self.sent.entry(to.to_owned()).or_default();
        *sent += 1;
        *sent <= MAX_SIGNALS_PER_TARGET_PER_SECOND
    }
}

/// Who a room socket is, for its frames.
struct Page {
    room: RoomId,
    pid: ParticipantId,
    conn: u64,
    /// `Some(voice)` in an SFU room.
    sfu: Option<bool>,
    /// When the page last offered to the SFU.
    last_offer: std::cell::Cell<Option<Instant>>,
}

/// Handles one frame from a page: signaling to one other peer (never to itself, within a
/// budget per target), its media state to all, or (SFU rooms) signaling with the SFU.
fn relay(state: &AppState, page: &Page, text: &str, signals: &mut SignalBudget) {
    let (room, from) = (&page.room, page.pid.as_str());
    let (pid, conn) = (page.pid.clone(), page.conn);
    match serde_json::from_str::<FromPage>(text) {
        Ok(FromPage::Signal { to, data }) => {
            if to != from && signals.allows(&to) {
                state.live.send_to(room, &to, Outbound::Text(ToPage::Signal { from, data: &data }.frame()));
            }
        }
        Ok(FromPage::Media { audio, video, screen }) => {
            let out = ToPage::PeerMedia { id: from, audio, video, screen }.frame();
            state.live.broadcast(room, Some(from), Outbound::Text(out));
            // Someone a host muted may unmute themselves (as in most meeting tools): turning
            // the device on again lets the SFU forward it again.
            if page.sfu.is_some() && (audio || video) {
                let (audio, video) = (audio.then_some(false), video.then_some(false));
                state.sfu.send(SfuCommand::Mute { room: room.clone(), pid, audio, video });
            }
        }
        Ok(FromPage::SfuOffer { sdp }) => {
            // Each offer builds a new connection at the SFU: one a second is plenty for a page.
            let now = Instant::now();
            if page.last_offer.get().is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
                return;
            }
            page.last_offer.set(Some(now));
            if let Some(voice) = page.sfu {
                state.sfu.send(SfuCommand::Offer { room: room.clone(), pid, conn, voice, sdp });
            }
        }
        Ok(FromPage::SfuAnswer { sdp }) => {
            if page.sfu.is_some() {
                state.sfu.send(SfuCommand::Answer { room: room.clone(), pid, conn, sdp });
            }
        }
        Ok(FromPage::SfuView { shown, large }) => {
            if page.sfu.is_some() {
                state.sfu.send(SfuCommand::View { room: room.clone(), pid, shown, large });
            }
        }
        Err(_) => {}
    }
}

async fn close(sink: &mut futures::stream::SplitSink<WebSocket, Message>, reason: &'static str) -> bool {
    send(sink, Message::Text(ToPage::Closed { reason }.frame())).await
        && send(sink, Message::Close(Some(CloseFrame { code: 1000, reason: reason.into() }))).await
}
