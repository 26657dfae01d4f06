//! The trunks' live state beside their configuration: each trunk's agent (its registration to
//! the provider, its OPTIONS keep-alive, the registrar its gateway registers to, the answers to
//! its challenges) and its calls in progress. The agents are sans-IO state machines from
//! `sluice-trunk`; this file starts them, keeps them across reloads when their trunk did not
//! change, and lets removed trunks unregister before they go.

use crate::config::{Destination, EngineConfig, TrunkConfig, TrunkKind};
use crate::ids::Ids;
use sluice_trunk::{
    Authenticator, KeepAlive, Liveness, RegState, Registrar, Registration, RegistrationConfig,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One trunk's agent.
#[derive(Debug)]
pub struct TrunkAgent {
    pub config: TrunkConfig,
    pub registration: Option<Registration>,
    /// One keep-alive per destination: a silent destination is skipped, and the trunk is down
    /// when all are.
    pub probes: Vec<(Destination, KeepAlive)>,
    pub registrar: Option<Registrar>,
    /// Answers to challenges on requests other than REGISTER.
    pub auth: Authenticator,
    /// Calls in progress on the trunk, both directions.
    pub active_calls: usize,
    /// A refused answer was logged already (logged once per trunk until one succeeds).
    pub auth_failure_logged: bool,
    /// Where the trunk's last call went.
    pub in_use: Option<SocketAddr>,
}

/// Where Sluice registers from and what it writes: the Contact it registers.
pub type ContactFor<'a> = &'a dyn Fn(&TrunkConfig) -> Option<String>;

impl TrunkAgent {
    fn new(
        config: TrunkConfig,
        now: Instant,
        ids: &mut Ids,
        contact: ContactFor<'_>,
    ) -> TrunkAgent {
        let registration = match (config.kind, contact(&config)) {
            (TrunkKind::Register, Some(contact)) => {
                let username = config
                    .credentials
                    .as_ref()
                    .map_or("sluice", |c| c.username.as_str());
                // A bare IPv6 address (the trunk's host, when no domain is set) is bracketed.
                let domain = crate::headers::uri_host(&config.domain);
                let cfg = RegistrationConfig {
                    registrar: format!("sip:{domain}"),
                    aor: format!("sip:{}@{domain}", sluice_sip::fields::escape_user(username)),
                    contact,
                    expires: config.register_expires,
                    credentials: config.credentials.clone(),
                    retry_base: Duration::from_secs(30),
                    retry_max: Duration::from_secs(1800),
                };
                let seed = u64::from(ids.first_cseq());
                Some(Registration::new(
                    cfg,
                    (ids.call_id(), ids.tag(), ids.first_cseq()),
                    seed,
                    now,
                ))
            }
            _ => None,
        };
        let registrar = match (&config.kind, &config.credentials) {
            (TrunkKind::AcceptRegister, Some(c)) => {
                Some(Registrar::new(&config.domain, &c.username, &c.password))
            }
            _ => None,
        };
        TrunkAgent {
            probes: match config.keepalive {
                Some((interval, strict)) => config
                    .destinations
                    .iter()
                    .map(|d| (*d, KeepAlive::new(interval, strict, now)))
                    .collect(),
                None => Vec::new(),
            },
            auth: Authenticator::new(config.credentials.clone()),
            config,
            registration,
            registrar,
            active_calls: 0,
            auth_failure_logged: false,
            in_use: None,
        }
    }

    /// Whether calls may be sent to the trunk: not marked down by its keep-alive, under its
    /// call limit, and (accept-register) with a live binding.
    pub fn usable(&self, now: Instant) -> Result<(), &'static str> {
        if !self.probes.is_empty()
            && self
                .probes
                .iter()
                .all(|(_, k)| k.liveness() == Liveness::Down)
        {
            return Err("down");
        }
        if self.config.max_calls > 0 && self.active_calls >= self.config.max_calls {
            return Err("at its call limit");
        }
        if let Some(r) = &self.registrar {
            if r.target(now).is_none() {
                return Err("not registered");
            }
        }
        Ok(())
    }

    /// The status an operator sees.
    pub fn status(&self, now: Instant) -> &'static str {
        if let Some(r) = &self.registration {
            return match r.state() {
                RegState::Registered { .. } if r.is_registered(now) => "registered",
                RegState::Registered { .. } | RegState::Registering => "registering",
                RegState::Failed { .. } => "registration failed",
                RegState::Unregistering | RegState::Unregistered => "unregistered",
            };
        }
        if let Some(r) = &self.registrar {
            if r.target(now).is_none() {
                return "not registered";
            }
            return "registered";
        }
        let live: Vec<Liveness> = self.probes.iter().map(|(_, k)| k.liveness()).collect();
        if live.is_empty() {
            "online"
        } else if live.iter().all(|l| *l == Liveness::Down) {
            "down"
        } else if live.contains(&Liveness::Up) {
            "up"
        } else {
            "online"
        }
    }

    /// Whether a destination may take calls (not marked down by its keep-alive).
    pub fn destination_up(&self, addr: SocketAddr) -> bool {
        !self
            .probes
            .iter()
            .any(|(d, k)| d.addr == addr && k.liveness() == Liveness::Down)
    }

    fn next_wake(&self) -> Option<Instant> {
        let reg = self
            .registration
            .as_ref()
            .and_then(Registration::poll_timeout);
        let ka = self
            .probes
            .iter()
            .filter_map(|(_, k)| k.poll_timeout())
            .min();
        match (reg, ka) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A trunk as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkStatus {
    pub name: String,
    pub kind: &'static str,
    pub host: String,
    /// `registered`, `registering`, `registration failed`, `up`, `down`, `online`…
    pub status: &'static str,
    /// Why calls are not sent to it, when they are not.
    pub unusable: Option<&'static str>,
    /// `address/transport priority weight`, in configuration order.
    pub destinations: Vec<String>,
    /// Where the last call or request went.
    pub in_use: Option<String>,
    pub active_calls: usize,
    pub max_calls: usize,
    /// The last OPTIONS answer (`200`, `timeout`) and how long ago, in seconds.
    pub last_options: Option<(String, u64)>,
    /// The last registration answer (`200 OK`, `403 Forbidden`, `408 no response`).
    pub last_registration: Option<String>,
    /// Seconds until the next REGISTER.
    pub next_register_in: Option<u64>,
    /// Gateways registered to Sluice (accept-register).
    pub bindings: usize,
    /// SRTP on the trunk's leg: `off`, `optional`, `required`.
    pub srtp: &'static str,
    /// Sluice's registration to the provider (register trunks).
    pub registration: Option<RegistrationStatus>,
    /// The gateways' bindings (accept-register trunks).
    pub gateways: Vec<GatewayStatus>,
}

/// Sluice's registration to a provider, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationStatus {
    /// The address of record (To and From of the REGISTER).
    pub aor: String,
    /// The Request-URI of the REGISTER.
    pub registrar: String,
    /// Where Sluice asks the provider to send calls.
    pub contact: String,
    /// As the trunk's status: `registered`, `registering`, `registration failed`,
    /// `unregistered`.
    pub state: &'static str,
    /// Seconds until the provider's binding runs out, and until Sluice refreshes it
    /// (registered).
    pub expires_in: Option<u64>,
    pub refresh_in: Option<u64>,
    /// Seconds until the next attempt after a failure.
    pub retry_in: Option<u64>,
    /// The last final answer, `status reason`.
    pub last_response: Option<String>,
}

/// A gateway's binding to an accept-register trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayStatus {
    /// The Contact URI the gateway registered.
    pub contact: String,
    /// Where its REGISTER came from (where calls to it go, behind NAT).
    pub source: SocketAddr,
    /// Seconds until the binding runs out.
    pub expires_in: u64,
}

impl TrunkAgent {
    /// The registration to the provider, for the admin API.
    fn registration_status(&self, now: Instant) -> Option<RegistrationStatus> {
        let r = self.registration.as_ref()?;
        let secs = |at: Instant| at.saturating_duration_since(now).as_secs();
        let (expires_in, refresh_in, retry_in) = match r.state() {
            RegState::Registered {
                expires_at,
                refresh_at,
            } => (Some(secs(*expires_at)), Some(secs(*refresh_at)), None),
            RegState::Failed { retry_at, .. } => (None, None, Some(secs(*retry_at))),
            _ => (None, None, None),
        };
        let cfg = r.config();
        Some(RegistrationStatus {
            aor: cfg.aor.clone(),
            registrar: cfg.registrar.clone(),
            contact: cfg.contact.clone(),
            state: self.status(now),
            expires_in,
            refresh_in,
            retry_in,
            last_response: r
                .last_response()
                .map(|(st, reason)| format!("{st} {reason}")),
        })
    }

    /// The gateways' bindings in force, for the admin API.
    fn gateway_status(&self, now: Instant) -> Vec<GatewayStatus> {
        self.registrar.as_ref().map_or_else(Vec::new, |r| {
            r.bindings(now)
                .map(|b| GatewayStatus {
                    contact: b.contact.clone(),
                    source: b.source,
                    expires_in: b.expires_at.saturating_duration_since(now).as_secs(),
                })
                .collect()
        })
    }
}

impl TrunkAgent {
    pub fn report(&self, now: Instant) -> TrunkStatus {
        let c = &self.config;
        let registration = self.registration_status(now);
        TrunkStatus {
            name: c.name.to_string(),
            kind: c.kind.as_str(),
            host: c.host.to_string(),
            status: self.status(now),
            unusable: self.usable(now).err(),
            destinations: c
                .destinations
                .iter()
                .map(|d| {
                    let down = !self.destination_up(d.addr);
                    format!(
                        "{}/{} priority {} weight {}{}",
                        d.addr,
                        d.transport,
                        d.priority,
                        d.weight,
                        if down { " (down)" } else { "" }
                    )
                })
                .collect(),
            in_use: self.in_use.map(|a| a.to_string()),
            active_calls: self.active_calls,
            max_calls: c.max_calls,
            srtp: match c.srtp.as_ref().map(|s| s.mode) {
                None => "off",
                Some(sluice_media::SrtpMode::Optional) => "optional",
                Some(sluice_media::SrtpMode::Required) => "required",
            },
            last_options: self
                .probes
                .iter()
                .filter_map(|(_, k)| k.last())
                .max_by_key(|(_, at)| *at)
                .map(|(st, at)| {
                    (
                        st.map_or_else(|| "timeout".to_string(), |s| s.to_string()),
                        now.saturating_duration_since(at).as_secs(),
                    )
                }),
            last_registration: registration.as_ref().and_then(|r| r.last_response.clone()),
            next_register_in: self
                .registration
                .as_ref()
                .and_then(Registration::poll_timeout)
                .map(|t| t.saturating_duration_since(now).as_secs()),
            bindings: self
                .registrar
                .as_ref()
                .map_or(0, |r| r.bindings(now).count()),
            registration,
            gateways: self.gateway_status(now),
        }
    }
}

/// Every trunk's agent, by name; removed trunks stay until they have unregistered.
#[derive(Debug, Default)]
pub struct Trunks {
    agents: HashMap<Arc<str>, TrunkAgent>,
    leaving: Vec<TrunkAgent>,
    /// Set by a new configuration; the agents start at the next input (which carries the time).
    pending: Option<Vec<TrunkConfig>>,
}

impl Trunks {
    pub fn new(cfg: &EngineConfig) -> Trunks {
        Trunks {
            agents: HashMap::new(),
            leaving: Vec::new(),
            pending: Some(cfg.trunks.clone()),
        }
    }

    /// A new configuration's trunks, applied at the next [`Trunks::start`].
    pub fn reconfigure(&mut self, cfg: &EngineConfig) {
        self.pending = Some(cfg.trunks.clone());
    }

    /// Whether a new configuration waits for [`Trunks::start`].
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Start agents for new or changed trunks; an unchanged trunk keeps its agent (and its
    /// registration); a removed one unregisters. Cheap when nothing is pending; whether
    /// anything was.
    pub fn start(&mut self, now: Instant, ids: &mut Ids, contact: ContactFor<'_>) -> bool {
        let Some(trunks) = self.pending.take() else {
            return false;
        };
        let mut old = std::mem::take(&mut self.agents);
        for t in trunks {
            let agent = match old.remove(&t.name) {
                Some(a) if a.config == t => a,
                Some(mut changed) => {
                    let calls = changed.active_calls;
                    // Unregistered only where the registration itself changed; the same
                    // binding at the same registrar carries over as it is (an unregister
                    // racing a new REGISTER could remove the binding).
                    let mut fresh = TrunkAgent::new(t.clone(), now, ids, contact);
                    fresh.active_calls = calls;
                    if same_registration(&changed.config, &t) {
                        fresh.registration = changed.registration.take();
                    } else if let Some(r) = changed.registration.as_mut() {
                        r.unregister(now);
                        self.leaving.push(changed);
                    }
                    fresh
                }
                None => TrunkAgent::new(t.clone(), now, ids, contact),
            };
            self.agents.insert(t.name.clone(), agent);
        }
        for (_, mut gone) in old {
            if let Some(r) = gone.registration.as_mut() {
                r.unregister(now);
                self.leaving.push(gone);
            }
        }
        true
    }

    /// Unregister every registration (drain, shutdown).
    pub fn unregister_all(&mut self, now: Instant) {
        for a in self.agents.values_mut() {
            if let Some(r) = a.registration.as_mut() {
                r.unregister(now);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&TrunkAgent> {
        self.agents.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut TrunkAgent> {
        self.agents.get_mut(name)
    }

    /// An agent by name, including a removed trunk that is still unregistering.
    pub fn any_mut(&mut self, name: &str) -> Option<&mut TrunkAgent> {
        if self.agents.contains_key(name) {
            return self.agents.get_mut(name);
        }
        self.leaving.iter_mut().find(|a| &*a.config.name == name)
    }

    pub fn agents(&self) -> impl Iterator<Item = &TrunkAgent> {
        self.agents.values()
    }

    /// Every agent with work, including leaving ones.
    pub fn all_mut(&mut self) -> impl Iterator<Item = &mut TrunkAgent> {
        self.agents.values_mut().chain(self.leaving.iter_mut())
    }

    /// Forget removed trunks that are done unregistering.
    pub fn prune(&mut self) {
        self.leaving.retain(|a| {
            a.registration
                .as_ref()
                .is_some_and(|r| !matches!(r.state(), RegState::Unregistered))
        });
    }

    /// When an agent next has work; `Some` of any past instant while agents wait to start is
    /// not possible without a clock, so the shell calls `handle_timeout` once at start.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.agents
            .values()
            .chain(self.leaving.iter())
            .filter_map(TrunkAgent::next_wake)
            .min()
    }

    /// The trunk a request from `source` belongs to: by its addresses (destinations, proxy,
    /// associated blocks), or, for accept-register trunks, by the address its gateway
    /// registered from.
    pub fn by_source(&self, cfg: &EngineConfig, source: SocketAddr, now: Instant) -> Option<usize> {
        cfg.trunks.iter().position(|t| {
            t.sends_from(source)
                || self.agents.get(&t.name).is_some_and(|a| {
                    a.registrar.as_ref().is_some_and(|r| {
                        r.bindings(now).any(|b| {
                            b.source.ip() == source.ip()
                                && (!t.verify_port || b.source.port() == source.port())
                        })
                    })
                })
        })
    }

    /// Whether `ip` belongs to a trunk (by address, any port) or a gateway registered from it.
    pub fn knows(&self, cfg: &EngineConfig, ip: std::net::IpAddr, now: Instant) -> bool {
        cfg.trunks.iter().any(|t| {
            t.destinations.iter().any(|d| d.addr.ip() == ip)
                || t.outbound_proxy.is_some_and(|p| p.ip() == ip)
                || t.sources.iter().any(|n| n.contains(&ip))
        }) || self.agents.values().any(|a| {
            a.registrar
                .as_ref()
                .is_some_and(|r| r.bindings(now).any(|b| b.source.ip() == ip))
        })
    }

    /// A call started on trunk `name` (sent to `to`, for an outbound call), or ended.
    pub fn call_started(&mut self, name: &str, to: Option<SocketAddr>) {
        if let Some(a) = self.agents.get_mut(name) {
            a.active_calls = a.active_calls.saturating_add(1);
            if to.is_some() {
                a.in_use = to;
            }
        }
    }

    /// Every trunk's status, in configuration order.
    pub fn report(&self, cfg: &EngineConfig, now: Instant) -> Vec<TrunkStatus> {
        cfg.trunks
            .iter()
            .filter_map(|t| self.agents.get(&t.name).map(|a| a.report(now)))
            .collect()
    }

    pub fn call_ended(&mut self, name: &str) {
        if let Some(a) = self.agents.get_mut(name) {
            a.active_calls = a.active_calls.saturating_sub(1);
        }
    }
}

/// Whether two versions of a trunk register the same binding at the same registrar.
fn same_registration(a: &TrunkConfig, b: &TrunkConfig) -> bool {
    a.kind == b.kind
        && a.domain == b.domain
        && a.credentials == b.credentials
        && a.register_expires == b.register_expires
        && a.outbound_proxy == b.outbound_proxy
        && a.primary().map(|p| (p.addr, p.transport)) == b.primary().map(|p| (p.addr, p.transport))
}
