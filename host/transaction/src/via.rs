//! The Via rules of RFC 3261 §18.2 with RFC 3581, in one place: where a response goes, and
//! how a received request records where it really came from.

use crate::flow::Flow;
use sluice_sip::{HeaderName, Message};

/// Where responses to `req`, received on `flow`, go (RFC 3261 §18.2.2 with RFC 3581): on a
/// stream, the connection it came on; on UDP, the address it came from, to the top Via's port
/// (5060 by default) unless the Via asked for `rport`, in which case to the source port too.
/// Used by server transactions, for 2xx retransmissions outside them, and for stateless
/// answers to malformed requests.
pub fn reply_flow(req: &Message, flow: Flow) -> Flow {
    if flow.transport.is_reliable() {
        return flow;
    }
    let Some(via) = req.top_via() else {
        return flow;
    };
    if via.param("rport").is_some() {
        return flow;
    }
    let mut f = flow;
    f.remote.set_port(via.port.unwrap_or(5060));
    f
}

/// Record where a request received on `flow` came from in its top Via (RFC 3261 §18.2.1,
/// RFC 3581): `received` when the sent-by host is not the source address, and `rport` filled
/// in when the sender asked for it.
pub fn stamp_received(msg: &mut Message, flow: Flow) {
    let Some(first) = msg.headers.values(&HeaderName::Via).next() else {
        return;
    };
    let Some(via) = sluice_sip::Via::parse(first) else {
        return;
    };
    let wants_rport = via.param("rport").is_some_and(str::is_empty);
    let ip = flow.remote.ip().to_string();
    let host_differs = via.host.trim_start_matches('[').trim_end_matches(']') != ip;
    if !wants_rport && !host_differs {
        return;
    }
    // Everything before the parameters, then the parameters without an empty rport and any
    // received, then ours.
    let head = first.strip_suffix(via.params).unwrap_or(first);
    let mut stamped = String::with_capacity(first.len().saturating_add(40));
    stamped.push_str(head);
    for (name, value) in sluice_sip::fields::params(via.params) {
        if name.eq_ignore_ascii_case("received")
            || name.eq_ignore_ascii_case("rport") && value.is_empty()
        {
            continue;
        }
        stamped.push(';');
        stamped.push_str(name);
        if !value.is_empty() {
            stamped.push('=');
            stamped.push_str(value);
        }
    }
    stamped.push_str(";received=");
    stamped.push_str(&ip);
    if wants_rport {
        stamped.push_str(";rport=");
        stamped.push_str(itoa::Buffer::new().format(flow.remote.port()));
    }
    if msg.headers.pop_first_value(&HeaderName::Via).is_some() {
        msg.headers.push_front(HeaderName::Via, stamped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;
    use sluice_sip::parse_message;

    fn flow() -> Flow {
        Flow {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "192.0.2.7:40000".parse().unwrap(),
            conn: None,
        }
    }

    fn with_via(via: &str) -> Message {
        parse_message(
            format!("OPTIONS sip:x SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP second;branch=z9hG4bK2\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn received_and_rport_are_stamped_on_the_top_via_only() {
        let mut m = with_via("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport;received=1.2.3.4");
        stamp_received(&mut m, flow());
        let vias: Vec<&str> = m.headers.values(&HeaderName::Via).collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;received=192.0.2.7;rport=40000",
                "SIP/2.0/UDP second;branch=z9hG4bK2"
            ]
        );
        // Responses then go to the source address and port.
        assert_eq!(reply_flow(&m, flow()).remote, flow().remote);
    }

    #[test]
    fn nothing_is_stamped_when_the_via_tells_the_truth() {
        let mut m = with_via("SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK1");
        let before = m.clone();
        stamp_received(&mut m, flow());
        assert_eq!(m, before);
        // Without rport, responses go to the Via's port.
        assert_eq!(reply_flow(&m, flow()).remote.port(), 5070);
    }
}
