//! UDP: sockets bound with large buffers, read by the engine's own task until they would block
//! (a bounded batch per wake-up), and written directly.

use sluice_transaction::{Flow, Transport};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

/// The socket buffers Sluice asks for: bursts at high call rates must not be dropped.
const SOCKET_BUFFER: usize = 8 << 20;
/// Datagrams read per wake-up before the shell flushes output and looks at its other inputs.
pub(crate) const BATCH: usize = 64;

pub(crate) struct UdpSockets {
    socks: Vec<(SocketAddr, UdpSocket)>,
    /// One byte more than the largest message, to tell an oversized datagram.
    buf: Vec<u8>,
    max_message: usize,
}

impl UdpSockets {
    pub fn new(max_message: usize) -> UdpSockets {
        UdpSockets {
            socks: Vec::new(),
            buf: vec![0; max_message.saturating_add(1)],
            max_message,
        }
    }

    pub fn bind(&mut self, addr: SocketAddr) -> io::Result<()> {
        let sock = bind_udp(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind udp {addr}: {e}")))?;
        self.socks.push((addr, sock));
        Ok(())
    }

    /// A socket a predecessor bound (an upgrade).
    pub fn adopt(&mut self, addr: SocketAddr, fd: std::os::fd::OwnedFd) -> io::Result<()> {
        let sock = std::net::UdpSocket::from(fd);
        sock.set_nonblocking(true)?;
        self.socks.push((addr, UdpSocket::from_std(sock)?));
        Ok(())
    }

    /// Duplicates of the sockets, for a successor.
    pub fn listening(&self) -> io::Result<Vec<crate::handover::Listening>> {
        use crate::handover::{Listening, SocketKind};
        self.socks
            .iter()
            .map(|(a, s)| Listening::of(SocketKind::SipUdp, *a, s))
            .collect()
    }

    /// The index of a socket with datagrams to read.
    pub async fn readable(&self) -> usize {
        poll_fn(|cx| {
            for (i, (_, s)) in self.socks.iter().enumerate() {
                // An error here is one the next read reports; either way, read.
                if s.poll_recv_ready(cx).is_ready() {
                    return Poll::Ready(i);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Read up to [`BATCH`] datagrams from socket `i`, handing each to `handle`.
    pub fn read_batch(&mut self, i: usize, mut handle: impl FnMut(Flow, &[u8])) {
        let Some((local, sock)) = self.socks.get(i) else {
            return;
        };
        for _ in 0..BATCH {
            let (n, remote) = match sock.try_recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors surface here on some systems; keep serving.
                    debug!(%local, "udp recv error: {e}");
                    continue;
                }
            };
            if n > self.max_message {
                warn!(%remote, "datagram over the size limit dropped");
                continue;
            }
            let flow = Flow {
                transport: Transport::Udp,
                local: *local,
                remote,
                conn: None,
            };
            handle(flow, self.buf.get(..n).unwrap_or_default());
        }
    }

    /// Send a datagram from the socket bound to `flow.local`.
    pub async fn send(&self, flow: Flow, data: &[u8]) {
        let Some((_, sock)) = self.socks.iter().find(|(a, _)| *a == flow.local) else {
            warn!(local = %flow.local, "no UDP socket for output");
            return;
        };
        match sock.try_send_to(data, flow.remote) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = sock.send_to(data, flow.remote).await {
                    debug!(to = %flow.remote, "udp send failed: {e}");
                }
            }
            Err(e) => debug!(to = %flow.remote, "udp send failed: {e}"),
        }
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    warn_if_capped(addr, &s);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Linux caps socket buffers at `net.core.rmem_max`/`wmem_max` (and reports twice what it
/// grants): say so once per socket, with the settings a production host needs.
fn warn_if_capped(addr: SocketAddr, s: &socket2::Socket) {
    let (rcv, snd) = (
        s.recv_buffer_size().unwrap_or(0),
        s.send_buffer_size().unwrap_or(0),
    );
    if rcv < SOCKET_BUFFER || snd < SOCKET_BUFFER {
        warn!(
            %addr,
            asked = SOCKET_BUFFER,
            receive = rcv / 2,
            send = snd / 2,
            "the kernel gave this UDP socket smaller buffers than asked: bursts may be dropped; \
             raise net.core.rmem_max and net.core.wmem_max to at least {SOCKET_BUFFER}"
        );
    }
}
