//! Telephone numbers: E.164 parsing and the formats providers signal and expect.
//!
//! Inside Sluice the canonical form of a number is E.164 with `+`; brands convert to what their
//! provider expects on the way out and back to E.164 on the way in. The one implementation of
//! these rules: the SDK re-exports it to plugins, and the plugin host applies the number policy
//! a brand declares ([`NumberPolicy`]) without entering the plugin.

/// A number in E.164: country code and national significant number, digits only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E164 {
    pub country_code: String,
    pub national: String,
}

/// Country calling codes: 1, 7 and 2- or 3-digit codes (ITU-T E.164 assignments).
fn country_code_len(digits: &str) -> usize {
    const TWO: &[&str] = &[
        "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
        "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
        "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    ];
    match digits.as_bytes().first() {
        Some(b'1') | Some(b'7') => 1,
        _ if digits.get(..2).is_some_and(|cc| TWO.contains(&cc)) => 2,
        _ => 3,
    }
}

impl E164 {
    /// Parse a number as a provider or PBX may write it: `+CC…`, `00CC…` (international
    /// prefix), `011CC…` (NANP international prefix), 11 digits `1NXXNXXXXXX` (NANP with
    /// country code), or a national number, which takes `default_country` (give `"1"` for
    /// NANP). Visual separators (` -.()`) are ignored. `None` for anything else.
    ///
    /// ```
    /// use sluice_sip::e164::E164;
    /// assert_eq!(E164::parse("+1 (555) 223-4567", "1").unwrap().to_plus(), "+15552234567");
    /// assert_eq!(E164::parse("15552234567", "1").unwrap().to_plus(), "+15552234567");
    /// assert_eq!(E164::parse("5552234567", "1").unwrap().to_plus(), "+15552234567");
    /// assert_eq!(E164::parse("0044 20 7946 0018", "1").unwrap().to_plus(), "+442079460018");
    /// assert_eq!(E164::parse("01144 20 7946 0018", "1").unwrap().country_code, "44");
    /// assert!(E164::parse("*72", "1").is_none());
    /// // NANP area codes and exchanges start with 2-9.
    /// assert!(E164::parse("1235551234", "1").is_none());
    /// assert!(E164::parse("+14151234567", "1").is_none());
    /// ```
    pub fn parse(number: &str, default_country: &str) -> Option<E164> {
        let cleaned = without_separators(number);
        let p = Parts::parse(&cleaned, default_country)?;
        Some(E164 {
            country_code: p.country_code.to_string(),
            national: p.national.to_string(),
        })
    }

    /// How a North American carrier dials it: 11 digits `1NXXNXXXXXX` for a NANP number,
    /// `011` and the E.164 digits for any other (VoIP.ms routes `011` + country code + number).
    ///
    /// ```
    /// use sluice_sip::e164::E164;
    /// assert_eq!(E164::parse("+14155550123", "1").unwrap().to_nanp_dialing(), "14155550123");
    /// assert_eq!(E164::parse("+442079460018", "1").unwrap().to_nanp_dialing(), "011442079460018");
    /// ```
    pub fn to_nanp_dialing(&self) -> String {
        self.parts().nanp_dialing()
    }

    /// `+CCNNN…`
    pub fn to_plus(&self) -> String {
        self.parts().write_digits("+")
    }

    /// `CCNNN…` without `+` (how VoIP.ms and many gateways write NANP numbers: `1NXXNXXXXXX`).
    pub fn to_digits(&self) -> String {
        self.parts().write_digits("")
    }

    /// True for a North American Numbering Plan number.
    pub fn is_nanp(&self) -> bool {
        self.parts().is_nanp()
    }

    fn parts(&self) -> Parts<'_> {
        Parts {
            country_code: &self.country_code,
            national: &self.national,
        }
    }
}

/// The number without visual separators (` -.()`), borrowed when it has none.
fn without_separators(number: &str) -> std::borrow::Cow<'_, str> {
    let separator = |c: char| matches!(c, ' ' | '-' | '.' | '(' | ')');
    if number.contains(separator) {
        number.chars().filter(|&c| !separator(c)).collect()
    } else {
        std::borrow::Cow::Borrowed(number)
    }
}

/// [`E164`] as views into the number it was read from: what formatting needs, without an
/// allocation until the result.
struct Parts<'a> {
    country_code: &'a str,
    national: &'a str,
}

impl<'a> Parts<'a> {
    /// [`E164::parse`] of a number without separators.
    fn parse(cleaned: &'a str, default_country: &'a str) -> Option<Parts<'a>> {
        let nanp_international = default_country == "1" && cleaned.len() > 11;
        let (international, digits) = if let Some(rest) = cleaned.strip_prefix('+') {
            (true, rest)
        } else if let Some(rest) = cleaned.strip_prefix("00") {
            (true, rest)
        } else if let Some(rest) = cleaned.strip_prefix("011").filter(|_| nanp_international) {
            (true, rest)
        } else {
            (false, cleaned)
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (country_code, national) = if international {
            // All ASCII digits: any split is on a character boundary.
            digits.split_at(country_code_len(digits).min(digits.len()))
        } else if let Some(national) = digits
            .strip_prefix('1')
            .filter(|_| default_country == "1" && digits.len() == 11)
        {
            ("1", national)
        } else if default_country == "1" && digits.len() == 10 {
            ("1", digits)
        } else if default_country != "1" && !default_country.is_empty() {
            // A national number with a trunk prefix 0 (most non-NANP countries).
            (default_country, digits.strip_prefix('0').unwrap_or(digits))
        } else {
            return None;
        };
        let total = country_code.len().saturating_add(national.len());
        if country_code == "1" && !valid_nanp(national) {
            return None;
        }
        (national.len() >= 4 && total <= 15).then_some(Parts {
            country_code,
            national,
        })
    }

    fn is_nanp(&self) -> bool {
        self.country_code == "1" && self.national.len() == 10
    }

    /// `prefix`, the country code and the national number.
    fn write_digits(&self, prefix: &str) -> String {
        let mut s = String::with_capacity(
            prefix
                .len()
                .saturating_add(self.country_code.len())
                .saturating_add(self.national.len()),
        );
        s.push_str(prefix);
        s.push_str(self.country_code);
        s.push_str(self.national);
        s
    }

    /// [`E164::to_nanp_dialing`].
    fn nanp_dialing(&self) -> String {
        self.write_digits(if self.is_nanp() { "" } else { "011" })
    }
}

/// A NANP national number: 10 digits, area code (NPA) and exchange (NXX) starting with 2-9.
fn valid_nanp(national: &str) -> bool {
    let b = national.as_bytes();
    let n = |i: usize| b.get(i).is_some_and(|d| (b'2'..=b'9').contains(d));
    b.len() == 10 && n(0) && n(3)
}

/// Strip a leading `+` (`+15552234567` → `15552234567`).
pub fn strip_plus(number: &str) -> &str {
    number.strip_prefix('+').unwrap_or(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let n = E164::parse("+442079460018", "1").unwrap();
        assert_eq!(
            (n.country_code.as_str(), n.national.as_str()),
            ("44", "2079460018")
        );
        assert_eq!(n.to_digits(), "442079460018");
        assert!(!n.is_nanp());
        assert!(E164::parse("5552234567", "1").unwrap().is_nanp());
        assert_eq!(
            E164::parse("020 7946 0018", "44").unwrap().to_plus(),
            "+442079460018"
        );
        assert!(E164::parse("+1234567890123456", "1").is_none());
        assert!(E164::parse("12345", "1").is_none());
        assert!(E164::parse("", "1").is_none());
        assert_eq!(strip_plus("+1"), "1");
    }
}

/// How a number is written toward a party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// As it is.
    AsIs,
    /// E.164 with `+` (`+15552234567`): Twilio, Telnyx, Bandwidth.
    Plus,
    /// E.164 digits without `+` (`15552234567`): many gateways.
    Digits,
    /// North American dialling: `1NXXNXXXXXX` for NANP numbers, `011` + E.164 digits for the
    /// rest (VoIP.ms and other North American carriers).
    Nanp,
}

impl Format {
    /// `as-is`, `e164` (or `plus`), `digits`, `nanp`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "as-is" => Some(Format::AsIs),
            "e164" | "plus" => Some(Format::Plus),
            "digits" => Some(Format::Digits),
            "nanp" => Some(Format::Nanp),
            _ => None,
        }
    }

    /// Write `number` in this format; `None` when it is not a phone number (an extension, a
    /// service code) or the format keeps it as it is.
    pub fn apply(self, number: &str, default_country: &str) -> Option<String> {
        if self == Format::AsIs {
            return None;
        }
        let cleaned = without_separators(number);
        let n = Parts::parse(&cleaned, default_country)?;
        let out = match self {
            Format::Plus => n.write_digits("+"),
            Format::Digits => n.write_digits(""),
            Format::Nanp => n.nanp_dialing(),
            Format::AsIs => return None,
        };
        (out != number).then_some(out)
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn number_formats_table() {
        // (number, default country, format, what is written; None: left as it is)
        for (number, country, format, out) in [
            // NANP dialling: 11 digits for NANP, 011 + E.164 digits for the rest.
            ("+14155550123", "1", Format::Nanp, Some("14155550123")),
            ("4155550123", "1", Format::Nanp, Some("14155550123")),
            ("011442079460018", "1", Format::Nanp, None),
            ("+442079460018", "1", Format::Nanp, Some("011442079460018")),
            ("+33142685300", "1", Format::Nanp, Some("01133142685300")),
            ("00442079460018", "1", Format::Nanp, Some("011442079460018")),
            ("011442079460018", "1", Format::Plus, Some("+442079460018")),
            // NANP area codes and exchanges start with 2-9: not numbers, left alone.
            ("1235551234", "1", Format::Plus, None),
            ("0235551234", "1", Format::Plus, None),
            ("4151234567", "1", Format::Plus, None),
            ("4150234567", "1", Format::Plus, None),
            ("+11235551234", "1", Format::Plus, None),
            ("+12125551234", "1", Format::Digits, Some("12125551234")),
            ("2125551234", "1", Format::Plus, Some("+12125551234")),
            // Other countries are not held to NANP rules.
            ("020 7946 0018", "44", Format::Plus, Some("+442079460018")),
            ("100", "1", Format::Nanp, None),
        ] {
            assert_eq!(
                format.apply(number, country).as_deref(),
                out,
                "{number} ({country}) as {format:?}"
            );
        }
        assert_eq!(Format::parse("nanp"), Some(Format::Nanp));
    }

    #[test]
    fn formats_apply_to_phone_numbers_only() {
        assert_eq!(
            Format::Plus.apply("15552234567", "1").as_deref(),
            Some("+15552234567")
        );
        assert_eq!(
            Format::Digits.apply("+15552234567", "1").as_deref(),
            Some("15552234567")
        );
        assert_eq!(Format::Digits.apply("15552234567", "1"), None);
        assert_eq!(Format::Plus.apply("100", "1"), None);
        assert_eq!(Format::AsIs.apply("+15552234567", "1"), None);
        assert_eq!(Format::parse("e164"), Some(Format::Plus));
        assert_eq!(Format::parse("x"), None);
    }
}

/// How a brand writes numbers: toward its provider (`outbound`, on the trunk's leg) and toward
/// the PBX (`inbound`), with the country code of national numbers. A brand that declares one
/// has its numbers written by Sluice itself, without a call into the plugin per number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPolicy {
    pub outbound: Format,
    pub inbound: Format,
    pub default_country: String,
}

impl NumberPolicy {
    /// The number as it is written toward the trunk (`toward_trunk`) or toward the PBX; `None`
    /// leaves it as it is.
    pub fn apply(&self, toward_trunk: bool, number: &str) -> Option<String> {
        let format = if toward_trunk {
            self.outbound
        } else {
            self.inbound
        };
        format.apply(number, &self.default_country)
    }

    /// Whether `cc` is a country code as a policy takes it: one to three digits.
    pub fn valid_country(cc: &str) -> bool {
        (1..=3).contains(&cc.len()) && cc.bytes().all(|b| b.is_ascii_digit())
    }
}
