//! Locating a SIP server per RFC 3263 (§4): which transport, port and addresses a host name
//! stands for, from NAPTR, SRV and A/AAAA records. Sans-IO: the caller answers each [`Query`]
//! (the shell with a DNS resolver, tests with a table), and gets the ordered candidates with
//! how long the answers may be kept.
//!
//! - An IP address is used as it is (port 5060, or 5061 for TLS, unless given).
//! - A port given: A/AAAA only (§4.2), over the transport given or UDP.
//! - A transport given without a port: SRV for it (`_sip._udp`, `_sip._tcp`, `_sips._tcp`),
//!   then A/AAAA with the default port.
//! - Neither: NAPTR (services `SIP+D2U`, `SIP+D2T`, `SIPS+D2T` among those supported, by order
//!   and preference), else SRV for each supported transport, else A/AAAA over UDP.
//!
//! SRV priority becomes the candidate's `rank` (lower first) and SRV weight its `weight`, so the
//! trunk's weighted choice among equals applies to SRV targets as RFC 2782 asks.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The transports RFC 3263 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
    Tls,
}

impl Proto {
    fn srv_prefix(self) -> &'static str {
        match self {
            Proto::Udp => "_sip._udp.",
            Proto::Tcp => "_sip._tcp.",
            Proto::Tls => "_sips._tcp.",
        }
    }

    fn naptr_service(self) -> &'static str {
        match self {
            Proto::Udp => "SIP+D2U",
            Proto::Tcp => "SIP+D2T",
            Proto::Tls => "SIPS+D2T",
        }
    }

    /// The port when neither the target nor SRV names one.
    pub fn default_port(self) -> u16 {
        match self {
            Proto::Tls => 5061,
            _ => 5060,
        }
    }
}

/// What to look up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    Naptr(String),
    Srv(String),
    /// A and AAAA.
    Ip(String),
}

/// A NAPTR record's fields that RFC 3263 uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub replacement: String,
}

/// An SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// The answer to a [`Query`] (empty when the name has no such records or the lookup failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Records {
    Naptr(Vec<Naptr>),
    Srv(Vec<Srv>),
    Ip(Vec<IpAddr>),
}

/// An answer with how long it may be kept.
pub type Answer = (Records, Duration);

/// Where to send: one address, its transport, and its place among the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub addr: SocketAddr,
    pub proto: Proto,
    /// Lower first (the SRV priority; 0 without SRV).
    pub rank: u16,
    /// Weighted choice among candidates of equal rank (the SRV weight; 1 without SRV).
    pub weight: u16,
}

/// The candidates for a target, in RFC 3263 order, and the shortest time-to-live among the
/// answers that produced them (`None` when no DNS was involved).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Located {
    pub candidates: Vec<Candidate>,
    pub ttl: Option<Duration>,
}

/// A SIP server to locate.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: Option<u16>,
    pub proto: Option<Proto>,
}

/// Locate `target` among the `supported` transports (in the caller's order of preference),
/// asking `lookup` for each record set it needs. `lookup` returns `None` for a failed lookup
/// (treated as no records).
pub fn locate(
    target: Target<'_>,
    supported: &[Proto],
    lookup: &mut dyn FnMut(&Query) -> Option<Answer>,
) -> Located {
    let host = target
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.');
    let mut out = Located::default();
    if let Ok(ip) = host.parse::<IpAddr>() {
        let proto = target.proto.unwrap_or(Proto::Udp);
        let port = target.port.unwrap_or(proto.default_port());
        out.push(SocketAddr::new(ip, port), proto, 0, 1);
        return out;
    }
    if let Some(port) = target.port {
        let proto = target.proto.unwrap_or(Proto::Udp);
        out.addresses(host, port, proto, (0, 1), lookup);
        return out;
    }
    if let Some(proto) = target.proto {
        if !out.srv(&format!("{}{host}", proto.srv_prefix()), proto, lookup) {
            out.addresses(host, proto.default_port(), proto, (0, 1), lookup);
        }
        return out;
    }
    if out.naptr(host, supported, lookup) {
        return out;
    }
    let mut found = false;
    for &proto in supported {
        found |= out.srv(&format!("{}{host}", proto.srv_prefix()), proto, lookup);
    }
    if !found {
        let proto = if supported.contains(&Proto::Udp) {
            Proto::Udp
        } else {
            supported.first().copied().unwrap_or(Proto::Udp)
        };
        out.addresses(host, proto.default_port(), proto, (0, 1), lookup);
    }
    out
}

impl Located {
    fn push(&mut self, addr: SocketAddr, proto: Proto, rank: u16, weight: u16) {
        let c = Candidate {
            addr,
            proto,
            rank,
            weight,
        };
        if !self.candidates.contains(&c) {
            self.candidates.push(c);
        }
    }

    fn keep_for(&mut self, ttl: Duration) {
        self.ttl = Some(self.ttl.map_or(ttl, |t| t.min(ttl)));
    }

    /// NAPTR for `host`: the supported services in order, each followed through SRV. Whether
    /// any candidate came of it.
    fn naptr(
        &mut self,
        host: &str,
        supported: &[Proto],
        lookup: &mut dyn FnMut(&Query) -> Option<Answer>,
    ) -> bool {
        let Some((Records::Naptr(mut records), ttl)) = lookup(&Query::Naptr(host.to_string()))
        else {
            return false;
        };
        if records.is_empty() {
            return false;
        }
        self.keep_for(ttl);
        records.sort_by_key(|r| (r.order, r.preference));
        let before = self.candidates.len();
        // RFC 3263 §4.1: only "s" records (to SRV) with a service we speak, in order; one
        // transport is enough, but keeping the others as later candidates costs nothing.
        for r in &records {
            if !r.flags.eq_ignore_ascii_case("s") {
                continue;
            }
            let Some(&proto) = supported
                .iter()
                .find(|p| r.services.eq_ignore_ascii_case(p.naptr_service()))
            else {
                continue;
            };
            let name = r.replacement.trim_end_matches('.');
            self.srv(name, proto, lookup);
        }
        self.candidates.len() > before
    }

    /// SRV for `name` over `proto`: each target's addresses, ranked by priority. Whether any
    /// candidate came of it.
    fn srv(
        &mut self,
        name: &str,
        proto: Proto,
        lookup: &mut dyn FnMut(&Query) -> Option<Answer>,
    ) -> bool {
        let Some((Records::Srv(mut records), ttl)) = lookup(&Query::Srv(name.to_string())) else {
            return false;
        };
        // A single target "." means the service is decidedly not available.
        records.retain(|r| !r.target.trim_end_matches('.').is_empty());
        if records.is_empty() {
            return false;
        }
        self.keep_for(ttl);
        records.sort_by_key(|r| r.priority);
        let before = self.candidates.len();
        for r in &records {
            let target = r.target.trim_end_matches('.');
            self.addresses(target, r.port, proto, (r.priority, r.weight), lookup);
        }
        self.candidates.len() > before
    }

    /// A/AAAA for `host`, each address a candidate at `port`.
    fn addresses(
        &mut self,
        host: &str,
        port: u16,
        proto: Proto,
        (rank, weight): (u16, u16),
        lookup: &mut dyn FnMut(&Query) -> Option<Answer>,
    ) {
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.push(SocketAddr::new(ip, port), proto, rank, weight);
            return;
        }
        let Some((Records::Ip(ips), ttl)) = lookup(&Query::Ip(host.to_string())) else {
            return;
        };
        if !ips.is_empty() {
            self.keep_for(ttl);
        }
        for ip in ips {
            self.push(SocketAddr::new(ip, port), proto, rank, weight);
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The transports of a configuration without TLS.
    const ALL: [Proto; 2] = [Proto::Udp, Proto::Tcp];

    /// A zone: answers by query, every lookup recorded.
    struct Zone {
        answers: HashMap<Query, Answer>,
        asked: Vec<Query>,
    }

    impl Zone {
        fn new() -> Zone {
            Zone {
                answers: HashMap::new(),
                asked: Vec::new(),
            }
        }
        fn with(mut self, q: Query, r: Records, ttl: u64) -> Zone {
            self.answers.insert(q, (r, Duration::from_secs(ttl)));
            self
        }
        fn locate(&mut self, target: Target<'_>, supported: &[Proto]) -> Located {
            let answers = &self.answers;
            let asked = &mut self.asked;
            locate(target, supported, &mut |q| {
                asked.push(q.clone());
                answers.get(q).cloned()
            })
        }
    }

    fn t(host: &str, port: Option<u16>, proto: Option<Proto>) -> Target<'_> {
        Target { host, port, proto }
    }

    fn ips(list: &[&str]) -> Records {
        Records::Ip(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn naptr(order: u16, pref: u16, services: &str, replacement: &str) -> Naptr {
        Naptr {
            order,
            preference: pref,
            flags: "s".into(),
            services: services.into(),
            replacement: replacement.into(),
        }
    }

    fn addrs(l: &Located) -> Vec<String> {
        l.candidates
            .iter()
            .map(|c| format!("{}/{:?}/{}/{}", c.addr, c.proto, c.rank, c.weight))
            .collect()
    }

    #[test]
    fn an_ip_address_needs_no_dns() {
        let mut z = Zone::new();
        let l = z.locate(t("192.0.2.1", None, Some(Proto::Tls)), &ALL);
        assert_eq!(addrs(&l), ["192.0.2.1:5061/Tls/0/1"]);
        let l = z.locate(t("[2001:db8::1]", Some(5070), None), &ALL);
        assert_eq!(addrs(&l), ["[2001:db8::1]:5070/Udp/0/1"]);
        assert!(z.asked.is_empty());
        assert_eq!(l.ttl, None);
    }

    #[test]
    fn a_port_means_addresses_only() {
        let mut z = Zone::new()
            .with(
                Query::Ip("sip.example".into()),
                ips(&["192.0.2.1", "2001:db8::1"]),
                60,
            )
            .with(
                Query::Srv("_sip._udp.sip.example".into()),
                Records::Srv(vec![srv(1, 1, 5999, "other.example")]),
                60,
            );
        let l = z.locate(t("sip.example", Some(5080), None), &ALL);
        assert_eq!(
            addrs(&l),
            ["192.0.2.1:5080/Udp/0/1", "[2001:db8::1]:5080/Udp/0/1"]
        );
        assert_eq!(z.asked, [Query::Ip("sip.example".into())]);
        assert_eq!(l.ttl, Some(Duration::from_secs(60)));
    }

    #[test]
    fn naptr_then_srv_then_addresses_in_order_with_the_shortest_ttl() {
        let mut z = Zone::new()
            .with(
                Query::Naptr("example.com".into()),
                Records::Naptr(vec![
                    naptr(20, 10, "SIP+D2U", "_sip._udp.example.com."),
                    naptr(10, 10, "SIP+D2T", "_sip._tcp.example.com."),
                    naptr(5, 10, "SIPS+D2T", "_sips._tcp.example.com."),
                ]),
                300,
            )
            .with(
                Query::Srv("_sip._tcp.example.com".into()),
                Records::Srv(vec![
                    srv(20, 1, 5060, "b.example.com."),
                    srv(10, 3, 5062, "a.example.com."),
                ]),
                120,
            )
            .with(
                Query::Srv("_sip._udp.example.com".into()),
                Records::Srv(vec![srv(10, 1, 5060, "a.example.com.")]),
                3600,
            )
            .with(Query::Ip("a.example.com".into()), ips(&["192.0.2.10"]), 30)
            .with(Query::Ip("b.example.com".into()), ips(&["192.0.2.20"]), 600);
        let l = z.locate(t("example.com", None, None), &ALL);
        // TLS is not among the transports given (as without a TLS configuration): `SIPS+D2T`
        // is skipped. TCP (order 10) before UDP (order 20); within TCP by SRV priority.
        assert_eq!(
            addrs(&l),
            [
                "192.0.2.10:5062/Tcp/10/3",
                "192.0.2.20:5060/Tcp/20/1",
                "192.0.2.10:5060/Udp/10/1",
            ]
        );
        assert_eq!(l.ttl, Some(Duration::from_secs(30)));
        assert!(!z
            .asked
            .contains(&Query::Srv("_sips._tcp.example.com".into())));
    }

    #[test]
    fn without_naptr_srv_per_transport_then_plain_addresses() {
        let mut z = Zone::new()
            .with(
                Query::Srv("_sip._tcp.example.net".into()),
                Records::Srv(vec![srv(0, 5, 5060, "pbx.example.net")]),
                60,
            )
            .with(
                Query::Ip("pbx.example.net".into()),
                ips(&["198.51.100.7"]),
                60,
            );
        let l = z.locate(t("example.net", None, None), &ALL);
        assert_eq!(addrs(&l), ["198.51.100.7:5060/Tcp/0/5"]);
        assert_eq!(
            z.asked,
            [
                Query::Naptr("example.net".into()),
                Query::Srv("_sip._udp.example.net".into()),
                Query::Srv("_sip._tcp.example.net".into()),
                Query::Ip("pbx.example.net".into()),
            ]
        );
        // Nothing but an address record: UDP at 5060.
        let mut z = Zone::new().with(Query::Ip("gw.example".into()), ips(&["192.0.2.5"]), 10);
        let l = z.locate(t("gw.example", None, None), &ALL);
        assert_eq!(addrs(&l), ["192.0.2.5:5060/Udp/0/1"]);
    }

    #[test]
    fn a_transport_given_asks_its_srv_only_and_dot_means_none() {
        let mut z = Zone::new()
            .with(
                Query::Srv("_sip._tcp.example.org".into()),
                Records::Srv(vec![srv(0, 0, 0, ".")]),
                60,
            )
            .with(Query::Ip("example.org".into()), ips(&["192.0.2.9"]), 60);
        let l = z.locate(t("example.org", None, Some(Proto::Tcp)), &ALL);
        assert_eq!(addrs(&l), ["192.0.2.9:5060/Tcp/0/1"]);
        assert!(!z.asked.contains(&Query::Naptr("example.org".into())));
    }

    #[test]
    fn nothing_found_is_empty_not_a_panic() {
        let mut z = Zone::new();
        let l = z.locate(t("nowhere.invalid", None, None), &ALL);
        assert!(l.candidates.is_empty());
        assert_eq!(l.ttl, None);
        let l = z.locate(t("", None, None), &[]);
        assert!(l.candidates.is_empty());
    }
}
