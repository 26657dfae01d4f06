//! The program in the kernel, on the loopback device: it relays what its table names, rewrites
//! addresses and ports so that the far end sees Sluice, counts as the userspace relay does, and
//! leaves everything else to the socket. Needs CAP_BPF and CAP_NET_ADMIN (CI runs as root);
//! without them the test says so and checks nothing else.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::string_slice
)]

use sluice_media::{RtpRaw, RtpStats};
use sluice_media_kernel::{monotonic_ns, privileged, Direction, KernelPath, Key, Route};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

fn udp(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn rtp(seq: u16, pt: u8) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).ok()?;
    Some((buf[..n].to_vec(), from))
}

#[test]
fn relays_what_the_table_names_and_nothing_else() {
    if !privileged() {
        eprintln!("skipped: CAP_BPF and CAP_NET_ADMIN are needed to load the program");
        return;
    }
    // IPv4 on addresses of its own; IPv6 on the loopback device's one address.
    on_loopback(
        "127.0.111.1",
        ["127.0.111.10", "127.0.111.20", "127.0.111.30"],
    );
    on_loopback("::1", ["::1", "::1", "::1"]);
}

/// Sluice's two sockets on `ip` (facing A and facing B), and A, B and a stranger on `ends`.
fn on_loopback(ip: &str, ends: [&str; 3]) {
    let path = KernelPath::load(&[ip.parse::<IpAddr>().unwrap()], 64).unwrap();
    assert_eq!(path.devices, vec!["lo".to_string()]);
    let lo = path
        .device(ip.parse().unwrap())
        .expect("the loopback device holds it");
    assert!(path.device("192.0.2.1".parse().unwrap()).is_none());
    let mut table = path.table().unwrap();

    let (sluice_a, sluice_b) = (udp(ip), udp(ip));
    let (end_a, end_b, stranger) = (udp(ends[0]), udp(ends[1]), udp(ends[2]));
    let direction = Direction {
        local: sluice_a.local_addr().unwrap(),
        src: end_a.local_addr().unwrap(),
        rtp: Some(Route {
            from: sluice_b.local_addr().unwrap(),
            to: end_b.local_addr().unwrap(),
            ifindex: lo,
        }),
        rtcp: None,
        epoch_ns: monotonic_ns(),
        clock_rate: 8000,
        rtcp_socket: false,
        stats: RtpRaw::default(),
    };
    let key = table.install(&direction).unwrap();
    assert_eq!(matches!(key, Key::V6(_)), ip.contains(':'));

    // RTP from A, with seq 3 missing: relayed to B from Sluice's B socket, byte for byte.
    let to = sluice_a.local_addr().unwrap();
    for seq in [1u16, 2, 4, 5] {
        end_a.send_to(&rtp(seq, 0), to).unwrap();
        let (got, from) = recv(&end_b).expect("relayed by the kernel");
        assert_eq!(got, rtp(seq, 0));
        assert_eq!(from, sluice_b.local_addr().unwrap());
    }
    let v = table.read(&key).unwrap();
    assert_eq!((v.packets, v.bytes, v.rtcp_packets), (4, 4 * 172, 0));
    // The kernel's RFC 3550 state is the relay's own: the same packets counted by RtpStats
    // give the same loss state (arrival times, and so jitter, differ).
    let mut mine = RtpStats::default();
    for seq in [1u16, 2, 4, 5] {
        mine.on_rtp(seq, u32::from(seq) * 160, 0x1234_5678, 0);
    }
    let theirs = RtpStats::from(v.stats);
    assert_eq!(theirs.lost(), mine.lost());
    assert_eq!(theirs.lost(), 1);
    let (a, b) = (RtpRaw::from(&theirs), RtpRaw::from(&mine));
    assert_eq!(
        (a.received, a.base_seq, a.max_seq, a.cycles, a.ssrc, a.started),
        (b.received, b.base_seq, b.max_seq, b.cycles, b.ssrc, b.started)
    );
    assert!(v.last_ns >= direction.epoch_ns);

    // RTCP on the RTP port with no RTCP route, a stranger, and a packet that is not RTP: all
    // reach Sluice's socket untouched, for the userspace relay to decide.
    let sr = rtp(9, 200);
    end_a.send_to(&sr, to).unwrap();
    assert_eq!(recv(&sluice_a).unwrap(), (sr, end_a.local_addr().unwrap()));
    stranger.send_to(&rtp(6, 0), to).unwrap();
    assert_eq!(
        recv(&sluice_a).unwrap(),
        (rtp(6, 0), stranger.local_addr().unwrap())
    );
    end_a.send_to(b"hello, not rtp", to).unwrap();
    assert_eq!(recv(&sluice_a).unwrap().0, b"hello, not rtp".to_vec());
    assert!(recv(&end_b).is_none(), "nothing else was relayed");
    assert_eq!(table.read(&key).unwrap().packets, 4);

    // Taken out: packets from A reach Sluice's socket again.
    table.remove(&key);
    end_a.send_to(&rtp(7, 0), to).unwrap();
    assert_eq!(recv(&sluice_a).unwrap().0, rtp(7, 0));
    assert!(table.read(&key).is_none());
}

/// Network namespaces of this test (Sluice's, and one per end joined to it by a veth pair),
/// deleted on drop.
struct Lab {
    names: [String; 3],
}

impl Lab {
    fn new() -> Lab {
        let id = std::process::id();
        let names = [
            format!("slk-s-{id}"),
            format!("slk-a-{id}"),
            format!("slk-b-{id}"),
        ];
        let lab = Lab { names };
        let [s, a, b] = &lab.names;
        let run = |args: &str| {
            let ok = std::process::Command::new("ip")
                .args(args.split_whitespace())
                .status()
                .unwrap()
                .success();
            assert!(ok, "ip {args}");
        };
        for n in &lab.names {
            run(&format!("netns add {n}"));
            run(&format!("-n {n} link set lo up"));
        }
        // IPv6 host parts that change the UDP checksum when the program swaps addresses
        // (2001:db8:a::2 to 2001:db8:b::1 would sum the same and hide a missed update).
        for (end, ns, net, [mine, theirs]) in [
            ("a", a, "192.0.2", ["2001:db8:a::1", "2001:db8:a::2"]),
            ("b", b, "198.51.100", ["2001:db8:b::5", "2001:db8:b::7"]),
        ] {
            let (here, there) = (format!("ks{end}{id}"), format!("k{end}{id}"));
            run(&format!(
                "link add {here} netns {s} type veth peer name {there} netns {ns}"
            ));
            run(&format!("-n {s} addr add {net}.1/24 dev {here}"));
            run(&format!("-n {ns} addr add {net}.2/24 dev {there}"));
            // No duplicate address detection: the addresses are usable at once.
            run(&format!("-n {s} addr add {mine}/64 dev {here} nodad"));
            run(&format!("-n {ns} addr add {theirs}/64 dev {there} nodad"));
            run(&format!("-n {s} link set {here} up"));
            run(&format!("-n {ns} link set {there} up"));
        }
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", n])
                .status();
        }
    }
}

/// Peer B: a raw socket that prints each UDP datagram to port 40000 (source, the IP header and
/// the UDP datagram in hex) until it has `n` or 3 s pass.
const RECEIVER: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.settimeout(3)
print("ready", flush=True)
n, got = int(sys.argv[1]), 0
while got < n:
    try:
        d, _ = s.recvfrom(4096)
    except socket.timeout:
        break
    ihl = (d[0] & 15) * 4
    if struct.unpack("!H", d[ihl + 2:ihl + 4])[0] != 40000:
        continue
    print(socket.inet_ntoa(d[12:16]), d[:ihl].hex(), d[ihl:].hex(), flush=True)
    got += 1
"#;

/// Peer A: sends RTP from 192.0.2.2:30000 to Sluice's port through a raw socket, with a full
/// UDP checksum (as a real network delivers it: nothing left for a device to compute), and a
/// last packet without one (checksum 0, allowed over IPv4).
const SENDER: &str = r#"
src, dst, dport = socket.inet_aton("192.0.2.2"), socket.inet_aton("192.0.2.1"), int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i, p in enumerate(bytes.fromhex(x) for x in sys.argv[2:]):
    udp = struct.pack("!HHHH", 30000, dport, 8 + len(p), 0) + p
    ck = 0 if i == len(sys.argv) - 3 else (csum(src + dst + struct.pack("!BBH", 0, 17, len(udp)) + udp) or 0xffff)
    udp = udp[:6] + struct.pack("!H", ck) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s.sendto(ip + udp, ("192.0.2.1", 0))
"#;

/// The 16-bit ones' complement sum of `b` (0xffff when a checksum over it is right).
fn ones_sum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Between two devices, as on a real host: the program sends the packet out of the far side's
/// device (`bpf_redirect_neigh`, the kernel resolving the next hop), and the checksums it
/// rewrote are full ones, checked here byte by byte (loopback leaves them to be computed).
#[test]
fn relays_between_devices_with_checksums_right() {
    if !privileged() {
        eprintln!("skipped: CAP_BPF and CAP_NET_ADMIN are needed to load the program");
        return;
    }
    if std::env::var_os("SLUICE_KERNEL_TEST_NS").is_some() {
        return between_devices_inside();
    }
    let lab = Lab::new();
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.names[0]])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "relays_between_devices_with_checksums_right",
            "--nocapture",
        ])
        .env("SLUICE_KERNEL_TEST_NS", "1")
        .env(
            "SLUICE_KERNEL_TEST_PEERS",
            format!("{} {}", lab.names[1], lab.names[2]),
        )
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("relayed 4 between devices"), "{text}");
    assert!(
        text.contains("relayed 3 between devices over IPv6"),
        "{text}"
    );
}

/// Sluice's side, run inside its namespace.
fn between_devices_inside() {
    let peers = std::env::var("SLUICE_KERNEL_TEST_PEERS").unwrap();
    let (ns_a, ns_b) = peers.split_once(' ').unwrap();
    let (ip_a, ip_b) = ("192.0.2.1", "198.51.100.1");
    let path = KernelPath::load(&[ip_a.parse().unwrap(), ip_b.parse().unwrap()], 16).unwrap();
    assert_eq!(path.devices.len(), 2, "{:?}", path.devices);
    let (sluice_a, sluice_b) = (udp(ip_a), udp(ip_b));
    let out_dev = path.device(ip_b.parse().unwrap()).unwrap();
    let mut table = path.table().unwrap();
    let key = table
        .install(&Direction {
            local: sluice_a.local_addr().unwrap(),
            src: "192.0.2.2:30000".parse().unwrap(),
            rtp: Some(Route {
                from: sluice_b.local_addr().unwrap(),
                to: "198.51.100.2:40000".parse().unwrap(),
                ifindex: out_dev,
            }),
            rtcp: None,
            epoch_ns: monotonic_ns(),
            clock_rate: 8000,
            rtcp_socket: false,
            stats: RtpRaw::default(),
        })
        .unwrap();

    let packets: Vec<Vec<u8>> = (1..=4).map(|seq| rtp(seq, 0)).collect();
    let port = sluice_a.local_addr().unwrap().port();
    let got = exchange((ns_a, SENDER), (ns_b, RECEIVER), port, &packets);
    assert_eq!(got.len(), 4, "relayed to B: {got:?}");
    let from_port = sluice_b.local_addr().unwrap().port();
    for (k, (line, sent)) in got.iter().zip(&packets).enumerate() {
        // The sender's last packet has no UDP checksum.
        check_arrival(line, sent, from_port, k + 1 < packets.len());
    }
    assert_eq!(table.read(&key).unwrap().packets, 4);
    assert!(
        sluice_a.recv_from(&mut [0u8; 2048]).is_err(),
        "nothing reached Sluice's socket"
    );
    println!("relayed 4 between devices");
    between_devices_inside_v6(ns_a, ns_b);
}

/// Peer B over IPv6: a raw socket's datagrams are UDP header and payload, the source from
/// `recvfrom`.
const RECEIVER6: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.settimeout(3)
print("ready", flush=True)
n, got = int(sys.argv[1]), 0
while got < n:
    try:
        d, src = s.recvfrom(4096)
    except socket.timeout:
        break
    if struct.unpack("!H", d[2:4])[0] != 40000:
        continue
    print(src[0], d.hex(), flush=True)
    got += 1
"#;

/// Peer A over IPv6: UDP with a full checksum it computes itself, from [2001:db8:a::2]:30000;
/// the last packet has checksum 0 (not allowed over IPv6: the program leaves it to the stack,
/// which drops it).
const SENDER6: &str = r#"
src, dst = "2001:db8:a::2", "2001:db8:a::1"
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.bind((src, 0))
dport = int(sys.argv[1])
payloads = [bytes.fromhex(x) for x in sys.argv[2:]]
for i, p in enumerate(payloads):
    udp = struct.pack("!HHHH", 30000, dport, 8 + len(p), 0) + p
    pseudo = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + struct.pack("!II", len(udp), 17)
    ck = 0 if i == len(payloads) - 1 else (csum(pseudo + udp) or 0xffff)
    s.sendto(udp[:6] + struct.pack("!H", ck) + udp[8:], (dst, 0))
"#;

/// The same between devices over IPv6 (no header checksum; the UDP checksum's pseudo-header
/// has 16-byte addresses).
fn between_devices_inside_v6(ns_a: &str, ns_b: &str) {
    let (ip_a, ip_b) = ("2001:db8:a::1", "2001:db8:b::5");
    let (sluice_a, sluice_b) = (udp(ip_a), udp(ip_b));
    let path = KernelPath::load(&[ip_a.parse().unwrap(), ip_b.parse().unwrap()], 16).unwrap();
    let mut table = path.table().unwrap();
    let key = table
        .install(&Direction {
            local: sluice_a.local_addr().unwrap(),
            src: "[2001:db8:a::2]:30000".parse().unwrap(),
            rtp: Some(Route {
                from: sluice_b.local_addr().unwrap(),
                to: "[2001:db8:b::7]:40000".parse().unwrap(),
                ifindex: path.device(ip_b.parse().unwrap()).unwrap(),
            }),
            rtcp: None,
            epoch_ns: monotonic_ns(),
            clock_rate: 8000,
            rtcp_socket: false,
            stats: RtpRaw::default(),
        })
        .unwrap();
    assert!(matches!(key, Key::V6(_)));
    let packets: Vec<Vec<u8>> = (1..=4).map(|seq| rtp(seq, 0)).collect();
    let port = sluice_a.local_addr().unwrap().port();
    let got = exchange((ns_a, SENDER6), (ns_b, RECEIVER6), port, &packets);
    assert_eq!(
        got.len(),
        3,
        "the three with a checksum relayed to B: {got:?}"
    );
    let from_port = sluice_b.local_addr().unwrap().port();
    let dst: std::net::Ipv6Addr = "2001:db8:b::7".parse().unwrap();
    for (line, sent) in got.iter().zip(&packets) {
        let (src, dgram) = line.split_once(' ').unwrap();
        assert_eq!(src, ip_b, "from Sluice's address on B's side");
        let dgram = hex(dgram);
        assert_eq!(u16::from_be_bytes([dgram[0], dgram[1]]), from_port);
        assert_eq!(&dgram[8..], &sent[..], "payload unchanged");
        let mut pseudo = src.parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec();
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&(dgram.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        pseudo.extend_from_slice(&dgram);
        assert_eq!(ones_sum(&pseudo), 0xffff, "UDP checksum of {line}");
    }
    assert_eq!(table.read(&key).unwrap().packets, 3);
    println!("relayed 3 between devices over IPv6");
}

/// One packet as peer B captured it: from Sluice's address and port on B's side, to B, the
/// payload as sent, the IPv4 header checksum right, and the UDP checksum right (`checksum`) or
/// still absent.
fn check_arrival(line: &str, sent: &[u8], from_port: u16, checksum: bool) {
    let f: Vec<&str> = line.split(' ').collect();
    let (ip, dgram) = (hex(f[1]), hex(f[2]));
    assert_eq!(f[0], "198.51.100.1", "from Sluice's address on B's side");
    assert_eq!(&ip[16..20], &[198, 51, 100, 2]);
    assert_eq!(ones_sum(&ip), 0xffff, "IPv4 header checksum");
    assert_eq!(u16::from_be_bytes([dgram[0], dgram[1]]), from_port);
    assert_eq!(&dgram[8..], sent, "payload unchanged");
    let check = u16::from_be_bytes([dgram[6], dgram[7]]);
    if !checksum {
        assert_eq!(check, 0, "no checksum stays no checksum");
        return;
    }
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(dgram.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&dgram);
    assert_eq!(ones_sum(&pseudo), 0xffff, "UDP checksum of {line}");
}

/// Peer B's `receiver` (in namespace `ns_b`) waits for four packets while peer A's `sender`
/// (in `ns_a`) sends `packets` to Sluice's `port`; what B printed, a line per packet.
fn exchange(
    (ns_a, sender): (&str, &str),
    (ns_b, receiver): (&str, &str),
    port: u16,
    packets: &[Vec<u8>],
) -> Vec<String> {
    let mut b = std::process::Command::new("ip")
        .args(["netns", "exec", ns_b, "python3", "-c", receiver, "4"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(b.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let script = format!("{CSUM}{sender}");
    let mut send: Vec<String> = ["netns", "exec", ns_a, "python3", "-c", &script]
        .iter()
        .map(|a| a.to_string())
        .collect();
    send.push(port.to_string());
    send.extend(
        packets
            .iter()
            .map(|p| p.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    );
    assert!(std::process::Command::new("ip")
        .args(&send)
        .status()
        .unwrap()
        .success());
    let got = lines.map(Result::unwrap).collect();
    let _ = b.wait();
    got
}

/// The Internet checksum, for the senders' scripts.
const CSUM: &str = r#"
import socket, struct, sys
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
"#;

/// The program is attached through links the process owns: when Sluice is killed (SIGKILL,
/// no clean-up of its own), nothing of it stays on the host relaying from a table no one
/// updates. A child process (this test binary again) loads the program and installs a
/// direction; the direction works; the child is killed; the same packets reach their socket.
#[test]
fn a_killed_process_leaves_nothing_relaying() {
    if !privileged() {
        eprintln!("skipped: CAP_BPF and CAP_NET_ADMIN are needed to load the program");
        return;
    }
    if let Ok(addrs) = std::env::var("SLUICE_KERNEL_TEST_CHILD") {
        return child_installs(&addrs);
    }
    let ip = "127.0.112.1";
    let (sluice_a, sluice_b) = (udp(ip), udp(ip));
    let (end_a, end_b) = (udp("127.0.112.10"), udp("127.0.112.20"));
    let addrs = [&sluice_a, &sluice_b, &end_a, &end_b]
        .map(|s| s.local_addr().unwrap().to_string())
        .join(" ");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_process_leaves_nothing_relaying",
            "--nocapture",
        ])
        .env("SLUICE_KERNEL_TEST_CHILD", addrs)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let ready = lines.map_while(Result::ok).any(|l| l == "ready");
    assert!(ready, "the child installed its direction");
    let to = sluice_a.local_addr().unwrap();
    end_a.send_to(&rtp(1, 0), to).unwrap();
    assert_eq!(
        recv(&end_b).map(|(p, _)| p),
        Some(rtp(1, 0)),
        "relayed while the child lives"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // Detaching is done when the process's descriptors close; give each try a bounded wait.
    let mut back = false;
    for seq in 2..12u16 {
        end_a.send_to(&rtp(seq, 0), to).unwrap();
        if recv(&sluice_a).is_some() {
            back = true;
            break;
        }
    }
    assert!(back, "after the kill, packets reach Sluice's socket again");
    assert!(recv(&end_b).is_none(), "and nothing is relayed any more");
}

/// The child: load the program, install A's direction toward B, say so, and wait to be killed.
fn child_installs(addrs: &str) {
    let a: Vec<SocketAddr> = addrs.split(' ').map(|x| x.parse().unwrap()).collect();
    let path = KernelPath::load(&[a[0].ip()], 16).unwrap();
    let mut table = path.table().unwrap();
    table
        .install(&Direction {
            local: a[0],
            src: a[2],
            rtp: Some(Route {
                from: a[1],
                to: a[3],
                ifindex: path.device(a[1].ip()).unwrap(),
            }),
            rtcp: None,
            epoch_ns: monotonic_ns(),
            clock_rate: 8000,
            rtcp_socket: false,
            stats: RtpRaw::default(),
        })
        .unwrap();
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}
