//! The media relay's kernel fast path. Once the userspace relay has settled a direction of a
//! stream (both ends plain RTP, the sender latched or signalled, the destination known, not on
//! hold), a relay worker writes it into a kernel table, and a tc ingress program
//! (`bpf/forward.bpf.c`) relays its packets from then on: it rewrites the addresses and ports,
//! fixes the checksums and sends the packet out of the device that holds Sluice's address on
//! the far side (the kernel routes it and fills in the link-layer addresses; a peer on the same
//! host gets it back through the stack), and counts it as the userspace relay would (packets,
//! bytes, RFC 3550 loss and jitter). The relay process is not woken for those packets.
//!
//! Everything else still reaches the userspace relay: the first packets of a stream, other
//! senders (strangers are dropped there, a NAT that rebinds is latched there), SRTP, IPv6
//! extension headers, anything that is not RTP/RTCP version 2. The userspace relay reads each entry back to
//! publish its counters, to know when the stream was last heard, and before it changes or
//! removes the entry.
//!
//! - [`KernelPath::load`] loads the program, sizes its table and attaches it to the ingress of
//!   the devices that hold the media addresses; it needs `CAP_BPF` and `CAP_NET_ADMIN`. The
//!   program is attached through a link that the process owns: it goes when Sluice exits.
//! - [`Table`] is one worker's handle on the table (each has its own, nothing is locked).
//! - [`Direction`] is what a worker installs; [`FwdKey`] and [`FwdValue`] (for IPv4 and IPv6
//!   addresses) mirror the C layouts (their sizes are checked on both sides).

use aya::maps::{HashMap, Map, MapData};
use aya::programs::{tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType};
use sluice_media::RtpRaw;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;

/// Where a packet arrives and who sent it, for addresses of `N` bytes (4: IPv4, 16: IPv6).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FwdKey<const N: usize> {
    /// Sluice's address and port (network order).
    pub local_ip: [u8; N],
    pub src_ip: [u8; N],
    pub local_port: [u8; 2],
    pub src_port: [u8; 2],
}

/// Where packets of one kind (RTP or RTCP) go.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwdRoute<const N: usize> {
    pub src_ip: [u8; N],
    pub dst_ip: [u8; N],
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    /// The device it leaves by; 0: packets of this kind go to the userspace relay.
    pub ifindex: u32,
}

/// One direction of a stream, and what the kernel counted of it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwdValue<const N: usize> {
    pub rtp: FwdRoute<N>,
    pub rtcp: FwdRoute<N>,
    /// `CLOCK_MONOTONIC` nanoseconds that arrival times count from (jitter).
    pub epoch_ns: u64,
    pub clock_rate: u32,
    /// 1: the packets arrive on an RTCP port (all of them are RTCP).
    pub rtcp_socket: u32,
    pub packets: u64,
    pub bytes: u64,
    pub rtcp_packets: u64,
    /// `CLOCK_MONOTONIC` nanoseconds of the last packet relayed; 0 for none yet.
    pub last_ns: u64,
    /// RFC 3550 receiver statistics, as [`sluice_media::RtpStats`] keeps them.
    pub stats: RtpRaw,
}

const _: () = assert!(std::mem::size_of::<FwdKey<4>>() == 12);
const _: () = assert!(std::mem::size_of::<FwdRoute<4>>() == 16);
const _: () = assert!(std::mem::size_of::<RtpRaw>() == 40);
const _: () = assert!(std::mem::size_of::<FwdValue<4>>() == 120);
const _: () = assert!(std::mem::size_of::<FwdKey<16>>() == 36);
const _: () = assert!(std::mem::size_of::<FwdRoute<16>>() == 40);
const _: () = assert!(std::mem::size_of::<FwdValue<16>>() == 168);

// SAFETY: `aya::Pod` lets aya copy these types to and from the kernel as bytes. For the two
// address sizes implemented here (4 and 16 bytes), each is `repr(C)`, `Copy`, made only of
// integers and byte arrays (every bit pattern is a valid value), including the embedded
// `RtpRaw` (`repr(C)`, integers only), and laid out without padding (the sizes asserted above
// are the sums of the fields; the C side asserts the same sizes), so no byte is uninitialised
// or invalid either way.
unsafe impl aya::Pod for FwdKey<4> {}
// SAFETY: as for `FwdKey<4>` above.
unsafe impl aya::Pod for FwdValue<4> {}
// SAFETY: as for `FwdKey<4>` above.
unsafe impl aya::Pod for FwdKey<16> {}
// SAFETY: as for `FwdKey<4>` above.
unsafe impl aya::Pod for FwdValue<16> {}

/// An address of `N` bytes, network order, and its port.
trait Family<const N: usize> {
    fn parts(a: SocketAddr) -> Option<([u8; N], [u8; 2])>;
}

struct V4;
struct V6;

impl Family<4> for V4 {
    fn parts(a: SocketAddr) -> Option<([u8; 4], [u8; 2])> {
        let ip = match a.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => ip.to_ipv4_mapped()?,
        };
        Some((ip.octets(), a.port().to_be_bytes()))
    }
}

impl Family<16> for V6 {
    fn parts(a: SocketAddr) -> Option<([u8; 16], [u8; 2])> {
        match a.ip() {
            IpAddr::V6(ip) if ip.to_ipv4_mapped().is_none() => {
                Some((ip.octets(), a.port().to_be_bytes()))
            }
            _ => None,
        }
    }
}

/// Where Sluice sends packets of one kind: from its `from`, to `to`, out of device `ifindex`
/// (see [`KernelPath::device`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub ifindex: u32,
}

/// A direction for the kernel to relay: packets from `src` arriving at Sluice's `local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    pub local: SocketAddr,
    pub src: SocketAddr,
    /// RTP's route; `None` leaves RTP to the relay.
    pub rtp: Option<Route>,
    pub rtcp: Option<Route>,
    /// `CLOCK_MONOTONIC` nanoseconds that arrival times count from, and their clock rate.
    pub epoch_ns: u64,
    pub clock_rate: u32,
    /// The packets arrive on an RTCP port.
    pub rtcp_socket: bool,
    /// The sender's statistics so far, for the kernel to carry on.
    pub stats: RtpRaw,
}

impl Direction {
    /// The entry for addresses of `N` bytes; `None` when an address is of the other family.
    fn entry<const N: usize, F: Family<N>>(&self) -> Option<(FwdKey<N>, FwdValue<N>)> {
        let (local_ip, local_port) = F::parts(self.local)?;
        let (src_ip, src_port) = F::parts(self.src)?;
        let route = |r: Option<Route>| match r {
            None => Some(FwdRoute {
                src_ip: [0; N],
                dst_ip: [0; N],
                src_port: [0; 2],
                dst_port: [0; 2],
                ifindex: 0,
            }),
            Some(r) => {
                let ((src_ip, src_port), (dst_ip, dst_port)) = (F::parts(r.from)?, F::parts(r.to)?);
                Some(FwdRoute {
                    src_ip,
                    dst_ip,
                    src_port,
                    dst_port,
                    ifindex: r.ifindex,
                })
            }
        };
        let key = FwdKey {
            local_ip,
            src_ip,
            local_port,
            src_port,
        };
        let value = FwdValue {
            rtp: route(self.rtp)?,
            rtcp: route(self.rtcp)?,
            epoch_ns: self.epoch_ns,
            clock_rate: self.clock_rate,
            rtcp_socket: u32::from(self.rtcp_socket),
            packets: 0,
            bytes: 0,
            rtcp_packets: 0,
            last_ns: 0,
            stats: self.stats,
        };
        Some((key, value))
    }
}

/// A direction in the kernel's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    V4(FwdKey<4>),
    V6(FwdKey<16>),
}

/// What the kernel counted of a direction since it was installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
    pub rtcp_packets: u64,
    /// `CLOCK_MONOTONIC` nanoseconds of the last packet relayed; 0 for none yet.
    pub last_ns: u64,
    pub stats: RtpRaw,
}

impl<const N: usize> From<FwdValue<N>> for Counts {
    fn from(v: FwdValue<N>) -> Counts {
        Counts {
            packets: v.packets,
            bytes: v.bytes,
            rtcp_packets: v.rtcp_packets,
            last_ns: v.last_ns,
            stats: v.stats,
        }
    }
}

/// The program, loaded and attached. Dropping it detaches the program and frees the table.
pub struct KernelPath {
    /// The IPv4 and the IPv6 table.
    maps: (MapData, MapData),
    /// The addresses whose streams the program can relay, and the index of the device that
    /// holds each (the program is attached to its ingress).
    covered: Vec<(IpAddr, u32)>,
    /// The devices it is attached to, for the start-up log line.
    pub devices: Vec<String>,
    /// Owns the program and its links.
    _ebpf: aya::Ebpf,
}

impl std::fmt::Debug for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPath")
            .field("covered", &self.covered)
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

#[cfg(sluice_bpf_object)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/forward.bpf.o"));
#[cfg(not(sluice_bpf_object))]
static OBJECT: &[u8] = &[];

impl KernelPath {
    /// Load the program with room for `max_entries` directions, and attach it to the ingress
    /// of the devices that hold `binds` (the media relay's addresses). An error says why the
    /// fast path is not available.
    pub fn load(binds: &[IpAddr], max_entries: u32) -> Result<KernelPath, String> {
        if OBJECT.is_empty() {
            return Err(
                "this build has no kernel fast path (clang was not found when Sluice was built)"
                    .into(),
            );
        }
        if !privileged() {
            return Err(
                "Sluice lacks CAP_BPF and CAP_NET_ADMIN (run it as root, or grant them)".into(),
            );
        }
        let targets = devices_of(binds)?;
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries("SLUICE_FWD", max_entries.max(1))
            .map_max_entries("SLUICE_FWD6", max_entries.max(1))
            .load(OBJECT)
            .map_err(|e| format!("cannot load the program: {e}"))?;
        let program: &mut SchedClassifier = ebpf
            .program_mut("media_forward")
            .ok_or("the program is missing from its object")?
            .try_into()
            .map_err(|e| format!("the program is not a tc classifier: {e}"))?;
        program
            .load()
            .map_err(|e| format!("the kernel refused the program: {e}"))?;
        let mut devices: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        devices.sort();
        devices.dedup();
        for d in &devices {
            // Through a tcx link (kernel 6.6 and later) only: the process owns it, so the
            // program goes when Sluice exits, even on a crash. (The older netlink filters
            // would outlive the process, still relaying from a table no one updates.)
            program
                .attach_with_options(
                    d,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(|e| {
                    format!("cannot attach to the ingress of {d} (tcx links need Linux 6.6 or later): {e}")
                })?;
        }
        let mut table = |name: &str| match ebpf.take_map(name) {
            Some(Map::HashMap(m)) => Ok(m),
            _ => Err(format!(
                "the table {name} is missing from the program's object"
            )),
        };
        let maps = (table("SLUICE_FWD")?, table("SLUICE_FWD6")?);
        Ok(KernelPath {
            maps,
            covered: targets.into_iter().map(|t| (t.ip, t.index)).collect(),
            devices,
            _ebpf: ebpf,
        })
    }

    /// The index of the device that holds Sluice's address `local`, when the program relays
    /// packets arriving there (and can send packets from there); `None` otherwise.
    pub fn device(&self, local: IpAddr) -> Option<u32> {
        let local = local.to_canonical();
        self.covered
            .iter()
            .find(|(c, _)| *c == local)
            .map(|(_, i)| *i)
    }

    /// A handle on the tables for one worker.
    pub fn table(&self) -> Result<Table, String> {
        Ok(Table {
            v4: share(&self.maps.0)?,
            v6: share(&self.maps.1)?,
        })
    }
}

/// A second handle on a table (a duplicate of its descriptor).
fn share<K: aya::Pod, V: aya::Pod>(map: &MapData) -> Result<HashMap<MapData, K, V>, String> {
    let fd = map
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot share the table: {e}"))?;
    let data = MapData::from_fd(fd).map_err(|e| format!("cannot share the table: {e}"))?;
    HashMap::try_from(Map::HashMap(data)).map_err(|e| format!("the table has another layout: {e}"))
}

/// A media address and the device that holds it.
struct Target {
    ip: IpAddr,
    name: String,
    index: u32,
}

/// The devices that hold the addresses among `binds`.
fn devices_of(binds: &[IpAddr]) -> Result<Vec<Target>, String> {
    let interfaces =
        if_addrs::get_if_addrs().map_err(|e| format!("cannot list the network devices: {e}"))?;
    let mut out = Vec::new();
    for bind in binds {
        let ip = bind.to_canonical();
        if ip.is_unspecified() {
            return Err(format!(
                "the media relay binds {ip}: the kernel fast path needs the address it receives on (set media.internal.bind and media.external.bind)"
            ));
        }
        let device = interfaces
            .iter()
            // The whole of 127.0.0.0/8 is the loopback device's, whatever address it lists.
            .find(|i| i.ip() == ip || (ip.is_loopback() && i.is_loopback()))
            .ok_or_else(|| format!("no network device holds the media address {ip}"))?;
        let index = device
            .index
            .ok_or_else(|| format!("the device {} has no index", device.name))?;
        out.push(Target {
            ip,
            name: device.name.clone(),
            index,
        });
    }
    Ok(out)
}

/// One worker's handle on the kernel tables.
pub struct Table {
    v4: HashMap<MapData, FwdKey<4>, FwdValue<4>>,
    v6: HashMap<MapData, FwdKey<16>, FwdValue<16>>,
}

impl Table {
    /// Write (or replace) a direction; its addresses must all be of one family.
    pub fn install(&mut self, d: &Direction) -> Result<Key, String> {
        let fail = |e: aya::maps::MapError| format!("cannot write the kernel table: {e}");
        if let Some((key, value)) = d.entry::<4, V4>() {
            self.v4.insert(key, value, 0).map_err(fail)?;
            return Ok(Key::V4(key));
        }
        if let Some((key, value)) = d.entry::<16, V6>() {
            self.v6.insert(key, value, 0).map_err(fail)?;
            return Ok(Key::V6(key));
        }
        Err("IPv4 and IPv6 addresses in one direction".into())
    }

    /// What the kernel counted of a direction so far.
    pub fn read(&self, key: &Key) -> Option<Counts> {
        match key {
            Key::V4(k) => self.v4.get(k, 0).ok().map(Counts::from),
            Key::V6(k) => self.v6.get(k, 0).ok().map(Counts::from),
        }
    }

    /// Take a direction out (a missing one is not an error).
    pub fn remove(&mut self, key: &Key) {
        let _ = match key {
            Key::V4(k) => self.v4.remove(k),
            Key::V6(k) => self.v6.remove(k),
        };
    }
}

/// Whether this process may load the program and attach it (CAP_BPF and CAP_NET_ADMIN in its
/// effective set).
pub fn privileged() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    // CAP_NET_ADMIN is capability 12, CAP_BPF 39.
    effective & (1 << 12) != 0 && effective & (1 << 39) != 0
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of `bpf_ktime_get_ns`, and the one
/// [`std::time::Instant`] reads on Linux.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through a pointer to a live value that is
    // borrowed exclusively for the call, and reads nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}
