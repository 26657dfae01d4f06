//! What the section checks share: a problem with its place, names, and bounded numbers.

use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// A problem found by a section's check: what is wrong, and where when a value can be pointed
/// at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl Problem {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Problem {
        Problem {
            span: Some(span),
            message: message.into(),
        }
    }

    pub fn new(message: impl Into<String>) -> Problem {
        Problem {
            span: None,
            message: message.into(),
        }
    }
}

pub type Checked = Result<(), Problem>;

/// Names of trunks and plugins: letters, digits, `-` and `_`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A name (`what` says of what) that must be [`is_name`].
pub fn check_name(s: &Spanned<String>, what: &str) -> Checked {
    let n = s.get_ref();
    if is_name(n) {
        Ok(())
    } else {
        Err(Problem::at(
            s.span(),
            format!("{what} `{n}` must be letters, digits, `-` or `_`"),
        ))
    }
}

/// A host name (ASCII: an internationalised one in its `xn--` form), an IPv4 address, or an
/// IPv6 address, bracketed or not (brackets hold only IPv6; no zone identifier).
pub fn is_host(v: &str) -> bool {
    let ip = match v.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        Some(inner) => inner.parse::<std::net::Ipv6Addr>().is_ok(),
        None => v.parse::<std::net::IpAddr>().is_ok(),
    };
    let name = !v.is_empty()
        && v.len() <= 253
        && !v.starts_with(['.', '-'])
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ip || name
}

/// A host to send to (`what` says which): a host name, an IPv4 address, or an IPv6 address
/// (bracketed or not). Not a URI, and no port or transport in it: those have keys of their own.
pub fn check_host(h: &Spanned<String>, what: &str) -> Checked {
    let v = h.get_ref();
    if v.trim().is_empty() {
        return Err(Problem::at(h.span(), format!("{what} is empty")));
    }
    if is_host(v) {
        return Ok(());
    }
    Err(Problem::at(
        h.span(),
        format!(
            "{what} `{v}` is not a host name or IP address (a port goes in `port`, a transport \
             in `transport`)"
        ),
    ))
}

/// `host`, `host:port`, `[IPv6]` or `[IPv6]:port`, as in a SIP URI (port 1-65535). A bare
/// IPv6 address is not: a port could not follow it.
pub fn is_host_port(v: &str) -> bool {
    let (host, port) = match v.strip_prefix('[') {
        Some(rest) => {
            let Some((inner, after)) = rest.split_once(']') else {
                return false;
            };
            if inner.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            let port = match after {
                "" => None,
                a => match a.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return false,
                },
            };
            (None, port)
        }
        None => match v.split_once(':') {
            Some((_, p)) if p.contains(':') => return false,
            Some((host, p)) => (Some(host), Some(p)),
            None => (Some(v), None),
        },
    };
    host.is_none_or(is_host) && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0))
}

/// A host with an optional port (`what` says which): see [`is_host_port`].
pub fn check_host_port(h: &Spanned<String>, what: &str) -> Checked {
    let v = h.get_ref();
    if is_host_port(v) {
        return Ok(());
    }
    Err(Problem::at(
        h.span(),
        format!("{what} `{v}` is not host[:port] or [IPv6][:port]"),
    ))
}

/// `key` is `value`, which must lie in `min..=max`.
pub fn in_range<T: PartialOrd + fmt::Display>(key: &str, value: T, min: T, max: T) -> Checked {
    if value < min || value > max {
        return Err(Problem::new(format!(
            "{key} is {value}; it must be {min} to {max}"
        )));
    }
    Ok(())
}
