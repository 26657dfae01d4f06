//! Hostile and malformed input on a live Sluice while calls are in progress: each gets the
//! answer RFC 3261 prescribes (400/505, or silence), and the calls are not disturbed.

use sluice_e2e::{Lab, Peer, Transport};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

struct Probe {
    sock: UdpSocket,
    target: String,
    n: u32,
}

impl Probe {
    fn new(local: &str, target: &str) -> Probe {
        let sock = UdpSocket::bind(local).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Probe {
            sock,
            target: target.to_string(),
            n: 0,
        }
    }

    fn local(&self) -> String {
        self.sock.local_addr().unwrap().to_string()
    }

    /// Send `data`, then a valid OPTIONS; return what came back before the OPTIONS' 200.
    /// Sluice handles one source's datagrams in order, so the 200 marks the end of any answer to
    /// `data` without waiting on a timer.
    fn answers_to(&mut self, data: &[u8]) -> Vec<String> {
        self.n += 1;
        let marker = format!("marker-{}-{}", std::process::id(), self.n);
        self.sock.send_to(data, &self.target).unwrap();
        let local = self.local();
        let options = format!(
            "OPTIONS sip:{t} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{marker}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=1\r\nTo: <sip:{t}>\r\nCall-ID: {marker}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            t = self.target
        );
        self.sock.send_to(options.as_bytes(), &self.target).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut before = Vec::new();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.contains(&marker) && text.starts_with("SIP/2.0 200") {
                    return before;
                }
                before.push(text);
            }
        }
        panic!("no answer to the marker OPTIONS; got {before:?}");
    }
}

fn request(
    local: &str,
    target: &str,
    method: &str,
    extra: &str,
    cl: Option<usize>,
    body: &str,
) -> String {
    let cl = cl.unwrap_or(body.len());
    format!(
        "{method} sip:bob@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKh{}\r\nMax-Forwards: 70\r\nFrom: <sip:evil@{local}>;tag=e1\r\nTo: <sip:bob@{target}>\r\nCall-ID: hostile-{}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: {cl}\r\n\r\n{body}",
        body.len(),
        extra.len()
    )
}

fn status_of(answers: &[String]) -> Vec<u16> {
    answers
        .iter()
        .filter_map(|a| a.get(8..11).and_then(|c| c.parse().ok()))
        .collect()
}

#[test]
fn malformed_input_is_answered_and_calls_continue() {
    let lab = Lab::start(10, Transport::Udp);
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "60"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "60", "-r", "20", "-d", "500", "-s", "15550001111"],
    );
    let mut probe = Probe::new("127.0.10.30:0", &lab.internal());
    let local = probe.local();
    let t = lab.internal();

    // Garbage: nothing can be answered.
    assert!(probe
        .answers_to(b"\x00\x01\x02 this is not SIP \xff\r\n\r\n")
        .is_empty());
    // A message cut in the middle of its headers: no complete head, silence.
    let full = request(&local, &t, "INVITE", "", None, "v=0\r\n");
    assert!(probe.answers_to(&full.as_bytes()[..60]).is_empty());
    // Content-Length larger than the body: 400.
    let long = request(
        &local,
        &t,
        "INVITE",
        "Content-Type: application/sdp\r\n",
        Some(9999),
        "v=0\r\n",
    );
    assert_eq!(status_of(&probe.answers_to(long.as_bytes())), vec![400]);
    // Content-Length that is not a number: 400.
    let neg = request(&local, &t, "OPTIONS", "", None, "")
        .replace("Content-Length: 0", "Content-Length: -5");
    assert_eq!(status_of(&probe.answers_to(neg.as_bytes())), vec![400]);
    // Missing Call-ID: 400, still routed back by the Via.
    let no_cid: String = request(&local, &t, "OPTIONS", "", None, "")
        .lines()
        .filter(|l| !l.starts_with("Call-ID"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let answers = probe.answers_to(no_cid.as_bytes());
    assert_eq!(status_of(&answers), vec![400]);
    assert!(answers[0].contains("Missing Call-ID"), "{answers:?}");
    // Another SIP version: 505.
    let v3 = request(&local, &t, "OPTIONS", "", None, "").replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1);
    assert_eq!(status_of(&probe.answers_to(v3.as_bytes())), vec![505]);
    // Valid folded headers are accepted: OPTIONS answered 200 like any other.
    let folded = request(
        &local,
        &t,
        "OPTIONS",
        "Subject: a subject\r\n  folded over\r\n\tthree lines\r\n",
        None,
        "",
    );
    assert_eq!(status_of(&probe.answers_to(folded.as_bytes())), vec![200]);
    // A response that matches nothing: dropped.
    let stray = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.10.1:5060;branch=z9hG4bKnothing\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert!(probe.answers_to(stray.as_bytes()).is_empty());
    // In-dialog request for a dialog that does not exist: 481.
    let bye = request(&local, &t, "BYE", "", None, "").replace(
        "To: <sip:bob@127.0.10.1:5060>",
        "To: <sip:bob@127.0.10.1:5060>;tag=nosuchdialog",
    );
    assert_eq!(status_of(&probe.answers_to(bye.as_bytes())), vec![481]);

    let uac_r = uac.wait(Duration::from_secs(60));
    let uas_r = uas.wait(Duration::from_secs(10));
    assert_eq!((uac_r.successful, uac_r.failed), (60, 0), "{uac_r:?}");
    assert_eq!((uas_r.successful, uas_r.failed), (60, 0), "{uas_r:?}");
}

#[test]
fn tcp_keepalive_pong_and_framing_error_closes() {
    use std::io::{Read, Write};
    let lab = Lab::start(11, Transport::Tcp);
    let mut s = std::net::TcpStream::connect(lab.internal()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // RFC 5626 keep-alive: a double CRLF ping gets a single CRLF pong.
    s.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
    // A request split across writes is reassembled and answered on the same connection.
    let local = s.local_addr().unwrap().to_string();
    let t = lab.internal();
    let opts = request(&local, &t, "OPTIONS", "", None, "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let (a, b) = opts.as_bytes().split_at(40);
    s.write_all(a).unwrap();
    s.flush().unwrap();
    s.write_all(b).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // A negative Content-Length cannot be framed: 400, then the stream is closed.
    let bad = request(&local, &t, "OPTIONS", "", None, "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("Content-Length: 0", "Content-Length: -999")
        .replace("hostile-0", "hostile-bad");
    s.write_all(bad.as_bytes()).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("SIP/2.0 400"), "{text}");
}
