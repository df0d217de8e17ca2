//! A synthetic SFU participant: joins a room through the real join gate and room socket like a
//! page does, publishes pre-encoded VP8 and Opus (`tests/media`, made by
//! `scripts/make-test-media.sh`) through a str0m client, and counts what it receives from whom
//! (the server says which participant each receiving track carries, `sfu-slots`).

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaData, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

/// The pre-encoded media every synthetic participant loops.
pub struct Media {
    /// VP8 frames at [`VIDEO_FPS`]; the first of each second is a keyframe.
    video: Vec<Vec<u8>>,
    /// Opus packets of 60 ms.
    audio: Vec<Vec<u8>>,
    /// Video frames sent a second ([`VIDEO_FPS`] unless [`with_fps`](Self::with_fps) says
    /// otherwise: fewer play the same loop slower, a lighter load that still decodes).
    pub fps: u64,
    /// Whether the participants publish once connected (on from the start; `sfu_load` holds
    /// it off until all of them are connected).
    pub publish: std::sync::atomic::AtomicBool,
}

pub const VIDEO_FPS: u64 = 15;
pub const AUDIO_FRAME: Duration = Duration::from_millis(60);

impl Media {
    /// The `n`th video frame of the loop.
    pub fn video_frame(&self, n: u64) -> &[u8] {
        &self.video[(n % self.video.len() as u64) as usize]
    }

    /// The `n`th audio packet of the loop.
    pub fn audio_packet(&self, n: u64) -> &[u8] {
        &self.audio[(n % self.audio.len() as u64) as usize]
    }

    /// Reads `synthetic.ivf` and `synthetic.opus` from `dir`.
    pub fn load(dir: &Path) -> std::io::Result<Media> {
        let ivf = std::fs::read(dir.join("synthetic.ivf"))?;
        let ogg = std::fs::read(dir.join("synthetic.opus"))?;
        Ok(Media { video: ivf_frames(&ivf), audio: ogg_packets(&ogg).into_iter().skip(2).collect(), fps: VIDEO_FPS, publish: true.into() })
    }

    /// The same media, its video sent at `fps` frames a second.
    #[allow(dead_code)] // the load tool's, not the SFU tests'
    pub fn with_fps(self, fps: u64) -> Media {
        Media { fps: fps.clamp(1, VIDEO_FPS), ..self }
    }
}

/// IVF: a 32-byte file header, then per frame a 12-byte header (4-byte size, 8-byte pts).
fn ivf_frames(data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut at = 32;
    while at + 12 <= data.len() {
        let size = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        at += 12;
        if at + size > data.len() {
            break;
        }
        frames.push(data[at..at + size].to_vec());
        at += size;
    }
    frames
}

/// Ogg: pages of segments; a packet ends at a segment shorter than 255 bytes.
fn ogg_packets(data: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut packet = Vec::new();
    let mut at = 0;
    while at + 27 <= data.len() && &data[at..at + 4] == b"OggS" {
        let segments = data[at + 26] as usize;
        let table = &data[at + 27..at + 27 + segments];
        let mut body = at + 27 + segments;
        for &len in table {
            packet.extend_from_slice(&data[body..body + len as usize]);
            body += len as usize;
            if len < 255 {
                packets.push(std::mem::take(&mut packet));
            }
        }
        at = body;
    }
    packets
}

/// What one participant received from another.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Received {
    pub video_frames: u64,
    pub audio_frames: u64,
    pub bytes: u64,
}

/// A running synthetic participant.
pub struct Synthetic {
    pub name: String,
    pub pid: String,
    /// By the sender's participant id.
    pub received: Arc<Mutex<HashMap<String, Received>>>,
    /// Why its socket closed, once it did (`ended`, `removed`, …).
    pub closed: Arc<Mutex<Option<String>>>,
    /// From the join request to the first video frame received from anyone.
    pub first_video: Arc<Mutex<Option<Duration>>>,
    /// From the join request to the peer connection being up (ICE and DTLS done).
    #[allow(dead_code)] // read by the load tool, not the SFU tests
    pub connected: Arc<Mutex<Option<Duration>>>,
    /// How many receiving slots the server opened for it, and how many offers it answered.
    #[allow(dead_code)] // read by the load tool, not the SFU tests
    pub slots: Arc<Mutex<(usize, usize)>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Synthetic {
    /// Joins `room` at `base` as `name` and starts publishing. Errors with the join's HTTP
    /// status and body when refused.
    pub async fn join(http: &reqwest::Client, base: &str, room: &str, name: &str, media: Arc<Media>) -> Result<Synthetic, (u16, Value)> {
        let started = Instant::now();
        let r = http.post(format!("{base}/r/{room}/join")).json(&json!({"name": name})).send().await.map_err(|e| (0, json!(e.to_string())))?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err((status, body));
        }
        let pid = body["participant_id"].as_str().unwrap_or_default().to_owned();
        let token = body["token"].as_str().unwrap_or_default().to_owned();
        let ws_url = format!("{}/r/{room}/ws", base.replacen("http", "ws", 1));
        let mut request = ws_url.into_client_request().expect("a socket URL");
        request.headers_mut().insert("sec-websocket-protocol", format!("callbridge, token.{token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.map_err(|e| (0, json!(e.to_string())))?;
        let received = Arc::new(Mutex::new(HashMap::new()));
        let closed = Arc::new(Mutex::new(None));
        let first_video = Arc::new(Mutex::new(None));
        let connected = Arc::new(Mutex::new(None));
        let slots = Arc::new(Mutex::new((0, 0)));
        let stop = CancellationToken::new();
        let seen = Seen {
            received: received.clone(),
            closed: closed.clone(),
            first_video: first_video.clone(),
            connected: connected.clone(),
            slots: slots.clone(),
            started,
        };
        let task = tokio::spawn(run(ws, media, seen, stop.clone()));
        Ok(Synthetic { name: name.to_owned(), pid, received, closed, first_video, connected, slots, stop, task })
    }

    /// What it has received so far, by sender.
    pub fn received(&self) -> HashMap<String, Received> {
        self.received.lock().unwrap().clone()
    }

    /// Vanishes (the SFU tests use it; the load tool never does): its task stops at once, saying goodbye to nobody (a browser whose network
    /// went away, or a crash).
    #[allow(dead_code)]
    pub fn vanish(self) {
        self.task.abort();
    }

    /// Leaves (closes its socket and peer connection).
    pub async fn leave(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the participant's task reports.
struct Seen {
    received: Arc<Mutex<HashMap<String, Received>>>,
    closed: Arc<Mutex<Option<String>>>,
    first_video: Arc<Mutex<Option<Duration>>>,
    connected: Arc<Mutex<Option<Duration>>>,
    slots: Arc<Mutex<(usize, usize)>>,
    started: Instant,
}

async fn run(mut ws: Ws, media: Arc<Media>, seen: Seen, stop: CancellationToken) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a UDP socket");
    let local = socket.local_addr().unwrap();
    let mut rtc = Rtc::builder().clear_codecs().enable_opus(true, false).enable_vp8(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = rtc.sdp_api();
    let audio_mid = api.add_media(MediaKind::Audio, Direction::SendOnly, Some("me".into()), None, None);
    let video_mid = api.add_media(MediaKind::Video, Direction::SendOnly, Some("me".into()), None, None);
    let (offer, pending) = api.apply().expect("an offer");
    let mut pending: Option<SdpPendingOffer> = Some(pending);
    let _ = ws.send(Message::Text(json!({"type": "sfu-offer", "sdp": offer.to_sdp_string()}).to_string().into())).await;

    let mut slots: HashMap<Mid, String> = HashMap::new();
    let mut deadline = Instant::now();
    let mut buf = vec![0u8; 2000];
    let mut video_tick = tokio::time::interval(Duration::from_millis(1000 / media.fps));
    let mut audio_tick = tokio::time::interval(AUDIO_FRAME);
    let (mut video_n, mut audio_n) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            message = ws.next() => {
                let Some(Ok(message)) = message else { break };
                let Message::Text(text) = message else { continue };
                let Ok(msg) = serde_json::from_str::<Value>(&text) else { continue };
                match msg["type"].as_str() {
                    Some("sfu-answer") => {
                        if let (Some(p), Ok(answer)) = (pending.take(), SdpAnswer::from_sdp_string(msg["sdp"].as_str().unwrap_or(""))) {
                            let _ = rtc.sdp_api().accept_answer(p, answer);
                        }
                    }
                    Some("sfu-offer") => {
                        if let Ok(offer) = SdpOffer::from_sdp_string(msg["sdp"].as_str().unwrap_or(""))
                            && let Ok(answer) = rtc.sdp_api().accept_offer(offer)
                        {
                            seen.slots.lock().unwrap().1 += 1;
                            let frame = json!({"type": "sfu-answer", "sdp": answer.to_sdp_string()}).to_string();
                            let _ = ws.send(Message::Text(frame.into())).await;
                        }
                    }
                    Some("sfu-slots") => {
                        slots = msg["slots"].as_array().into_iter().flatten()
                            .filter_map(|s| Some((Mid::from(s["mid"].as_str()?), s["id"].as_str()?.to_owned())))
                            .collect();
                        seen.slots.lock().unwrap().0 = slots.len();
                    }
                    Some("closed") => {
                        *seen.closed.lock().unwrap() = msg["reason"].as_str().map(str::to_owned);
                        break;
                    }
                    _ => {}
                }
            }
            read = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = read else { continue };
                if let Ok(contents) = buf[..n].try_into() {
                    let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
                    let _ = rtc.handle_input(input);
                }
            }
            _ = video_tick.tick() => {
                if rtc.is_connected() && media.publish.load(std::sync::atomic::Ordering::Relaxed) {
                    send_video(&mut rtc, video_mid, &media, video_n);
                    video_n += 1;
                }
            }
            _ = audio_tick.tick() => {
                if rtc.is_connected() && media.publish.load(std::sync::atomic::Ordering::Relaxed) {
                    send_audio(&mut rtc, audio_mid, &media, audio_n);
                    audio_n += 1;
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
        // Drain everything the change produced.
        let drained = drain(&mut rtc, &socket, |data| {
            let Some(from) = slots.get(&data.mid) else { return };
            let mut received = seen.received.lock().unwrap();
            let r = received.entry(from.clone()).or_default();
            match data.params.spec().codec {
                Codec::Opus => r.audio_frames += 1,
                _ => {
                    r.video_frames += 1;
                    seen.first_video.lock().unwrap().get_or_insert_with(|| seen.started.elapsed());
                }
            }
            r.bytes += data.data.len() as u64;
        })
        .await;
        match drained {
            Some(at) => deadline = at,
            None => break,
        }
        if rtc.is_connected() {
            seen.connected.lock().unwrap().get_or_insert_with(|| seen.started.elapsed());
        }
        if !rtc.is_alive() {
            break;
        }
    }
    rtc.disconnect();
    let _ = ws.close(None).await;
}

/// Polls `rtc` until it waits: sends what it transmits and hands each frame received to
/// `frame`. Returns when to poll it next, or `None` once it failed.
pub async fn drain(rtc: &mut Rtc, socket: &UdpSocket, mut frame: impl FnMut(MediaData)) -> Option<Instant> {
    loop {
        match rtc.poll_output() {
            Ok(Output::Timeout(at)) => return Some(at.min(Instant::now() + Duration::from_secs(1))),
            Ok(Output::Transmit(t)) => {
                let _ = socket.send_to(&t.contents, t.destination).await;
            }
            Ok(Output::Event(Event::MediaData(data))) => frame(data),
            Ok(Output::Event(_)) => {}
            Err(_) => return None,
        }
    }
}

/// Sends the `n`th frame of the video loop on `mid`.
pub fn send_video(rtc: &mut Rtc, mid: Mid, media: &Media, n: u64) {
    write(rtc, mid, Codec::Vp8, MediaTime::new(n * 90_000 / media.fps, Frequency::NINETY_KHZ), media.video_frame(n));
}

/// Sends the `n`th packet of the audio loop on `mid`.
pub fn send_audio(rtc: &mut Rtc, mid: Mid, media: &Media, n: u64) {
    write(rtc, mid, Codec::Opus, MediaTime::new(n * 2880, Frequency::FORTY_EIGHT_KHZ), media.audio_packet(n));
}

/// Writes one frame of `codec` on `mid` (dropped until the connection is up).
fn write(rtc: &mut Rtc, mid: Mid, codec: Codec, time: MediaTime, data: &[u8]) {
    let Some(writer) = rtc.writer(mid) else { return };
    let Some(pt) = writer.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt()) else { return };
    let _ = writer.write(pt, Instant::now(), time, data.to_vec());
}
