#!/usr/bin/env python3
"""INVITE -> 200 latency through a proxy or B2BUA, with microsecond resolution.

A minimal UDP caller: at RATE calls per second for SECONDS, send an INVITE with SDP to TARGET,
time the 200 OK, then ACK and BYE (honouring Record-Route). Prints p50/p90/p99 in ms.
Usage: latency.py LOCAL_IP TARGET_IP:PORT RATE SECONDS
"""
import asyncio, random, sys, time

LOCAL_IP, TARGET, RATE, SECONDS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
HOST, PORT = TARGET.rsplit(":", 1)
DEST = (HOST, int(PORT))
SDP = "v=0\r\no=lat 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def headers(msg):
    head = msg.split("\r\n\r\n", 1)[0].split("\r\n")
    out = {}
    for line in head[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip().lower(), []).append(v.strip())
    return head[0], out


class Caller(asyncio.DatagramProtocol):
    def __init__(self):
        self.sent = {}
        self.lat = []
        self.failed = 0

    def connection_made(self, transport):
        self.t = transport
        self.port = transport.get_extra_info("sockname")[1]

    def invite(self, n):
        cid = f"lat-{n}-{random.getrandbits(32)}"
        body = SDP.format(ip=LOCAL_IP)
        msg = (
            f"INVITE sip:15552001111@{TARGET} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOCAL_IP}:{self.port};branch=z9hG4bK{cid};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:1000@{LOCAL_IP}>;tag=t{n}\r\n"
            f"To: <sip:15552001111@{TARGET}>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:1000@{LOCAL_IP}:{self.port}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        )
        self.sent[cid] = time.perf_counter()
        self.t.sendto(msg.encode(), DEST)

    def datagram_received(self, data, addr):
        now = time.perf_counter()
        msg = data.decode(errors="replace")
        start, h = headers(msg)
        cid = h.get("call-id", [""])[0]
        cseq = h.get("cseq", [""])[0]
        if not start.startswith("SIP/2.0 "):
            return
        status = int(start[8:11])
        if not cseq.endswith("INVITE") or status < 200:
            return
        t0 = self.sent.pop(cid, None)
        if t0 is None:
            return
        if status >= 300:
            self.failed += 1
            return
        self.lat.append((now - t0) * 1000.0)
        contact = h.get("contact", [f"<sip:x@{TARGET}>"])[0]
        ruri = contact[contact.find("<") + 1 : contact.find(">")] if "<" in contact else contact
        routes = "".join(f"Route: {r}\r\n" for r in h.get("record-route", []))
        common = (
            f"Max-Forwards: 70\r\nFrom: {h['from'][0]}\r\nTo: {h['to'][0]}\r\n"
            f"Call-ID: {cid}\r\n{routes}"
        )
        for method, seq in (("ACK", 1), ("BYE", 2)):
            self.t.sendto(
                (
                    f"{method} {ruri} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {LOCAL_IP}:{self.port};branch=z9hG4bK{method}{cid};rport\r\n"
                    f"{common}CSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                DEST,
            )


async def main():
    loop = asyncio.get_running_loop()
    transport, caller = await loop.create_datagram_endpoint(Caller, local_addr=(LOCAL_IP, 0))
    start = time.perf_counter()
    total = RATE * SECONDS
    for n in range(total):
        delay = start + n / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        caller.invite(n)
    deadline = time.perf_counter() + 5
    while caller.sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    transport.close()
    lat = sorted(caller.lat)
    if not lat:
        print("n/a")
        return
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(
        f"p50={p(0.5):.3f}ms p90={p(0.9):.3f}ms p99={p(0.99):.3f}ms "
        f"(n={len(lat)}, unanswered={len(caller.sent)}, failed={caller.failed})"
    )


asyncio.run(main())
