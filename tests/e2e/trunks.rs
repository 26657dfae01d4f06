//! Trunks as providers run them, end to end with SIPp (and Kamailio as an authenticating
//! provider): Sluice's digest answers verified by the peers themselves (SIPp's `verifyauth`
//! for MD5, Kamailio's auth module for SHA-256 and 407), a gateway registering to Sluice and
//! taking a call, associated address blocks, failover between destinations (503, silence, a
//! TCP destination refusing connections), weights, keep-alive, and a call limit.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_e2e::{
    http, metric, parse_prometheus, repo_root, sipp_available, Kamailio, Lab, LabAddrs, Peer,
    Transport,
};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn need_sipp() {
    assert!(
        sipp_available(),
        "sipp (package sip-tester) is required for the end-to-end tests"
    );
}

/// The lab's configuration with extra keys in the trunk's table.
fn config(block: u8, trunk_keys: &str) -> String {
    Lab::config_with(&LabAddrs::v4(block), trunk_keys, "")
}

fn trunks(lab: &Lab) -> serde_json_value::Value {
    let (status, body) = http("GET", &lab.admin(), "/trunks", None, "");
    assert_eq!(status, 200, "{body}");
    serde_json_value::from_str(&body)
}

fn registrations(lab: &Lab) -> serde_json_value::Value {
    let (status, body) = http("GET", &lab.admin(), "/registrations", None, "");
    assert_eq!(status, 200, "{body}");
    serde_json_value::from_str(&body)
}

/// serde_json through the harness.
mod serde_json_value {
    pub use sluice_e2e::serde_json::{from_str as parse, Value};
    pub fn from_str(s: &str) -> Value {
        parse(s).expect("JSON")
    }
}

/// Wait (bounded) until `f` holds of the first trunk's status.
fn wait_trunk(lab: &Lab, what: &str, f: impl Fn(&serde_json_value::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let t = trunks(lab);
        if f(&t[0]) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {t}\n{}", lab.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` calls from the PBX, answered by a SIPp UAS at `at` (port 5060): every one completes,
/// each reached `at` once (the PBX seeing one call each).
fn calls_complete_at(lab: &Lab, name: &str, at: &str, n: u64) {
    let m = n.to_string();
    // No call limit and `-aa`: keep-alive OPTIONS that reach it get 200 and are not taken
    // for calls; the INVITEs it received are counted from its message log.
    let uas = lab.sipp_on(name, "uas.xml", (at.to_string(), 5060), None, &["-aa"]);
    let uac = lab.sipp(
        &format!("{name}-pbx"),
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", &m, "-r", &m],
    );
    let r = uac.wait(Duration::from_secs(30));
    assert_eq!((r.successful, r.failed), (n, 0), "{r:?}\n{}", lab.log());
    let mut calls: Vec<String> = uas
        .received_messages()
        .iter()
        .filter(|msg| msg.starts_with("INVITE "))
        .filter_map(|msg| {
            msg.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("call-id:"))
                .map(str::to_string)
        })
        .collect();
    calls.sort();
    calls.dedup();
    assert_eq!(calls.len() as u64, n, "calls answered at {at}: {calls:?}");
}

#[test]
fn registration_answers_a_challenge_that_sipp_verifies_and_wrong_credentials_fail() {
    need_sipp();
    for (block, password, expect) in [
        (60u8, "s3cret", "registered"),
        (61, "wrong", "registration failed"),
    ] {
        let keys = format!(
            "type = \"register\"\nusername = \"acct1\"\npassword = \"{password}\"\n\
             domain = \"provider.test\""
        );
        let lab = Lab::start_with_trunk(block, &keys, "");
        // Sluice's first REGISTER may go before SIPp listens: it is retransmitted.
        let registrar = lab.sipp(
            "registrar",
            "uas_register_auth.xml",
            Peer::Trunk,
            None,
            &["-m", "1"],
        );
        wait_trunk(&lab, expect, |t| t["status"] == expect);
        let t = &trunks(&lab)[0];
        // The registration itself, as /registrations shows it.
        let regs = registrations(&lab);
        let r = &regs[0];
        assert_eq!(regs.as_array().map(Vec::len), Some(1), "{regs}");
        assert_eq!(
            (&r["trunk"], &r["kind"], &r["state"]),
            (&"loop".into(), &"register".into(), &expect.into()),
            "{r}"
        );
        assert_eq!(r["aor"], "sip:acct1@provider.test", "{r}");
        if password == "s3cret" {
            assert_eq!(t["last_registration"], "200 OK");
            assert_eq!(r["last_response"], "200 OK");
            let expires = r["expires_in_seconds"].as_u64().unwrap();
            let refresh = r["refresh_in_seconds"].as_u64().unwrap();
            assert!(expires > 0 && refresh < expires, "{r}");
        } else {
            assert_eq!(t["last_registration"], "403 Forbidden");
            assert!(
                t["next_register_in_seconds"].as_u64().unwrap() >= 20,
                "backs off: {t}"
            );
            assert_eq!(r["last_response"], "403 Forbidden");
            assert!(r["retry_in_seconds"].as_u64().unwrap() >= 20, "{r}");
            assert!(r["expires_in_seconds"].is_null(), "{r}");
        }
        let r = registrar.wait(Duration::from_secs(10));
        assert_eq!(r.failed, 0, "{r:?}");
        let (_, text) = http("GET", &lab.admin(), "/metrics", None, "");
        let registered = metric(
            &parse_prometheus(&text),
            "sluice_trunk_registered",
            &[("trunk", "loop")],
        );
        let want = if password == "s3cret" { 1.0 } else { 0.0 };
        assert_eq!(registered, Some(want), "{text}");
    }
}

#[test]
fn an_invite_challenge_is_answered_and_verified_by_sipp() {
    need_sipp();
    let lab = Lab::start_with_trunk(
        62,
        "type = \"credentials\"\nusername = \"acct1\"\npassword = \"s3cret\"",
        "",
    );
    let uas = lab.sipp(
        "uas",
        "uas_invite_auth.xml",
        Peer::Trunk,
        None,
        &["-m", "2"],
    );
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "2", "-r", "2"],
    );
    let r = uac.wait(Duration::from_secs(20));
    let t = uas.wait(Duration::from_secs(10));
    assert_eq!(r.successful, 2, "PBX: {r:?}\n{}", lab.log());
    assert_eq!((t.successful, t.failed), (2, 0), "provider: {t:?}");
    drop(lab);

    // Wrong credentials: the provider refuses the answer and the PBX sees 403, counted.
    let lab = Lab::start_with_trunk(
        62,
        "type = \"credentials\"\nusername = \"acct1\"\npassword = \"wrong\"",
        "",
    );
    let uas = lab.sipp(
        "uas",
        "uas_invite_auth.xml",
        Peer::Trunk,
        None,
        &["-m", "1"],
    );
    let uac = lab.sipp(
        "uac",
        "uac_403.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1"],
    );
    let r = uac.wait(Duration::from_secs(20));
    let _ = uas.wait(Duration::from_secs(10));
    assert_eq!(r.successful, 1, "PBX got 403: {r:?}\n{}", lab.log());
    let (_, text) = http("GET", &lab.admin(), "/metrics", None, "");
    let failures = metric(
        &parse_prometheus(&text),
        "sluice_trunk_auth_failures_total",
        &[("trunk", "loop"), ("kind", "request")],
    );
    assert_eq!(failures, Some(1.0), "{text}");
}

#[test]
fn kamailio_verifies_sha256_answers_to_register_and_407() {
    need_sipp();
    const BLOCK: u8 = 63;
    let a = LabAddrs::v4(BLOCK);
    let switch = format!("127.0.{BLOCK}.21");
    let kamailio = provider_kamailio(&a.trunk_ip, &format!("{switch}:5060"));
    let keys = "type = \"register\"\nusername = \"acct1\"\npassword = \"s3cret\"\n\
                domain = \"provider.test\"";
    let lab = Lab::start_with_trunk(BLOCK, keys, "");
    wait_trunk(&lab, "registered with SHA-256", |t| {
        t["status"] == "registered"
    });
    let uas = lab.sipp_on(
        "switch",
        "uas_switch.xml",
        (switch.clone(), 5060),
        None,
        &["-m", "1"],
    );
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1"],
    );
    let r = uac.wait(Duration::from_secs(20));
    let t = uas.wait(Duration::from_secs(10));
    let log = kamailio.stop();
    assert_eq!(
        r.successful,
        1,
        "PBX: {r:?}\nsluice:\n{}\nkamailio:\n{log}",
        lab.log()
    );
    assert_eq!(t.successful, 1, "switch behind Kamailio: {t:?}");
    assert!(log.contains("REGISTER authenticated for acct1"), "{log}");
    assert!(log.contains("INVITE authenticated for acct1"), "{log}");
}

/// Kamailio as the provider that authenticates (tests/kamailio/provider-auth.cfg), on
/// `listen`:5060, relaying to `switch`.
fn provider_kamailio(listen: &str, switch: &str) -> Kamailio {
    let template =
        std::fs::read_to_string(repo_root().join("tests/kamailio/provider-auth.cfg")).unwrap();
    let text = template
        .replace("listen=udp:LISTEN", &format!("listen=udp:{listen}:5060"))
        .replace("sip:SWITCH", &format!("sip:{switch}"));
    Kamailio::start_in(
        tempfile::tempdir().expect("dir"),
        &text,
        &format!("{listen}:5060"),
    )
}

#[test]
fn a_gateway_registers_to_sluice_takes_a_call_and_unregisters() {
    need_sipp();
    const BLOCK: u8 = 64;
    let a = LabAddrs::v4(BLOCK);
    let gw_ip = format!("127.0.{BLOCK}.30");
    let keys = "type = \"accept-register\"\nusername = \"acct1\"\npassword = \"s3cret\"";
    let text =
        config(BLOCK, keys).replace(&format!("host = \"{}\"", a.trunk_ip), "host = \"gw.test\"");
    let lab = Lab::start_with_text(a.clone(), Transport::Udp, &text);
    // Not registered: the PBX's call gets 480.
    let early = lab.sipp(
        "early",
        "uac_480.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1"],
    );
    let e = early.wait(Duration::from_secs(10));
    assert_eq!(e.successful, 1, "{e:?}");
    let gw = lab.sipp_on(
        "gateway",
        "uac_gateway.xml",
        (gw_ip.clone(), 5062),
        Some(&lab.external()),
        &[
            "-m",
            "1",
            "-oocsf",
            &sluice_e2e::scenario("uas.xml").display().to_string(),
        ],
    );
    wait_trunk(&lab, "the gateway's binding", |t| t["bindings"] == 1);
    let regs = registrations(&lab);
    let g = &regs[0];
    assert_eq!(regs.as_array().map(Vec::len), Some(1), "{regs}");
    assert_eq!(
        (&g["kind"], &g["trunk"]),
        (&"gateway".into(), &"loop".into()),
        "{g}"
    );
    assert_eq!(g["source"], format!("{gw_ip}:5062"), "{g}");
    assert!(
        g["contact"].as_str().unwrap().contains(&gw_ip),
        "the contact registered: {g}"
    );
    assert!(g["expires_in_seconds"].as_u64().unwrap() > 0, "{g}");
    let call = lab.sipp(
        "call",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1"],
    );
    let c = call.wait(Duration::from_secs(20));
    assert_eq!(
        c.successful,
        1,
        "the call reached the gateway: {c:?}\n{}",
        lab.log()
    );
    let g = gw.wait(Duration::from_secs(20));
    assert_eq!(g.failed, 0, "gateway: {g:?}");
    wait_trunk(&lab, "unregistered", |t| t["bindings"] == 0);
    assert_eq!(trunks(&lab)[0]["status"], "not registered");
    assert_eq!(registrations(&lab), serde_json_value::from_str("[]"));
}

#[test]
fn associated_addresses_may_call_in_and_strangers_get_403() {
    need_sipp();
    const BLOCK: u8 = 65;
    let lab = Lab::start_with_trunk(
        BLOCK,
        &format!("associated = [\"127.0.{BLOCK}.32/30\"]"),
        "",
    );
    let pbx = lab.sipp("pbx", "uas.xml", Peer::Pbx, None, &["-m", "1"]);
    let friend = lab.sipp_on(
        "friend",
        "uac.xml",
        (format!("127.0.{BLOCK}.33"), 5060),
        Some(&lab.external()),
        &["-m", "1"],
    );
    let f = friend.wait(Duration::from_secs(20));
    assert_eq!(f.successful, 1, "{f:?}\n{}", lab.log());
    assert_eq!(pbx.wait(Duration::from_secs(10)).successful, 1);
    let stranger = lab.sipp_on(
        "stranger",
        "uac_403.xml",
        (format!("127.0.{BLOCK}.40"), 5060),
        Some(&lab.external()),
        &["-m", "1"],
    );
    let s = stranger.wait(Duration::from_secs(10));
    assert_eq!(s.successful, 1, "the stranger got 403: {s:?}");
    let (_, text) = http("GET", &lab.admin(), "/metrics", None, "");
    let samples = parse_prometheus(&text);
    let refused = metric(
        &samples,
        "sluice_calls_failed_total",
        &[
            ("trunk", "unknown"),
            ("direction", "inbound"),
            ("status_class", "4xx"),
        ],
    );
    assert_eq!(refused, Some(1.0), "{text}");
}

#[test]
fn calls_fail_over_on_503_on_silence_and_on_a_refused_tcp_connection() {
    need_sipp();
    const BLOCK: u8 = 66;
    let second = format!("127.0.{BLOCK}.21");
    let dests = |first: &str| {
        format!(
            "destination_timeout_ms = 500\ndestinations = [ {first}, \
             {{ host = \"{second}\", priority = 20 }} ]"
        )
    };
    let udp_first = format!("{{ host = \"127.0.{BLOCK}.20\", priority = 10 }}");
    // 503 from the first: every call completes on the second.
    let lab = Lab::start_with_trunk(BLOCK, &dests(&udp_first), "");
    let first = lab.sipp(
        "first",
        "uas_unavailable.xml",
        Peer::Trunk,
        None,
        &["-m", "5"],
    );
    calls_complete_at(&lab, "second", &second, 5);
    let f = first.wait(Duration::from_secs(5));
    assert_eq!(f.successful, 5, "the first saw every call once: {f:?}");
    drop(lab);

    // Nothing at the first: each call waits out the destination timeout, then the second.
    let lab = Lab::start_with_trunk(BLOCK, &dests(&udp_first), "");
    calls_complete_at(&lab, "second", &second, 3);
    drop(lab);

    // A TCP destination that refuses connections: the transport error moves the call on at once.
    let tcp_first =
        format!("{{ host = \"127.0.{BLOCK}.20\", transport = \"tcp\", priority = 10 }}");
    let lab = Lab::start_with_trunk(
        BLOCK,
        &dests(&tcp_first).replace(
            "destination_timeout_ms = 500",
            "destination_timeout_ms = 10000",
        ),
        "",
    );
    let started = Instant::now();
    calls_complete_at(&lab, "second", &second, 3);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "no destination timeout was waited for: {:?}",
        started.elapsed()
    );
}

#[test]
fn weights_split_calls_between_destinations_of_equal_priority() {
    need_sipp();
    const BLOCK: u8 = 67;
    let second = format!("127.0.{BLOCK}.21");
    let keys = format!(
        "destinations = [ {{ host = \"127.0.{BLOCK}.20\", weight = 3 }}, \
         {{ host = \"{second}\", weight = 1 }} ]"
    );
    let lab = Lab::start_with_trunk(BLOCK, &keys, "");
    // Each provider ends on its own once the calls are done (`-timeout`), with its counts.
    let heavy = lab.sipp("heavy", "uas.xml", Peer::Trunk, None, &["-timeout", "14"]);
    let light = lab.sipp_on(
        "light",
        "uas.xml",
        (second, 5060),
        None,
        &["-timeout", "14"],
    );
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1000", "-r", "250"],
    );
    let r = uac.wait(Duration::from_secs(60));
    assert_eq!((r.successful, r.failed), (1000, 0), "{r:?}");
    let h = heavy.wait(Duration::from_secs(20));
    let l = light.wait(Duration::from_secs(20));
    // 3:1 of 1000: 750 ± 60 (about four standard deviations).
    assert!(
        (690..=810).contains(&h.successful),
        "heavy {} light {}",
        h.successful,
        l.successful
    );
    assert_eq!(h.successful + l.successful, 1000);
}

#[test]
fn keep_alive_skips_a_dead_destination_and_takes_it_back() {
    need_sipp();
    const BLOCK: u8 = 68;
    let second = format!("127.0.{BLOCK}.21");
    let keys = format!(
        "keepalive = true\nkeepalive_seconds = 1\ndestinations = [ \
         {{ host = \"127.0.{BLOCK}.20\", priority = 10 }}, {{ host = \"{second}\", priority = 20 }} ]"
    );
    // A short T1 so that an unanswered probe fails in 64 × T1 = 3.2 s.
    let text = config(BLOCK, &keys).replace("t1_ms = 500", "t1_ms = 50");
    let lab = Lab::start_with_text(LabAddrs::v4(BLOCK), Transport::Udp, &text);
    // Both answer probes at first.
    let first_probes = lab.sipp("first_probes", "uas_options.xml", Peer::Trunk, None, &[]);
    let probes = lab.sipp_on(
        "probes",
        "uas_options.xml",
        (second.clone(), 5060),
        None,
        &[],
    );
    wait_trunk(&lab, "both destinations probed", |t| {
        t["last_options"]
            .as_str()
            .is_some_and(|s| s.starts_with("200"))
            && t["destinations"]
                .as_array()
                .is_some_and(|d| d.iter().all(|d| !d.to_string().contains("(down)")))
    });
    // The first provider stops: it goes down, the trunk stays up on the second.
    let mut first_probes = first_probes;
    first_probes.kill();
    wait_trunk(&lab, "first destination down", |t| {
        t["destinations"][0]
            .as_str()
            .is_some_and(|d| d.ends_with("(down)"))
    });
    assert_eq!(trunks(&lab)[0]["status"], "up");
    let (_, text) = http("GET", &lab.admin(), "/metrics", None, "");
    let live = metric(
        &parse_prometheus(&text),
        "sluice_trunk_destinations_up",
        &[("trunk", "loop")],
    );
    assert_eq!(live, Some(1.0), "{text}");
    let mut probes = probes;
    probes.kill();
    let started = Instant::now();
    calls_complete_at(&lab, "second", &second, 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the dead destination was skipped, not waited for"
    );
    // The first comes back: probed again within the interval, up.
    let back = lab.sipp("back", "uas_options.xml", Peer::Trunk, None, &[]);
    wait_trunk(&lab, "first destination back", |t| {
        t["destinations"][0]
            .as_str()
            .is_some_and(|d| !d.ends_with("(down)"))
    });
    drop(back);
}

#[test]
fn a_trunk_at_its_call_limit_is_not_sent_another_call() {
    need_sipp();
    let lab = Lab::start_with_trunk(69, "max_calls = 2", "");
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-timeout", "8"]);
    // Three calls at once, each held for 2 s.
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "3", "-r", "20", "-d", "2000"],
    );
    let r = uac.wait(Duration::from_secs(20));
    assert_eq!((r.successful, r.failed), (2, 1), "{r:?}\n{}", lab.log());
    let t = uas.wait(Duration::from_secs(15));
    assert_eq!(
        t.successful, 2,
        "the third call never reached the trunk: {t:?}"
    );
}

/// dnsmasq as the provider's DNS: NAPTR, SRV and address records from its command line and a
/// hosts file it re-reads on SIGHUP.
struct Dnsmasq {
    child: Child,
    hosts: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    fn start(listen: &str, port: u16, records: &[&str], hosts: &str) -> Dnsmasq {
        let dir = tempfile::tempdir().expect("dir");
        let hosts_file = dir.path().join("hosts");
        std::fs::write(&hosts_file, hosts).unwrap();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
            ])
            .arg(format!("--listen-address={listen}"))
            .arg(format!("--port={port}"))
            .arg(format!("--addn-hosts={}", hosts_file.display()))
            // Short TTLs: Sluice looks again within a second or two.
            .args([
                "--local-ttl=1",
                "--pid-file=",
                "--user=root",
                "--log-facility=-",
            ])
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian package dnsmasq-base) is required for this test");
        Dnsmasq {
            child,
            hosts: hosts_file,
            _dir: dir,
        }
    }

    /// New address records, re-read at once (SIGHUP).
    fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).unwrap();
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_host_name_is_located_by_naptr_and_srv_and_followed_when_its_records_change() {
    need_sipp();
    const BLOCK: u8 = 70;
    let a = LabAddrs::v4(BLOCK);
    let ns = format!("127.0.{BLOCK}.53");
    let (first, second, moved) = (
        format!("127.0.{BLOCK}.20"),
        format!("127.0.{BLOCK}.21"),
        format!("127.0.{BLOCK}.22"),
    );
    let dns = Dnsmasq::start(
        &ns,
        5353,
        &[
            "--naptr-record=provider.test,10,10,S,SIP+D2U,,_sip._udp.provider.test",
            "--srv-host=_sip._udp.provider.test,sip1.provider.test,5060,10,1",
            "--srv-host=_sip._udp.provider.test,sip2.provider.test,5060,20,1",
        ],
        &format!("{first} sip1.provider.test\n{second} sip2.provider.test\n"),
    );
    // The trunk names only its domain: no port, no transport, no address.
    let text = Lab::config_for(&a, Transport::Udp).replace(
        &format!(
            "host = \"{}\"\nport = 5060\ntransport = \"udp\"",
            a.trunk_ip
        ),
        "host = \"provider.test\"",
    ) + &format!("\n[dns]\nservers = [\"{ns}:5353\"]\nrefresh_min_seconds = 1\n");
    assert!(text.contains("host = \"provider.test\""), "{text}");
    let lab = Lab::start_with_text(a.clone(), Transport::Udp, &text);
    let t = &trunks(&lab)[0];
    let dests = t["destinations"].to_string();
    assert!(
        dests.find(&first).unwrap() < dests.find(&second).unwrap(),
        "SRV priority order: {t}"
    );
    // The first SRV target refuses (503): the calls complete on the second.
    let refusing = lab.sipp_on(
        "first",
        "uas_unavailable.xml",
        (first.clone(), 5060),
        None,
        &["-m", "2"],
    );
    calls_complete_at(&lab, "second", &second, 2);
    assert_eq!(refusing.wait(Duration::from_secs(5)).successful, 2);

    // sip1 moves: Sluice looks again when the TTL ends and sends there.
    dns.set_hosts(&format!(
        "{moved} sip1.provider.test\n{second} sip2.provider.test\n"
    ));
    wait_trunk(&lab, "the new address of sip1", |t| {
        t["destinations"].to_string().contains(&moved)
    });
    calls_complete_at(&lab, "moved", &moved, 1);
    assert!(lab.log().contains("trunk addresses from DNS applied"));
}

/// RFC 5626 §4.4.1 keep-alive on a connection Sluice opened to a TCP trunk: after
/// `tcp_keepalive_seconds` of silence it sends a CRLF ping; a pong keeps the connection; a ping
/// left unanswered closes it within 10 s, as a transport error: the PBX gets its answer then,
/// not after Timer B. The provider here is the test's own socket, which answers pings or not.
#[test]
fn an_idle_connection_to_a_tcp_trunk_is_pinged_and_closed_when_the_peer_is_gone() {
    use std::io::Read;
    need_sipp();
    const BLOCK: u8 = 89;
    let provider = std::net::TcpListener::bind(format!("127.0.{BLOCK}.20:5060")).unwrap();
    let text = config(BLOCK, "")
        .replace(
            &format!("host = \"127.0.{BLOCK}.20\"\nport = 5060\ntransport = \"udp\""),
            &format!("host = \"127.0.{BLOCK}.20\"\nport = 5060\ntransport = \"tcp\""),
        )
        .replace("[sip]\n", "[sip]\ntcp_keepalive_seconds = 1\n");
    assert!(text.contains("tcp_keepalive_seconds = 1"), "{text}");
    let lab = Lab::start_with_text(LabAddrs::v4(BLOCK), Transport::Udp, &text);
    let uac = lab.sipp(
        "pbx",
        "uac_503.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1"],
    );
    let (mut conn, _) = provider.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    // The INVITE, whole: its head, then Content-Length bytes.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let invite_end = loop {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the INVITE");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(head) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= head + 4 + len {
                break head + 4 + len;
            }
        }
    };
    assert!(got.starts_with(b"INVITE "));
    let mut after: Vec<u8> = got.split_off(invite_end);
    // A ping after a second of silence; answered, another one a second later.
    let mut ping = |conn: &mut std::net::TcpStream| -> Duration {
        let started = Instant::now();
        while after.len() < 4 {
            let mut b = [0u8; 64];
            let n = conn.read(&mut b).unwrap_or(0);
            assert!(n > 0, "closed while waiting for a ping");
            after.extend_from_slice(&b[..n]);
        }
        assert_eq!(&after[..4], b"\r\n\r\n", "a CRLF ping");
        after.drain(..4);
        started.elapsed()
    };
    ping(&mut conn);
    std::io::Write::write_all(&mut conn, b"\r\n").unwrap();
    let waited = ping(&mut conn);
    assert!(
        waited >= Duration::from_millis(500),
        "pinged again only after a silence: {waited:?}"
    );
    // Now the provider is gone (it reads but never answers): Sluice closes the connection and
    // the call fails at once.
    let started = Instant::now();
    let mut b = [0u8; 64];
    let closed = loop {
        match conn.read(&mut b) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    assert!(closed, "Sluice closed the connection");
    assert!(
        started.elapsed() < Duration::from_secs(13),
        "{:?}",
        started.elapsed()
    );
    let r = uac.wait(Duration::from_secs(10));
    assert_eq!((r.successful, r.failed), (1, 0), "{r:?}\n{}", lab.log());
}
