//! The loop that owns the engine: it reads the UDP sockets, takes what the stream connections
//! read, runs the engine's timers, applies the commands of the rest of the process, and writes
//! what the engine sends.

use crate::connections::{Connections, Writer};
use crate::current_input;
use crate::drain::{Drain, DrainStep};
use crate::handover::{
    next_forwarded, predecessor_gone, Handing, Inherited, Listening, Predecessor, SocketKind,
    Successor,
};
use crate::later;
use crate::rtp::MediaRelay;
use crate::stream::{self, Incoming};
use crate::udp::{self, UdpSockets};
use bytes::Bytes;
use sluice_b2bua::{
    CallInfo, Engine, EngineConfig, EngineStats, Hooks, ListenerAddr, Output, PluginStatus,
    TrunkStatus,
};
use sluice_media::MediaEvent;
use sluice_transaction::{Flow, Transport};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

/// Commands from the process (signals, admin API) to the engine task.
pub enum Command {
    /// Refuse new calls; exit once the calls in progress are over or `deadline` passes, then
    /// end the rest with BYE.
    Drain { deadline: Duration },
    /// A snapshot for the admin API.
    Status(oneshot::Sender<Status>),
    /// The flood guard's bans in force.
    Bans(oneshot::Sender<Vec<sluice_b2bua::Ban>>),
    /// Lift the ban on an address (every ban with `None`); answers how many were lifted.
    LiftBans(Option<std::net::IpAddr>, oneshot::Sender<usize>),
    /// An upgrade: the successor has the sockets and is ready. Stop reading them and answer
    /// what the successor must know; the calls in progress may go on for `deadline`.
    HandOver {
        deadline: Duration,
        reply: oneshot::Sender<sluice_b2bua::Handover>,
    },
    /// The successor got that and took over: serve what it forwards over `link` until the
    /// calls are over.
    HandedOver {
        link: std::os::unix::net::UnixStream,
    },
    /// The hand-over failed after this process stopped reading: read the sockets again.
    TakeBack,
}

/// A change applied to the engine on its own task, between two messages (a new configuration,
/// a new plugin generation, prepared elsewhere).
pub type EngineChange<H> = Box<dyn FnOnce(&mut Engine<H>) -> Result<String, String> + Send>;

/// A change and where its outcome goes.
pub struct Change<H: Hooks>(
    pub EngineChange<H>,
    pub oneshot::Sender<Result<String, String>>,
);

/// What the engine task reports to the admin API.
#[derive(Debug, Clone)]
pub struct Status {
    pub draining: bool,
    pub stats: EngineStats,
    pub calls: Vec<CallInfo>,
    pub calls_per_trunk: HashMap<String, usize>,
    pub config: EngineConfig,
    pub plugins: Vec<PluginStatus>,
    pub trunks: Vec<TrunkStatus>,
    /// An upgrade's old process still finishes its calls.
    pub predecessor: bool,
}

pub struct ShellOptions {
    pub listeners: Vec<ListenerAddr>,
    pub max_message: usize,
    /// Media relay threads; `None` runs no relay (no media anchored).
    pub media_workers: Option<usize>,
    /// The kernel fast path the relay threads hand settled streams to, when it is loaded.
    pub media_kernel: Option<Arc<sluice_media_kernel::KernelPath>>,
    /// Accepted TCP connections: how many, from one address, and how soon the first message.
    pub tcp: TcpLimits,
    /// Set once a drain starts, for readers that must not wait on the engine (`/ready`).
    pub draining: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Certificates for STIR/SHAKEN verification.
    pub certificates: Option<Arc<dyn CertificateSource>>,
    /// SIP over TLS: the listeners' certificate, the verification of TLS destinations.
    pub tls: Option<crate::tls::TlsContext>,
}

/// Limits on the TCP connections Sluice accepts.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub max_per_source: usize,
    pub first_message: std::time::Duration,
    /// Connections Sluice opened are pinged after this long idle; `None`: never.
    pub keepalive: Option<std::time::Duration>,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 4096,
            max_per_source: 64,
            first_message: std::time::Duration::from_secs(10),
            keepalive: Some(std::time::Duration::from_secs(90)),
        }
    }
}

/// Bound sockets, ready to run.
pub struct Shell<H: Hooks> {
    engine: Engine<H>,
    max_message: usize,
    udp: UdpSockets,
    /// Stream listeners: address, socket, and whether TLS runs on it.
    tcp: Vec<(SocketAddr, TcpListener, bool)>,
    tcp_limits: TcpLimits,
    media: Option<(MediaRelay, UnboundedReceiver<MediaEvent>)>,
    draining: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The process this one took over from (an upgrade), while it finishes its calls.
    predecessor: Option<Predecessor>,
    certificates: Option<Arc<dyn CertificateSource>>,
    tls: Option<crate::tls::TlsContext>,
}

impl<H: Hooks> Shell<H> {
    /// Bind every listener, or take it from `inherited` (an upgrade's predecessor had it);
    /// fails (with the address) when one cannot be bound.
    pub async fn bind(
        engine: Engine<H>,
        opts: ShellOptions,
        inherited: &mut Inherited,
    ) -> io::Result<Shell<H>> {
        let mut udp = UdpSockets::new(opts.max_message);
        let mut tcp = Vec::new();
        for l in &opts.listeners {
            let kind = match l.transport {
                Transport::Udp => SocketKind::SipUdp,
                Transport::Tcp => SocketKind::SipTcp,
                Transport::Tls => SocketKind::SipTls,
            };
            if l.transport == Transport::Tls && !opts.tls.as_ref().is_some_and(|t| t.serves()) {
                return Err(io::Error::other(format!(
                    "the TLS listener {} has no certificate ([tls] certificate and key)",
                    l.addr
                )));
            }
            let taken = inherited.take(kind, l.addr);
            let from = if taken.is_some() {
                "predecessor"
            } else {
                "bound"
            };
            match (l.transport, taken) {
                (Transport::Udp, Some(fd)) => udp.adopt(l.addr, fd)?,
                (Transport::Udp, None) => udp.bind(l.addr)?,
                (Transport::Tcp, Some(fd)) => tcp.push((l.addr, stream::adopt(fd)?, false)),
                (Transport::Tcp, None) => tcp.push((l.addr, stream::listen(l.addr)?, false)),
                (Transport::Tls, Some(fd)) => tcp.push((l.addr, stream::adopt(fd)?, true)),
                (Transport::Tls, None) => tcp.push((l.addr, stream::listen(l.addr)?, true)),
            }
            info!(transport = %l.transport, address = %l.addr, side = ?l.side, from, "listening");
        }
        let media = match opts.media_workers {
            Some(n) => {
                let (events, rx) = mpsc::unbounded_channel();
                let relay = MediaRelay::start(n, events, opts.media_kernel.clone())?;
                info!(workers = n.max(1), "media relay started");
                Some((relay, rx))
            }
            None => None,
        };
        Ok(Shell {
            engine,
            max_message: opts.max_message,
            udp,
            tcp,
            tcp_limits: opts.tcp,
            media,
            draining: opts.draining,
            predecessor: None,
            certificates: opts.certificates,
            tls: opts.tls,
        })
    }

    /// Duplicates of the listening sockets, to hand to a successor.
    pub fn listening(&self) -> io::Result<Vec<Listening>> {
        let mut out = self.udp.listening()?;
        for (addr, l, tls) in &self.tcp {
            out.push(Listening::of(stream_kind(*tls), *addr, l)?);
        }
        Ok(out)
    }

    /// Take over the calls of the process that handed over `h` (it listens on `link`).
    pub fn adopt(&mut self, h: sluice_b2bua::Handover, link: std::os::unix::net::UnixStream) {
        info!(
            calls = h.call_ids.len() / 2,
            "taking over: the old process finishes its calls, this one takes new calls"
        );
        self.engine.adopt(h, std::time::Instant::now());
        match Predecessor::start(link) {
            Ok(p) => self.predecessor = Some(p),
            Err(e) => {
                tracing::warn!("the old process cannot be reached: {e}");
                self.engine.predecessor_gone();
            }
        }
    }

    /// Run until a drain completes or the command senders are gone.
    pub async fn run(
        self,
        mut commands: mpsc::Receiver<Command>,
        mut changes: mpsc::Receiver<Change<H>>,
    ) -> io::Result<()> {
        let (mut s, mut rx, mut media_events) = Running::new(self)?;
        s.accept_again()?;
        // The trunks' agents (registration, keep-alive) start with the first input.
        s.engine.handle_timeout(std::time::Instant::now());
        s.flush().await;
        loop {
            let now = tokio::time::Instant::now();
            let wake = s
                .engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or(later(now, Duration::from_secs(3600)));
            let drain_wake = s
                .drain
                .wake()
                .unwrap_or(later(now, Duration::from_secs(3600)));
            tokio::select! {
                biased;
                i = s.udp.readable(), if s.handing.reading() => {
                    let engine = &mut s.engine;
                    s.udp.read_batch(i, |flow, data| {
                        let _handling = current_input::handling(flow, data);
                        #[cfg(debug_assertions)]
                        current_input::panic_if_asked(data);
                        engine.handle_datagram(std::time::Instant::now(), flow, data);
                    });
                }
                msg = rx.recv() => {
                    // The shell holds a sender itself, so the channel never closes.
                    let Some(msg) = msg else { break };
                    s.on_incoming_batch(msg, &mut rx).await;
                }
                _ = tokio::time::sleep_until(wake) => {
                    s.engine.handle_timeout(std::time::Instant::now());
                }
                _ = tokio::time::sleep_until(drain_wake), if s.drain.is_on() => {
                    if s.on_drain_timer() {
                        info!("drain finished");
                        s.flush().await;
                        return Ok(());
                    }
                }
                Some(ev) = next_media_event(&mut media_events) => {
                    s.engine.handle_media_event(std::time::Instant::now(), ev);
                }
                f = next_forwarded(&mut s.handing) => s.on_forwarded(f)?,
                _ = predecessor_gone(&mut s.predecessor) => {
                    info!("the old process finished its calls: every message is this process's");
                    s.predecessor = None;
                    s.engine.predecessor_gone();
                }
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { break };
                    s.on_command(cmd)?;
                }
                change = changes.recv() => {
                    let Some(Change(change, reply)) = change else { break };
                    let _ = reply.send(change(&mut s.engine));
                    // A new configuration's trunks start now.
                    s.engine.handle_timeout(std::time::Instant::now());
                }
            }
            s.engine.sync_metrics();
            s.flush().await;
            if s.finished() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The loop's state, with the channel the stream connections send on and the media relay's
/// reports (each read by a branch of the loop of its own).
type Started<H> = (
    Running<H>,
    mpsc::Receiver<Incoming>,
    Option<UnboundedReceiver<MediaEvent>>,
);

/// The stream listeners' descriptors and what accepting on them needs.
struct StreamListeners {
    fds: Vec<Listening>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    admission: Arc<stream::Admission>,
}

/// The running loop's state: the engine and where its outputs go, the stream connections, and
/// how far an upgrade or a drain has got.
struct Running<H: Hooks> {
    engine: Engine<H>,
    udp: UdpSockets,
    relay: Option<MediaRelay>,
    /// The process this one took over from (an upgrade), while it finishes its calls.
    predecessor: Option<Predecessor>,
    certificates: Option<Arc<dyn CertificateSource>>,
    conns: Connections,
    /// What the stream connections and certificate fetches send to the loop.
    tx: mpsc::Sender<Incoming>,
    max_message: usize,
    handing: Handing,
    drain: Drain,
    draining: Arc<std::sync::atomic::AtomicBool>,
    listeners: StreamListeners,
    accept_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<H: Hooks> Running<H> {
    /// The loop's state from the bound shell; the channel the stream connections send on,
    /// and the media relay's reports.
    fn new(shell: Shell<H>) -> io::Result<Started<H>> {
        let Shell {
            engine,
            max_message,
            udp,
            tcp,
            tcp_limits,
            media,
            draining,
            predecessor,
            certificates,
            tls,
        } = shell;
        let (relay, media_events) = match media {
            Some((r, rx)) => (Some(r), Some(rx)),
            None => (None, None),
        };
        let (tx, rx) = mpsc::channel::<Incoming>(16 * 1024);
        let mut conns = Connections::default();
        let acceptor = tls.as_ref().and_then(crate::tls::TlsContext::acceptor);
        conns.tls = tls;
        conns.keepalive = tcp_limits.keepalive;
        // The listeners' descriptors stay, so that accepting can stop (an upgrade) and start
        // again (a failed one).
        let fds = tcp
            .iter()
            .map(|(a, l, tls)| Listening::of(stream_kind(*tls), *a, l))
            .collect::<io::Result<Vec<_>>>()?;
        drop(tcp);
        let listeners = StreamListeners {
            fds,
            acceptor,
            admission: Arc::new(stream::Admission::new(tcp_limits)),
        };
        let running = Running {
            engine,
            udp,
            relay,
            predecessor,
            certificates,
            conns,
            tx,
            max_message,
            handing: Handing::No,
            drain: Drain::default(),
            draining,
            listeners,
            accept_tasks: Vec::new(),
        };
        Ok((running, rx, media_events))
    }

    /// Write everything the engine has to send.
    async fn flush(&mut self) {
        let outlets = (
            &self.udp,
            self.relay.as_ref(),
            self.predecessor.as_ref(),
            self.certificates.as_ref(),
        );
        flush(
            &mut self.engine,
            outlets,
            &mut self.conns,
            &self.tx,
            self.max_message,
        )
        .await;
    }

    /// Accept on every stream listener (again).
    fn accept_again(&mut self) -> io::Result<()> {
        let l = &self.listeners;
        self.accept_tasks = l
            .fds
            .iter()
            .map(|fd| {
                let listener = stream::adopt(fd.fd.try_clone()?)?;
                let tls = (fd.kind == SocketKind::SipTls)
                    .then(|| l.acceptor.clone())
                    .flatten();
                Ok(tokio::spawn(stream::accept_loop(
                    (fd.addr, tls),
                    listener,
                    self.tx.clone(),
                    (self.conns.ids(), l.admission.clone()),
                    self.max_message,
                )))
            })
            .collect::<io::Result<_>>()?;
        Ok(())
    }

    /// A datagram the new process forwarded during an upgrade, or `None`: the new process
    /// is gone.
    fn on_forwarded(&mut self, f: Option<(Flow, Vec<u8>)>) -> io::Result<()> {
        match f {
            Some((flow, data)) => {
                let _handling = current_input::handling(flow, &data);
                self.engine
                    .handle_datagram(std::time::Instant::now(), flow, &data);
                Ok(())
            }
            None => {
                // The new process exited (stopped, or crashed): nobody else reads the
                // sockets. Read them again to finish this process's calls; new calls are
                // refused as in a drain.
                tracing::error!(
                    calls = self.engine.active_calls(),
                    "the new process is gone: this process reads its sockets again to finish \
                     its calls, refusing new ones"
                );
                self.read_again_draining()
            }
        }
    }

    /// Whether a drain (or a hand-over) has nothing left to wait for.
    fn finished(&self) -> bool {
        if !(self.drain.is_on() && self.engine.active_calls() == 0 && self.handing.may_exit()) {
            return false;
        }
        if self.handing.handed() {
            info!("handed over and no call left: exiting");
        } else {
            info!("drained: no calls left");
        }
        true
    }

    /// An upgrade fell through after this process stopped reading its sockets: read them
    /// again and accept again, to finish this process's calls, refusing new ones.
    fn read_again_draining(&mut self) -> io::Result<()> {
        self.handing = Handing::No;
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(until) = self.drain.wake() {
            self.engine.drain_until(until.into_std());
        }
        self.accept_again()
    }

    /// What the stream connections read, `first` and up to a batch more that are queued.
    async fn on_incoming_batch(&mut self, first: Incoming, rx: &mut mpsc::Receiver<Incoming>) {
        let mut next = Some(first);
        for _ in 0..udp::BATCH {
            let Some(m) = next.take() else { break };
            if matches!(m, Incoming::Closed { .. }) {
                // Write what is queued for the connection (a 400, say) first.
                self.flush().await;
            }
            on_incoming(&mut self.engine, &mut self.conns, m);
            next = rx.try_recv().ok();
        }
        if let Some(m) = next {
            on_incoming(&mut self.engine, &mut self.conns, m);
        }
    }

    /// The drain's deadline passed: hang up what is left, or (after the grace) stop. Whether
    /// to stop.
    fn on_drain_timer(&mut self) -> bool {
        // Calls hung up get their transactions' time to end (a CANCEL's 487, a BYE's 200):
        // 64*T1.
        let grace = self.engine.config().timers.timeout();
        match self.drain.fire(tokio::time::Instant::now(), grace) {
            DrainStep::HangUp => {
                let keys = self.engine.call_keys();
                info!(calls = keys.len(), "drain deadline reached, hanging up");
                let now = std::time::Instant::now();
                for k in keys {
                    self.engine.hang_up(now, k);
                }
                false
            }
            DrainStep::Stop => true,
        }
    }

    /// A command of the process: the upgrade's steps here, the rest in [`on_command`].
    fn on_command(&mut self, cmd: Command) -> io::Result<()> {
        match cmd {
            Command::HandOver { deadline, reply } => {
                for t in self.accept_tasks.drain(..) {
                    t.abort();
                }
                let h = self.engine.hand_over(std::time::Instant::now());
                self.handing = Handing::Pending;
                self.drain.start(tokio::time::Instant::now(), deadline);
                let _ = reply.send(h);
            }
            Command::HandedOver { link } => match Successor::start(link) {
                Ok(s) => {
                    info!(
                        calls = self.engine.active_calls(),
                        "handed over: the new process reads the sockets; this one finishes \
                         its calls"
                    );
                    self.handing = Handing::Done(s);
                }
                Err(e) => {
                    tracing::error!("the link to the new process failed: {e}");
                    self.read_again_draining()?;
                }
            },
            Command::TakeBack => {
                tracing::error!("the upgrade failed: this process reads its sockets again");
                self.handing = Handing::No;
                self.drain = Drain::default();
                self.engine.take_back();
                self.accept_again()?;
            }
            cmd => {
                if matches!(cmd, Command::Drain { .. }) {
                    self.draining
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                on_command(&mut self.engine, &mut self.drain, cmd);
            }
        }
        Ok(())
    }
}

fn on_command<H: Hooks>(engine: &mut Engine<H>, drain: &mut Drain, cmd: Command) {
    match cmd {
        Command::Drain { deadline } => {
            if drain.start(tokio::time::Instant::now(), deadline) {
                info!(
                    calls = engine.active_calls(),
                    ?deadline,
                    "draining: new calls are refused"
                );
                let now = std::time::Instant::now();
                engine.drain_until(sluice_transaction::after(now, deadline));
                engine.unregister_trunks(std::time::Instant::now());
            } else if let Some(until) = drain.shorten(tokio::time::Instant::now(), deadline) {
                // A stop during a drain (or an upgrade's tail): the sooner deadline holds.
                info!(calls = engine.active_calls(), ?deadline, "draining");
                engine.drain_until(until.into_std());
            }
        }
        Command::Bans(reply) => {
            let _ = reply.send(engine.bans(std::time::Instant::now()));
        }
        Command::LiftBans(ip, reply) => {
            let _ = reply.send(engine.lift_bans(ip, std::time::Instant::now()));
        }
        Command::HandOver { .. } | Command::HandedOver { .. } | Command::TakeBack => {}
        Command::Status(reply) => {
            let now = std::time::Instant::now();
            let _ = reply.send(Status {
                draining: engine.is_draining(),
                stats: engine.stats(),
                calls: engine.calls_snapshot(now),
                calls_per_trunk: engine.calls_per_trunk(),
                config: engine.config().clone(),
                plugins: engine.hooks().status(),
                trunks: engine.trunk_status(now),
                predecessor: engine.has_predecessor(),
            });
        }
    }
}

fn on_incoming<H: Hooks>(engine: &mut Engine<H>, conns: &mut Connections, msg: Incoming) {
    match msg {
        Incoming::Packet { flow, data } => {
            let _handling = current_input::handling(flow, &data);
            #[cfg(debug_assertions)]
            current_input::panic_if_asked(&data);
            engine.handle_datagram(std::time::Instant::now(), flow, &data);
        }
        Incoming::Unframed {
            flow,
            head,
            status,
            reason,
        } => {
            let _handling = current_input::handling(flow, &head);
            engine.handle_unframed(std::time::Instant::now(), flow, &head, (status, reason));
        }
        Incoming::Connected { id, remote, writer } => conns.add(id, remote, writer),
        Incoming::Closed { id } => conns.remove(id),
        Incoming::Failed { id, flow } => {
            conns.remove(id);
            engine.handle_transport_error(std::time::Instant::now(), flow.transport, flow.remote);
        }
        Incoming::Certificate { id, result } => {
            if let Err(e) = &result {
                tracing::info!(call = id, "certificate fetch failed: {e}");
            }
            let fetched = result.as_deref().map_err(|_| ());
            engine.handle_certificate(std::time::Instant::now(), id, fetched);
        }
    }
}

/// Where the certificates of STIR/SHAKEN verification come from (HTTPS, with a cache): the
/// binary provides it; the engine never waits on it, the call does.
pub trait CertificateSource: Send + Sync {
    fn fetch(
        &self,
        url: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, String>> + Send>>;
}

/// Start fetching `url` for call `id`; the result comes back as an [`Incoming::Certificate`].
fn fetch_certificate(
    source: Option<&Arc<dyn CertificateSource>>,
    tx: &mpsc::Sender<Incoming>,
    id: u64,
    url: String,
) {
    let tx = tx.clone();
    let fetch = source.map(|s| s.fetch(url));
    tokio::spawn(async move {
        let result = match fetch {
            Some(f) => f.await,
            None => Err("no certificate source".into()),
        };
        let _ = tx.send(Incoming::Certificate { id, result }).await;
    });
}

/// Where the engine's outputs go besides the SIP sockets' connections.
type Outlets<'a> = (
    &'a UdpSockets,
    Option<&'a MediaRelay>,
    Option<&'a Predecessor>,
    Option<&'a Arc<dyn CertificateSource>>,
);

/// Write everything the engine has to send.
async fn flush<H: Hooks>(
    engine: &mut Engine<H>,
    (udp, media, predecessor, certificates): Outlets<'_>,
    conns: &mut Connections,
    tx: &mpsc::Sender<Incoming>,
    max_message: usize,
) {
    while let Some(out) = engine.poll_output() {
        let (flow, data) = match out {
            Output::Transmit { flow, data } => (flow, data),
            Output::Media(op) => {
                if let Some(failed) = media.and_then(|relay| relay.apply(op)) {
                    engine.handle_media_event(std::time::Instant::now(), failed);
                }
                continue;
            }
            Output::Forward { flow, data } => {
                if let Some(p) = predecessor {
                    p.forward(flow, &data);
                }
                continue;
            }
            Output::FetchCertificate { id, url } => {
                fetch_certificate(certificates, tx, id, url);
                continue;
            }
        };
        match flow.transport {
            Transport::Udp => udp.send(flow, &data).await,
            Transport::Tcp | Transport::Tls => {
                if let Err(data) = conns.send(flow, data) {
                    open(conns, flow, data, tx, max_message);
                }
            }
        }
    }
}

/// What a stream listener is, for an upgrade's hand-over.
fn stream_kind(tls: bool) -> SocketKind {
    if tls {
        SocketKind::SipTls
    } else {
        SocketKind::SipTcp
    }
}

/// The media relay's next report; never, without a relay.
async fn next_media_event(rx: &mut Option<UnboundedReceiver<MediaEvent>>) -> Option<MediaEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Open a connection for `data` from the listener's address, and queue the data on it.
fn open(
    conns: &mut Connections,
    flow: Flow,
    data: Bytes,
    tx: &mpsc::Sender<Incoming>,
    max_message: usize,
) {
    let id = conns.new_id();
    let (writer, queue, stop) = Writer::pair();
    let _ = writer.send(data);
    conns.add(id, (flow.transport, flow.remote), writer.clone());
    let flow = Flow {
        conn: Some(id),
        ..flow
    };
    tokio::spawn(stream::connect(
        flow,
        (writer, queue, stop),
        tx.clone(),
        (max_message, conns.tls.clone(), conns.keepalive),
    ));
}
