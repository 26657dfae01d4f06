//! Kamailio (Debian's package) as an independent SIP peer for the tests.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kamailio (Debian's package) started from a configuration text, stopped (with its children)
/// when dropped.
pub struct Kamailio {
    child: Child,
    dir: tempfile::TempDir,
}

impl Kamailio {
    /// Start it in `dir` with configuration `text`; wait (bounded) until it answers OPTIONS over
    /// UDP on `probe` (`ip:port`), which the configuration must answer itself.
    pub fn start_in(dir: tempfile::TempDir, text: &str, probe: &str) -> Kamailio {
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg, text).unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        // The log goes to a file: Kamailio's children hold it open past the main process.
        let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-Y"])
            .arg(&run)
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kamailio (Debian package kamailio) is required for this test");
        let k = Kamailio { child, dir };
        k.wait_up(probe);
        k
    }

    fn wait_up(&self, probe_at: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let ip = probe_at.rsplit_once(':').map_or(probe_at, |(ip, _)| ip);
        let probe = UdpSocket::bind(format!("{ip}:0")).unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        loop {
            let req = format!(
                "OPTIONS sip:{probe_at} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKprobe\r\n\
                 Max-Forwards: 1\r\nFrom: <sip:p@{ip}>;tag=1\r\nTo: <sip:{probe_at}>\r\n\
                 Call-ID: kprobe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                probe.local_addr().unwrap()
            );
            let _ = probe.send_to(req.as_bytes(), probe_at);
            let mut buf = [0u8; 2048];
            if probe.recv_from(&mut buf).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kamailio did not come up: {}",
                self.log()
            );
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }

    /// Stop it (SIGTERM: the main process takes its children down) and return its log.
    pub fn stop(mut self) -> String {
        self.terminate();
        self.log()
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.terminate();
    }
}
