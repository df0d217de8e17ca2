//! HTML pages and their embedded assets.
//!
//! * `GET /` — what this is and how to mint a room.
//! * `GET /r/{id}` — the join page (lobby), or the page of a room that cannot be joined:
//!   404 unknown, 410 ended/expired, 200 open/locked/full.
//! * `GET /r/{id}/room` — the room page shell; `assets/room.js` does the rest.
//! * `GET /assets/{file}` — `join.js`, `room.js`, `style.css`, compiled into the binary.
//!
//! Pages carry a strict CSP (no inline script or style): data reaches the scripts through
//! `data-*` attributes and a JSON `<script type="application/json">` block of UI strings.

use super::AppState;
use super::i18n::{Lang, Strings, negotiate, strings};
use crate::room::{OPENS_BEFORE_START, RoomStatus, RoomView};
use crate::ids::RoomId;
use crate::service::{Knocks, ServiceError};
use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

const CSP: &str = "default-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; \
connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

const JOIN_JS: &str = include_str!("../../assets/join.js");
const ROOM_JS: &str = include_str!("../../assets/room.js");
const STYLE_CSS: &str = include_str!("../../assets/style.css");

/// The page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(landing))
        .route("/r/{id}", get(join_page))
        .route("/r/{id}/room", get(room_page))
        .route("/assets/{file}", get(asset))
}

/// `/`: a short explanation.
#[derive(Template)]
#[template(
    ext = "html",
    source = r#"{% extends "base.html" %}
{% block title %}callbridge{% endblock %}
{% block body_class %}page-light{% endblock %}
{% block content %}
<main class="lobby">
  <section class="card card-narrow" aria-labelledby="landing-title">
    <p class="eyebrow">callbridge</p>
    <h1 id="landing-title">{{ t.landing_title }}</h1>
    <p>{{ t.landing_intro }}</p>
    <h2>{{ t.landing_create }}</h2>
    <p>{{ t.landing_cli }}</p>
    <pre><code>callbridge create --title "Standup"</code></pre>
    <p>{{ t.landing_api }}</p>
    <pre><code>curl -X POST {{ base_url }}/api/v1/rooms \
  -H "Authorization: Bearer $CALLBRIDGE_API_TOKEN" \
  -H "Content-Type: application/json" \
  -d '{"title": "Standup", "kind": "video"}'</code></pre>
    <p class="muted">{{ t.landing_host }}</p>
  </section>
</main>
{% endblock %}"#
)]
struct LandingPage<'a> {
    lang: &'static str,
    t: &'static Strings,
    i18n_json: String,
    base_url: &'a str,
}

/// `/r/{id}` in every state, and the not-found / gone / error pages of `/r/{id}/room`.
#[derive(Template)]
#[template(path = "join.html")]
struct JoinPage {
    lang: &'static str,
    t: &'static Strings,
    i18n_json: String,
    page_title: String,
    /// `open`, `locked`, `full`, `ended`, `expired`, `not_found` or `error`.
    state: &'static str,
    /// The full-page message for every state but `open`.
    message: &'static str,
    room: Option<RoomInfo>,
}

/// What the join page shows of a room.
struct RoomInfo {
    id: String,
    url: String,
    title: String,
    kind: &'static str,
    kind_label: &'static str,
    media: &'static str,
    media_label: &'static str,
    host_name: Option<String>,
    status: &'static str,
    status_label: &'static str,
    /// The badge's look: the status, or `scheduled` before a scheduled call's room opens.
    badge: &'static str,
    knock: bool,
    /// Open, locked or full: the lobby (preview, name, buttons) is shown.
    joinable: bool,
    present: Vec<String>,
    capacity: u32,
    qr_svg: String,
    /// A scheduled call: when it starts (in the deployment's time zone) and when its room opens.
    starts: Option<Starts>,
}

/// The time and time zone a page is rendered at.
#[derive(Clone, Copy)]
struct Now {
    ms: i64,
    tz: chrono_tz::Tz,
}

impl Default for Now {
    fn default() -> Self {
        Now { ms: 0, tz: chrono_tz::UTC }
    }
}

impl Now {
    fn of(state: &AppState) -> Now {
        Now { ms: state.rooms.now_ms(), tz: state.rooms.config().rooms.tz() }
    }
}

/// A scheduled call's start, as the join page shows it.
struct Starts {
    /// "Starts Thu 3 Dec 2026, 18:00 (UTC)".
    label: String,
    /// When the room opens, in milliseconds since the epoch (the page counts down to it).
    opens_ms: i64,
}

/// `/r/{id}/room`.
#[derive(Template)]
#[template(path = "room.html")]
struct RoomPage {
    lang: &'static str,
    t: &'static Strings,
    i18n_json: String,
    page_title: String,
    room_id: String,
    title: String,
    kind: &'static str,
    kind_label: &'static str,
    media: &'static str,
    media_label: &'static str,
}

fn lang_of(headers: &HeaderMap) -> Lang {
    negotiate(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

async fn landing(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let t = strings(lang);
    let page = LandingPage { lang: lang.code(), t, i18n_json: t.to_json(), base_url: state.rooms.base_url() };
    html(StatusCode::OK, page.render())
}

async fn join_page(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some(id) = RoomId::parse(&id) else { return error_page(lang, ServiceError::NotFound) };
    match state.rooms.view(&id, Knocks::Hidden).await {
        Ok(view) => {
            let qr = qr_svg(&state.rooms.room_url(&id));
            let (status, page) = join_page_for(lang, Some((view, qr)), None, Now::of(&state));
            html(status, page.render())
        }
        Err(e) => error_page(lang, e),
    }
}

async fn room_page(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let Some(id) = RoomId::parse(&id) else { return error_page(lang, ServiceError::NotFound) };
    let view = match state.rooms.view(&id, Knocks::Hidden).await {
        Ok(v) => v,
        Err(e) => return error_page(lang, e),
    };
    if matches!(view.status, RoomStatus::Ended | RoomStatus::Expired) {
        let qr = qr_svg(&state.rooms.room_url(&id));
        let (status, page) = join_page_for(lang, Some((view, qr)), None, Now::of(&state));
        return html(status, page.render());
    }
    let t = strings(lang);
    let title = display_title(&view, t);
    let page = RoomPage {
        lang: lang.code(),
        t,
        i18n_json: t.to_json(),
        page_title: format!("{title} · callbridge"),
        room_id: view.id,
        title,
        kind: view.kind.as_str(),
        kind_label: t.kind(view.kind.as_str()),
        media: view.media.as_str(),
        media_label: t.media(view.media),
    };
    html(StatusCode::OK, page.render())
}

/// The join page for a room (or none: not found / error) and its HTTP status.
fn join_page_for(lang: Lang, room: Option<(RoomView, String)>, error: Option<&'static str>, now: Now) -> (StatusCode, JoinPage) {
    let t = strings(lang);
    let opens = |view: &RoomView| view.starts_at_ms.map(|s| s - OPENS_BEFORE_START.as_millis() as i64).filter(|o| *o > now.ms);
    let (status, state, message) = match (&room, error) {
        (_, Some("error")) => (StatusCode::SERVICE_UNAVAILABLE, "error", t.state_error),
        (None, _) => (StatusCode::NOT_FOUND, "not_found", t.state_not_found),
        (Some((view, _)), _) if !view.ended && opens(view).is_some() => (StatusCode::OK, "scheduled", t.state_scheduled),
        (Some((view, _)), _) => match view.status {
            RoomStatus::Open => (StatusCode::OK, "open", ""),
            RoomStatus::Locked if view.knock => (StatusCode::OK, "locked", t.state_locked_knock),
            RoomStatus::Locked => (StatusCode::OK, "locked", t.state_locked),
            RoomStatus::Full => (StatusCode::OK, "full", t.state_full),
            RoomStatus::Ended => (StatusCode::GONE, "ended", t.state_ended),
            RoomStatus::Expired => (StatusCode::GONE, "expired", t.state_expired),
        },
    };
    let room = room.map(|(view, qr_svg)| {
        let status = view.status.as_str();
        RoomInfo {
            title: display_title(&view, t),
            kind: view.kind.as_str(),
            kind_label: t.kind(view.kind.as_str()),
            media: view.media.as_str(),
            media_label: t.media(view.media),
            host_name: view.host_name.clone(),
            status,
            status_label: if opens(&view).is_some() && !view.ended { t.status_scheduled } else { t.status(status) },
            badge: if opens(&view).is_some() && !view.ended { "scheduled" } else { status },
            knock: view.knock,
            joinable: matches!(view.status, RoomStatus::Open | RoomStatus::Locked | RoomStatus::Full) && opens(&view).is_none(),
            starts: match (view.starts_at_ms, opens(&view)) {
                (Some(start), Some(opens_ms)) if !view.ended => {
                    let time = chrono::DateTime::from_timestamp_millis(start).unwrap_or_default().with_timezone(&now.tz);
                    Some(Starts { label: t.starts.replace("{time}", &format!("{} ({})", time.format(t.date_format), now.tz.name())), opens_ms })
                }
                _ => None,
            },
            present: view.present().map(|p| p.name.clone()).collect(),
            capacity: view.capacity,
            qr_svg,
            url: view.url,
            id: view.id,
        }
    });
    let page_title = match &room {
        Some(r) => format!("{} · callbridge", r.title),
        None => format!("{message} · callbridge"),
    };
    let page = JoinPage { lang: lang.code(), t, i18n_json: t.to_json(), page_title, state, message, room };
    (status, page)
}

fn error_page(lang: Lang, e: ServiceError) -> Response {
    let (status, page) = match e {
        ServiceError::NotFound | ServiceError::Invalid(_) | ServiceError::InvalidName(_) => join_page_for(lang, None, None, Now::default()),
        ServiceError::Store(err) => {
            tracing::error!(error = %err, "store error while rendering a page");
            join_page_for(lang, None, Some("error"), Now::default())
        }
    };
    html(status, page.render())
}

fn display_title(view: &RoomView, t: &Strings) -> String {
    view.title.clone().unwrap_or_else(|| t.default_title.to_owned())
}

/// The link as an inline SVG QR code (no XML prolog; sized by CSS through its viewBox).
fn qr_svg(url: &str) -> String {
    use qrcode::render::svg;
    let Ok(code) = qrcode::QrCode::new(url.as_bytes()) else { return String::new() };
    let svg = code
        .render::<svg::Color>()
        .min_dimensions(180, 180)
        .quiet_zone(true)
        .dark_color(svg::Color("#111827"))
        .light_color(svg::Color("#ffffff"))
        .build();
    match svg.find("<svg") {
        Some(start) => svg[start..].replacen("<svg ", r#"<svg aria-hidden="true" focusable="false" "#, 1),
        None => String::new(),
    }
}

/// A rendered page with the security headers.
fn html(status: StatusCode, body: askama::Result<String>) -> Response {
    let mut resp = match body {
        Ok(body) => (status, Html(body)).into_response(),
        Err(error) => {
            tracing::error!(%error, "template error");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    resp
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "join.js" => (JOIN_JS, "text/javascript; charset=utf-8"),
        "room.js" => (ROOM_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, [(header::X_CONTENT_TYPE_OPTIONS, "nosniff")], "not found").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_is_bare_inline_svg() {
        let svg = qr_svg("https://calls.example.org/r/AbCdEfGhIjKlMnOpQrStUv");
        assert!(svg.starts_with("<svg aria-hidden=\"true\""));
        assert!(!svg.contains("<?xml"));
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn assets_are_embedded() {
        assert!(JOIN_JS.contains("/r/${roomId}/join"));
        assert!(ROOM_JS.contains("window.callbridge"));
        assert!(STYLE_CSS.contains(".tile"));
    }

    fn room(status: RoomStatus, title: &str, name: &str) -> RoomView {
        let participant = crate::room::ParticipantView {
            id: "PPPPPPPPPPPP".into(),
            name: name.into(),
            joined_at: "2026-01-01T00:00:00Z".into(),
            left_at: None,
            present: true,
            seconds_present: 0,
            removed: false,
            vouched_by: None,
        };
        RoomView {
            id: "AbCdEfGhIjKlMnOpQrStUv".into(),
            url: "https://calls.example.org/r/AbCdEfGhIjKlMnOpQrStUv".into(),
            kind: crate::room::RoomKind::Video,
            media: crate::room::Media::Sfu,
            title: Some(title.into()),
            host_name: Some(name.into()),
            status,
            locked: status == RoomStatus::Locked,
            ended: status == RoomStatus::Ended,
            knock: true,
            capacity: 8,
            max_participants: 8,
            created_at: "2026-01-01T00:00:00Z".into(),
            ended_at: None,
            participants: vec![participant],
            knocks: None,
            host_ref: None,
            chat_ref: None,
            chat_name: None,
            platform: None,
            starts_at: None,
            opens_at: None,
            starts_at_ms: None,
        }
    }

    #[test]
    fn join_page_statuses_and_escaping() {
        let evil = "<img src=x onerror=alert(1)>";
        for (status, code, state) in [
            (RoomStatus::Open, StatusCode::OK, "open"),
            (RoomStatus::Locked, StatusCode::OK, "locked"),
            (RoomStatus::Full, StatusCode::OK, "full"),
            (RoomStatus::Ended, StatusCode::GONE, "ended"),
            (RoomStatus::Expired, StatusCode::GONE, "expired"),
        ] {
            let (got, page) = join_page_for(Lang::En, Some((room(status, evil, evil), qr_svg("https://x"))), None, Now::default());
            assert_eq!(got, code, "{state}");
            let html = page.render().unwrap();
            assert!(!html.contains("<img"), "{state}: user strings are escaped");
            assert!(html.contains("&#60;img") || html.contains("&lt;img"), "{state}");
            assert!(html.contains(&format!("data-state=\"{state}\"")));
            assert!(html.contains("id=\"status\""));
        }
        let (_, page) = join_page_for(Lang::Es, Some((room(RoomStatus::Locked, "T", "Ana"), String::new())), None, Now::default());
        let html = page.render().unwrap();
        assert!(html.contains("id=\"knock\"") && html.contains("lang=\"es\""));
        assert!(html.contains("maxlength=\"64\""));
    }

    #[test]
    fn not_found_page_escapes_and_has_status() {
        let (status, page) = join_page_for(Lang::Fr, None, None, Now::default());
        assert_eq!(status, StatusCode::NOT_FOUND);
        let html = page.render().unwrap();
        assert!(html.contains("lang=\"fr\""));
        assert!(html.contains("id=\"state-message\""));
        assert!(!html.contains("<script>"), "no inline executable scripts");
    }
}
