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
//! senders (strangers are dropped there, a NAT that rebinds is latched there), SRTP, IPv6,
//! anything that is not RTP/RTCP version 2. The userspace relay reads each entry back to
//! publish its counters, to know when the stream was last heard, and before it changes or
//! removes the entry.
//!
//! - [`KernelPath::load`] loads the program, sizes its table and attaches it to the ingress of
//!   the devices that hold the media addresses; it needs `CAP_BPF` and `CAP_NET_ADMIN`. The
//!   program is attached through a link that the process owns: it goes when Sluice exits.
//! - [`Table`] is one worker's handle on the table (each has its own, nothing is locked).
//! - [`FwdKey`] and [`FwdValue`] mirror the C layouts (their sizes are checked on both sides).

use aya::maps::{HashMap, Map, MapData};
use aya::programs::{tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType};
use sluice_media::RtpRaw;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;

/// Where a packet arrives and who sent it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FwdKey {
    /// Sluice's address and port (network order).
    pub local_ip: [u8; 4],
    pub src_ip: [u8; 4],
    pub local_port: [u8; 2],
    pub src_port: [u8; 2],
}

/// Where packets of one kind (RTP or RTCP) go.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FwdRoute {
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    /// The device it leaves by; 0: packets of this kind go to the userspace relay.
    pub ifindex: u32,
}

/// One direction of a stream, and what the kernel counted of it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FwdValue {
    pub rtp: FwdRoute,
    pub rtcp: FwdRoute,
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

const _: () = assert!(std::mem::size_of::<FwdKey>() == 12);
const _: () = assert!(std::mem::size_of::<FwdRoute>() == 16);
const _: () = assert!(std::mem::size_of::<RtpRaw>() == 40);
const _: () = assert!(std::mem::size_of::<FwdValue>() == 120);

// SAFETY: `aya::Pod` lets aya copy these types to and from the kernel as bytes. Each is
// `repr(C)`, `Copy`, made only of integers and byte arrays (every bit pattern is a valid
// value), including the embedded `RtpRaw` (`repr(C)`, integers only), and laid out without
// padding (the sizes asserted above are the sums of the fields; the C side asserts the same
// sizes), so no byte is uninitialised or invalid either way.
unsafe impl aya::Pod for FwdKey {}
// SAFETY: as for `FwdKey` above.
unsafe impl aya::Pod for FwdValue {}

impl FwdKey {
    /// A packet from `src` arriving at Sluice's `local`; `None` unless both are IPv4.
    pub fn new(local: SocketAddr, src: SocketAddr) -> Option<FwdKey> {
        let (l, s) = (v4(local)?, v4(src)?);
        Some(FwdKey {
            local_ip: l.ip().octets(),
            src_ip: s.ip().octets(),
            local_port: l.port().to_be_bytes(),
            src_port: s.port().to_be_bytes(),
        })
    }
}

impl FwdRoute {
    /// Leave from Sluice's `from` toward `to` by device `ifindex` (see [`KernelPath::device`]);
    /// `None` unless both are IPv4.
    pub fn new(from: SocketAddr, to: SocketAddr, ifindex: u32) -> Option<FwdRoute> {
        let (f, t) = (v4(from)?, v4(to)?);
        Some(FwdRoute {
            src_ip: f.ip().octets(),
            dst_ip: t.ip().octets(),
            src_port: f.port().to_be_bytes(),
            dst_port: t.port().to_be_bytes(),
            ifindex,
        })
    }
}

fn v4(a: SocketAddr) -> Option<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, a.port())),
    }
}

/// The program, loaded and attached. Dropping it detaches the program and frees the table.
pub struct KernelPath {
    map: MapData,
    /// The IPv4 addresses whose streams the program can relay, and the index of the device
    /// that holds each (the program is attached to its ingress).
    covered: Vec<(Ipv4Addr, u32)>,
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
    /// of the devices that hold `binds` (the media relay's addresses; IPv6 and unspecified
    /// ones are left to userspace). An error says why the fast path is not available.
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
        let map = match ebpf.take_map("SLUICE_FWD") {
            Some(Map::HashMap(m)) => m,
            _ => return Err("the table is missing from the program's object".into()),
        };
        Ok(KernelPath {
            map,
            covered: targets.into_iter().map(|t| (t.ip, t.index)).collect(),
            devices,
            _ebpf: ebpf,
        })
    }

    /// The index of the device that holds Sluice's address `local`, when the program relays
    /// packets arriving there (and can send packets from there); `None` otherwise.
    pub fn device(&self, local: IpAddr) -> Option<u32> {
        let ip = match local {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => ip.to_ipv4_mapped()?,
        };
        self.covered.iter().find(|(c, _)| *c == ip).map(|(_, i)| *i)
    }

    /// A handle on the table for one worker.
    pub fn table(&self) -> Result<Table, String> {
        let fd = self
            .map
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("cannot share the table: {e}"))?;
        let data = MapData::from_fd(fd).map_err(|e| format!("cannot share the table: {e}"))?;
        let map = HashMap::try_from(Map::HashMap(data))
            .map_err(|e| format!("the table has another layout: {e}"))?;
        Ok(Table { map })
    }
}

/// A media address and the device that holds it.
struct Target {
    ip: Ipv4Addr,
    name: String,
    index: u32,
}

/// The devices that hold the IPv4 addresses among `binds`.
fn devices_of(binds: &[IpAddr]) -> Result<Vec<Target>, String> {
    let interfaces =
        if_addrs::get_if_addrs().map_err(|e| format!("cannot list the network devices: {e}"))?;
    let mut out = Vec::new();
    for bind in binds {
        let IpAddr::V4(ip) = bind else { continue };
        if ip.is_unspecified() {
            return Err(format!(
                "the media relay binds {ip}: the kernel fast path needs the address it receives on (set media.internal.bind and media.external.bind)"
            ));
        }
        let device = interfaces
            .iter()
            // The whole of 127.0.0.0/8 is the loopback device's, whatever address it lists.
            .find(|i| i.ip() == IpAddr::V4(*ip) || (ip.is_loopback() && i.is_loopback()))
            .ok_or_else(|| format!("no network device holds the media address {ip}"))?;
        let index = device
            .index
            .ok_or_else(|| format!("the device {} has no index", device.name))?;
        out.push(Target {
            ip: *ip,
            name: device.name.clone(),
            index,
        });
    }
    if out.is_empty() {
        return Err("no IPv4 media address: the kernel fast path relays IPv4 only".into());
    }
    Ok(out)
}

/// One worker's handle on the kernel table.
pub struct Table {
    map: HashMap<MapData, FwdKey, FwdValue>,
}

impl Table {
    /// Write (or replace) a direction.
    pub fn install(&mut self, key: &FwdKey, value: &FwdValue) -> Result<(), String> {
        self.map
            .insert(key, value, 0)
            .map_err(|e| format!("cannot write the kernel table: {e}"))
    }

    /// What the kernel holds for a direction now.
    pub fn read(&self, key: &FwdKey) -> Option<FwdValue> {
        self.map.get(key, 0).ok()
    }

    /// Take a direction out (a missing one is not an error).
    pub fn remove(&mut self, key: &FwdKey) {
        let _ = self.map.remove(key);
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
