//! Tenants and the decisions made from them, as data plus functions (no I/O): which tenant a
//! PBX call belongs to, which tenant owns a DID called on a trunk, which of a tenant's ordered
//! routes a dialled number takes (prefix or pattern, rewrite) and the trunks it may use, and
//! what caller ID it may present on a trunk.

use crate::did_pool::{DidIndex, DidPool, Overlap};
use crate::number::{Format, Number, Numbering};
use ipnet::IpNet;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// What a call presenting a caller ID outside the tenant's pool on the chosen trunk gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignCallerId {
    /// The tenant's default caller ID is presented instead.
    UseDefault,
    /// The call is refused (403).
    Refuse,
}

/// A dialled-number matcher of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// The normalised number starts with these digits (empty: every number).
    Prefix(String),
    /// The whole normalised number matches: digits stand for themselves, `X` any digit, `Z`
    /// 1-9, `N` 2-9, and a final `.` one or more further digits (`1NXXNXXXXXX`, `44.`).
    Pattern(String),
}

impl Matcher {
    /// Check a pattern's syntax: what is wrong with it.
    pub fn check_pattern(p: &str) -> Result<(), &'static str> {
        let body = p.strip_suffix('.').unwrap_or(p);
        if body.is_empty() {
            return Err("a pattern needs at least one digit or X, Z, N");
        }
        if body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, 'X' | 'Z' | 'N'))
        {
            Ok(())
        } else {
            Err("a pattern holds only digits, X (0-9), Z (1-9), N (2-9) and a final `.`")
        }
    }

    pub fn matches(&self, digits: &str) -> bool {
        match self {
            Matcher::Prefix(p) => digits.starts_with(p.as_str()),
            Matcher::Pattern(p) => {
                let (body, more) = match p.strip_suffix('.') {
                    Some(b) => (b, true),
                    None => (p.as_str(), false),
                };
                let fits = if more {
                    digits.len() > body.len()
                } else {
                    digits.len() == body.len()
                };
                fits && body.bytes().zip(digits.bytes()).all(|(p, d)| match p {
                    b'X' => d.is_ascii_digit(),
                    b'Z' => (b'1'..=b'9').contains(&d),
                    b'N' => (b'2'..=b'9').contains(&d),
                    _ => p == d,
                })
            }
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Prefix(p) if p.is_empty() => write!(f, "every number"),
            Matcher::Prefix(p) => write!(f, "prefix {p}"),
            Matcher::Pattern(p) => write!(f, "pattern {p}"),
        }
    }
}

/// One of a tenant's outbound routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRoute {
    pub matcher: Matcher,
    /// Digits removed from the front of the number, then digits put in front.
    pub strip: usize,
    pub prepend: String,
    /// The trunks tried, in order.
    pub trunks: Vec<Arc<str>>,
}

/// A tenant of the PBX: its numbers, where its calls go and how its numbers are read.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: Arc<str>,
    /// SIP domains (lower case) its PBX calls carry in From or the Request-URI.
    pub domains: Vec<String>,
    /// Addresses its PBX calls from.
    pub sources: Vec<IpNet>,
    /// The numbering plan its users dial in.
    pub numbering: Numbering,
    /// How numbers are written toward its PBX.
    pub pbx_format: Format,
    /// Its DID pool on each trunk assigned to it.
    pub pools: Vec<(Arc<str>, DidPool)>,
    pub default_caller_id: Option<Number>,
    pub foreign_caller_id: ForeignCallerId,
    pub routes: Vec<OutRoute>,
}

impl OutRoute {
    /// A route of `matcher` to `trunks`, without rewrite.
    pub fn to(matcher: Matcher, trunks: &[&str]) -> OutRoute {
        OutRoute {
            matcher,
            strip: 0,
            prepend: String::new(),
            trunks: trunks.iter().map(|t| Arc::from(*t)).collect(),
        }
    }
}

impl Tenant {
    /// A tenant with nothing but its pools and routes, for tests and labs: domain
    /// `NAME.example`, North American numbering, E.164 toward its PBX, foreign caller IDs
    /// refused. `None` when a pool does not parse.
    pub fn simple(name: &str, pools: &[(&str, &str)], routes: Vec<OutRoute>) -> Option<Tenant> {
        let pools = pools
            .iter()
            .map(|(t, p)| Some((Arc::from(*t), DidPool::parse(p).ok()?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Tenant {
            name: name.into(),
            domains: vec![format!("{name}.example")],
            sources: Vec::new(),
            numbering: Numbering::default(),
            pbx_format: Format::E164,
            pools,
            default_caller_id: None,
            foreign_caller_id: ForeignCallerId::Refuse,
            routes,
        })
    }

    /// Its pool on `trunk`, when the trunk is assigned to it.
    pub fn pool(&self, trunk: &str) -> Option<&DidPool> {
        self.pools
            .iter()
            .find(|(t, _)| &**t == trunk)
            .map(|(_, p)| p)
    }
}

/// Pools of two tenants on one trunk share a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableError {
    pub trunk: String,
    pub overlap: Overlap,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "on trunk `{}`: {}", self.trunk, self.overlap)
    }
}

impl std::error::Error for TableError {}

/// Every tenant, and per trunk the index of their pools.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    tenants: Vec<Tenant>,
    /// Per trunk: the pools' index, and each owner's tenant.
    dids: HashMap<Arc<str>, (DidIndex, Vec<usize>)>,
    /// Numbers routed as dialled and whatever the caller ID (911, 112…).
    emergency: Vec<String>,
}

/// A PBX call matched to one of its tenant's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound<'a> {
    /// Position of the route among the tenant's (0-based).
    pub route: usize,
    /// The number to send, after the route's rewrite.
    pub called: Number,
    pub trunks: &'a [Arc<str>],
    /// An emergency number: routed whatever the caller ID.
    pub emergency: bool,
}

/// The caller ID a call may present on a trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerId {
    /// The presented one is the tenant's on that trunk (or no number was presented).
    Keep,
    /// Present this instead (the tenant's default).
    Replace(Number),
    /// Not the tenant's, and the tenant refuses such calls.
    Refuse,
}

impl RoutingTable {
    /// The table of `tenants`; refused when two tenants' pools on one trunk overlap (named).
    pub fn new(tenants: Vec<Tenant>, emergency: Vec<String>) -> Result<RoutingTable, TableError> {
        let mut by_trunk: HashMap<Arc<str>, Vec<(usize, &str, &DidPool)>> = HashMap::new();
        for (i, t) in tenants.iter().enumerate() {
            for (trunk, pool) in &t.pools {
                by_trunk
                    .entry(trunk.clone())
                    .or_default()
                    .push((i, &t.name, pool));
            }
        }
        let mut dids = HashMap::with_capacity(by_trunk.len());
        for (trunk, owners) in by_trunk {
            let pools: Vec<(&str, &DidPool)> = owners.iter().map(|(_, n, p)| (*n, *p)).collect();
            let index = DidIndex::new(&pools).map_err(|overlap| TableError {
                trunk: trunk.to_string(),
                overlap,
            })?;
            dids.insert(trunk, (index, owners.iter().map(|(i, _, _)| *i).collect()));
        }
        Ok(RoutingTable {
            tenants,
            dids,
            emergency,
        })
    }

    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Whether `digits` (as dialled) is an emergency number.
    pub fn is_emergency(&self, digits: &str) -> bool {
        self.emergency.iter().any(|e| e == digits)
    }

    /// The tenant of a call from the PBX side: the one tenant whose PBX the source address is;
    /// among several (a PBX shared by tenants), or none, the one the domains of its From and
    /// Request-URI name (in that order); the only candidate when there is one.
    pub fn attribute(&self, source: IpAddr, domains: &[&str]) -> Option<usize> {
        let by_source: Vec<usize> = (0..self.tenants.len())
            .filter(|&i| {
                self.tenants
                    .get(i)
                    .is_some_and(|t| t.sources.iter().any(|n| n.contains(&source)))
            })
            .collect();
        if let [only] = by_source[..] {
            return Some(only);
        }
        let candidates: Vec<usize> = if by_source.is_empty() {
            (0..self.tenants.len()).collect()
        } else {
            by_source
        };
        for d in domains {
            let named = candidates.iter().copied().find(|&i| {
                self.tenants
                    .get(i)
                    .is_some_and(|t| t.domains.iter().any(|td| td.eq_ignore_ascii_case(d)))
            });
            if named.is_some() {
                return named;
            }
        }
        match candidates[..] {
            [only] => Some(only),
            _ => None,
        }
    }

    /// Whether any tenant's PBX calls from `ip`.
    pub fn is_tenant_source(&self, ip: IpAddr) -> bool {
        self.tenants
            .iter()
            .any(|t| t.sources.iter().any(|n| n.contains(&ip)))
    }

    /// The tenant owning DID `called` on `trunk`.
    pub fn inbound(&self, trunk: &str, called: &Number) -> Option<usize> {
        let (index, owners) = self.dids.get(trunk)?;
        owners.get(index.owner(called.digits())?).copied()
    }

    /// A number dialled by tenant `tenant`'s users, normalised (an emergency number as it is).
    pub fn dialled(&self, tenant: usize, raw: &str) -> Option<Number> {
        let t = self.tenants.get(tenant)?;
        if self.is_emergency(raw) {
            return Number::verbatim(raw);
        }
        t.numbering.normalise(raw)
    }

    /// The first of tenant `tenant`'s routes that `called` matches, with its number rewritten.
    pub fn outbound(&self, tenant: usize, called: &Number) -> Option<Outbound<'_>> {
        let t = self.tenants.get(tenant)?;
        let (route, r) = t
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.matches(called.digits()))?;
        let emergency = self.is_emergency(called.digits());
        let called = if r.strip == 0 && r.prepend.is_empty() {
            called.clone()
        } else {
            let kept = called.digits().get(r.strip..).unwrap_or("");
            Number::verbatim(&format!("{}{kept}", r.prepend))?
        };
        Some(Outbound {
            route,
            called,
            trunks: &r.trunks,
            emergency,
        })
    }

    /// The caller ID tenant `tenant` may present on `trunk`, given the presented `calling`.
    pub fn caller_id(
        &self,
        tenant: usize,
        trunk: &str,
        calling: Option<&Number>,
        emergency: bool,
    ) -> CallerId {
        let Some(t) = self.tenants.get(tenant) else {
            return CallerId::Refuse;
        };
        let owned = calling.is_some_and(|c| t.pool(trunk).is_some_and(|p| p.contains(c.digits())));
        if owned {
            return CallerId::Keep;
        }
        match (&t.default_caller_id, t.foreign_caller_id) {
            (Some(d), ForeignCallerId::UseDefault) => CallerId::Replace(d.clone()),
            (Some(d), ForeignCallerId::Refuse) if emergency => CallerId::Replace(d.clone()),
            _ if emergency => CallerId::Keep,
            _ => CallerId::Refuse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, pools: &[(&str, &str)], routes: Vec<OutRoute>) -> Tenant {
        Tenant::simple(name, pools, routes).unwrap()
    }

    fn route(m: Matcher, trunks: &[&str]) -> OutRoute {
        OutRoute::to(m, trunks)
    }

    fn table() -> RoutingTable {
        let mut a = tenant(
            "acme",
            &[
                ("carrier", "13322496213-13322496215"),
                ("backup", "16468097069"),
            ],
            vec![
                route(Matcher::Prefix("44".into()), &["backup"]),
                route(
                    Matcher::Pattern("1NXXNXXXXXX".into()),
                    &["carrier", "backup"],
                ),
                route(Matcher::Prefix(String::new()), &["backup"]),
            ],
        );
        a.sources = vec!["10.1.0.0/16".parse().unwrap()];
        a.default_caller_id = Some(Number::verbatim("13322496213").unwrap());
        a.foreign_caller_id = ForeignCallerId::UseDefault;
        let b = tenant(
            "globex",
            &[("carrier", "16468097069-16468097079")],
            Vec::new(),
        );
        RoutingTable::new(vec![a, b], vec!["911".into(), "112".into()]).unwrap()
    }

    #[test]
    fn a_did_called_on_a_trunk_belongs_to_one_tenant_in_any_written_form() {
        let t = table();
        let us = Numbering::new("US").unwrap();
        for raw in ["+13322496214", "13322496214", "3322496214"] {
            assert_eq!(
                t.inbound("carrier", &us.normalise(raw).unwrap()),
                Some(0),
                "{raw}"
            );
        }
        let b = us.normalise("+16468097070").unwrap();
        assert_eq!(t.inbound("carrier", &b), Some(1));
        // The same number on another trunk is another tenant's (or no one's).
        let shared = us.normalise("6468097069").unwrap();
        assert_eq!(t.inbound("carrier", &shared), Some(1));
        assert_eq!(t.inbound("backup", &shared), Some(0));
        assert_eq!(
            t.inbound("carrier", &us.normalise("13322496216").unwrap()),
            None
        );
        assert_eq!(t.inbound("nowhere", &shared), None);
    }

    #[test]
    fn overlapping_pools_on_a_trunk_are_refused_with_the_trunk_named() {
        let a = tenant("acme", &[("carrier", "1000-2000")], Vec::new());
        let b = tenant("globex", &[("carrier", "2000-3000")], Vec::new());
        let e = RoutingTable::new(vec![a.clone(), b], Vec::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "on trunk `carrier`: the DID pools of `acme` and `globex` overlap at 2000"
        );
        // The same numbers on different trunks are not an overlap.
        let c = tenant("initech", &[("other", "1000-2000")], Vec::new());
        assert!(RoutingTable::new(vec![a, c], Vec::new()).is_ok());
    }

    #[test]
    fn a_pbx_call_is_attributed_by_source_then_domain() {
        let t = table();
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "10.9.2.3".parse().unwrap();
        assert_eq!(t.attribute(inside, &["globex.example"]), Some(0));
        assert_eq!(t.attribute(outside, &["GLOBEX.example"]), Some(1));
        assert_eq!(
            t.attribute(outside, &["x.example", "acme.example"]),
            Some(0)
        );
        assert_eq!(t.attribute(outside, &["x.example"]), None);
        assert!(t.is_tenant_source(inside) && !t.is_tenant_source(outside));
        // One PBX shared by both tenants: its address decides nothing, the domain does.
        let mut shared = table();
        shared.tenants[1].sources = shared.tenants[0].sources.clone();
        assert_eq!(shared.attribute(inside, &["globex.example"]), Some(1));
        assert_eq!(shared.attribute(inside, &["acme.example"]), Some(0));
        assert_eq!(shared.attribute(inside, &["x.example"]), None, "ambiguous");
    }

    #[test]
    fn routes_are_taken_in_order_and_rewrite_the_number() {
        let mut t = table();
        let n = |raw: &str| t_dialled(&t, raw);
        let uk = t.outbound(0, &n("011442079460000")).unwrap();
        assert_eq!((uk.route, uk.trunks.len()), (0, 1));
        let nanp = t.outbound(0, &n("2125550100")).unwrap();
        assert_eq!(nanp.route, 1);
        assert_eq!(&*nanp.trunks[0], "carrier");
        // A short number falls to the catch-all.
        assert_eq!(t.outbound(0, &n("4321")).unwrap().route, 2);
        // Nothing matches for a tenant without routes.
        assert_eq!(t.outbound(1, &n("2125550100")), None);
        // A rewrite: strip the country code, prepend a carrier prefix.
        t.tenants[0].routes[1].strip = 1;
        t.tenants[0].routes[1].prepend = "99".into();
        let rewritten = t.outbound(0, &t_dialled(&t, "+1 212 555 0100")).unwrap();
        assert_eq!(rewritten.called.written(Format::E164), "992125550100");
    }

    fn t_dialled(t: &RoutingTable, raw: &str) -> Number {
        t.dialled(0, raw).unwrap()
    }

    #[test]
    fn patterns() {
        let p = |s: &str| Matcher::Pattern(s.into());
        assert!(p("1NXXNXXXXXX").matches("12125550100"));
        assert!(!p("1NXXNXXXXXX").matches("11125550100"), "N is 2-9");
        assert!(!p("1NXXNXXXXXX").matches("121255501000"), "whole number");
        assert!(p("44.").matches("442079460000"));
        assert!(!p("44.").matches("44"), "`.` needs a digit");
        assert!(p("Z1X").matches("511") && !p("Z1X").matches("011"));
        assert!(Matcher::check_pattern("1NXX.").is_ok());
        for bad in ["", ".", "1a", "1.2", "*"] {
            assert!(Matcher::check_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn caller_id_must_be_the_tenants_on_the_chosen_trunk() {
        let mut t = table();
        let own = Number::verbatim("13322496214").unwrap();
        let other = Number::verbatim("16468097069").unwrap();
        assert_eq!(t.caller_id(0, "carrier", Some(&own), false), CallerId::Keep);
        // Its own number, but on another trunk: replaced by the default.
        let default = CallerId::Replace(Number::verbatim("13322496213").unwrap());
        assert_eq!(t.caller_id(0, "backup", Some(&own), false), default);
        assert_eq!(
            t.caller_id(0, "backup", Some(&other), false),
            CallerId::Keep
        );
        assert_eq!(t.caller_id(0, "carrier", None, false), default);
        // Refusal, but never for an emergency call.
        t.tenants[0].foreign_caller_id = ForeignCallerId::Refuse;
        assert_eq!(
            t.caller_id(0, "carrier", Some(&other), false),
            CallerId::Refuse
        );
        assert_eq!(t.caller_id(0, "carrier", Some(&other), true), default);
        t.tenants[0].default_caller_id = None;
        assert_eq!(
            t.caller_id(0, "carrier", Some(&other), true),
            CallerId::Keep
        );
        t.tenants[0].foreign_caller_id = ForeignCallerId::UseDefault;
        assert_eq!(
            t.caller_id(0, "carrier", Some(&other), false),
            CallerId::Refuse
        );
    }

    #[test]
    fn emergency_numbers_are_routed_as_dialled() {
        let t = table();
        let n = t.dialled(0, "911").unwrap();
        assert_eq!(n.digits(), "911");
        let o = t.outbound(0, &n).unwrap();
        assert!(o.emergency);
        assert!(
            !t.outbound(0, &t.dialled(0, "2125550100").unwrap())
                .unwrap()
                .emergency
        );
    }
}
