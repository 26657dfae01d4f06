//! Which headers cross the B2BUA, how addresses in them are hidden, and what Sluice says of
//! itself (Allow, Supported, Server/User-Agent).

use sluice_sip::{HeaderName, Message, NameAddr, Uri};
use std::net::SocketAddr;

/// Methods Sluice handles, as advertised in Allow.
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, NOTIFY, MESSAGE, SUBSCRIBE, REFER";
/// Extensions Sluice supports: reliable provisionals (ended on each leg, see
/// [`crate::prack`]) and session timers.
pub const SUPPORTED: &[&str] = &["100rel", "timer"];
/// The option tags copied from one leg's Supported/Require to the other's (session timers pass
/// through end to end; 100rel is each leg's own).
const RELAYED_OPTIONS: &[&str] = &["timer"];

/// Write Sluice's agent name: `User-Agent` on a request, `Server` on a response; nothing when
/// the configured name is empty.
pub fn add_agent(msg: &mut Message, agent: &str) {
    if agent.is_empty() {
        return;
    }
    let name = if msg.is_request() {
        HeaderName::UserAgent
    } else {
        HeaderName::Server
    };
    msg.headers.push(name, agent);
}

/// Headers copied from one leg to the other unchanged: they describe the session or the
/// endpoint's capabilities, never the topology. Everything else is dropped or rebuilt (Via,
/// Route, Record-Route, Contact, Call-ID, From, To, CSeq are per leg).
fn is_passthrough(name: &HeaderName) -> bool {
    matches!(
        name,
        HeaderName::ContentType
            | HeaderName::ContentDisposition
            | HeaderName::ContentEncoding
            | HeaderName::ContentLanguage
            | HeaderName::Accept
            | HeaderName::AcceptEncoding
            | HeaderName::AcceptLanguage
            | HeaderName::Subject
            | HeaderName::Priority
            | HeaderName::Expires
            | HeaderName::SessionExpires
            | HeaderName::MinSe
            | HeaderName::Event
            | HeaderName::AllowEvents
            | HeaderName::SubscriptionState
            | HeaderName::Date
            | HeaderName::MimeVersion
            | HeaderName::Privacy
            | HeaderName::RetryAfter
            | HeaderName::Unsupported
    )
}

/// No header value longer than `max` bytes is taken in (a 60 KB Subject would otherwise be
/// relayed to the other side): a request gets 513, a response is dropped.
pub fn within(msg: &Message, max: usize) -> Result<(), sluice_sip::Rejection> {
    if msg.headers.iter().any(|h| h.value.len() > max) {
        return Err(sluice_sip::Rejection {
            status: 513,
            reason: "Header Too Large",
        });
    }
    Ok(())
}

/// What Sluice does on a leg, on a message that sets up or refreshes a dialog (an INVITE or
/// UPDATE, and their 2xx): its own methods and extensions, not the far side's.
pub fn advertise(msg: &mut Message) {
    msg.headers.set(HeaderName::Allow, ALLOW);
    for tag in SUPPORTED {
        offer_option(msg, tag);
    }
}

/// Copy the passthrough headers, and Require reduced to what Sluice relays (Allow and
/// Supported are Sluice's own, see [`advertise`]).
pub fn copy_passthrough(from: &Message, to: &mut Message) {
    for h in &from.headers {
        if is_passthrough(&h.name) {
            to.headers.push(h.name.clone(), h.value.clone());
        } else if h.name == HeaderName::Require {
            let kept: Vec<&str> = sluice_sip::fields::split_list(&h.value)
                .filter(|t| RELAYED_OPTIONS.iter().any(|s| s.eq_ignore_ascii_case(t)))
                .collect();
            if !kept.is_empty() {
                to.headers.push(h.name.clone(), kept.join(", "));
            }
        }
    }
}

/// Add an option tag to a request's Supported header (one header, whatever was copied, the
/// tag once).
pub fn offer_option(req: &mut Message, tag: &str) {
    let mut tags: Vec<String> = req
        .headers
        .values(&HeaderName::Supported)
        .map(str::to_string)
        .collect();
    if !tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
        tags.push(tag.to_string());
    }
    req.headers.set(HeaderName::Supported, tags.join(", "));
}

/// Take an option tag out of a request's Supported header.
pub fn withdraw_option(req: &mut Message, tag: &str) {
    let tags: Vec<String> = req
        .headers
        .values(&HeaderName::Supported)
        .filter(|t| !t.eq_ignore_ascii_case(tag))
        .map(str::to_string)
        .collect();
    req.headers.remove(&HeaderName::Supported);
    if !tags.is_empty() {
        req.headers.push(HeaderName::Supported, tags.join(", "));
    }
}

/// Identity headers carry the caller's number, which the far side needs, and a host, which it
/// must not see: keep display name, user and parameters; replace the host with ours.
pub fn rewrite_identity(from: &Message, to: &mut Message, local_host: &str) {
    for h in &from.headers {
        if !matches!(
            h.name,
            HeaderName::PAssertedIdentity
                | HeaderName::PPreferredIdentity
                | HeaderName::RemotePartyId
                | HeaderName::Diversion
                | HeaderName::HistoryInfo
                | HeaderName::ReferredBy
        ) {
            continue;
        }
        let mut out = Vec::new();
        for v in sluice_sip::fields::split_list(&h.value) {
            if let Some(rewritten) = rehost_name_addr(v, local_host) {
                out.push(rewritten);
            }
        }
        if !out.is_empty() {
            to.headers.push(h.name.clone(), out.join(", "));
        }
    }
}

/// `"Name" <sip:user@host;params>;hparams` with the host replaced; tel URIs unchanged.
fn rehost_name_addr(v: &str, local_host: &str) -> Option<String> {
    let na = NameAddr::parse(v)?;
    let uri = Uri::parse(na.uri)?;
    let new_uri = if uri.is_sip() {
        let user = uri.user.map(|u| format!("{u}@")).unwrap_or_default();
        format!("{}:{user}{local_host}{}", uri.scheme, uri.params)
    } else if uri.scheme.eq_ignore_ascii_case("tel") {
        na.uri.to_string()
    } else {
        return None;
    };
    let display = na.display.map(|d| format!("{d} ")).unwrap_or_default();
    Some(format!("{display}<{new_uri}>{}", na.params))
}

/// `ip:port`, IPv6 in brackets.
pub fn format_host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// A host as a URI holds it: a bare IPv6 address in brackets, anything else as it is.
pub fn uri_host(host: &str) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// A peer's host for the URIs Sluice writes toward it (Request-URI, To), with the port when it
/// is not 5060.
pub fn peer_uri_host(host: &str, addr: SocketAddr) -> String {
    let host = uri_host(host);
    if addr.port() == 5060 {
        host
    } else {
        format!("{host}:{}", addr.port())
    }
}

/// Our host (and port when not 5060) for From/identity URIs on a leg.
pub fn local_uri_host(addr: SocketAddr) -> String {
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    if addr.port() == 5060 {
        host
    } else {
        format!("{host}:{}", addr.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_host_is_replaced() {
        assert_eq!(
            rehost_name_addr(
                "\"Alice\" <sip:+15551234@10.1.1.1:5062;user=phone>",
                "192.0.2.1"
            )
            .unwrap(),
            "\"Alice\" <sip:+15551234@192.0.2.1;user=phone>"
        );
        assert_eq!(
            rehost_name_addr("<tel:+15551234>", "192.0.2.1").unwrap(),
            "<tel:+15551234>"
        );
    }
}
