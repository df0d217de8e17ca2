//! One browser at the SFU: its `Rtc`, what it publishes, and the slots it receives on.
//!
//! A page receives through a fixed set of **slots** (send-only tracks from the server), at most
//! [`MAX_VIDEO_SLOTS`] video and [`MAX_AUDIO_SLOTS`] audio, whoever is in the room: the SFU
//! decides whose media each slot carries (the tiles the page shows, the loudest voices) and
//! tells the page (`sfu-slots`). So a room of 50 never means 98 tracks, nor an offer of that
//! size, per browser.
//!
//! The page offers once (its own tracks, send-only); from then on only the server offers, when
//! it needs more slots, one offer at a time, so the two never cross.

use crate::ids::{ParticipantId, RoomId};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid, Rid};
use str0m::config::DtlsCert;
use str0m::{Candidate, Rtc};

/// Most video tiles a page receives at once (a 4×4 grid).
pub const MAX_VIDEO_SLOTS: usize = 16;
/// Most voices a page receives at once (in bigger rooms, the loudest).
pub const MAX_AUDIO_SLOTS: usize = 8;

/// A peer's number on this node.
pub type PeerKey = u64;

/// A track a peer publishes.
#[derive(Debug, Clone)]
pub struct TrackIn {
    pub mid: Mid,
    pub kind: MediaKind,
    /// Simulcast layers as offered; empty: one layer.
    pub layers: Vec<Rid>,
}

/// A publisher's track, as seen from a receiver.
pub type Source = (PeerKey, Mid);

/// One track the server sends to a page.
#[derive(Debug, Clone)]
pub struct Slot {
    pub mid: Mid,
    pub kind: MediaKind,
    /// Answered: frames may be written.
    pub open: bool,
    /// Whose track it carries now.
    pub source: Option<Source>,
    /// The simulcast layer being forwarded (switches happen on keyframes).
    pub current: Option<Rid>,
}

/// One browser.
pub struct Peer {
    pub room: RoomId,
    pub pid: ParticipantId,
    /// The room socket this peer's signaling belongs to.
    pub conn: u64,
    pub rtc: Rtc,
    /// When `rtc` wants its next timeout.
    pub deadline: Instant,
    /// The page's remote addresses seen so far (for the address map).
    pub addrs: HashSet<(usize, SocketAddr)>,
    /// The socket this peer talks through.
    pub socket: usize,
    pub tracks_in: Vec<TrackIn>,
    pub slots: Vec<Slot>,
    pub pending: Option<SdpPendingOffer>,
    /// Whom the page shows as tiles (`None`: anyone, in order) and who is large.
    pub shown: Option<Vec<String>>,
    pub large: Option<String>,
    /// A host muted this peer for everyone.
    pub muted_audio: bool,
    pub muted_video: bool,
    /// Smoothed loudness of this peer's voice (0 silent … 127 loudest).
    pub loudness: f32,
    pub last_voice: Option<Instant>,
    /// When a keyframe was last asked of this peer, per track and layer.
    pub keyframe_asked: HashMap<(Mid, Option<Rid>), Instant>,
    /// A voice room: this peer's video is never forwarded.
    pub voice: bool,
    /// The last `sfu-slots` message sent to the page (sent again only when it changes).
    pub told: String,
    /// When this peer's media was added (tiles beyond the 16 go by arrival).
    pub since: Instant,
}

/// Packets of each forwarded video track kept for resends (NACK): about 2 s of a camera's high
/// layer. str0m's default (1000) would let each of a page's 16 video slots hold a megabyte.
const VIDEO_RESEND_BUFFER: usize = 200;

/// Codecs every peer speaks (forwarding needs one codec set everywhere), and the node's one
/// DTLS certificate (a key pair per connection would cost a keygen per join, and memory).
fn new_rtc(cert: &DtlsCert, now: Instant) -> Rtc {
    Rtc::builder()
        .set_ice_lite(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .set_send_buffer_video(VIDEO_RESEND_BUFFER)
        .set_dtls_cert(cert.clone())
        .build(now)
}

/// The certificate every connection of this node presents.
pub fn node_certificate() -> Option<DtlsCert> {
    str0m::crypto::from_feature_flags().dtls_provider.generate_certificate()
}

impl Peer {
    /// Accepts a page's offer; returns the peer and the answer's SDP.
    pub fn accept(
        room: RoomId,
        pid: ParticipantId,
        conn: u64,
        voice: bool,
        sdp: &str,
        candidates: &[SocketAddr],
        cert: &DtlsCert,
        now: Instant,
    ) -> Result<(Peer, String), String> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| format!("unreadable offer: {e}"))?;
        let mut rtc = new_rtc(cert, now);
        for addr in candidates {
            let candidate = Candidate::host(*addr, "udp").map_err(|e| format!("candidate {addr}: {e}"))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| format!("cannot accept the offer: {e}"))?;
        let peer = Peer {
            room,
            pid,
            conn,
            rtc,
            deadline: now,
            addrs: HashSet::new(),
            socket: 0,
            tracks_in: Vec::new(),
            slots: Vec::new(),
            pending: None,
            shown: None,
            large: None,
            muted_audio: false,
            muted_video: false,
            loudness: 0.0,
            last_voice: None,
            keyframe_asked: HashMap::new(),
            voice,
            told: String::new(),
            since: now,
        };
        Ok((peer, answer.to_sdp_string()))
    }

    /// Offers more slots when the page needs them (`video`, `audio`: how many it should
    /// have). Returns the offer's SDP, or `None` when nothing is missing or an offer is
    /// already out.
    pub fn grow_slots(&mut self, video: usize, audio: usize) -> Option<String> {
        if self.pending.is_some() {
            return None;
        }
        let have = |kind| self.slots.iter().filter(|s| s.kind == kind).count();
        let missing = [
            (MediaKind::Video, video.min(MAX_VIDEO_SLOTS).saturating_sub(have(MediaKind::Video))),
            (MediaKind::Audio, audio.min(MAX_AUDIO_SLOTS).saturating_sub(have(MediaKind::Audio))),
        ];
        if missing.iter().all(|(_, n)| *n == 0) {
            return None;
        }
        let mut api = self.rtc.sdp_api();
        let mut added = Vec::new();
        for (kind, n) in missing {
            for _ in 0..n {
                // One stream id for every slot: which person a slot carries is told apart.
                let mid = api.add_media(kind, Direction::SendOnly, Some("callbridge".into()), None, None);
                added.push(Slot { mid, kind, open: false, source: None, current: None });
            }
        }
        let (offer, pending) = api.apply()?;
        self.slots.extend(added);
        self.pending = Some(pending);
        Some(offer.to_sdp_string())
    }

    /// The page answered the server's offer: its new slots open.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| format!("unreadable answer: {e}"))?;
        let Some(pending) = self.pending.take() else { return Err("an answer to no offer".into()) };
        self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| format!("cannot accept the answer: {e}"))?;
        for slot in &mut self.slots {
            slot.open = true;
        }
        Ok(())
    }

    /// Puts `wanted` sources of one kind into this page's open slots, keeping the ones that
    /// stay wanted where they are. Returns the sources newly placed (they need a keyframe).
    pub fn assign(&mut self, kind: MediaKind, wanted: &[Source]) -> Vec<Source> {
        for slot in self.slots.iter_mut().filter(|s| s.kind == kind) {
            if slot.source.is_some_and(|s| !wanted.contains(&s)) {
                slot.source = None;
                slot.current = None;
            }
        }
        let mut placed = Vec::new();
        for source in wanted {
            if self.slots.iter().any(|s| s.source == Some(*source)) {
                continue;
            }
            let Some(slot) = self.slots.iter_mut().find(|s| s.kind == kind && s.open && s.source.is_none()) else { break };
            slot.source = Some(*source);
            slot.current = None;
            placed.push(*source);
        }
        placed
    }

    /// The slot carrying `source`, if any.
    pub fn slot_of(&mut self, source: Source) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.source == Some(source))
    }
}
