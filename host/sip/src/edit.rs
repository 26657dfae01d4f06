//! Edits that code outside the core (plugins) may make to a message on its way out, and the
//! rules that keep them safe: no edits to the headers that carry Sluice's topology or the
//! transaction, no line breaks or control characters, well-formed URIs, From/To tags kept.
//!
//! The plugin host and the SDK's native test harness both apply edits through these functions,
//! so a plugin behaves the same in its unit tests as in Sluice.

use crate::fields::{NameAddr, Uri};
use crate::header::HeaderName;
use crate::message::{Message, StartLine};
use crate::method::Method;
use bytes::Bytes;
use std::fmt;

/// Longest header value an edit may write.
pub const MAX_VALUE: usize = 4096;
/// Most header lines a message may have after edits.
pub const MAX_HEADERS: usize = 128;
/// Largest body an edit may write.
pub const MAX_BODY: usize = 32 * 1024;
/// Longest number a number hook may return.
pub const MAX_NUMBER: usize = 32;

/// Why an edit was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// Sluice manages this header (topology or transaction): read-only.
    Managed(String),
    BadName(String),
    BadValue {
        name: String,
        why: &'static str,
    },
    BadUri(String),
    BadBody(&'static str),
    /// The operation does not apply to this kind of message.
    NotApplicable(&'static str),
    TooManyHeaders,
    /// A From/To value with a tag other than the dialog's.
    TagChanged(String),
    BadNumber(String),
    BadStatus(u16),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Managed(n) => write!(f, "{n} is managed by Sluice and cannot be edited"),
            EditError::BadName(n) => write!(f, "`{}` is not a header name", clip(n)),
            EditError::BadValue { name, why } => write!(f, "bad value for {name}: {why}"),
            EditError::BadUri(u) => write!(f, "`{}` is not a sip, sips or tel URI", clip(u)),
            EditError::BadBody(why) => write!(f, "bad body: {why}"),
            EditError::NotApplicable(why) => f.write_str(why),
            EditError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header lines"),
            EditError::TagChanged(n) => write!(f, "{n} tag cannot be changed"),
            EditError::BadNumber(n) => write!(f, "`{}` is not a number", clip(n)),
            EditError::BadStatus(s) => write!(f, "{s} is not a final error status (400-699)"),
        }
    }
}

impl std::error::Error for EditError {}

fn clip(s: &str) -> String {
    clip_to(s, 64)
}

/// The first `max` characters of `s` for a message, control characters shown as `?`, and `…`
/// when something was cut.
pub(crate) fn clip_to(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Headers that carry Sluice's topology (Via, Route, Record-Route, Contact) or the transaction
/// and framing (Call-ID, CSeq, Max-Forwards, Content-Length, Content-Type): never edited from
/// outside the core.
pub fn is_managed(name: &HeaderName) -> bool {
    matches!(
        name,
        HeaderName::Via
            | HeaderName::Route
            | HeaderName::RecordRoute
            | HeaderName::Contact
            | HeaderName::CallId
            | HeaderName::CSeq
            | HeaderName::MaxForwards
            | HeaderName::ContentLength
            | HeaderName::ContentType
    )
}

/// A header name an edit may write.
pub fn editable_name(name: &str) -> Result<HeaderName, EditError> {
    if !HeaderName::is_valid_token(name) || name.len() > 64 {
        return Err(EditError::BadName(name.to_string()));
    }
    let h = HeaderName::parse(name);
    if is_managed(&h) {
        return Err(EditError::Managed(h.as_str().to_string()));
    }
    Ok(h)
}

/// A header value an edit may write: printable, no line breaks, not too long.
pub fn check_value(name: &HeaderName, value: &str) -> Result<(), EditError> {
    let bad = |why| EditError::BadValue {
        name: name.as_str().to_string(),
        why,
    };
    if value.len() > MAX_VALUE {
        return Err(bad("too long"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(bad("line break"));
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(bad("control character"));
    }
    if value.trim().is_empty() && matches!(name, HeaderName::From | HeaderName::To) {
        return Err(bad("empty"));
    }
    Ok(())
}

/// A URI an edit may write as Request-URI or in From/To: `sip:`, `sips:` or `tel:`.
pub fn check_uri(uri: &str) -> Result<(), EditError> {
    checked_uri(uri).map(|_| ())
}

/// [`check_uri`], keeping what it parsed.
fn checked_uri(uri: &str) -> Result<Uri<'_>, EditError> {
    let bad = || EditError::BadUri(uri.to_string());
    if uri.len() > MAX_VALUE || uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad());
    }
    let u = Uri::parse(uri).ok_or_else(bad)?;
    if u.is_sip() {
        return Ok(u);
    }
    if u.scheme.eq_ignore_ascii_case("tel") {
        let number = u.host.split(';').next().unwrap_or("");
        if !number.is_empty()
            && number
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b"+-.()*#".contains(&b))
        {
            return Ok(u);
        }
    }
    Err(bad())
}

/// From and To keep the dialog's tag: a new value without a tag gets the old one.
fn keep_tag(name: &HeaderName, old: Option<&str>, new: &str) -> Result<String, EditError> {
    let na = NameAddr::parse(new).ok_or_else(|| EditError::BadValue {
        name: name.as_str().to_string(),
        why: "not a name-addr",
    })?;
    check_uri(na.uri)?;
    let old_tag = old.and_then(NameAddr::parse).and_then(|n| n.param("tag"));
    match (old_tag, na.param("tag")) {
        (None, None) => Ok(new.to_string()),
        (Some(o), Some(n)) if o == n => Ok(new.to_string()),
        (Some(o), None) => {
            // An addr-spec without brackets would make the tag a URI parameter; bracket it.
            let base = if na.bracketed {
                new.trim().to_string()
            } else {
                format!("<{}>{}", na.uri, na.params)
            };
            Ok(format!("{base};tag={o}"))
        }
        _ => Err(EditError::TagChanged(name.as_str().to_string())),
    }
}

/// Replace every line of a header by one line.
pub fn set_header(msg: &mut Message, name: &str, value: &str) -> Result<(), EditError> {
    let h = editable_name(name)?;
    check_value(&h, value)?;
    let value = if matches!(h, HeaderName::From | HeaderName::To) {
        keep_tag(&h, msg.headers.get(&h), value)?
    } else {
        value.to_string()
    };
    if msg.headers.get(&h).is_none() && msg.headers.len() >= MAX_HEADERS {
        return Err(EditError::TooManyHeaders);
    }
    msg.headers.set(h, value);
    Ok(())
}

/// Add a line after the last line of the same name, or at the end.
pub fn add_header(msg: &mut Message, name: &str, value: &str) -> Result<(), EditError> {
    let h = editable_name(name)?;
    check_value(&h, value)?;
    if h.is_single_valued() || matches!(h, HeaderName::From | HeaderName::To) {
        if msg.headers.get(&h).is_some() {
            return Err(EditError::NotApplicable(
                "this header appears once: use set, not add",
            ));
        }
        return set_header(msg, name, value);
    }
    if msg.headers.len() >= MAX_HEADERS {
        return Err(EditError::TooManyHeaders);
    }
    msg.headers.insert_after_last(h, value.to_string());
    Ok(())
}

/// Remove every line of a header; From and To cannot be removed.
pub fn remove_header(msg: &mut Message, name: &str) -> Result<u32, EditError> {
    let h = editable_name(name)?;
    if matches!(h, HeaderName::From | HeaderName::To) {
        return Err(EditError::Managed(h.as_str().to_string()));
    }
    let n = msg.headers.count(&h);
    msg.headers.remove(&h);
    // At most MAX_HEADERS lines are ever added; a parsed message is bounded by its size.
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

pub fn set_request_uri(msg: &mut Message, uri: &str) -> Result<(), EditError> {
    let u = checked_uri(uri)?;
    // Headers (`?…`) are not allowed in a Request-URI (RFC 3261 §19.1.5): what `validate`
    // refuses, an edit may not write (found by the `edit` fuzz target).
    if u.is_sip() && !u.headers.is_empty() {
        return Err(EditError::BadUri(uri.to_string()));
    }
    match &mut msg.start {
        StartLine::Request { uri: u, .. } => {
            // Into the old URI's buffer: no allocation when the new one is no longer.
            u.clear();
            u.push_str(uri);
            Ok(())
        }
        StartLine::Response { .. } => {
            Err(EditError::NotApplicable("a response has no Request-URI"))
        }
    }
}

/// Replace the body and its Content-Type; an empty body removes both.
pub fn set_body(msg: &mut Message, content_type: &str, body: &[u8]) -> Result<(), EditError> {
    if body.len() > MAX_BODY {
        return Err(EditError::BadBody("too large"));
    }
    if is_sdp(msg.header(&HeaderName::ContentType)) && !msg.body.is_empty() {
        keeps_media_addresses(&msg.body, is_sdp(Some(content_type)).then_some(body))?;
    }
    if body.is_empty() {
        msg.headers.remove(&HeaderName::ContentType);
        msg.body = Bytes::new();
        return Ok(());
    }
    check_value(&HeaderName::ContentType, content_type)?;
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let valid_mime = mime
        .split_once('/')
        .is_some_and(|(t, s)| HeaderName::is_valid_token(t) && HeaderName::is_valid_token(s));
    if !valid_mime {
        return Err(EditError::BadBody("Content-Type is not type/subtype"));
    }
    msg.headers
        .set(HeaderName::ContentType, content_type.to_string());
    msg.body = Bytes::copy_from_slice(body);
    Ok(())
}

fn is_sdp(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/sdp")
    })
}

/// What Sluice writes into an SDP for media anchoring: the origin's address, every connection
/// address (the session's first), each stream's RTP and RTCP ports.
#[derive(PartialEq, Eq)]
struct MediaAddresses {
    origin: String,
    connections: Vec<Option<std::net::IpAddr>>,
    ports: Vec<(u16, Option<u16>)>,
}

fn media_addresses(sdp: &sluice_sdp::Sdp) -> MediaAddresses {
    MediaAddresses {
        origin: sdp.origin.address.clone(),
        connections: std::iter::once(sdp.connection.map(|c| c.address))
            .chain(sdp.media.iter().map(|m| m.connection.map(|c| c.address)))
            .collect(),
        ports: sdp.media.iter().map(|m| (m.port, m.rtcp_port)).collect(),
    }
}

/// An SDP may be edited (codecs, attributes), but its media addresses and ports are Sluice's
/// (media anchoring): a new body must keep them, and may not drop the SDP.
fn keeps_media_addresses(old: &[u8], new: Option<&[u8]>) -> Result<(), EditError> {
    // A body Sluice could not read was not anchored, and it is the plugin's to fix.
    let Ok(old) = sluice_sdp::parse(old) else {
        return Ok(());
    };
    let managed = || EditError::Managed("the SDP's media addresses and ports".into());
    let new = new.ok_or_else(managed)?;
    let new = sluice_sdp::parse(new).map_err(|_| EditError::BadBody("SDP that does not parse"))?;
    if media_addresses(&old) == media_addresses(&new) {
        Ok(())
    } else {
        Err(managed())
    }
}

/// A number a number hook may return: an optional `+`, then digits, `*`, `#`, letters or
/// visual separators; at most [`MAX_NUMBER`] characters.
pub fn check_number(number: &str) -> Result<(), EditError> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    let ok = !digits.is_empty()
        && number.len() <= MAX_NUMBER
        && digits
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*#-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(EditError::BadNumber(number.to_string()))
    }
}

/// A rejection status a plugin may answer a request with.
pub fn check_reject_status(status: u16) -> Result<(), EditError> {
    if (400..=699).contains(&status) {
        Ok(())
    } else {
        Err(EditError::BadStatus(status))
    }
}

/// A request may be answered with `status` instead of being sent on: not a response, an ACK or
/// a BYE, and only with a final error status.
pub fn check_rejectable(msg: &Message, status: u16) -> Result<(), EditError> {
    match msg.method() {
        None => Err(EditError::NotApplicable("a response cannot be refused")),
        Some(Method::Ack) | Some(Method::Bye) => {
            Err(EditError::NotApplicable("an ACK or BYE cannot be refused"))
        }
        Some(_) => check_reject_status(status),
    }
}

/// Which number of a call a number hook normalises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberKind {
    /// Request-URI and To.
    Called,
    /// From and the identity headers.
    Calling,
}

/// Headers that carry the calling number.
pub const CALLING_HEADERS: [HeaderName; 4] = [
    HeaderName::From,
    HeaderName::PAssertedIdentity,
    HeaderName::PPreferredIdentity,
    HeaderName::RemotePartyId,
];

/// Normalise the numbers of an INVITE with `hook`: the called number (Request-URI, and To
/// where it carries the same number) and each distinct calling number (From and the identity
/// headers). `hook` returns `None` to leave a number as it is; a new number that is not
/// [valid](check_number) is not written.
pub fn normalize_numbers(
    msg: &mut Message,
    mut hook: impl FnMut(NumberKind, &str) -> Option<String>,
) {
    let called = msg.request_uri().and_then(|u| {
        let span = uri_number_span(u)?;
        Some((u.get(span.clone())?.to_string(), span))
    });
    if let Some((called, span)) = called {
        if let Some(n) = hook(NumberKind::Called, &called).filter(|n| check_number(n).is_ok()) {
            if let Some(uri) = msg.request_uri().and_then(|u| splice_range(u, span, &n)) {
                if is_plain_number(&n) {
                    // `+` and digits in place of a URI's user part or a tel: number leave a
                    // valid URI valid: no need to check the whole of it again.
                    if let StartLine::Request { uri: u, .. } = &mut msg.start {
                        *u = uri;
                    }
                } else {
                    let _ = set_request_uri(msg, &uri);
                }
            }
            let to = |number: &str| (number == called).then(|| n.clone());
            replace_numbers(msg, &HeaderName::To, to);
        }
    }
    // Each distinct calling number is asked once; every element's new number is decided from
    // the value as it came, so that a number mapped onto another one is not mapped twice.
    let mut seen: Vec<(String, Option<String>)> = Vec::new();
    for name in &CALLING_HEADERS {
        replace_numbers(msg, name, |number| {
            if let Some((_, new)) = seen.iter().find(|(old, _)| old == number) {
                return new.clone();
            }
            let new = hook(NumberKind::Calling, number).filter(|n| check_number(n).is_ok());
            seen.push((number.to_string(), new.clone()));
            new
        });
    }
}

/// An optional `+` and one or more digits: what a number policy writes.
fn is_plain_number(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or(n);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Rewrite the number of every element of header `name` to what `new` says of it (`None`:
/// unchanged), in place: the rest of each value, separators included, stays byte for byte.
fn replace_numbers(
    msg: &mut Message,
    name: &HeaderName,
    mut new: impl FnMut(&str) -> Option<String>,
) {
    for h in msg.headers.iter_mut().filter(|h| &h.name == name) {
        let value = h.value.as_str();
        let mut out: Option<String> = None;
        let mut done = 0;
        for element in crate::fields::split_list(value) {
            let Some(number) = name_addr_number(element) else {
                continue;
            };
            let (Some(span), Some(n)) = (span_in(value, number), new(number)) else {
                continue;
            };
            let o = out
                .get_or_insert_with(|| String::with_capacity(value.len().saturating_add(n.len())));
            o.push_str(value.get(done..span.start).unwrap_or_default());
            o.push_str(&n);
            done = span.end;
        }
        if let Some(mut o) = out {
            o.push_str(h.value.get(done..).unwrap_or_default());
            h.value = o;
        }
    }
}

/// The number of a name-addr (`"Alice" <sip:100@host>;tag=…`), as a view into it.
fn name_addr_number(value: &str) -> Option<&str> {
    uri_number(NameAddr::parse(value)?.uri)
}

/// Where the number of `uri` lies in it (see [`uri_number`]).
fn uri_number_span(uri: &str) -> Option<std::ops::Range<usize>> {
    span_in(uri, uri_number(uri)?)
}

/// The range `part` covers in `outer`. `part` must be a view borrowed from `outer` (every
/// caller passes what a parser returned of it): an empty string from elsewhere whose address
/// happened to fall inside `outer` would give a wrong, empty range.
fn span_in(outer: &str, part: &str) -> Option<std::ops::Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    outer.get(start..end).map(|_| start..end)
}

/// `outer` with `range` replaced by `with`.
fn splice_range(outer: &str, range: std::ops::Range<usize>, with: &str) -> Option<String> {
    let mut s = String::with_capacity(outer.len().saturating_add(with.len()));
    s.push_str(outer.get(..range.start)?);
    s.push_str(with);
    s.push_str(outer.get(range.end..)?);
    Some(s)
}

/// The user part of a `sip:`/`sips:` URI or the number of a `tel:` URI.
pub fn uri_number(uri: &str) -> Option<&str> {
    let u = Uri::parse(uri)?;
    if u.is_sip() {
        u.user
    } else if u.scheme.eq_ignore_ascii_case("tel") {
        u.host.split(';').next()
    } else {
        None
    }
}

/// Replace the user part of a `sip:`/`sips:` URI or the number of a `tel:` URI.
pub fn replace_uri_number(uri: &str, number: &str) -> Option<String> {
    splice_range(uri, uri_number_span(uri)?, number)
}

/// Replace the number in a name-addr header value (From, To, P-Asserted-Identity…), keeping
/// display name and parameters.
pub fn replace_name_addr_number(value: &str, number: &str) -> Option<String> {
    splice_range(value, span_in(value, name_addr_number(value)?)?, number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Message {
        let mut m = Message::request(Method::Invite, "sip:+15552230000@192.0.2.1");
        m.headers
            .push(HeaderName::Via, "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx");
        m.headers
            .push(HeaderName::From, "\"Al\" <sip:100@192.0.2.9>;tag=abc");
        m.headers
            .push(HeaderName::To, "<sip:+15552230000@192.0.2.1>");
        m.headers.push(HeaderName::CallId, "c1");
        m
    }

    #[test]
    fn managed_headers_are_read_only() {
        let mut m = invite();
        for name in [
            "Via",
            "v",
            "call-id",
            "CSeq",
            "Contact",
            "Route",
            "Content-Length",
        ] {
            assert!(
                matches!(set_header(&mut m, name, "x"), Err(EditError::Managed(_))),
                "{name}"
            );
            assert!(matches!(
                remove_header(&mut m, name),
                Err(EditError::Managed(_))
            ));
        }
        assert!(matches!(
            remove_header(&mut m, "From"),
            Err(EditError::Managed(_))
        ));
    }

    #[test]
    fn values_cannot_inject_lines() {
        let mut m = invite();
        assert!(set_header(&mut m, "X-A", "ok\r\nVia: evil").is_err());
        assert!(set_header(&mut m, "X-A", "nul\0").is_err());
        assert!(set_header(&mut m, "X A", "v").is_err());
        assert!(set_header(&mut m, "X-A", &"a".repeat(MAX_VALUE + 1)).is_err());
        assert!(set_header(&mut m, "X-A", "fine").is_ok());
        assert_eq!(m.headers.get(&HeaderName::parse("x-a")), Some("fine"));
    }

    #[test]
    fn from_keeps_its_tag() {
        let mut m = invite();
        set_header(&mut m, "From", "<sip:+15552001111@192.0.2.9>").unwrap();
        assert_eq!(
            m.headers.get(&HeaderName::From),
            Some("<sip:+15552001111@192.0.2.9>;tag=abc")
        );
        set_header(&mut m, "f", "sip:200@192.0.2.9").unwrap();
        assert_eq!(
            m.headers.get(&HeaderName::From),
            Some("<sip:200@192.0.2.9>;tag=abc")
        );
        assert!(matches!(
            set_header(&mut m, "From", "<sip:1@h>;tag=other"),
            Err(EditError::TagChanged(_))
        ));
        set_header(&mut m, "To", "<tel:+15552230000>").unwrap();
        assert_eq!(m.headers.get(&HeaderName::To), Some("<tel:+15552230000>"));
        assert!(set_header(&mut m, "To", "<http://x>").is_err());
    }

    #[test]
    fn request_uri_and_numbers() {
        let mut m = invite();
        set_request_uri(&mut m, "tel:+12345678").unwrap();
        assert_eq!(m.request_uri(), Some("tel:+12345678"));
        assert!(set_request_uri(&mut m, "tel:").is_err());
        assert!(set_request_uri(&mut m, "sip:a b@c").is_err());
        assert!(
            set_request_uri(&mut m, "sips:zE?").is_err(),
            "no headers in a Request-URI"
        );
        assert!(set_request_uri(&mut m, "mailto:x@y").is_err());
        assert!(check_number("+15552234567").is_ok());
        assert!(check_number("*72#").is_ok());
        assert!(check_number("").is_err());
        assert!(check_number("+").is_err());
        assert!(check_number("1@2").is_err());
        assert_eq!(
            replace_uri_number("sip:+1555@h:5060;user=phone", "1555").as_deref(),
            Some("sip:1555@h:5060;user=phone")
        );
        assert_eq!(
            replace_uri_number("tel:+1555;phone-context=x", "1555").as_deref(),
            Some("tel:1555;phone-context=x")
        );
        assert_eq!(
            replace_name_addr_number("\"A\" <sip:100@h>;tag=1", "+1555").as_deref(),
            Some("\"A\" <sip:+1555@h>;tag=1")
        );
        assert_eq!(uri_number("tel:+1555;x=y"), Some("+1555"));
        assert_eq!(uri_number("sip:h"), None);
    }

    #[test]
    fn numbers_are_normalised_where_they_appear() {
        let mut m = invite();
        m.headers.push(
            HeaderName::PAssertedIdentity,
            "<sip:100@192.0.2.9>, <tel:+15552009999>",
        );
        let mut asked = Vec::new();
        normalize_numbers(&mut m, |kind, n| {
            asked.push((kind, n.to_string()));
            match n {
                "+15552230000" => Some("15552230000".into()),
                "100" => Some("+15552001111".into()),
                _ => Some("bad number!".into()),
            }
        });
        assert_eq!(m.request_uri(), Some("sip:15552230000@192.0.2.1"));
        assert_eq!(
            m.headers.get(&HeaderName::To),
            Some("<sip:15552230000@192.0.2.1>")
        );
        assert_eq!(
            m.headers.get(&HeaderName::From),
            Some("\"Al\" <sip:+15552001111@192.0.2.9>;tag=abc")
        );
        // 100 asked once; the invalid answer for the tel number is not written.
        assert_eq!(
            m.headers.get(&HeaderName::PAssertedIdentity),
            Some("<sip:+15552001111@192.0.2.9>, <tel:+15552009999>")
        );
        assert_eq!(asked.len(), 3, "{asked:?}");
    }

    #[test]
    fn a_number_mapped_onto_another_is_not_mapped_twice() {
        let mut m = invite();
        m.headers.push(
            HeaderName::PAssertedIdentity,
            "<sip:100@192.0.2.9>, <sip:200@192.0.2.9>",
        );
        normalize_numbers(&mut m, |_, n| match n {
            "100" => Some("200".into()),
            "200" => Some("300".into()),
            _ => None,
        });
        assert_eq!(
            m.headers.get(&HeaderName::PAssertedIdentity),
            Some("<sip:200@192.0.2.9>, <sip:300@192.0.2.9>")
        );
        assert_eq!(
            m.headers.get(&HeaderName::From),
            Some("\"Al\" <sip:200@192.0.2.9>;tag=abc")
        );
    }

    #[test]
    fn a_number_is_replaced_in_place_in_every_element_that_carries_it() {
        let mut m = invite();
        // Odd spacing and a quoted comma: everything but the numbers stays byte for byte.
        m.headers.push(
            HeaderName::PAssertedIdentity,
            "\"A, B\" <sip:100@192.0.2.9>,<tel:100;phone-context=x> ,  <sip:200@h>",
        );
        normalize_numbers(&mut m, |_, n| (n == "100").then(|| "+15552001111".into()));
        assert_eq!(
            m.headers.get(&HeaderName::PAssertedIdentity),
            Some(
                "\"A, B\" <sip:+15552001111@192.0.2.9>,<tel:+15552001111;phone-context=x> ,  \
                 <sip:200@h>"
            )
        );
        assert_eq!(
            m.headers.get(&HeaderName::From),
            Some("\"Al\" <sip:+15552001111@192.0.2.9>;tag=abc")
        );
    }

    #[test]
    fn what_can_be_refused() {
        let m = invite();
        assert!(check_rejectable(&m, 403).is_ok());
        assert!(check_rejectable(&m, 200).is_err());
        assert!(check_rejectable(&m, 700).is_err());
        let ack = Message::request(Method::Ack, "sip:a@b");
        assert!(check_rejectable(&ack, 403).is_err());
        assert!(check_rejectable(&Message::response(200, "OK"), 403).is_err());
    }

    #[test]
    fn body_edits() {
        let mut m = invite();
        set_body(&mut m, "application/sdp", b"v=0\r\n").unwrap();
        assert_eq!(
            m.headers.get(&HeaderName::ContentType),
            Some("application/sdp")
        );
        assert!(set_body(&mut m, "nonsense", b"x").is_err());
        set_body(&mut m, "", b"").unwrap();
        assert!(m.body.is_empty() && m.headers.get(&HeaderName::ContentType).is_none());
    }

    #[test]
    fn an_sdp_keeps_its_media_addresses_and_ports() {
        const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n\
                           t=0 0\r\nm=audio 20000 RTP/AVP 0 8\r\na=rtpmap:8 PCMA/8000\r\n";
        let mut m = invite();
        set_body(&mut m, "application/sdp", SDP.as_bytes()).unwrap();
        // Codecs and attributes are the plugin's to change.
        let fewer = SDP
            .replace(" 0 8\r\n", " 8\r\n")
            .replace("PCMA/8000\r\n", "PCMA/8000\r\na=ptime:30\r\n");
        set_body(&mut m, "application/sdp", fewer.as_bytes()).unwrap();
        for moved in [
            fewer.replace("c=IN IP4 192.0.2.1", "c=IN IP4 10.0.0.9"),
            fewer.replace("IN IP4 192.0.2.1\r\ns=", "IN IP4 10.0.0.9\r\ns="),
            fewer.replace("audio 20000", "audio 30000"),
            fewer.replace("t=0 0\r\n", "t=0 0\r\nm=video 9 RTP/AVP 96\r\n"),
            fewer.replace("PCMA/8000\r\n", "PCMA/8000\r\na=rtcp:9999\r\n"),
        ] {
            let e = set_body(&mut m, "application/sdp", moved.as_bytes()).unwrap_err();
            assert!(matches!(e, EditError::Managed(_)), "{moved}: {e}");
        }
        assert!(matches!(
            set_body(&mut m, "", b""),
            Err(EditError::Managed(_))
        ));
        assert!(matches!(
            set_body(&mut m, "text/plain", b"hello"),
            Err(EditError::Managed(_))
        ));
        assert!(matches!(
            set_body(&mut m, "application/sdp", b"v=0\r\nnonsense"),
            Err(EditError::BadBody(_))
        ));
        assert_eq!(
            &m.body[..],
            fewer.as_bytes(),
            "refused edits leave the body"
        );
    }

    #[test]
    fn add_respects_single_valued_headers() {
        let mut m = invite();
        assert!(add_header(&mut m, "From", "<sip:1@h>").is_err());
        add_header(&mut m, "X-B", "1").unwrap();
        add_header(&mut m, "X-C", "1").unwrap();
        add_header(&mut m, "X-B", "2").unwrap();
        let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names[names.len() - 3..], ["X-B", "X-B", "X-C"]);
    }
}
