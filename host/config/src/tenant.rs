//! `[[tenant]]`: the PBX's tenants, each with its SIP domains, where its inbound calls go, the
//! trunks assigned to it with its DID pool on each, its outbound routes and its caller-ID
//! policy. A configuration without tenants routes as before: every PBX call to
//! `routing.outbound_trunk`, every trunk call to `[pbx]`.

use crate::sides::Peer;
use crate::trunk::Trunk;
use crate::validate::{check_name, Checked, Problem};
use serde::Deserialize;
use sluice_routing::{DidIndex, DidPool, Format, Matcher, Numbering};
use toml::Spanned;

/// A number format as configured: `e164`, `digits` or `national`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberFormat(pub Format);

impl<'de> Deserialize<'de> for NumberFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Format::parse(&s).map(NumberFormat).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is no number format: e164 (+13322496213), digits (13322496213) or \
                 national (3322496213)"
            ))
        })
    }
}

/// What a call presenting a caller ID outside the tenant's pool gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForeignCallerIdPolicy {
    /// The tenant's `default_caller_id` is presented instead.
    Default,
    /// The call is refused with 403.
    Refuse,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub name: Spanned<String>,
    /// SIP domains its PBX calls carry (From or Request-URI host).
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
    /// Country its users dial in (ISO 3166 code); default `routing.country`.
    pub country: Option<Spanned<String>>,
    /// Where its inbound calls go; default `[pbx]`. Its host and `associated` addresses are
    /// where its outbound calls come from.
    pub pbx: Option<Peer>,
    /// How numbers are written toward its PBX.
    #[serde(default)]
    pub pbx_number_format: Option<NumberFormat>,
    /// The caller ID presented for its calls whose own is not its DID on the chosen trunk.
    pub default_caller_id: Option<Spanned<String>>,
    /// `default` (the default when `default_caller_id` is set) or `refuse`.
    pub foreign_caller_id: Option<Spanned<ForeignCallerIdPolicy>>,
    /// The trunks assigned to it, with its DID pool on each.
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<TenantTrunk>,
    /// Its outbound routes, tried in order.
    #[serde(default, rename = "route")]
    pub routes: Vec<TenantRoute>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantTrunk {
    pub name: Spanned<String>,
    /// The tenant's DIDs on this trunk, in the pool syntax (`13322496213-13322496215; 101`).
    pub dids: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRoute {
    /// Digits the normalised dialled number starts with (`""`: every number).
    pub prefix: Option<Spanned<String>>,
    /// Or a whole-number pattern: digits, `X` (0-9), `Z` (1-9), `N` (2-9), a final `.`.
    pub pattern: Option<Spanned<String>>,
    /// Digits removed from the front, then `prepend` put there.
    #[serde(default)]
    pub strip: usize,
    #[serde(default)]
    pub prepend: String,
    /// The tenant's trunks this route uses, in order of failover.
    pub trunks: Vec<Spanned<String>>,
}

impl TenantRoute {
    pub fn matcher(&self) -> Matcher {
        match (&self.pattern, &self.prefix) {
            (Some(p), _) => Matcher::Pattern(p.get_ref().clone()),
            (None, Some(p)) => Matcher::Prefix(p.get_ref().clone()),
            (None, None) => Matcher::Prefix(String::new()),
        }
    }
}

fn digits_only(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

impl Tenant {
    /// Its country: its own, else the default.
    pub fn country<'a>(&'a self, default: &'a str) -> &'a str {
        self.country.as_ref().map_or(default, |c| c.get_ref())
    }

    /// Its pool on each trunk (checked by [`check_tenants`]; an unparsable one is empty).
    pub fn pools(&self) -> Vec<(&str, DidPool)> {
        self.trunks
            .iter()
            .map(|t| {
                let pool = DidPool::parse(t.dids.get_ref()).unwrap_or_default();
                (t.name.get_ref().as_str(), pool)
            })
            .collect()
    }

    fn check(&self, trunks: &[Trunk]) -> Checked {
        check_name(&self.name, "tenant name")?;
        let name = self.name.get_ref();
        if let Some(c) = &self.country {
            if Numbering::new(c.get_ref()).is_none() {
                return Err(Problem::at(
                    c.span(),
                    format!(
                        "tenant `{name}`: `{}` is no ISO 3166 country code",
                        c.get_ref()
                    ),
                ));
            }
        }
        if let Some(p) = &self.pbx {
            p.check()?;
        }
        for d in &self.domains {
            if d.get_ref().is_empty() || d.get_ref().contains(|c: char| c.is_whitespace()) {
                return Err(Problem::at(
                    d.span(),
                    format!("tenant `{name}`: `{}` is no SIP domain", d.get_ref()),
                ));
            }
        }
        for (i, t) in self.trunks.iter().enumerate() {
            let trunk = t.name.get_ref();
            if !trunks.iter().any(|c| c.name.get_ref() == trunk) {
                return Err(Problem::at(
                    t.name.span(),
                    format!("tenant `{name}` is assigned trunk `{trunk}`, which is not configured"),
                ));
            }
            if self
                .trunks
                .iter()
                .take(i)
                .any(|o| o.name.get_ref() == trunk)
            {
                return Err(Problem::at(
                    t.name.span(),
                    format!("tenant `{name}` is assigned trunk `{trunk}` twice"),
                ));
            }
            DidPool::parse(t.dids.get_ref()).map_err(|e| {
                Problem::at(
                    t.dids.span(),
                    format!("tenant `{name}`, trunk `{trunk}`: {e}"),
                )
            })?;
        }
        self.check_caller_id()?;
        for (i, r) in self.routes.iter().enumerate() {
            self.check_route(i, r, trunks)?;
        }
        Ok(())
    }

    fn check_caller_id(&self) -> Checked {
        let name = self.name.get_ref();
        if let Some(d) = &self.default_caller_id {
            let n = d.get_ref();
            if n.is_empty() || !digits_only(n) || n.starts_with('0') {
                return Err(Problem::at(
                    d.span(),
                    format!(
                        "tenant `{name}`: default_caller_id `{n}` must be E.164 digits without `+`"
                    ),
                ));
            }
        }
        if let Some(p) = &self.foreign_caller_id {
            if *p.get_ref() == ForeignCallerIdPolicy::Default && self.default_caller_id.is_none() {
                return Err(Problem::at(
                    p.span(),
                    format!("tenant `{name}`: foreign_caller_id = \"default\" needs a default_caller_id"),
                ));
            }
        }
        Ok(())
    }

    fn check_route(&self, i: usize, r: &TenantRoute, trunks: &[Trunk]) -> Checked {
        let name = self.name.get_ref();
        let which = format!("tenant `{name}`, route {}", i.saturating_add(1));
        match (&r.prefix, &r.pattern) {
            (Some(p), Some(_)) => {
                return Err(Problem::at(
                    p.span(),
                    format!("{which}: give a prefix or a pattern, not both"),
                ))
            }
            (Some(p), None) if !digits_only(p.get_ref()) => {
                return Err(Problem::at(
                    p.span(),
                    format!("{which}: prefix `{}` must be digits", p.get_ref()),
                ))
            }
            (None, Some(p)) => Matcher::check_pattern(p.get_ref())
                .map_err(|e| Problem::at(p.span(), format!("{which}: {e}")))?,
            _ => {}
        }
        if !digits_only(&r.prepend) {
            return Err(Problem::new(format!(
                "{which}: prepend `{}` must be digits",
                r.prepend
            )));
        }
        if r.trunks.is_empty() {
            return Err(Problem::new(format!("{which} names no trunk")));
        }
        for t in &r.trunks {
            let trunk = t.get_ref();
            if !trunks.iter().any(|c| c.name.get_ref() == trunk) {
                return Err(Problem::at(
                    t.span(),
                    format!("{which} names trunk `{trunk}`, which is not configured"),
                ));
            }
            if !self.trunks.iter().any(|o| o.name.get_ref() == trunk) {
                return Err(Problem::at(
                    t.span(),
                    format!("{which} names trunk `{trunk}`, which is not assigned to the tenant"),
                ));
            }
        }
        Ok(())
    }
}

/// Two SIP domains are one: equal IP addresses however written (an IPv6 one with or without
/// brackets), or equal names in any case.
fn same_domain(a: &str, b: &str) -> bool {
    let ip = |s: &str| {
        s.strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(s)
            .parse::<std::net::IpAddr>()
            .ok()
    };
    match (ip(a), ip(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// Every tenant's check; names and domains unique; no two tenants' pools on one trunk share a
/// number.
pub fn check_tenants(tenants: &[Tenant], trunks: &[Trunk]) -> Checked {
    for (i, t) in tenants.iter().enumerate() {
        t.check(trunks)?;
        let earlier = || tenants.iter().take(i);
        if earlier().any(|o| o.name.get_ref() == t.name.get_ref()) {
            return Err(Problem::at(
                t.name.span(),
                format!("tenant name `{}` is used twice", t.name.get_ref()),
            ));
        }
        for d in &t.domains {
            let owner = earlier().find(|o| {
                o.domains
                    .iter()
                    .any(|od| same_domain(od.get_ref(), d.get_ref()))
            });
            if let Some(o) = owner {
                return Err(Problem::at(
                    d.span(),
                    format!(
                        "domain `{}` belongs to tenants `{}` and `{}`",
                        d.get_ref(),
                        o.name.get_ref(),
                        t.name.get_ref()
                    ),
                ));
            }
        }
    }
    // Tenants behind the one `[pbx]` are told apart by the domains their calls carry.
    let shared: Vec<&Tenant> = tenants.iter().filter(|t| t.pbx.is_none()).collect();
    if shared.len() > 1 {
        if let Some(t) = shared.iter().find(|t| t.domains.is_empty()) {
            return Err(Problem::at(
                t.name.span(),
                format!(
                    "tenant `{}` shares [pbx] with other tenants: give it `domains`, which tell \
                     its calls apart (or its own `pbx`)",
                    t.name.get_ref()
                ),
            ));
        }
    }
    for trunk in trunks {
        let name = trunk.name.get_ref();
        let pools: Vec<(&str, DidPool)> = tenants
            .iter()
            .filter_map(|t| {
                let pool = t.pools().into_iter().find(|(n, _)| *n == name)?.1;
                Some((t.name.get_ref().as_str(), pool))
            })
            .collect();
        let refs: Vec<(&str, &DidPool)> = pools.iter().map(|(n, p)| (*n, p)).collect();
        if let Err(o) = DidIndex::new(&refs) {
            return Err(Problem::at(
                trunk.name.span(),
                format!("trunk `{name}`: {o}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Config, DEFAULT_CONFIG};

    const TWO_TENANTS: &str = r#"
[[trunk]]
name = "backup"
host = "127.0.0.21"

[[tenant]]
name = "acme"
domains = ["acme.example"]
default_caller_id = "13322496213"
[[tenant.trunk]]
name = "loop"
dids = "13322496213-13322496215"
[[tenant.trunk]]
name = "backup"
dids = "16468097069"
[[tenant.route]]
prefix = "1"
trunks = ["loop", "backup"]

[[tenant]]
name = "globex"
domains = ["globex.example"]
pbx = { host = "127.0.0.11", port = 5060 }
pbx_number_format = "national"
foreign_caller_id = "refuse"
[[tenant.trunk]]
name = "loop"
dids = "16468097069-16468097079"
[[tenant.route]]
pattern = "1NXXNXXXXXX"
trunks = ["loop"]
"#;

    fn with(extra: &str) -> Result<Config, String> {
        let base = DEFAULT_CONFIG.replace("outbound_trunk = \"loop\"", "");
        Config::parse(&format!("{base}\n{extra}"), "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn two_tenants_on_one_trunk_load() {
        let c = with(TWO_TENANTS).unwrap();
        assert_eq!(c.tenants.len(), 2);
        assert_eq!(c.tenants[1].pools()[0].1.numbers(), 11);
        assert_eq!(c.routing.country.get_ref(), "US");
    }

    #[test]
    fn every_refusal_names_what_is_wrong() {
        let cases: &[(&str, &str, &str)] = &[
            ("16468097069-16468097079", "13322496215-13322496220", "trunk `loop`: the DID pools of `acme` and `globex` overlap at 13322496215"),
            ("dids = \"16468097069\"\n[[tenant.route]]", "dids = \"+16468097069\"\n[[tenant.route]]", "tenant `acme`, trunk `backup`: DID pool entry `+16468097069`"),
            ("16468097069-16468097079", "16468097079-16468097069", "DID pool entry `16468097079-16468097069`"),
            ("16468097069-16468097079", "16468097069-1646809707", "DID pool entry `16468097069-1646809707`"),
            ("trunks = [\"loop\"]", "trunks = [\"gone\"]", "tenant `globex`, route 1 names trunk `gone`, which is not configured"),
            ("trunks = [\"loop\"]", "trunks = [\"backup\"]", "tenant `globex`, route 1 names trunk `backup`, which is not assigned to the tenant"),
            ("pattern = \"1NXXNXXXXXX\"", "pattern = \"1NXX*\"", "tenant `globex`, route 1: a pattern holds only"),
            ("prefix = \"1\"", "prefix = \"+1\"", "tenant `acme`, route 1: prefix `+1` must be digits"),
            ("name = \"backup\"\ndids", "name = \"nowhere\"\ndids", "tenant `acme` is assigned trunk `nowhere`, which is not configured"),
            ("name = \"globex\"", "name = \"acme\"", "tenant name `acme` is used twice"),
            ("[\"globex.example\"]", "[\"ACME.example\"]", "domain `ACME.example` belongs to tenants `acme` and `globex`"),
            ("foreign_caller_id = \"refuse\"", "foreign_caller_id = \"default\"", "needs a default_caller_id"),
            ("pbx_number_format = \"national\"", "pbx_number_format = \"local\"", "`local` is no number format"),
            ("default_caller_id = \"13322496213\"", "default_caller_id = \"+13322496213\"", "must be E.164 digits"),
            ("name = \"acme\"", "name = \"acme\"\ncountry = \"XX\"", "`XX` is no ISO 3166 country code"),
            ("host = \"127.0.0.21\"", "host = \"127.0.0.21\"\ncountry = \"ZZ\"", "trunk `backup`: `ZZ` is no ISO 3166 country code"),
            ("domains = [\"globex.example\"]\npbx = { host = \"127.0.0.11\", port = 5060 }\n", "", "tenant `globex` shares [pbx] with other tenants"),
        ];
        for (from, to, expected) in cases {
            assert!(TWO_TENANTS.contains(from), "{from}");
            let Err(err) = with(&TWO_TENANTS.replacen(from, to, 1)) else {
                panic!("{to}: accepted");
            };
            assert!(err.contains(expected), "{to}: {err}");
        }
        // The same IPv6 address written two ways is one domain.
        let two_ways = TWO_TENANTS
            .replacen("[\"acme.example\"]", "[\"2001:db8::7\"]", 1)
            .replacen("[\"globex.example\"]", "[\"[2001:DB8:0::7]\"]", 1);
        let Err(err) = with(&two_ways) else {
            panic!("one IPv6 domain for two tenants: accepted");
        };
        assert!(
            err.contains("belongs to tenants `acme` and `globex`"),
            "{err}"
        );
    }

    #[test]
    fn a_trunk_still_referenced_cannot_go() {
        // The trunk `backup` removed while acme's pool and route name it.
        let text = TWO_TENANTS.replacen(
            "[[trunk]]\nname = \"backup\"\nhost = \"127.0.0.21\"\n",
            "",
            1,
        );
        let err = with(&text).unwrap_err();
        assert!(
            err.contains("tenant `acme` is assigned trunk `backup`, which is not configured"),
            "{err}"
        );
    }

    #[test]
    fn outbound_trunk_is_needed_only_without_tenants() {
        let without = DEFAULT_CONFIG.replace("outbound_trunk = \"loop\"", "");
        let err = Config::parse(&without, "t.toml").unwrap_err().to_string();
        assert!(err.contains("routing.outbound_trunk is needed"), "{err}");
        let text = format!("{without}\n{TWO_TENANTS}");
        assert!(Config::parse(&text, "t.toml").is_ok());
        let err = Config::parse(&format!("{DEFAULT_CONFIG}\n{TWO_TENANTS}"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("routing.outbound_trunk is not used with tenants"),
            "{err}"
        );
    }
}
