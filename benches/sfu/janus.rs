//! The same synthetic participants against Janus's VideoRoom (Debian's `janus`), over its HTTP
//! API: each participant publishes audio and VP8 on one peer connection and subscribes, on a
//! second, to the same shape of streams callbridge forwards (16 cameras and 8 voices at most).

use crate::client::{AUDIO_FRAME, Media, VIDEO_FPS, drain, send_audio, send_video};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

static TRANSACTION: AtomicU64 = AtomicU64::new(1);

/// One Janus session, with its long poll dispatching events to handles.
pub struct Session {
    http: reqwest::Client,
    url: String,
    events: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>>,
    stop: CancellationToken,
}

impl Session {
    pub async fn create(http: &reqwest::Client, base: &str) -> Session {
        let v = post(http, base, json!({"janus": "create"})).await;
        let url = format!("{base}/{}", v["data"]["id"].as_u64().expect("a session"));
        let events: Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>> = Arc::default();
        let stop = CancellationToken::new();
        tokio::spawn({
            let (http, url, events, stop) = (http.clone(), url.clone(), events.clone(), stop.clone());
            async move {
                while !stop.is_cancelled() {
                    let got = tokio::select! {
                        _ = stop.cancelled() => break,
                        r = http.get(format!("{url}?maxev=20")).send() => r,
                    };
                    let Ok(r) = got else { continue };
                    let Ok(v) = r.json::<Value>().await else { continue };
                    for e in v.as_array().cloned().unwrap_or_else(|| vec![v]) {
                        if let Some(tx) = e["sender"].as_u64().and_then(|h| events.lock().unwrap().get(&h).cloned()) {
                            let _ = tx.send(e);
                        }
                    }
                }
            }
        });
        Session { http: http.clone(), url, events, stop }
    }

    /// Attaches a VideoRoom handle; events for it arrive on the receiver.
    pub async fn attach(&self) -> (u64, mpsc::UnboundedReceiver<Value>) {
        let v = post(&self.http, &self.url, json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).await;
        let handle = v["data"]["id"].as_u64().expect("a handle");
        let (tx, rx) = mpsc::unbounded_channel();
        self.events.lock().unwrap().insert(handle, tx);
        (handle, rx)
    }

    pub async fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> Value {
        let mut m = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            m["jsep"] = jsep;
        }
        post(&self.http, &format!("{}/{handle}", self.url), m).await
    }

    pub async fn destroy(self) {
        self.stop.cancel();
        let _ = post(&self.http, &self.url, json!({"janus": "destroy"})).await;
    }
}

async fn post(http: &reqwest::Client, url: &str, mut body: Value) -> Value {
    body["transaction"] = json!(TRANSACTION.fetch_add(1, Ordering::Relaxed).to_string());
    http.post(url).json(&body).send().await.expect("janus answers").json().await.expect("janus JSON")
}

/// The next event carrying a `jsep`, or the plugin data named `videoroom = kind`.
async fn event(rx: &mut mpsc::UnboundedReceiver<Value>, want: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = rx.recv().await.expect("janus events");
            if want(&e) {
                return e;
            }
            assert!(e["plugindata"]["data"]["error"].is_null() && e["janus"] != "hangup", "janus refused: {e}");
        }
    })
    .await
    .expect("a janus event in time")
}

/// One peer connection driven on its own task: SDP steps in, media out (when publishing),
/// frames counted by mid.
struct Pc {
    sdp: mpsc::UnboundedSender<(String, oneshot::Sender<String>)>,
    frames: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Pc {
    /// With `media`: offers to publish it; else answers the offer it is given.
    async fn start(ip: IpAddr, media: Option<Arc<Media>>) -> (Pc, Option<String>) {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await.unwrap();
        let local = socket.local_addr().unwrap();
        let mut rtc = Rtc::builder().clear_codecs().enable_opus(true, false).enable_vp8(true).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut offer = None;
        let mut mids = None;
        let mut pending = None;
        if media.is_some() {
            let mut api = rtc.sdp_api();
            let a = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            let v = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
            let (o, p) = api.apply().unwrap();
            offer = Some(o.to_sdp_string());
            pending = Some(p);
            mids = Some((a, v));
        }
        let (sdp_tx, mut sdp_rx) = mpsc::unbounded_channel::<(String, oneshot::Sender<String>)>();
        let frames = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        tokio::spawn({
            let (frames, stop) = (frames.clone(), stop.clone());
            async move {
                let mut buf = vec![0u8; 2000];
                let mut deadline = Instant::now();
                let mut video_tick = tokio::time::interval(Duration::from_millis(1000 / VIDEO_FPS));
                let mut audio_tick = tokio::time::interval(AUDIO_FRAME);
                let (mut vn, mut an) = (0u64, 0u64);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        step = sdp_rx.recv() => {
                            let Some((sdp, reply)) = step else { break };
                            if let Some(p) = pending.take() {
                                if let Ok(answer) = SdpAnswer::from_sdp_string(&sdp) {
                                    let _ = rtc.sdp_api().accept_answer(p, answer);
                                }
                                let _ = reply.send(String::new());
                            } else if let Ok(offer) = SdpOffer::from_sdp_string(&sdp)
                                && let Ok(answer) = rtc.sdp_api().accept_offer(offer)
                            {
                                let _ = reply.send(answer.to_sdp_string());
                            }
                        }
                        read = socket.recv_from(&mut buf) => {
                            let Ok((n, source)) = read else { continue };
                            if let Ok(contents) = buf[..n].try_into() {
                                let _ = rtc.handle_input(Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents }));
                            }
                        }
                        _ = video_tick.tick(), if mids.is_some() && rtc.is_connected() => {
                            send_video(&mut rtc, mids.unwrap().1, media.as_ref().unwrap(), vn);
                            vn += 1;
                        }
                        _ = audio_tick.tick(), if mids.is_some() && rtc.is_connected() => {
                            send_audio(&mut rtc, mids.unwrap().0, media.as_ref().unwrap(), an);
                            an += 1;
                        }
                        _ = tokio::time::sleep_until(deadline.into()) => {
                            let _ = rtc.handle_input(Input::Timeout(Instant::now()));
                        }
                    }
                    let counted = drain(&mut rtc, &socket, |_| {
                        frames.fetch_add(1, Ordering::Relaxed);
                    });
                    match counted.await {
                        Some(at) => deadline = at,
                        None => break,
                    }
                }
                rtc.disconnect();
            }
        });
        (Pc { sdp: sdp_tx, frames, stop }, offer)
    }

    async fn apply(&self, sdp: &str) -> String {
        let (tx, rx) = oneshot::channel();
        self.sdp.send((sdp.to_owned(), tx)).unwrap();
        rx.await.unwrap_or_default()
    }
}

/// A synthetic participant at Janus: a publisher and (once everyone is in) a subscriber.
pub struct Participant {
    session: Session,
    publisher: Pc,
    subscriber: Option<Pc>,
    /// The publisher's feed id and its (audio, video) mids.
    pub feed: u64,
    pub mids: (String, String),
}

impl Participant {
    pub async fn publish(http: &reqwest::Client, base: &str, room: u64, ip: IpAddr, media: Arc<Media>, name: &str) -> Participant {
        let session = Session::create(http, base).await;
        let (handle, mut events) = session.attach().await;
        let (publisher, offer) = Pc::start(ip, Some(media)).await;
        let offer = offer.unwrap();
        let body = json!({"request": "joinandconfigure", "room": room, "ptype": "publisher", "display": name, "audio": true, "video": true});
        session.message(handle, body, Some(json!({"type": "offer", "sdp": offer}))).await;
        let e = event(&mut events, |e| e["jsep"]["type"] == "answer").await;
        publisher.apply(e["jsep"]["sdp"].as_str().unwrap()).await;
        // Subscribers can only be given a feed whose connection is up.
        event(&mut events, |e| e["janus"] == "webrtcup").await;
        let data = &e["plugindata"]["data"];
        let feed = data["id"].as_u64().expect("a feed id");
        // The m-lines of our offer: audio first, then video.
        let mids: Vec<String> = offer.lines().filter_map(|l| l.strip_prefix("a=mid:")).map(|m| m.trim().to_owned()).collect();
        Participant { session, publisher, subscriber: None, feed, mids: (mids[0].clone(), mids[1].clone()) }
    }

    /// Subscribes to `videos` cameras and `audios` voices (feed id and mid).
    pub async fn subscribe(&mut self, room: u64, ip: IpAddr, videos: &[(u64, String)], audios: &[(u64, String)]) {
        let (handle, mut events) = self.session.attach().await;
        let streams: Vec<Value> = videos.iter().chain(audios).map(|(feed, mid)| json!({"feed": feed, "mid": mid})).collect();
        self.session.message(handle, json!({"request": "join", "room": room, "ptype": "subscriber", "streams": streams}), None).await;
        let e = event(&mut events, |e| e["jsep"]["type"] == "offer").await;
        let (pc, _) = Pc::start(ip, None).await;
        let answer = pc.apply(e["jsep"]["sdp"].as_str().unwrap()).await;
        self.session.message(handle, json!({"request": "start"}), Some(json!({"type": "answer", "sdp": answer}))).await;
        self.subscriber = Some(pc);
    }

    /// Frames received on the subscriber.
    pub fn frames(&self) -> u64 {
        self.subscriber.as_ref().map_or(0, |s| s.frames.load(Ordering::Relaxed))
    }

    pub async fn leave(self) {
        self.publisher.stop.cancel();
        if let Some(s) = &self.subscriber {
            s.stop.cancel();
        }
        self.session.destroy().await;
    }
}
