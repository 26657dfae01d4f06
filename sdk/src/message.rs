//! The message a hook works on. Sluice owns it; a plugin reads and edits it through these
//! methods (on wasm each is a call into the host, without copying the whole message).

use std::fmt;

/// An edit Sluice refused (a managed header, a line break, a malformed URI…). Sluice also
/// cuts the plugin off for the message, as its policy says: treat it as a bug to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError(pub String);

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EditError {}

#[cfg(target_arch = "wasm32")]
type Inner<'a> = &'a crate::__guest::bindings::sluice::plugin::message::SipMessage;

#[cfg(not(target_arch = "wasm32"))]
type Inner<'a> = crate::testing::LocalMessage<'a>;

/// A SIP request or response on its way out of Sluice. Header names are case-insensitive and
/// compact forms work (`f` is `From`).
pub struct Message<'a> {
    inner: Inner<'a>,
}

impl<'a> Message<'a> {
    #[doc(hidden)]
    pub fn from_inner(inner: Inner<'a>) -> Message<'a> {
        Message { inner }
    }

    pub fn is_request(&self) -> bool {
        self.inner.is_request()
    }

    /// The method of a request (`INVITE`, `BYE`…).
    pub fn method(&self) -> Option<String> {
        self.inner.method()
    }

    /// Whether this is a request outside any dialog: no tag in its To yet (RFC 3261 §12), such
    /// as the INVITE that starts a call. False for a response. One call into Sluice, which
    /// reads the To itself.
    pub fn is_initial(&self) -> bool {
        self.inner.is_initial()
    }

    /// Whether this is the INVITE that starts a call (no To tag yet), not a re-INVITE inside
    /// the dialog.
    pub fn is_initial_invite(&self) -> bool {
        self.is_initial() && self.method().as_deref() == Some("INVITE")
    }

    /// The status of a response.
    pub fn status(&self) -> Option<u16> {
        self.inner.status()
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> Option<String> {
        self.inner.reason()
    }

    pub fn request_uri(&self) -> Option<String> {
        self.inner.request_uri()
    }

    /// Replace the Request-URI with a `sip:`, `sips:` or `tel:` URI.
    pub fn set_request_uri(&mut self, uri: &str) -> Result<(), EditError> {
        self.inner.set_request_uri(uri).map_err(EditError)
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.inner.get(name)
    }

    /// Every line of a header, in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.inner.get_all(name)
    }

    /// The names of the headers present, once each, in order.
    pub fn header_names(&self) -> Vec<String> {
        self.inner.header_names()
    }

    /// Replace every line of a header by one (adds it when absent). From and To keep their tag.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), EditError> {
        self.inner.set(name, value).map_err(EditError)
    }

    /// Add a line after the last line of the same name.
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), EditError> {
        self.inner.add(name, value).map_err(EditError)
    }

    /// Remove every line of a header; returns how many there were.
    pub fn remove_header(&mut self, name: &str) -> Result<u32, EditError> {
        self.inner.remove(name).map_err(EditError)
    }

    pub fn body(&self) -> Vec<u8> {
        self.inner.body()
    }

    pub fn content_type(&self) -> Option<String> {
        self.inner.content_type()
    }

    /// Replace the body and its Content-Type; an empty body removes both.
    pub fn set_body(&mut self, content_type: &str, body: &[u8]) -> Result<(), EditError> {
        self.inner.set_body(content_type, body).map_err(EditError)
    }

    /// A header of the message this one was built from (as it arrived on the other leg).
    pub fn original_header(&self, name: &str) -> Option<String> {
        self.inner.original_get(name)
    }

    /// Every line of a header of the original message.
    pub fn original_headers(&self, name: &str) -> Vec<String> {
        self.inner.original_get_all(name)
    }

    /// The Request-URI of the original message.
    pub fn original_request_uri(&self) -> Option<String> {
        self.inner.original_request_uri()
    }

    /// The user part of the Request-URI (or the number of a `tel:` URI).
    pub fn request_uri_user(&self) -> Option<String> {
        self.request_uri()
            .and_then(|u| crate::uri::user(&u).map(str::to_string))
    }

    /// The URI inside a name-addr header (From, To, P-Asserted-Identity…).
    pub fn header_uri(&self, name: &str) -> Option<String> {
        self.header(name)
            .and_then(|v| crate::uri::name_addr_uri(&v).map(str::to_string))
    }

    /// The user part (or `tel:` number) of the URI inside a name-addr header.
    pub fn header_user(&self, name: &str) -> Option<String> {
        self.header_uri(name)
            .and_then(|u| crate::uri::user(&u).map(str::to_string))
    }
}
