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

/// A set of methods, one bit per method Sluice knows and one for all the others together: the
/// interests of a whole chain folded once, so that a message no plugin of the chain takes is
/// passed over with a bit test. For a method Sluice knows the answer is exact; for any other
/// it is "maybe" (the [`Interest`]s then decide).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MethodSet(u16);

impl MethodSet {
    /// The bit of every method Sluice does not name.
    const OTHER: u16 = 1 << 14;

    fn bit(method: &Method) -> u16 {
        match method {
            Method::Invite => 1,
            Method::Ack => 1 << 1,
            Method::Bye => 1 << 2,
            Method::Cancel => 1 << 3,
            Method::Options => 1 << 4,
            Method::Register => 1 << 5,
            Method::Info => 1 << 6,
            Method::Update => 1 << 7,
            Method::Prack => 1 << 8,
            Method::Subscribe => 1 << 9,
            Method::Notify => 1 << 10,
            Method::Refer => 1 << 11,
            Method::Message => 1 << 12,
            Method::Publish => 1 << 13,
            Method::Other(_) => Self::OTHER,
        }
    }

    /// The methods named in an interest's list (`*`: all of them).
    pub fn of(methods: &[String]) -> MethodSet {
        MethodSet(methods.iter().fold(0, |set, m| {
            if m == "*" {
                u16::MAX
            } else {
                set | Self::bit(&Method::parse(m))
            }
        }))
    }

    pub fn union(self, other: MethodSet) -> MethodSet {
        MethodSet(self.0 | other.0)
    }

    pub fn may_contain(self, method: &Method) -> bool {
        self.0 & Self::bit(method) != 0
    }
}

/// What a chain of plugins may take: the union of its plugins' interests in messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interests {
    pub requests: MethodSet,
    pub responses: MethodSet,
}

impl Interests {
    /// Add a plugin's interest.
    pub fn add(&mut self, interest: &Interest) {
        self.requests = self.requests.union(MethodSet::of(&interest.requests));
        self.responses = self.responses.union(MethodSet::of(&interest.responses));
    }

    /// Whether a plugin of the chain may take `msg`: `false` is certain. Reads a response's
    /// CSeq only when the chain takes some response.
    pub fn may_want(&self, msg: &Message) -> bool {
        match msg.method() {
            Some(m) => self.requests.may_contain(m),
            None => {
                self.responses != MethodSet::default()
                    && msg
                        .cseq()
                        .is_some_and(|(_, m)| self.responses.may_contain(&m))
            }
        }
    }

    /// [`Interests::may_want`] of a message read once with [`Asked::of`].
    pub fn may_want_asked(&self, asked: &Asked) -> bool {
        match asked {
            Asked::Request(m) => self.requests.may_contain(m),
            Asked::Response(m) => m.as_ref().is_some_and(|m| self.responses.may_contain(m)),
        }
    }

    /// Whether `interest`, folded alone into these sets, takes the message: the same answer
    /// as [`Interest::wants_asked`], with its lists of names read only for a method Sluice
    /// does not name.
    pub fn wants_asked(&self, interest: &Interest, asked: &Asked) -> bool {
        let named = match asked {
            Asked::Request(m) | Asked::Response(Some(m)) => !matches!(m, Method::Other(_)),
            Asked::Response(None) => true,
        };
        self.may_want_asked(asked) && (named || interest.wants_asked(asked))
    }
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

    #[test]
    fn a_chain_s_interests_fold_into_method_sets() {
        let invite = parse_message(b"INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
        let bye = parse_message(b"BYE sip:a@b SIP/2.0\r\nCSeq: 2 BYE\r\n\r\n").unwrap();
        let foo = parse_message(b"FOO sip:a@b SIP/2.0\r\nCSeq: 2 FOO\r\n\r\n").unwrap();
        let bar = parse_message(b"BAR sip:a@b SIP/2.0\r\nCSeq: 2 BAR\r\n\r\n").unwrap();
        let ringing = parse_message(b"SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
        let bye_ok = parse_message(b"SIP/2.0 200 OK\r\nCSeq: 2 BYE\r\n\r\n").unwrap();
        let no_cseq = parse_message(b"SIP/2.0 200 OK\r\n\r\n").unwrap();
        let foo_ok = parse_message(b"SIP/2.0 200 OK\r\nCSeq: 2 FOO\r\n\r\n").unwrap();
        let all = [
            &invite, &bye, &foo, &bar, &ringing, &bye_ok, &no_cseq, &foo_ok,
        ];
        let chains = [
            vec![],
            vec![Interest::none().numbers()],
            vec![Interest::none().requests(&["INVITE"])],
            vec![
                Interest::none().requests(&["BYE"]),
                Interest::none().responses(&["INVITE"]),
            ],
            vec![Interest::none().requests(&["FOO"])],
            vec![Interest::none().responses(&["FOO", "BYE"])],
            vec![Interest::none().responses(&["*"])],
            vec![Interest::all()],
        ];
        for chain in &chains {
            let mut folded = Interests::default();
            chain.iter().for_each(|i| folded.add(i));
            for msg in all {
                let wanted = chain.iter().any(|i| i.wants(msg));
                // Never a miss; exact for the methods Sluice names.
                assert!(!wanted || folded.may_want(msg), "{chain:?} {msg:?}");
                let named = !matches!(msg.method(), Some(Method::Other(_)));
                if named {
                    assert_eq!(folded.may_want(msg), wanted, "{chain:?} {msg:?}");
                }
                // Asked once or read from the message: the same answer.
                let asked = Asked::of(msg);
                assert_eq!(folded.may_want_asked(&asked), folded.may_want(msg));
                // One plugin's interest folded alone answers exactly, for every method.
                for i in chain {
                    let mut one = Interests::default();
                    one.add(i);
                    assert_eq!(one.wants_asked(i, &asked), i.wants(msg), "{i:?} {msg:?}");
                }
            }
        }
    }
}
