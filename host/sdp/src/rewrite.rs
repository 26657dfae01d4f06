//! Writing an SDP body back for the far side: Sluice's address and ports where the body had the
//! sender's, no ICE (Sluice is the only media endpoint each side sees), the formats a trunk
//! allows, a new origin version; every other line as it was.

use crate::model::{Media, Sdp};
use std::fmt::Write;
use std::net::IpAddr;

/// What Sluice writes into a body going to the far side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Sluice's address on the far side: the origin's and every connection address (a hold's
    /// `0.0.0.0` stays as it is).
    pub address: IpAddr,
    /// The origin version to write: Sluice's own count for the far leg.
    pub version: u64,
    /// One per media section of the body, in order.
    pub sections: Vec<SectionPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionPlan {
    /// Sluice's RTP port for the stream on the far side; 0 declines the stream.
    pub port: u16,
    /// Sluice's RTCP port there (the RTP port with `rtcp-mux`).
    pub rtcp_port: u16,
    /// Only these formats stay, in this order (a trunk's codec list); `None` keeps all.
    pub formats: Option<Vec<String>>,
    /// The transport profile to write instead of the section's (`RTP/SAVP` where Sluice
    /// terminates SRTP toward a plain end, or the reverse); `None` keeps it.
    pub proto: Option<String>,
    /// The `a=crypto` values to write at the end of the section, instead of the section's own
    /// (which are removed); `None` keeps the section's as they are.
    pub crypto: Option<Vec<String>>,
}

/// ICE attributes: meaningless once Sluice anchors the media (RFC 8839).
const ICE: &[&str] = &[
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "ice-pacing",
];

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

fn attribute(line: &str) -> Option<(&str, &str)> {
    let v = line.strip_prefix("a=")?;
    Some(v.split_once(':').unwrap_or((v, "")))
}

/// The payload type an `a=rtpmap`/`a=fmtp`/`a=rtcp-fb` line is about.
fn format_of(value: &str) -> &str {
    value.split_ascii_whitespace().next().unwrap_or("")
}

pub fn rewrite(sdp: &Sdp, plan: &Plan) -> String {
    let mut out = String::with_capacity(
        sdp.lines
            .iter()
            .map(String::len)
            .sum::<usize>()
            .saturating_add(64),
    );
    let eol = if sdp.crlf { "\r\n" } else { "\n" };
    let mut section: Option<(usize, &Media)> = None;
    for (i, line) in sdp.lines.iter().enumerate() {
        if let Some(k) = sdp.media.iter().position(|m| m.line == i) {
            section = sdp.media.get(k).map(|m| (k, m));
        }
        let sp = section.and_then(|(k, _)| plan.sections.get(k));
        let written = rewrite_line(sdp, plan, i, line, section.map(|(_, m)| m), sp, &mut out);
        if written {
            out.push_str(eol);
        }
        let last_of_section = section.is_some_and(|(_, m)| m.end == i.saturating_add(1));
        if let (true, Some(crypto)) = (last_of_section, sp.and_then(|sp| sp.crypto.as_ref())) {
            for value in crypto {
                out.push_str("a=crypto:");
                out.push_str(value);
                out.push_str(eol);
            }
        }
    }
    out
}

/// Write line `i` (rewritten, or as it is) into `out`; `false` when it is dropped.
fn rewrite_line(
    sdp: &Sdp,
    plan: &Plan,
    i: usize,
    line: &str,
    media: Option<&Media>,
    sp: Option<&SectionPlan>,
    out: &mut String,
) -> bool {
    let addr = plan.address;
    if i == sdp.origin.line {
        let o = &sdp.origin;
        let _ = write!(
            out,
            "o={} {} {} IN {} {addr}",
            o.username,
            o.session_id,
            plan.version,
            family(addr)
        );
        return true;
    }
    let is_connection = sdp.connection.is_some_and(|c| c.line == i)
        || media
            .and_then(|m| m.connection)
            .is_some_and(|c| c.line == i);
    if is_connection {
        let held = line.ends_with(" 0.0.0.0") || line.ends_with(" ::");
        if held {
            out.push_str(line);
        } else {
            let _ = write!(out, "c=IN {} {addr}", family(addr));
        }
        return true;
    }
    if let (Some(m), Some(sp)) = (media, sp) {
        if sp.crypto.is_some() && line.starts_with("a=crypto:") {
            return false;
        }
        if i == m.line {
            write_media_line(m, sp, out);
            return true;
        }
        if let Some((name, value)) = attribute(line) {
            if name == "rtcp" {
                let _ = write!(out, "a=rtcp:{}", sp.rtcp_port);
                if value.split_ascii_whitespace().count() > 1 {
                    let _ = write!(out, " IN {} {addr}", family(addr));
                }
                return true;
            }
            if matches!(name, "rtpmap" | "fmtp" | "rtcp-fb") && sp.port != 0 {
                if let Some(keep) = &sp.formats {
                    let pt = format_of(value);
                    if pt != "*" && !keep.iter().any(|k| k == pt) {
                        return false;
                    }
                }
            }
        }
    }
    if attribute(line).is_some_and(|(name, _)| ICE.contains(&name)) {
        return false;
    }
    out.push_str(line);
    true
}

fn write_media_line(m: &Media, sp: &SectionPlan, out: &mut String) {
    let proto = sp.proto.as_deref().unwrap_or(&m.proto);
    let _ = write!(out, "m={} {} {proto}", m.kind, sp.port);
    // A declined stream keeps its formats: the m= line needs at least one.
    let formats: &[String] = match &sp.formats {
        Some(f) if sp.port != 0 && !f.is_empty() => f,
        _ => &m.formats,
    };
    for f in formats {
        out.push(' ');
        out.push_str(f);
    }
}

/// The static payload types of RFC 3551 that Sluice names without an `a=rtpmap`.
fn static_name(pt: &str) -> Option<&'static str> {
    Some(match pt {
        "0" => "PCMU",
        "3" => "GSM",
        "4" => "G723",
        "8" => "PCMA",
        "9" => "G722",
        "13" => "CN",
        "18" => "G729",
        _ => return None,
    })
}

impl Sdp {
    /// The encoding name of a payload type in a section (`a=rtpmap`, else RFC 3551's static
    /// table).
    pub fn encoding(&self, m: &Media, pt: &str) -> Option<String> {
        let from_map = self
            .lines
            .get(m.line..m.end)
            .unwrap_or_default()
            .iter()
            .filter_map(|l| l.strip_prefix("a=rtpmap:"))
            .find(|v| format_of(v) == pt)
            .and_then(|v| v.split_ascii_whitespace().nth(1))
            .and_then(|enc| enc.split('/').next())
            .map(str::to_string);
        from_map.or_else(|| static_name(pt).map(str::to_string))
    }

    /// The RTP clock rate of a payload type in a section (`a=rtpmap`, else 8000 Hz, the rate
    /// of every static audio type Sluice names).
    pub fn clock_rate(&self, m: &Media, pt: &str) -> Option<u32> {
        let from_map = self
            .lines
            .get(m.line..m.end)
            .unwrap_or_default()
            .iter()
            .filter_map(|l| l.strip_prefix("a=rtpmap:"))
            .find(|v| format_of(v) == pt)
            .and_then(|v| v.split_ascii_whitespace().nth(1))
            .and_then(|enc| enc.split('/').nth(1))
            .and_then(|rate| rate.parse().ok());
        from_map.or_else(|| static_name(pt).map(|_| 8000))
    }

    /// The formats of an RTP section a codec list allows, in the list's order (names compared
    /// without case). Sections that are not RTP (`image` T.38 over `udptl`) are not filtered.
    pub fn allowed_formats(&self, m: &Media, codecs: &[String]) -> Option<Vec<String>> {
        if !m.proto.starts_with("RTP/") {
            return None;
        }
        let mut out = Vec::new();
        for codec in codecs {
            for pt in &m.formats {
                let name = self.encoding(m, pt);
                if name.is_some_and(|n| n.eq_ignore_ascii_case(codec)) && !out.contains(pt) {
                    out.push(pt.clone());
                }
            }
        }
        Some(out)
    }
}
