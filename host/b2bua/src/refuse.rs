//! Admission of a new call: the checks an INVITE must pass before Sluice sets anything up, each
//! returning the refusal it gets; and how a callee's error is mapped for the caller.

use crate::headers::SUPPORTED;
use sluice_sip::{reason_phrase, HeaderName, Message};
use std::borrow::Cow;

/// A refusal of a request: the status, its reason phrase, and a header that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: Cow<'static, str>,
    pub header: Option<(HeaderName, Cow<'static, str>)>,
}

impl Refusal {
    pub fn new(status: u16) -> Refusal {
        Refusal {
            status,
            reason: Cow::Borrowed(reason_phrase(status)),
            header: None,
        }
    }

    pub fn with_reason(status: u16, reason: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
            header: None,
        }
    }

    pub(crate) fn with_header(
        mut self,
        name: HeaderName,
        value: impl Into<Cow<'static, str>>,
    ) -> Refusal {
        self.header = Some((name, value.into()));
        self
    }
}

/// What the engine's state says about taking one more call.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Draining: the seconds a refused caller should wait (the drain's remaining time).
    pub draining: Option<u64>,
    pub active_calls: usize,
    pub max_calls: usize,
    /// The shortest session interval accepted (RFC 4028: 422 below it).
    pub min_session_expires: u32,
}

/// The checks of a new INVITE, in order: hop count, body and Accept, drain, call limit.
pub fn admit(msg: &Message, load: Load) -> Result<(), Refusal> {
    if msg.max_forwards() == Some(0) {
        return Err(Refusal::new(483));
    }
    if let Some(r) = crate::session_timer::too_small(msg, load.min_session_expires) {
        return Err(r);
    }
    if let Some(status) = check_media(msg) {
        return Err(Refusal::new(status).with_header(HeaderName::Accept, "application/sdp"));
    }
    if let Some(seconds) = load.draining {
        return Err(Refusal::with_reason(503, "Service Unavailable")
            .with_header(HeaderName::RetryAfter, seconds.to_string()));
    }
    if load.active_calls >= load.max_calls {
        return Err(Refusal::with_reason(503, "Call Limit Reached"));
    }
    Ok(())
}

/// 415 for a body that is not SDP, 406 when the caller accepts no SDP.
fn check_media(msg: &Message) -> Option<u16> {
    let mime = |v: &str| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    if !msg.body.is_empty() {
        let ct = mime(msg.header(&HeaderName::ContentType).unwrap_or(""));
        if !(ct == "application/sdp" || ct.starts_with("multipart/")) {
            return Some(415);
        }
    }
    let mut accepts = msg.headers.values(&HeaderName::Accept).peekable();
    if accepts.peek().is_some()
        && !accepts.any(|a| {
            matches!(
                mime(a).as_str(),
                "application/sdp" | "*/*" | "application/*"
            )
        })
    {
        return Some(406);
    }
    None
}

/// Require/Proxy-Require option tags Sluice does not support, comma-joined (for 420).
pub fn unsupported_extensions(msg: &Message) -> Option<String> {
    let mut unsupported: Vec<&str> = Vec::new();
    for name in &[HeaderName::Require, HeaderName::ProxyRequire] {
        for tag in msg.headers.values(name) {
            if !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag)) {
                unsupported.push(tag);
            }
        }
    }
    (!unsupported.is_empty()).then(|| unsupported.join(", "))
}

/// Error statuses that make no sense across the B2BUA are mapped: the caller cannot answer a
/// challenge meant for Sluice, nor follow a redirect into the provider's network.
pub fn map_error_status(status: u16) -> u16 {
    match status {
        401 | 407 => 503,
        300..=399 => 480,
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sip::parse_message;

    fn invite(extra: &str, body: &str) -> Message {
        parse_message(
            format!(
                "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap()
    }

    const FREE: Load = Load {
        draining: None,
        active_calls: 0,
        max_calls: 1,
        min_session_expires: 90,
    };

    #[test]
    fn each_check_gives_its_status() {
        assert_eq!(admit(&invite("", ""), FREE), Ok(()));
        assert_eq!(
            admit(&invite("Max-Forwards: 0\r\n", ""), FREE)
                .unwrap_err()
                .status,
            483
        );
        let r = admit(&invite("Content-Type: text/plain\r\n", "hi"), FREE).unwrap_err();
        assert_eq!(
            (r.status, r.header),
            (415, Some((HeaderName::Accept, "application/sdp".into())))
        );
        assert_eq!(
            admit(&invite("Accept: text/html\r\n", ""), FREE)
                .unwrap_err()
                .status,
            406
        );
        assert_eq!(
            admit(&invite("Accept: text/html, application/sdp\r\n", ""), FREE),
            Ok(())
        );
        let r = admit(&invite("Session-Expires: 30\r\n", ""), FREE).unwrap_err();
        assert_eq!(
            (r.status, r.header),
            (422, Some((HeaderName::MinSe, "90".into())))
        );
        let draining = Load {
            draining: Some(12),
            ..FREE
        };
        assert_eq!(admit(&invite("", ""), draining).unwrap_err().status, 503);
        let full = Load {
            active_calls: 1,
            ..FREE
        };
        assert_eq!(
            admit(&invite("", ""), full).unwrap_err().reason,
            "Call Limit Reached"
        );
    }

    #[test]
    fn unsupported_extensions_are_named_and_errors_mapped() {
        let m = invite("Require: timer, foo\r\nProxy-Require: bar\r\n", "");
        assert_eq!(unsupported_extensions(&m).as_deref(), Some("foo, bar"));
        assert_eq!(
            unsupported_extensions(&invite("Require: timer\r\n", "")),
            None
        );
        assert_eq!(map_error_status(407), 503);
        assert_eq!(map_error_status(302), 480);
        assert_eq!(map_error_status(486), 486);
    }
}
