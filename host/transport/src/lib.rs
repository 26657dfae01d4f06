//! The thin I/O shell around the sans-IO engine: UDP sockets, TCP listeners and connections,
//! and the timer. Every socket task funnels what it reads into one channel; a single task owns
//! the engine, so the engine needs no locks.

// The workspace lints forbid panicking slicing and arithmetic in code that handles input; tests
// index into data they built themselves.
#![cfg_attr(
    test,
    allow(
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::arithmetic_side_effects,
        clippy::cast_possible_truncation
    )
)]

mod current_input;

pub use current_input::{describe_current_input, redact};

use bytes::{Bytes, BytesMut};
use sluice_b2bua::{
    CallInfo, Engine, EngineConfig, EngineStats, ListenerAddr, Output, PluginStatus,
};
use sluice_sip::{Frame, StreamFramer};
use sluice_transaction::{ConnId, Flow, Transport};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// How long a TCP connection may stay silent before it is closed.
const TCP_IDLE: Duration = Duration::from_secs(300);
/// Messages handled per wake-up before the shell flushes output and checks timers.
const BATCH: usize = 64;

/// `now + d` on tokio's clock, saturated instead of panicking (see [`sluice_transaction::after`]).
fn later(now: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(sluice_transaction::after(now.into_std(), d))
}

/// What the socket tasks tell the engine task.
enum Incoming {
    Packet {
        flow: Flow,
        data: Bytes,
    },
    Connected {
        id: ConnId,
        remote: SocketAddr,
        writer: mpsc::UnboundedSender<Bytes>,
    },
    Closed {
        id: ConnId,
    },
}

/// Commands from the process (signals, admin API) to the engine task.
pub enum Command {
    /// Refuse new calls; exit once the calls in progress are over or `deadline` passes, then
    /// end the rest with BYE.
    Drain { deadline: Duration },
    /// A snapshot for the admin API.
    Status(oneshot::Sender<Status>),
    /// Change the engine (a new configuration, a new plugin generation: prepared off this
    /// task, applied here between two messages) and answer.
    Apply(EngineChange, oneshot::Sender<Result<String, String>>),
}

/// A change applied to the engine on its own task.
pub type EngineChange = Box<dyn FnOnce(&mut Engine) -> Result<String, String> + Send>;

/// What the engine task reports to the admin API.
#[derive(Debug, Clone)]
pub struct Status {
    pub draining: bool,
    pub stats: EngineStats,
    pub calls: Vec<CallInfo>,
    pub calls_per_trunk: HashMap<String, usize>,
    pub config: EngineConfig,
    pub plugins: Vec<PluginStatus>,
}

pub struct ShellOptions {
    pub listeners: Vec<ListenerAddr>,
    pub max_message: usize,
}

/// Bound sockets, ready to run.
pub struct Shell {
    engine: Engine,
    opts: ShellOptions,
    udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    tcp: Vec<(SocketAddr, TcpListener)>,
}

impl Shell {
    /// Bind every listener; fails (with the address) when one cannot be bound.
    pub async fn bind(engine: Engine, opts: ShellOptions) -> io::Result<Shell> {
        let mut udp = HashMap::new();
        let mut tcp = Vec::new();
        for l in &opts.listeners {
            match l.transport {
                Transport::Udp => {
                    let sock = bind_udp(l.addr).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot bind udp {}: {e}", l.addr))
                    })?;
                    udp.insert(l.addr, Arc::new(sock));
                }
                Transport::Tcp => {
                    let sock = if l.addr.is_ipv4() {
                        TcpSocket::new_v4()?
                    } else {
                        TcpSocket::new_v6()?
                    };
                    sock.set_reuseaddr(true)?;
                    sock.bind(l.addr).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot bind tcp {}: {e}", l.addr))
                    })?;
                    tcp.push((l.addr, sock.listen(1024)?));
                }
            }
            info!(transport = %l.transport, address = %l.addr, side = ?l.side, "listening");
        }
        Ok(Shell {
            engine,
            opts,
            udp,
            tcp,
        })
    }

    /// Run until a drain completes or every command sender is gone.
    pub async fn run(self, mut commands: mpsc::Receiver<Command>) -> io::Result<()> {
        let Shell {
            mut engine,
            opts,
            udp,
            tcp,
        } = self;
        let (tx, mut rx) = mpsc::channel::<Incoming>(16 * 1024);
        let next_conn = Arc::new(std::sync::atomic::AtomicU64::new(1));
        for (addr, sock) in &udp {
            tokio::spawn(udp_reader(
                *addr,
                sock.clone(),
                tx.clone(),
                opts.max_message,
            ));
        }
        for (addr, listener) in tcp {
            tokio::spawn(tcp_acceptor(
                addr,
                listener,
                tx.clone(),
                next_conn.clone(),
                opts.max_message,
            ));
        }
        let mut conns: HashMap<ConnId, (SocketAddr, mpsc::UnboundedSender<Bytes>)> = HashMap::new();
        let mut by_remote: HashMap<SocketAddr, ConnId> = HashMap::new();
        let mut drain_until: Option<tokio::time::Instant> = None;
        let mut hung_up = false;
        loop {
            let now = tokio::time::Instant::now();
            let wake = engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or(later(now, Duration::from_secs(3600)));
            let drain_wake = drain_until.unwrap_or(later(now, Duration::from_secs(3600)));
            tokio::select! {
                biased;
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    let mut handled: usize = 0;
                    let mut next = Some(msg);
                    while let Some(m) = next.take() {
                        if matches!(m, Incoming::Closed { .. }) {
                            // Write what is queued for the connection (a 400, say) first.
                            flush(&mut engine, &udp, &mut conns, &mut by_remote, &tx, &next_conn).await;
                        }
                        handle_incoming(&mut engine, m, &mut conns, &mut by_remote);
                        handled = handled.saturating_add(1);
                        if handled >= BATCH {
                            break;
                        }
                        next = rx.try_recv().ok();
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    engine.handle_timeout(std::time::Instant::now());
                }
                _ = tokio::time::sleep_until(drain_wake), if drain_until.is_some() => {
                    if !hung_up {
                        let now = std::time::Instant::now();
                        let keys = engine.call_keys();
                        info!(calls = keys.len(), "drain deadline reached, hanging up");
                        for k in keys {
                            engine.hang_up(now, k);
                        }
                        hung_up = true;
                        drain_until = Some(later(tokio::time::Instant::now(), Duration::from_secs(5)));
                    } else {
                        info!("drain finished");
                        flush(&mut engine, &udp, &mut conns, &mut by_remote, &tx, &next_conn).await;
                        return Ok(());
                    }
                }
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { break };
                    match cmd {
                        Command::Drain { deadline } => {
                            if drain_until.is_none() {
                                info!(calls = engine.active_calls(), ?deadline, "draining: new calls are refused");
                                engine.set_draining(true);
                                drain_until = Some(later(tokio::time::Instant::now(), deadline));
                            }
                        }
                        Command::Status(reply) => {
                            let now = std::time::Instant::now();
                            let _ = reply.send(Status {
                                draining: engine.is_draining(),
                                stats: engine.stats(),
                                calls: engine.calls_snapshot(now),
                                calls_per_trunk: engine.calls_per_trunk(),
                                config: engine.config().clone(),
                                plugins: engine.hooks().status(),
                            });
                        }
                        Command::Apply(change, reply) => {
                            let _ = reply.send(change(&mut engine));
                        }
                    }
                }
            }
            engine.sync_metrics();
            flush(
                &mut engine,
                &udp,
                &mut conns,
                &mut by_remote,
                &tx,
                &next_conn,
            )
            .await;
            if drain_until.is_some() && engine.active_calls() == 0 {
                info!("drained: no calls left");
                return Ok(());
            }
        }
        Ok(())
    }
}

fn handle_incoming(
    engine: &mut Engine,
    msg: Incoming,
    conns: &mut HashMap<ConnId, (SocketAddr, mpsc::UnboundedSender<Bytes>)>,
    by_remote: &mut HashMap<SocketAddr, ConnId>,
) {
    match msg {
        Incoming::Packet { flow, data } => {
            let _handling = current_input::handling(flow, &data);
            #[cfg(debug_assertions)]
            current_input::panic_if_asked(&data);
            engine.handle_datagram(std::time::Instant::now(), flow, &data);
        }
        Incoming::Connected { id, remote, writer } => {
            conns.insert(id, (remote, writer));
            by_remote.insert(remote, id);
        }
        Incoming::Closed { id } => {
            if let Some((remote, _)) = conns.remove(&id) {
                if by_remote.get(&remote) == Some(&id) {
                    by_remote.remove(&remote);
                }
            }
        }
    }
}

async fn flush(
    engine: &mut Engine,
    udp: &HashMap<SocketAddr, Arc<UdpSocket>>,
    conns: &mut HashMap<ConnId, (SocketAddr, mpsc::UnboundedSender<Bytes>)>,
    by_remote: &mut HashMap<SocketAddr, ConnId>,
    tx: &mpsc::Sender<Incoming>,
    next_conn: &Arc<std::sync::atomic::AtomicU64>,
) {
    while let Some(Output::Transmit { flow, data }) = engine.poll_output() {
        match flow.transport {
            Transport::Udp => {
                let Some(sock) = udp.get(&flow.local) else {
                    warn!(local = %flow.local, "no UDP socket for output");
                    continue;
                };
                if let Err(e) = sock.try_send_to(&data, flow.remote) {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        if let Err(e) = sock.send_to(&data, flow.remote).await {
                            debug!(to = %flow.remote, "udp send failed: {e}");
                        }
                    } else {
                        debug!(to = %flow.remote, "udp send failed: {e}");
                    }
                }
            }
            Transport::Tcp => {
                let id = flow
                    .conn
                    .filter(|id| conns.contains_key(id))
                    .or_else(|| by_remote.get(&flow.remote).copied());
                if let Some(id) = id {
                    if let Some((_, w)) = conns.get(&id) {
                        if w.send(data.clone()).is_ok() {
                            continue;
                        }
                    }
                    conns.remove(&id);
                    by_remote.remove(&flow.remote);
                }
                // Open a new connection from the listener's address.
                let id = next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (w, r) = mpsc::unbounded_channel();
                let _ = w.send(data);
                conns.insert(id, (flow.remote, w.clone()));
                by_remote.insert(flow.remote, id);
                tokio::spawn(tcp_connect(
                    id,
                    flow.local,
                    flow.remote,
                    w.clone(),
                    r,
                    tx.clone(),
                ));
            }
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
    // Large buffers absorb bursts at high call rates.
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

async fn udp_reader(
    local: SocketAddr,
    sock: Arc<UdpSocket>,
    tx: mpsc::Sender<Incoming>,
    max_message: usize,
) {
    // One byte more than the limit tells an oversized datagram from one exactly at the limit.
    let read_size = max_message.saturating_add(1);
    let mut buf = BytesMut::with_capacity(256 * 1024);
    loop {
        if buf.capacity() < read_size {
            buf.reserve(256 * 1024);
        }
        buf.resize(read_size, 0);
        let (n, remote) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors surface here on some systems; keep serving.
                debug!(%local, "udp recv error: {e}");
                continue;
            }
        };
        if n > max_message {
            warn!(%remote, "datagram over the size limit dropped");
            continue;
        }
        let data = buf.split_to(n).freeze();
        buf.clear();
        let flow = Flow {
            transport: Transport::Udp,
            local,
            remote,
            conn: None,
        };
        if tx.send(Incoming::Packet { flow, data }).await.is_err() {
            return;
        }
    }
}

async fn tcp_acceptor(
    local: SocketAddr,
    listener: TcpListener,
    tx: mpsc::Sender<Incoming>,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
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
        let _ = stream.set_nodelay(true);
        let id = next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (w, r) = mpsc::unbounded_channel();
        if tx
            .send(Incoming::Connected {
                id,
                remote,
                writer: w.clone(),
            })
            .await
            .is_err()
        {
            return;
        }
        tokio::spawn(tcp_connection(
            id,
            local,
            remote,
            stream,
            w,
            r,
            tx.clone(),
            max_message,
        ));
    }
}

async fn tcp_connect(
    id: ConnId,
    local: SocketAddr,
    remote: SocketAddr,
    pong: mpsc::UnboundedSender<Bytes>,
    r: mpsc::UnboundedReceiver<Bytes>,
    tx: mpsc::Sender<Incoming>,
) {
    let sock = if remote.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    let connected = async {
        let sock = sock?;
        sock.bind(SocketAddr::new(local.ip(), 0))?;
        tokio::time::timeout(Duration::from_secs(5), sock.connect(remote))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }
    .await;
    match connected {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            tcp_connection(id, local, remote, stream, pong, r, tx, 65_535).await;
        }
        Err(e) => {
            warn!(%remote, "tcp connect failed: {e}");
            let _ = tx.send(Incoming::Closed { id }).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn tcp_connection(
    id: ConnId,
    local: SocketAddr,
    remote: SocketAddr,
    stream: TcpStream,
    pong: mpsc::UnboundedSender<Bytes>,
    mut outgoing: mpsc::UnboundedReceiver<Bytes>,
    tx: mpsc::Sender<Incoming>,
    max_message: usize,
) {
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(data) = outgoing.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut framer = StreamFramer::new(max_message);
    let mut buf = vec![0u8; 16 * 1024];
    let flow = Flow {
        transport: Transport::Tcp,
        local,
        remote,
        conn: Some(id),
    };
    'read: loop {
        let n = match tokio::time::timeout(TCP_IDLE, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        framer.push(buf.get(..n).unwrap_or_default());
        while let Some(frame) = framer.next_frame() {
            match frame {
                Ok(Frame::Message(data)) => {
                    if tx.send(Incoming::Packet { flow, data }).await.is_err() {
                        break 'read;
                    }
                }
                Ok(Frame::Ping) => {
                    let _ = pong.send(Bytes::from_static(b"\r\n"));
                }
                Err(e) => {
                    warn!(%remote, reason = e.reason, "stream framing error, closing");
                    if let Some(head) = e.head {
                        // Let the engine answer 400 from the head before the stream closes.
                        let _ = tx.send(Incoming::Packet { flow, data: head }).await;
                    }
                    break 'read;
                }
            }
        }
    }
    // The writer ends once the engine task drops its sender on `Closed`, after writing
    // anything it queued first (a 400 for a framing error, say).
    drop(pong);
    let _ = tx.send(Incoming::Closed { id }).await;
    let _ = writer.await;
}
