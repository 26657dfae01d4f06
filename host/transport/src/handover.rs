//! An upgrade without dropped calls, between two processes on one host: the old process passes
//! its listening sockets to the new one over a Unix socket (`SCM_RIGHTS`), stops reading them
//! once the new one is ready, and tells it which calls are still its own (see
//! `sluice_b2bua::handover`). From then on the new process reads every datagram and sends the
//! old process's ones back over the same Unix socket; the old process answers through its copy
//! of the socket (the same socket), finishes its calls and exits. The Unix socket closing tells
//! the new process its predecessor is gone.
//!
//! Frames on the Unix socket: a 4-byte big-endian length, then a kind byte and its payload.
//! The sockets travel with the first frame.

use serde::{Deserialize, Serialize};
use sluice_b2bua::Handover;
use sluice_transaction::{Flow, Transport};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The environment variable that names the old process's Unix socket (an abstract name) to
/// the new one.
pub const UPGRADE_ENV: &str = "SLUICE_UPGRADE_FROM";

/// The most sockets one process hands over (SIP listeners, the admin API and metrics).
const MAX_SOCKETS: usize = 64;
/// The largest frame: a datagram and its addresses, or the hand-over's state.
const MAX_FRAME: usize = 16 << 20;

const SOCKETS: u8 = 1;
const READY: u8 = 2;
const STATE: u8 = 3;
const FORWARD: u8 = 4;
const TOOK_OVER: u8 = 5;

/// What a handed-over socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SocketKind {
    SipUdp,
    SipTcp,
    SipTls,
    Admin,
    Metrics,
}

/// A listening socket to hand over: a duplicate of the process's own (the same socket).
#[derive(Debug)]
pub struct Listening {
    pub kind: SocketKind,
    pub addr: SocketAddr,
    pub fd: OwnedFd,
}

impl Listening {
    /// A duplicate of `socket`'s descriptor.
    pub fn of(kind: SocketKind, addr: SocketAddr, socket: &impl AsFd) -> io::Result<Listening> {
        Ok(Listening {
            kind,
            addr,
            fd: socket.as_fd().try_clone_to_owned()?,
        })
    }
}

/// The sockets a predecessor handed over, taken one by one as the new process binds.
#[derive(Debug, Default)]
pub struct Inherited(Vec<Listening>);

impl Inherited {
    /// The predecessor's socket of this kind at `addr`, if it had one.
    pub fn take(&mut self, kind: SocketKind, addr: SocketAddr) -> Option<OwnedFd> {
        let i = self
            .0
            .iter()
            .position(|l| l.kind == kind && l.addr == addr)?;
        Some(self.0.swap_remove(i).fd)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    sockets: Vec<(SocketKind, SocketAddr)>,
}

fn frame_head(kind: u8, len: usize) -> io::Result<[u8; 5]> {
    let n = u32::try_from(len.saturating_add(1))
        .ok()
        .filter(|&n| usize::try_from(n).is_ok_and(|n| n <= MAX_FRAME))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let b = n.to_be_bytes();
    Ok([b[0], b[1], b[2], b[3], kind])
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn write_frame(s: &mut UnixStream, kind: u8, payload: &[u8]) -> io::Result<()> {
    s.write_all(&frame_head(kind, payload.len())?)?;
    s.write_all(payload)
}

/// A whole frame of kind `expect`; its payload.
fn read_frame(s: &mut UnixStream, expect: u8) -> io::Result<Vec<u8>> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head)?;
    frame_body(head, expect, |buf| s.read_exact(buf))
}

fn frame_body(
    head: [u8; 5],
    expect: u8,
    read: impl FnOnce(&mut [u8]) -> io::Result<()>,
) -> io::Result<Vec<u8>> {
    let [a, b, c, d, kind] = head;
    if kind != expect {
        return Err(bad("unexpected frame"));
    }
    let len = usize::try_from(u32::from_be_bytes([a, b, c, d]))
        .map_err(|_| bad("frame length"))?
        .checked_sub(1)
        .filter(|&n| n < MAX_FRAME)
        .ok_or_else(|| bad("frame length"))?;
    let mut body = vec![0; len];
    read(&mut body)?;
    Ok(body)
}

/// The old process: send the listening sockets.
pub fn offer(s: &mut UnixStream, sockets: &[Listening]) -> io::Result<()> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    if sockets.len() > MAX_SOCKETS {
        return Err(bad("too many sockets"));
    }
    let manifest = Manifest {
        sockets: sockets.iter().map(|l| (l.kind, l.addr)).collect(),
    };
    let payload = serde_json::to_vec(&manifest).map_err(|e| bad(&e.to_string()))?;
    let head = frame_head(SOCKETS, payload.len())?;
    let fds: Vec<_> = sockets.iter().map(|l| l.fd.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(bad("too many sockets"));
    }
    // The descriptors travel with the first byte; the rest follows as plain bytes.
    let sent = sendmsg(
        &*s,
        &[IoSlice::new(&head)],
        &mut control,
        SendFlags::empty(),
    )?;
    s.write_all(head.get(sent..).unwrap_or_default())?;
    s.write_all(&payload)
}

/// The new process: receive the old one's listening sockets.
pub fn receive(s: &mut UnixStream) -> io::Result<Inherited> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut head = [0u8; 5];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        &*s,
        &mut [IoSliceMut::new(&mut head)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?
    .bytes;
    if got == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the old process closed the connection",
        ));
    }
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    s.read_exact(head.get_mut(got..).unwrap_or_default())?;
    let body = frame_body(head, SOCKETS, |buf| s.read_exact(buf))?;
    let manifest: Manifest = serde_json::from_slice(&body).map_err(|e| bad(&e.to_string()))?;
    if manifest.sockets.len() != fds.len() {
        return Err(bad("socket count differs from the manifest"));
    }
    Ok(Inherited(
        manifest
            .sockets
            .into_iter()
            .zip(fds)
            .map(|((kind, addr), fd)| Listening { kind, addr, fd })
            .collect(),
    ))
}

/// The new process: bound and loaded; the old one may stop reading.
pub fn send_ready(s: &mut UnixStream) -> io::Result<()> {
    write_frame(s, READY, &[])
}

pub fn wait_ready(s: &mut UnixStream) -> io::Result<()> {
    read_frame(s, READY).map(drop)
}

/// The old process, once it stopped reading: its calls.
pub fn send_state(s: &mut UnixStream, h: &Handover) -> io::Result<()> {
    let payload = serde_json::to_vec(h).map_err(|e| bad(&e.to_string()))?;
    write_frame(s, STATE, &payload)
}

pub fn receive_state(s: &mut UnixStream) -> io::Result<Handover> {
    let body = read_frame(s, STATE)?;
    serde_json::from_slice(&body).map_err(|e| bad(&e.to_string()))
}

/// The new process: it runs, and is the service's main process now; the old one may finish.
pub fn send_took_over(s: &mut UnixStream) -> io::Result<()> {
    write_frame(s, TOOK_OVER, &[])
}

pub fn wait_took_over(s: &mut UnixStream) -> io::Result<()> {
    read_frame(s, TOOK_OVER).map(drop)
}

/// A forwarded datagram's frame: its local and remote addresses, a newline, the datagram.
pub(crate) fn forward_frame(flow: Flow, data: &[u8]) -> io::Result<Vec<u8>> {
    let addrs = format!("{} {}\n", flow.local, flow.remote);
    let len = addrs.len().saturating_add(data.len());
    let mut out = Vec::with_capacity(len.saturating_add(5));
    out.extend_from_slice(&frame_head(FORWARD, len)?);
    out.extend_from_slice(addrs.as_bytes());
    out.extend_from_slice(data);
    Ok(out)
}

/// The next forwarded datagram from the successor; `None` once it closed the socket.
pub(crate) async fn read_forward(
    s: &mut tokio::net::unix::OwnedReadHalf,
) -> io::Result<Option<(Flow, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match s.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let [a, b, c, d, kind] = head;
    let len = usize::try_from(u32::from_be_bytes([a, b, c, d]))
        .ok()
        .and_then(|n| n.checked_sub(1))
        .filter(|&n| n < MAX_FRAME && kind == FORWARD)
        .ok_or_else(|| bad("bad forwarded frame"))?;
    let mut body = vec![0; len];
    s.read_exact(&mut body).await?;
    let nl = body
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("forwarded frame without addresses"))?;
    let addrs = std::str::from_utf8(body.get(..nl).unwrap_or_default())
        .map_err(|_| bad("forwarded frame addresses"))?;
    let mut parts = addrs.split(' ').map(str::parse::<SocketAddr>);
    let (Some(Ok(local)), Some(Ok(remote))) = (parts.next(), parts.next()) else {
        return Err(bad("forwarded frame addresses"));
    };
    let data = body.split_off(nl.saturating_add(1));
    let flow = Flow {
        transport: Transport::Udp,
        local,
        remote,
        conn: None,
    };
    Ok(Some((flow, data)))
}

/// Write forwarded frames to the predecessor.
pub(crate) async fn write_frames(
    mut w: tokio::net::unix::OwnedWriteHalf,
    mut frames: tokio::sync::mpsc::Receiver<Vec<u8>>,
) {
    while let Some(f) = frames.recv().await {
        if w.write_all(&f).await.is_err() {
            return;
        }
    }
}

/// The new process's end of the link: forwards the predecessor's datagrams, and hears when it
/// is gone.
pub(crate) struct Predecessor {
    frames: tokio::sync::mpsc::Sender<Vec<u8>>,
    gone: tokio::sync::oneshot::Receiver<()>,
}

/// Forwarded datagrams waiting to be written: beyond this, they are dropped (UDP: the sender
/// retransmits).
const FORWARD_QUEUE: usize = 4096;

impl Predecessor {
    pub fn start(link: UnixStream) -> io::Result<Predecessor> {
        link.set_nonblocking(true)?;
        let (mut r, w) = tokio::net::UnixStream::from_std(link)?.into_split();
        let (frames, rx) = tokio::sync::mpsc::channel(FORWARD_QUEUE);
        tokio::spawn(write_frames(w, rx));
        let (done, gone) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            // The old process sends nothing more: the end of the stream is its exit.
            let mut sink = [0u8; 64];
            while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
            let _ = done.send(());
        });
        Ok(Predecessor { frames, gone })
    }

    /// Pass a datagram of the predecessor's calls to it.
    pub fn forward(&self, flow: Flow, data: &[u8]) {
        match forward_frame(flow, data) {
            Ok(f) => {
                if self.frames.try_send(f).is_err() {
                    tracing::debug!(from = %flow.remote, "forward queue full: datagram dropped");
                }
            }
            Err(e) => tracing::debug!("datagram not forwarded: {e}"),
        }
    }
}

/// Resolves when the predecessor is gone; never without one.
pub(crate) async fn predecessor_gone(p: &mut Option<Predecessor>) {
    match p {
        Some(p) => {
            let _ = (&mut p.gone).await;
        }
        None => std::future::pending().await,
    }
}

/// The old process's end of the link, after the hand-over: the datagrams the successor
/// forwards.
pub(crate) struct Successor {
    forwarded: tokio::sync::mpsc::Receiver<(Flow, Vec<u8>)>,
    /// Kept open: closing it would tell the successor this process is gone.
    _write: tokio::net::unix::OwnedWriteHalf,
}

impl Successor {
    pub fn start(link: UnixStream) -> io::Result<Successor> {
        link.set_nonblocking(true)?;
        let (mut r, w) = tokio::net::UnixStream::from_std(link)?.into_split();
        let (tx, forwarded) = tokio::sync::mpsc::channel(FORWARD_QUEUE);
        tokio::spawn(async move {
            loop {
                match read_forward(&mut r).await {
                    Ok(Some(f)) => {
                        if tx.send(f).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!("link to the new process: {e}");
                        return;
                    }
                }
            }
        });
        Ok(Successor {
            forwarded,
            _write: w,
        })
    }
}

/// The old process's part in an upgrade, as its shell sees it.
#[derive(Default)]
pub(crate) enum Handing {
    /// No upgrade: the process reads its sockets.
    #[default]
    No,
    /// It stopped reading; the successor is being told its calls (the process must not exit
    /// before it knows, even with no call left).
    Pending,
    /// The successor took over and forwards this process's datagrams.
    Done(Successor),
}

impl Handing {
    pub fn reading(&self) -> bool {
        matches!(self, Handing::No)
    }

    pub fn may_exit(&self) -> bool {
        !matches!(self, Handing::Pending)
    }

    pub fn handed(&self) -> bool {
        matches!(self, Handing::Done(_))
    }
}

/// The next datagram the successor forwarded; `None` once it is gone; never before it took
/// over.
pub(crate) async fn next_forwarded(h: &mut Handing) -> Option<(Flow, Vec<u8>)> {
    match h {
        Handing::Done(s) => s.forwarded.recv().await,
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_and_state_cross_a_unix_socket() {
        let (mut old, mut new) = UnixStream::pair().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        let offered = vec![Listening::of(SocketKind::SipUdp, addr, &udp).unwrap()];
        let sender = std::thread::spawn(move || {
            offer(&mut old, &offered).unwrap();
            wait_ready(&mut old).unwrap();
            let h = Handover {
                call_id_token: "abcd0123".into(),
                call_ids: vec!["x@y".into()],
                ..Handover::default()
            };
            send_state(&mut old, &h).unwrap();
            wait_took_over(&mut old).unwrap();
        });
        let mut got = receive(&mut new).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got.take(SocketKind::SipTcp, addr).is_none());
        let fd = got.take(SocketKind::SipUdp, addr).expect("the socket");
        let theirs = std::net::UdpSocket::from(fd);
        assert_eq!(theirs.local_addr().unwrap(), addr, "the same socket");
        send_ready(&mut new).unwrap();
        let h = receive_state(&mut new).unwrap();
        assert_eq!(h.call_ids, ["x@y"]);
        send_took_over(&mut new).unwrap();
        sender.join().unwrap();
        // A datagram sent to the address is read from the handed-over socket.
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"hello", addr).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = theirs.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
    }

    #[tokio::test]
    async fn forwarded_frames_keep_their_flow_and_bytes() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let flow = Flow {
            transport: Transport::Udp,
            local: "[::1]:5060".parse().unwrap(),
            remote: "127.0.0.10:5070".parse().unwrap(),
            conn: None,
        };
        let (_, w) = a.into_split();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(forward_frame(flow, b"BYE sip:x SIP/2.0\r\n\n\r\n").unwrap())
            .await
            .unwrap();
        drop(tx);
        write_frames(w, rx).await;
        let (mut r, _) = b.into_split();
        let (f, data) = read_forward(&mut r).await.unwrap().unwrap();
        assert_eq!((f.local, f.remote), (flow.local, flow.remote));
        assert_eq!(data, b"BYE sip:x SIP/2.0\r\n\n\r\n");
        assert!(read_forward(&mut r).await.unwrap().is_none(), "closed");
    }
}
