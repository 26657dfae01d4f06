//! Telephone numbers: E.164 parsing and the formats providers signal and expect.
//!
//! Sluice's plugins normalise numbers to and from E.164 (`+` country code, national number).
//! Inside Sluice the canonical form of a number is E.164 with `+`; brand plugins convert to
//! what their provider expects on the way out and back to E.164 on the way in.
//!
//! [`E164`] and [`Format`] are Sluice's own (the same code writes the numbers a brand declares
//! with [`crate::Plugin::number_policy`]), so a number comes out the same whether a plugin
//! writes it or Sluice does.

pub use sluice_sip::e164::{strip_plus, Format, E164};

/// The `default_country` setting (the country code of national numbers, `1` by default),
/// checked.
pub fn default_country_setting() -> Result<String, String> {
    let default_country = crate::setting("default_country").unwrap_or_else(|| "1".into());
    if !sluice_sip::e164::NumberPolicy::valid_country(&default_country) {
        return Err(format!(
            "default_country = \"{default_country}\": expected a country code such as 1 or 44"
        ));
    }
    Ok(default_country)
}

/// How a brand writes numbers toward its provider (outbound) and toward the PBX (inbound),
/// from the settings `outbound_format`, `inbound_format` (`as-is`, `e164`, `digits`, `nanp`) and
/// `default_country` (the country code of national numbers, `1` by default), over the brand's
/// own defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPolicy {
    pub outbound: Format,
    pub inbound: Format,
    pub default_country: String,
}

impl NumberPolicy {
    /// Read the settings; `outbound` and `inbound` are the brand's defaults.
    pub fn from_settings(outbound: Format, inbound: Format) -> Result<NumberPolicy, String> {
        let format = |key: &str, default: Format| match crate::setting(key) {
            None => Ok(default),
            Some(v) => Format::parse(&v)
                .ok_or_else(|| format!("{key} = \"{v}\": expected as-is, e164, digits or nanp")),
        };
        let default_country = default_country_setting()?;
        Ok(NumberPolicy {
            outbound: format("outbound_format", outbound)?,
            inbound: format("inbound_format", inbound)?,
            default_country,
        })
    }

    /// The number as it should be written on the leg of `ctx` (what Sluice writes for a
    /// plugin that declares this policy).
    pub fn normalize(&self, ctx: &crate::NumberContext, number: &str) -> Option<String> {
        let format = match ctx.leg {
            crate::Leg::External => self.outbound,
            crate::Leg::Internal => self.inbound,
        };
        format.apply(number, &self.default_country)
    }
}
