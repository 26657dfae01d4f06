//! Test harness: a loopback lab per test (its own 127.0.N.0/24 block), the `sluice` binary
//! started on a generated configuration, and SIPp peers.
//!
//! Lab N: Sluice internal side 127.0.N.1:5060, external side 127.0.N.1:5080, PBX at
//! 127.0.N.10:5060, trunk `loop` at 127.0.N.20:5060 — the shape of `examples/loopback.toml`.

mod kamailio;

pub use kamailio::Kamailio;
pub use serde_json;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `sluice` binary of this build: next to the test executable's `deps` directory.
pub fn sluice_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = dir.join("sluice");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p sluice)",
        bin.display()
    );
    bin
}

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A test peer program of this repository (`tests/peers/<name>`).
pub fn peer_program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name)
}

pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

pub fn sipp_available() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
    fn sipp_flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

/// The SIPp peers of a lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Pbx,
    Trunk,
}

/// Addresses of a lab. IPv4 labs give each party its own loopback address; the IPv6 lab has
/// only ::1 and tells the parties apart by port.
#[derive(Clone, Debug)]
pub struct LabAddrs {
    pub sluice_ip: String,
    pub pbx_ip: String,
    pub trunk_ip: String,
    pub internal_port: u16,
    pub external_port: u16,
    pub pbx_port: u16,
    pub trunk_port: u16,
    pub admin_port: u16,
}

impl LabAddrs {
    pub fn v4(block: u8) -> LabAddrs {
        LabAddrs {
            sluice_ip: format!("127.0.{block}.1"),
            pbx_ip: format!("127.0.{block}.10"),
            trunk_ip: format!("127.0.{block}.20"),
            internal_port: 5060,
            external_port: 5080,
            pbx_port: 5060,
            trunk_port: 5060,
            admin_port: 9060,
        }
    }

    /// IPv6 loopback; `base` picks a port range so that labs do not collide.
    pub fn v6(base: u16) -> LabAddrs {
        LabAddrs {
            sluice_ip: "::1".into(),
            pbx_ip: "::1".into(),
            trunk_ip: "::1".into(),
            internal_port: base,
            external_port: base + 2,
            pbx_port: base + 4,
            trunk_port: base + 6,
            admin_port: base + 8,
        }
    }
}

fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

pub struct Lab {
    pub config_path: PathBuf,
    pub addrs: LabAddrs,
    pub transport: Transport,
    pub dir: tempfile::TempDir,
    sluice: Option<Child>,
}

impl Lab {
    pub fn sluice_ip(&self) -> String {
        self.addrs.sluice_ip.clone()
    }
    pub fn pbx_ip(&self) -> String {
        self.addrs.pbx_ip.clone()
    }
    pub fn trunk_ip(&self) -> String {
        self.addrs.trunk_ip.clone()
    }
    pub fn internal(&self) -> String {
        host_port(&self.addrs.sluice_ip, self.addrs.internal_port)
    }
    pub fn external(&self) -> String {
        host_port(&self.addrs.sluice_ip, self.addrs.external_port)
    }
    pub fn pbx(&self) -> String {
        host_port(&self.addrs.pbx_ip, self.addrs.pbx_port)
    }
    pub fn trunk(&self) -> String {
        host_port(&self.addrs.trunk_ip, self.addrs.trunk_port)
    }
    pub fn admin(&self) -> String {
        host_port(&self.addrs.sluice_ip, self.addrs.admin_port)
    }

    /// The lab configuration, with the given transport toward PBX and trunk.
    pub fn config_text(block: u8, transport: Transport) -> String {
        Lab::config_for(&LabAddrs::v4(block), transport)
    }

    pub fn config_for(a: &LabAddrs, transport: Transport) -> String {
        let t = transport.name();
        let internal = host_port(&a.sluice_ip, a.internal_port);
        let external = host_port(&a.sluice_ip, a.external_port);
        // IPv4 labs have an address each, so the default media ranges do not collide; IPv6
        // labs share ::1 and get ranges of their own from their port base.
        let (max_calls, media) = if a.sluice_ip.contains(':') {
            let first = 20_000 + (a.internal_port.saturating_sub(15_000)) * 20;
            (
                150,
                format!(
                    "\n[media]\ninternal = {{ ports = [{first}, {}] }}\n\
                     external = {{ ports = [{}, {}] }}\n",
                    first + 399,
                    first + 400,
                    first + 799
                ),
            )
        } else {
            (10_000, String::new())
        };
        format!(
            r#"[sip]
t1_ms = 500
max_calls = {max_calls}
{media}
[internal]
listen = [
    {{ transport = "udp", address = "{internal}" }},
    {{ transport = "tcp", address = "{internal}" }},
]

[external]
listen = [
    {{ transport = "udp", address = "{external}" }},
    {{ transport = "tcp", address = "{external}" }},
]

[pbx]
host = "{pbx}"
port = {pbx_port}
transport = "{t}"

[[trunk]]
name = "loop"
host = "{trunk}"
port = {trunk_port}
transport = "{t}"

[routing]
outbound_trunk = "loop"

[admin]
listen = "{admin}"
drain_seconds = 30
"#,
            admin = host_port(&a.sluice_ip, a.admin_port),
            pbx = a.pbx_ip,
            pbx_port = a.pbx_port,
            trunk = a.trunk_ip,
            trunk_port = a.trunk_port,
        )
    }

    /// Start Sluice for IPv4 lab `block` and wait until it answers OPTIONS on both sides.
    pub fn start(block: u8, transport: Transport) -> Lab {
        Lab::start_with(LabAddrs::v4(block), transport)
    }

    pub fn start_with(addrs: LabAddrs, transport: Transport) -> Lab {
        let text = Lab::config_for(&addrs, transport);
        Lab::start_with_text(addrs, transport, &text)
    }

    /// Start Sluice on a given configuration text for the lab `addrs`.
    pub fn start_with_text(addrs: LabAddrs, transport: Transport, text: &str) -> Lab {
        Lab::start_with_env(addrs, transport, text, &[])
    }

    /// Start Sluice on a configuration text with extra environment variables.
    pub fn start_with_env(
        addrs: LabAddrs,
        transport: Transport,
        text: &str,
        env: &[(&str, &str)],
    ) -> Lab {
        Lab::launch(addrs, transport, text, env, &[], false)
    }

    /// Start Sluice as an operator following the walkthrough does: from the lab directory,
    /// with `--config sluice.toml` (a relative path); `files` (name, source) are copied into
    /// the lab directory first.
    pub fn start_relative(
        addrs: LabAddrs,
        transport: Transport,
        text: &str,
        files: &[(&str, &Path)],
    ) -> Lab {
        Lab::launch(addrs, transport, text, &[], files, true)
    }

    fn launch(
        addrs: LabAddrs,
        transport: Transport,
        text: &str,
        env: &[(&str, &str)],
        files: &[(&str, &Path)],
        relative: bool,
    ) -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, from) in files {
            std::fs::copy(from, dir.path().join(name)).expect("copy a lab file");
        }
        let cfg = dir.path().join("sluice.toml");
        std::fs::write(&cfg, text).expect("write config");
        let log = std::fs::File::create(dir.path().join("sluice.log")).expect("log file");
        let mut command = Command::new(sluice_bin());
        command.args(["run", "--config"]);
        if relative {
            command.arg("sluice.toml").current_dir(dir.path());
        } else {
            command.arg(&cfg);
        }
        let child = command
            // `SLUICE_E2E_LOG=debug` for a failing test's details.
            .arg("--log")
            .arg(std::env::var("SLUICE_E2E_LOG").unwrap_or_else(|_| "info".into()))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sluice");
        let mut lab = Lab {
            config_path: cfg.clone(),
            addrs,
            transport,
            dir,
            sluice: Some(child),
        };
        lab.wait_ready();
        // The answers must come from this instance, not from one left over on the same block.
        if let Some(c) = lab.sluice.as_mut() {
            assert!(
                matches!(c.try_wait(), Ok(None)),
                "sluice exited at start; log:\n{}",
                lab.log()
            );
        }
        lab
    }

    /// Poll with OPTIONS until Sluice answers on both sides (or fail after 10 s).
    fn wait_ready(&self) {
        let sock = UdpSocket::bind(host_port(&self.addrs.sluice_ip, 0)).expect("bind probe");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        for target in [self.internal(), self.external()] {
            loop {
                assert!(
                    Instant::now() < deadline,
                    "sluice did not come up; log:\n{}",
                    self.log()
                );
                let req = options_request(&sock.local_addr().unwrap().to_string(), &target);
                sock.send_to(req.as_bytes(), &target).unwrap();
                let mut buf = [0u8; 4096];
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    if buf[..n].starts_with(b"SIP/2.0 200") {
                        break;
                    }
                }
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sluice.log")).unwrap_or_default()
    }

    /// The end of Sluice's log, for a failure message ([`log_tail`]).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log())
    }

    /// The UDP lab configuration with `trunk` lines added to the trunk's table and `extra`
    /// tables at the end.
    pub fn config_with(addrs: &LabAddrs, trunk: &str, extra: &str) -> String {
        let base = Lab::config_for(addrs, Transport::Udp);
        let with_trunk = base.replace("[routing]", &format!("{trunk}\n\n[routing]"));
        format!("{with_trunk}\n{extra}\n")
    }

    /// A UDP lab on block `block` with [`Lab::config_with`]'s configuration.
    pub fn start_with_trunk(block: u8, trunk: &str, extra: &str) -> Lab {
        let addrs = LabAddrs::v4(block);
        let text = Lab::config_with(&addrs, trunk, extra);
        Lab::start_with_text(addrs, Transport::Udp, &text)
    }

    /// Check that SIPp completed `calls` calls and failed none, showing Sluice's log if not.
    pub fn assert_calls(&self, what: &str, r: &SippResult, calls: u64) {
        assert_eq!(
            (r.successful, r.failed),
            (calls, 0),
            "{what}: {r:?}\nsluice log (tail):\n{}",
            self.log_tail()
        );
    }

    /// One outbound call from the PBX to `number`; the messages the trunk received.
    pub fn outbound_call(&self, number: &str) -> Vec<String> {
        let uas = self.sipp("uas", "uas.xml", Peer::Trunk, None, &["-m", "1"]);
        let uac = self.sipp(
            "uac",
            "uac.xml",
            Peer::Pbx,
            Some(&self.internal()),
            &["-m", "1", "-s", number],
        );
        let (_, trunk_log) = self.one_call_completed(uac, uas);
        received_at(&trunk_log)
    }

    /// Wait for a one-call SIPp pair, the PBX's `uac` (20 s at most) and the trunk's `uas`
    /// (10 s more), and check that each completed its call. Returns their message logs
    /// (the UAC's, the UAS's).
    pub fn one_call_completed(&self, uac: Sipp, uas: Sipp) -> (PathBuf, PathBuf) {
        let logs = (
            uac.messages_path().to_path_buf(),
            uas.messages_path().to_path_buf(),
        );
        let r = uac.wait(Duration::from_secs(20));
        let t = uas.wait(Duration::from_secs(10));
        assert_eq!(r.successful, 1, "PBX: {r:?}\nlog:\n{}", self.log());
        assert_eq!(t.successful, 1, "trunk: {t:?}\nlog:\n{}", self.log());
        logs
    }

    /// Sluice's resident memory in KiB (Linux `/proc`), while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.sluice.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Start a SIPp peer playing `peer`; `target` is where it sends (callers only).
    pub fn sipp(
        &self,
        name: &str,
        scenario_file: &str,
        peer: Peer,
        target: Option<&str>,
        extra: &[&str],
    ) -> Sipp {
        let at = match peer {
            Peer::Pbx => (self.addrs.pbx_ip.clone(), self.addrs.pbx_port),
            Peer::Trunk => (self.addrs.trunk_ip.clone(), self.addrs.trunk_port),
        };
        self.sipp_on(name, scenario_file, at, target, extra)
    }

    /// Start a SIPp peer on any address of the lab (`ip`, `port`).
    pub fn sipp_on(
        &self,
        name: &str,
        scenario_file: &str,
        (local_ip, port): (String, u16),
        target: Option<&str>,
        extra: &[&str],
    ) -> Sipp {
        let port = port.to_string();
        let stats = self.dir.path().join(format!("{name}.csv"));
        let msgs = self.dir.path().join(format!("{name}.msg"));
        let errs = self.dir.path().join(format!("{name}.err"));
        let mut cmd = Command::new("sipp");
        cmd.arg("-sf")
            .arg(scenario(scenario_file))
            .args([
                "-i",
                &local_ip,
                "-p",
                &port,
                "-t",
                self.transport.sipp_flag(),
            ])
            .args([
                "-nostdin",
                "-trace_stat",
                "-fd",
                "1",
                "-trace_err",
                "-trace_msg",
            ])
            .arg("-stf")
            .arg(&stats)
            .arg("-message_file")
            .arg(&msgs)
            .arg("-error_file")
            .arg(&errs)
            .args(["-max_socket", "1024", "-timeout_error"])
            .args(extra);
        if let Some(t) = target {
            cmd.arg(t);
        }
        let out = self.dir.path().join(format!("{name}.out"));
        let child = cmd
            .current_dir(self.dir.path())
            .stdout(std::fs::File::create(&out).expect("sipp out"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sipp");
        Sipp {
            name: name.to_string(),
            child,
            stats,
            msgs,
            errs,
        }
    }

    /// Stop Sluice with SIGTERM and wait for it to exit.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.sluice.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait (bounded) for Sluice to exit on its own, without signalling it.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.sluice.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.sluice = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn sluice_pid(&self) -> Option<u32> {
        self.sluice.as_ref().map(Child::id)
    }

    /// Whether Sluice is still running (it has not exited, for whatever reason).
    pub fn sluice_alive(&mut self) -> bool {
        self.sluice
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.sluice.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // `SLUICE_E2E_KEEP=1` leaves the lab's directory (configuration, SIPp message logs)
        // behind for a failing test to be read.
        if std::env::var_os("SLUICE_E2E_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!("lab kept in {}", dir.keep().display());
        }
    }
}

fn options_request(local: &str, target: &str) -> String {
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{n}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=p{n}\r\nTo: <sip:{target}>\r\nCall-ID: probe{n}@{local}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        n = std::process::id() as u64 * 1000 + (Instant::now().elapsed().as_nanos() % 1000) as u64
    )
}

pub struct Sipp {
    pub name: String,
    child: Child,
    stats: PathBuf,
    msgs: PathBuf,
    errs: PathBuf,
}

#[derive(Debug)]
pub struct SippResult {
    pub status: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    pub errors: String,
}

impl Sipp {
    /// Wait for SIPp to exit (killing it after `limit`) and read its final statistics.
    pub fn wait(mut self, limit: Duration) -> SippResult {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(e) = self.child.stderr.take() {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                stderr.push_str(&line);
                stderr.push('\n');
            }
        }
        let (successful, failed) = read_stats(&self.stats);
        let errors = std::fs::read_to_string(&self.errs).unwrap_or_default() + &stderr;
        SippResult {
            status,
            successful,
            failed,
            errors,
        }
    }

    /// Every message this SIPp instance received, as text.
    pub fn received_messages(&self) -> Vec<String> {
        received_at(&self.msgs)
    }

    pub fn messages_path(&self) -> &Path {
        &self.msgs
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Successful and failed call counts from the last line of a SIPp `-trace_stat` file.
fn read_stats(path: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let Some(header) = text.lines().find(|l| !l.trim().is_empty()) else {
        return (0, 0);
    };
    let Some(last) = text.lines().rfind(|l| !l.trim().is_empty()) else {
        return (0, 0);
    };
    let cols: Vec<&str> = header.split(';').collect();
    let vals: Vec<&str> = last.split(';').collect();
    let get = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .and_then(|i| vals.get(i))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (get("SuccessfulCall(C)"), get("FailedCall(C)"))
}

/// Every message a SIPp peer received, read from its message log (kept after the peer ends).
pub fn received_at(log: &Path) -> Vec<String> {
    parse_message_log(
        &std::fs::read_to_string(log).unwrap_or_default(),
        "received",
    )
}

/// The value of the first `name` header of a message's text (case-insensitive name).
pub fn header<'a>(m: &'a str, name: &str) -> Option<&'a str> {
    m.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The end of a log, for a failure message: around the first panic if there is one, else the
/// last 40 lines.
pub fn log_tail(s: &str) -> String {
    if let Some(i) = s.find("panicked") {
        let from = s.floor_char_boundary(i.saturating_sub(200));
        let to = s.floor_char_boundary(i.saturating_add(2000));
        return s.get(from..to).unwrap_or(s).to_string();
    }
    let lines: Vec<&str> = s.lines().collect();
    lines
        .get(lines.len().saturating_sub(40)..)
        .unwrap_or_default()
        .join("\n")
}

/// Split a SIPp `-trace_msg` log into the messages of the given direction ("received"/"sent").
pub fn parse_message_log(log: &str, direction: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in log.lines() {
        if line.starts_with("----------------------------------------------- ") {
            if let Some(m) = current.take() {
                out.push(m);
            }
            continue;
        }
        if line.contains(" message ") && line.contains(" bytes") && line.ends_with(':') {
            if line.contains(direction) {
                current = Some(String::new());
            } else {
                current = None;
            }
            continue;
        }
        if let Some(m) = current.as_mut() {
            m.push_str(line);
            m.push('\n');
        }
    }
    if let Some(m) = current {
        out.push(m);
    }
    out.into_iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Send one datagram from `from` to `to` and collect responses for `wait`.
pub fn udp_exchange(from: &str, to: &str, data: &[u8], wait: Duration) -> Vec<String> {
    let sock = UdpSocket::bind(from).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    sock.send_to(data, to).expect("send");
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    out
}

/// A minimal HTTP/1.1 client for the admin API: returns status and body (status 0 when the
/// connection is refused or reset: Sluice has exited, say).
pub fn http(
    method: &str,
    addr: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut raw = Vec::new();
    if s.write_all(req.as_bytes()).is_err() || s.read_to_end(&mut raw).is_err() {
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// One sample of a Prometheus text exposition: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// Parse the Prometheus text format (the subset the exporter writes).
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = std::collections::BTreeMap::new();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once('=') {
                map.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
        out.push(Sample {
            name: name.to_string(),
            labels: map,
            value,
        });
    }
    out
}

/// The value of the sample with exactly these labels, if exported.
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: std::collections::BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
}

/// A test plugin component built by this crate's build script: `testkit`, `testkit-v2`,
/// `old-abi`, `abi-020`.
pub fn test_plugin(name: &str) -> PathBuf {
    Path::new(env!("SLUICE_TEST_PLUGINS")).join(format!("{name}.wasm"))
}
