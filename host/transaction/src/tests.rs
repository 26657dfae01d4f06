use super::*;
use sluice_sip::parse_message;
use sluice_sip::HeaderName;
use std::net::SocketAddr;

fn flow(transport: Transport) -> Flow {
    Flow {
        transport,
        local: "127.0.0.1:5060".parse::<SocketAddr>().unwrap(),
        remote: "127.0.0.10:5070".parse::<SocketAddr>().unwrap(),
        conn: None,
    }
}

fn request(method: &str, branch: &str) -> Message {
    let raw = format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.10:5070;branch={branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@a>;tag=f1\r\n\
To: <sip:bob@b>\r\n\
Call-ID: c1\r\n\
CSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n"
    );
    parse_message(raw.as_bytes()).unwrap()
}

/// What the layer produced: its transmits first, then its events (the order to poll them in).
#[derive(Debug)]
enum Out {
    Sent(Transmit),
    Event(TxEvent),
}

fn drain(layer: &mut TransactionLayer) -> Vec<Out> {
    let mut out: Vec<Out> = std::iter::from_fn(|| layer.poll_transmit())
        .map(Out::Sent)
        .collect();
    out.extend(std::iter::from_fn(|| layer.poll_event()).map(Out::Event));
    out
}

fn transmits(out: &[Out]) -> usize {
    out.iter().filter(|o| matches!(o, Out::Sent(_))).count()
}

/// Run the clock forward in small steps up to `until`, collecting everything produced.
fn run_until(layer: &mut TransactionLayer, start: Instant, until: Duration) -> Vec<Out> {
    let mut out = Vec::new();
    while let Some(at) = layer.poll_timeout() {
        if at > start + until {
            break;
        }
        layer.handle_timeout(at);
        out.extend(drain(layer));
    }
    out
}

fn response_for(req: &Message, status: u16) -> Message {
    response_to(req, status, "X", Some("t9"))
}

#[test]
fn invite_client_retransmits_with_timer_a_and_times_out_with_b() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let id = l.send_request(t0, request("INVITE", "z9hG4bKa"), flow(Transport::Udp));
    assert_eq!(transmits(&drain(&mut l)), 1);
    let ev = run_until(&mut l, t0, Duration::from_secs(40));
    // Timer A at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: six retransmissions before Timer B (32 s).
    assert_eq!(transmits(&ev), 6);
    assert!(ev
        .iter()
        .any(|e| matches!(e, Out::Event(TxEvent::ClientTimeout { tx, .. }) if *tx == id)));
    assert_eq!(l.stats().client_timeouts, 1);
    assert_eq!(l.client_count(), 0);
}

#[test]
fn a_ringing_invite_is_waited_for_past_timer_b_until_timer_c() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKring");
    let id = l.send_request(t0, req.clone(), flow(Transport::Udp));
    drain(&mut l);
    let ringing = t0 + Duration::from_secs(1);
    l.on_response(ringing, response_for(&req, 180), flow(Transport::Udp));
    drain(&mut l);
    // Past 64*T1 (32 s): still waiting.
    let ev = run_until(&mut l, t0, Duration::from_secs(60));
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Out::Event(TxEvent::ClientTimeout { .. }))),
        "{ev:?}"
    );
    assert_eq!(l.client_count(), 1);
    // A later provisional restarts Timer C; it fires 181 s after the last one.
    let again = t0 + Duration::from_secs(100);
    l.on_response(again, response_for(&req, 183), flow(Transport::Udp));
    drain(&mut l);
    let ev = run_until(&mut l, t0, Duration::from_secs(280));
    assert!(ev.is_empty(), "{ev:?}");
    let ev = run_until(&mut l, t0, Duration::from_secs(282));
    assert!(ev
        .iter()
        .any(|e| matches!(e, Out::Event(TxEvent::ClientTimeout { tx, .. }) if *tx == id)));
}

#[test]
fn no_retransmission_over_tcp() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    l.send_request(t0, request("OPTIONS", "z9hG4bKb"), flow(Transport::Tcp));
    drain(&mut l);
    let ev = run_until(&mut l, t0, Duration::from_secs(40));
    assert_eq!(transmits(&ev), 0);
    assert!(ev
        .iter()
        .any(|e| matches!(e, Out::Event(TxEvent::ClientTimeout { .. }))));
}

#[test]
fn non_invite_timer_e_caps_at_t2() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    l.send_request(t0, request("OPTIONS", "z9hG4bKc"), flow(Transport::Udp));
    drain(&mut l);
    let ev = run_until(&mut l, t0, Duration::from_secs(33));
    // E: 0.5, 1.5, 3.5, 7.5, then every 4 s up to 31.5: 0.5,1.5,3.5,7.5,11.5,...,31.5 = 10.
    assert_eq!(transmits(&ev), 10);
}

#[test]
fn provisional_stops_timer_a_and_final_error_is_acked() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKd");
    let id = l.send_request(t0, req.clone(), flow(Transport::Udp));
    drain(&mut l);
    l.on_response(t0, response_for(&req, 180), flow(Transport::Udp));
    let ev = drain(&mut l);
    assert!(matches!(ev[0], Out::Event(TxEvent::Response { tx, .. }) if tx == id));
    assert!(l.client_proceeding(id));
    let later = run_until(&mut l, t0, Duration::from_secs(10));
    assert_eq!(transmits(&later), 0, "no retransmission once proceeding");
    l.on_response(t0, response_for(&req, 486), flow(Transport::Udp));
    let ev = drain(&mut l);
    let ack = ev.iter().find_map(|e| match e {
        Out::Sent(t) => Some(parse_message(&t.data).unwrap()),
        _ => None,
    });
    let ack = ack.expect("ACK sent");
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.cseq(), Some((1, Method::Ack)));
    assert_eq!(ack.to_tag(), Some("t9"));
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKd"));
    // A retransmitted 486 is ACKed again and not passed up.
    l.on_response(t0, response_for(&req, 486), flow(Transport::Udp));
    let ev = drain(&mut l);
    assert_eq!(transmits(&ev), 1);
    assert!(!ev
        .iter()
        .any(|e| matches!(e, Out::Event(TxEvent::Response { .. }))));
}

#[test]
fn two_hundred_retransmissions_reach_the_user() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKe");
    l.send_request(t0, req.clone(), flow(Transport::Udp));
    drain(&mut l);
    l.on_response(t0, response_for(&req, 200), flow(Transport::Udp));
    l.on_response(t0, response_for(&req, 200), flow(Transport::Udp));
    let ev = drain(&mut l);
    let responses = ev
        .iter()
        .filter(|e| matches!(e, Out::Event(TxEvent::Response { .. })))
        .count();
    assert_eq!(responses, 2);
    let _ = run_until(&mut l, t0, Duration::from_secs(33));
    assert_eq!(l.client_count(), 0, "Timer M ends the Accepted state");
}

#[test]
fn server_invite_sends_trying_and_absorbs_retransmissions() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKf");
    l.on_request(t0, req.clone(), flow(Transport::Udp));
    let ev = drain(&mut l);
    assert_eq!(transmits(&ev), 1, "100 Trying");
    let id = ev
        .iter()
        .find_map(|e| match e {
            Out::Event(TxEvent::Request { tx, .. }) => Some(*tx),
            _ => None,
        })
        .unwrap();
    // Retransmitted INVITE: 100 again, no new request event.
    l.on_request(t0, req.clone(), flow(Transport::Udp));
    let ev = drain(&mut l);
    assert_eq!(transmits(&ev), 1);
    assert!(!ev
        .iter()
        .any(|e| matches!(e, Out::Event(TxEvent::Request { .. }))));
    // Final error: retransmitted by Timer G until ACK.
    l.respond(t0, id, &response_for(&req, 486));
    drain(&mut l);
    l.handle_timeout(t0 + Duration::from_millis(500));
    l.handle_timeout(t0 + Duration::from_millis(1500));
    assert_eq!(transmits(&drain(&mut l)), 2);
    let mut ack = request("ACK", "z9hG4bKf");
    ack.headers.set(HeaderName::CSeq, "1 ACK");
    l.on_request(t0, ack, flow(Transport::Udp));
    assert!(drain(&mut l).is_empty(), "ACK absorbed by the transaction");
    let ev = run_until(&mut l, t0, Duration::from_secs(10));
    assert_eq!(transmits(&ev), 0, "no retransmission after ACK");
    assert_eq!(l.server_count(), 0);
}

#[test]
fn timer_h_fires_without_ack() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKg");
    l.on_request(t0, req.clone(), flow(Transport::Udp));
    let id = drain(&mut l)
        .into_iter()
        .find_map(|e| match e {
            Out::Event(TxEvent::Request { tx, .. }) => Some(tx),
            _ => None,
        })
        .unwrap();
    l.respond(t0, id, &response_for(&req, 500));
    drain(&mut l);
    let ev = run_until(&mut l, t0, Duration::from_secs(40));
    assert!(ev
        .iter()
        .any(|e| matches!(e, Out::Event(TxEvent::ServerTimeout { tx }) if *tx == id)));
    // G: 0.5, 1.5, 3.5, 7.5, then every 4 s until H at 32 s.
    assert_eq!(transmits(&ev), 4 + 6);
}

#[test]
fn cancel_matches_invite_and_merged_request_gets_482() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKh");
    l.on_request(t0, inv.clone(), flow(Transport::Udp));
    let id = drain(&mut l)
        .into_iter()
        .find_map(|e| match e {
            Out::Event(TxEvent::Request { tx, .. }) => Some(tx),
            _ => None,
        })
        .unwrap();
    let mut cancel = request("CANCEL", "z9hG4bKh");
    cancel.headers.set(HeaderName::CSeq, "1 CANCEL");
    assert_eq!(l.find_invite_for_cancel(&cancel), Some(id));
    // Same From tag, Call-ID and CSeq on another branch: merged.
    l.on_request(t0, request("INVITE", "z9hG4bKother"), flow(Transport::Udp));
    let ev = drain(&mut l);
    let resp = ev
        .iter()
        .find_map(|e| match e {
            Out::Sent(t) => Some(parse_message(&t.data).unwrap()),
            _ => None,
        })
        .unwrap();
    assert_eq!(resp.status(), Some(482));
    assert!(!ev
        .iter()
        .any(|e| matches!(e, Out::Event(TxEvent::Request { .. }))));
    assert_eq!(l.stats().merged_requests, 1);
}

#[test]
fn responses_follow_via_port_unless_rport() {
    let req = request("OPTIONS", "z9hG4bKi");
    let f = reply_flow(&req, flow(Transport::Udp));
    assert_eq!(f.remote.port(), 5070);
    let mut req2 = req.clone();
    req2.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 10.0.0.1:5999;branch=z9hG4bKi;rport",
    );
    assert_eq!(reply_flow(&req2, flow(Transport::Udp)).remote.port(), 5070);
    let mut req3 = req;
    req3.headers
        .set(HeaderName::Via, "SIP/2.0/UDP 10.0.0.1:5999;branch=z9hG4bKi");
    assert_eq!(reply_flow(&req3, flow(Transport::Udp)).remote.port(), 5999);
}

#[test]
fn a_transport_error_fails_the_waiting_client_transactions_at_once() {
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let tcp = flow(Transport::Tcp);
    let invite = l.send_request(t0, request("INVITE", "z9hG4bKte1"), tcp);
    let options = l.send_request(t0, request("OPTIONS", "z9hG4bKte2"), tcp);
    // Another destination is not affected.
    let mut elsewhere = tcp;
    elsewhere.remote = "127.0.0.11:5060".parse().unwrap();
    let other = l.send_request(t0, request("OPTIONS", "z9hG4bKte3"), elsewhere);
    drain(&mut l);
    assert_eq!(l.transport_failed(Transport::Tcp, tcp.remote), 2);
    let ev = drain(&mut l);
    for id in [invite, options] {
        assert!(
            ev.iter()
                .any(|e| matches!(e, Out::Event(TxEvent::TransportError { tx, .. }) if *tx == id)),
            "{ev:?}"
        );
    }
    assert!(!ev
        .iter()
        .any(|e| matches!(e, Out::Event(TxEvent::TransportError { tx, .. }) if *tx == other)));
    assert_eq!(l.client_count(), 1);
    assert_eq!(l.stats().transport_errors, 2);
    assert_eq!(l.stats().client_timeouts, 0);
    // Nothing is left to time out for the failed ones, and a second failure finds nothing.
    assert_eq!(l.transport_failed(Transport::Tcp, tcp.remote), 0);
}

#[test]
fn a_client_transaction_forgets_its_bytes_at_the_final_answer_and_its_request_when_released() {
    // INVITE with 2xx (Accepted, 32 s), INVITE with 486 (Completed, 32 s), BYE with 200
    // (Completed, T4): none is sent again, so none keeps its serialised copy while it lingers.
    for (method, branch, status) in [
        ("INVITE", "z9hG4bKm1", 200),
        ("INVITE", "z9hG4bKm2", 486),
        ("BYE", "z9hG4bKm3", 200),
    ] {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let t0 = Instant::now();
        let req = request(method, branch);
        let id = l.send_request(t0, req.clone(), flow(Transport::Udp));
        drain(&mut l);
        assert!(
            !l.client[&id].data.is_empty(),
            "{method}: kept while it may be resent"
        );
        l.on_response(t0, response_for(&req, status), flow(Transport::Udp));
        drain(&mut l);
        assert_eq!(l.client_count(), 1, "{method} {status}: lingers");
        assert!(
            l.client[&id].data.is_empty(),
            "{method} {status}: bytes kept"
        );
        // The UA core still builds its retries and challenge answers from the request, until
        // it releases it.
        assert_eq!(l.client_request(id), Some(&req), "{method} {status}");
        l.release_request(id);
        assert_eq!(l.client_request(id), None, "{method} {status}: released");
        assert_eq!(l.client_count(), 1, "{method} {status}: lingers on");
        // And nothing is retransmitted while it lingers.
        let later = run_until(&mut l, t0, Duration::from_secs(40));
        assert_eq!(transmits(&later), 0, "{method} {status}");
    }
}

#[test]
fn a_waiting_client_transaction_keeps_its_request_when_asked_to_release_it() {
    // Before the final answer the request is still resent and may be cancelled or timed out:
    // a release then changes nothing, and Timer B's event still carries the request.
    let mut l = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let req = request("INVITE", "z9hG4bKw1");
    let id = l.send_request(t0, req.clone(), flow(Transport::Udp));
    drain(&mut l);
    l.release_request(id);
    l.on_response(t0, response_for(&req, 180), flow(Transport::Udp));
    drain(&mut l);
    l.release_request(id);
    assert_eq!(l.client_request(id), Some(&req));
    let ev = run_until(&mut l, t0, Duration::from_secs(200));
    let timed_out = ev.iter().find_map(|e| match e {
        Out::Event(TxEvent::ClientTimeout { tx, request }) if *tx == id => Some(request),
        _ => None,
    });
    assert_eq!(timed_out.map(|r| r.as_ref()), Some(&req));
}
