//! Semantic checks a message must pass before the transaction layer sees it.

use crate::fields::{split_list, NameAddr, Uri, Via};
use crate::header::HeaderName;
use crate::message::{Headers, Message, StartLine};
use crate::method::Method;

/// Why a parsed message is refused, and the status a request gets for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Rejection {
    Rejection {
        status: 400,
        reason,
    }
}

/// Check a message: mandatory headers present once, CSeq, Via, From/To and Request-URI
/// well-formed. Max-Forwards may be missing (RFC 2543 peers); it is checked when present.
pub fn validate(msg: &Message) -> Result<(), Rejection> {
    let h = &msg.headers;
    mandatory_headers(h)?;
    let call_id = h.get(&HeaderName::CallId).unwrap_or("");
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(bad("Malformed Call-ID"));
    }
    let Some((_, cseq_method)) = msg.cseq() else {
        return Err(bad("Malformed CSeq"));
    };
    addresses(h)?;
    if let Some(mf) = h.get(&HeaderName::MaxForwards) {
        let mf = mf.trim();
        if mf.is_empty() || !mf.bytes().all(|b| b.is_ascii_digit()) || mf.parse::<u32>().is_err() {
            return Err(bad("Malformed Max-Forwards"));
        }
    }
    if let Some(ct) = h.get(&HeaderName::ContentType) {
        if !is_media_type(ct) {
            return Err(bad("Malformed Content-Type"));
        }
    }
    if let Some(v) = h.get(&HeaderName::Expires) {
        if v.trim().parse::<u32>().is_err() && !msg.is_request() {
            return Err(bad("Malformed Expires"));
        }
    }
    match &msg.start {
        StartLine::Request { method, uri } => request_line(method, uri, &cseq_method),
        StartLine::Response { .. } => Ok(()),
    }
}

/// Via, From, To, Call-ID and CSeq present; no single-valued header twice (but Expires).
fn mandatory_headers(h: &Headers) -> Result<(), Rejection> {
    for (name, missing) in [
        (HeaderName::Via, "Missing Via header"),
        (HeaderName::From, "Missing From header"),
        (HeaderName::To, "Missing To header"),
        (HeaderName::CallId, "Missing Call-ID header"),
        (HeaderName::CSeq, "Missing CSeq header"),
    ] {
        if h.get(&name).is_none() {
            return Err(bad(missing));
        }
    }
    for header in h {
        if header.name.is_single_valued()
            && h.count(&header.name) > 1
            && header.name != HeaderName::Expires
        {
            return Err(bad("Repeated single-valued header"));
        }
    }
    Ok(())
}

/// Every Via (SIP/2.0, else 505), From, To and Contact well-formed.
fn addresses(h: &Headers) -> Result<(), Rejection> {
    for v in h.values(&HeaderName::Via) {
        let via = Via::parse(v).ok_or(bad("Malformed Via"))?;
        if via.version != "2.0" {
            return Err(Rejection {
                status: 505,
                reason: "SIP Version Not Supported",
            });
        }
    }
    for (name, what) in [
        (HeaderName::From, "Malformed From"),
        (HeaderName::To, "Malformed To"),
    ] {
        let v = h.get(&name).unwrap_or("");
        let na = NameAddr::parse(v).ok_or(bad(what))?;
        check_uri(na.uri).ok_or(bad(what))?;
    }
    for v in h.values(&HeaderName::Contact) {
        if v == "*" {
            continue;
        }
        let na = NameAddr::parse(v).ok_or(bad("Malformed Contact"))?;
        check_uri(na.uri).ok_or(bad("Malformed Contact"))?;
    }
    Ok(())
}

/// A request's method matches its CSeq's, and its Request-URI is a SIP URI without headers
/// or a tel URI (another scheme: 416).
fn request_line(method: &Method, uri: &str, cseq_method: &Method) -> Result<(), Rejection> {
    if method != cseq_method {
        return Err(bad("CSeq method does not match the request"));
    }
    let parsed = Uri::parse(uri).ok_or(bad("Malformed Request-URI"))?;
    if parsed.is_sip() {
        // Headers (`?...`) are not allowed in a Request-URI (RFC 3261 §19.1.5).
        if !parsed.headers.is_empty() {
            return Err(bad("Headers in the Request-URI"));
        }
    } else if !parsed.scheme.eq_ignore_ascii_case("tel") {
        return Err(Rejection {
            status: 416,
            reason: "Unsupported URI Scheme",
        });
    }
    Ok(())
}

fn check_uri(uri: &str) -> Option<()> {
    let u = Uri::parse(uri)?;
    if u.is_sip() || !u.host.is_empty() {
        Some(())
    } else {
        None
    }
}

/// `type/subtype *(;param)`.
fn is_media_type(v: &str) -> bool {
    let main = v.split(';').next().unwrap_or("").trim();
    let mut it = main.splitn(2, '/');
    let (Some(t), Some(s)) = (it.next(), it.next()) else {
        return false;
    };
    let tok = |x: &str| {
        let x = x.trim();
        !x.is_empty() && x.bytes().all(crate::header::is_token_char)
    };
    tok(t) && tok(s)
}

/// The option tags listed in a Require-like header.
pub fn option_tags<'a>(msg: &'a Message, name: &'a HeaderName) -> impl Iterator<Item = &'a str> {
    msg.headers.get_all(name).flat_map(split_list)
}
