//! Stream framing for connection-oriented transports (RFC 3261 §18.3): messages are cut by
//! Content-Length, which is mandatory on streams; partial and coalesced reads are handled;
//! CRLF keep-alives (RFC 5626 §3.5.1) are recognised.

use crate::parse::find_head_end;
use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete message, head and body.
    Message(Bytes),
    /// A double-CRLF ping: answer with a single CRLF pong.
    Ping,
}

/// A framing error: the stream cannot be resynchronised and must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub reason: &'static str,
    /// The status a request gets for it: 400, or 513 for a message over the size limit.
    pub status: u16,
    /// The head of the offending message, when readable, so that a 400 can be sent first.
    pub head: Option<Bytes>,
}

#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max_message: usize,
    failed: bool,
}

impl StreamFramer {
    pub fn new(max_message: usize) -> Self {
        StreamFramer {
            buf: BytesMut::with_capacity(4096),
            max_message,
            failed: false,
        }
    }

    /// Append bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next complete frame, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        if self.failed {
            return None;
        }
        // Keep-alives and stray line ends between messages.
        let crlfs = self
            .buf
            .iter()
            .position(|b| !matches!(b, b'\r' | b'\n'))
            .unwrap_or(self.buf.len());
        if crlfs > 0 {
            let ping = self
                .buf
                .get(..crlfs)
                .is_some_and(|line_ends| line_ends.windows(4).any(|w| w == b"\r\n\r\n"));
            if crlfs == self.buf.len() && !ping {
                // Could be the start of a ping; wait for more.
                return None;
            }
            self.buf.advance(crlfs);
            if ping {
                return Some(Ok(Frame::Ping));
            }
        }
        if self.buf.is_empty() {
            return None;
        }
        let Some((head_end, body_start)) = find_head_end(&self.buf) else {
            if self.buf.len() > self.max_message {
                return Some(Err(self.fail("message head exceeds the size limit", None)));
            }
            return None;
        };
        let head = self.buf.get(..head_end).unwrap_or_default();
        let whole_head = || Bytes::copy_from_slice(self.buf.get(..body_start).unwrap_or_default());
        let length = match declared_length(head) {
            Ok(Some(n)) => n,
            Ok(None) => {
                let h = whole_head();
                return Some(Err(self.fail("Content-Length missing on a stream", Some(h))));
            }
            Err(reason) => {
                let h = whole_head();
                return Some(Err(self.fail(reason, Some(h))));
            }
        };
        let total = body_start.saturating_add(length);
        if total > self.max_message {
            let h = whole_head();
            let mut e = self.fail("message exceeds the size limit", Some(h));
            e.status = 513;
            return Some(Err(e));
        }
        if self.buf.len() < total {
            return None;
        }
        Some(Ok(Frame::Message(self.buf.split_to(total).freeze())))
    }

    fn fail(&mut self, reason: &'static str, head: Option<Bytes>) -> FrameError {
        self.failed = true;
        self.buf.clear();
        FrameError {
            reason,
            status: 400,
            head,
        }
    }

    /// Bytes buffered toward an incomplete message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Content-Length (or `l`) from a raw head, without a full parse.
fn declared_length(head: &[u8]) -> Result<Option<usize>, &'static str> {
    let mut found = None;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = trim(name);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            if found.is_some() {
                return Err("more than one Content-Length");
            }
            let v = trim(value.get(1..).unwrap_or_default());
            // At most nine digits: the value fits any usize.
            let n = std::str::from_utf8(v)
                .ok()
                .filter(|v| !v.is_empty() && v.len() <= 9 && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or("Content-Length is not a valid number")?;
            found = Some(n);
        }
    }
    Ok(found)
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";

    #[test]
    fn partial_then_complete() {
        let mut f = StreamFramer::new(65536);
        for chunk in MSG.chunks(5) {
            assert_eq!(f.next_frame(), None);
            f.push(chunk);
        }
        assert_eq!(
            f.next_frame(),
            Some(Ok(Frame::Message(Bytes::from_static(MSG))))
        );
        assert_eq!(f.next_frame(), None);
    }

    #[test]
    fn coalesced_and_ping() {
        let mut f = StreamFramer::new(65536);
        let mut data = MSG.to_vec();
        data.extend_from_slice(b"\r\n\r\n");
        data.extend_from_slice(MSG);
        f.push(&data);
        assert!(matches!(f.next_frame(), Some(Ok(Frame::Message(_)))));
        assert_eq!(f.next_frame(), Some(Ok(Frame::Ping)));
        assert!(matches!(f.next_frame(), Some(Ok(Frame::Message(_)))));
        assert_eq!(f.next_frame(), None);
    }

    #[test]
    fn missing_or_bad_length_fails_the_stream() {
        let mut f = StreamFramer::new(65536);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        let e = f.next_frame().unwrap().unwrap_err();
        assert!(e.head.is_some());
        assert_eq!(e.status, 400);
        assert_eq!(f.next_frame(), None);
        let mut f = StreamFramer::new(65536);
        f.push(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n");
        assert!(f.next_frame().unwrap().is_err());
    }

    #[test]
    fn size_limit() {
        let mut f = StreamFramer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
        let e = f.next_frame().unwrap().unwrap_err();
        assert_eq!(e.status, 513, "Message Too Large");
        assert!(e.head.is_some());
        let mut f = StreamFramer::new(100);
        f.push(&[b'a'; 200]);
        assert!(f.next_frame().unwrap().is_err());
    }
}
