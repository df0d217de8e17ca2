//! The selective forwarding unit: the media of every SFU room of this node, on one thread.
//!
//! * [`Sfu`] is the handle the rest of the daemon holds. Room sockets pass it the pages'
//!   signaling ([`Command`]); it answers them through [`crate::live::Live`], on the same
//!   socket. It is started with the daemon and stopped (its thread joined) on shutdown.
//! * `net.rs` binds the UDP sockets (one per announced address, all on `[sfu] listen`'s port)
//!   and works out which addresses to announce.
//! * `router.rs` is the loop: datagrams to the peer that owns their source address, a timer per
//!   peer, and forwarding: each browser publishes once (simulcast video in two layers) and
//!   receives everyone else; each receiver gets the layer that fits it, only the tiles it shows,
//!   and in big rooms only the loudest voices.
//! * `peer.rs` is one browser's `str0m::Rtc` and its negotiation: the page offers once, and
//!   every later change (people coming and going) is an offer from the server.
//!
//! str0m is sans-IO: it never reads a clock or a socket, so all of that lives here.

mod net;
mod peer;
mod router;

use crate::config::SfuConfig;
use crate::ids::{ParticipantId, RoomId};
use crate::live::Live;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::thread::JoinHandle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How many commands may wait for the SFU thread; beyond, they are dropped (and logged): a
/// page whose offer is lost retries when its connection fails.
const COMMAND_QUEUE: usize = 4096;

/// What the rest of the daemon asks of the SFU.
#[derive(Debug)]
pub enum Command {
    /// A page's offer: it publishes its microphone (and camera) and wants everyone else. A new
    /// offer for the same participant replaces its earlier connection.
    Offer { room: RoomId, pid: ParticipantId, conn: u64, voice: bool, sdp: String },
    /// A page's answer to the server's last offer.
    Answer { room: RoomId, pid: ParticipantId, conn: u64, sdp: String },
    /// Which people a page shows as tiles (`None`: everyone), and which one large.
    View { room: RoomId, pid: ParticipantId, shown: Option<Vec<String>>, large: Option<String> },
    /// A page's socket closed.
    Leave { room: RoomId, pid: ParticipantId, conn: u64 },
    /// A participant was removed: their media stops at once.
    Remove { room: RoomId, pid: ParticipantId },
    /// The room ended: everyone's media stops.
    End { room: RoomId },
    /// A host muted (or let speak again) a participant's audio or video for everyone.
    Mute { room: RoomId, pid: ParticipantId, audio: Option<bool>, video: Option<bool> },
}

/// The running SFU.
pub struct Sfu {
    commands: mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The addresses browsers send media to.
    pub addrs: Vec<SocketAddr>,
}

impl Sfu {
    /// Binds the sockets and starts the thread; it runs until `cancel`.
    pub fn start(config: &SfuConfig, live: Live, cancel: CancellationToken) -> std::io::Result<Sfu> {
        let sockets = net::bind(config)?;
        let cert = peer::node_certificate().ok_or_else(|| std::io::Error::other("cannot make the SFU's DTLS certificate"))?;
        let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.announced).collect();
        let (commands, inbox) = mpsc::channel(COMMAND_QUEUE);
        let thread = std::thread::Builder::new().name("sfu".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(error) => return tracing::error!(%error, "the SFU cannot start its runtime"),
            };
            let run = std::panic::AssertUnwindSafe(|| runtime.block_on(router::run(sockets, cert, live, inbox, cancel)));
            if std::panic::catch_unwind(run).is_err() {
                // Said at once, not only at shutdown: SFU rooms have no media until a restart.
                tracing::error!("the SFU stopped on a bug; SFU rooms carry no media until callbridge restarts");
            }
        })?;
        tracing::info!(addrs = ?addrs, "SFU listening (UDP)");
        Ok(Sfu { commands, thread: Mutex::new(Some(thread)), addrs })
    }

    /// Passes a command to the SFU thread without waiting.
    pub fn send(&self, command: Command) {
        if let Err(error) = self.commands.try_send(command) {
            tracing::warn!(%error, "SFU command queue full; dropping a command");
        }
    }

    /// Waits for the thread to end (after its cancel token fired).
    pub fn join(&self) {
        let thread = self.thread.lock().expect("sfu thread slot").take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}
