//! Structured views of header values: Via, name-addr (From/To/Contact/Route), CSeq, SIP URIs and
//! their parameters. Views borrow from the header text; nothing is allocated to read them.

use crate::method::Method;

/// Split `s` at the first `sep` outside double quotes (and outside angle brackets when `angles`):
/// the part before the separator, and what follows it (`None` when there is no separator).
fn split_first_unquoted(s: &str, sep: u8, angles: bool) -> (&str, Option<&str>) {
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quotes => escaped = true,
            b'"' => in_quotes = !in_quotes,
            b'<' if angles && !in_quotes => in_angle = true,
            b'>' if angles && !in_quotes => in_angle = false,
            _ if b == sep && !in_quotes && !in_angle => {
                // `sep` is ASCII, so `i` is a character boundary.
                if let Some((head, tail)) = s.split_at_checked(i) {
                    return (head, tail.get(1..));
                }
            }
            _ => {}
        }
    }
    (s, None)
}

/// Split a list-valued header on commas that are not inside quotes or angle brackets.
pub fn split_list(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        while let Some(r) = rest {
            let (part, tail) = split_first_unquoted(r, b',', true);
            rest = tail;
            let part = part.trim();
            if !part.is_empty() {
                return Some(part);
            }
        }
        None
    })
}

/// Iterate `;name[=value]` parameters. Values keep their quotes.
pub fn params(s: &str) -> impl Iterator<Item = (&str, &str)> {
    split_unquoted(s, b';').filter_map(|p| {
        let p = p.trim();
        if p.is_empty() {
            return None;
        }
        Some(match p.split_once('=') {
            Some((name, value)) => (name.trim(), value.trim()),
            None => (p, ""),
        })
    })
}

/// Find a parameter by case-insensitive name; a flag parameter yields `""`.
pub fn param<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    params(s)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Split on `sep` outside double quotes. Every part is yielded, empty ones included.
pub fn split_unquoted(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        let (part, tail) = split_first_unquoted(r, sep, false);
        rest = tail;
        Some(part)
    })
}

/// Split `s` before the first character that matches, keeping that character in the second part.
fn split_before(s: &str, pat: impl FnMut(char) -> bool) -> (&str, &str) {
    s.find(pat)
        .and_then(|i| s.split_at_checked(i))
        .unwrap_or((s, ""))
}

/// One Via element: `SIP/2.0/UDP host[:port];params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    pub version: &'a str,
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: &'a str,
}

impl<'a> Via<'a> {
    pub fn parse(v: &'a str) -> Option<Via<'a>> {
        // sent-protocol: name / version / transport, LWS allowed around the slashes.
        let (name, rest) = v.trim().split_once('/')?;
        if !name.trim().eq_ignore_ascii_case("SIP") {
            return None;
        }
        let (version, rest) = rest.trim_start().split_once('/')?;
        let version = version.trim();
        let (transport, rest) = split_before(rest.trim_start(), |c| c.is_ascii_whitespace());
        if transport.is_empty() || !transport.bytes().all(crate::header::is_token_char) {
            return None;
        }
        let (sent_by, params) = split_before(rest.trim_start(), |c| c == ';');
        let (host, port) = split_host_port(sent_by.trim())?;
        if !is_valid_host(host) {
            return None;
        }
        Some(Via {
            version,
            transport,
            host,
            port,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<&'a str> {
        param(self.params, name)
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.param("branch")
    }
}

/// `host[:port]`, with IPv6 references in brackets. The port must be a number when present.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.starts_with('[') {
        // The host keeps its brackets: split just after the `]`.
        let close = s.find(']')?.checked_add(1)?;
        let (host, rest) = s.split_at_checked(close)?;
        if rest.is_empty() {
            return Some((host, None));
        }
        let port = rest.strip_prefix(':')?.trim();
        return Some((host, Some(port.parse().ok()?)));
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            let host = host.trim_end();
            if host.contains(':') {
                // A bare IPv6 address without brackets is not a valid sent-by/hostport.
                return None;
            }
            Some((host, Some(port.trim_start().parse().ok()?)))
        }
        None => Some((s, None)),
    }
}

/// A hostname, IPv4 address or bracketed IPv6 reference (RFC 3261 §25.1, RFC 5118).
/// Inside brackets, hex digits, colons and dots are accepted even where RFC 3261's ABNF bug
/// produces three colons in a row (RFC 5118 §4.10: be liberal).
pub fn is_valid_host(h: &str) -> bool {
    if let Some(inner) = h.strip_prefix('[') {
        return inner.strip_suffix(']').is_some_and(|a| {
            a.contains(':')
                && a.bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        });
    }
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !h.starts_with('.')
        && !h.starts_with('-')
}

/// A name-addr or addr-spec with header parameters: From, To, Contact, Route, Record-Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub display: Option<&'a str>,
    pub uri: &'a str,
    /// Header parameters after the URI, starting with `;` (or empty).
    pub params: &'a str,
    /// Whether the URI was enclosed in angle brackets.
    pub bracketed: bool,
}

impl<'a> NameAddr<'a> {
    pub fn parse(v: &'a str) -> Option<NameAddr<'a>> {
        let v = v.trim();
        // A '<' outside a quoted display name starts a bracketed URI.
        match split_first_unquoted(v, b'<', false) {
            (display, Some(after)) => {
                let (uri, params) = after.split_once('>')?;
                let display = display.trim();
                if !display.is_empty() && !is_valid_display_name(display) {
                    return None;
                }
                // No whitespace inside the brackets (RFC 3261 §25.1: LAQUOT addr-spec RAQUOT).
                if uri.is_empty() || uri.contains(|c: char| c.is_whitespace()) {
                    return None;
                }
                let params = params.trim();
                if !params.is_empty() && !params.starts_with(';') {
                    return None;
                }
                Some(NameAddr {
                    display: (!display.is_empty()).then_some(display),
                    uri,
                    params,
                    bracketed: true,
                })
            }
            (_, None) => {
                // Without brackets there is no display name: no quotes (balanced or not).
                if v.contains('"') || v.contains('>') {
                    return None;
                }
                let (uri, params) = split_before(v, |c| c == ';');
                let uri = uri.trim();
                // Without angle brackets a URI may carry no headers (`?`), and no whitespace or
                // commas (RFC 3261 §20.10).
                if uri.is_empty()
                    || uri.contains(|c: char| c.is_whitespace() || c == ',' || c == '?')
                {
                    return None;
                }
                Some(NameAddr {
                    display: None,
                    uri,
                    params,
                    bracketed: false,
                })
            }
        }
    }

    pub fn param(&self, name: &str) -> Option<&'a str> {
        param(self.params, name)
    }
}

/// display-name = *(token LWS) / quoted-string
fn is_valid_display_name(d: &str) -> bool {
    if let Some(inner) = d.strip_prefix('"') {
        let Some(inner) = inner.strip_suffix('"') else {
            return false;
        };
        // No unescaped quote inside, and no escape left open at the end.
        let mut escaped = false;
        for b in inner.bytes() {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => return false,
                _ => {}
            }
        }
        return !escaped;
    }
    d.split_ascii_whitespace()
        .all(|w| w.bytes().all(crate::header::is_token_char))
}

pub fn parse_cseq(v: &str) -> Option<(u32, Method)> {
    let mut it = v.split_ascii_whitespace();
    let n = it.next()?;
    let m = it.next()?;
    if it.next().is_some() || !m.bytes().all(crate::header::is_token_char) {
        return None;
    }
    // RFC 3261 §8.1.1.5: the sequence number must be below 2**31.
    let n: u32 = n.parse().ok()?;
    if n >= 1 << 31 {
        return None;
    }
    Some((n, Method::parse(m)))
}

/// A SIP or SIPS URI, or any other absolute URI (`scheme` tells which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: &'a str,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
    /// URI parameters starting with `;` (or empty).
    pub params: &'a str,
    /// Headers starting with `?` (or empty).
    pub headers: &'a str,
}

impl<'a> Uri<'a> {
    /// Parse a `sip:`/`sips:` URI. Other schemes return only `scheme` and the rest in `host`.
    pub fn parse(s: &'a str) -> Option<Uri<'a>> {
        let (scheme, rest) = s.split_once(':')?;
        if !scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return None;
        }
        if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
            return Some(Uri {
                scheme,
                user: None,
                password: None,
                host: rest,
                port: None,
                params: "",
                headers: "",
            });
        }
        if rest.contains(|c: char| c.is_ascii_whitespace() || c.is_ascii_control()) {
            return None;
        }
        let (userinfo, hostpart) = match rest.rsplit_once('@') {
            Some((ui, hp)) => (Some(ui), hp),
            None => (None, rest),
        };
        let (user, password) = match userinfo.map(|ui| (ui, ui.split_once(':'))) {
            Some((_, Some((u, p)))) => (Some(u), Some(p)),
            Some((ui, None)) => (Some(ui), None),
            None => (None, None),
        };
        if let Some(u) = user {
            if u.is_empty() || !u.bytes().all(is_user_char) || !valid_escapes(u) {
                return None;
            }
        }
        let (hostport, tail) = split_before(hostpart, |c| c == ';' || c == '?');
        let (host, port) = split_host_port(hostport)?;
        if !is_valid_host(host) {
            return None;
        }
        let (params, headers) = split_before(tail, |c| c == '?');
        if !valid_escapes(params) || !valid_escapes(headers) {
            return None;
        }
        Some(Uri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
    }

    pub fn param(&self, name: &str) -> Option<&'a str> {
        param(self.params, name)
    }
}

/// unreserved / escaped / user-unreserved (RFC 3261 §25.1), plus `:` for the password part.
fn is_user_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,;?/".contains(&b) || b >= 0x80
}

/// A host as it is compared: an IP address in its canonical form without brackets
/// (`[2001:DB8:0::1]` → `2001:db8::1`), a name in lower case.
pub fn canonical_host(host: &str) -> String {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host.to_ascii_lowercase(),
    }
}

/// `user` written as the user part of a SIP URI (RFC 3261 §25.1): every byte that is neither
/// unreserved nor user-unreserved is `%`-escaped (`ann@corp.example` → `ann%40corp.example`).
/// What needs no escape is written as it is.
pub fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            for nibble in [b >> 4, b & 0x0f] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
    out
}

/// Every `%` starts a two-hex-digit escape.
fn valid_escapes(s: &str) -> bool {
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%'
            && !(bytes.next().is_some_and(|h| h.is_ascii_hexdigit())
                && bytes.next().is_some_and(|h| h.is_ascii_hexdigit()))
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_in_their_canonical_form() {
        assert_eq!(canonical_host("[2001:DB8:0::1]"), "2001:db8::1");
        assert_eq!(canonical_host("2001:db8::1"), "2001:db8::1");
        assert_eq!(canonical_host("192.0.2.1"), "192.0.2.1");
        assert_eq!(canonical_host("Globex.Example"), "globex.example");
    }

    #[test]
    fn a_user_is_escaped_where_a_uri_needs_it() {
        assert_eq!(escape_user("acct1"), "acct1");
        assert_eq!(escape_user("+1555;x=1"), "+1555;x=1");
        assert_eq!(escape_user("ann@corp.example"), "ann%40corp.example");
        assert_eq!(escape_user("a b:c%d\"é"), "a%20b%3Ac%25d%22%C3%A9");
        let uri = format!("sip:{}@voip.example", escape_user("ann@corp example"));
        let u = Uri::parse(&uri).expect("a valid URI");
        assert_eq!(
            (u.user, u.host),
            (Some("ann%40corp%20example"), "voip.example")
        );
    }

    #[test]
    fn split_list_respects_quotes_and_brackets() {
        let v: Vec<_> = split_list(r#""a, b" <sip:x@y;p=1,2>, <sip:z@w>"#).collect();
        assert_eq!(v, vec![r#""a, b" <sip:x@y;p=1,2>"#, "<sip:z@w>"]);
    }

    #[test]
    fn via_with_lws() {
        let v = Via::parse("SIP  /   2.0  / UDP  192.0.2.1:5070 ;branch=z9hG4bK1;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.1");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some("z9hG4bK1"));
        assert_eq!(v.param("rport"), Some(""));
        let v6 = Via::parse("SIP/2.0/TCP [2001:db8::9:1];branch=z9hG4bKas3").unwrap();
        assert_eq!(v6.host, "[2001:db8::9:1]");
        assert!(Via::parse("SIP/2.0/UDP 2001:db8::9:1").is_none());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(r#""Bob \"B\"" <sip:bob@b.example;lr>;tag=abc"#).unwrap();
        assert_eq!(n.uri, "sip:bob@b.example;lr");
        assert_eq!(n.param("tag"), Some("abc"));
        let n = NameAddr::parse("sip:alice@a.example;tag=1").unwrap();
        assert_eq!(n.uri, "sip:alice@a.example");
        assert_eq!(n.param("tag"), Some("1"));
        assert!(NameAddr::parse(r#""unbalanced <sip:x@y>"#).is_none());
    }

    #[test]
    fn cseq_limits() {
        assert_eq!(parse_cseq("1 INVITE"), Some((1, Method::Invite)));
        assert!(parse_cseq("36893488147419103232 INVITE").is_none());
        assert!(parse_cseq("2147483648 INVITE").is_none());
        assert!(parse_cseq("1").is_none());
    }

    #[test]
    fn uri_parts() {
        let u = Uri::parse("sip:+1234@[::1]:5070;transport=tcp?h=v").unwrap();
        assert_eq!(u.user, Some("+1234"));
        assert_eq!(u.host, "[::1]");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("transport"), Some("tcp"));
        assert!(Uri::parse("sip:user@host%zz").is_none());
        assert!(Uri::parse("sip:us%2er@host").is_some());
        assert_eq!(Uri::parse("tel:+1234").unwrap().scheme, "tel");
    }
}
