//! Reading an SDP body (RFC 8866 §5). Liberal where it costs nothing (LF line ends, unknown
//! lines and attributes, extra spaces), strict where Sluice depends on a value (origin,
//! connection addresses, media ports).

use crate::model::{Connection, Direction, Media, Origin, Sdp};
use std::fmt;
use std::net::IpAddr;

/// Why a body is not SDP Sluice can anchor (the request gets 488).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpError {
    /// 1-based line number, when one line is at fault.
    pub line: Option<usize>,
    pub reason: &'static str,
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "SDP line {l}: {}", self.reason),
            None => write!(f, "SDP: {}", self.reason),
        }
    }
}

impl std::error::Error for SdpError {}

fn at(index: usize, reason: &'static str) -> SdpError {
    SdpError {
        line: Some(index.saturating_add(1)),
        reason,
    }
}

/// The largest body Sluice reads as SDP, and the most media sections.
const MAX_BYTES: usize = 64 * 1024;
const MAX_MEDIA: usize = 32;

pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
    if body.len() > MAX_BYTES {
        return Err(SdpError {
            line: None,
            reason: "body too large",
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError {
        line: None,
        reason: "not UTF-8",
    })?;
    let crlf = text.contains("\r\n");
    let lines: Vec<String> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if lines.first().map(String::as_str) != Some("v=0") {
        return Err(at(0, "does not start with v=0"));
    }
    let mut origin = None;
    let mut connection = None;
    let mut direction = Direction::SendRecv;
    let mut media: Vec<Media> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((kind, value)) = line.split_once('=') else {
            return Err(at(i, "not a `<type>=<value>` line"));
        };
        if kind.len() != 1 {
            return Err(at(i, "not a `<type>=<value>` line"));
        }
        // RFC 4566 §5: no CR or NUL inside a line (a stray CR would end it differently on
        // the way back out).
        if value.contains(['\r', '\0']) {
            return Err(at(i, "control character inside a line"));
        }
        match (kind, media.last_mut()) {
            ("o", None) => origin = Some(parse_origin(i, value)?),
            ("c", None) => connection = Some(parse_connection(i, value)?),
            ("c", Some(m)) => m.connection = Some(parse_connection(i, value)?),
            ("m", _) => {
                if media.len() >= MAX_MEDIA {
                    return Err(at(i, "too many media sections"));
                }
                if let Some(prev) = media.last_mut() {
                    prev.end = i;
                }
                media.push(parse_media(i, value)?);
            }
            ("a", None) => {
                if let Some(d) = Direction::from_attribute(value) {
                    direction = d;
                }
            }
            ("a", Some(m)) => parse_media_attribute(i, value, m)?,
            _ => {}
        }
    }
    if let Some(last) = media.last_mut() {
        last.end = lines.len();
    }
    let origin = origin.ok_or(SdpError {
        line: None,
        reason: "no o= line",
    })?;
    let sdp = Sdp {
        lines,
        crlf,
        origin,
        connection,
        direction,
        media,
    };
    for m in &sdp.media {
        if m.port != 0 && sdp.connection_of(m).is_none() {
            return Err(at(m.line, "a media section without a connection address"));
        }
    }
    Ok(sdp)
}

fn parse_origin(i: usize, value: &str) -> Result<Origin, SdpError> {
    let mut f = value.split_ascii_whitespace();
    let (
        Some(username),
        Some(session_id),
        Some(version),
        Some(_net),
        Some(_addrtype),
        Some(address),
        None,
    ) = (
        f.next(),
        f.next(),
        f.next(),
        f.next(),
        f.next(),
        f.next(),
        f.next(),
    )
    else {
        return Err(at(i, "malformed o= line"));
    };
    let version = version
        .parse()
        .map_err(|_| at(i, "o= session version is not a number"))?;
    Ok(Origin {
        line: i,
        username: username.to_string(),
        session_id: session_id.to_string(),
        version,
        address: address.to_string(),
    })
}

fn parse_connection(i: usize, value: &str) -> Result<Connection, SdpError> {
    let mut f = value.split_ascii_whitespace();
    let (Some("IN"), Some(addrtype), Some(address)) = (f.next(), f.next(), f.next()) else {
        return Err(at(i, "malformed c= line"));
    };
    // A multicast address may carry `/ttl[/count]`: Sluice anchors unicast only.
    if address.contains('/') {
        return Err(at(i, "multicast connection addresses are not anchored"));
    }
    let address: IpAddr = address
        .parse()
        .map_err(|_| at(i, "c= address is not an IP address"))?;
    match (addrtype, address) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(Connection { line: i, address }),
        _ => Err(at(i, "c= address type does not match the address")),
    }
}

fn parse_media(i: usize, value: &str) -> Result<Media, SdpError> {
    let mut f = value.split_ascii_whitespace();
    let (Some(kind), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
        return Err(at(i, "malformed m= line"));
    };
    // `<port>/<count>`: several ports for layered encodings; Sluice anchors one.
    let (port, count) = port.split_once('/').unwrap_or((port, "1"));
    if count != "1" {
        return Err(at(i, "m= line with several ports"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| at(i, "m= port is not a number from 0 to 65535"))?;
    let formats: Vec<String> = f.map(str::to_string).collect();
    if formats.is_empty() {
        return Err(at(i, "m= line without formats"));
    }
    Ok(Media {
        line: i,
        end: i,
        kind: kind.to_string(),
        port,
        proto: proto.to_string(),
        formats,
        connection: None,
        direction: None,
        rtcp_port: None,
        rtcp_mux: false,
    })
}

fn parse_media_attribute(i: usize, value: &str, m: &mut Media) -> Result<(), SdpError> {
    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
    match name {
        "rtcp" => {
            let port = arg.split_ascii_whitespace().next().unwrap_or("");
            m.rtcp_port = Some(port.parse().map_err(|_| at(i, "malformed a=rtcp"))?);
        }
        "rtcp-mux" => m.rtcp_mux = true,
        _ => {
            if let Some(d) = Direction::from_attribute(name) {
                m.direction = Some(d);
            }
        }
    }
    Ok(())
}
