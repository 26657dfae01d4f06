//! The media relay's I/O: worker threads that own the RTP/RTCP sockets and run each stream's
//! [`RelayStream`] on what arrives. The packet path never touches the engine's task: the engine
//! sends [`MediaOp`]s (through [`MediaRelay::apply`]) and hears [`MediaEvent`]s back.
//!
//! Each worker is one thread with its own epoll set (mio) and its own streams; a stream lives
//! on one worker for its whole life (chosen from its call), so nothing on the packet path is
//! shared or locked. A readable socket is read with `recvmmsg` (quinn-udp) into buffers
//! allocated once per worker, until a read returns less than a full batch (the socket is then
//! empty); every packet is decided by its stream and sent from the other end's socket. Silence
//! is checked twice a second.
//!
//! Measured (bench/README.md): over 90% of the relay's CPU time per packet is the kernel's UDP
//! receive and send path. A level-triggered poll with one `recvfrom` per event instead of
//! edge-triggered `recvmmsg` made no difference beyond the noise; what did matter was keeping
//! per-stream setup out of the kernel's slow paths (see [`Worker`]'s reader).

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use slab::Slab;
use sluice_media::{
    call_of, Component, Local, MediaEvent, MediaOp, Offload, RelayStream, Relayed, Socket,
    StreamId, Verdict,
};
use sluice_media_kernel::{monotonic_ns, Direction, KernelPath, Key, Route, Table};
use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, warn};

/// Datagrams read per system call.
const BATCH: usize = 8;
/// Room for one read: a whole GRO-coalesced burst (the kernel merges up to 64 KiB).
const SLOT: usize = 64 * 1024;
/// Reads per readable event before other sockets get their turn (the next packet wakes the
/// socket again).
const READS_PER_EVENT: usize = 16;
/// How often streams are checked for silence.
const SWEEP: Duration = Duration::from_millis(500);
const WAKER: Token = Token(usize::MAX);

/// The relay workers, as the engine's task sees them.
pub struct MediaRelay {
    workers: Vec<WorkerHandle>,
}

/// What a worker is asked to do: [`MediaOp`]s, with an opened stream's sockets already bound.
enum WorkerOp {
    Open {
        stream: StreamId,
        sockets: [std::net::UdpSocket; 4],
        relay: Box<RelayStream>,
    },
    Other(MediaOp),
}

struct WorkerHandle {
    ops: std_mpsc::Sender<WorkerOp>,
    waker: Arc<Waker>,
    _thread: JoinHandle<()>,
}

impl MediaRelay {
    /// Start `threads` workers (at least one); their events go to `events`. With `kernel`,
    /// each hands the directions it has settled to the kernel fast path.
    pub fn start(
        threads: usize,
        events: UnboundedSender<MediaEvent>,
        kernel: Option<Arc<KernelPath>>,
    ) -> io::Result<MediaRelay> {
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (ops, rx) = std_mpsc::channel();
            let kernel = kernel.as_ref().and_then(|path| match path.table() {
                Ok(table) => Some(Kernel {
                    table,
                    path: path.clone(),
                    packets: metrics::counter!(KERNEL_PACKETS),
                    directions: metrics::gauge!(KERNEL_DIRECTIONS),
                }),
                Err(e) => {
                    warn!(
                        worker = i,
                        "media kernel fast path not used by this worker: {e}"
                    );
                    None
                }
            });
            let worker = Worker::new(poll, rx, events.clone(), kernel)?;
            let thread = std::thread::Builder::new()
                .name(format!("sluice-media-{i}"))
                .spawn(move || worker.run())?;
            workers.push(WorkerHandle {
                ops,
                waker,
                _thread: thread,
            });
        }
        Ok(MediaRelay { workers })
    }

    /// Hand an operation to the worker that owns (or will own) its stream. A new stream's
    /// ports are bound here, on the caller's thread, before the SIP message that names them
    /// leaves (the engine's outputs put the operation first): a peer that sends at once finds
    /// them bound, and a port that cannot be bound is reported at once.
    pub fn apply(&self, op: MediaOp) -> Option<MediaEvent> {
        let (stream, op) = match op {
            MediaOp::Open {
                stream,
                a,
                b,
                peers,
                counters,
            } => match bind_stream(a, b) {
                Ok(sockets) => {
                    let relay = Box::new(RelayStream::new(Instant::now(), peers, counters));
                    let open = WorkerOp::Open {
                        stream,
                        sockets,
                        relay,
                    };
                    (stream, open)
                }
                Err(e) => {
                    warn!(stream, "media ports cannot be bound: {e}");
                    let reason = e.to_string();
                    return Some(MediaEvent::OpenFailed { stream, reason });
                }
            },
            MediaOp::Update { stream, .. } | MediaOp::Close { stream } => {
                (stream, WorkerOp::Other(op))
            }
        };
        let n = u64::try_from(self.workers.len()).unwrap_or(1).max(1);
        let i = usize::try_from(call_of(stream).checked_rem(n).unwrap_or(0)).unwrap_or(0);
        if let Some(w) = self.workers.get(i) {
            if w.ops.send(op).is_ok() {
                let _ = w.waker.wake();
            }
        }
        None
    }
}

/// The four sockets of a stream: RTP and RTCP facing each end, non-blocking.
fn bind_stream(a: Local, b: Local) -> io::Result<[std::net::UdpSocket; 4]> {
    let bind = |addr: SocketAddr| {
        let s = std::net::UdpSocket::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
        s.set_nonblocking(true)?;
        Ok::<_, io::Error>(s)
    };
    Ok([
        bind(a.rtp())?,
        bind(a.rtcp())?,
        bind(b.rtp())?,
        bind(b.rtcp())?,
    ])
}

struct Entry {
    id: StreamId,
    relay: RelayStream,
    /// A RTP, A RTCP, B RTP, B RTCP (see [`Socket::index`]).
    sockets: [UdpSocket; 4],
    /// Their local addresses, for the kernel's table.
    locals: [Option<SocketAddr>; 4],
    /// What the kernel relays of each socket's direction now, and what it may not.
    kernel: Offloads,
    timed_out: bool,
}

/// Packets the kernel fast path relayed (RTP and RTCP), and directions it relays now.
pub const KERNEL_PACKETS: &str = "sluice_media_kernel_packets_total";
pub const KERNEL_DIRECTIONS: &str = "sluice_media_kernel_directions";

/// A worker's share of the kernel fast path.
struct Kernel {
    table: Table,
    path: Arc<KernelPath>,
    packets: metrics::Counter,
    directions: metrics::Gauge,
}

/// What a direction is installed with: the relay's plan, and the jitter clock (epoch and
/// rate) the kernel counts arrival times in.
type Setting = (Offload, (Instant, u32));

/// A stream's directions in the kernel (by [`Socket::index`]).
#[derive(Default)]
struct Offloads {
    installed: [Option<Installed>; 4],
    /// A setting the kernel could not take, or did not see the packets of: not tried again
    /// until the relay's plan changes.
    refused: [Option<Setting>; 4],
}

/// A direction in the kernel's table, and what of its counts was already taken in (and when).
struct Installed {
    key: Key,
    setting: Setting,
    seen: (u64, u64, u64),
    looked: Instant,
    since: Instant,
    /// Packets of the direction that reached the relay after [`GRACE`].
    stragglers: u32,
}

/// After this long in the kernel, a direction's packets should no longer reach the relay; more
/// than [`MAX_STRAGGLERS`] that do mean the program does not see them (they arrive on a device
/// it is not attached to, say), and the relay takes the direction back.
const GRACE: Duration = Duration::from_millis(200);
const MAX_STRAGGLERS: u32 = 8;

/// How often a packet from another sender on an offloaded socket (a NAT that rebinds, a
/// stranger) makes the worker take in what the kernel relayed first, so that the latch is
/// judged on when the latched sender was really last heard.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

struct Worker {
    poll: Poll,
    ops: std_mpsc::Receiver<WorkerOp>,
    events: UnboundedSender<MediaEvent>,
    streams: Slab<Entry>,
    by_id: HashMap<StreamId, usize>,
    bufs: Vec<Vec<u8>>,
    metas: [RecvMeta; BATCH],
    /// quinn-udp's reader, made once from a socket of its own and used on every stream
    /// socket. `UdpSocketState::new` probes the system with a throw-away IPv6 socket and turns
    /// on GRO and control messages: per stream socket, that flips kernel static keys (code
    /// patching with an interrupt to every core) each time a stream opens and closes; the
    /// relay needs neither GRO nor control messages, only `recvmmsg`.
    reader: UdpSocketState,
    _probe: std::net::UdpSocket,
    kernel: Option<Kernel>,
}

impl Worker {
    fn new(
        poll: Poll,
        ops: std_mpsc::Receiver<WorkerOp>,
        events: UnboundedSender<MediaEvent>,
        kernel: Option<Kernel>,
    ) -> io::Result<Worker> {
        let probe = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        let reader = UdpSocketState::new(UdpSockRef::from(&probe))?;
        Ok(Worker {
            poll,
            ops,
            events,
            streams: Slab::new(),
            by_id: HashMap::new(),
            bufs: (0..BATCH).map(|_| vec![0; SLOT]).collect(),
            metas: [RecvMeta::default(); BATCH],
            reader,
            _probe: probe,
            kernel,
        })
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now();
        loop {
            let timeout = next_sweep.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    warn!("media worker cannot poll: {e}");
                    return;
                }
            }
            let now = Instant::now();
            for ev in events.iter() {
                if ev.token() == WAKER {
                    if !self.take_ops(now) {
                        return;
                    }
                    continue;
                }
                let Token(t) = ev.token();
                self.read(now, t / 4, t % 4);
                self.settle(t / 4);
            }
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now.checked_add(SWEEP).unwrap_or(now);
            }
        }
    }

    /// Apply the engine's operations; `false` once the engine is gone.
    fn take_ops(&mut self, now: Instant) -> bool {
        loop {
            match self.ops.try_recv() {
                Ok(op) => self.apply(now, op),
                Err(std_mpsc::TryRecvError::Empty) => return true,
                Err(std_mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn apply(&mut self, now: Instant, op: WorkerOp) {
        match op {
            WorkerOp::Open {
                stream,
                sockets,
                relay,
            } => {
                if let Err(e) = self.open(stream, sockets, *relay) {
                    warn!(stream, "media sockets cannot be polled: {e}");
                    let reason = e.to_string();
                    let _ = self.events.send(MediaEvent::OpenFailed { stream, reason });
                }
            }
            WorkerOp::Other(MediaOp::Update {
                stream,
                remotes,
                latching,
                timeout,
                clock_rate,
                crypto,
            }) => {
                if let Some(&slot) = self.by_id.get(&stream) {
                    if let Some(e) = self.streams.get_mut(slot) {
                        e.relay
                            .update(now, remotes, latching, timeout, clock_rate, *crypto);
                        e.timed_out = false;
                    }
                    self.settle(slot);
                }
            }
            WorkerOp::Other(MediaOp::Close { stream }) => {
                if let Some(slot) = self.by_id.remove(&stream) {
                    self.unload(slot);
                    if let Some(mut e) = self.streams.try_remove(slot) {
                        for s in &mut e.sockets {
                            let _ = self.poll.registry().deregister(s);
                        }
                    }
                }
            }
            // Opens are bound by the relay's caller and arrive as `WorkerOp::Open`.
            WorkerOp::Other(MediaOp::Open { stream, .. }) => {
                debug!(stream, "unbound open ignored");
            }
        }
    }

    fn open(
        &mut self,
        id: StreamId,
        sockets: [std::net::UdpSocket; 4],
        relay: RelayStream,
    ) -> io::Result<()> {
        let entry = self.streams.vacant_entry();
        let slot = entry.key();
        let locals = sockets.each_ref().map(|s| s.local_addr().ok());
        let mut e = Entry {
            id,
            relay,
            sockets: sockets.map(UdpSocket::from_std),
            locals,
            kernel: Offloads::default(),
            timed_out: false,
        };
        for (i, s) in e.sockets.iter_mut().enumerate() {
            let token = Token(slot.saturating_mul(4).saturating_add(i));
            // Packets that arrived since the bind are reported at once.
            self.poll
                .registry()
                .register(s, token, Interest::READABLE)?;
        }
        entry.insert(e);
        if let Some(old) = self.by_id.insert(id, slot) {
            debug!(stream = id, old, "stream opened twice");
        }
        Ok(())
    }

    /// Read socket `which` of the stream in `slot` until it is empty, relaying each packet.
    fn read(&mut self, now: Instant, slot: usize, which: usize) {
        let Some(e) = self.streams.get_mut(slot) else {
            return;
        };
        let (Some(at), Some(sock)) = (Socket::from_index(which), e.sockets.get(which)) else {
            return;
        };
        let state = &self.reader;
        for _ in 0..READS_PER_EVENT {
            let mut iovs: [IoSliceMut<'_>; BATCH] = {
                let mut it = self.bufs.iter_mut();
                std::array::from_fn(|_| IoSliceMut::new(it.next().map_or(&mut [][..], |b| b)))
            };
            let n = match state.recv(UdpSockRef::from(sock), &mut iovs, &mut self.metas) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) => {
                    debug!(stream = e.id, "media recv error: {err}");
                    continue;
                }
            };
            for (meta, buf) in self.metas.iter().zip(&self.bufs).take(n) {
                let data = buf.get(..meta.len).unwrap_or_default();
                for packet in data.chunks(meta.stride.max(1)) {
                    if let Some(k) = &mut self.kernel {
                        k.before_relay(
                            &mut e.kernel,
                            &mut e.relay,
                            which,
                            (now, meta.addr, packet),
                        );
                    }
                    relay_one(&mut e.relay, &e.sockets, now, at, meta.addr, packet);
                }
            }
            if n < BATCH {
                return;
            }
        }
    }

    /// Report streams silent past their timeout (once each, until their next update), after
    /// taking in what the kernel relayed.
    fn sweep(&mut self, now: Instant) {
        if let Some(k) = &mut self.kernel {
            for (_, e) in self.streams.iter_mut() {
                for i in 0..4 {
                    k.take_in(e, i);
                }
            }
        }
        for (_, e) in self.streams.iter_mut() {
            if !e.timed_out && e.relay.timed_out(now) {
                e.timed_out = true;
                let _ = self.events.send(MediaEvent::Timeout { stream: e.id });
            }
        }
    }
}

impl Worker {
    /// Bring the kernel's table in line with what the stream's relay says may be offloaded
    /// now: a direction that changed is taken in and replaced, one that may no longer be is
    /// taken out (its next packets reach the relay again).
    fn settle(&mut self, slot: usize) {
        let (Some(k), Some(e)) = (&mut self.kernel, self.streams.get_mut(slot)) else {
            return;
        };
        for i in 0..4 {
            let Some(at) = Socket::from_index(i) else {
                continue;
            };
            let want = e.relay.offload(at).map(|p| (p, e.relay.jitter_clock()));
            let have = e
                .kernel
                .installed
                .get(i)
                .and_then(|o| o.as_ref())
                .map(|o| o.setting);
            if want == have {
                continue;
            }
            k.take_in(e, i);
            k.remove(e, i);
            let refused = e.kernel.refused.get_mut(i);
            match (want, refused) {
                (Some(w), Some(r)) if *r == Some(w) => {}
                (Some(w), Some(r)) => {
                    *r = None;
                    k.install(e, at, w);
                }
                (None, Some(r)) => *r = None,
                (_, None) => {}
            }
        }
    }

    /// Take a stream's directions out of the kernel, with what it relayed last.
    fn unload(&mut self, slot: usize) {
        let (Some(k), Some(e)) = (&mut self.kernel, self.streams.get_mut(slot)) else {
            return;
        };
        for i in 0..4 {
            k.take_in(e, i);
            k.remove(e, i);
        }
    }
}

impl Kernel {
    /// The direction arriving at `at` from the plan's sender: where each kind leaves from and
    /// goes, the RTP statistics so far. `None` when the program cannot relay it (an address
    /// of Sluice's it is not attached for).
    fn direction(&self, e: &Entry, at: Socket, (plan, clock): Setting) -> Option<Direction> {
        let local = (*e.locals.get(at.index())?)?;
        self.path.device(local.ip())?;
        let route = |r: Option<(Socket, SocketAddr)>| -> Option<Option<Route>> {
            let Some((via, to)) = r else {
                return Some(None);
            };
            let from = (*e.locals.get(via.index())?)?;
            let ifindex = self.path.device(from.ip())?;
            Some(Some(Route { from, to, ifindex }))
        };
        let (epoch, clock_rate) = clock;
        let age = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let rtp_socket = at.component == Component::Rtp;
        Some(Direction {
            local,
            src: plan.src,
            rtp: route(plan.rtp)?,
            rtcp: route(plan.rtcp)?,
            epoch_ns: monotonic_ns().saturating_sub(age),
            clock_rate,
            rtcp_socket: !rtp_socket,
            stats: if rtp_socket {
                e.relay.rtp_state(at.end)
            } else {
                Default::default()
            },
        })
    }

    /// Install a direction; one the kernel cannot take is left to the relay (and not tried
    /// again with the same setting).
    fn install(&mut self, e: &mut Entry, at: Socket, setting: Setting) {
        let i = at.index();
        let installed = self
            .direction(e, at, setting)
            .and_then(|d| match self.table.install(&d) {
                Ok(key) => Some(key),
                Err(err) => {
                    debug!(stream = e.id, "direction left to the relay: {err}");
                    None
                }
            });
        let Some(key) = installed else {
            if let Some(r) = e.kernel.refused.get_mut(i) {
                *r = Some(setting);
            }
            return;
        };
        e.relay.set_offloaded(at, setting.0.rtp.is_some());
        if let Some(slot) = e.kernel.installed.get_mut(i) {
            let now = Instant::now();
            *slot = Some(Installed {
                key,
                setting,
                seen: (0, 0, 0),
                looked: now,
                since: now,
                stragglers: 0,
            });
        }
        self.directions.increment(1.0);
    }

    fn remove(&mut self, e: &mut Entry, i: usize) {
        self.remove_from(&mut e.kernel, &mut e.relay, i);
    }

    fn remove_from(&mut self, ks: &mut Offloads, relay: &mut RelayStream, i: usize) {
        let Some(old) = ks.installed.get_mut(i).and_then(Option::take) else {
            return;
        };
        self.table.remove(&old.key);
        if let Some(at) = Socket::from_index(i) {
            relay.set_offloaded(at, false);
        }
        self.directions.decrement(1.0);
    }

    /// A packet from `src` reached the relay on socket `i` whose direction the kernel relays.
    /// From the direction's own sender, past [`GRACE`], it is a sign that the program does not
    /// see them: past [`MAX_STRAGGLERS`] the relay takes the direction back. From another
    /// sender, the kernel's counts are taken in first (at most every [`LOOK_AGAIN`]), so that
    /// a latch is judged on when the latched sender was really last heard.
    fn before_relay(
        &mut self,
        ks: &mut Offloads,
        relay: &mut RelayStream,
        i: usize,
        (now, src, packet): (Instant, SocketAddr, &[u8]),
    ) {
        let Some(Some(inst)) = ks.installed.get_mut(i) else {
            return;
        };
        let (plan, _) = inst.setting;
        if plan.src != src {
            if now.saturating_duration_since(inst.looked) >= LOOK_AGAIN {
                self.take_in_from(ks, relay, i);
            }
            return;
        }
        if now.saturating_duration_since(inst.since) < GRACE || !routed(i, &plan, packet) {
            return;
        }
        inst.stragglers = inst.stragglers.saturating_add(1);
        if inst.stragglers <= MAX_STRAGGLERS {
            return;
        }
        debug!(
            socket = i,
            "the kernel does not see this direction's packets: the relay keeps it"
        );
        let setting = inst.setting;
        self.take_in_from(ks, relay, i);
        self.remove_from(ks, relay, i);
        if let Some(r) = ks.refused.get_mut(i) {
            *r = Some(setting);
        }
    }

    /// Take in what the kernel relayed of socket `i`'s direction since the last look.
    fn take_in(&mut self, e: &mut Entry, i: usize) {
        self.take_in_from(&mut e.kernel, &mut e.relay, i);
    }

    fn take_in_from(&mut self, ks: &mut Offloads, relay: &mut RelayStream, i: usize) {
        let (Some(Some(inst)), Some(at)) = (ks.installed.get_mut(i), Socket::from_index(i)) else {
            return;
        };
        let Some(v) = self.table.read(&inst.key) else {
            return;
        };
        let (p, b, r) = inst.seen;
        let relayed = Relayed {
            packets: v.packets.saturating_sub(p),
            bytes: v.bytes.saturating_sub(b),
            rtcp_packets: v.rtcp_packets.saturating_sub(r),
            last: (v.last_ns > 0).then(|| {
                let ago = monotonic_ns().saturating_sub(v.last_ns);
                let now = Instant::now();
                now.checked_sub(Duration::from_nanos(ago)).unwrap_or(now)
            }),
            stats: (at.component == Component::Rtp && v.stats.started != 0).then_some(v.stats),
        };
        inst.seen = (v.packets, v.bytes, v.rtcp_packets);
        inst.looked = Instant::now();
        self.packets
            .increment(relayed.packets.saturating_add(relayed.rtcp_packets));
        relay.absorb(at, inst.setting.0.src, &relayed);
    }
}

/// Whether the program would have relayed `packet` on socket `i` under `plan`: RTP or RTCP
/// version 2 with a route for its kind (RTCP told apart on an RTP port as RFC 5761 does).
fn routed(i: usize, plan: &Offload, packet: &[u8]) -> bool {
    let (Some(&first), Some(&second)) = (packet.first(), packet.get(1)) else {
        return false;
    };
    if first >> 6 != 2 || packet.len() < 12 {
        return false;
    }
    let on_rtcp_port = Socket::from_index(i).is_some_and(|at| at.component == Component::Rtcp);
    let rtcp = on_rtcp_port || (192..=223).contains(&second);
    if rtcp {
        plan.rtcp.is_some()
    } else {
        plan.rtp.is_some()
    }
}

fn relay_one(
    relay: &mut RelayStream,
    sockets: &[UdpSocket; 4],
    now: Instant,
    at: Socket,
    src: SocketAddr,
    packet: &[u8],
) {
    let Verdict::Forward { via, to } = relay.on_packet(now, at, src, packet) else {
        return;
    };
    if let Some(out) = sockets.get(via.index()) {
        // A full send buffer drops the packet, as the network would; RTP does not wait.
        let _ = out.send_to(relay.outgoing(packet), to);
    }
}
