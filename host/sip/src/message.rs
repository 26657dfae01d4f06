//! The in-memory SIP message: start line, ordered headers, body; and its serialisation.

use crate::header::HeaderName;
use crate::method::Method;
use bytes::Bytes;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: String },
    Response { status: u16, reason: String },
}

#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: String,
}

impl Clone for Header {
    fn clone(&self) -> Self {
        Header {
            name: self.name.clone(),
            value: self.value.clone(),
        }
    }

    /// Reuses the value's buffer: a message cloned into one that was used before allocates
    /// nothing (the plugin host keeps such a copy to undo a failed plugin's edits).
    fn clone_from(&mut self, source: &Self) {
        self.name.clone_from(&source.name);
        self.value.clone_from(&source.value);
    }
}

/// Headers in wire order. Lookups are linear: SIP messages carry a dozen or two headers, where a
/// scan beats hashing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Clone for Headers {
    fn clone(&self) -> Self {
        Headers(self.0.clone())
    }

    fn clone_from(&mut self, source: &Self) {
        // Vec::clone_from clones element by element into the existing ones.
        self.0.clone_from(&source.0);
    }
}

impl Headers {
    pub fn new() -> Self {
        Headers(Vec::with_capacity(16))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Header> {
        self.0.iter_mut()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// First value of a header.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0
            .iter()
            .find(|h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Every header line with this name, in order (a line may still hold a comma list).
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Every element of a list-valued header (lines split on top-level commas).
    pub fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name).flat_map(crate::fields::split_list)
    }

    pub fn count(&self, name: &HeaderName) -> usize {
        self.0.iter().filter(|h| &h.name == name).count()
    }

    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Insert before every other header (used for Via).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.insert(
            0,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Replace every line of `name` by one with `value`, keeping the position of the first.
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let mut value = Some(value.into());
        self.0.retain_mut(|h| {
            if h.name != name {
                return true;
            }
            match value.take() {
                Some(v) => {
                    h.value = v;
                    true
                }
                None => false,
            }
        });
        if let Some(v) = value {
            self.push(name, v);
        }
    }

    /// Insert after the last line of the same name, or at the end.
    pub fn insert_after_last(&mut self, name: HeaderName, value: impl Into<String>) {
        let at = self
            .0
            .iter()
            .rposition(|h| h.name == name)
            .map_or(self.0.len(), |i| i.saturating_add(1));
        self.0.insert(
            at,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|h| &h.name != name);
    }

    pub fn retain(&mut self, f: impl FnMut(&Header) -> bool) {
        self.0.retain(f)
    }

    /// Remove the first element of a list-valued header (the top Via of a response).
    pub fn pop_first_value(&mut self, name: &HeaderName) -> Option<String> {
        let i = self.0.iter().position(|h| &h.name == name)?;
        let header = self.0.get_mut(i)?;
        let mut parts = crate::fields::split_list(&header.value);
        let first = parts.next()?.to_string();
        let rest = parts.collect::<Vec<&str>>().join(", ");
        if rest.is_empty() {
            self.0.remove(i);
        } else {
            header.value = rest;
        }
        Some(first)
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A parsed SIP message.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Headers,
    pub body: Bytes,
}

impl Clone for Message {
    fn clone(&self) -> Self {
        Message {
            start: self.start.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }

    fn clone_from(&mut self, source: &Self) {
        match (&mut self.start, &source.start) {
            (StartLine::Request { method, uri }, StartLine::Request { method: m, uri: u }) => {
                method.clone_from(m);
                uri.clone_from(u);
            }
            (
                StartLine::Response { status, reason },
                StartLine::Response {
                    status: s,
                    reason: r,
                },
            ) => {
                *status = *s;
                reason.clone_from(r);
            }
            (start, other) => start.clone_from(other),
        }
        self.headers.clone_from(&source.headers);
        self.body.clone_from(&source.body);
    }
}

/// An empty response line and no headers; allocates nothing (a placeholder while a message is
/// lent out).
impl Default for Message {
    fn default() -> Self {
        Message {
            start: StartLine::Response {
                status: 0,
                reason: String::new(),
            },
            headers: Headers::default(),
            body: Bytes::new(),
        }
    }
}

impl Message {
    pub fn request(method: Method, uri: impl Into<String>) -> Message {
        Message {
            start: StartLine::Request {
                method,
                uri: uri.into(),
            },
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    pub fn response(status: u16, reason: impl Into<String>) -> Message {
        Message {
            start: StartLine::Response {
                status,
                reason: reason.into(),
            },
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers.get(name)
    }

    pub fn call_id(&self) -> Option<&str> {
        self.headers.get(&HeaderName::CallId)
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, Method)> {
        crate::fields::parse_cseq(self.headers.get(&HeaderName::CSeq)?)
    }

    /// The topmost Via element.
    pub fn top_via(&self) -> Option<crate::fields::Via<'_>> {
        let v = self.headers.values(&HeaderName::Via).next()?;
        crate::fields::Via::parse(v)
    }

    pub fn from_tag(&self) -> Option<&str> {
        crate::fields::NameAddr::parse(self.headers.get(&HeaderName::From)?)?.param("tag")
    }

    pub fn to_tag(&self) -> Option<&str> {
        crate::fields::NameAddr::parse(self.headers.get(&HeaderName::To)?)?.param("tag")
    }

    /// Whether this is a request outside any dialog: no tag in its To (RFC 3261 §12), such as
    /// the INVITE that starts a call. False for a response.
    pub fn is_initial(&self) -> bool {
        self.is_request() && self.to_tag().is_none()
    }

    /// The URI of the first Contact (where the sender wants the next request of a dialog).
    pub fn contact_uri(&self) -> Option<&str> {
        let first = self.headers.values(&HeaderName::Contact).next()?;
        crate::fields::NameAddr::parse(first).map(|n| n.uri)
    }

    /// Max-Forwards, when present and numeric.
    pub fn max_forwards(&self) -> Option<u32> {
        self.headers
            .get(&HeaderName::MaxForwards)?
            .trim()
            .parse()
            .ok()
    }

    /// Serialise, with a Content-Length that matches the body.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.body.len().saturating_add(512));
        match &self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(method.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(uri.as_bytes());
                out.extend_from_slice(b" SIP/2.0\r\n");
            }
            StartLine::Response { status, reason } => {
                out.extend_from_slice(b"SIP/2.0 ");
                out.extend_from_slice(itoa::Buffer::new().format(*status).as_bytes());
                out.push(b' ');
                out.extend_from_slice(reason.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        for h in &self.headers {
            if h.name == HeaderName::ContentLength {
                continue;
            }
            out.extend_from_slice(h.name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
    }

    /// The length [`Message::write_to`] writes, without writing it.
    pub fn encoded_len(&self) -> usize {
        let sum = |parts: &[usize]| parts.iter().fold(0usize, |a, &b| a.saturating_add(b));
        let start = match &self.start {
            StartLine::Request { method, uri } => sum(&[method.as_str().len(), uri.len(), 11]),
            StartLine::Response { status, reason } => {
                sum(&[itoa::Buffer::new().format(*status).len(), reason.len(), 11])
            }
        };
        let headers = self
            .headers
            .iter()
            .filter(|h| h.name != HeaderName::ContentLength)
            .map(|h| sum(&[h.name.as_str().len(), h.value.len(), 4]))
            .fold(0usize, usize::saturating_add);
        let length = itoa::Buffer::new().format(self.body.len()).len();
        sum(&[start, headers, 16, length, 4, self.body.len()])
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// The standard reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Progress",
            2 => "OK",
            3 => "Redirected",
            4 => "Request Failed",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

#[cfg(test)]
mod encoded_len_tests {
    use crate::parse_message;

    #[test]
    fn encoded_len_is_what_write_to_writes() {
        for text in [
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 3\r\n\r\nabc",
            "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n",
        ] {
            let m = parse_message(text.as_bytes()).unwrap();
            assert_eq!(m.encoded_len(), m.to_bytes().len(), "{text}");
        }
    }
}
