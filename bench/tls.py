#!/usr/bin/env python3
"""TLS handshakes: Sluice's SIP-over-TLS listener against Kamailio's (tls module), in one run.

Both serve the same ECDSA P-256 certificate (made here with openssl) on loopback, each pinned to
one core (SERVER_CPU); `openssl s_time -new` on the other core (CLIENT_CPU) makes full
handshakes (TLS 1.3, no resumption) back to back for SECS seconds and closes each connection.
Printed per system and round: handshakes per second, and the server's CPU time (all threads and
processes, from /proc) per handshake; then the medians and the ratios.

Usage: apt-get install kamailio kamailio-tls-modules && cargo build --release -p sluice &&
       python3 bench/tls.py [--secs 10] [--rounds 3]
"""
import argparse, os, re, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.environ.get("SLUICE", os.path.join(ROOT, "target", "release", "sluice"))
TCK = os.sysconf("SC_CLK_TCK")
SLUICE_ADDR = ("127.0.110.1", 5061)
KAMAILIO_ADDR = ("127.0.110.2", 5061)

SLUICE_CONFIG = """
[sip]
max_calls = 1000
user_agent = ""

[internal]
listen = [
    {{ transport = "udp", address = "127.0.110.1:5060" }},
    {{ transport = "tls", address = "127.0.110.1:5061" }},
]

[external]
listen = [ {{ transport = "udp", address = "127.0.110.1:5080" }} ]

[tls]
certificate = "{cert}"
key = "{key}"

[pbx]
host = "127.0.110.10"

[[trunk]]
name = "bench"
host = "127.0.110.20"
brand = ""
media = "signalling-only"

[routing]
outbound_trunk = "bench"

[admin]
listen = "127.0.110.1:9060"
"""

KAMAILIO_CONFIG = """#!KAMAILIO
debug=0
log_stderror=yes
# Its best configuration here: TLS workers for the one core it has, no DNS.
children=1
tcp_children=2
enable_tls=yes
listen=tls:127.0.110.2:5061
auto_aliases=no
dns=no
rev_dns=no
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "tls.so"
modparam("tls", "config", "{tls_cfg}")
request_route {{
    sl_send_reply("200", "OK");
}}
"""

KAMAILIO_TLS = """[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = {cert}
private_key = {key}
"""


def ticks(pids):
    tot = 0
    for pid in pids:
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{t}/stat") as f:
                    p = f.read().rsplit(")", 1)[1].split()
                tot += int(p[11]) + int(p[12])
        except FileNotFoundError:
            pass
    return tot


def family(pid):
    """A process and its children (Kamailio forks its workers)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [int(x) for x in out]


def wait_port(addr, what, proc):
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited; see its log")
        try:
            with socket.create_connection(addr, timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {addr}")


def handshakes(addr, secs, client_cpu):
    cmd = ["taskset", "-c", client_cpu, "openssl", "s_time", "-connect", "%s:%d" % addr, "-new",
           "-time", str(int(secs))]
    r = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"(\d+) connections in [\d.]+ real seconds", r.stdout)
    if not m:
        sys.exit("s_time: " + r.stdout[-300:] + r.stderr[-500:])
    return int(m.group(1))


def measure(name, addr, pids, secs, client_cpu):
    c1, t1 = ticks(pids), time.time()
    n = handshakes(addr, secs, client_cpu)
    c2, t2 = ticks(pids), time.time()
    cpu_s = (c2 - c1) / TCK
    rate = n / (t2 - t1)
    us = 1e6 * cpu_s / n if n else float("nan")
    print("  %-9s %7.0f handshakes/s, server CPU %6.1f us per handshake (%d in %.1f s)"
          % (name, rate, us, n, t2 - t1), flush=True)
    return rate, us


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--server-cpu", default="1")
    ap.add_argument("--client-cpu", default="0")
    a = ap.parse_args()
    if not os.path.exists(SLUICE):
        sys.exit("build Sluice first: cargo build --release -p sluice")
    if not shutil.which("kamailio") or not os.path.exists(
            "/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so"):
        sys.exit("kamailio with its tls module is needed: apt-get install kamailio kamailio-tls-modules")
    work = tempfile.mkdtemp(prefix="sluice-tls-bench-")
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.check_call(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                           "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=bench.sluice.test",
                           "-addext", "subjectAltName=IP:127.0.110.1,IP:127.0.110.2"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(work, "sluice.toml"), "w") as f:
        f.write(SLUICE_CONFIG.format(cert=cert, key=key))
    tls_cfg = os.path.join(work, "kamailio-tls.cfg")
    with open(tls_cfg, "w") as f:
        f.write(KAMAILIO_TLS.format(cert=cert, key=key))
    with open(os.path.join(work, "kamailio.cfg"), "w") as f:
        f.write(KAMAILIO_CONFIG.format(tls_cfg=tls_cfg))
    logs = open(os.path.join(work, "servers.log"), "w")
    sluice = subprocess.Popen(["taskset", "-c", a.server_cpu, SLUICE, "run", "--config",
                               os.path.join(work, "sluice.toml"), "--log", "warn"],
                              stdout=subprocess.DEVNULL, stderr=logs)
    kamailio = subprocess.Popen(["taskset", "-c", a.server_cpu, "kamailio", "-DD", "-E", "-f",
                                 os.path.join(work, "kamailio.cfg"), "-P", os.path.join(work, "k.pid"),
                                 "-Y", work, "-w", work],
                                stdout=subprocess.DEVNULL, stderr=logs)
    try:
        wait_port(SLUICE_ADDR, "sluice", sluice)
        wait_port(KAMAILIO_ADDR, "kamailio", kamailio)
        print("TLS handshake benchmark, %s, %d cores; servers pinned to CPU %s, s_time on CPU %s, "
              "ECDSA P-256, %s"
              % (time.strftime("%Y-%m-%d"), os.cpu_count(), a.server_cpu, a.client_cpu,
                 subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()),
              flush=True)
        per = {"sluice": [], "kamailio": []}
        for _ in range(a.rounds):
            per["sluice"].append(measure("sluice", SLUICE_ADDR, [sluice.pid], a.secs, a.client_cpu))
            per["kamailio"].append(measure("kamailio", KAMAILIO_ADDR, family(kamailio.pid), a.secs,
                                           a.client_cpu))
        s_rate, k_rate = median([r for r, _ in per["sluice"]]), median([r for r, _ in per["kamailio"]])
        s_us, k_us = median([u for _, u in per["sluice"]]), median([u for _, u in per["kamailio"]])
        print("\n== results")
        print("handshakes per second: sluice %.0f, kamailio %.0f (medians); ratio sluice/kamailio %.2f"
              % (s_rate, k_rate, s_rate / k_rate))
        print("server CPU per handshake: sluice %.0f us, kamailio %.0f us (medians); ratio sluice/kamailio %.2f"
              % (s_us, k_us, s_us / k_us))
    finally:
        for p in (sluice, kamailio):
            p.send_signal(signal.SIGKILL)
            p.wait()
        subprocess.run(["pkill", "-f", os.path.join(work, "kamailio.cfg")])
        logs.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
