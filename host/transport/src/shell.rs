//! The loop that owns the engine: it reads the UDP sockets, takes what the stream connections
//! read, runs the engine's timers, applies the commands of the rest of the process, and writes
//! what the engine sends.

use crate::connections::{Connections, Writer};
use crate::current_input;
use crate::drain::{Drain, DrainStep};
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
}

pub struct ShellOptions {
    pub listeners: Vec<ListenerAddr>,
    pub max_message: usize,
    /// Media relay threads; `None` runs no relay (no media anchored).
    pub media_workers: Option<usize>,
    /// Accepted TCP connections: how many, from one address, and how soon the first message.
    pub tcp: TcpLimits,
    /// Set once a drain starts, for readers that must not wait on the engine (`/ready`).
    pub draining: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Limits on the TCP connections Sluice accepts.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub max_per_source: usize,
    pub first_message: std::time::Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 4096,
            max_per_source: 64,
            first_message: std::time::Duration::from_secs(10),
        }
    }
}

/// Bound sockets, ready to run.
pub struct Shell<H: Hooks> {
    engine: Engine<H>,
    max_message: usize,
    udp: UdpSockets,
    tcp: Vec<(SocketAddr, TcpListener)>,
    tcp_limits: TcpLimits,
    media: Option<(MediaRelay, UnboundedReceiver<MediaEvent>)>,
    draining: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<H: Hooks> Shell<H> {
    /// Bind every listener; fails (with the address) when one cannot be bound.
    pub async fn bind(engine: Engine<H>, opts: ShellOptions) -> io::Result<Shell<H>> {
        let mut udp = UdpSockets::new(opts.max_message);
        let mut tcp = Vec::new();
        for l in &opts.listeners {
            match l.transport {
                Transport::Udp => udp.bind(l.addr)?,
                Transport::Tcp => tcp.push((l.addr, stream::listen(l.addr)?)),
            }
            info!(transport = %l.transport, address = %l.addr, side = ?l.side, "listening");
        }
        let media = match opts.media_workers {
            Some(n) => {
                let (events, rx) = mpsc::unbounded_channel();
                let relay = MediaRelay::start(n, events)?;
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
        })
    }

    /// Run until a drain completes or the command senders are gone.
    pub async fn run(
        self,
        mut commands: mpsc::Receiver<Command>,
        mut changes: mpsc::Receiver<Change<H>>,
    ) -> io::Result<()> {
        let Shell {
            mut engine,
            max_message,
            mut udp,
            tcp,
            tcp_limits,
            media,
            draining,
        } = self;
        let (relay, mut media_events) = match media {
            Some((r, rx)) => (Some(r), Some(rx)),
            None => (None, None),
        };
        let relay = relay.as_ref();
        let (tx, mut rx) = mpsc::channel::<Incoming>(16 * 1024);
        let mut conns = Connections::default();
        let admission = std::sync::Arc::new(stream::Admission::new(tcp_limits));
        for (addr, listener) in tcp {
            tokio::spawn(stream::accept_loop(
                addr,
                listener,
                tx.clone(),
                (conns.ids(), admission.clone()),
                max_message,
            ));
        }
        let mut drain = Drain::default();
        // The trunks' agents (registration, keep-alive) start with the first input.
        engine.handle_timeout(std::time::Instant::now());
        flush(&mut engine, (&udp, relay), &mut conns, &tx, max_message).await;
        loop {
            let now = tokio::time::Instant::now();
            let wake = engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or(later(now, Duration::from_secs(3600)));
            let drain_wake = drain
                .wake()
                .unwrap_or(later(now, Duration::from_secs(3600)));
            tokio::select! {
                biased;
                i = udp.readable() => {
                    udp.read_batch(i, |flow, data| {
                        let _handling = current_input::handling(flow, data);
                        #[cfg(debug_assertions)]
                        current_input::panic_if_asked(data);
                        engine.handle_datagram(std::time::Instant::now(), flow, data);
                    });
                }
                msg = rx.recv() => {
                    // The shell holds a sender itself, so the channel never closes.
                    let Some(msg) = msg else { break };
                    let mut next = Some(msg);
                    for _ in 0..udp::BATCH {
                        let Some(m) = next.take() else { break };
                        if matches!(m, Incoming::Closed { .. }) {
                            // Write what is queued for the connection (a 400, say) first.
                            flush(&mut engine, (&udp, relay), &mut conns, &tx, max_message).await;
                        }
                        on_incoming(&mut engine, &mut conns, m);
                        next = rx.try_recv().ok();
                    }
                    if let Some(m) = next {
                        on_incoming(&mut engine, &mut conns, m);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    engine.handle_timeout(std::time::Instant::now());
                }
                _ = tokio::time::sleep_until(drain_wake), if drain.is_on() => {
                    // Calls hung up get their transactions' time to end (a CANCEL's 487, a
                    // BYE's 200): 64*T1.
                    let grace = engine.config().timers.timeout();
                    match drain.fire(tokio::time::Instant::now(), grace) {
                        DrainStep::HangUp => {
                            let keys = engine.call_keys();
                            info!(calls = keys.len(), "drain deadline reached, hanging up");
                            let now = std::time::Instant::now();
                            for k in keys {
                                engine.hang_up(now, k);
                            }
                        }
                        DrainStep::Stop => {
                            info!("drain finished");
                            flush(&mut engine, (&udp, relay), &mut conns, &tx, max_message).await;
                            return Ok(());
                        }
                    }
                }
                Some(ev) = next_media_event(&mut media_events) => {
                    engine.handle_media_event(std::time::Instant::now(), ev);
                }
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { break };
                    if matches!(cmd, Command::Drain { .. }) {
                        draining.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    on_command(&mut engine, &mut drain, cmd);
                }
                change = changes.recv() => {
                    let Some(Change(change, reply)) = change else { break };
                    let _ = reply.send(change(&mut engine));
                    // A new configuration's trunks start now.
                    engine.handle_timeout(std::time::Instant::now());
                }
            }
            engine.sync_metrics();
            flush(&mut engine, (&udp, relay), &mut conns, &tx, max_message).await;
            if drain.is_on() && engine.active_calls() == 0 {
                info!("drained: no calls left");
                return Ok(());
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
            }
        }
        Command::Bans(reply) => {
            let _ = reply.send(engine.bans(std::time::Instant::now()));
        }
        Command::LiftBans(ip, reply) => {
            let _ = reply.send(engine.lift_bans(ip, std::time::Instant::now()));
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
                trunks: engine.trunk_status(now),
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
        Incoming::Failed { id, remote } => {
            conns.remove(id);
            engine.handle_transport_error(std::time::Instant::now(), Transport::Tcp, remote);
        }
    }
}

/// Write everything the engine has to send.
async fn flush<H: Hooks>(
    engine: &mut Engine<H>,
    (udp, media): (&UdpSockets, Option<&MediaRelay>),
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
        };
        match flow.transport {
            Transport::Udp => udp.send(flow, &data).await,
            Transport::Tcp => {
                if let Err(data) = conns.send(flow, data) {
                    open(conns, flow, data, tx, max_message);
                }
            }
        }
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
    conns.add(id, flow.remote, writer.clone());
    let flow = Flow {
        conn: Some(id),
        ..flow
    };
    tokio::spawn(stream::connect(
        flow,
        (writer, queue, stop),
        tx.clone(),
        max_message,
    ));
}
