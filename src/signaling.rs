//! The room socket's messages, typed in both directions. Every frame is a JSON object whose
//! `type` names the message (`welcome`, `peer-joined`, `signal`, …); the room page
//! (`assets/room.js`) speaks the same names.

use crate::room::RoomView;
use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A peer as other pages see it.
#[derive(Debug, Clone, Serialize)]
pub struct PeerRef<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

/// Who this page is.
#[derive(Debug, Clone, Serialize)]
pub struct Me<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// Whether the page has host powers (it then sees the requests to join).
    pub host: bool,
}

/// One STUN or TURN server as a browser's `RTCIceServer` takes it.
#[derive(Debug, Clone, Serialize)]
pub struct IceServerRef<'a> {
    pub urls: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<&'a str>,
}

/// One receiving track of an SFU page and whose media it carries.
#[derive(Debug, Clone, Serialize)]
pub struct SlotRef {
    pub mid: String,
    pub id: Option<String>,
}

/// What the bridge sends to a room page.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToPage<'a> {
    /// The first message: who this page is, who else is here, the room, and how to connect.
    Welcome {
        #[serde(rename = "self")]
        me: Me<'a>,
        peers: Vec<PeerRef<'a>>,
        room: Option<&'a RoomView>,
        ice_servers: Vec<IceServerRef<'a>>,
    },
    PeerJoined { peer: PeerRef<'a> },
    PeerLeft { id: &'a str },
    /// WebRTC signaling from another page, passed through as it came.
    Signal { from: &'a str, data: &'a Value },
    /// Another page's microphone, camera and screen state.
    PeerMedia { id: &'a str, audio: bool, video: bool, screen: bool },
    /// The room changed.
    Room { room: &'a RoomView },
    /// The SFU's answer to this page's offer (SFU rooms).
    SfuAnswer { sdp: &'a str },
    /// The SFU offers a change: people to receive came or went.
    SfuOffer { sdp: &'a str },
    /// SFU rooms: which participant each of the page's receiving tracks carries now (by
    /// the transceiver's mid; `id` null: nobody, the track is idle).
    SfuSlots { slots: &'a [SlotRef] },
    /// A host muted (`true`) or let speak again (`false`) this page's audio or video.
    Muted {
        #[serde(skip_serializing_if = "Option::is_none")]
        audio: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        video: Option<bool>,
    },
    /// Who is speaking now (SFU rooms), by participant id.
    Speaking { ids: &'a [&'a str] },
    /// The socket closes, and why (`ended`, `expired`, `removed`, `shutdown`, `flood`).
    Closed { reason: &'a str },
}

impl ToPage<'_> {
    /// The message as a text frame.
    pub fn frame(&self) -> Utf8Bytes {
        // Serializing these types cannot fail: every map key is a string.
        Utf8Bytes::from(serde_json::to_string(self).unwrap_or_default())
    }
}

/// What a room page sends to the bridge. Anything else is ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FromPage {
    /// WebRTC signaling for one other page.
    Signal { to: String, data: Value },
    /// This page's media state, for every other page.
    Media {
        #[serde(default)]
        audio: bool,
        #[serde(default)]
        video: bool,
        #[serde(default)]
        screen: bool,
    },
    /// SFU rooms: the page's one offer (it publishes its tracks, send-only).
    SfuOffer { sdp: String },
    /// SFU rooms: the answer to the SFU's last offer.
    SfuAnswer { sdp: String },
    /// SFU rooms: whom the page shows as tiles (absent: everyone) and who is large; video of
    /// the others is not sent to it.
    SfuView {
        #[serde(default)]
        shown: Option<Vec<String>>,
        #[serde(default)]
        large: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_page_protocol_keeps_its_names() {
        let data = json!({"sdp": "x"});
        let sent: Value = serde_json::from_str(&ToPage::Signal { from: "p1", data: &data }.frame()).unwrap();
        assert_eq!(sent, json!({"type": "signal", "from": "p1", "data": {"sdp": "x"}}));
        let joined: Value = serde_json::from_str(&ToPage::PeerJoined { peer: PeerRef { id: "a", name: "Ada" } }.frame()).unwrap();
        assert_eq!(joined, json!({"type": "peer-joined", "peer": {"id": "a", "name": "Ada"}}));
        let media: Value = serde_json::from_str(&ToPage::PeerMedia { id: "a", audio: true, video: false, screen: false }.frame()).unwrap();
        assert_eq!(media, json!({"type": "peer-media", "id": "a", "audio": true, "video": false, "screen": false}));
        let m: FromPage = serde_json::from_str(r#"{"type":"media","audio":true}"#).unwrap();
        assert!(matches!(m, FromPage::Media { audio: true, video: false, screen: false }));
        assert!(serde_json::from_str::<FromPage>(r#"{"type":"signal","data":{}}"#).is_err(), "a signal names its peer");
        assert!(serde_json::from_str::<FromPage>(r#"{"type":"boom"}"#).is_err());
    }
}
