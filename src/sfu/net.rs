//! The SFU's UDP sockets and the addresses browsers are told to use.
//!
//! str0m matches each datagram to an ICE candidate by the address it arrived at, so every
//! announced address gets its own socket (all on one port): a socket bound to `0.0.0.0` cannot
//! tell which address a datagram was sent to, nor answer from that address.

use crate::config::SfuConfig;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

/// Bytes asked for each socket's kernel buffers.
const SOCKET_BUFFER: usize = 8 << 20;

/// One socket and the candidate address it stands for.
pub struct SfuSocket {
    pub socket: UdpSocket,
    /// The address in the ICE candidate (the socket's own, or the announced public one).
    pub announced: SocketAddr,
}

/// Binds `[sfu] listen`, once per announced address when it names none.
pub fn bind(config: &SfuConfig) -> io::Result<Vec<SfuSocket>> {
    let listen = config.listen;
    let specific = !listen.ip().is_unspecified();
    // The local addresses to bind: the listen address itself, or each of the host's.
    let locals: Vec<IpAddr> = if specific {
        vec![listen.ip()]
    } else {
        let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()?
            .into_iter()
            .map(|i| i.ip())
            .filter(|ip| ip.is_ipv4() == listen.is_ipv4() && !is_link_local(ip))
            .collect();
        ips.sort();
        ips.dedup();
        ips
    };
    let mut port = listen.port();
    let mut sockets = Vec::new();
    for ip in &locals {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(*ip, port))?;
        // Port 0: the first socket picks one, the others share it.
        port = socket.local_addr()?.port();
        // Room for bursts while the SFU thread is busy (the kernel caps it at
        // net.core.rmem_max / wmem_max, which busy hosts raise).
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket)?;
        sockets.push(SfuSocket { announced: SocketAddr::new(*ip, port), socket });
    }
    // With `announce`, only the sockets it names are used. An address that is not local (1:1
    // NAT: the public address of a cloud VM) arrives on the first socket that is not loopback.
    if !config.announce.is_empty() {
        let mut chosen: Vec<SfuSocket> = Vec::new();
        for ip in &config.announce {
            let at = sockets
                .iter()
                .position(|s| s.announced.ip() == *ip)
                .or_else(|| sockets.iter().position(|s| !s.announced.ip().is_loopback()))
                .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, format!("no local address can receive for {ip}")))?;
            let mut socket = sockets.remove(at);
            socket.announced = SocketAddr::new(*ip, port);
            chosen.push(socket);
        }
        sockets = chosen;
    }
    if sockets.is_empty() {
        return Err(io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to receive media on"));
    }
    Ok(sockets)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Polls every socket for one datagram: `(socket index, length, source)`.
pub fn poll_recv_any(sockets: &[SfuSocket], cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<(usize, io::Result<(usize, SocketAddr)>)> {
    for (i, s) in sockets.iter().enumerate() {
        let mut read = ReadBuf::new(buf);
        if let Poll::Ready(result) = s.socket.poll_recv_from(cx, &mut read) {
            return Poll::Ready((i, result.map(|from| (read.filled().len(), from))));
        }
    }
    Poll::Pending
}
