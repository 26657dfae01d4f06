//! Sluice registered to a provider (RFC 3261 §10): one REGISTER at a time, the same Call-ID
//! and From tag for every refresh, the CSeq counting up; digest challenges answered (once per
//! nonce, again when stale); the expiry the provider grants honoured (a Contact `expires`
//! parameter, else `Expires`), refreshed before it runs out; `423 Interval Too Brief` followed;
//! failures retried with a growing, jittered delay (never faster than `Retry-After`); an
//! unregister (`Expires: 0`) on drain, shutdown or removal.
//!
//! ```text
//!   Registering ──200──► Registered ──refresh due──► Registering
//!        │  ▲                                            │
//!   4xx/5xx/6xx/timeout                              401/407 answered: stays Registering
//!        ▼  │ retry_at
//!      Failed
//!   any ── unregister() ──► Unregistering ──response or timeout──► Unregistered
//! ```
//!
//! The engine asks [`Registration::poll_request`] when [`Registration::poll_timeout`] is due,
//! sends the REGISTER in a client transaction (adding Via and Max-Forwards), and reports the
//! outcome with [`Registration::on_response`] or [`Registration::on_timeout`].

use crate::auth::{worth_answering, Authenticator};
use crate::backoff::Backoff;
use sluice_auth::Credentials;
use sluice_sip::{fields, HeaderName, Message, Method, NameAddr};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The Request-URI of REGISTER: the provider's registrar (`sip:sanjose2.voip.ms`).
    pub registrar: String,
    /// The address of record, in To and From (`sip:100200@sanjose2.voip.ms`).
    pub aor: String,
    /// Sluice's Contact URI toward the provider: where inbound calls arrive.
    pub contact: String,
    /// The expiry asked for, in seconds.
    pub expires: u32,
    pub credentials: Option<Credentials>,
    /// First retry delay after a failure, and the longest.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// Where a registration stands (for the operator, and for routing: a register trunk that is
/// not registered receives no calls from its provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegState {
    /// A REGISTER is due or in flight.
    Registering,
    Registered {
        /// When the provider's binding runs out.
        expires_at: Instant,
        /// When Sluice refreshes it.
        refresh_at: Instant,
    },
    Failed {
        status: u16,
        reason: String,
        retry_at: Instant,
    },
    Unregistering,
    Unregistered,
}

/// Refresh this long before the granted expiry (or at half of a short one).
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Registration {
    cfg: RegistrationConfig,
    state: RegState,
    call_id: String,
    from_tag: String,
    cseq: u32,
    auth: Authenticator,
    /// The credentials header for the next REGISTER (a challenge just answered).
    answer: Option<(HeaderName, String)>,
    /// The expiry to ask for (raised by a 423's Min-Expires).
    expires: u32,
    next: Option<Instant>,
    in_flight: bool,
    /// The REGISTER in flight is the unregister (`Expires: 0`).
    unregister_in_flight: bool,
    backoff: Backoff,
    /// The last final response: status and reason phrase.
    last: Option<(u16, String)>,
}

fn duration_secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

impl Registration {
    /// A registration that sends its first REGISTER at `now`. `call_id`, `from_tag` and
    /// `first_cseq` come from the engine's identifiers; `seed` drives the jitter.
    pub fn new(
        cfg: RegistrationConfig,
        (call_id, from_tag, first_cseq): (String, String, u32),
        seed: u64,
        now: Instant,
    ) -> Registration {
        Registration {
            expires: cfg.expires,
            auth: Authenticator::new(cfg.credentials.clone()),
            backoff: Backoff::new(cfg.retry_base, cfg.retry_max, seed),
            cfg,
            state: RegState::Registering,
            call_id,
            from_tag,
            cseq: first_cseq,
            answer: None,
            next: Some(now),
            in_flight: false,
            unregister_in_flight: false,
            last: None,
        }
    }

    pub fn state(&self) -> &RegState {
        &self.state
    }

    /// What it registers: the address of record, the registrar, the contact.
    pub fn config(&self) -> &RegistrationConfig {
        &self.cfg
    }

    /// The last final response, as `status reason`.
    pub fn last_response(&self) -> Option<&(u16, String)> {
        self.last.as_ref()
    }

    pub fn is_registered(&self, now: Instant) -> bool {
        matches!(self.state, RegState::Registered { expires_at, .. } if now < expires_at)
    }

    /// When a REGISTER is next due (none while one is in flight).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight {
            None
        } else {
            self.next
        }
    }

    /// The REGISTER to send now, if one is due: without Via and Max-Forwards (the engine adds
    /// them with its branch).
    pub fn poll_request(&mut self, now: Instant) -> Option<Message> {
        if self.in_flight || self.next.is_none_or(|t| t > now) {
            return None;
        }
        if matches!(self.state, RegState::Unregistered) {
            self.next = None;
            return None;
        }
        self.next = None;
        self.in_flight = true;
        self.cseq = self.cseq.saturating_add(1);
        let unregister = matches!(self.state, RegState::Unregistering);
        self.unregister_in_flight = unregister;
        let expires = if unregister { 0 } else { self.expires };
        let mut m = Message::request(Method::Register, self.cfg.registrar.clone());
        let h = &mut m.headers;
        h.push(
            HeaderName::From,
            format!("<{}>;tag={}", self.cfg.aor, self.from_tag),
        );
        h.push(HeaderName::To, format!("<{}>", self.cfg.aor));
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        h.push(HeaderName::Contact, format!("<{}>", self.cfg.contact));
        h.push(HeaderName::Expires, expires.to_string());
        let credentials = self
            .answer
            .take()
            .or_else(|| self.auth.preemptive("REGISTER", &self.cfg.registrar));
        if let Some((name, value)) = credentials {
            m.headers.push(name, value);
        }
        Some(m)
    }

    /// The answer to the REGISTER in flight.
    pub fn on_response(&mut self, now: Instant, resp: &Message) {
        let Some(status) = resp.status() else {
            return;
        };
        if status < 200 {
            return;
        }
        self.in_flight = false;
        let reason = resp.reason().unwrap_or("").to_string();
        if matches!(self.state, RegState::Unregistering) && !self.unregister_in_flight {
            // The answer to a REGISTER sent before the unregister was asked for: now send it.
            self.next = Some(now);
            return;
        }
        if matches!(self.state, RegState::Unregistering) {
            if matches!(status, 401 | 407) && self.answer_challenge(now, resp) {
                return;
            }
            self.last = Some((status, reason));
            self.state = RegState::Unregistered;
            return;
        }
        match status {
            200..=299 => {
                self.last = Some((status, reason));
                self.registered(now, resp);
            }
            401 | 407 => {
                if !self.answer_challenge(now, resp) {
                    self.fail(now, status, reason, None);
                }
            }
            423 => {
                let min = resp
                    .header(&HeaderName::MinExpires)
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min) if min > self.expires => {
                        self.expires = min;
                        self.next = Some(now);
                    }
                    _ => self.fail(now, status, reason, None),
                }
            }
            _ => {
                let retry_after = resp
                    .header(&HeaderName::RetryAfter)
                    .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|v| v.parse::<u32>().ok())
                    .map(duration_secs);
                self.fail(now, status, reason, retry_after);
            }
        }
    }

    /// The REGISTER in flight got no answer (Timer F) or could not be sent.
    pub fn on_timeout(&mut self, now: Instant) {
        self.in_flight = false;
        if matches!(self.state, RegState::Unregistering) && !self.unregister_in_flight {
            self.next = Some(now);
            return;
        }
        if matches!(self.state, RegState::Unregistering) {
            self.state = RegState::Unregistered;
            return;
        }
        self.fail(now, 408, "no response".into(), None);
    }

    /// Remove the binding (drain, shutdown, the trunk removed): one REGISTER with `Expires: 0`
    /// when registered or trying, then nothing more.
    pub fn unregister(&mut self, now: Instant) {
        match self.state {
            RegState::Registered { .. } | RegState::Registering => {
                self.state = RegState::Unregistering;
                if !self.in_flight {
                    self.next = Some(now);
                }
            }
            RegState::Failed { .. } => {
                self.state = RegState::Unregistered;
                self.next = None;
            }
            RegState::Unregistering | RegState::Unregistered => {}
        }
    }

    fn answer_challenge(&mut self, now: Instant, resp: &Message) -> bool {
        let Ok((challenge, _)) = Authenticator::challenge_of(resp) else {
            return false;
        };
        if !self.auth.has_credentials() || !worth_answering(self.auth.last_challenge(), &challenge)
        {
            self.auth.forget();
            return false;
        }
        match self.auth.answer(resp, "REGISTER", &self.cfg.registrar) {
            Ok(header) => {
                self.answer = Some(header);
                self.next = Some(now);
                true
            }
            Err(_) => false,
        }
    }

    fn registered(&mut self, now: Instant, resp: &Message) {
        let granted = self.granted(resp).unwrap_or(self.expires);
        if granted == 0 {
            // A 200 that grants nothing: the provider did not keep the binding.
            self.fail(now, 200, "binding not kept (expires 0)".into(), None);
            return;
        }
        self.backoff.reset();
        let life = duration_secs(granted);
        let refresh = if life > REFRESH_MARGIN.saturating_mul(2) {
            life.saturating_sub(REFRESH_MARGIN)
        } else {
            life.checked_div(2).unwrap_or(life)
        };
        let refresh_at = later(now, refresh);
        self.state = RegState::Registered {
            expires_at: later(now, life),
            refresh_at,
        };
        self.next = Some(refresh_at);
    }

    /// The expiry the provider granted our Contact: its `expires` parameter in the 200's
    /// Contact list, else the Expires header.
    fn granted(&self, resp: &Message) -> Option<u32> {
        let ours = self.cfg.contact.as_str();
        let from_contact = resp
            .headers
            .values(&HeaderName::Contact)
            .filter_map(NameAddr::parse)
            .find(|n| same_uri(n.uri, ours))
            .and_then(|n| fields::param(n.params, "expires"))
            .and_then(|v| v.trim_matches('"').parse::<u32>().ok());
        from_contact.or_else(|| {
            resp.header(&HeaderName::Expires)
                .and_then(|v| v.trim().parse::<u32>().ok())
        })
    }

    fn fail(&mut self, now: Instant, status: u16, reason: String, retry_after: Option<Duration>) {
        self.auth.forget();
        self.answer = None;
        let delay = self
            .backoff
            .next_delay()
            .max(retry_after.unwrap_or(Duration::ZERO));
        let retry_at = later(now, delay);
        self.last = Some((status, reason.clone()));
        self.state = RegState::Failed {
            status,
            reason,
            retry_at,
        };
        self.next = Some(retry_at);
    }
}

/// URIs compared as RFC 3261 §19.1.4 would for a Contact Sluice wrote itself: scheme, user,
/// host and port without case in the host; parameters are Sluice's own and compared as text.
fn same_uri(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_auth::Authorization;

    const CONTACT: &str = "sip:100200@203.0.113.5:5080";

    fn cfg(credentials: bool) -> RegistrationConfig {
        RegistrationConfig {
            registrar: "sip:sanjose2.voip.ms".into(),
            aor: "sip:100200@sanjose2.voip.ms".into(),
            contact: CONTACT.into(),
            expires: 3600,
            credentials: credentials.then(|| Credentials {
                username: "100200".into(),
                password: "pw".into(),
            }),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(1800),
        }
    }

    fn reg(credentials: bool, now: Instant) -> Registration {
        Registration::new(
            cfg(credentials),
            ("cid1".into(), "tag1".into(), 100),
            7,
            now,
        )
    }

    fn reply(req: &Message, status: u16, extra: &[(HeaderName, &str)]) -> Message {
        let mut r = Message::response(status, sluice_sip::reason_phrase(status));
        for n in [HeaderName::CallId, HeaderName::CSeq] {
            r.headers.push(n.clone(), req.header(&n).unwrap());
        }
        for (n, v) in extra {
            r.headers.push(n.clone(), *v);
        }
        r
    }

    fn cseq(m: &Message) -> u32 {
        m.cseq().unwrap().0
    }

    #[test]
    fn registers_honours_the_granted_expiry_and_refreshes_before_it() {
        let t0 = Instant::now();
        let mut r = reg(false, t0);
        assert_eq!(r.poll_timeout(), Some(t0));
        let req = r.poll_request(t0).unwrap();
        assert_eq!(req.request_uri(), Some("sip:sanjose2.voip.ms"));
        assert_eq!(req.header(&HeaderName::Expires), Some("3600"));
        assert_eq!(
            req.header(&HeaderName::Contact),
            Some("<sip:100200@203.0.113.5:5080>")
        );
        assert!(r.poll_request(t0).is_none(), "one REGISTER at a time");
        assert_eq!(r.poll_timeout(), None);
        // The provider grants 300 s on our Contact (another binding says something else).
        let ok = reply(
            &req,
            200,
            &[
                (HeaderName::Contact, "<sip:other@198.51.100.1>;expires=9999"),
                (
                    HeaderName::Contact,
                    "<sip:100200@203.0.113.5:5080>;expires=300",
                ),
                (HeaderName::Expires, "3600"),
            ],
        );
        r.on_response(t0, &ok);
        let RegState::Registered {
            expires_at,
            refresh_at,
        } = *r.state()
        else {
            panic!("{:?}", r.state());
        };
        assert_eq!(expires_at, t0 + Duration::from_secs(300));
        assert_eq!(refresh_at, t0 + Duration::from_secs(270));
        assert!(r.is_registered(t0 + Duration::from_secs(299)));
        assert!(r.poll_request(t0 + Duration::from_secs(269)).is_none());
        let again = r.poll_request(refresh_at).unwrap();
        assert_eq!(
            again.call_id(),
            req.call_id(),
            "a refresh keeps the Call-ID"
        );
        assert_eq!(again.from_tag(), req.from_tag());
        assert_eq!(cseq(&again), cseq(&req) + 1);
        // A short expiry is refreshed at half.
        r.on_response(
            refresh_at,
            &reply(&again, 200, &[(HeaderName::Expires, "40")]),
        );
        assert!(
            matches!(*r.state(), RegState::Registered { refresh_at: t, .. }
            if t == refresh_at + Duration::from_secs(20))
        );
    }

    #[test]
    fn a_challenge_is_answered_and_a_refusal_of_the_same_nonce_fails() {
        let t0 = Instant::now();
        let mut r = reg(true, t0);
        let req = r.poll_request(t0).unwrap();
        let challenge = r#"Digest realm="voip.ms", nonce="n1", qop="auth", algorithm=MD5"#;
        r.on_response(
            t0,
            &reply(&req, 401, &[(HeaderName::WwwAuthenticate, challenge)]),
        );
        assert_eq!(*r.state(), RegState::Registering);
        let authed = r.poll_request(t0).expect("answered at once");
        assert_eq!(cseq(&authed), cseq(&req) + 1);
        let a = Authorization::parse(authed.header(&HeaderName::Authorization).unwrap()).unwrap();
        assert_eq!((a.username.as_str(), a.nonce.as_str()), ("100200", "n1"));
        assert_eq!(a.uri, "sip:sanjose2.voip.ms");
        // The same nonce challenged again: wrong credentials.
        r.on_response(
            t0,
            &reply(&authed, 401, &[(HeaderName::WwwAuthenticate, challenge)]),
        );
        assert!(
            matches!(r.state(), RegState::Failed { status: 401, .. }),
            "{:?}",
            r.state()
        );
        // A stale nonce is answered again.
        let mut r = reg(true, t0);
        let req = r.poll_request(t0).unwrap();
        r.on_response(
            t0,
            &reply(&req, 407, &[(HeaderName::ProxyAuthenticate, challenge)]),
        );
        let authed = r.poll_request(t0).unwrap();
        assert!(authed.header(&HeaderName::ProxyAuthorization).is_some());
        let stale = r#"Digest realm="voip.ms", nonce="n2", qop="auth", stale=true"#;
        r.on_response(
            t0,
            &reply(&authed, 407, &[(HeaderName::ProxyAuthenticate, stale)]),
        );
        let again = r.poll_request(t0).expect("stale: answered again");
        let a = Authorization::parse(again.header(&HeaderName::ProxyAuthorization).unwrap());
        assert_eq!(a.unwrap().nonce, "n2");
        r.on_response(t0, &reply(&again, 200, &[]));
        assert!(r.is_registered(t0));
        // The refresh carries credentials for the known nonce, counting up.
        let RegState::Registered { refresh_at, .. } = *r.state() else {
            unreachable!()
        };
        let refresh = r.poll_request(refresh_at).unwrap();
        let a = Authorization::parse(refresh.header(&HeaderName::ProxyAuthorization).unwrap());
        assert_eq!(a.unwrap().qop.unwrap().0, 2);
        // Without credentials a challenge is a failure.
        let mut r = reg(false, t0);
        let req = r.poll_request(t0).unwrap();
        r.on_response(
            t0,
            &reply(&req, 401, &[(HeaderName::WwwAuthenticate, challenge)]),
        );
        assert!(matches!(r.state(), RegState::Failed { status: 401, .. }));
    }

    #[test]
    fn failures_back_off_with_jitter_and_honour_retry_after() {
        let t0 = Instant::now();
        let mut r = reg(false, t0);
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..5 {
            let req = r.poll_request(now).unwrap();
            r.on_response(now, &reply(&req, 503, &[]));
            let RegState::Failed { retry_at, .. } = *r.state() else {
                panic!()
            };
            assert!(r
                .poll_request(retry_at - Duration::from_millis(1))
                .is_none());
            delays.push(retry_at - now);
            now = retry_at;
        }
        for (d, raw) in delays.iter().zip([30u64, 60, 120, 240, 480]) {
            assert!(
                *d >= Duration::from_secs(raw) * 8 / 10 && *d <= Duration::from_secs(raw) * 12 / 10,
                "{d:?} for {raw}"
            );
        }
        let req = r.poll_request(now).unwrap();
        r.on_response(now, &reply(&req, 503, &[(HeaderName::RetryAfter, "3600")]));
        let RegState::Failed { retry_at, .. } = *r.state() else {
            panic!()
        };
        assert!(
            retry_at - now >= Duration::from_secs(3600),
            "Retry-After is a floor"
        );
        // A timeout is a failure too, and a success starts the backoff over.
        let req = r.poll_request(retry_at).unwrap();
        r.on_timeout(retry_at);
        assert!(matches!(r.state(), RegState::Failed { status: 408, .. }));
        let RegState::Failed { retry_at: t, .. } = *r.state() else {
            unreachable!()
        };
        let req2 = r.poll_request(t).unwrap();
        assert!(cseq(&req2) > cseq(&req));
        r.on_response(t, &reply(&req2, 200, &[]));
        let RegState::Registered { refresh_at, .. } = *r.state() else {
            panic!()
        };
        let req3 = r.poll_request(refresh_at).unwrap();
        r.on_response(refresh_at, &reply(&req3, 500, &[]));
        let RegState::Failed { retry_at, .. } = *r.state() else {
            panic!()
        };
        assert!(
            retry_at - refresh_at <= Duration::from_secs(36),
            "back to the base delay"
        );
    }

    #[test]
    fn interval_too_brief_raises_the_expiry_once() {
        let t0 = Instant::now();
        let mut r = reg(false, t0);
        let req = r.poll_request(t0).unwrap();
        r.on_response(t0, &reply(&req, 423, &[(HeaderName::MinExpires, "7200")]));
        let req = r.poll_request(t0).unwrap();
        assert_eq!(req.header(&HeaderName::Expires), Some("7200"));
        r.on_response(t0, &reply(&req, 423, &[(HeaderName::MinExpires, "7200")]));
        assert!(matches!(r.state(), RegState::Failed { status: 423, .. }));
    }

    #[test]
    fn an_unregister_asked_during_a_refresh_follows_its_answer() {
        let t0 = Instant::now();
        let mut r = reg(false, t0);
        let req = r.poll_request(t0).unwrap();
        r.unregister(t0);
        assert!(r.poll_request(t0).is_none(), "one REGISTER at a time");
        r.on_response(t0, &reply(&req, 200, &[]));
        let bye = r
            .poll_request(t0)
            .expect("the unregister, once the refresh is answered");
        assert_eq!(bye.header(&HeaderName::Expires), Some("0"));
        r.on_response(t0, &reply(&bye, 200, &[]));
        assert_eq!(*r.state(), RegState::Unregistered);
    }

    #[test]
    fn unregister_sends_expires_zero_once() {
        let t0 = Instant::now();
        let mut r = reg(false, t0);
        let req = r.poll_request(t0).unwrap();
        r.on_response(t0, &reply(&req, 200, &[]));
        r.unregister(t0);
        let bye = r.poll_request(t0).unwrap();
        assert_eq!(bye.header(&HeaderName::Expires), Some("0"));
        r.on_response(t0, &reply(&bye, 200, &[]));
        assert_eq!(*r.state(), RegState::Unregistered);
        assert_eq!(r.poll_timeout(), None);
        assert!(r.poll_request(t0 + Duration::from_secs(10_000)).is_none());
        // A failed registration has nothing to remove.
        let mut r = reg(false, t0);
        let req = r.poll_request(t0).unwrap();
        r.on_response(t0, &reply(&req, 404, &[]));
        r.unregister(t0);
        assert_eq!(*r.state(), RegState::Unregistered);
        assert_eq!(r.poll_timeout(), None);
    }
}
