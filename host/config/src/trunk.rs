//! `[[trunk]]`: the providers Sluice sends calls to and accepts calls from, each with its
//! plugin chain.

use crate::sides::{default_port, default_transport, TransportName};
use crate::validate::{check_name, in_range, Checked, Problem};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: Spanned<String>,
    pub host: Spanned<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_transport")]
    pub transport: TransportName,
    /// The brand plugin (`generic` when the provider has none; empty for no brand plugin).
    #[serde(default = "default_brand")]
    pub brand: Spanned<String>,
    /// Rule-set plugins for messages sent to the trunk, in order (they run before the brand).
    #[serde(default)]
    pub outbound_rules: Vec<Spanned<String>>,
    /// Rule-set plugins for messages received from the trunk, in order (after the brand).
    #[serde(default)]
    pub inbound_rules: Vec<Spanned<String>>,
    /// Whether Sluice anchors the media of the trunk's calls.
    #[serde(default)]
    pub media: MediaMode,
    /// Codecs (encoding names, in order of preference) an offer sent to the trunk may carry;
    /// absent: all. DTMF (`telephone-event`) is always kept.
    pub codecs: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MediaMode {
    /// Sluice relays the RTP and rewrites the SDP (topology hiding, NAT).
    #[default]
    Anchor,
    /// The SDP crosses untouched; media flows between the PBX and the provider directly.
    SignallingOnly,
}

fn default_brand() -> Spanned<String> {
    Spanned::new(0..0, "generic".to_string())
}

impl Trunk {
    fn check(&self) -> Checked {
        check_name(&self.name, "trunk name")?;
        if self.host.get_ref().trim().is_empty() {
            return Err(Problem::at(self.host.span(), "trunk host is empty"));
        }
        let name = self.name.get_ref();
        in_range(&format!("port of trunk `{name}`"), self.port, 1, u16::MAX)?;
        // An empty brand runs no brand plugin.
        if !self.brand.get_ref().is_empty() {
            check_name(&self.brand, "brand")?;
        }
        for r in self.outbound_rules.iter().chain(&self.inbound_rules) {
            check_name(r, "rule set")?;
        }
        if let Some(codecs) = &self.codecs {
            if codecs.is_empty() {
                return Err(Problem::new(format!(
                    "codecs of trunk `{name}` is empty: leave it out to allow every codec"
                )));
            }
            if self.media == MediaMode::SignallingOnly {
                return Err(Problem::new(format!(
                    "trunk `{name}` has codecs but media = \"signalling-only\": Sluice filters \
                     codecs only for media it anchors"
                )));
            }
            for c in codecs {
                let v = c.get_ref();
                let token = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
                if v.is_empty() || v.len() > 32 || !v.bytes().all(token) {
                    return Err(Problem::at(
                        c.span(),
                        format!("codec `{v}` must be an encoding name such as PCMU or opus"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Every trunk, and their names unique.
pub fn check_trunks(trunks: &[Trunk]) -> Checked {
    for (i, t) in trunks.iter().enumerate() {
        t.check()?;
        let name = t.name.get_ref();
        if trunks.iter().take(i).any(|o| o.name.get_ref() == name) {
            return Err(Problem::at(
                t.name.span(),
                format!("trunk name `{name}` is used twice"),
            ));
        }
    }
    Ok(())
}

/// `[routing]`: where calls go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Calls from the PBX go to this trunk. Calls from a trunk go to the PBX.
    pub outbound_trunk: Spanned<String>,
}

impl Routing {
    pub fn check(&self, trunks: &[Trunk]) -> Checked {
        let target = self.outbound_trunk.get_ref();
        if trunks.iter().any(|t| t.name.get_ref() == target) {
            Ok(())
        } else {
            Err(Problem::at(
                self.outbound_trunk.span(),
                format!("routing.outbound_trunk names `{target}`, but no trunk has that name"),
            ))
        }
    }
}
