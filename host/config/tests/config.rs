//! Parsing and validating whole configurations: the bundled default, errors with their line,
//! and each section's refusals.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects
)]

use sluice_config::*;

#[test]
fn bundled_default_is_valid() {
    let c = Config::bundled().unwrap();
    assert_eq!(c.routing.outbound_trunk.unwrap().get_ref(), "loop");
    assert_eq!(c.pbx.host.get_ref(), "127.0.0.10");
}

#[test]
fn unknown_key_is_an_error_with_line() {
    let text = DEFAULT_CONFIG.replace("[pbx]\n", "[pbx]\ncolour = \"blue\"\n");
    let e = Config::parse(&text, "lab.toml").unwrap_err();
    let line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    assert_eq!(e.line, Some(line));
    assert!(e.message.contains("colour"), "{e}");
    assert!(e.to_string().starts_with(&format!("lab.toml:{line}:")));
}

#[test]
fn the_metrics_peer_labels_are_no_trunk_names() {
    for name in ["pbx", "unknown"] {
        let text = DEFAULT_CONFIG
            .replace("name = \"loop\"", &format!("name = \"{name}\""))
            .replace(
                "outbound_trunk = \"loop\"",
                &format!("outbound_trunk = \"{name}\""),
            );
        let e = Config::parse(&text, "lab.toml").unwrap_err();
        assert!(e.message.contains("reserved"), "{e}");
    }
}

#[test]
fn unknown_trunk_in_route_is_named() {
    let text = DEFAULT_CONFIG.replace("outbound_trunk = \"loop\"", "outbound_trunk = \"nope\"");
    let e = Config::parse(&text, "lab.toml").unwrap_err();
    assert!(e.message.contains("nope"), "{e}");
    let line = text.lines().position(|l| l.contains("\"nope\"")).unwrap() + 1;
    assert_eq!(e.line, Some(line));
}

#[test]
fn bad_listen_address() {
    let text =
        DEFAULT_CONFIG.replacen("address = \"127.0.0.1:5060\"", "address = \"127.0.0.1\"", 1);
    let e = Config::parse(&text, "lab.toml").unwrap_err();
    assert!(e.message.contains("not an IP address"), "{e}");
    assert!(e.line.is_some());
}

#[test]
fn admin_off_loopback_needs_a_token() {
    let text = DEFAULT_CONFIG.replace("listen = \"127.0.0.1:9060\"", "listen = \"0.0.0.0:9060\"");
    assert_ne!(text, DEFAULT_CONFIG);
    let e = Config::parse(&text, "lab.toml").unwrap_err();
    assert!(e.message.contains("admin.token"), "{e}");
    let with_token = text.replace(
        "listen = \"0.0.0.0:9060\"",
        "listen = \"0.0.0.0:9060\"\ntoken = \"0123456789abcdef0123\"",
    );
    assert!(Config::parse(&with_token, "lab.toml").is_ok());
}

#[test]
fn plugins_and_chains() {
    let text = DEFAULT_CONFIG
        .replace(
            "brand = \"generic\"",
            "brand = \"twilio\"\noutbound_rules = [\"tel-uri-request\", \"acme\"]",
        )
        .replace(
            "[routing]",
            "[plugin.acme]\nmodule = \"header-rules\"\npolicy = \"fail-closed\"\n\
             settings = { rules = [\"add X-A: 1\"], n = 3 }\n\n[routing]",
        );
    let c = Config::parse(&text, "lab.toml").unwrap();
    let t = c.trunk("loop").unwrap();
    assert_eq!(t.brand.get_ref(), "twilio");
    assert_eq!(t.outbound_rules.len(), 2);
    let acme = &c.plugin["acme"];
    assert_eq!(acme.policy, Some(Policy::FailClosed));
    let s = acme.setting_lists();
    assert_eq!(s["rules"], ["add X-A: 1"]);
    assert_eq!(s["n"], ["3"]);
    // The default brand is generic.
    assert_eq!(
        Config::bundled().unwrap().trunks[0].brand.get_ref(),
        "generic"
    );
    let bad = text.replace("policy = \"fail-closed\"", "policy = \"sometimes\"");
    let e = Config::parse(&bad, "lab.toml").unwrap_err();
    assert!(e.line.is_some() && e.message.contains("sometimes"), "{e}");
    let bad = text.replace("n = 3", "n = { deep = 1 }");
    assert!(Config::parse(&bad, "lab.toml").is_err());
}

#[test]
fn every_number_is_bounded_and_named() {
    // (replace this, with that) → an error naming `key`; the value one inside the range works.
    let cases: &[(&str, &str, &str, &str)] = &[
        ("t1_ms = 500", "t1_ms = 0", "t1_ms = 4000", "sip.t1_ms"),
        (
            "t1_ms = 500",
            "t1_ms = 18446744073709551615",
            "t1_ms = 1",
            "sip.t1_ms",
        ),
        (
            "t1_ms = 500",
            "t1_ms = 500\nt2_ms = 400",
            "t1_ms = 500\nt2_ms = 500",
            "sip.t2_ms",
        ),
        (
            "t1_ms = 500",
            "t1_ms = 500\nt2_ms = 60001",
            "t1_ms = 500\nt2_ms = 60000",
            "sip.t2_ms",
        ),
        (
            "t1_ms = 500",
            "t1_ms = 500\nt4_ms = 0",
            "t1_ms = 500\nt4_ms = 60000",
            "sip.t4_ms",
        ),
        (
            "max_message_bytes = 65535",
            "max_message_bytes = 18446744073709551615",
            "max_message_bytes = 1024",
            "sip.max_message_bytes",
        ),
        (
            "max_message_bytes = 65535",
            "max_message_bytes = 65536",
            "max_message_bytes = 65535",
            "sip.max_message_bytes",
        ),
        (
            "max_calls = 10000",
            "max_calls = 0",
            "max_calls = 1",
            "sip.max_calls",
        ),
        (
            "max_calls = 10000",
            "max_calls = 10000001",
            "max_calls = 10000",
            "sip.max_calls",
        ),
        (
            "port = 5060\ntransport = \"udp\"\n\n[[trunk]]",
            "port = 0\ntransport = \"udp\"\n\n[[trunk]]",
            "port = 1\ntransport = \"udp\"\n\n[[trunk]]",
            "pbx.port",
        ),
        (
            "drain_seconds = 30",
            "drain_seconds = 18446744073709551615",
            "drain_seconds = 86400",
            "admin.drain_seconds",
        ),
        (
            "drain_seconds = 30",
            "drain_seconds = 86401",
            "drain_seconds = 0",
            "admin.drain_seconds",
        ),
        (
            "[routing]",
            "[plugins]\ndeadline_ms = 1001\n\n[routing]",
            "[plugins]\ndeadline_ms = 1000\n\n[routing]",
            "plugins.deadline_ms",
        ),
        (
            "[routing]",
            "[plugins]\ndeadline_ms = 18446744073709551615\n\n[routing]",
            "[plugins]\ndeadline_ms = 1\n\n[routing]",
            "plugins.deadline_ms",
        ),
        (
            "[routing]",
            "[plugin.x]\ndeadline_ms = 5000\n\n[routing]",
            "[plugin.x]\ndeadline_ms = 1000\n\n[routing]",
            "plugin.x.deadline_ms",
        ),
        (
            "[routing]",
            "[plugins]\nmemory_mb = 4097\n\n[routing]",
            "[plugins]\nmemory_mb = 4096\n\n[routing]",
            "plugins.memory_mb",
        ),
        (
            "[routing]",
            "[plugins]\nmax_instances = 0\n\n[routing]",
            "[plugins]\nmax_instances = 100000\n\n[routing]",
            "plugins.max_instances",
        ),
    ];
    for (from, bad, good, key) in cases {
        assert!(DEFAULT_CONFIG.contains(from), "{from}");
        let text = DEFAULT_CONFIG.replacen(from, bad, 1);
        let e = Config::parse(&text, "lab.toml").expect_err(bad);
        assert!(e.message.contains(key), "{bad}: {e}");
        let text = DEFAULT_CONFIG.replacen(from, good, 1);
        if let Err(e) = Config::parse(&text, "lab.toml") {
            panic!("{good}: {e}");
        }
    }
    // The upper bound of max_calls, where no media is anchored (a call anchors a port pair
    // on each side, and a range holds at most 32,767).
    let unanchored = DEFAULT_CONFIG.replace(
        "brand = \"generic\"",
        "brand = \"generic\"\nmedia = \"signalling-only\"",
    );
    let most = unanchored.replace("max_calls = 10000", "max_calls = 10000000");
    if let Err(e) = Config::parse(&most, "lab.toml") {
        panic!("{e}");
    }
    let bad_agent = DEFAULT_CONFIG.replace("user_agent = \"Sluice\"", "user_agent = \"a\\u0000b\"");
    let e = Config::parse(&bad_agent, "lab.toml").unwrap_err();
    assert!(e.message.contains("sip.user_agent"), "{e}");
}

#[test]
fn media_ranges_are_checked_against_each_other_the_listeners_and_max_calls() {
    let with_media = |media: &str| {
        DEFAULT_CONFIG.replace("[routing]", &format!("[media]\n{media}\n\n[routing]"))
    };
    let cases: &[(&str, &str)] = &[
        (
            "internal = { ports = [20000, 20999] }",
            "fewer than sip.max_calls",
        ),
        (
            "internal = { ports = [30000, 49999] }",
            "overlap on the same address",
        ),
        (
            "external = { ports = [5000, 24999] }\ninternal = { ports = [30000, 49999] }",
            "include the SIP port 5080",
        ),
        (
            "internal = { bind = \"0.0.0.0\", ports = [20000, 39999] }",
            "media.internal.advertise is needed",
        ),
        (
            "internal = { ports = [20000, 20000] }",
            "holds no RTP/RTCP pair",
        ),
        (
            "kernel_forwarding = true\ninternal = { bind = \"0.0.0.0\", advertise = \"127.0.0.1\", ports = [20000, 39999] }",
            "media.internal.bind must be an address of this host",
        ),
        (
            "internal = { ports = [80, 20000] }",
            "media.internal.ports (first)",
        ),
        ("timeout_seconds = 0", "media.timeout_seconds"),
        (
            "timeout_seconds = 600\nhold_timeout_seconds = 60",
            "media.hold_timeout_seconds",
        ),
    ];
    for (media, complaint) in cases {
        let e = Config::parse(&with_media(media), "lab.toml").expect_err(media);
        assert!(e.message.contains(complaint), "{media}: {e}");
    }
    // Separate addresses may share port numbers; a public address is advertised.
    let ok = with_media(
        "internal = { bind = \"127.0.0.1\", ports = [20000, 39999] }\n\
         external = { bind = \"127.0.0.2\", advertise = \"203.0.113.7\", \
         ports = [20000, 39999] }\nlatching = \"strict\"",
    );
    let c = Config::parse(&ok, "lab.toml").unwrap();
    let (_, ext) = c.media.resolve(&c.internal, &c.external);
    assert_eq!(ext.advertise.to_string(), "203.0.113.7");
    assert_eq!(ext.pairs(), 10_000);
    assert_eq!(c.media.latching, LatchingName::Strict);
    // Defaults: each side's listen address, its default range.
    let c = Config::bundled().unwrap();
    let (int, ext) = c.media.resolve(&c.internal, &c.external);
    assert_eq!(int.bind.to_string(), "127.0.0.1");
    assert_eq!((ext.first_port, ext.last_port), (40_000, 59_999));
    // A trunk's codecs.
    let codecs = DEFAULT_CONFIG.replace(
        "brand = \"generic\"",
        "brand = \"generic\"\ncodecs = [\"PCMA\", \"G729\"]",
    );
    let c = Config::parse(&codecs, "lab.toml").unwrap();
    assert_eq!(c.trunks[0].codecs.as_ref().unwrap().len(), 2);
    for bad in ["codecs = []", "codecs = [\"PC MU\"]"] {
        let text = DEFAULT_CONFIG.replace(
            "brand = \"generic\"",
            &format!("brand = \"generic\"\n{bad}"),
        );
        assert!(Config::parse(&text, "lab.toml").is_err(), "{bad}");
    }
}

#[test]
fn a_trunks_srtp_options_are_checked() {
    let with = |keys: &str| {
        DEFAULT_CONFIG.replace(
            "brand = \"generic\"",
            &format!("brand = \"generic\"\n{keys}"),
        )
    };
    let c = Config::parse(&with("srtp = \"required\""), "lab.toml").unwrap();
    assert_eq!(c.trunks[0].srtp, trunk::SrtpOption::Required);
    let c = Config::parse(
        &with("srtp = \"optional\"\nsrtp_suites = [\"AEAD_AES_128_GCM\"]"),
        "lab.toml",
    )
    .unwrap();
    assert_eq!(c.trunks[0].srtp_suites.as_ref().unwrap().len(), 1);
    assert_eq!(
        Config::bundled().unwrap().trunks[0].srtp,
        trunk::SrtpOption::Off,
        "off by default"
    );
    let cases: &[(&str, &str)] = &[
        ("srtp = \"always\"", "unknown variant `always`"),
        (
            "srtp = \"required\"\nmedia = \"signalling-only\"",
            "has srtp but media = \"signalling-only\"",
        ),
        (
            "srtp_suites = [\"AES_CM_128_HMAC_SHA1_80\"]",
            "has srtp_suites but srtp = \"off\"",
        ),
        (
            "srtp = \"optional\"\nsrtp_suites = []",
            "srtp_suites of trunk `loop` is empty",
        ),
        (
            "uri_scheme = \"sips\"",
            "uri_scheme = \"sips\": its destinations must all be tls",
        ),
        (
            "srtp = \"optional\"\nsrtp_suites = [\"F8_128_HMAC_SHA1_80\"]",
            "unknown SRTP suite `F8_128_HMAC_SHA1_80`",
        ),
    ];
    for (keys, complaint) in cases {
        let e = Config::parse(&with(keys), "lab.toml").expect_err(keys);
        assert!(e.message.contains(complaint), "{keys}: {e}");
    }
}

/// The bundled configuration with a second trunk (`extra`, TOML keys) and keys added to
/// the first (`first`).
fn with_trunks(first: &str, extra: &str) -> String {
    let t = DEFAULT_CONFIG.replacen(
        "name = \"loop\"\n",
        &format!("name = \"loop\"\n{first}\n"),
        1,
    );
    t.replacen("[routing]", &format!("{extra}\n\n[routing]"), 1)
}

#[test]
fn trunk_types_destinations_and_options_parse() {
    let text = with_trunks(
        "associated = [\"192.0.2.0/24\", \"2001:db8::/32\", \"198.51.100.7\"]\n\
         verify_port = true\nkeepalive = true\nkeepalive_seconds = 30\nmax_calls = 20\n\
         failover_on = [500, 603]\ndestinations = [\n\
         { host = \"127.0.0.20\", priority = 10, weight = 3 },\n\
         { host = \"sip.example.com\", transport = \"tcp\", priority = 20 },\n]",
        "[[trunk]]\nname = \"voipms\"\nhost = \"provider.example\"\ntype = \"register\"\n\
         username = \"100\"\npassword = \"pw\"\nregister_expires = 600\n\
         outbound_proxy = \"192.0.2.9:5070\"\n\n\
         [[trunk]]\nname = \"twilio\"\nhost = \"x.pstn.twilio.com\"\ntype = \"credentials\"\n\
         username = \"u\"\npassword = \"p\"\n\n\
         [[trunk]]\nname = \"gw\"\nhost = \"gw.example\"\ntype = \"accept-register\"\n\
         username = \"gw1\"\npassword = \"s\"",
    );
    let c = Config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let loop_ = c.trunk("loop").unwrap();
    assert_eq!(loop_.associated.len(), 3);
    assert!(loop_.verify_port && loop_.keepalive);
    assert_eq!((loop_.keepalive_seconds, loop_.max_calls), (30, 20));
    assert_eq!(loop_.failover_on, [500, 603]);
    let d = loop_.destination_list();
    assert_eq!((d[0].priority, d[0].weight, d[0].port), (10, 3, None));
    assert_eq!(d[1].transport, Some(TransportName::Tcp));
    // The default keep-alive interval is the source documents' 360 s.
    let v = c.trunk("voipms").unwrap();
    assert_eq!(v.kind, TrunkKind::Register);
    assert_eq!(v.keepalive_seconds, 360);
    assert_eq!(v.register_expires, 600);
    // No port, no transport: DNS (RFC 3263) will say.
    assert_eq!(v.destination_list()[0].port, None);
    assert_eq!(v.transport(), TransportName::Udp);
    assert_eq!(c.trunk("twilio").unwrap().kind, TrunkKind::Credentials);
    assert_eq!(c.trunk("gw").unwrap().kind, TrunkKind::AcceptRegister);
}

#[test]
fn trunk_checks_name_the_trunks_involved() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "",
            "[[trunk]]\nname = \"r\"\nhost = \"p.example\"\ntype = \"register\"",
            &["r", "username"],
        ),
        (
            "",
            "[[trunk]]\nname = \"a\"\nhost = \"p.example\"\ntype = \"register\"\n\
             username = \"1\"\npassword = \"x\"\n\n\
             [[trunk]]\nname = \"b\"\nhost = \"P.example\"\ntype = \"register\"\n\
             username = \"1\"\npassword = \"y\"",
            &["`a`", "`b`", "same host and authentication ID"],
        ),
        (
            "",
            "[[trunk]]\nname = \"gw\"\nhost = \"127.0.0.20\"\ntype = \"accept-register\"\n\
             username = \"1\"\npassword = \"x\"",
            &["`gw`", "`loop`", "127.0.0.20"],
        ),
        ("associated = [\"10.0.0.0/33\"]", "", &["10.0.0.0/33"]),
        ("failover_on = [200]", "", &["failover_on", "loop"]),
        (
            "destinations = [ { host = \"a.example\", weight = 0 } ]",
            "",
            &["weight", "loop"],
        ),
    ];
    for (first, extra, words) in cases {
        let text = with_trunks(first, extra);
        let e = Config::parse(&text, "t.toml").expect_err(&text);
        for w in *words {
            assert!(e.message.contains(w), "{w} not in: {e}");
        }
    }
}

#[test]
fn dns_settings_are_bounded() {
    let ok = format!(
        "{DEFAULT_CONFIG}\n[dns]\nservers = [\"127.0.0.53:53\"]\nrefresh_min_seconds = 5\n"
    );
    let c = Config::parse(&ok, "t.toml").unwrap();
    assert_eq!(c.dns.servers.len(), 1);
    assert_eq!(
        (c.dns.refresh_min_seconds, c.dns.refresh_max_seconds),
        (5, 3600)
    );
    let bad =
        format!("{DEFAULT_CONFIG}\n[dns]\nrefresh_min_seconds = 60\nrefresh_max_seconds = 10\n");
    let e = Config::parse(&bad, "t.toml").unwrap_err();
    assert!(e.message.contains("dns.refresh_max_seconds"), "{e}");
}

#[test]
fn guard_settings_are_bounded_and_named() {
    let c = Config::parse(DEFAULT_CONFIG, "t.toml").unwrap();
    assert!(c.guard.enabled && !c.guard.fingerprint_strangers);
    let ok = format!(
        "{DEFAULT_CONFIG}\n[guard]\nmax_requests = 100\nexempt = [\"10.0.0.0/8\", \"2001:db8::1\"]\n"
    );
    let c = Config::parse(&ok, "t.toml").unwrap();
    assert_eq!((c.guard.max_requests, c.guard.exempt.len()), (100, 2));
    for (bad, key) in [
        ("window_seconds = 0", "guard.window_seconds"),
        ("window_seconds = 61", "guard.window_seconds"),
        ("max_requests = 0", "guard.max_requests"),
        ("ban_seconds = 86401", "guard.ban_seconds"),
        ("max_auth_failures = 0", "guard.max_auth_failures"),
        ("auth_window_seconds = 0", "guard.auth_window_seconds"),
        ("max_sources = 99", "guard.max_sources"),
        ("max_requests = 18446744073709551615", "expected u32"),
        ("exempt = [\"10.0.0.0/33\"]", "10.0.0.0/33"),
        ("limit = 3", "limit"),
    ] {
        let text = format!("{DEFAULT_CONFIG}\n[guard]\n{bad}\n");
        let e = Config::parse(&text, "t.toml").expect_err(bad);
        assert!(e.message.contains(key), "{bad}: {e}");
    }
}

#[test]
fn admin_and_metrics_share_no_address() {
    let with = |extra: &str, admin: &str| {
        let text = DEFAULT_CONFIG.replace(
            "listen = \"127.0.0.1:9060\"",
            &format!("listen = \"{admin}\""),
        );
        Config::parse(&format!("{text}\n{extra}"), "t.toml")
    };
    assert!(with("[metrics]\nlisten = \"127.0.0.1:9090\"", "127.0.0.1:9060").is_ok());
    for (extra, admin, words) in [
        (
            "",
            "127.0.0.1:5060",
            "admin.listen `127.0.0.1:5060` is also a SIP listen",
        ),
        ("", "127.0.0.1:5080", "also a SIP listen address"),
        (
            "[metrics]\nlisten = \"127.0.0.1:5080\"",
            "127.0.0.1:9060",
            "metrics.listen",
        ),
        (
            "[metrics]\nlisten = \"127.0.0.1:9060\"",
            "127.0.0.1:9060",
            "admin API's address",
        ),
    ] {
        let e = with(extra, admin).expect_err(words);
        assert!(e.message.contains(words) && e.line.is_some(), "{e}");
    }
}

/// The README's deployment example is a configuration this version accepts.
#[test]
fn the_readme_deployment_example_parses() {
    let readme = include_str!("../../../README.md");
    let block = readme
        .split("```toml\n")
        .filter_map(|b| b.split_once("```").map(|(t, _)| t))
        .find(|t| t.contains("newyork.voip.ms"))
        .expect("the deployment example");
    let c = Config::parse(block, "README.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.trunks.len(), 2);
    assert_eq!(
        c.external.public_address.map(|a| a.to_string()).as_deref(),
        Some("203.0.113.5")
    );
}

#[test]
fn syntax_error_has_line() {
    let e = Config::parse("[pbx\nhost=1", "x.toml").unwrap_err();
    assert_eq!(e.line, Some(1));
}

/// A host (the PBX's, a trunk's, a destination's) is a name or an IP address: a port, a URI
/// or stray spaces in it are refused where they are written, not looked up in the DNS.
#[test]
fn hosts_are_names_or_addresses() {
    assert!(DEFAULT_CONFIG.contains("host = \"127.0.0.20\""));
    let trunk_host = |host: &str| {
        let text = DEFAULT_CONFIG.replace("host = \"127.0.0.20\"", &format!("host = \"{host}\""));
        Config::parse(&text, "t.toml")
    };
    for good in [
        "sip.provider.example",
        "127.0.0.20",
        "2001:db8::20",
        "[2001:db8::20]",
        "gw_1.internal",
        "sip.xn--mller-kva.example",
        "sip.provider.example.",
    ] {
        assert!(trunk_host(good).is_ok(), "{good}");
    }
    for bad in [
        "127.0.0.20:5070",
        "sip:127.0.0.20",
        "127.0.0.20 ",
        "127.0.0.20;transport=tcp",
        "[2001:db8::20]:5070",
        ".example",
        "[192.0.2.20]",
        "fe80::1%eth0",
        "sip.müller.example",
    ] {
        let e = trunk_host(bad).expect_err(bad);
        assert!(
            e.message.contains("is not a host name or IP address") && e.line.is_some(),
            "{bad}: {e}"
        );
    }
    let pbx = DEFAULT_CONFIG.replace("host = \"127.0.0.10\"", "host = \"127.0.0.10:5060\"");
    assert_ne!(pbx, DEFAULT_CONFIG);
    let e = Config::parse(&pbx, "t.toml").expect_err("pbx host with a port");
    assert!(e.message.contains("pbx host `127.0.0.10:5060`"), "{e}");
}

/// A trunk's `outbound_proxy` is `host[:port]` or `[IPv6][:port]`, checked where it is
/// written.
#[test]
fn outbound_proxy_is_a_host_and_port() {
    let with = |proxy: &str| {
        let text = DEFAULT_CONFIG.replace(
            "name = \"loop\"",
            &format!("name = \"loop\"\noutbound_proxy = \"{proxy}\""),
        );
        assert_ne!(text, DEFAULT_CONFIG);
        Config::parse(&text, "t.toml")
    };
    for good in [
        "192.0.2.9:5070",
        "192.0.2.9",
        "[2001:db8::9]",
        "[2001:db8::9]:5070",
        "proxy.example:5060",
    ] {
        assert!(with(good).is_ok(), "{good}");
    }
    for bad in [
        "2001:db8::9",
        "192.0.2.9:http",
        "192.0.2.9:0",
        "[2001:db8::9",
        "[2001:db8::9]5070",
        "sip:proxy.example",
        "[proxy.example]:5060",
    ] {
        let e = with(bad).expect_err(bad);
        assert!(
            e.message.contains("is not host[:port] or [IPv6][:port]") && e.line.is_some(),
            "{bad}: {e}"
        );
    }
}

/// A register trunk's `domain` goes into the REGISTER's URIs: `host[:port]` or an IPv6
/// address, nothing else.
#[test]
fn a_register_trunks_domain_is_a_host() {
    let with = |domain: &str| {
        let text = DEFAULT_CONFIG.replace(
            "name = \"loop\"",
            &format!(
                "name = \"loop\"\ntype = \"register\"\nusername = \"u\"\npassword = \"p\"\n\
                 domain = \"{domain}\""
            ),
        );
        assert_ne!(text, DEFAULT_CONFIG);
        Config::parse(&text, "t.toml")
    };
    for good in [
        "voip.example",
        "voip.example:5070",
        "[2001:db8::1]",
        "2001:db8::1",
    ] {
        assert!(with(good).is_ok(), "{good}");
    }
    for bad in [
        "my domain",
        "sip:voip.example",
        "voip.example;transport=tcp",
        "voip.example:0",
    ] {
        let e = with(bad).expect_err(bad);
        assert!(
            e.message.contains("domain `") && e.line.is_some(),
            "{bad}: {e}"
        );
    }
}
