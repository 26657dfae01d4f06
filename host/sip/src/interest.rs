//! Which hooks a plugin wants called: the `interest` a plugin declares once (the record of the
//! same name in `wit/plugin.wit`), and the messages it covers. Shared by the plugin host and the
//! SDK's test harness, so that a plugin's unit tests skip exactly the calls Sluice skips.

use crate::message::Message;
use crate::method::Method;

/// A plugin's interest. Methods are matched exactly (`INVITE`), `*` matches every method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interest {
    /// Requests of these methods reach the message hook.
    pub requests: Vec<String>,
    /// Responses to requests of these methods (by their CSeq method) reach the message hook.
    pub responses: Vec<String>,
    /// The number hook runs on new calls.
    pub numbers: bool,
    /// The attestation hook runs on outbound calls.
    pub attestation: bool,
}

impl Default for Interest {
    /// Every hook, every message: what a plugin that declares nothing gets.
    fn default() -> Self {
        Interest::all()
    }
}

impl Interest {
    /// Every hook on every message.
    pub fn all() -> Interest {
        Interest {
            requests: vec!["*".into()],
            responses: vec!["*".into()],
            numbers: true,
            attestation: true,
        }
    }

    /// No hook at all; add what the plugin implements.
    pub fn none() -> Interest {
        Interest {
            requests: Vec::new(),
            responses: Vec::new(),
            numbers: false,
            attestation: false,
        }
    }

    /// Also requests of these methods (`"*"` for every method).
    pub fn requests(mut self, methods: &[&str]) -> Interest {
        self.requests.extend(methods.iter().map(|m| m.to_string()));
        self
    }

    /// Also responses to requests of these methods (`"*"` for every method).
    pub fn responses(mut self, methods: &[&str]) -> Interest {
        self.responses.extend(methods.iter().map(|m| m.to_string()));
        self
    }

    /// Also the number hook.
    pub fn numbers(mut self) -> Interest {
        self.numbers = true;
        self
    }

    /// Also the attestation hook.
    pub fn attestation(mut self) -> Interest {
        self.attestation = true;
        self
    }

    /// Whether the message hook runs for `msg`.
    pub fn wants(&self, msg: &Message) -> bool {
        self.wants_asked(&Asked::of(msg))
    }

    /// [`Interest::wants`] of a message read once with [`Asked::of`] (a chain asks each of its
    /// plugins about the same message).
    pub fn wants_asked(&self, asked: &Asked) -> bool {
        match asked {
            Asked::Request(m) => covers(&self.requests, m.as_str()),
            Asked::Response(m) => m
                .as_ref()
                .is_some_and(|m| covers(&self.responses, m.as_str())),
        }
    }

    /// Whether the message hook runs for any message.
    pub fn wants_messages(&self) -> bool {
        !self.requests.is_empty() || !self.responses.is_empty()
    }
}

/// What an interest is asked of a message: a request's method, or the method a response
/// answers (its CSeq's; `None` when it has no readable CSeq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    Request(Method),
    Response(Option<Method>),
}

impl Asked {
    pub fn of(msg: &Message) -> Asked {
        match msg.method() {
            Some(m) => Asked::Request(m.clone()),
            None => Asked::Response(msg.cseq().map(|(_, m)| m)),
        }
    }
}

fn covers(methods: &[String], method: &str) -> bool {
    methods.iter().any(|m| m == "*" || m == method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_message;

    #[test]
    fn requests_by_method_responses_by_cseq_method() {
        let invite = parse_message(b"INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
        let bye = parse_message(b"BYE sip:a@b SIP/2.0\r\nCSeq: 2 BYE\r\n\r\n").unwrap();
        let ringing = parse_message(b"SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
        let i = Interest::none().requests(&["INVITE"]);
        assert!(i.wants(&invite) && !i.wants(&bye) && !i.wants(&ringing));
        let i = Interest::none().responses(&["*"]);
        assert!(!i.wants(&invite) && i.wants(&ringing));
        assert!(Interest::all().wants(&bye));
        assert!(!Interest::none().numbers().wants_messages());
    }
}
