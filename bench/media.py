#!/usr/bin/env python3
"""Media benchmark: Sluice's RTP relay against rtpengine (userspace forwarding), in one run.

For each system, CALLS calls are set up (Sluice: by SIP through Sluice itself, with a minimal
PBX and trunk on loopback sockets; rtpengine: by its ng protocol, through the anchor script
beside this project), then `rtpblast` drives two G.711 streams per call through the relay
(50 packets/s each, 160-byte payload) for SECS seconds, and the relay's CPU time (all its
threads) over the steady part of the window is divided by the packets relayed. Both relays are
pinned to the same core (RELAY_CPU) and the generator to another (GEN_CPU); Sluice runs one
relay worker there.

Phases (each prints one line per measurement and the ratios at the end):
  cpu      CPU time per relayed packet at CALLS calls, ROUNDS rounds, systems interleaved;
  max      the most calls (2 streams each) relayed with under 0.1% loss while the relay keeps
           up (p99 latency under 20 ms, one packet interval), from the list --max-calls;
  latency  one-way latency through the relay (rtpblast's send stamp to its receipt) at half of
           each system's maximum;
  memory   Sluice's resident memory with HOLD calls anchored, against the same calls with
           signalling only;
  srtp     CPU per relayed packet with SRTP (AES_CM_128_HMAC_SHA1_80) toward the trunk against
           plain RTP, in the same run: one direction, PBX to trunk (RTP in, SRTP out; the
           generator cannot make SRTP, so the trunk's sockets send to a sink, not to Sluice).

Machine-wide accounting: the relays' own CPU time misses what the kernel does for them in
other processes' time (a kernel fast path runs in the generator's send, on loopback), so every
run also reads the run time of every task on the machine over the same window (each task's
schedstat), and "direct" runs the generator alone with each call's two
streams sent straight to each other. A system's machine figure less the same round's direct
one is what relaying costs the machine, wherever it is counted; the summary prints it.

Systems: MEDIA_SYSTEMS (default "sluice rtpengine"); "sluice-kernel" is Sluice with
media.kernel_forwarding (needs root); "direct" the generator alone (for the machine-wide
figures); "floor" adds `minrelay.c` beside this script,
the least a userspace relay can do (one recvfrom and one sendto per packet, nothing else), so
that a relay's figure can be read against what the kernel's UDP path costs on the machine;
"floor-connected" the same with each socket connected to its peer (send() on a kept route).
Sluice's and the floor's measurements also print the relay's context switches per packet.

Usage: cargo build --release -p sluice && python3 bench/media.py [--calls 500] [--secs 10]
       [--rounds 3] [--phases cpu,max,latency,memory]
The anchor tools (`rtpblast.c`, `rtpengine_anchor.py`) are looked up in BENCH_TOOLS (default:
../shared/bench next to the project).
"""
import argparse, json, os, re, resource, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.environ.get("BENCH_TOOLS", os.path.join(ROOT, "..", "shared", "bench"))
SLUICE = os.environ.get("SLUICE", os.path.join(ROOT, "target", "release", "sluice"))
TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
PBX_PORT, TRUNK_PORT = 5070, 5090
SLUICE_INT, SLUICE_EXT, ADMIN = 5060, 5080, 9061

CONFIG = """
[sip]
max_calls = {max_calls}
user_agent = ""

[internal]
listen = [ {{ transport = "udp", address = "127.0.0.1:5060" }} ]

[external]
listen = [ {{ transport = "udp", address = "127.0.0.1:5080" }} ]

[media]
# Below Linux's ephemeral ports (32768-60999), where a socket bound to port 0 could take one;
# above the generator's (10000 + 2 per call). 3,750 and 3,634 pairs.
internal = {{ ports = [18000, 25499] }}
external = {{ ports = [25500, 32767] }}
workers = 1
timeout_seconds = 600
kernel_forwarding = {kernel}

[pbx]
host = "127.0.0.1"
port = {pbx}

[[trunk]]
name = "bench"
host = "127.0.0.1"
port = {trunk}
brand = ""
media = "{media}"
srtp = "{srtp}"

[routing]
outbound_trunk = "bench"

[admin]
listen = "127.0.0.1:{admin}"
"""


def ticks(pid):
    tot = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                p = f.read().rsplit(")", 1)[1].split()
            tot += int(p[11]) + int(p[12])
        except FileNotFoundError:
            pass
    return tot


def switches(pid):
    """Context switches of all the process's threads (voluntary + involuntary)."""
    tot = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if "ctxt_switches:" in line:
                        tot += int(line.split()[1])
        except FileNotFoundError:
            pass
    return tot


def irq_time_accounted():
    """Whether the kernel keeps interrupt and softirq time apart from the tasks'
    (CONFIG_IRQ_TIME_ACCOUNTING): then it is not in their schedstat, and /proc/stat's irq and
    softirq columns hold it (measured, not sampled). Unknown kernels are taken to keep it."""
    import gzip
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            return "CONFIG_IRQ_TIME_ACCOUNTING=y" in f.read()
    except OSError:
        return True


IRQ_TIME = irq_time_accounted()


def machine_ns():
    """Time on CPU of every task on the machine, in ns (each task's schedstat: the scheduler's
    precise run time), by task. Without IRQ time accounting (as on the machine the results
    were taken on), a softirq handled in a task's system call (a loopback send, a kernel fast
    path's work) is in that task's time; with it, that time is added from /proc/stat's irq
    and softirq columns. /proc/stat's tick-sampled user and system columns miss short bursts
    on tickless CPUs, so they are not used."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    out[tid] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    if IRQ_TIME:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        out["irq+softirq"] = (v[5] + v[6]) * 1_000_000_000 // TCK
    return out


def machine_delta(before, after):
    """CPU seconds the machine's tasks ran between two `machine_ns` snapshots (a task born in
    between counts from zero)."""
    return sum(v - before.get(k, 0) for k, v in after.items()) / 1e9


class MachineWindow:
    """The machine's busy time over the same steady window as a relay's own measurement (1 s
    after the generator starts, until 1 s before it ends), for runs driven by another script:
    it waits for an `rtpblast` process to appear."""

    def __init__(self, secs):
        import threading
        self.secs, self.pct = secs, None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        deadline = time.time() + 120
        while time.time() < deadline:
            if any(self.is_blast(p) for p in os.listdir("/proc") if p.isdigit()):
                break
            time.sleep(0.01)
        else:
            return
        time.sleep(1.0)
        m1, t1 = machine_ns(), time.time()
        time.sleep(max(0.5, self.secs - 2.0))
        m2, t2 = machine_ns(), time.time()
        self.pct = 100.0 * machine_delta(m1, m2) / (t2 - t1)

    @staticmethod
    def is_blast(pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                return f.read().strip() == "rtpblast"
        except OSError:
            return False

    def wait(self):
        self.thread.join(timeout=180)
        return self.pct


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# The bench trunk's SRTP key (master key and salt), when it answers with SRTP.
TRUNK_KEY = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e"


def sdp(port, sess, srtp=False):
    body = ("v=0\r\no=- %d 1 IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio %d RTP/%s 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
            % (sess, port, "SAVP" if srtp else "AVP"))
    if srtp:
        body += "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:%s\r\n" % TRUNK_KEY
    return body


def header(msg, name):
    m = re.search(r"^%s:\s*(.*?)\r$" % re.escape(name), msg, re.M | re.I)
    return m.group(1) if m else None


def sdp_port(msg):
    m = re.search(r"m=audio (\d+) ", msg)
    return int(m.group(1)) if m else None


class Parties:
    """A PBX and a trunk that set up calls through Sluice (UDP, one call at a time)."""

    def __init__(self):
        self.pbx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.pbx.bind((HOST, PBX_PORT))
        self.trunk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.trunk.bind((HOST, TRUNK_PORT))
        for s in (self.pbx, self.trunk):
            s.settimeout(5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def recv(self, sock, want):
        while True:
            data, _ = sock.recvfrom(65535)
            msg = data.decode(errors="replace")
            if want(msg):
                return msg

    def call(self, i, pa, pb, srtp=False):
        """Set up call i with media ports pa (PBX) and pb (trunk); Sluice's ports (toward the PBX,
        toward the trunk)."""
        body = sdp(pa, i)
        invite = ("INVITE sip:1555%07d@127.0.0.1:5060 SIP/2.0\r\n"
                  "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKa%d\r\nMax-Forwards: 70\r\n"
                  "From: <sip:2000@127.0.0.1>;tag=a%d\r\nTo: <sip:1555%07d@127.0.0.1>\r\n"
                  "Call-ID: bench-%d@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:2000@127.0.0.1:%d>\r\n"
                  "Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s"
                  % (i, PBX_PORT, i, i, i, i, PBX_PORT, len(body), body))
        self.pbx.sendto(invite.encode(), (HOST, SLUICE_INT))
        b = self.recv(self.trunk, lambda m: m.startswith("INVITE "))
        to_trunk = sdp_port(b)
        answer = sdp(pb, i, srtp)
        ok = ("SIP/2.0 200 OK\r\n%s\r\nFrom: %s\r\nTo: %s;tag=b%d\r\nCall-ID: %s\r\nCSeq: %s\r\n"
              "Contact: <sip:callee@127.0.0.1:%d>\r\nContent-Type: application/sdp\r\n"
              "Content-Length: %d\r\n\r\n%s"
              % ("\r\n".join("Via: " + v for v in re.findall(r"^Via:\s*(.*?)\r$", b, re.M)),
                 header(b, "From"), header(b, "To"), i, header(b, "Call-ID"), header(b, "CSeq"),
                 TRUNK_PORT, len(answer), answer))
        self.trunk.sendto(ok.encode(), (HOST, SLUICE_EXT))
        a = self.recv(self.pbx, lambda m: m.startswith("SIP/2.0 200"))
        to_pbx = sdp_port(a)
        ack = ("ACK sip:x@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKk%d\r\n"
               "Max-Forwards: 70\r\nFrom: <sip:2000@127.0.0.1>;tag=a%d\r\nTo: %s\r\n"
               "Call-ID: bench-%d@127.0.0.1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
               % (PBX_PORT, i, i, header(a, "To"), i))
        self.pbx.sendto(ack.encode(), (HOST, SLUICE_INT))
        # Sluice relays the ACK to the trunk.
        self.recv(self.trunk, lambda m: m.startswith("ACK "))
        return to_pbx, to_trunk

    def close(self):
        self.pbx.close()
        self.trunk.close()


def start_sluice(work, media, max_calls, cpu, srtp="off", kernel=False):
    cfg = os.path.join(work, "sluice-media-%s-%s-%s.toml" % (media, srtp, kernel))
    with open(cfg, "w") as f:
        f.write(CONFIG.format(max_calls=max_calls, pbx=PBX_PORT, trunk=TRUNK_PORT, admin=ADMIN, media=media,
                              srtp=srtp, kernel="true" if kernel else "false"))
    cmd = [SLUICE, "run", "--config", cfg, "--log", "warn"]
    if cpu:
        cmd = ["taskset", "-c", cpu] + cmd
    log = open(os.path.join(work, "sluice.log"), "a")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with socket.create_connection((HOST, ADMIN), timeout=0.2):
                return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("sluice did not start; see %s/sluice.log" % work)


def stop(p):
    p.send_signal(signal.SIGKILL)
    p.wait()


def blast(work, flows, secs, gen_cpu):
    path = os.path.join(work, "flows")
    with open(path, "w") as f:
        f.writelines("%d %d\n" % fl for fl in flows)
    cmd = [os.path.join(work, "rtpblast"), path, str(secs), "50", "160"]
    if gen_cpu:
        cmd = ["taskset", "-c", gen_cpu] + cmd
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def blast_and_measure(work, p, flows, secs, gen_cpu):
    """Run rtpblast over `flows`; its report, and the relay's CPU (percent of one core) over
    the steady part of the window."""
    gen = blast(work, flows, secs, gen_cpu)
    time.sleep(1.0)
    pid = p.pid if p else None
    c1, w1, m1, t1 = ticks(pid) if pid else 0, switches(pid) if pid else 0, machine_ns(), time.time()
    time.sleep(max(0.5, secs - 2.0))
    c2, w2, m2, t2 = ticks(pid) if pid else 0, switches(pid) if pid else 0, machine_ns(), time.time()
    out, _ = gen.communicate(timeout=secs + 30)
    res = json.loads(out)
    res["switches_per_s"] = round((w2 - w1) / (t2 - t1))
    res["machine_pct"] = 100.0 * machine_delta(m1, m2) / (t2 - t1)
    return res, 100.0 * (c2 - c1) / TCK / (t2 - t1)


def run_sluice(work, calls, secs, relay_cpu, gen_cpu, kernel=False):
    p = start_sluice(work, "anchor", max(calls, 10), relay_cpu, kernel=kernel)
    parties = Parties()
    try:
        flows = []
        for i in range(calls):
            # Endpoint ports below Linux's ephemeral range, so that no socket of another process
            # holds one.
            pa, pb = 10000 + 2 * i, 10001 + 2 * i
            to_pbx, to_trunk = parties.call(i, pa, pb)
            flows += [(pa, to_pbx), (pb, to_trunk)]
        res, cpu_pct = blast_and_measure(work, p, flows, secs, gen_cpu)
        res.update(system="sluice-kernel" if kernel else "sluice", calls=calls, streams=2 * calls,
                   cpu_pct=round(cpu_pct, 1))
        res["us_cpu_per_pkt"] = round(cpu_pct / 100.0 * 1e6 / res["offered_pps"], 2) if cpu_pct > 0 else 0.0
        return res
    finally:
        parties.close()
        stop(p)


def run_sluice_one_way(work, calls, secs, relay_cpu, gen_cpu, srtp):
    """PBX to trunk only: RTP in; out as SRTP (srtp=True) or RTP. The trunk's sockets (which
    rtpblast must own to count what arrives) send to a sink that is never read."""
    p = start_sluice(work, "anchor", max(calls, 10), relay_cpu, "required" if srtp else "off")
    parties = Parties()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink.bind((HOST, 0))
    try:
        flows = []
        for i in range(calls):
            pa, pb = 10000 + 2 * i, 10001 + 2 * i
            to_pbx, _ = parties.call(i, pa, pb, srtp)
            flows += [(pa, to_pbx), (pb, sink.getsockname()[1])]
        res, cpu_pct = blast_and_measure(work, p, flows, secs, gen_cpu)
        relayed_pps = res["offered_pps"] / 2
        return dict(system="sluice-srtp" if srtp else "sluice-rtp", calls=calls, cpu_pct=round(cpu_pct, 1),
                    us_cpu_per_pkt=round(cpu_pct / 100.0 * 1e6 / relayed_pps, 2) if cpu_pct > 0 else 0.0,
                    received=res.get("received", res.get("recvd")), relayed_pps=relayed_pps)
    finally:
        sink.close()
        parties.close()
        stop(p)


def run_rtpengine(work, calls, secs, relay_cpu, gen_cpu):
    out = os.path.join(work, "rtpengine.jsonl")
    if os.path.exists(out):
        os.remove(out)
    env = dict(os.environ, BENCH_WORK=work)
    window = MachineWindow(secs)
    subprocess.run([sys.executable, os.path.join(TOOLS, "rtpengine_anchor.py"), "--calls", str(calls),
                    "--secs", str(secs), "--rtp-cpu", relay_cpu, "--gen-cpu", gen_cpu, "--out", out],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    with open(out) as f:
        res = json.loads(f.readline())
    res.update(system="rtpengine", cpu_pct=res["rtpengine_cpu_pct"])
    res["machine_pct"] = window.wait()
    return res


def run_direct(work, calls, secs, relay_cpu, gen_cpu):
    """No relay: the generator sends each call's two streams straight to each other's
    sockets. The machine's busy time here is the generator's own share, taken off every
    system's machine figure."""
    flows = []
    for i in range(calls):
        pa, pb = 10000 + 2 * i, 10001 + 2 * i
        flows += [(pa, pb), (pb, pa)]
    res, _ = blast_and_measure(work, None, flows, secs, gen_cpu)
    res.update(system="direct", calls=calls, streams=2 * calls, cpu_pct=0.0, us_cpu_per_pkt=0.0)
    return res


def run_floor(work, calls, secs, relay_cpu, gen_cpu, connected=False):
    """The floor: `minrelay.c` (one recvfrom and one sendto per packet, nothing else) on the
    same streams, pinned like the others; `connected`: its sockets connected to their peers."""
    pairs = os.path.join(work, "pairs")
    flows = []
    with open(pairs, "w") as f:
        for i in range(calls):
            pa, pb, ra, rb = 10000 + 2 * i, 10001 + 2 * i, 20000 + 2 * i, 30000 + 2 * i
            f.write("%d %d %d %d\n" % (ra, pa, rb, pb))
            flows += [(pa, ra), (pb, rb)]
    cmd = [os.path.join(work, "minrelay"), pairs] + (["connected"] if connected else [])
    if relay_cpu:
        cmd = ["taskset", "-c", relay_cpu] + cmd
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        if p.stdout.readline().strip() != "ready":
            sys.exit("minrelay did not start")
        res, cpu_pct = blast_and_measure(work, p, flows, secs, gen_cpu)
        res.update(system="floor-connected" if connected else "floor", calls=calls, streams=2 * calls,
                   cpu_pct=round(cpu_pct, 1))
        res["us_cpu_per_pkt"] = round(cpu_pct / 100.0 * 1e6 / res["offered_pps"], 2) if cpu_pct > 0 else 0.0
        return res
    finally:
        stop(p)


RUN = {"sluice": run_sluice, "rtpengine": run_rtpengine, "floor": run_floor,
       "floor-connected": lambda *args: run_floor(*args, connected=True),
       "sluice-kernel": lambda *args: run_sluice(*args, kernel=True), "direct": run_direct}
SYSTEMS = os.environ.get("MEDIA_SYSTEMS", "sluice rtpengine").split()


def machine_us(r):
    """The whole machine's busy time per packet the generator offered, in us (None if not
    measured)."""
    if r.get("machine_pct") is None or not r.get("offered_pps"):
        return None
    return r["machine_pct"] / 100.0 * 1e6 / r["offered_pps"]


def show(r):
    lat = r["lat_us"]
    m = machine_us(r)
    print("  %-13s %4d calls: %6.2f us CPU per packet, CPU %5.1f%%, loss %.4f%%, latency p50 %d us p99 %d us"
          % (r["system"], r["calls"], r["us_cpu_per_pkt"], r["cpu_pct"], r["loss_pct"], lat["p50"], lat["p99"])
          + (", machine %.2f us per packet" % m if m is not None else "")
          + (", %.2f context switches per packet" % (r["switches_per_s"] / r["offered_pps"])
             if "switches_per_s" in r and r.get("offered_pps") else ""), flush=True)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0.0


def memory(work, hold, relay_cpu):
    rss = {}
    for media in ("signalling-only", "anchor"):
        p = start_sluice(work, media, hold, relay_cpu)
        parties = Parties()
        try:
            time.sleep(0.5)
            before = rss_kib(p.pid)
            for i in range(hold):
                parties.call(i, 10000 + 2 * (i % 5000), 10001 + 2 * (i % 5000))
            time.sleep(0.5)
            rss[media] = (before, rss_kib(p.pid))
        finally:
            parties.close()
            stop(p)
    return rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--secs", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-calls", default="500 1000 1250 1500 1750 2000 2250 2500 3000")
    ap.add_argument("--hold", type=int, default=2000)
    ap.add_argument("--relay-cpu", default="1")
    ap.add_argument("--gen-cpu", default="0")
    ap.add_argument("--phases", default="cpu,max,latency,memory")
    a = ap.parse_args()
    phases = a.phases.split(",")
    unknown = [x for x in SYSTEMS if x not in RUN]
    if unknown:
        sys.exit("MEDIA_SYSTEMS: unknown %s (known: %s)" % (" ".join(unknown), " ".join(RUN)))
    if {"sluice", "sluice-kernel"} & set(SYSTEMS) and not os.path.exists(SLUICE):
        sys.exit("build Sluice first: cargo build --release -p sluice")
    if "rtpengine" in SYSTEMS and not shutil.which("rtpengine"):
        sys.exit("rtpengine not found (apt-get install rtpengine-daemon)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="sluice-media-bench-")
    subprocess.check_call(["gcc", "-O2", "-o", os.path.join(work, "rtpblast"), os.path.join(TOOLS, "rtpblast.c")])
    subprocess.check_call(["gcc", "-O2", "-o", os.path.join(work, "minrelay"), os.path.join(ROOT, "bench", "minrelay.c")])
    print("media relay benchmark, %s, %d cores; relays pinned to CPU %s, generator to CPU %s"
          % (time.strftime("%Y-%m-%d"), os.cpu_count(), a.relay_cpu, a.gen_cpu), flush=True)
    summary = []
    if "cpu" in phases:
        print("== CPU per relayed packet at %d calls (%d streams, %d packets/s), %gs, %d rounds"
              % (a.calls, 2 * a.calls, 100 * a.calls, a.secs, a.rounds), flush=True)
        per = {s: [] for s in RUN}
        net = {s: [] for s in RUN}
        for _ in range(a.rounds):
            machine = {}
            for system in SYSTEMS:
                r = RUN[system](work, a.calls, a.secs, a.relay_cpu, a.gen_cpu)
                show(r)
                per[system].append(r["us_cpu_per_pkt"])
                machine[system] = machine_us(r)
            base = machine.get("direct")
            for system, m in machine.items():
                if system != "direct" and m is not None and base is not None:
                    net[system].append(m - base)
        s, e = median(per["sluice"]), median(per["rtpengine"])
        if per["sluice"] and per["rtpengine"]:
            summary.append("CPU per relayed packet: sluice %.2f us, rtpengine %.2f us (medians); "
                           "ratio sluice/rtpengine %.2f" % (s, e, s / e if e else float("nan")))
        if per["floor"]:
            fl = median(per["floor"])
            if e and s:
                summary.append("floor (minrelay.c: recvfrom + sendto, nothing else): %.2f us per packet; "
                               "floor/rtpengine %.2f, sluice/floor %.2f" % (fl, fl / e, s / fl if fl else float("nan")))
            else:
                summary.append("floor (minrelay.c: recvfrom + sendto, nothing else): %.2f us per packet" % fl)
        if any(net.values()):
            nets = {k: median(v) for k, v in net.items() if v}
            summary.append("machine-wide CPU per relayed packet, net of the generator (each round's "
                           "machine busy time less the same round's `direct`): "
                           + ", ".join("%s %.2f us" % kv for kv in nets.items()))
            e_net = nets.get("rtpengine")
            for k in ("sluice", "sluice-kernel", "floor", "floor-connected"):
                if k in nets and e_net:
                    summary.append("  machine-wide, net: %s/rtpengine %.2f" % (k, nets[k] / e_net))
        if per["floor-connected"]:
            fc = median(per["floor-connected"])
            summary.append("floor with connected sockets (recvfrom + send): %.2f us per packet%s"
                           % (fc, "; floor-connected/rtpengine %.2f" % (fc / e) if e else ""))
    best = {}
    if "max" in phases:
        print("== most calls relayed with under 0.1%% loss and p99 latency under 20 ms (%gs each)"
              % a.secs, flush=True)
        for system in SYSTEMS:
            for calls in [int(c) for c in a.max_calls.split()]:
                r = RUN[system](work, calls, a.secs, a.relay_cpu, a.gen_cpu)
                show(r)
                if r["loss_pct"] >= 0.1 or r["bind_fail"] > 0 or r["lat_us"]["p99"] > 20000:
                    break
                best[system] = r
            b = best.get(system)
            summary.append("%s: most streams with <0.1%% loss and p99 < 20 ms: %s (relay CPU %s%%)"
                           % (system, 2 * b["calls"] if b else "none", b["cpu_pct"] if b else "-"))
    if "latency" in phases:
        print("== latency through the relay at half of each system's maximum", flush=True)
        for system in SYSTEMS:
            calls = max(1, (best[system]["calls"] if system in best else a.calls) // 2)
            r = RUN[system](work, calls, a.secs, a.relay_cpu, a.gen_cpu)
            show(r)
            summary.append("%s: latency at %d calls: p50 %d us, p99 %d us, p99.9 %d us"
                           % (system, calls, r["lat_us"]["p50"], r["lat_us"]["p99"], r["lat_us"]["p999"]))
    if "memory" in phases:
        rss = memory(work, a.hold, a.relay_cpu)
        (b0, b1), (m0, m1) = rss["signalling-only"], rss["anchor"]
        per_call = ((m1 - m0) - (b1 - b0)) * 1024 / a.hold
        summary.append("sluice memory: %d calls up: signalling only +%d KiB, anchored +%d KiB RSS: "
                       "%.0f bytes per anchored call beside the signalling state"
                       % (a.hold, b1 - b0, m1 - m0, per_call))
    if "srtp" in phases:
        print("== CPU per relayed packet, PBX to trunk, %d calls (%d packets/s), RTP against SRTP out, "
              "%d rounds" % (a.calls, 50 * a.calls, a.rounds), flush=True)
        per = {False: [], True: []}
        for _ in range(a.rounds):
            for srtp in (False, True):
                r = run_sluice_one_way(work, a.calls, a.secs, a.relay_cpu, a.gen_cpu, srtp)
                print("  %-11s %4d calls: %6.2f us CPU per packet, CPU %5.1f%%, received %s"
                      % (r["system"], r["calls"], r["us_cpu_per_pkt"], r["cpu_pct"], r["received"]), flush=True)
                per[srtp].append(r["us_cpu_per_pkt"])
        plain, srtp = median(per[False]), median(per[True])
        summary.append("CPU per relayed packet toward the trunk: RTP %.2f us, SRTP %.2f us (medians); "
                       "ratio SRTP/RTP %.2f" % (plain, srtp, srtp / plain if plain else float("nan")))
    print("\n== results")
    for line in summary:
        print(line)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
