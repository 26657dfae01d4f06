//! Operations: Prometheus metrics match a known run exactly, the admin API (with its token),
//! reload, log level, and a drain during a SIPp run.
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

use sluice_e2e::{http, metric, parse_prometheus, Lab, LabAddrs, Peer, Transport};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// Poll `check` until it holds (bounded); the admin API is the event source.
fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn json_number(body: &str, key: &str) -> Option<f64> {
    let at = body.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &body[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// `promtool check metrics` (Prometheus' own linter) on a scrape: every family described,
/// names and types as Prometheus expects.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus) is required");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_match_a_known_run() {
    let lab = Lab::start(20, Transport::Udp);
    let out = [("trunk", "loop"), ("direction", "outbound")];
    // Before any call: every family described, and the series alerts use already at zero.
    let (_, text) = http("GET", &lab.admin(), "/metrics", None, "");
    promtool_accepts(&text);
    let m = parse_prometheus(&text);
    for (name, labels) in [
        (
            "sluice_sip_retransmissions_total",
            vec![("kind", "request")],
        ),
        (
            "sluice_sip_transaction_timeouts_total",
            vec![("kind", "client")],
        ),
        (
            "sluice_calls_failed_total",
            vec![
                ("trunk", "loop"),
                ("direction", "outbound"),
                ("status_class", "5xx"),
            ],
        ),
        (
            "sluice_calls_failed_by_status_total",
            vec![
                ("trunk", "loop"),
                ("direction", "outbound"),
                ("status", "486"),
            ],
        ),
        ("sluice_guard_bans_total", vec![("reason", "flood")]),
        ("sluice_draining", vec![]),
    ] {
        assert_eq!(
            metric(&m, name, &labels),
            Some(0.0),
            "{name} {labels:?} at zero:\n{text}"
        );
    }
    assert!(
        metric(&m, "sluice_answer_seizure_ratio", &out).is_some_and(f64::is_nan),
        "no ratio before the first attempt"
    );
    assert_eq!(
        metric(&m, "sluice_build_info", &[("version", "0.1.0")]),
        Some(1.0)
    );
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    // 10 answered calls, then 5 refused with 486.
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "10"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "10", "-r", "20", "-d", "100"],
    );
    let r = uac.wait(LIMIT);
    assert_eq!((r.successful, r.failed), (10, 0), "{r:?}");
    uas.wait(Duration::from_secs(10));
    let uas = lab.sipp("uas_busy", "uas_busy.xml", Peer::Trunk, None, &["-m", "5"]);
    let uac = lab.sipp(
        "uac_busy",
        "uac_busy.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "5", "-r", "20"],
    );
    let r = uac.wait(LIMIT);
    assert_eq!((r.successful, r.failed), (5, 0), "{r:?}");
    uas.wait(Duration::from_secs(10));
    // Calls end when their last transaction settles; the admin API says when.
    wait_until("no active calls", Duration::from_secs(20), || {
        let (_, body) = http("GET", &lab.admin(), "/status", None, "");
        json_number(&body, "active_calls") == Some(0.0)
    });
    let (status, text) = http("GET", &lab.admin(), "/metrics", None, "");
    assert_eq!(status, 200);
    let m = parse_prometheus(&text);
    let get = |name: &str, labels: &[(&str, &str)]| {
        metric(&m, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing in:\n{text}"))
    };
    assert_eq!(get("sluice_calls_attempted_total", &out), 15.0);
    assert_eq!(get("sluice_calls_answered_total", &out), 10.0);
    assert_eq!(
        get(
            "sluice_calls_failed_total",
            &[
                ("trunk", "loop"),
                ("direction", "outbound"),
                ("status_class", "4xx")
            ]
        ),
        5.0
    );
    assert_eq!(get("sluice_calls_active", &out), 0.0);
    assert_eq!(
        get(
            "sluice_calls_attempted_total",
            &[("trunk", "loop"), ("direction", "inbound")]
        ),
        0.0
    );
    assert!((get("sluice_answer_seizure_ratio", &out) - 10.0 / 15.0).abs() < 1e-9);
    let mut busy = out.to_vec();
    busy.push(("status", "486"));
    assert_eq!(get("sluice_calls_failed_by_status_total", &busy), 5.0);
    promtool_accepts(&text);
    // Ringing came on the 10 answered calls only; 10 calls had a duration.
    assert_eq!(get("sluice_post_dial_delay_seconds_count", &out), 10.0);
    assert_eq!(get("sluice_call_duration_seconds_count", &out), 10.0);
    let mut inf = out.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(get("sluice_post_dial_delay_seconds_bucket", &inf), 10.0);
    // Messages, both sides, by peer: 15 INVITEs in from the PBX and out to the trunk, 10 BYEs
    // each way, ACKs for 10 answers and 5 refusals each way, 486 relayed 5 times.
    let req = |dir: &str, method: &str, peer: &str| {
        get(
            "sluice_sip_requests_total",
            &[("direction", dir), ("method", method), ("trunk", peer)],
        )
    };
    let resp = |dir: &str, status: &str, peer: &str| {
        get(
            "sluice_sip_responses_total",
            &[("direction", dir), ("status", status), ("trunk", peer)],
        )
    };
    for (method, n) in [("INVITE", 15.0), ("BYE", 10.0), ("ACK", 15.0)] {
        assert_eq!(req("received", method, "pbx"), n, "{method}");
        assert_eq!(req("sent", method, "loop"), n, "{method}");
        assert_eq!(req("received", method, "loop"), 0.0, "{method}");
        assert_eq!(req("sent", method, "pbx"), 0.0, "{method}");
    }
    assert_eq!(resp("received", "486", "loop"), 5.0);
    assert_eq!(resp("sent", "486", "pbx"), 5.0);
    assert_eq!(resp("received", "180", "loop"), 10.0);
    assert_eq!(resp("sent", "180", "pbx"), 10.0);
    // 200s: 10 to INVITE and 10 to BYE, each way; the readiness probes' OPTIONS came from an
    // address that is neither the PBX nor a trunk.
    assert_eq!(resp("received", "200", "loop"), 20.0);
    assert_eq!(resp("sent", "200", "pbx"), 20.0);
    assert!(resp("sent", "200", "unknown") >= 2.0);
    assert!(req("received", "OPTIONS", "unknown") >= 2.0);
    assert_eq!(get("sluice_trunk_up", &[("trunk", "loop")]), 1.0);
    // One line per call when it ends, with both legs' Call-IDs (the PBX's as SIPp wrote it).
    let log = lab.log();
    let ended: Vec<&str> = log.lines().filter(|l| l.contains("call ended")).collect();
    assert_eq!(ended.len(), 15, "{log}");
    assert_eq!(
        ended.iter().filter(|l| l.contains("status=200")).count(),
        10
    );
    assert_eq!(ended.iter().filter(|l| l.contains("status=486")).count(), 5);
    for l in &ended {
        assert!(
            l.contains("caller_call_id=") && l.contains("callee_call_id="),
            "{l}"
        );
        assert!(l.contains("@127.0.20.10"), "the PBX's own Call-ID: {l}");
    }
    // Every series the Grafana dashboard queries exists.
    let dashboard =
        std::fs::read_to_string(sluice_e2e::repo_root().join("examples/grafana-dashboard.json"))
            .unwrap();
    for piece in dashboard.split("sluice_").skip(1) {
        let name: String = piece
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let family = format!("sluice_{name}");
        assert!(
            m.iter().any(|s| s.name == family),
            "the dashboard queries {family}, which is not exported"
        );
    }
    // No Call-ID, tag or number ever appears as a label value.
    for s in &m {
        for v in s.labels.values() {
            assert!(
                !v.contains("SIPp") && !v.contains("1555") && !v.contains('@'),
                "{s:?}"
            );
        }
    }
}

const TOKEN: &str = "test-token-0123456789abcdef";

fn token_lab(block: u8) -> Lab {
    let addrs = LabAddrs::v4(block);
    let text = Lab::config_for(&addrs, Transport::Udp).replace(
        "drain_seconds = 30",
        &format!("drain_seconds = 30\ntoken = \"{TOKEN}\""),
    );
    Lab::start_with_text(addrs, Transport::Udp, &text)
}

fn sha256_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn admin_api_end_to_end_with_token() {
    let mut lab = token_lab(22);
    let a = lab.admin();
    // The token is checked on every route but the probes'.
    for path in [
        "/status",
        "/trunks",
        "/calls",
        "/metrics",
        "/registrations",
        "/plugins",
    ] {
        assert_eq!(
            http("GET", &a, path, None, "").0,
            401,
            "{path} without a token"
        );
        assert_eq!(
            http("GET", &a, path, Some("wrong-token-0123456789"), "").0,
            401,
            "{path}"
        );
        assert_eq!(
            http("GET", &a, path, Some(TOKEN), "").0,
            200,
            "{path} with the token"
        );
    }
    assert_eq!(http("POST", &a, "/drain", None, "").0, 401);
    assert_eq!(http("POST", &a, "/reload", None, "").0, 401);
    assert_eq!(
        http("GET", &a, "/health", None, "").0,
        200,
        "probes need no token"
    );
    let t = Some(TOKEN);
    assert_eq!(http("GET", &a, "/health", t, ""), (200, "ok\n".to_string()));
    assert_eq!(http("GET", &a, "/ready", t, "").0, 200);
    let (_, status) = http("GET", &a, "/status", t, "");
    assert!(
        status.contains(&format!(
            "\"config_hash\":\"{}\"",
            sha256_of(&lab.config_path)
        )),
        "{status}"
    );
    assert!(status.contains("\"draining\":false"), "{status}");
    let (_, trunks) = http("GET", &a, "/trunks", t, "");
    assert!(
        trunks.contains("\"name\":\"loop\"") && trunks.contains("\"status\":\"online\""),
        "{trunks}"
    );
    assert_eq!(http("GET", &a, "/calls", t, ""), (200, "[]".to_string()));

    // A good reload: a second trunk appears, the hash follows the file.
    let text = std::fs::read_to_string(&lab.config_path).unwrap();
    let added = text.replace(
        "[routing]",
        "[[trunk]]\nname = \"backup\"\nhost = \"127.0.22.21\"\n\n[routing]",
    );
    std::fs::write(&lab.config_path, &added).unwrap();
    let (code, body) = http("POST", &a, "/reload", t, "");
    assert_eq!(code, 200, "{body}");
    let good_hash = sha256_of(&lab.config_path);
    assert!(body.contains(&good_hash), "{body}");
    let (_, trunks) = http("GET", &a, "/trunks", t, "");
    assert!(trunks.contains("\"name\":\"backup\""), "{trunks}");

    // A bad reload is refused with file:line, and the running configuration stays.
    let bad = added.replace("[pbx]\n", "[pbx]\ncolour = \"blue\"\n");
    let line = bad.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    std::fs::write(&lab.config_path, &bad).unwrap();
    let (code, body) = http("POST", &a, "/reload", t, "");
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains(&format!("sluice.toml:{line}:")) && body.contains("colour"),
        "{body}"
    );
    let (_, status) = http("GET", &a, "/status", t, "");
    assert!(status.contains(&good_hash), "running hash kept: {status}");
    let (_, m) = http("GET", &a, "/metrics", t, "");
    let m = parse_prometheus(&m);
    assert_eq!(
        metric(&m, "sluice_config_reloads_total", &[("result", "success")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "sluice_config_reloads_total", &[("result", "failure")]),
        Some(1.0)
    );
    // Calls still go through on the running configuration.
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "3"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "3", "-r", "10"],
    );
    let r = uac.wait(LIMIT);
    assert_eq!((r.successful, r.failed), (3, 0), "{r:?}");
    uas.wait(Duration::from_secs(10));

    // Log level at run time.
    assert_eq!(http("PUT", &a, "/log", t, "debug").0, 200);
    assert_eq!(http("PUT", &a, "/log", t, "sluice=[[[").0, 400);

    // A drain deadline beyond the range is refused, and nothing changes.
    let (code, body) = http("POST", &a, "/drain?deadline=18446744073709551615", t, "");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("0 to 86400"), "{body}");
    assert_eq!(http("POST", &a, "/drain?deadline=86401", t, "").0, 400);
    assert_eq!(http("GET", &a, "/ready", t, "").0, 200);
    // Drain through the API: with no call in progress, Sluice drains at once and exits cleanly
    // (not a crash: the status and the log say so).
    assert_eq!(http("POST", &a, "/drain?deadline=5", t, "").0, 202);
    let status = lab
        .wait_exit(Duration::from_secs(10))
        .expect("sluice exits once drained");
    assert!(status.success(), "{status:?}\n{}", lab.log());
    let log = lab.log();
    assert!(
        log.contains("draining: new calls are refused") && log.contains("drained: no calls left"),
        "{log}"
    );
}

#[test]
fn reload_applies_a_rotated_token_and_refuses_restart_only_changes() {
    let lab = token_lab(23);
    let a = lab.admin();
    const NEW: &str = "rotated-token-abcdefghijklmnop";
    let text = std::fs::read_to_string(&lab.config_path).unwrap();
    // Rotate the token: the reload is authorised by the old one, then only the new one works.
    std::fs::write(&lab.config_path, text.replace(TOKEN, NEW)).unwrap();
    let (code, body) = http("POST", &a, "/reload", Some(TOKEN), "");
    assert_eq!(code, 200, "{body}");
    assert_eq!(http("GET", &a, "/status", Some(TOKEN), "").0, 401);
    assert_eq!(http("GET", &a, "/status", Some(NEW), "").0, 200);
    let (_, status) = http("GET", &a, "/status", Some(NEW), "");
    assert!(status.contains(&sha256_of(&lab.config_path)), "{status}");
    // Changes that need a restart are refused, each named; the running configuration stays.
    let rotated = text.replace(TOKEN, NEW);
    let cases = [
        (
            rotated.replace(&format!("listen = \"{a}\""), "listen = \"127.0.23.1:9061\""),
            vec!["admin.listen"],
        ),
        (
            rotated.replace("t1_ms = 500", "t1_ms = 500\nmax_message_bytes = 4096"),
            vec!["sip.max_message_bytes"],
        ),
        (
            format!("{rotated}\n[metrics]\nlisten = \"127.0.23.1:9090\"\n"),
            vec!["metrics.listen"],
        ),
        (
            rotated.replacen("5080\" }", "5082\" }", 1),
            vec!["external.listen"],
        ),
        (
            format!("{rotated}\n[plugins]\nwatch = false\nmemory_mb = 32\n"),
            vec!["plugins.memory_mb", "plugins.watch"],
        ),
    ];
    for (changed, keys) in cases {
        assert_ne!(changed, rotated, "{keys:?}: the case changes nothing");
        std::fs::write(&lab.config_path, &changed).unwrap();
        let (code, body) = http("POST", &a, "/reload", Some(NEW), "");
        assert_eq!(code, 422, "{keys:?}: {body}");
        for k in &keys {
            assert!(body.contains(k), "{k}: {body}");
        }
        assert!(body.contains("restart"), "{body}");
        assert_eq!(http("GET", &a, "/health", Some(NEW), "").0, 200);
    }
    // The timers and the drain deadline apply on reload (they are not restart-only).
    std::fs::write(
        &lab.config_path,
        rotated
            .replace("t1_ms = 500", "t1_ms = 250")
            .replace("drain_seconds = 30", "drain_seconds = 7"),
    )
    .unwrap();
    let (code, body) = http("POST", &a, "/reload", Some(NEW), "");
    assert_eq!(code, 200, "{body}");
    assert!(
        lab.log().contains("admin settings changed"),
        "{}",
        lab.log()
    );
}

#[test]
fn drain_lets_established_calls_finish_and_refuses_new_ones() {
    let mut lab = Lab::start(21, Transport::Udp);
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "10"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "10", "-r", "20", "-d", "3000"],
    );
    wait_until("10 calls up", Duration::from_secs(20), || {
        let (_, body) = http("GET", &lab.admin(), "/calls", None, "");
        body.matches("\"established\"").count() == 10
    });
    // SIGTERM: drain.
    let pid = lab.sluice_pid().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    wait_until("draining", Duration::from_secs(5), || {
        http("GET", &lab.admin(), "/ready", None, "").0 == 503
    });
    // New calls are refused with 503 and Retry-After.
    let late = lab.sipp(
        "late",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "5", "-r", "10", "-p", "5070"],
    );
    let late = late.wait(LIMIT);
    assert_eq!((late.successful, late.failed), (0, 5), "{late:?}");
    assert!(late.errors.contains("503"), "{}", late.errors);
    // The established calls finish normally.
    let r = uac.wait(LIMIT);
    assert_eq!((r.successful, r.failed), (10, 0), "{r:?}");
    assert_eq!(uas.wait(Duration::from_secs(10)).successful, 10);
    // With no calls left, Sluice exits by itself, successfully.
    let status = lab
        .wait_exit(Duration::from_secs(15))
        .expect("sluice exits once drained");
    assert!(status.success(), "{status:?}\n{}", lab.log());
    assert!(
        lab.log().contains("drained: no calls left"),
        "{}",
        lab.log()
    );
}

/// Calls still ringing when the drain deadline passes end properly on both legs: the PBX gets
/// 503, the trunk a CANCEL (answered 487), and Sluice exits, successfully, once nothing is left.
#[test]
fn a_drain_ends_ringing_calls_on_both_legs() {
    let mut lab = Lab::start(23, Transport::Udp);
    let uas = lab.sipp("uas", "uas_cancelled.xml", Peer::Trunk, None, &["-m", "3"]);
    let uac = lab.sipp(
        "uac",
        "uac_503.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "3", "-r", "10"],
    );
    wait_until("3 calls ringing", Duration::from_secs(20), || {
        let (_, body) = http("GET", &lab.admin(), "/calls", None, "");
        body.matches("\"proceeding\"").count() == 3
    });
    assert_eq!(
        http("POST", &lab.admin(), "/drain?deadline=1", None, "").0,
        202
    );
    let r = uac.wait(LIMIT);
    assert_eq!(
        (r.successful, r.failed),
        (3, 0),
        "the PBX got 503: {r:?}\n{}",
        lab.log()
    );
    let t = uas.wait(Duration::from_secs(20));
    assert_eq!(
        (t.successful, t.failed),
        (3, 0),
        "the trunk got CANCEL: {t:?}"
    );
    let status = lab
        .wait_exit(Duration::from_secs(15))
        .expect("sluice exits once the calls are over");
    assert!(status.success(), "{status:?}\n{}", lab.log());
    assert!(
        lab.log().contains("drained: no calls left"),
        "{}",
        lab.log()
    );
}

/// A raw HTTP/1.1 request with `headers`; the status.
fn raw_status(addr: &str, method: &str, path: &str, headers: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let host = if headers.starts_with("Host:") {
        String::new()
    } else {
        format!("Host: {addr}\r\n")
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\n{host}{headers}Connection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The admin API as the network meets it: load-balancer probes need no token, the scheme is
/// case-insensitive, a browser's cross-origin POST cannot change anything on a tokenless
/// (loopback) API, and a source guessing tokens is turned away with 429 after 20 failures a
/// minute, reported in a handful of log lines.
#[test]
fn admin_api_probes_open_origins_refused_and_token_guessing_limited() {
    let open = Lab::start(24, Transport::Udp);
    let a = open.admin();
    let evil = "Origin: http://evil.example\r\n";
    assert_eq!(raw_status(&a, "POST", "/reload", evil), 403);
    assert_eq!(raw_status(&a, "PUT", "/log", evil), 403);
    assert_eq!(
        raw_status(&a, "GET", "/status", evil),
        200,
        "reading is harmless"
    );
    assert_eq!(raw_status(&a, "POST", "/reload", ""), 200);
    // DNS rebinding: a page that points its own name at 127.0.0.1 sends that name as Host.
    let rebound = "Host: attacker.example\r\n";
    assert_eq!(raw_status(&a, "GET", "/calls", rebound), 403);

    let lab = token_lab(25);
    let a = lab.admin();
    assert_eq!(raw_status(&a, "GET", "/health", ""), 200);
    assert_eq!(raw_status(&a, "GET", "/ready", ""), 200);
    let auth = |scheme: &str, token: &str| format!("Authorization: {scheme} {token}\r\n");
    assert_eq!(
        raw_status(&a, "GET", "/status", &auth("bearer", TOKEN)),
        200
    );
    assert_eq!(
        raw_status(&a, "GET", "/status", &auth("BEARER", TOKEN)),
        200
    );
    assert_eq!(raw_status(&a, "GET", "/status", &auth("Basic", TOKEN)), 401);
    let mut statuses = Vec::new();
    for i in 0..30 {
        statuses.push(raw_status(
            &a,
            "GET",
            "/status",
            &auth("Bearer", &format!("guess-{i:020}")),
        ));
    }
    assert!(statuses[..19].iter().all(|&s| s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|&s| s == 429), "{statuses:?}");
    assert_eq!(
        raw_status(&a, "GET", "/status", &auth("Bearer", TOKEN)),
        200,
        "the right token still passes: a neighbour guessing cannot lock the operator out"
    );
    let log = lab.log();
    let warnings = log.matches("missing or wrong token").count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings:\n{log}");
}

/// Under systemd (`Type=notify`), as a real notify socket hears it: READY once Sluice listens,
/// WATCHDOG pings while the engine answers, RELOADING then READY around a reload, STOPPING when
/// a drain starts through the admin API.
#[test]
fn systemd_hears_ready_watchdog_reload_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let a = LabAddrs::v4(26);
    let text = Lab::config_for(&a, Transport::Udp);
    let path_text = path.to_string_lossy().into_owned();
    let mut lab = Lab::start_with_env(
        a,
        Transport::Udp,
        &text,
        &[("NOTIFY_SOCKET", &path_text), ("WATCHDOG_USEC", "200000")],
    );
    // Everything the socket heard until `want` arrived (or 10 s passed).
    let mut heard = String::new();
    let until = |want: &str, heard: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 1024];
        while Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                heard.push_str(&msg);
                heard.push('\n');
                if msg.contains(want) {
                    return true;
                }
            }
        }
        false
    };
    assert!(until("READY=1", &mut heard), "{heard}");
    for _ in 0..3 {
        assert!(until("WATCHDOG=1", &mut heard), "{heard}");
    }
    assert_eq!(http("POST", &lab.admin(), "/reload", None, "").0, 200);
    assert!(until("RELOADING=1", &mut heard), "{heard}");
    assert!(heard.contains("MONOTONIC_USEC="), "{heard}");
    assert!(until("READY=1", &mut heard), "{heard}");
    assert_eq!(
        http("POST", &lab.admin(), "/drain?deadline=5", None, "").0,
        202
    );
    assert!(until("STOPPING=1", &mut heard), "{heard}");
    assert!(lab
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
}

/// The admin API over TLS: a client that trusts the certificate gets its answers (curl, an
/// independent TLS stack), plain HTTP gets nothing, and `sluice check` names a key that is not
/// the certificate's.
#[test]
fn admin_api_over_tls() {
    let keys = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let ok = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=sluice-admin"])
            .args(["-addext", "subjectAltName=IP:127.0.27.1"])
            .arg("-keyout")
            .arg(keys.path().join(format!("{name}.key")))
            .arg("-out")
            .arg(keys.path().join(format!("{name}.crt")))
            .output()
            .expect("openssl");
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    };
    make("admin");
    make("other");
    let a = LabAddrs::v4(27);
    let text = Lab::config_for(&a, Transport::Udp).replace(
        "drain_seconds = 30",
        "drain_seconds = 30\ntls_certificate = \"admin.crt\"\ntls_key = \"admin.key\"",
    );
    let (crt, key, other) = (
        keys.path().join("admin.crt"),
        keys.path().join("admin.key"),
        keys.path().join("other.key"),
    );
    let lab = Lab::start_relative(
        a,
        Transport::Udp,
        &text,
        &[
            ("admin.crt", &crt),
            ("admin.key", &key),
            ("other.key", &other),
        ],
    );
    let curl = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(&crt)
            .arg(format!("https://127.0.27.1:9060{path}"))
            .output()
            .expect("curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(curl("/health"), (true, "ok\n".to_string()));
    let (ok, status) = curl("/status");
    assert!(ok && status.contains("\"draining\":false"), "{status}");
    assert_ne!(
        http("GET", &lab.admin(), "/health", None, "").0,
        200,
        "no plain HTTP"
    );
    // A key that is not the certificate's is named by `sluice check`.
    let wrong = lab.dir.path().join("wrong.toml");
    std::fs::write(&wrong, text.replace("admin.key", "other.key")).unwrap();
    let out = std::process::Command::new(sluice_e2e::sluice_bin())
        .args(["check", "--config"])
        .arg(&wrong)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("admin.crt"), "{err}");
}

/// Ends a process the test started indirectly (an upgrade's new process), whatever happens.
struct EndOnDrop(u32);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

/// The pid of the process answering the admin API once it is not `old` (an upgrade's).
fn new_process(lab: &Lab, old: u32) -> u32 {
    let mut new = None;
    wait_until("the new process answering", LIMIT, || {
        let (_, body) = http("GET", &lab.admin(), "/status", None, "");
        new = json_number(&body, "pid")
            .map(|p| p.to_string().parse::<u32>().unwrap_or(0))
            .filter(|&p| p != old && p != 0);
        new.is_some()
    });
    new.unwrap_or_default()
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// A seamless upgrade under load: SIGUSR2 starts the program again; the new process takes the
/// listening sockets and new calls, the old one finishes the calls it had (their BYEs reach it
/// through the new one) and exits. Calls before, during and after: none fails.
#[test]
fn an_upgrade_under_load_fails_no_call() {
    use std::os::unix::net::UnixDatagram;
    // systemd's notification socket: the new process must say it is the main process now.
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_nonblocking(true).unwrap();
    let heard = || {
        let mut all = String::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = sock.recv(&mut buf) {
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            all.push('\n');
        }
        all
    };
    let a = LabAddrs::v4(42);
    let text = Lab::config_for(&a, Transport::Udp);
    let notify = notify.to_string_lossy().into_owned();
    let mut lab = Lab::start_with_env(a, Transport::Udp, &text, &[("NOTIFY_SOCKET", &notify)]);
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "240"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "240", "-r", "20", "-d", "4000"],
    );
    wait_until("calls up before the upgrade", LIMIT, || {
        let (_, body) = http("GET", &lab.admin(), "/calls", None, "");
        body.matches("\"established\"").count() >= 40
    });
    let old = lab.sluice_pid().unwrap();
    std::process::Command::new("kill")
        .args(["-USR2", &old.to_string()])
        .status()
        .unwrap();
    let new = new_process(&lab, old);
    let _end = EndOnDrop(new);
    let mut notes = String::new();
    wait_until("the new process's MAINPID and READY", LIMIT, || {
        notes.push_str(&heard());
        notes.contains(&format!("MAINPID={new}\nREADY=1"))
    });
    let log = lab.log();
    let handed = log
        .lines()
        .find(|l| l.contains("handed over: the new process reads the sockets"))
        .unwrap_or_else(|| panic!("{log}"));
    let calls_then: usize = handed
        .split("calls=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{handed}"));
    assert!(
        calls_then >= 40,
        "the old process had calls to finish: {handed}"
    );
    // Every call completes: the ones the old process finishes and the new process's.
    let r = uac.wait(LIMIT);
    assert_eq!((r.successful, r.failed), (240, 0), "{r:?}\n{}", lab.log());
    assert_eq!(uas.wait(Duration::from_secs(10)).successful, 240);
    // The old process exits by itself once its calls are over, successfully.
    let status = lab
        .wait_exit(Duration::from_secs(30))
        .expect("the old process exits once its calls are over");
    assert!(status.success(), "{status:?}\n{}", lab.log());
    assert!(lab.log().contains("handed over and no call left: exiting"));
    notes.push_str(&heard());
    assert!(
        !notes.contains("STOPPING"),
        "the old process's exit is no stop: {notes}"
    );
    wait_until("the new process hears the old one is gone", LIMIT, || {
        lab.log().contains("the old process finished its calls")
    });
    // The new process took calls during the run, and takes more after it.
    let (_, body) = http("GET", &lab.admin(), "/status", None, "");
    let taken = json_number(&body, "calls_attempted").unwrap_or(0.0);
    assert!((1.0..240.0).contains(&taken), "{body}");
    let uas = lab.sipp("uas2", "uas.xml", Peer::Trunk, None, &["-m", "5"]);
    let uac = lab.sipp(
        "uac2",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "5", "-r", "10"],
    );
    let r = uac.wait(LIMIT);
    assert_eq!((r.successful, r.failed), (5, 0), "{r:?}\n{}", lab.log());
    assert_eq!(uas.wait(Duration::from_secs(10)).successful, 5);
    // A drain of the new process ends it as usual.
    std::process::Command::new("kill")
        .args(["-TERM", &new.to_string()])
        .status()
        .unwrap();
    wait_until("the new process exits", LIMIT, || !pid_alive(new));
}

/// An upgrade whose new process cannot start (its configuration is broken now) leaves the old
/// process serving: it says why, and calls go on.
#[test]
fn a_failed_upgrade_leaves_the_running_process_serving() {
    let lab = Lab::start(43, Transport::Udp);
    std::fs::write(&lab.config_path, "[sip\nbroken").unwrap();
    let pid = lab.sluice_pid().unwrap();
    std::process::Command::new("kill")
        .args(["-USR2", &pid.to_string()])
        .status()
        .unwrap();
    wait_until("the upgrade's failure", LIMIT, || {
        lab.log()
            .contains("upgrade failed, this process goes on serving")
    });
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "3"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "3", "-r", "10"],
    );
    let r = uac.wait(LIMIT);
    assert_eq!((r.successful, r.failed), (3, 0), "{r:?}\n{}", lab.log());
    assert_eq!(uas.wait(Duration::from_secs(10)).successful, 3);
    let (_, body) = http("GET", &lab.admin(), "/status", None, "");
    assert_eq!(json_number(&body, "pid"), Some(f64::from(pid)), "{body}");
}

/// A trunk a reload removes leaves the scrape (no `sluice_trunk_up` or call series of a trunk
/// that no longer exists), and the scrape stays valid for Prometheus.
#[test]
fn a_trunk_removed_by_a_reload_leaves_the_scrape() {
    let a = LabAddrs::v4(44);
    let base = Lab::config_for(&a, Transport::Udp);
    let with_spare = format!(
        "{base}\n[[trunk]]\nname = \"spare\"\nhost = \"127.0.44.30\"\nport = 5060\n\
         transport = \"udp\"\n"
    );
    let lab = Lab::start_with_text(a, Transport::Udp, &with_spare);
    let scrape = || http("GET", &lab.admin(), "/metrics", None, "").1;
    let before = scrape();
    assert!(
        before.contains("sluice_trunk_up{trunk=\"spare\"}"),
        "{before}"
    );
    assert!(before.contains("sluice_calls_attempted_total{trunk=\"spare\""));
    std::fs::write(&lab.config_path, &base).unwrap();
    assert_eq!(http("POST", &lab.admin(), "/reload", None, "").0, 200);
    let after = scrape();
    assert!(!after.contains("trunk=\"spare\""), "{after}");
    assert!(after.contains("sluice_trunk_up{trunk=\"loop\"}"), "{after}");
    promtool_accepts(&after);
}

/// An upgrade with no call in progress (the usual off-peak case): the old process still hands
/// over before it exits, and the new one serves.
#[test]
fn an_upgrade_with_no_call_hands_over_before_the_old_process_exits() {
    let mut lab = Lab::start(47, Transport::Udp);
    let old = lab.sluice_pid().unwrap();
    std::process::Command::new("kill")
        .args(["-USR2", &old.to_string()])
        .status()
        .unwrap();
    let status = lab
        .wait_exit(LIMIT)
        .expect("the old process exits once handed over");
    assert!(status.success(), "{status:?}\n{}", lab.log());
    let new = new_process(&lab, old);
    let _end = EndOnDrop(new);
    assert!(pid_alive(new), "{}", lab.log());
    let uas = lab.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "3"]);
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "3", "-r", "10"],
    );
    let r = uac.wait(LIMIT);
    assert_eq!((r.successful, r.failed), (3, 0), "{r:?}\n{}", lab.log());
    assert_eq!(uas.wait(Duration::from_secs(10)).successful, 3);
}
