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
//!
//! With the media kernel fast path, each worker also hands its streams' settled directions
//! to the kernel and takes back what it counted ([`kernel`]).

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use slab::Slab;
use sluice_media::{call_of, Local, MediaEvent, MediaOp, RelayStream, Socket, StreamId, Verdict};
use sluice_media_kernel::KernelPath;
use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, warn};

mod kernel;
use kernel::{Kernel, Offloads};

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
            let kernel = kernel.as_ref().and_then(|path| match Kernel::new(path) {
                Ok(k) => Some(k),
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
