//! Header edits a plugin declares once, as it loads, for Sluice to make itself on every message
//! the plugin's interest names, at the plugin's place in the chain, without entering the
//! plugin: a rule set whose edits are fixed text (add, set or remove a header) then costs no
//! guest call per message.
//!
//! The declaration is checked once, with the rules every edit follows ([`crate::edit`]), and
//! more strictly: no From or To (their tags are the dialog's; a plugin edits them in its hook)
//! and no `add` of a header that appears once. What is left can fail on one message only when
//! it would grow past [`MAX_HEADERS`] lines; the edits are then made not at all.
//!
//! The plugin host and the SDK's test harness both check and apply declarations here.

use crate::edit::{check_value, clip_to, editable_name, EditError, MAX_HEADERS};
use crate::header::HeaderName;
use crate::message::Message;

/// Most edits one plugin may declare.
pub const MAX_DECLARED: usize = 32;

/// One declared edit, as a plugin states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Add a line (`name`, `value`) after the last line of that name, or at the end.
    Add(String, String),
    /// Replace every line of that name by one.
    Set(String, String),
    /// Remove every line of that name.
    Remove(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Add(String),
    Set(String),
    Remove,
}

/// A plugin's declared edits, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredEdits {
    ops: Box<[(HeaderName, Op)]>,
    /// How many lines the edits may add at most.
    growth: usize,
}

impl DeclaredEdits {
    /// Check a declaration; the error names the edit Sluice refuses and why.
    pub fn new(edits: &[HeaderEdit]) -> Result<DeclaredEdits, String> {
        if edits.len() > MAX_DECLARED {
            return Err(format!("it declares more than {MAX_DECLARED} header edits"));
        }
        let ops = edits
            .iter()
            .map(|e| check(e).map_err(|why| format!("its declared edit `{}`: {why}", show(e))))
            .collect::<Result<Box<[_]>, String>>()?;
        let growth = ops
            .iter()
            .filter(|(_, op)| !matches!(op, Op::Remove))
            .count();
        Ok(DeclaredEdits { ops, growth })
    }

    /// Make the edits, in order. Refused whole (the message unchanged) when it could grow past
    /// [`MAX_HEADERS`] lines.
    pub fn apply(&self, msg: &mut Message) -> Result<(), EditError> {
        if msg.headers.len().saturating_add(self.growth) > MAX_HEADERS {
            return Err(EditError::TooManyHeaders);
        }
        for (name, op) in self.ops.iter() {
            match op {
                Op::Add(v) => msg.headers.insert_after_last(name.clone(), v.as_str()),
                Op::Set(v) => msg.headers.set(name.clone(), v.as_str()),
                Op::Remove => msg.headers.remove(name),
            }
        }
        Ok(())
    }
}

fn check(e: &HeaderEdit) -> Result<(HeaderName, Op), String> {
    let (name, value) = match e {
        HeaderEdit::Add(n, v) | HeaderEdit::Set(n, v) => (n, Some(v)),
        HeaderEdit::Remove(n) => (n, None),
    };
    let h = editable_name(name).map_err(|e| e.to_string())?;
    if matches!(h, HeaderName::From | HeaderName::To) {
        return Err(format!(
            "{} carries the dialog's tag: edit it in the message hook",
            h.as_str()
        ));
    }
    if let Some(v) = value {
        check_value(&h, v).map_err(|e| e.to_string())?;
    }
    let op = match e {
        HeaderEdit::Add(..) if h.is_single_valued() => {
            return Err(format!("{} appears once: declare set, not add", h.as_str()));
        }
        HeaderEdit::Add(_, v) => Op::Add(v.clone()),
        HeaderEdit::Set(_, v) => Op::Set(v.clone()),
        HeaderEdit::Remove(_) => Op::Remove,
    };
    Ok((h, op))
}

/// An edit as the rule it came from, for messages.
fn show(e: &HeaderEdit) -> String {
    let text = match e {
        HeaderEdit::Add(n, v) => format!("add {n}: {v}"),
        HeaderEdit::Set(n, v) => format!("set {n}: {v}"),
        HeaderEdit::Remove(n) => format!("remove {n}"),
    };
    clip_to(&text, 80)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_message;

    fn invite() -> Message {
        parse_message(
            b"INVITE sip:+15552234567@trunk.example.com SIP/2.0\r\n\
              Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
              From: <sip:100@pbx.example.com>;tag=a\r\n\
              To: <sip:+15552234567@trunk.example.com>\r\n\
              Call-ID: c1\r\n\
              CSeq: 1 INVITE\r\n\
              Max-Forwards: 70\r\n\
              Subject: hello\r\n\
              X-Account: 1\r\n\
              Content-Length: 0\r\n\r\n",
        )
        .unwrap()
    }

    fn edits(e: &[HeaderEdit]) -> DeclaredEdits {
        DeclaredEdits::new(e).unwrap()
    }

    fn add(n: &str, v: &str) -> HeaderEdit {
        HeaderEdit::Add(n.into(), v.into())
    }

    fn set(n: &str, v: &str) -> HeaderEdit {
        HeaderEdit::Set(n.into(), v.into())
    }

    #[test]
    fn declared_edits_do_what_the_same_edits_do_through_a_hook() {
        let declared = [
            add("X-Account", "2"),
            set("User-Agent", "Sluice"),
            HeaderEdit::Remove("subject".into()),
            add("X-New", "yes"),
        ];
        let mut by_declaration = invite();
        edits(&declared).apply(&mut by_declaration).unwrap();
        let mut by_hook = invite();
        crate::edit::add_header(&mut by_hook, "X-Account", "2").unwrap();
        crate::edit::set_header(&mut by_hook, "User-Agent", "Sluice").unwrap();
        crate::edit::remove_header(&mut by_hook, "subject").unwrap();
        crate::edit::add_header(&mut by_hook, "X-New", "yes").unwrap();
        assert_eq!(by_declaration.to_bytes(), by_hook.to_bytes());
        let name = HeaderName::parse("x-account");
        let x: Vec<&str> = by_declaration.headers.get_all(&name).collect();
        assert_eq!(x, ["1", "2"]);
        assert_eq!(by_declaration.header(&HeaderName::Subject), None);
    }

    #[test]
    fn what_could_fail_on_a_message_is_refused_at_declaration() {
        for (e, why) in [
            (add("Via", "SIP/2.0/UDP evil"), "managed"),
            (set("Contact", "<sip:evil>"), "managed"),
            (HeaderEdit::Remove("Call-ID".into()), "managed"),
            (set("To", "<sip:x@y>"), "dialog's tag"),
            (HeaderEdit::Remove("From".into()), "dialog's tag"),
            (add("Expires", "60"), "declare set"),
            (add("Bad Name", "v"), "not a header name"),
            (add("X-A", "a\r\nVia: evil"), "line break"),
        ] {
            let err = DeclaredEdits::new(&[add("X-Ok", "1"), e.clone()]).unwrap_err();
            assert!(err.contains(why), "{e:?}: {err}");
            assert!(err.contains("declared edit `"), "{err}");
        }
        assert!(DeclaredEdits::new(&[set("Expires", "60")]).is_ok());
        let many = vec![add("X-A", "1"); MAX_DECLARED + 1];
        assert!(DeclaredEdits::new(&many).is_err());
    }

    #[test]
    fn a_message_that_would_grow_too_large_is_left_whole() {
        let mut msg = invite();
        while msg.headers.len() < MAX_HEADERS - 1 {
            msg.headers.push(HeaderName::parse("X-Filler"), "x");
        }
        let before = msg.to_bytes();
        let two = edits(&[
            HeaderEdit::Remove("Subject".into()),
            add("X-A", "1"),
            add("X-B", "2"),
        ]);
        assert_eq!(two.apply(&mut msg), Err(EditError::TooManyHeaders));
        assert_eq!(msg.to_bytes(), before);
        edits(&[add("X-A", "1")]).apply(&mut msg).unwrap();
        assert_eq!(msg.headers.len(), MAX_HEADERS);
    }
}
