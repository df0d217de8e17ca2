//! The SFU loop: datagrams in, timers, commands, forwarding.
//!
//! Each `Rtc` is polled until it has nothing more to say after every change made to it (str0m
//! requires it); what one peer's output means for others (a frame to forward, a keyframe to ask
//! for) is queued and handled after, never inside another peer's poll.

use super::net::{SfuSocket, poll_recv_any};
use super::peer::{MAX_AUDIO_SLOTS, MAX_VIDEO_SLOTS, Peer, PeerKey, Source, TrackIn};
use super::Command;
use crate::ids::{ParticipantId, RoomId};
use crate::live::{Live, Outbound};
use crate::signaling::{SlotRef, ToPage};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::media::{KeyframeRequest, KeyframeRequestKind, MediaData, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::config::DtlsCert;
use str0m::{Event, IceConnectionState, Input, Output};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// In rooms with more voices than a page has audio slots, the loudest are forwarded; one
/// already forwarded keeps its place until another is this much louder.
const HOLD_VOICE: f32 = 10.0;
/// How often the loudest voices and who is speaking are worked out again.
const SPEAKERS_EVERY: Duration = Duration::from_millis(300);
/// Loudness (127 minus RFC 6464's -dBov) above which someone counts as speaking.
const SPEAKING: f32 = 127.0 - 50.0;
/// A tile is given to someone speaking only when its holder has been quiet this long.
const QUIET_BEFORE_SWAP: Duration = Duration::from_secs(5);
/// At most one keyframe request per forwarded track in this time.
const KEYFRAME_REQUEST_EVERY: Duration = Duration::from_millis(500);
/// With this many video tiles or fewer, receivers get the high layer; above, the low one
/// (the large tile always gets the high one).
const HIGH_LAYER_UP_TO: usize = 4;
const LOW: &str = "l";
const HIGH: &str = "h";

/// What one peer's output asks of the others.
enum Follow {
    Media(PeerKey, MediaData),
    Keyframe(PeerKey, KeyframeRequest),
    Added(PeerKey),
}

struct Router {
    sockets: Vec<SfuSocket>,
    live: Live,
    peers: HashMap<PeerKey, Peer>,
    rooms: HashMap<RoomId, Vec<PeerKey>>,
    by_participant: HashMap<(RoomId, ParticipantId), PeerKey>,
    by_addr: HashMap<(usize, SocketAddr), PeerKey>,
    timers: BinaryHeap<Reverse<(Instant, PeerKey)>>,
    follow: VecDeque<Follow>,
    /// Rooms where who receives whom may have changed.
    refresh: HashSet<RoomId>,
    /// Pages whose slots just opened: keyframes of all they receive.
    follow_keyframes: Vec<PeerKey>,
    /// Per room: the voices forwarded (big rooms) and who is speaking.
    voices: HashMap<RoomId, (Option<HashSet<PeerKey>>, Vec<String>)>,
    next_key: PeerKey,
    cert: DtlsCert,
}

pub async fn run(sockets: Vec<SfuSocket>, cert: DtlsCert, live: Live, mut inbox: mpsc::Receiver<Command>, cancel: CancellationToken) {
    let mut r = Router {
        cert,
        sockets,
        live,
        peers: HashMap::new(),
        rooms: HashMap::new(),
        by_participant: HashMap::new(),
        by_addr: HashMap::new(),
        timers: BinaryHeap::new(),
        follow: VecDeque::new(),
        refresh: HashSet::new(),
        follow_keyframes: Vec::new(),
        voices: HashMap::new(),
        next_key: 1,
    };
    let mut buf = vec![0u8; 2000];
    let mut speakers = tokio::time::interval(SPEAKERS_EVERY);
    speakers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_timer = r.timers.peek().map(|Reverse((at, _))| *at).unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            command = inbox.recv() => match command {
                Some(command) => r.command(command),
                None => break,
            },
            (i, result) = std::future::poll_fn(|cx| poll_recv_any(&r.sockets, cx, &mut buf)) => match result {
                Ok((n, source)) => r.datagram(i, source, &buf[..n]),
                Err(error) => tracing::debug!(%error, "SFU socket read failed"),
            },
            _ = tokio::time::sleep_until(next_timer.into()) => r.timers_due(),
            _ = speakers.tick() => r.pick_voices(),
        }
        // A socket that is always ready (a flood) must not starve the timers.
        if r.timers.peek().is_some_and(|Reverse((at, _))| *at <= Instant::now()) {
            r.timers_due();
        }
        r.settle();
    }
    for peer in r.peers.values_mut() {
        peer.rtc.disconnect();
    }
    tracing::info!("SFU stopped");
}

impl Router {
    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Offer { room, pid, conn, voice, sdp } => {
                if let Some(old) = self.by_participant.get(&(room.clone(), pid.clone())).copied() {
                    self.drop_peer(old);
                }
                let candidates: Vec<SocketAddr> = self.sockets.iter().map(|s| s.announced).collect();
                match Peer::accept(room.clone(), pid.clone(), conn, voice, &sdp, &candidates, &self.cert, now) {
                    Ok((peer, answer)) => {
                        let key = self.next_key;
                        self.next_key += 1;
                        self.live.send_to_conn(&room, &pid, conn, Outbound::Text(ToPage::SfuAnswer { sdp: &answer }.frame()));
                        self.peers.insert(key, peer);
                        metrics::gauge!("callbridge_sfu_peers").set(self.peers.len() as f64);
                        self.rooms.entry(room.clone()).or_default().push(key);
                        self.by_participant.insert((room.clone(), pid), key);
                        self.poll(key, now);
                        self.refresh.insert(room);
                    }
                    Err(why) => tracing::info!(room_id = %room, participant_id = %pid, why, "SFU offer refused"),
                }
            }
            Command::Answer { room, pid, conn, sdp } => {
                let Some(key) = self.by_participant.get(&(room.clone(), pid)).copied() else { return };
                let Some(peer) = self.peers.get_mut(&key) else { return };
                if peer.conn != conn {
                    return;
                }
                if let Err(why) = peer.accept_answer(&sdp) {
                    tracing::info!(room_id = %room, why, "SFU answer refused");
                }
                self.poll(key, now);
                // The new slots are filled at once, and each wants a keyframe to start from.
                self.refresh.insert(room);
                self.follow_keyframes.push(key);
            }
            Command::View { room, pid, shown, large } => {
                let Some(key) = self.by_participant.get(&(room, pid)).copied() else { return };
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.shown = shown.map(|s| s.into_iter().take(64).collect());
                    peer.large = large;
                    self.refresh.insert(peer.room.clone());
                }
            }
            Command::Leave { room, pid, conn } => {
                if let Some(key) = self.by_participant.get(&(room, pid)).copied()
                    && self.peers.get(&key).is_some_and(|p| p.conn == conn)
                {
                    self.drop_peer(key);
                }
            }
            Command::Remove { room, pid } => {
                if let Some(key) = self.by_participant.get(&(room, pid)).copied() {
                    self.drop_peer(key);
                }
            }
            Command::End { room } => {
                for key in self.rooms.get(&room).cloned().unwrap_or_default() {
                    self.drop_peer(key);
                }
            }
            Command::Mute { room, pid, audio, video } => {
                let Some(key) = self.by_participant.get(&(room, pid)).copied() else { return };
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.muted_audio = audio.unwrap_or(peer.muted_audio);
                    peer.muted_video = video.unwrap_or(peer.muted_video);
                }
                if video == Some(false) {
                    self.keyframes_from(key);
                }
            }
        }
    }

    /// One datagram: to the peer that owns its source, or (a first STUN check from a new
    /// address) the peer whose credentials it carries. Anything else is dropped.
    fn datagram(&mut self, socket: usize, source: SocketAddr, data: &[u8]) {
        let Ok(contents) = data.try_into() else { return };
        let now = Instant::now();
        let destination = self.sockets[socket].announced;
        let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination, contents });
        let key = match self.by_addr.get(&(socket, source)) {
            Some(key) => *key,
            // From a new address only a STUN check (first byte 0–3) can be a peer's: nothing
            // else is worth a look through every peer.
            None if !matches!(data.first(), Some(0..=3)) => return,
            None => {
                let Some(key) = self.peers.iter().find(|(_, p)| p.rtc.accepts(&input)).map(|(k, _)| *k) else { return };
                self.by_addr.insert((socket, source), key);
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.addrs.insert((socket, source));
                    peer.socket = socket;
                }
                key
            }
        };
        let Some(peer) = self.peers.get_mut(&key) else { return };
        if let Err(error) = peer.rtc.handle_input(input) {
            tracing::debug!(%error, "SFU peer refused a datagram");
        }
        self.poll(key, now);
    }

    fn timers_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            // A stale entry: the peer has a later deadline (or is gone).
            let Some(peer) = self.peers.get_mut(&key) else { continue };
            if peer.deadline != at {
                continue;
            }
            if let Err(error) = peer.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(%error, "SFU peer timeout failed");
            }
            self.poll(key, now);
        }
        // Stale entries pile up as deadlines move: rebuild now and then.
        if self.timers.len() > 4 * self.peers.len() + 64 {
            self.timers = self.peers.iter().map(|(k, p)| Reverse((p.deadline, *k))).collect();
        }
    }

    /// Polls a peer until it has nothing more to say; what concerns others is queued.
    fn poll(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else { return };
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    // str0m says "no timeout" with a far future; a minute is as good.
                    let at = at.min(now + Duration::from_secs(60));
                    if at != peer.deadline || !peer.rtc.is_alive() {
                        peer.deadline = at;
                        self.timers.push(Reverse((at, key)));
                    }
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    let socket = self.sockets.iter().position(|s| s.announced == t.source).unwrap_or(peer.socket);
                    // A full send buffer drops the datagram, as the network would.
                    let _ = self.sockets[socket].socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(event)) => match event {
                    // A voice room carries audio only, whatever a page offers.
                    Event::MediaAdded(added) if added.direction.is_receiving() && !(peer.voice && added.kind == MediaKind::Video) => {
                        let layers = added.simulcast.map(|s| s.recv.into_iter().map(|l| l.rid).collect()).unwrap_or_default();
                        peer.tracks_in.push(TrackIn { mid: added.mid, kind: added.kind, layers });
                        self.follow.push_back(Follow::Added(key));
                    }
                    Event::MediaData(data) => self.follow.push_back(Follow::Media(key, data)),
                    Event::KeyframeRequest(request) => self.follow.push_back(Follow::Keyframe(key, request)),
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => peer.rtc.disconnect(),
                    _ => {}
                },
                Err(error) => {
                    tracing::debug!(%error, "SFU peer failed; disconnecting it");
                    peer.rtc.disconnect();
                }
            }
        }
    }

    /// Works through what peers' output asked of others, then drops dead peers and brings
    /// the rooms that changed up to date.
    fn settle(&mut self) {
        while let Some(follow) = self.follow.pop_front() {
            match follow {
                Follow::Media(from, data) => self.forward(from, data),
                Follow::Keyframe(to, request) => self.keyframe_for(to, request),
                Follow::Added(key) => {
                    if let Some(peer) = self.peers.get(&key) {
                        self.refresh.insert(peer.room.clone());
                    }
                }
            }
        }
        let dead: Vec<PeerKey> = self.peers.iter().filter(|(_, p)| !p.rtc.is_alive()).map(|(k, _)| *k).collect();
        for key in dead {
            self.drop_peer(key);
        }
        let refreshed = !self.refresh.is_empty();
        for room in std::mem::take(&mut self.refresh) {
            self.refresh_room(&room);
        }
        if refreshed {
            let streams = self.peers.values().flat_map(|p| &p.slots).filter(|s| s.open && s.source.is_some()).count();
            metrics::gauge!("callbridge_sfu_streams").set(streams as f64);
        }
        for key in std::mem::take(&mut self.follow_keyframes) {
            self.keyframes_for_all(key);
        }
    }

    /// Gives each page of a room the slots it needs and puts the right people in them: the
    /// tiles it shows (large one first, then who spoke last, then by arrival), and every voice
    /// (in big rooms, the loudest). Pages hear of changes in `sfu-slots`.
    fn refresh_room(&mut self, room: &RoomId) {
        let Some(keys) = self.rooms.get(room).cloned() else { return };
        let loudest = self.voices.get(room).and_then(|(l, _)| l.clone());
        // Every publisher's tracks, by arrival.
        let mut publishers: Vec<(PeerKey, &Peer)> = keys.iter().filter_map(|k| self.peers.get(k).map(|p| (*k, p))).collect();
        publishers.sort_by_key(|(_, p)| p.since);
        let videos: Vec<VideoSource> = publishers
            .iter()
            .filter(|(_, p)| !p.voice)
            .flat_map(|(k, p)| {
                p.tracks_in.iter().filter(|t| t.kind == MediaKind::Video).map(|t| (*k, p.pid.as_str().to_owned(), t.mid, p.last_voice))
            })
            .collect();
        // Loudest first: a page with fewer voice slots than voices keeps the loudest.
        let mut voices: Vec<(PeerKey, &Peer)> =
            publishers.iter().filter(|(k, _)| loudest.as_ref().is_none_or(|l| l.contains(k))).copied().collect();
        voices.sort_by(|a, b| b.1.loudness.total_cmp(&a.1.loudness));
        let audios: Vec<Source> = voices
            .iter()
            .flat_map(|(k, p)| p.tracks_in.iter().filter(|t| t.kind == MediaKind::Audio).map(|t| (*k, t.mid)))
            .collect();
        let pids: HashMap<PeerKey, String> = publishers.iter().map(|(k, p)| (*k, p.pid.as_str().to_owned())).collect();
        let now = Instant::now();
        let mut keyframes = Vec::new();
        for key in keys {
            let Some(peer) = self.peers.get_mut(&key) else { continue };
            let candidates: Vec<&VideoSource> =
                videos.iter().filter(|v| v.0 != key && peer.shown.as_ref().is_none_or(|s| s.contains(&v.1))).collect();
            let video = pick_tiles(peer, &candidates, now);
            let audio: Vec<Source> = audios.iter().filter(|(k, _)| *k != key).take(MAX_AUDIO_SLOTS).copied().collect();
            if let Some(offer) = peer.grow_slots(video.len(), audio.len()) {
                self.live.send_to_conn(room, &peer.pid, peer.conn, Outbound::Text(ToPage::SfuOffer { sdp: &offer }.frame()));
            }
            keyframes.extend(peer.assign(MediaKind::Video, &video));
            peer.assign(MediaKind::Audio, &audio);
            let slots: Vec<SlotRef> = peer
                .slots
                .iter()
                .filter(|s| s.open)
                .map(|s| SlotRef {
                    mid: s.mid.to_string(),
                    id: s.source.and_then(|(k, _)| pids.get(&k).cloned()),
                })
                .collect();
            let told = ToPage::SfuSlots { slots: &slots }.frame();
            if peer.told != told.as_str() {
                peer.told = told.as_str().to_owned();
                self.live.send_to_conn(room, &peer.pid, peer.conn, Outbound::Text(told));
            }
            self.poll(key, now);
        }
        for (from, mid) in keyframes {
            self.keyframes_of(from, mid);
        }
    }

    /// A frame from `from` to every page with a slot for it.
    fn forward(&mut self, from: PeerKey, data: MediaData) {
        let Some(publisher) = self.peers.get(&from) else { return };
        let Some(track) = publisher.tracks_in.iter().find(|t| t.mid == data.mid) else { return };
        let (kind, simulcast) = (track.kind, !track.layers.is_empty());
        if (kind == MediaKind::Audio && publisher.muted_audio) || (kind == MediaKind::Video && publisher.muted_video) {
            return;
        }
        let room = publisher.room.clone();
        let from_pid = publisher.pid.as_str().to_owned();
        if kind == MediaKind::Audio {
            self.hear(from, &data);
        }
        // Borrowed out of the map for the loop (polling never changes who is in a room), so no
        // frame copies the room's member list.
        let keys = self.rooms.get_mut(&room).map(std::mem::take).unwrap_or_default();
        let now = Instant::now();
        let mut forwarded = 0u64;
        let mut want_keyframe: Option<Rid> = None;
        for &key in &keys {
            if key == from {
                continue;
            }
            let Some(sub) = self.peers.get_mut(&key) else { continue };
            let large = sub.large.as_deref() == Some(from_pid.as_str());
            let tiles = sub.slots.iter().filter(|s| s.kind == MediaKind::Video && s.source.is_some()).count();
            let Some(slot) = sub.slot_of((from, data.mid)) else { continue };
            if !slot.open {
                continue;
            }
            if simulcast {
                let want = Rid::from(if large || tiles <= HIGH_LAYER_UP_TO { HIGH } else { LOW });
                match (slot.current, data.rid) {
                    (Some(current), Some(rid)) if rid == current => {
                        if current != want {
                            want_keyframe = Some(want);
                        }
                    }
                    (_, Some(rid)) if rid == want => {
                        if !data.is_keyframe() {
                            want_keyframe = Some(want);
                            continue;
                        }
                        slot.current = Some(rid);
                    }
                    _ => continue,
                }
            }
            let mid = slot.mid;
            let Some(writer) = sub.rtc.writer(mid) else { continue };
            let Some(pt) = writer.match_params(data.params) else { continue };
            let writer = match (data.ext_vals.audio_level, data.ext_vals.voice_activity) {
                (Some(level), voice) => writer.audio_level(level, voice.unwrap_or(false)),
                _ => writer,
            };
            match writer.write(pt, data.network_time, data.time, data.data.clone()) {
                Ok(()) => forwarded += 1,
                Err(error) => tracing::debug!(%error, "SFU write failed"),
            }
            self.poll(key, now);
        }
        if let Some(slot) = self.rooms.get_mut(&room) {
            *slot = keys;
        }
        if forwarded > 0 {
            let kind = if kind == MediaKind::Audio { "audio" } else { "video" };
            metrics::counter!("callbridge_sfu_frames_forwarded_total", "kind" => kind).increment(forwarded);
            metrics::counter!("callbridge_sfu_bytes_forwarded_total", "kind" => kind).increment(forwarded * data.data.len() as u64);
        }
        if let Some(rid) = want_keyframe {
            self.ask_keyframe(from, data.mid, Some(rid), KeyframeRequestKind::Pli);
        }
    }

    /// A receiver lost a picture: ask the publisher in that slot for a keyframe.
    fn keyframe_for(&mut self, to: PeerKey, request: KeyframeRequest) {
        let Some(sub) = self.peers.get(&to) else { return };
        let Some(slot) = sub.slots.iter().find(|s| s.mid == request.mid) else { return };
        let Some((from, mid)) = slot.source else { return };
        let current = slot.current;
        let layered = self.peers.get(&from).and_then(|p| p.tracks_in.iter().find(|t| t.mid == mid)).is_some_and(|t| !t.layers.is_empty());
        let rid = if layered { current.or(Some(Rid::from(LOW))) } else { None };
        self.ask_keyframe(from, mid, rid, request.kind);
    }

    /// Asks a publisher for a keyframe, at most every [`KEYFRAME_REQUEST_EVERY`] per track.
    fn ask_keyframe(&mut self, from: PeerKey, mid: Mid, rid: Option<Rid>, kind: KeyframeRequestKind) {
        let now = Instant::now();
        let Some(publisher) = self.peers.get_mut(&from) else { return };
        if !publisher.tracks_in.iter().any(|t| t.mid == mid) {
            return;
        }
        if publisher.keyframe_asked.get(&(mid, rid)).is_some_and(|last| now.duration_since(*last) < KEYFRAME_REQUEST_EVERY) {
            return;
        }
        publisher.keyframe_asked.insert((mid, rid), now);
        if let Some(mut writer) = publisher.rtc.writer(mid)
            && let Err(error) = writer.request_keyframe(rid, kind)
        {
            tracing::debug!(%error, "SFU keyframe request failed");
        }
        self.poll(from, now);
    }

    /// A keyframe of every layer of one video track (a receiver starts on it).
    fn keyframes_of(&mut self, from: PeerKey, mid: Mid) {
        let Some(track) = self.peers.get(&from).and_then(|p| p.tracks_in.iter().find(|t| t.mid == mid)).cloned() else { return };
        if track.kind != MediaKind::Video {
            return;
        }
        if track.layers.is_empty() {
            self.ask_keyframe(from, mid, None, KeyframeRequestKind::Pli);
        }
        for rid in track.layers {
            self.ask_keyframe(from, mid, Some(rid), KeyframeRequestKind::Pli);
        }
    }

    /// Keyframes of everything a page receives (its slots just opened).
    fn keyframes_for_all(&mut self, to: PeerKey) {
        let Some(sub) = self.peers.get(&to) else { return };
        let sources: Vec<Source> = sub.slots.iter().filter(|s| s.kind == MediaKind::Video).filter_map(|s| s.source).collect();
        for (from, mid) in sources {
            self.keyframes_of(from, mid);
        }
    }

    /// Keyframes of all of a publisher's video (its video was let through again).
    fn keyframes_from(&mut self, from: PeerKey) {
        let mids: Vec<Mid> = self.peers.get(&from).map(|p| p.tracks_in.iter().map(|t| t.mid).collect()).unwrap_or_default();
        for mid in mids {
            self.keyframes_of(from, mid);
        }
    }

    /// Keeps a smoothed loudness per voice (RFC 6464 levels: 0 loudest, 127 silent).
    fn hear(&mut self, from: PeerKey, data: &MediaData) {
        let Some(level) = data.ext_vals.audio_level else { return };
        let Some(peer) = self.peers.get_mut(&from) else { return };
        let loudness = 127.0 - f32::from(level.unsigned_abs().min(127));
        peer.loudness = 0.7 * peer.loudness + 0.3 * loudness;
        if loudness >= SPEAKING {
            peer.last_voice = Some(Instant::now());
        }
    }

    /// Per room: the loudest voices (in big rooms only those are forwarded) and who is speaking
    /// (pages show it; sent when it changes).
    fn pick_voices(&mut self) {
        let now = Instant::now();
        for (room, keys) in &self.rooms {
            let entry = self.voices.entry(room.clone()).or_insert((None, Vec::new()));
            let mut voices: Vec<(PeerKey, f32)> = keys
                .iter()
                .filter_map(|k| self.peers.get(k).map(|p| (*k, p)))
                .filter(|(_, p)| p.tracks_in.iter().any(|t| t.kind == MediaKind::Audio) && !p.muted_audio)
                .map(|(k, p)| {
                    // Whoever is forwarded keeps the place until someone is clearly louder, so
                    // slots do not flap between people who are all quiet.
                    let kept = entry.0.as_ref().is_some_and(|l| l.contains(&k));
                    (k, p.loudness + if kept { HOLD_VOICE } else { 0.0 })
                })
                .collect();
            let loudest = (voices.len() > MAX_AUDIO_SLOTS + 1).then(|| {
                voices.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                voices.iter().take(MAX_AUDIO_SLOTS + 1).map(|(k, _)| *k).collect::<HashSet<_>>()
            });
            if loudest != entry.0 {
                entry.0 = loudest;
                self.refresh.insert(room.clone());
            }
            let mut speaking: Vec<String> = keys
                .iter()
                .filter_map(|k| self.peers.get(k))
                .filter(|p| p.last_voice.is_some_and(|at| now.duration_since(at) < Duration::from_millis(800)) && !p.muted_audio)
                .map(|p| p.pid.as_str().to_owned())
                .collect();
            speaking.sort();
            // More cameras than tiles: who speaks decides who is seen.
            if keys.len() > MAX_VIDEO_SLOTS + 1 {
                self.refresh.insert(room.clone());
            }
            if entry.1 != speaking {
                let ids: Vec<&str> = speaking.iter().map(String::as_str).collect();
                self.live.broadcast(room, None, Outbound::Text(ToPage::Speaking { ids: &ids }.frame()));
                entry.1 = speaking;
            }
        }
    }

    /// Forgets a peer: its connection closes and its tracks are stopped at everyone else's.
    fn drop_peer(&mut self, key: PeerKey) {
        let Some(mut peer) = self.peers.remove(&key) else { return };
        metrics::gauge!("callbridge_sfu_peers").set(self.peers.len() as f64);
        tracing::debug!(room_id = %peer.room, participant_id = %peer.pid, alive = peer.rtc.is_alive(), "SFU peer gone");
        peer.rtc.disconnect();
        for addr in &peer.addrs {
            self.by_addr.remove(addr);
        }
        if self.by_participant.get(&(peer.room.clone(), peer.pid.clone())) == Some(&key) {
            self.by_participant.remove(&(peer.room.clone(), peer.pid.clone()));
        }
        if let Some(keys) = self.rooms.get_mut(&peer.room) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.rooms.remove(&peer.room);
                self.voices.remove(&peer.room);
                return;
            }
        }
        self.refresh.insert(peer.room);
    }
}

/// A publisher's video track: (peer, participant id, mid, when they last spoke).
type VideoSource = (PeerKey, String, Mid, Option<Instant>);

/// Whose video a page receives, at most [`MAX_VIDEO_SLOTS`]: everyone while they fit; else the
/// large tile, the people it already shows, and free slots filled by who spoke last, then by
/// arrival. Someone speaking now takes the place of whoever has been quiet the longest, one
/// change per pass and only after [`QUIET_BEFORE_SWAP`], so tiles do not flap in a lively room.
fn pick_tiles(peer: &Peer, candidates: &[&VideoSource], now: Instant) -> Vec<Source> {
    let source = |v: &VideoSource| (v.0, v.2);
    if candidates.len() <= MAX_VIDEO_SLOTS {
        return candidates.iter().map(|v| source(v)).collect();
    }
    let held = |v: &VideoSource| peer.slots.iter().any(|s| s.source == Some(source(v)));
    let large = |v: &VideoSource| peer.large.as_deref() == Some(v.1.as_str());
    let mut order: Vec<&VideoSource> = candidates.to_vec();
    // Large first, then those shown already, then recent speakers; arrival breaks ties (stable sort).
    order.sort_by_key(|v| (!large(v), !held(v), Reverse(v.3)));
    let mut picked: Vec<&VideoSource> = order.iter().take(MAX_VIDEO_SLOTS).copied().collect();
    let speaking_now = |v: &VideoSource| v.3.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
    let newcomer = order.iter().skip(MAX_VIDEO_SLOTS).find(|v| speaking_now(v));
    let quietest = picked
        .iter()
        .enumerate()
        .filter(|(_, v)| !large(v) && v.3.is_none_or(|at| now.duration_since(at) >= QUIET_BEFORE_SWAP))
        .min_by_key(|(_, v)| v.3)
        .map(|(i, _)| i);
    if let (Some(newcomer), Some(i)) = (newcomer, quietest) {
        picked[i] = newcomer;
    }
    picked.into_iter().map(source).collect()
}
