//! `[media]`: where the media relay binds and what it advertises on each side, each side's
//! RTP port range, who may send media (latching), how long silence may last, and the relay's
//! threads. Per-trunk media options (`media`, `codecs`) are in [`crate::trunk`].

use crate::sides::Side;
use crate::validate::{in_range, Checked, Problem};
use serde::Deserialize;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LatchingName {
    /// The address a party really sends from wins (learned from its own IP addresses only).
    #[default]
    Symmetric,
    /// Only the address a party's SDP names may send.
    Strict,
}

/// One side's media addresses and ports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSide {
    /// The address the relay binds (default: the side's first listen address).
    pub bind: Option<IpAddr>,
    /// The address written into SDP (default: `bind`); behind 1:1 NAT, the public address.
    pub advertise: Option<IpAddr>,
    /// First and last port of the RTP/RTCP range (RTP on even ports, RTCP on the odd one above).
    pub ports: [u16; 2],
}

/// Default port ranges: below Linux's ephemeral range on the internal side, 10,000 pairs each.
pub const DEFAULT_INTERNAL_PORTS: [u16; 2] = [20_000, 39_999];
pub const DEFAULT_EXTERNAL_PORTS: [u16; 2] = [40_000, 59_999];

fn default_internal() -> MediaSide {
    MediaSide {
        bind: None,
        advertise: None,
        ports: DEFAULT_INTERNAL_PORTS,
    }
}
fn default_external() -> MediaSide {
    MediaSide {
        bind: None,
        advertise: None,
        ports: DEFAULT_EXTERNAL_PORTS,
    }
}
fn default_timeout() -> u64 {
    60
}
fn default_hold_timeout() -> u64 {
    3600
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    #[serde(default = "default_internal")]
    pub internal: MediaSide,
    #[serde(default = "default_external")]
    pub external: MediaSide,
    #[serde(default)]
    pub latching: LatchingName,
    /// No RTP from either party for this long ends an answered call (BYE on both legs).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// The same while a party has the call on hold.
    #[serde(default = "default_hold_timeout")]
    pub hold_timeout_seconds: u64,
    /// Relay threads; 0 for one per core.
    #[serde(default)]
    pub workers: usize,
    /// Relay settled plain-RTP streams in the kernel (a tc eBPF program), not in the relay's
    /// threads; needs CAP_BPF and CAP_NET_ADMIN, and falls back to the threads without them.
    #[serde(default)]
    pub kernel_forwarding: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            internal: default_internal(),
            external: default_external(),
            latching: LatchingName::default(),
            timeout_seconds: default_timeout(),
            hold_timeout_seconds: default_hold_timeout(),
            workers: 0,
            kernel_forwarding: false,
        }
    }
}

/// A side's media addresses once defaults are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedSide {
    pub bind: IpAddr,
    pub advertise: IpAddr,
    pub first_port: u16,
    pub last_port: u16,
}

impl ResolvedSide {
    /// RTP/RTCP pairs in the range.
    pub fn pairs(&self) -> usize {
        let first = self.first_port.saturating_add(self.first_port % 2);
        usize::from(self.last_port.saturating_sub(first).saturating_add(1) / 2)
    }

    fn contains(&self, port: u16) -> bool {
        (self.first_port..=self.last_port).contains(&port)
    }
}

impl MediaSide {
    /// Defaults from the side's SIP listeners: bind the first one's address, advertise it.
    pub fn resolve(&self, listeners: &Side) -> ResolvedSide {
        let listen_ip = listeners.listen.first().map(|l| l.addr().ip());
        let bind = self
            .bind
            .or(listen_ip)
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        ResolvedSide {
            bind,
            advertise: self.advertise.unwrap_or(bind),
            first_port: self.ports[0],
            last_port: self.ports[1],
        }
    }
}

impl MediaSettings {
    /// Both sides resolved: `(internal, external)`.
    pub fn resolve(&self, internal: &Side, external: &Side) -> (ResolvedSide, ResolvedSide) {
        (
            self.internal.resolve(internal),
            self.external.resolve(external),
        )
    }

    /// The section on its own, then against the rest of the file: the listeners (a SIP port
    /// inside a media range on the same address), `max_calls` (every anchored call takes a
    /// pair on each side) when `anchored`.
    pub fn check(&self, sides: (&Side, &Side), max_calls: usize, anchored: bool) -> Checked {
        in_range("media.timeout_seconds", self.timeout_seconds, 1, 86_400)?;
        in_range(
            "media.hold_timeout_seconds",
            self.hold_timeout_seconds,
            self.timeout_seconds,
            86_400,
        )?;
        in_range("media.workers", self.workers, 0, 256)?;
        let (internal, external) = self.resolve(sides.0, sides.1);
        for (name, side, listeners) in [
            ("internal", &internal, sides.0),
            ("external", &external, sides.1),
        ] {
            check_side(name, side, listeners)?;
            if self.kernel_forwarding && side.bind.is_unspecified() {
                return Err(Problem::new(format!(
                    "media.kernel_forwarding relays from the media addresses: media.{name}.bind \
                     must be an address of this host, not {}",
                    side.bind
                )));
            }
            if anchored && side.pairs() < max_calls {
                return Err(Problem::new(format!(
                    "media.{name}.ports {}-{} hold {} RTP/RTCP pairs, fewer than sip.max_calls \
                     ({max_calls}): every anchored call needs a pair on each side; widen the \
                     range or lower sip.max_calls",
                    side.first_port,
                    side.last_port,
                    side.pairs()
                )));
            }
        }
        let shared = internal.bind == external.bind
            || internal.bind.is_unspecified()
            || external.bind.is_unspecified();
        let overlap =
            internal.first_port <= external.last_port && external.first_port <= internal.last_port;
        if shared && overlap {
            return Err(Problem::new(format!(
                "media.internal.ports {}-{} and media.external.ports {}-{} overlap on the same \
                 address",
                internal.first_port, internal.last_port, external.first_port, external.last_port
            )));
        }
        Ok(())
    }
}

fn check_side(name: &str, side: &ResolvedSide, listeners: &Side) -> Checked {
    in_range(
        &format!("media.{name}.ports (first)"),
        side.first_port,
        1024,
        u16::MAX.saturating_sub(1),
    )?;
    if side.last_port <= side.first_port || side.pairs() == 0 {
        return Err(Problem::new(format!(
            "media.{name}.ports {}-{} holds no RTP/RTCP pair (an even port and the odd one above)",
            side.first_port, side.last_port
        )));
    }
    if side.advertise.is_unspecified() {
        return Err(Problem::new(format!(
            "media.{name}.advertise is needed: media binds every address ({}), and the SDP \
             must name one",
            side.bind
        )));
    }
    if side.bind.is_ipv4() != side.advertise.is_ipv4() {
        return Err(Problem::new(format!(
            "media.{name}: bind {} and advertise {} are not the same IP version",
            side.bind, side.advertise
        )));
    }
    for l in &listeners.listen {
        let a = l.addr();
        let same_ip = a.ip() == side.bind || a.ip().is_unspecified() || side.bind.is_unspecified();
        if same_ip && side.contains(a.port()) {
            return Err(Problem::new(format!(
                "media.{name}.ports {}-{} include the SIP port {} of {name}.listen",
                side.first_port,
                side.last_port,
                a.port()
            )));
        }
    }
    Ok(())
}
