//! The input the engine task is handling, kept so that a panic (a bug: input handling is meant
//! to be panic-free) can say which message caused it. Keeping it costs a copy into a buffer
//! that is reused (no allocation once warm); nothing is formatted unless a panic asks.

use sluice_transaction::Flow;
use std::cell::RefCell;
use std::fmt::Write;

struct Current {
    flow: Option<Flow>,
    data: Vec<u8>,
}

thread_local! {
    static CURRENT: RefCell<Current> = const {
        RefCell::new(Current {
            flow: None,
            data: Vec::new(),
        })
    };
}

/// Clears the current input when dropped (also when unwinding).
pub(crate) struct Handling(());

impl Drop for Handling {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.try_borrow_mut().map(|mut c| c.flow = None));
    }
}

/// Record `data` from `flow` as the input being handled until the guard is dropped.
pub(crate) fn handling(flow: Flow, data: &[u8]) -> Handling {
    let _ = CURRENT.try_with(|c| {
        c.try_borrow_mut().map(|mut c| {
            c.flow = Some(flow);
            c.data.clear();
            c.data.extend_from_slice(data);
        })
    });
    Handling(())
}

/// Debug builds only, for the test of what a panic does: with `SLUICE_PANIC_TEST=1` in the
/// environment, a datagram starting with `SLUICE-PANIC-TEST` panics the engine task.
#[cfg(debug_assertions)]
pub(crate) fn panic_if_asked(data: &[u8]) {
    static ARMED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let armed =
        *ARMED.get_or_init(|| std::env::var_os("SLUICE_PANIC_TEST").is_some_and(|v| v == "1"));
    if armed && data.starts_with(b"SLUICE-PANIC-TEST") {
        panic!("panic requested by the test datagram");
    }
}

/// The input this thread is handling, redacted for a log line: where it came from, its length,
/// and its first bytes with every digit masked (numbers are personal data) and every byte
/// outside printable ASCII escaped (so a multi-byte character that broke something shows).
pub fn describe_current_input() -> Option<String> {
    CURRENT
        .try_with(|c| {
            let c = c.try_borrow().ok()?;
            let flow = c.flow?;
            Some(format!(
                "{} bytes over {} from {}: {}",
                c.data.len(),
                flow.transport,
                flow.remote,
                redact(&c.data, 512)
            ))
        })
        .ok()
        .flatten()
}

/// At most `max` bytes of `data`, digits masked as `#`, CR and LF as `\r` and `\n`, and any
/// other byte outside printable ASCII as `\xNN`.
pub fn redact(data: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(max.min(data.len()).saturating_mul(2));
    for &b in data.iter().take(max) {
        match b {
            b'0'..=b'9' => out.push('#'),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
    if data.len() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_transaction::Transport;

    #[test]
    fn redaction_masks_numbers_and_escapes_bytes() {
        assert_eq!(
            redact(b"INVITE \xC3\xA9 sip:+15551234@x SIP/2.0\r\n", 512),
            "INVITE \\xC3\\xA9 sip:+########@x SIP/#.#\\r\\n"
        );
        assert_eq!(redact(b"abcdef", 3), "abc…");
    }

    #[test]
    fn the_current_input_is_known_while_handled_and_forgotten_after() {
        let flow = Flow {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "192.0.2.1:5070".parse().unwrap(),
            conn: None,
        };
        assert_eq!(describe_current_input(), None);
        {
            let _g = handling(flow, b"BYE 1");
            assert_eq!(
                describe_current_input().as_deref(),
                Some("5 bytes over udp from 192.0.2.1:5070: BYE #")
            );
        }
        assert_eq!(describe_current_input(), None);
    }
}
