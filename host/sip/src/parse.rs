//! Parsing bytes into a [`Message`]: start line, header unfolding, compact names, Content-Length.

use crate::header::HeaderName;
use crate::message::{Headers, Message, StartLine};
use crate::method::Method;
use bytes::Bytes;

/// Why a message could not be parsed. When the head (start line and headers) was readable,
/// `partial` holds it so that a request can still be answered with 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub reason: &'static str,
    /// The status a request gets when it can be answered (400, or 505 for another version).
    pub status: u16,
    pub partial: Option<Box<Message>>,
}

impl ParseError {
    fn bare(reason: &'static str) -> Self {
        ParseError {
            reason,
            status: 400,
            partial: None,
        }
    }

    fn with_head(reason: &'static str, msg: Message) -> Self {
        ParseError {
            reason,
            status: 400,
            partial: Some(Box::new(msg)),
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Find the end of the header section: the index just past the empty line, and the index where
/// the empty line starts. Accepts CRLF and, liberally, bare LF line ends.
pub fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
    for nl in memchr::memchr_iter(b'\n', data) {
        // `nl` is an index into `data`, so `nl + 1` cannot overflow.
        let after = data.get(nl..).unwrap_or_default();
        if after.starts_with(b"\n\n") {
            return Some((nl, nl.saturating_add(2)));
        }
        if after.starts_with(b"\n\r\n") {
            return Some((nl, nl.saturating_add(3)));
        }
    }
    None
}

/// Parse one complete message (a UDP datagram, or a frame cut by [`crate::StreamFramer`]).
///
/// Bytes beyond Content-Length are ignored (RFC 3261 §18.3); a Content-Length larger than the
/// body is an error. Without Content-Length the body runs to the end of the data.
pub fn parse_message(data: &[u8]) -> Result<Message, ParseError> {
    // Leading empty lines are ignored (RFC 3261 §7.5).
    let start = data
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(data.len());
    let data = data.get(start..).unwrap_or_default();
    if data.is_empty() {
        return Err(ParseError::bare("empty message"));
    }
    let (head_end, body_start) = match find_head_end(data) {
        Some(x) => x,
        // A datagram whose head ends with a line end but lacks the empty line: the head runs
        // to the end (no body). Anything else is cut off mid-line.
        None if data.ends_with(b"\n") => (data.len(), data.len()),
        None => return Err(ParseError::bare("header section not terminated")),
    };
    let raw_head = data.get(..head_end).unwrap_or_default();
    let Ok(head) = std::str::from_utf8(raw_head) else {
        // Not UTF-8: still answered (400) when the head can be read with the bad bytes
        // replaced, never acted on.
        let lossy = String::from_utf8_lossy(raw_head);
        let partial = parse_head(&lossy).ok().map(|(start, headers, _)| Message {
            start,
            headers,
            body: Bytes::new(),
        });
        return Err(ParseError {
            reason: "header section is not UTF-8",
            status: 400,
            partial: partial.map(Box::new),
        });
    };
    let (start_line, headers, version_ok) = parse_head(head)?;
    let mut msg = Message {
        start: start_line,
        headers,
        body: Bytes::new(),
    };
    // A NUL (or another control character but tab) in the head is never relayed, unless it
    // is escaped in a quoted string (a quoted-pair, RFC 3261 §25.1, as RFC 4475's intmeth).
    let control = |b: u8| (b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n')) || b == 0x7f;
    if head
        .as_bytes()
        .windows(2)
        .any(|w| matches!(w, [prev, b] if control(*b) && *prev != b'\\'))
        || head.as_bytes().first().is_some_and(|&b| control(b))
    {
        return Err(ParseError::with_head(
            "control character in the header section",
            msg,
        ));
    }
    if !version_ok {
        return Err(ParseError {
            reason: "SIP version not supported",
            status: 505,
            partial: Some(Box::new(msg)),
        });
    }
    let rest = data.get(body_start..).unwrap_or_default();
    let body = match content_length(&msg.headers) {
        Err(reason) => return Err(ParseError::with_head(reason, msg)),
        Ok(Some(len)) => rest.get(..len),
        Ok(None) => Some(rest),
    };
    match body {
        Some(body) => msg.body = Bytes::copy_from_slice(body),
        None => {
            return Err(ParseError::with_head(
                "Content-Length larger than the body",
                msg,
            ))
        }
    }
    Ok(msg)
}

/// The declared Content-Length: `Ok(None)` when absent, `Err` when malformed or repeated.
pub fn content_length(headers: &Headers) -> Result<Option<usize>, &'static str> {
    let mut it = headers.get_all(&HeaderName::ContentLength);
    let Some(v) = it.next() else { return Ok(None) };
    if it.next().is_some() {
        return Err("more than one Content-Length");
    }
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Content-Length is not a number");
    }
    v.parse::<usize>()
        .map(Some)
        .map_err(|_| "Content-Length out of range")
}

/// Parse the start line and the header lines (unfolding continuation lines). The flag is false
/// when the start line names a SIP version other than 2.0.
pub fn parse_head(head: &str) -> Result<(StartLine, Headers, bool), ParseError> {
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or("");
    let (start, version_ok) = match parse_start_line(first) {
        Ok(x) => x,
        Err(e) => {
            // A malformed Request-Line: read the headers anyway so that a 400 can be sent.
            let method = first.split([' ', '\t']).next().unwrap_or("");
            if method.is_empty()
                || method.starts_with("SIP/")
                || !method.bytes().all(crate::header::is_token_char)
            {
                return Err(e);
            }
            let placeholder = StartLine::Request {
                method: Method::parse(method),
                uri: String::new(),
            };
            let headers = parse_header_lines(lines).unwrap_or_default();
            return Err(ParseError::with_head(
                e.reason,
                Message {
                    start: placeholder,
                    headers,
                    body: Bytes::new(),
                },
            ));
        }
    };
    match parse_header_lines(lines) {
        Ok(headers) => Ok((start, headers, version_ok)),
        Err(reason) => Err(partial_err(reason, &start, &Headers::new())),
    }
}

/// Header lines, continuation lines folded into the header they continue.
fn parse_header_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Headers, &'static str> {
    let mut headers = Headers::new();
    let mut current: Option<(HeaderName, String)> = None;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // Continuation line: folded into the previous header with a single space.
            match current.as_mut() {
                Some((_, v)) => {
                    let cont = line.trim();
                    if !cont.is_empty() {
                        if !v.is_empty() {
                            v.push(' ');
                        }
                        v.push_str(cont);
                    }
                }
                None => return Err("continuation line before any header"),
            }
            continue;
        }
        if let Some((name, value)) = current.take() {
            headers.push(name, value);
        }
        if line.is_empty() {
            // Only the end of a head that ran to the end of the datagram.
            continue;
        }
        let (name, value) = line.split_once(':').ok_or("header line without a colon")?;
        let name = name.trim_end_matches([' ', '\t']);
        if !HeaderName::is_valid_token(name) {
            return Err("invalid header name");
        }
        let value = value.trim_matches([' ', '\t']);
        current = Some((HeaderName::parse(name), value.to_string()));
    }
    if let Some((name, value)) = current.take() {
        headers.push(name, value);
    }
    Ok(headers)
}

fn partial_err(reason: &'static str, start: &StartLine, headers: &Headers) -> ParseError {
    ParseError::with_head(
        reason,
        Message {
            start: start.clone(),
            headers: headers.clone(),
            body: Bytes::new(),
        },
    )
}

fn parse_start_line(line: &str) -> Result<(StartLine, bool), ParseError> {
    // Compared as bytes: the line may hold a multi-byte character anywhere, even across the
    // first eight bytes.
    let status_rest = line
        .as_bytes()
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/2.0 "))
        .and_then(|_| line.get(8..));
    if let Some(rest) = status_rest {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::bare("malformed status code"));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| ParseError::bare("malformed status code"))?;
        if !(100..=699).contains(&status) {
            return Err(ParseError::bare("status code out of range"));
        }
        return Ok((
            StartLine::Response {
                status,
                reason: reason.to_string(),
            },
            true,
        ));
    }
    if line.starts_with("SIP/") {
        return Err(ParseError::bare("unsupported SIP version in status line"));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version, single spaces exactly.
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::bare("malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(crate::header::is_token_char) || uri.is_empty() {
        return Err(ParseError::bare("malformed request line"));
    }
    if !version.starts_with("SIP/") && !version.starts_with("sip/") {
        return Err(ParseError::bare("malformed request line"));
    }
    // Another version still parses, so that the request can be answered 505.
    Ok((
        StartLine::Request {
            method: Method::parse(method),
            uri: uri.to_string(),
        },
        version.eq_ignore_ascii_case("SIP/2.0"),
    ))
}

#[cfg(test)]
mod tests {

    const HEAD: &str =
        "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\
        From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c1\r\n\
        CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n";

    #[test]
    fn a_raw_control_character_is_refused_with_the_head_to_answer() {
        let m = format!("{HEAD}Subject: a\0b\r\nContent-Length: 0\r\n\r\n");
        let e = parse_message(m.as_bytes()).unwrap_err();
        assert_eq!(e.status, 400);
        let head = e.partial.expect("the head, to answer 400");
        assert_eq!(head.call_id(), Some("c1"));
        // Escaped in a quoted string (a quoted-pair) it is legal.
        let m = format!("{HEAD}Subject: \"a\\\0b\"\r\nContent-Length: 0\r\n\r\n");
        assert!(parse_message(m.as_bytes()).is_ok());
    }

    #[test]
    fn a_head_that_is_not_utf8_is_answered_not_dropped() {
        let mut m = format!("{HEAD}Subject: ").into_bytes();
        m.extend_from_slice(&[0xff, 0xfe, b'x']);
        m.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        let e = parse_message(&m).unwrap_err();
        assert_eq!((e.status, e.reason), (400, "header section is not UTF-8"));
        let head = e.partial.expect("the head, to answer 400");
        assert_eq!(head.cseq().map(|(n, _)| n), Some(1));
    }

    use super::*;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.net>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn parses_and_serialises() {
        let m = parse_message(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.call_id(), Some("a84b4c76e66710"));
        assert_eq!(m.cseq(), Some((314159, Method::Invite)));
        assert_eq!(m.from_tag(), Some("1928301774"));
        assert_eq!(&m.body[..], b"v=0\n");
        let again = parse_message(&m.to_bytes()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn unfolds_continuation_lines_and_compact_names() {
        let raw = "OPTIONS sip:x@y SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nSubject: one\r\n  two\r\n\tthree\r\ni: cid\r\nl: 0\r\n\r\n";
        let m = parse_message(raw.as_bytes()).unwrap();
        assert_eq!(m.header(&HeaderName::Subject), Some("one two three"));
        assert_eq!(m.call_id(), Some("cid"));
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK1"));
    }

    #[test]
    fn content_length_rules() {
        let long = INVITE.replace("Content-Length: 4", "Content-Length: 40");
        let e = parse_message(long.as_bytes()).unwrap_err();
        assert!(e.partial.is_some());
        let short = INVITE.replace("Content-Length: 4", "Content-Length: 2");
        assert_eq!(&parse_message(short.as_bytes()).unwrap().body[..], b"v=");
        let neg = INVITE.replace("Content-Length: 4", "Content-Length: -4");
        assert!(parse_message(neg.as_bytes()).is_err());
    }

    #[test]
    fn garbage_and_truncation_do_not_panic() {
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"garbage",
            b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h",
            b"\xff\xfe\r\n\r\n",
            b"SIP/2.0 99999 Bad\r\n\r\n",
        ] {
            assert!(parse_message(bad).is_err());
        }
        for n in 0..INVITE.len() {
            let _ = parse_message(&INVITE.as_bytes()[..n]);
        }
    }

    #[test]
    fn multi_byte_characters_in_the_start_line_are_malformed_not_a_panic() {
        // A two-byte character across byte 8, where a status line's "SIP/2.0 " would end.
        let e = parse_message(b"INVITE \xC3\xA9 sip:x SIP/2.0\r\n\r\n").unwrap_err();
        assert_eq!(e.reason, "malformed request line");
        assert_eq!(e.status, 400);
        let e = parse_message("SIP/2.0é 200 OK\r\n\r\n".as_bytes()).unwrap_err();
        assert_eq!(e.reason, "unsupported SIP version in status line");
        let e = parse_message("SIP/2.0 2é0 OK\r\n\r\n".as_bytes()).unwrap_err();
        assert_eq!(e.reason, "malformed status code");
        let m = parse_message(
            "SIP/2.0 200 Ökay\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(m.reason(), Some("Ökay"));
        // Headers whose name or value holds multi-byte characters.
        let e = parse_message("OPTIONS sip:x SIP/2.0\r\nVé: x\r\n\r\n".as_bytes()).unwrap_err();
        assert_eq!(e.reason, "invalid header name");
        let m = parse_message("OPTIONS sip:x SIP/2.0\r\nSubject: é:ü\r\n\r\n".as_bytes()).unwrap();
        assert_eq!(m.header(&HeaderName::Subject), Some("é:ü"));
    }
}
