//! Passing requests on to the node they belong to: a room page's socket to the room's home
//! node, a chat webhook to the node that leads its adapter. The receiving node knows a request
//! comes from a peer by the deployment's node key (a header, compared in constant time): it
//! then serves it itself and does not count it against the sending node's address.

use crate::bridge::adapters::Adapters;
use crate::ids::RoomId;
use crate::service::RoomService;
use crate::signaling::ToPage;
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tokio_util::sync::CancellationToken;

/// The header that carries the node key between nodes.
pub const NODE_KEY_HEADER: &str = "x-callbridge-node-key";
/// How long a node waits for a peer to take a passed-on request.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one frame may take to reach the page (as on a socket served here).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A room socket opened at the room's home node.
pub type Upstream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Whether a request comes from another node of this deployment.
pub fn from_peer(headers: &HeaderMap, rooms: &RoomService) -> bool {
    headers.get(NODE_KEY_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|key| rooms.is_node_key(key))
}

/// Opens the page's socket at `home` (an internal URL), with the page's credentials (its
/// subprotocols, or the query of scripts). The home node's refusal comes back as its status.
pub async fn open_upstream(home: &str, room: &RoomId, query: Option<&str>, headers: &HeaderMap, node_key: &str) -> Result<Upstream, StatusCode> {
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let url = format!("{}/r/{room}/ws{query}", home.replacen("http", "ws", 1));
    let mut request = url.into_client_request().map_err(|_| StatusCode::BAD_GATEWAY)?;
    if let Some(protocols) = headers.get(header::SEC_WEBSOCKET_PROTOCOL) {
        request.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, protocols.clone());
    }
    request.headers_mut().insert(NODE_KEY_HEADER, HeaderValue::from_str(node_key).map_err(|_| StatusCode::BAD_GATEWAY)?);
    match tokio::time::timeout(PEER_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((upstream, _))) => Ok(upstream),
        Ok(Err(tungstenite::Error::Http(response))) => Err(response.status()),
        Ok(Err(error)) => {
            tracing::warn!(%error, %home, room_id = %room, "the room's home node does not answer");
            Err(StatusCode::SERVICE_UNAVAILABLE)
        }
        Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// Relays frames between a page and its socket at the home node until either closes (or this
/// node stops: the page is told, and reconnects to a live node).
pub async fn relay(page: WebSocket, upstream: Upstream, cancel: CancellationToken) {
    let (mut to_page, mut from_page) = page.split();
    let (mut to_home, mut from_home) = upstream.split();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = to_page.send(Message::Text(ToPage::Closed { reason: "shutdown" }.frame())).await;
                let _ = to_page.send(Message::Close(Some(CloseFrame { code: 1000, reason: "shutdown".into() }))).await;
                break;
            }
            frame = from_page.next() => {
                let Some(Ok(frame)) = frame else { break };
                let last = matches!(frame, Message::Close(_));
                if to_home.send(upstream_frame(frame)).await.is_err() || last {
                    break;
                }
            }
            frame = from_home.next() => {
                let Some(Ok(frame)) = frame else { break };
                let last = matches!(frame, tungstenite::Message::Close(_));
                if let Some(frame) = page_frame(frame)
                    && !matches!(tokio::time::timeout(SEND_TIMEOUT, to_page.send(frame)).await, Ok(Ok(())))
                {
                    break;
                }
                if last {
                    break;
                }
            }
        }
    }
    let _ = to_home.close().await;
    let _ = to_page.close().await;
}

fn upstream_frame(frame: Message) -> tungstenite::Message {
    match frame {
        Message::Text(text) => tungstenite::Message::text(text.as_str()),
        Message::Binary(bytes) => tungstenite::Message::Binary(bytes),
        Message::Ping(bytes) => tungstenite::Message::Ping(bytes),
        Message::Pong(bytes) => tungstenite::Message::Pong(bytes),
        Message::Close(frame) => tungstenite::Message::Close(frame.map(|f| tungstenite::protocol::CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
    }
}

fn page_frame(frame: tungstenite::Message) -> Option<Message> {
    Some(match frame {
        tungstenite::Message::Text(text) => Message::Text(text.as_str().into()),
        tungstenite::Message::Binary(bytes) => Message::Binary(bytes),
        tungstenite::Message::Ping(bytes) => Message::Ping(bytes),
        tungstenite::Message::Pong(bytes) => Message::Pong(bytes),
        tungstenite::Message::Close(frame) => {
            Message::Close(frame.map(|f| CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() }))
        }
        tungstenite::Message::Frame(_) => return None,
    })
}

/// What a chat webhook needs to reach the leader of its adapter.
#[derive(Clone)]
pub struct ToLeader {
    pub platform: &'static str,
    pub adapters: Adapters,
    pub rooms: RoomService,
    pub http: reqwest::Client,
}

/// Middleware of a chat adapter's webhook routes: on a node that does not run the adapter,
/// the request goes to the node that does (its answer comes back as given); with no leader
/// reachable, the route answers as a stopped adapter does (503).
pub async fn to_leader(State(to): State<ToLeader>, request: Request, next: Next) -> Response {
    if !to.rooms.is_shared() || to.adapters.is_running(to.platform) || from_peer(request.headers(), &to.rooms) {
        return next.run(request).await;
    }
    let (Some(key), Ok(Some(leader))) = (to.rooms.node_key(), to.rooms.adapter_leader_url(to.platform).await) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let max = to.rooms.config().server.max_body_bytes;
    let Ok(body) = axum::body::to_bytes(body, max).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers.clone();
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    let sent = to.http.request(parts.method.clone(), format!("{leader}{path}")).headers(headers).header(NODE_KEY_HEADER, key).body(body).timeout(PEER_TIMEOUT).send().await;
    match sent {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(error) => {
            tracing::warn!(%error, platform = to.platform, "the adapter's leader does not answer a webhook");
            next.run(Request::from_parts(parts, Body::empty())).await
        }
    }
}
