//! Numbers made comparable: a number as a PBX or a provider writes it (`+13322496213`,
//! `13322496213`, `3322496213`, `011 44 20 7946 0000`, `tel:` visual separators) normalised to
//! E.164 for the country it was dialled in, by libphonenumber's rules (the `phonenumber`
//! crate: national and international prefixes per country, lengths and ranges per country).
//! A number libphonenumber does not call valid (a short code, an extension, an emergency
//! number, garbage) keeps its digits as dialled: it is still looked up and routed, as itself.
//!
//! libphonenumber costs 5-7 µs a number (its regular expressions, and a regex cache that
//! hashes each pattern's text on every use). The numbers a call carries repeat: the caller IDs
//! of a tenant's calls and the DIDs called on a trunk come from the pools. So results are kept
//! in a bounded cache (a pure function's results: the answer is the same with or without it),
//! emptied when it fills.

use phonenumber::country::Id;
use phonenumber::Mode;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

/// Numbers kept normalised, per country and text; emptied when it reaches this.
const CACHE_ENTRIES: usize = 16_384;

/// Per country, per text: looked up without allocating.
type Cache = HashMap<Id, HashMap<Box<str>, Option<Number>>>;

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// The numbering plan numbers are read in: a country (ISO 3166 code such as `US`, `GB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbering {
    country: Id,
}

/// North America's, where nothing else is configured.
impl Default for Numbering {
    fn default() -> Self {
        Numbering { country: Id::US }
    }
}

/// A called or calling number, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    /// E.164 digits without `+` when valid; otherwise the digits as dialled.
    digits: String,
    /// An invalid number dialled with `+` (a range newer than the metadata): written back
    /// with it.
    plus: bool,
    /// The national format's digits (with the national prefix the country dials, `0` in most
    /// of Europe, none in North America); `None` when not valid.
    national: Option<String>,
}

/// How a number is written toward a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `+` and E.164 digits: `+13322496213`.
    #[default]
    E164,
    /// E.164 digits without `+`: `13322496213` (North American carriers' `1NXXNXXXXXX`).
    Digits,
    /// As dialled within the number's country: `3322496213`, `02079460000`.
    National,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "e164" => Some(Format::E164),
            "digits" => Some(Format::Digits),
            "national" => Some(Format::National),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::E164 => "e164",
            Format::Digits => "digits",
            Format::National => "national",
        }
    }
}

/// The longest text taken as a number: longer is not a number.
const MAX_INPUT: usize = 64;

impl Numbering {
    /// The plan of a country by its ISO 3166 code (`US`, `gb`).
    pub fn new(country: &str) -> Option<Numbering> {
        let id = Id::from_str(&country.to_ascii_uppercase()).ok()?;
        Some(Numbering { country: id })
    }

    /// The country's ISO code.
    pub fn country(&self) -> &str {
        self.country.as_ref()
    }

    /// `raw` (the user part of a URI, or a number as configured) normalised. `None`: not a
    /// number at all (letters, empty, too long).
    pub fn normalise(&self, raw: &str) -> Option<Number> {
        if raw.len() > MAX_INPUT {
            return None;
        }
        {
            let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
            let hit = cache
                .as_ref()
                .and_then(|c| c.get(&self.country))
                .and_then(|c| c.get(raw));
            if let Some(hit) = hit {
                return hit.clone();
            }
        }
        let n = self.normalise_uncached(raw);
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        let countries = cache.get_or_insert_with(HashMap::new);
        let c = countries.entry(self.country).or_default();
        if c.len() >= CACHE_ENTRIES {
            c.clear();
        }
        c.insert(Box::from(raw), n.clone());
        n
    }

    /// [`Numbering::normalise`] without the cache: libphonenumber every time.
    pub fn normalise_uncached(&self, raw: &str) -> Option<Number> {
        let dialled = dialled(raw)?;
        let parsed = phonenumber::parse(Some(self.country), &dialled)
            .ok()
            .filter(phonenumber::is_valid);
        let Some(n) = parsed else {
            return Some(Number {
                digits: dialled.trim_start_matches('+').to_string(),
                plus: dialled.starts_with('+'),
                national: None,
            });
        };
        let e164 = n.format().mode(Mode::E164).to_string();
        let national: String = n
            .format()
            .mode(Mode::National)
            .to_string()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        Some(Number {
            digits: e164.trim_start_matches('+').to_string(),
            plus: true,
            national: Some(national),
        })
    }
}

/// The digits of a dialled number, with its leading `+`: visual separators (RFC 3966 `-`, `.`,
/// `(`, `)`, spaces) removed. `None` when anything else is in it.
fn dialled(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > MAX_INPUT {
        return None;
    }
    let (plus, rest) = match raw.strip_prefix('+') {
        Some(r) => ("+", r),
        None => ("", raw),
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(plus);
    for c in rest.chars() {
        match c {
            '0'..='9' => out.push(c),
            '-' | '.' | '(' | ')' | ' ' => {}
            _ => return None,
        }
    }
    (out.len() > plus.len()).then_some(out)
}

impl Number {
    /// A number taken as it is (an emergency number, a number configured in E.164 digits).
    pub fn verbatim(digits: &str) -> Option<Number> {
        let d = dialled(digits)?;
        Some(Number {
            digits: d.trim_start_matches('+').to_string(),
            plus: d.starts_with('+'),
            national: None,
        })
    }

    /// What routing, DID pools and caller-ID checks compare: E.164 digits without `+` (or the
    /// digits as dialled, for a number that is not valid E.164).
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// Whether libphonenumber calls it a valid number of its country.
    pub fn is_e164(&self) -> bool {
        self.national.is_some()
    }

    /// The number written in `format`. A number that is not valid E.164 is written as dialled
    /// whatever the format (with its `+` if it had one).
    pub fn written(&self, format: Format) -> String {
        match (&self.national, format) {
            (Some(_), Format::E164) => format!("+{}", self.digits),
            (Some(n), Format::National) => n.clone(),
            (Some(_), Format::Digits) => self.digits.clone(),
            (None, _) if self.plus => format!("+{}", self.digits),
            (None, _) => self.digits.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Numbering {
        Numbering::new("US").unwrap()
    }

    #[test]
    fn a_providers_forms_of_one_north_american_number_are_one_number() {
        for raw in [
            "+13322496213",
            "13322496213",
            "3322496213",
            "+1 (332) 249-6213",
            "332.249.6213",
        ] {
            let n = us().normalise(raw).unwrap();
            assert_eq!(n.digits(), "13322496213", "{raw}");
            assert!(n.is_e164(), "{raw}");
            assert_eq!(n.written(Format::E164), "+13322496213");
            assert_eq!(n.written(Format::Digits), "13322496213");
            assert_eq!(n.written(Format::National), "3322496213");
        }
    }

    #[test]
    fn international_prefixes_follow_the_country() {
        // 011 from North America, 00 from the United Kingdom.
        let n = us().normalise("011442079460000").unwrap();
        assert_eq!(n.digits(), "442079460000");
        let gb = Numbering::new("gb").unwrap();
        let n = gb.normalise("00442079460000").unwrap();
        assert_eq!(n.digits(), "442079460000");
        // A national number keeps its trunk prefix in the national format.
        let n = gb.normalise("02079460000").unwrap();
        assert_eq!(n.digits(), "442079460000");
        assert_eq!(n.written(Format::National), "02079460000");
        // 00 is not an international prefix in North America.
        assert_ne!(
            us().normalise("00442079460000").unwrap().digits(),
            "442079460000"
        );
    }

    #[test]
    fn what_is_not_a_valid_number_keeps_its_digits() {
        for (raw, digits) in [
            ("911", "911"),
            ("101", "101"),
            ("+999", "999"),
            ("5550", "5550"),
        ] {
            let n = us().normalise(raw).unwrap();
            assert_eq!(n.digits(), digits);
            assert!(!n.is_e164());
            assert_eq!(n.written(Format::E164), raw, "written as dialled");
            assert_eq!(n.written(Format::National), raw, "written as dialled");
        }
        // A number in an unassigned North American area code is not valid.
        assert!(!us().normalise("+11112223333").unwrap().is_e164());
    }

    #[test]
    fn the_cache_answers_as_libphonenumber_does() {
        let gb = Numbering::new("GB").unwrap();
        for raw in [
            "+13322496213",
            "3322496213",
            "911",
            "02079460000",
            "x1",
            "+999",
        ] {
            for plan in [us(), gb] {
                let first = plan.normalise(raw);
                assert_eq!(first, plan.normalise_uncached(raw), "{raw}");
                assert_eq!(plan.normalise(raw), first, "{raw}, from the cache");
            }
        }
        // The same text in two countries is two numbers.
        assert_ne!(us().normalise("02079460000"), gb.normalise("02079460000"));
    }

    #[test]
    fn garbage_is_no_number() {
        for raw in ["", "+", "alice", "12a4", "1;2", &"1".repeat(65), "١٢٣"] {
            assert_eq!(us().normalise(raw), None, "{raw:?}");
        }
        assert_eq!(Numbering::new("XX"), None);
        assert_eq!(Numbering::new(""), None);
    }
}
