//! One dialog of a call, seen from Sluice's end (RFC 3261 §12): the identifiers, the peer's
//! target and route set, and the requests Sluice builds inside it.

use crate::config::ListenerAddr;
use crate::headers::format_host_port;
use crate::ids::Ids;
use sluice_sip::{HeaderName, Message, Method, NameAddr, Uri};
use sluice_transaction::{Flow, Transport};
use std::net::SocketAddr;

#[derive(Debug, Clone)]
pub struct Dialog {
    /// Where the dialog's peer is, and the listener Sluice uses for it.
    pub flow: Flow,
    pub call_id: String,
    pub local_tag: String,
    /// Our From (toward the callee) or To (toward the caller) value, with our tag.
    pub local_party: String,
    /// The peer's From or To value, with its tag once known.
    pub remote_party: String,
    pub remote_tag: Option<String>,
    pub local_cseq: u32,
    pub remote_cseq: Option<u32>,
    /// The peer's Contact: the Request-URI of requests in the dialog.
    pub remote_target: String,
    pub route_set: Vec<String>,
    /// Our Contact on this dialog.
    pub contact: String,
    /// Host:port written in our Via on this dialog.
    pub via_host: String,
}

impl Dialog {
    /// The CSeq for a new request of ours (not ACK, which reuses its INVITE's).
    pub fn next_cseq(&mut self) -> u32 {
        self.local_cseq = self.local_cseq.saturating_add(1);
        self.local_cseq
    }

    /// Our Via for a new request in this dialog, with a fresh branch.
    pub fn via(&self, ids: &mut Ids) -> String {
        format!(
            "SIP/2.0/{} {};branch={};rport",
            self.flow.transport.via_name(),
            self.via_host,
            ids.branch()
        )
    }

    /// A request in this dialog, with a fresh branch: Request-URI, Via, Max-Forwards, From, To,
    /// Call-ID, CSeq and Route. The caller adds Contact and what crosses from the other leg.
    pub fn request(&self, method: Method, cseq: u32, max_forwards: u32, ids: &mut Ids) -> Message {
        let mut req = Message::request(method.clone(), self.remote_target.clone());
        let via = self.via(ids);
        let h = &mut req.headers;
        h.push(HeaderName::Via, via);
        h.push(HeaderName::MaxForwards, max_forwards.to_string());
        h.push(HeaderName::From, self.local_party.clone());
        h.push(HeaderName::To, self.remote_party.clone());
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{cseq} {method}"));
        for r in &self.route_set {
            h.push(HeaderName::Route, r.clone());
        }
        req
    }

    /// Where a request in this dialog goes: the first loose route, else the remote target when
    /// it is an IP address of our family, else the address the dialog was set up with. Over
    /// UDP no connection is named; over TCP the dialog's connection is reused.
    pub fn next_hop(&self) -> Flow {
        let mut flow = self.flow;
        if !flow.transport.is_reliable() {
            flow.conn = None;
        }
        let first_route = self
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r).map(|n| n.uri));
        let target = first_route.unwrap_or(&self.remote_target);
        if let Some(addr) = Uri::parse(target).and_then(|u| literal_addr(&u)) {
            if addr.is_ipv4() == flow.local.is_ipv4() {
                flow.remote = addr;
            }
        }
        flow
    }

    /// A peer behind NAT is answered where it sends from: follow its UDP source address.
    pub fn follow_source(&mut self, flow: Flow) {
        if flow.transport == Transport::Udp {
            self.flow.remote = flow.remote;
        }
    }

    /// What the callee's response to our INVITE tells of its dialog: its tag (the first one,
    /// or the one that answered), its target, and, for a success or a provisional, its route
    /// set (Record-Route, reversed).
    pub fn learn_from_answer(&mut self, status: u16, msg: &Message) {
        let Some(tag) = msg.to_tag() else {
            return;
        };
        if ((200..300).contains(&status) || self.remote_tag.is_none())
            && self.remote_tag.as_deref() != Some(tag)
        {
            self.remote_tag = Some(tag.to_string());
            self.remote_party = msg.header(&HeaderName::To).unwrap_or("").to_string();
        }
        self.refresh_target(msg);
        if status < 300 {
            let mut rr: Vec<String> = msg
                .headers
                .values(&HeaderName::RecordRoute)
                .map(str::to_string)
                .collect();
            rr.reverse();
            self.route_set = rr;
        }
    }

    /// A target refresh (RFC 3261 §12.2): the peer's new Contact, when it sent one.
    pub fn refresh_target(&mut self, msg: &Message) {
        if let Some(uri) = msg.contact_uri() {
            self.remote_target = uri.to_string();
        }
    }
}

/// The IP address and port of a URI whose host is an IP literal. Without a port: 5061 for
/// `sips:` and `transport=tls` (RFC 3261 §19.1.2), else 5060.
pub fn literal_addr(u: &Uri<'_>) -> Option<SocketAddr> {
    let host = u.host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    let tls = u.scheme.eq_ignore_ascii_case("sips")
        || sluice_sip::fields::param(u.params, "transport")
            .is_some_and(|t| t.eq_ignore_ascii_case("tls"));
    let default = if tls {
        Transport::Tls.default_port()
    } else {
        Transport::Udp.default_port()
    };
    Some(SocketAddr::new(ip, u.port.unwrap_or(default)))
}

/// The `;transport=` parameter a URI toward this transport carries (none for UDP).
pub fn transport_param(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "",
        Transport::Tcp => ";transport=tcp",
        Transport::Tls => ";transport=tls",
    }
}

/// Our Contact on a listener, with the user of the party it stands for.
impl Dialog {
    /// Behind NAT: write `public` (with the listener's port) in this dialog's Contact, and in
    /// its Via when `via`, instead of the address Sluice listens on.
    pub fn advertise(&mut self, public: std::net::IpAddr, via: bool) {
        let private = format_host_port(self.flow.local);
        let shown = format_host_port(std::net::SocketAddr::new(public, self.flow.local.port()));
        self.contact = self.contact.replace(&private, &shown);
        if via {
            self.via_host = shown;
        }
    }
}

/// A `sips:` Contact (RFC 3261 §8.1.1.8 and §12.1.1: a dialog set up with a `sips:` URI has
/// one), without a transport parameter (RFC 5630).
pub fn make_sips_contact(user: &str, l: &ListenerAddr) -> String {
    let user = if user.is_empty() { "sluice" } else { user };
    format!("<sips:{user}@{}>", format_host_port(l.addr))
}

/// The scheme and transport parameter of a URI naming `peer`: `sips:` alone for a peer that
/// asks for it over TLS, else `sip:` with the transport's parameter.
pub fn uri_scheme(sips: bool, t: Transport) -> (&'static str, &'static str) {
    if sips && t == Transport::Tls {
        ("sips", "")
    } else {
        ("sip", transport_param(t))
    }
}

pub fn make_contact(user: &str, l: &ListenerAddr) -> String {
    let user = if user.is_empty() { "sluice" } else { user };
    format!(
        "<sip:{user}@{}{}>",
        format_host_port(l.addr),
        transport_param(l.transport)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Side;

    fn dialog() -> Dialog {
        let addr = |s: &str| s.parse().unwrap();
        Dialog {
            flow: Flow {
                transport: Transport::Udp,
                local: addr("127.0.0.1:5080"),
                remote: addr("127.0.0.20:5060"),
                conn: Some(3),
            },
            call_id: "cid".into(),
            local_tag: "lt".into(),
            local_party: "<sip:a@127.0.0.1:5080>;tag=lt".into(),
            remote_party: "<sip:b@127.0.0.20>;tag=rt".into(),
            remote_tag: Some("rt".into()),
            local_cseq: 7,
            remote_cseq: None,
            remote_target: "sip:b@127.0.0.21:5070".into(),
            route_set: Vec::new(),
            contact: make_contact(
                "a",
                &ListenerAddr {
                    side: Side::External,
                    transport: Transport::Udp,
                    addr: addr("127.0.0.1:5080"),
                },
            ),
            via_host: "127.0.0.1:5080".into(),
        }
    }

    #[test]
    fn requests_carry_the_dialog_and_go_to_the_target() {
        let mut d = dialog();
        let mut ids = Ids::new(3);
        let cseq = d.next_cseq();
        let bye = d.request(Method::Bye, cseq, 70, &mut ids);
        assert_eq!(bye.request_uri(), Some("sip:b@127.0.0.21:5070"));
        assert_eq!(bye.cseq(), Some((8, Method::Bye)));
        assert_eq!(bye.call_id(), Some("cid"));
        assert_eq!(bye.to_tag(), Some("rt"));
        assert!(bye
            .top_via()
            .unwrap()
            .branch()
            .unwrap()
            .starts_with("z9hG4bK"));
        let hop = d.next_hop();
        assert_eq!(hop.remote, "127.0.0.21:5070".parse().unwrap());
        assert_eq!(hop.conn, None, "UDP names no connection");
        d.route_set = vec!["<sip:127.0.0.30;lr>".into()];
        assert_eq!(d.next_hop().remote, "127.0.0.30:5060".parse().unwrap());
        // A TLS peer's target without a port is on 5061.
        for target in ["sips:b@127.0.0.22", "sip:b@127.0.0.22;transport=TLS"] {
            let u = Uri::parse(target).unwrap();
            assert_eq!(
                literal_addr(&u),
                Some("127.0.0.22:5061".parse().unwrap()),
                "{target}"
            );
        }
        assert_eq!(d.contact, "<sip:a@127.0.0.1:5080>");
    }
}
