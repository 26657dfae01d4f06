//! A relay worker's share of the media kernel fast path: which of its streams' directions
//! the kernel relays now ([`Worker::settle`]), what the kernel counted of them
//! ([`Kernel::take_in`]), and when a direction goes back to the worker. The decisions come
//! from the sans-IO relay ([`RelayStream::offload`], [`RelayStream::absorb`]); the table is
//! `sluice_media_kernel`'s.

use super::{Entry, Worker};
use sluice_media::{Component, Offload, RelayStream, Relayed, Socket};
use sluice_media_kernel::{monotonic_ns, Direction, KernelPath, Key, Route, Table};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::debug;

/// Packets the kernel fast path relayed (RTP and RTCP), and directions it relays now.
pub(super) const KERNEL_PACKETS: &str = "sluice_media_kernel_packets_total";
pub(super) const KERNEL_DIRECTIONS: &str = "sluice_media_kernel_directions";

/// A worker's share of the kernel fast path.
pub(super) struct Kernel {
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
pub(super) struct Offloads {
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
impl Worker {
    /// Bring the kernel's table in line with what the stream's relay says may be offloaded
    /// now: a direction that changed is taken in and replaced, one that may no longer be is
    /// taken out (its next packets reach the relay again).
    pub(super) fn settle(&mut self, slot: usize) {
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
    pub(super) fn unload(&mut self, slot: usize) {
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
    /// A worker's own handle on the kernel's tables.
    pub(super) fn new(path: &Arc<KernelPath>) -> Result<Kernel, String> {
        Ok(Kernel {
            table: path.table()?,
            path: path.clone(),
            packets: metrics::counter!(KERNEL_PACKETS),
            directions: metrics::gauge!(KERNEL_DIRECTIONS),
        })
    }

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
    pub(super) fn before_relay(
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
    pub(super) fn take_in(&mut self, e: &mut Entry, i: usize) {
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
