//! The program in the kernel, on the loopback device: it relays what its table names, rewrites
//! addresses and ports so that the far end sees Sluice, counts as the userspace relay does, and
//! leaves everything else to the socket. Needs CAP_BPF and CAP_NET_ADMIN (CI runs as root);
//! without them the test says so and checks nothing else.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use sluice_media_kernel::{monotonic_ns, FwdKey, FwdRoute, FwdValue, KernelPath};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

fn privileged() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap_or(0);
    // CAP_NET_ADMIN is 12, CAP_BPF 39.
    eff & (1 << 12) != 0 && eff & (1 << 39) != 0
}

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
    let ip = "127.0.111.1";
    let path = KernelPath::load(&[ip.parse::<IpAddr>().unwrap()], 64).unwrap();
    assert_eq!(path.devices, vec!["lo".to_string()]);
    let lo = path
        .device(ip.parse().unwrap())
        .expect("the loopback device holds it");
    assert!(path.device("127.0.111.2".parse().unwrap()).is_none());
    let mut table = path.table().unwrap();

    // Sluice's two sockets (facing A and facing B), and the two ends.
    let (sluice_a, sluice_b) = (udp(ip), udp(ip));
    let (end_a, end_b, stranger) = (
        udp("127.0.111.10"),
        udp("127.0.111.20"),
        udp("127.0.111.30"),
    );
    let key = FwdKey::new(sluice_a.local_addr().unwrap(), end_a.local_addr().unwrap()).unwrap();
    let value = FwdValue {
        rtp: FwdRoute::new(
            sluice_b.local_addr().unwrap(),
            end_b.local_addr().unwrap(),
            lo,
        )
        .unwrap(),
        epoch_ns: monotonic_ns(),
        clock_rate: 8000,
        ..FwdValue::default()
    };
    table.install(&key, &value).unwrap();

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
    assert_eq!(v.stats.received, 4);
    assert_eq!((v.stats.base_seq, v.stats.max_seq), (1, 5));
    assert!(v.last_ns >= value.epoch_ns);

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
