//! STIR/SHAKEN verification of calls from trunks that verify (RFC 8224 §6.2, ATIS-1000074).
//! A new call's Identity is read before anything is sent: when the certificate at its `x5u`
//! is needed, the engine asks the shell for it ([`crate::Output::FetchCertificate`]) and the
//! call waits, parked, until [`crate::Engine::handle_certificate`] brings it or the fetch's
//! time is up; other calls go on meanwhile. The INVITE's retransmissions are absorbed by its
//! transaction, and a CANCEL ends the wait with 487.
//!
//! The result reaches the PBX as `verstat` in the user part of P-Asserted-Identity (else
//! From), replacing any `verstat` the trunk wrote; plugins see it there. With
//! `on_failure = "reject"` a failed verification refuses the call with RFC 8224's status
//! instead. Calls without Identity get `No-TN-Validation`.

use crate::call::CallKey;
use crate::core::{Core, Output};
use crate::hooks::Hooks;
use crate::new_call::{self, Admitted};
use sluice_sip::{HeaderName, Message, NameAddr};
use sluice_stir::verify::{finish, start, Failure, Outcome, Policy, Started};
use sluice_stir::{Expect, Identity};
use sluice_transaction::{Flow, ServerTxId};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// Calls waiting for certificates at once, at most; beyond, a call's fetch counts as failed.
const MAX_PARKED: usize = 10_000;

/// How a trunk's inbound calls are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub policy: Policy,
    /// Refuse failed calls (RFC 8224's status) rather than pass them marked.
    pub reject: bool,
    /// How long a call waits for its certificate.
    pub fetch_timeout: Duration,
}

/// A call waiting for its certificate.
pub(crate) struct Parked {
    input: (ServerTxId, Message, Flow),
    admitted: Admitted,
    identity: Box<Identity>,
    verification: Verification,
}

/// The calls waiting for certificates, by the key their call will have.
#[derive(Default)]
pub struct Verifying {
    parked: HashMap<CallKey, Parked>,
}

impl Verifying {
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }
}

/// What the first look at a new call's Identity decided.
// Returned once per new call and taken apart at once: boxing the call's input would cost an
// allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Begun {
    /// Go on now, with this outcome (`None`: the trunk does not verify).
    Ready((ServerTxId, Message, Flow), Admitted, Option<Outcome>),
    /// Parked until its certificate comes.
    Parked,
}

/// A new call from a trunk (call `key`, admitted): verified at once, or parked.
pub(crate) fn begin<H: Hooks>(
    core: &mut Core<H>,
    now: Instant,
    key: CallKey,
    input: (ServerTxId, Message, Flow),
    admitted: Admitted,
) -> Begun {
    let verification = core
        .cfg
        .trunks
        .iter()
        .find(|t| t.name == admitted.route.trunk)
        .and_then(|t| t.verification.clone())
        .filter(|_| admitted.direction == crate::call::Direction::Inbound);
    let Some(verification) = verification else {
        return Begun::Ready(input, admitted, None);
    };
    let values = input.1.headers.values(&HeaderName::Identity);
    match start(&verification.policy, values) {
        Started::Done(outcome) => Begun::Ready(input, admitted, Some(outcome)),
        Started::Fetch { .. } if core.verifying.len() >= MAX_PARKED => {
            // A flood of signed calls whose certificates are slow to come: no more waiting.
            Begun::Ready(input, admitted, Some(Outcome::Failed(Failure::Fetch)))
        }
        Started::Fetch { url, identity } => {
            debug!(call = key, %url, "verifying: certificate wanted");
            core.timers.push(
                sluice_transaction::after(now, verification.fetch_timeout),
                key,
            );
            core.outputs
                .push_back(Output::FetchCertificate { id: key, url });
            core.verifying.parked.insert(
                key,
                Parked {
                    input,
                    admitted,
                    identity,
                    verification,
                },
            );
            Begun::Parked
        }
    }
}

/// The calling and called numbers of a call's INVITE (empty when it has none).
fn numbers(msg: &Message) -> (String, String) {
    let (orig, dest) = crate::identity::call_numbers(msg);
    (orig.unwrap_or_default(), dest.unwrap_or_default())
}

/// The unix time at `now`.
fn unix<H: Hooks>(core: &mut Core<H>, now: Instant) -> u64 {
    crate::identity::unix(core, now)
}

impl<H: Hooks> crate::Engine<H> {
    /// The certificates the shell fetched for call `id` (PEM), or why not.
    pub fn handle_certificate(&mut self, now: Instant, id: u64, fetched: Result<&[u8], ()>) {
        let Some(p) = self.core.verifying.parked.remove(&id) else {
            return; // Timed out or cancelled meanwhile.
        };
        let (orig, dest) = numbers(&p.input.1);
        let expect = Expect {
            now: unix(&mut self.core, now),
            max_age: p.verification.policy.max_age,
            orig: &orig,
            dest: &dest,
        };
        let outcome = finish(&p.verification.policy, &p.identity, fetched, expect);
        new_call::proceed(
            &mut self.core,
            &mut self.calls,
            now,
            id,
            (p.input, p.admitted),
            Some(outcome),
        );
        self.dispatch(now);
    }

    /// A call timer of `key` fired: a parked call whose certificate did not come in time.
    pub(crate) fn verify_timed_out(&mut self, now: Instant, key: CallKey) -> bool {
        if !self.core.verifying.parked.contains_key(&key) {
            return false;
        }
        info!(call = key, "certificate fetch timed out");
        self.handle_certificate(now, key, Err(()));
        true
    }
}

/// A CANCEL for INVITE `invite` that has no call: if it is parked, it ends with 487.
pub fn cancelled<H: Hooks>(core: &mut Core<H>, now: Instant, invite: ServerTxId) {
    let key = core
        .verifying
        .parked
        .iter()
        .find(|(_, p)| p.input.0 == invite)
        .map(|(k, _)| *k);
    if let Some(p) = key.and_then(|k| core.verifying.parked.remove(&k)) {
        let (tx, msg, _) = &p.input;
        new_call::refuse(
            core,
            now,
            (*tx, msg),
            &p.admitted,
            487,
            "Request Terminated",
        );
    }
}

/// The outcome counted, and what it means for the call: `Err` with the status that refuses
/// it, or the `verstat` its INVITE toward the PBX carries.
pub fn settle(
    trunk: &str,
    verification: Option<&Verification>,
    outcome: &Outcome,
) -> Result<&'static str, (u16, &'static str)> {
    metrics::counter!(
        "sluice_stir_verified_total",
        "trunk" => trunk.to_string(),
        "result" => outcome.label()
    )
    .increment(1);
    match outcome {
        Outcome::Failed(f) => {
            info!(trunk, reason = f.label(), "STIR/SHAKEN verification failed");
            if verification.is_some_and(|v| v.reject) {
                return Err(f.status());
            }
        }
        Outcome::Passed { attest } => debug!(trunk, attest, "STIR/SHAKEN verified"),
        Outcome::NoIdentity => {}
    }
    Ok(outcome.verstat())
}

/// Write `verstat` into the user part of every P-Asserted-Identity (else of From) of
/// `invite`, and take any other `verstat` out of both: only Sluice's reaches the PBX.
pub fn mark(invite: &mut Message, verstat: &str) {
    let pai = invite.header(&HeaderName::PAssertedIdentity).is_some();
    for (name, marked) in [
        (HeaderName::PAssertedIdentity, true),
        (HeaderName::From, !pai),
    ] {
        let values: Vec<String> = invite.headers.values(&name).map(str::to_string).collect();
        if values.is_empty() {
            continue;
        }
        let rewritten: Vec<String> = values
            .iter()
            .flat_map(|v| {
                sluice_sip::fields::split_list(v)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .map(|v| with_verstat(&v, marked.then_some(verstat)).unwrap_or(v))
            .collect();
        invite.headers.remove(&name);
        invite.headers.push(name, rewritten.join(", "));
    }
}

/// A name-addr with `;verstat=` (when given) in its URI's user part (SIP) or parameters
/// (tel), any other `verstat` there taken out.
fn with_verstat(value: &str, verstat: Option<&str>) -> Option<String> {
    let na = NameAddr::parse(value)?;
    let uri = na.uri;
    // Where the URI is in the value (not a look-alike in the display name).
    let start = (uri.as_ptr() as usize).checked_sub(value.as_ptr() as usize)?;
    let end = start.checked_add(uri.len())?;
    let (scheme, rest) = uri.split_once(':')?;
    let param = verstat.map_or(String::new(), |v| format!(";verstat={v}"));
    let strip = |s: &str| -> String {
        s.split(';')
            .filter(|p| !p.to_ascii_lowercase().starts_with("verstat="))
            .collect::<Vec<_>>()
            .join(";")
    };
    let new_uri = if scheme.eq_ignore_ascii_case("tel") {
        let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
        let kept = strip(params);
        let kept = if kept.is_empty() {
            String::new()
        } else {
            format!(";{kept}")
        };
        format!("{scheme}:{number}{kept}{param}")
    } else {
        let (user, host) = rest.split_once('@')?;
        format!("{scheme}:{}{param}@{host}", strip(user))
    };
    let new_uri = if na.bracketed {
        new_uri
    } else {
        format!("<{new_uri}>")
    };
    Some(format!(
        "{}{new_uri}{}",
        value.get(..start)?,
        value.get(end..)?
    ))
}

#[cfg(test)]
mod tests {
    use super::with_verstat;

    #[test]
    fn verstat_goes_into_the_user_part_replacing_any() {
        assert_eq!(
            with_verstat(
                "\"A\" <sip:+15551234567@h;user=phone>;tag=x",
                Some("TN-Validation-Passed")
            )
            .as_deref(),
            Some("\"A\" <sip:+15551234567;verstat=TN-Validation-Passed@h;user=phone>;tag=x")
        );
        assert_eq!(
            with_verstat(
                "<sip:+1555;verstat=TN-Validation-Passed@h>",
                Some("TN-Validation-Failed")
            )
            .as_deref(),
            Some("<sip:+1555;verstat=TN-Validation-Failed@h>")
        );
        assert_eq!(
            with_verstat("<tel:+1555;verstat=x;npdi>", Some("No-TN-Validation")).as_deref(),
            Some("<tel:+1555;npdi;verstat=No-TN-Validation>")
        );
        assert_eq!(with_verstat("<sip:h>", Some("x")), None, "no user part");
        assert_eq!(
            with_verstat("sip:+1555@h;tag=1", Some("No-TN-Validation")).as_deref(),
            Some("<sip:+1555;verstat=No-TN-Validation@h>;tag=1")
        );
        // A look-alike in the display name is not the URI.
        let forged = "\"sip:+1555;verstat=TN-Validation-Passed@h\" <sip:+1555;verstat=TN-Validation-Passed@h>";
        assert_eq!(
            with_verstat(forged, Some("TN-Validation-Failed")).as_deref(),
            Some("\"sip:+1555;verstat=TN-Validation-Passed@h\" <sip:+1555;verstat=TN-Validation-Failed@h>")
        );
        // Only taken out.
        assert_eq!(
            with_verstat("<sip:+1555;verstat=TN-Validation-Passed@h>", None).as_deref(),
            Some("<sip:+1555@h>")
        );
    }

    #[test]
    fn every_p_asserted_identity_is_marked_and_from_cleaned() {
        let mut m = sluice_sip::Message::request(sluice_sip::Method::Invite, "sip:x@h");
        m.headers.push(
            sluice_sip::HeaderName::PAssertedIdentity,
            "<sip:+1555;verstat=TN-Validation-Passed@h>, <tel:+1555;verstat=TN-Validation-Passed>",
        );
        m.headers.push(
            sluice_sip::HeaderName::From,
            "<sip:+1555;verstat=TN-Validation-Passed@h>;tag=1",
        );
        super::mark(&mut m, "TN-Validation-Failed");
        assert_eq!(
            m.header(&sluice_sip::HeaderName::PAssertedIdentity),
            Some("<sip:+1555;verstat=TN-Validation-Failed@h>, <tel:+1555;verstat=TN-Validation-Failed>")
        );
        assert_eq!(
            m.header(&sluice_sip::HeaderName::From),
            Some("<sip:+1555@h>;tag=1")
        );
    }
}
