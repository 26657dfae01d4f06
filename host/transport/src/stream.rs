//! Stream connections (TCP today; any `AsyncRead + AsyncWrite` stream, so TLS is one more
//! acceptor and connector): accepted or opened, read and framed into messages for the engine
//! task, written from a queue.

use crate::connections::Writer;
use crate::shell::TcpLimits;
use bytes::Bytes;
use sluice_sip::{Frame, StreamFramer};
use sluice_transaction::{ConnId, Flow, Transport};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};

/// How long a connection may stay silent before it is closed.
const IDLE: Duration = Duration::from_secs(300);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a keep-alive ping may go unanswered before the connection is taken for dead.
const PONG_WAIT: Duration = Duration::from_secs(10);
/// RFC 5626 §4.4.1's ping.
const PING: &[u8] = b"\r\n\r\n";

/// What the connection tasks tell the engine task.
pub(crate) enum Incoming {
    Packet {
        flow: Flow,
        data: Bytes,
    },
    /// The head of a message the stream could not frame: answered, never acted on.
    Unframed {
        flow: Flow,
        head: Bytes,
        status: u16,
        reason: &'static str,
    },
    Connected {
        id: ConnId,
        remote: (Transport, SocketAddr),
        writer: Writer,
    },
    /// The connection ended (the peer closed it, it went idle, its framing broke).
    Closed {
        id: ConnId,
    },
    /// The connection could not be opened, or a write on it failed: requests sent there fail.
    Failed {
        id: ConnId,
        /// The connection's flow (its transport and peer).
        flow: Flow,
    },
    /// Certificates fetched for a call's STIR/SHAKEN verification (or why not).
    Certificate {
        id: u64,
        result: Result<Bytes, String>,
    },
}

pub(crate) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind tcp {addr}: {e}")))?;
    sock.listen(1024)
}

/// A listener a predecessor bound (an upgrade).
pub(crate) fn adopt(fd: std::os::fd::OwnedFd) -> io::Result<TcpListener> {
    let l = std::net::TcpListener::from(fd);
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// Who may hold accepted connections: a total and a per-address limit, shared by every
/// listener; a connection holds its place ([`Admitted`]) until it ends.
pub(crate) struct Admission {
    limits: TcpLimits,
    held: Mutex<(usize, HashMap<IpAddr, usize>)>,
    refused: AtomicU64,
}

/// A place taken in [`Admission`], given back when dropped.
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub fn new(limits: TcpLimits) -> Admission {
        Admission {
            limits,
            held: Mutex::new((0, HashMap::new())),
            refused: AtomicU64::new(0),
        }
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut held = self.held.lock().ok()?;
        let (total, per) = &mut *held;
        let mine = per.get(&ip).copied().unwrap_or(0);
        if *total >= self.limits.max_connections || mine >= self.limits.max_per_source {
            return None;
        }
        *total = total.saturating_add(1);
        per.insert(ip, mine.saturating_add(1));
        Some(Admitted {
            admission: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut held) = self.admission.held.lock() {
            let (total, per) = &mut *held;
            *total = total.saturating_sub(1);
            if let Some(n) = per.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per.remove(&self.ip);
                }
            }
        }
    }
}

pub(crate) async fn accept_loop(
    (local, tls): (SocketAddr, Option<tokio_rustls::TlsAcceptor>),
    listener: TcpListener,
    tx: mpsc::Sender<Incoming>,
    (ids, admission): (Arc<AtomicU64>, Arc<Admission>),
    max_message: usize,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(%local, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(place) = admission.admit(remote.ip()) else {
            // Over a limit: closed at once. Logged at the first and every 1000th.
            let n = admission.refused.fetch_add(1, Ordering::Relaxed);
            if n % 1000 == 0 {
                warn!(%remote, refused = n.saturating_add(1), "tcp connection over the limits, closed");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let (writer, queue, stop) = Writer::pair();
        let transport = if tls.is_some() {
            Transport::Tls
        } else {
            Transport::Tcp
        };
        let connected = Incoming::Connected {
            id,
            remote: (transport, remote),
            writer: writer.clone(),
        };
        if tx.send(connected).await.is_err() {
            return;
        }
        let flow = Flow {
            transport: if tls.is_some() {
                Transport::Tls
            } else {
                Transport::Tcp
            },
            local,
            remote,
            conn: Some(id),
        };
        let first = admission.limits.first_message;
        let tx = tx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _place = place;
            let queues = (writer, queue, stop);
            let Some(acceptor) = tls else {
                serve(flow, stream, queues, tx, (max_message, first)).await;
                return;
            };
            // The handshake runs here, beside the other connections, within its time.
            let shaken = crate::tls::within_deadline(acceptor.accept(stream)).await;
            match shaken {
                Ok(s) => serve(flow, s, queues, tx, (max_message, first)).await,
                Err(e) => {
                    crate::tls::failed(remote, "accepted", &e);
                    let _ = tx.send(Incoming::Closed { id }).await;
                }
            }
        });
    }
}

/// Open a connection from `local`'s address to `remote` and serve it; a failure is reported
/// to the engine task at once.
pub(crate) async fn connect(
    flow: Flow,
    queues: (Writer, mpsc::Receiver<Bytes>, Arc<Notify>),
    tx: mpsc::Sender<Incoming>,
    (max_message, tls, keepalive): (usize, Option<crate::tls::TlsContext>, Option<Duration>),
) {
    let Some(id) = flow.conn else {
        return;
    };
    let opened = async {
        let sock = if flow.remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        sock.bind(SocketAddr::new(flow.local.ip(), 0))?;
        tokio::time::timeout(CONNECT_TIMEOUT, sock.connect(flow.remote))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }
    .await;
    let opened = match opened {
        Ok(stream) if flow.transport == Transport::Tls => {
            let _ = stream.set_nodelay(true);
            let Some(ctx) = tls else {
                warn!(remote = %flow.remote, "no TLS configured: a TLS destination cannot be reached");
                let _ = tx.send(Incoming::Failed { id, flow }).await;
                return;
            };
            let (connector, name) = ctx.connector(flow.remote);
            let shaken = crate::tls::within_deadline(connector.connect(name, stream)).await;
            match shaken {
                Ok(s) => {
                    serve_pinged(flow, s, queues, tx, (max_message, keepalive)).await;
                    return;
                }
                Err(e) => {
                    crate::tls::failed(flow.remote, "opened", &e);
                    Err(e)
                }
            }
        }
        other => other,
    };
    match opened {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            serve_pinged(flow, stream, queues, tx, (max_message, keepalive)).await;
        }
        Err(e) => {
            warn!(remote = %flow.remote, "tcp connect failed: {e}");
            let _ = tx.send(Incoming::Failed { id, flow }).await;
        }
    }
}

/// RFC 5626 §4.4.1 keep-alive of a connection Sluice opened, sans-IO: the read loop asks how
/// long to wait, and tells it of each silence and each read.
#[derive(Debug)]
struct KeepAlive {
    /// Ping after this much silence; `None`: never (a silence closes the connection).
    every: Option<Duration>,
    /// A ping is out, not answered yet.
    pinged: bool,
    /// The peer answered a ping once. One that never did may not do pongs (they are optional):
    /// it is pinged (NAT bindings stay), but its silence proves nothing.
    answers_pings: bool,
}

/// What a silence (the wait ran out) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Silence {
    /// Send a ping and wait for its pong.
    Ping,
    /// Go on waiting.
    Wait,
    /// A peer that answers pings did not: the connection is dead.
    Dead,
    /// No keep-alive: an idle connection is closed.
    Close,
}

impl KeepAlive {
    fn new(every: Option<Duration>) -> KeepAlive {
        KeepAlive {
            every,
            pinged: false,
            answers_pings: false,
        }
    }

    /// How long to wait for bytes; `idle` when nothing is pinged.
    fn wait(&self, idle: Duration) -> Duration {
        match self.every {
            Some(_) if self.pinged => PONG_WAIT,
            Some(k) => k.min(idle),
            None => idle,
        }
    }

    fn on_silence(&mut self) -> Silence {
        match (self.every, self.pinged) {
            (None, _) => Silence::Close,
            (Some(_), false) => {
                self.pinged = true;
                Silence::Ping
            }
            (Some(_), true) if !self.answers_pings => {
                self.pinged = false;
                Silence::Wait
            }
            (Some(_), true) => Silence::Dead,
        }
    }

    /// Bytes read: what to frame. Only a CRLF pong proves the peer answers pings (a message
    /// meanwhile proves it alive, not that); the pong is not framed (two would read as a ping).
    fn on_read<'a>(&mut self, read: &'a [u8]) -> &'a [u8] {
        let pinged = std::mem::replace(&mut self.pinged, false);
        match read.strip_prefix(b"\r\n") {
            Some(rest) if pinged => {
                self.answers_pings = true;
                rest
            }
            _ => read,
        }
    }
}

/// A connection Sluice opened: served as any, and pinged after `keepalive` of silence.
async fn serve_pinged<S>(
    flow: Flow,
    stream: S,
    queues: (Writer, mpsc::Receiver<Bytes>, Arc<Notify>),
    tx: mpsc::Sender<Incoming>,
    (max_message, keepalive): (usize, Option<Duration>),
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    serve_with(
        flow,
        stream,
        queues,
        tx,
        (max_message, IDLE, keepalive, true),
    )
    .await;
}

/// Read and frame a connection until it ends; a writer task empties its queue meanwhile.
async fn serve<S>(
    flow: Flow,
    stream: S,
    queues: (Writer, mpsc::Receiver<Bytes>, Arc<Notify>),
    tx: mpsc::Sender<Incoming>,
    (max_message, first_message): (usize, Duration),
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    serve_with(
        flow,
        stream,
        queues,
        tx,
        (max_message, first_message, None, false),
    )
    .await;
}

/// The writing half of a connection: what the engine queues, written in order. A write that
/// fails fails the connection (what waits on it fails over).
fn spawn_writer<W>(
    mut wr: W,
    mut queue: mpsc::Receiver<Bytes>,
    failed: mpsc::Sender<Incoming>,
    (id, flow): (ConnId, Flow),
) -> tokio::task::JoinHandle<()>
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    tokio::spawn(async move {
        while let Some(data) = queue.recv().await {
            if let Err(e) = wr.write_all(&data).await {
                debug!(remote = %flow.remote, "tcp write failed: {e}");
                let _ = failed.send(Incoming::Failed { id, flow }).await;
                break;
            }
        }
        let _ = wr.shutdown().await;
    })
}

/// A connection Sluice opened broke (a reset, or a TLS alert: over TLS 1.3 a provider refuses
/// a client certificate only after Sluice's handshake completed): what waits on it fails at
/// once. (The peer of an accepted one may still answer over a new connection.)
async fn opened_connection_broke(
    e: &io::Error,
    (id, flow): (ConnId, Flow),
    heard: bool,
    tx: &mpsc::Sender<Incoming>,
) {
    // Before the peer said anything, a TLS error is the end of the handshake (TLS 1.3
    // finishes the server's checks then); later, a broken connection.
    if flow.transport == Transport::Tls && !heard {
        crate::tls::failed(flow.remote, "opened", e);
    } else {
        debug!(remote = %flow.remote, "connection broke: {e}");
    }
    let _ = tx.send(Incoming::Failed { id, flow }).await;
}

/// Hand the engine every complete message the framer holds, and answer CRLF pings. `false`
/// once the connection must close: a framing error (the engine gets the head to answer
/// from first), or the engine gone.
async fn deliver(
    framer: &mut StreamFramer,
    flow: Flow,
    (tx, pong): (&mpsc::Sender<Incoming>, &Writer),
    idle: &mut Duration,
) -> bool {
    while let Some(frame) = framer.next_frame() {
        match frame {
            Ok(Frame::Message(data)) => {
                *idle = IDLE;
                if tx.send(Incoming::Packet { flow, data }).await.is_err() {
                    return false;
                }
            }
            Ok(Frame::Ping) => {
                let _ = pong.send(Bytes::from_static(b"\r\n"));
            }
            Err(e) => {
                warn!(remote = %flow.remote, reason = e.reason, "stream framing error, closing");
                if let Some(head) = e.head {
                    // Let the engine answer (400, 513) from the head before the stream
                    // closes, without acting on the message.
                    let unframed = Incoming::Unframed {
                        flow,
                        head,
                        status: e.status,
                        reason: e.reason,
                    };
                    let _ = tx.send(unframed).await;
                }
                return false;
            }
        }
    }
    true
}

/// [`serve`]; with `keepalive`, pinged as [`KeepAlive`] says: a peer that answered a ping once
/// and then leaves one unanswered within [`PONG_WAIT`] ends the connection as failed (its
/// transactions fail over at once).
async fn serve_with<S>(
    flow: Flow,
    stream: S,
    (pong, queue, stop): (Writer, mpsc::Receiver<Bytes>, Arc<Notify>),
    tx: mpsc::Sender<Incoming>,
    (max_message, first_message, keepalive, opened): (usize, Duration, Option<Duration>, bool),
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let Some(id) = flow.conn else {
        return;
    };
    let (mut rd, wr) = tokio::io::split(stream);
    let writer = spawn_writer(wr, queue, tx.clone(), (id, flow));
    let mut framer = StreamFramer::new(max_message);
    let mut buf = vec![0u8; 16 * 1024];
    let mut stopped = false;
    // Until its first complete message, a connection gets `first_message` to send it.
    let mut idle = first_message;
    let mut alive = KeepAlive::new(keepalive);
    // Whether the peer has sent anything yet.
    let mut heard = false;
    'read: loop {
        let wait = alive.wait(idle);
        let read = tokio::select! {
            r = tokio::time::timeout(wait, rd.read(&mut buf)) => r,
            () = stop.notified() => {
                // Its write queue overflowed: the peer reads nothing.
                stopped = true;
                break 'read;
            }
        };
        let n = match read {
            Err(_) => match alive.on_silence() {
                Silence::Ping if pong.send(Bytes::from_static(PING)).is_ok() => continue,
                Silence::Wait => continue,
                Silence::Dead => {
                    warn!(remote = %flow.remote, "keep-alive ping unanswered: connection closed");
                    let _ = tx.send(Incoming::Failed { id, flow }).await;
                    break;
                }
                Silence::Ping | Silence::Close => break,
            },
            Ok(Ok(0)) => break,
            Ok(Err(e)) => {
                if opened {
                    opened_connection_broke(&e, (id, flow), heard, &tx).await;
                }
                break;
            }
            Ok(Ok(n)) => n,
        };
        heard = true;
        framer.push(alive.on_read(buf.get(..n).unwrap_or_default()));
        if !deliver(&mut framer, flow, (&tx, &pong), &mut idle).await {
            break;
        }
    }
    // The writer ends once the engine task drops its sender on `Closed`, after writing
    // anything it queued first (a 400 for a framing error, say).
    drop(pong);
    let _ = tx.send(Incoming::Closed { id }).await;
    if stopped {
        // Its writes may never complete: nothing more is written.
        writer.abort();
    }
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(90);

    #[test]
    fn without_keep_alive_a_silence_closes() {
        let mut k = KeepAlive::new(None);
        assert_eq!(k.wait(IDLE), IDLE);
        assert_eq!(k.on_silence(), Silence::Close);
    }

    #[test]
    fn a_peer_that_answered_a_ping_and_then_does_not_is_dead() {
        let mut k = KeepAlive::new(Some(EVERY));
        assert_eq!(k.wait(IDLE), EVERY);
        assert_eq!(k.on_silence(), Silence::Ping);
        assert_eq!(k.wait(IDLE), PONG_WAIT);
        // The pong is taken out; what follows it is framed.
        assert_eq!(k.on_read(b"\r\nOPTIONS"), b"OPTIONS");
        assert_eq!(k.wait(IDLE), EVERY);
        assert_eq!(k.on_silence(), Silence::Ping);
        assert_eq!(k.on_silence(), Silence::Dead);
    }

    #[test]
    fn a_peer_that_never_answers_pings_is_pinged_on_not_closed() {
        let mut k = KeepAlive::new(Some(EVERY));
        assert_eq!(k.on_silence(), Silence::Ping);
        // A message, not a pong: alive, but it proves nothing of pongs.
        assert_eq!(k.on_read(b"SIP/2.0 200 OK"), b"SIP/2.0 200 OK");
        assert_eq!(k.on_silence(), Silence::Ping);
        assert_eq!(k.on_silence(), Silence::Wait);
        assert_eq!(k.on_silence(), Silence::Ping);
        assert_eq!(k.on_silence(), Silence::Wait);
        // A CRLF while nothing is pinged is framed as it is (the framer skips it).
        assert_eq!(k.on_read(b"\r\n"), b"\r\n");
    }
}
