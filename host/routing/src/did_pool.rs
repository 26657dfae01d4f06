//! DID pools: `;`-separated numbers and inclusive ranges (`101; 203; 300-450`), as the PBX's
//! tenant configuration writes them. Numbers are national digits without `+`, `0` or `00`
//! (those are removed before a number is entered); a range's ends have the same length, the
//! end not below the start.
//!
//! Memory is proportional to the entries, not to the numbers they cover, and a lookup is a
//! binary search: ranges are kept sorted by (length, start). Numbers of different lengths are
//! different numbers (`101` is not `0101` nor `1010`).

use std::fmt;

/// The longest number: E.164 allows 15 digits.
pub const MAX_DIGITS: usize = 15;

/// An inclusive range of numbers of `len` digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    len: u8,
    start: u64,
    end: u64,
}

/// Why a pool was refused: the entry and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolError {
    pub entry: String,
    pub problem: &'static str,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DID pool entry `{}`: {}", self.entry, self.problem)
    }
}

impl std::error::Error for PoolError {}

/// One tenant's numbers on one trunk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DidPool {
    /// Sorted, overlapping or adjacent spans merged.
    spans: Vec<Span>,
}

impl DidPool {
    /// Parse the pool syntax. Empty entries (a trailing `;`) are skipped; spaces around
    /// entries and around `-` are tolerated.
    pub fn parse(text: &str) -> Result<DidPool, PoolError> {
        let mut spans = Vec::new();
        for entry in text.split(';') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            spans.push(parse_entry(entry)?);
        }
        Ok(DidPool::from_spans(spans))
    }

    fn from_spans(mut spans: Vec<Span>) -> DidPool {
        spans.sort_unstable();
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for s in spans {
            match merged.last_mut() {
                Some(last) if last.len == s.len && s.start <= last.end.saturating_add(1) => {
                    last.end = last.end.max(s.end);
                }
                _ => merged.push(s),
            }
        }
        merged.shrink_to_fit();
        DidPool { spans: merged }
    }

    /// Whether the pool holds `number` (digits only; anything else is not in any pool).
    pub fn contains(&self, number: &str) -> bool {
        let Some((len, value)) = digits(number) else {
            return false;
        };
        find(&self.spans, len, value, |s| s).is_some()
    }

    /// Entries after merging (what memory is proportional to).
    pub fn entries(&self) -> usize {
        self.spans.len()
    }

    /// How many numbers the pool covers.
    pub fn numbers(&self) -> u64 {
        self.spans.iter().fold(0u64, |n, s| {
            n.saturating_add(s.end.saturating_sub(s.start).saturating_add(1))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes the pool holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.spans
            .capacity()
            .saturating_mul(std::mem::size_of::<Span>())
    }
}

/// Two owners of one number on the same trunk: the first (smallest) such number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub first: String,
    pub second: String,
    pub number: String,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the DID pools of `{}` and `{}` overlap at {}",
            self.first, self.second, self.number
        )
    }
}

/// Every owner's pool on one trunk, merged into one sorted table: who owns a called number.
#[derive(Debug, Clone, Default)]
pub struct DidIndex {
    spans: Vec<(Span, u32)>,
}

impl DidIndex {
    /// The index of `pools` (owner names and their pools; an owner's number in the answers is
    /// its position here); refused when two owners' pools share a number.
    pub fn new(pools: &[(&str, &DidPool)]) -> Result<DidIndex, Overlap> {
        let mut spans: Vec<(Span, u32)> = Vec::new();
        for (owner, (_, pool)) in pools.iter().enumerate() {
            let owner = u32::try_from(owner).unwrap_or(u32::MAX);
            spans.extend(pool.spans.iter().map(|s| (*s, owner)));
        }
        spans.sort_unstable();
        if let Some((a, b, number)) = first_overlap(&spans) {
            let name = |o: u32| {
                usize::try_from(o)
                    .ok()
                    .and_then(|i| pools.get(i))
                    .map_or_else(String::new, |(n, _)| (*n).to_string())
            };
            let (first, second) = (name(a.min(b)), name(a.max(b)));
            return Err(Overlap {
                first,
                second,
                number,
            });
        }
        spans.shrink_to_fit();
        Ok(DidIndex { spans })
    }

    /// The owner (position in the pools given to [`DidIndex::new`]) of `number`.
    pub fn owner(&self, number: &str) -> Option<usize> {
        let (len, value) = digits(number)?;
        let (_, owner) = find(&self.spans, len, value, |(s, _)| s)?;
        usize::try_from(*owner).ok()
    }

    pub fn entries(&self) -> usize {
        self.spans.len()
    }

    /// Bytes the index holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.spans
            .capacity()
            .saturating_mul(std::mem::size_of::<(Span, u32)>())
    }
}

/// The span of `spans` (sorted by length, then start) holding `value` of `len` digits.
fn find<T>(spans: &[T], len: u8, value: u64, span: impl Fn(&T) -> &Span) -> Option<&T> {
    // The first span that starts after `value`; the one before it is the candidate.
    let after = spans.partition_point(|t| {
        let s = span(t);
        (s.len, s.start) <= (len, value)
    });
    let candidate = spans.get(after.checked_sub(1)?)?;
    let s = span(candidate);
    (s.len == len && s.start <= value && value <= s.end).then_some(candidate)
}

/// Sweep the sorted spans keeping the furthest end seen, and the furthest end of any other
/// owner: a span that starts within another owner's reach overlaps it there.
fn first_overlap(spans: &[(Span, u32)]) -> Option<(u32, u32, String)> {
    // (len, end, owner) of the furthest-reaching span, and the furthest of another owner.
    let mut best: Option<(u8, u64, u32)> = None;
    let mut other: Option<(u8, u64, u32)> = None;
    for (s, owner) in spans {
        let reaches = |r: Option<(u8, u64, u32)>| {
            r.filter(|(len, end, o)| *len == s.len && s.start <= *end && o != owner)
        };
        if let Some((_, _, o)) = reaches(best).or_else(|| reaches(other)) {
            return Some((o, *owner, format_number(s.len, s.start)));
        }
        let current = (s.len, s.end, *owner);
        match best {
            Some((len, end, o)) if len == s.len && end >= s.end => {
                if o != *owner && other.is_none_or(|(l, e, _)| l != s.len || e < s.end) {
                    other = Some(current);
                }
            }
            Some(previous) => {
                if previous.2 != *owner && previous.0 == s.len {
                    other = Some(previous);
                } else if previous.0 != s.len {
                    other = None;
                }
                best = Some(current);
            }
            None => best = Some(current),
        }
    }
    None
}

fn format_number(len: u8, value: u64) -> String {
    format!("{value:0width$}", width = usize::from(len))
}

fn parse_entry(entry: &str) -> Result<Span, PoolError> {
    let refuse = |problem| PoolError {
        entry: entry.to_string(),
        problem,
    };
    let (a, b) = match entry.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (entry, entry),
    };
    let number = |n: &str| -> Result<(u8, u64), PoolError> {
        if n.starts_with('+') {
            return Err(refuse(
                "must not start with `+` (write the number without it)",
            ));
        }
        if n.starts_with('0') {
            return Err(refuse(
                "must not start with `0` or `00` (remove the trunk or international prefix)",
            ));
        }
        if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
            return Err(refuse("must be digits, or two numbers joined by `-`"));
        }
        if n.len() > MAX_DIGITS {
            return Err(refuse("longer than 15 digits"));
        }
        digits(n).ok_or_else(|| refuse("must be digits"))
    };
    let (la, start) = number(a)?;
    let (lb, end) = number(b)?;
    if la != lb {
        return Err(refuse("the range's ends differ in length"));
    }
    if end < start {
        return Err(refuse("the range ends below its start"));
    }
    Ok(Span {
        len: la,
        start,
        end,
    })
}

/// A number's length and value: 1 to 15 ASCII digits.
fn digits(n: &str) -> Option<(u8, u64)> {
    if n.is_empty() || n.len() > MAX_DIGITS || !n.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((u8::try_from(n.len()).ok()?, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_reference_forms_parse() {
        for (text, entries, numbers) in [
            ("13322496213", 1, 1),
            ("13322496213;13322496215", 2, 2),
            ("13322496213-13322496215;16468097069", 2, 4),
            ("13322496213-13322496215;16468097069-16468097079", 2, 14),
            ("101; 203; 300-450", 3, 153),
            (" 101 ;203 - 205; ", 2, 4),
            ("", 0, 0),
            // Overlapping and adjacent entries of one tenant merge.
            ("100-200;150-250;251", 1, 152),
        ] {
            let p = DidPool::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((p.entries(), p.numbers()), (entries, numbers), "{text}");
        }
        let p = DidPool::parse("13322496213-13322496215;16468097069").unwrap();
        for (n, inside) in [
            ("13322496212", false),
            ("13322496213", true),
            ("13322496214", true),
            ("13322496215", true),
            ("13322496216", false),
            ("16468097069", true),
            ("+16468097069", false),
            ("6468097069", false),
            ("x", false),
            ("", false),
        ] {
            assert_eq!(p.contains(n), inside, "{n}");
        }
        // Lengths are part of the number.
        let p = DidPool::parse("101; 300-450").unwrap();
        assert!(p.contains("101") && !p.contains("1010") && !p.contains("3000"));
    }

    #[test]
    fn every_refusal_names_its_entry() {
        for (text, entry, words) in [
            ("+13322496213", "+13322496213", "`+`"),
            ("101;013322496213", "013322496213", "`0`"),
            ("0013322496213", "0013322496213", "`00`"),
            ("300-200", "300-200", "ends below"),
            ("100-2000", "100-2000", "differ in length"),
            ("1a2", "1a2", "digits"),
            ("100-", "100-", "digits"),
            ("-100", "-100", "digits"),
            ("1-2-3", "1-2-3", "digits"),
            ("1234567890123456", "1234567890123456", "15 digits"),
            ("101;２０２", "２０２", "digits"),
        ] {
            let e = DidPool::parse(text).expect_err(text);
            assert_eq!(e.entry, entry, "{text}");
            assert!(e.to_string().contains(words), "{text}: {e}");
            assert!(e.to_string().contains(entry), "{text}: {e}");
        }
    }

    #[test]
    fn pools_of_two_owners_must_not_overlap() {
        let pool = |t: &str| DidPool::parse(t).unwrap();
        for (a, b, at) in [
            ("1000-2000", "2000-3000", Some("2000")),
            ("2000-3000", "1000-2000", Some("2000")),
            ("1000-2000", "1500", Some("1500")),
            ("1500", "1000-2000", Some("1500")),
            ("101;205", "203-210", Some("205")),
            ("1000-2000", "2001-3000", None),
            ("101", "1010", None),
            ("13322496213", "13322496213", Some("13322496213")),
        ] {
            let (pa, pb) = (pool(a), pool(b));
            let got = DidIndex::new(&[("alpha", &pa), ("beta", &pb)]);
            match at {
                None => {
                    assert!(got.is_ok(), "{a} / {b}");
                }
                Some(n) => {
                    let e = got.expect_err(a);
                    assert_eq!(
                        (e.first.as_str(), e.second.as_str(), e.number.as_str()),
                        ("alpha", "beta", n),
                        "{a} / {b}"
                    );
                    assert!(e.to_string().contains(n), "{e}");
                }
            }
        }
        // Three owners, the overlap between the first and the third behind the second's
        // longer range.
        let (a, b, c) = (pool("100-900"), pool("50-60"), pool("950;70"));
        let e = DidIndex::new(&[("a", &a), ("b", &b), ("c", &c)]);
        assert!(e.is_ok(), "{e:?}");
        let c = pool("950;500");
        let e = DidIndex::new(&[("a", &a), ("b", &b), ("c", &c)]).unwrap_err();
        assert_eq!(
            (e.first.as_str(), e.second.as_str(), e.number.as_str()),
            ("a", "c", "500")
        );
    }

    #[test]
    fn the_index_finds_the_owner() {
        let (a, b) = (
            DidPool::parse("13322496213-13322496215").unwrap(),
            DidPool::parse("16468097069;101").unwrap(),
        );
        let idx = DidIndex::new(&[("alpha", &a), ("beta", &b)]).unwrap();
        assert_eq!(idx.owner("13322496214"), Some(0));
        assert_eq!(idx.owner("16468097069"), Some(1));
        assert_eq!(idx.owner("101"), Some(1));
        assert_eq!(idx.owner("13322496216"), None);
        assert_eq!(idx.owner("+16468097069"), None);
    }

    /// A pool as a list of (start, length-of-range) pairs of `digits`-digit numbers.
    fn pool_text(entries: &[(u64, u64)], digits: u32) -> String {
        let base = 10u64.pow(digits - 1);
        entries
            .iter()
            .map(|&(s, n)| {
                let start = base + s;
                let end = (start + n).min(10 * base - 1);
                if n == 0 {
                    start.to_string()
                } else {
                    format!("{start}-{end}")
                }
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    fn naive(text: &str) -> std::collections::HashSet<String> {
        let mut all = std::collections::HashSet::new();
        for e in text.split(';').filter(|e| !e.trim().is_empty()) {
            let (a, b) = e.split_once('-').unwrap_or((e, e));
            let (a, b): (u64, u64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
            for n in a..=b {
                all.insert(n.to_string());
            }
        }
        all
    }

    proptest! {
        #[test]
        fn lookup_agrees_with_a_naive_expansion(
            a in prop::collection::vec((0u64..400, 0u64..30), 0..12),
            b in prop::collection::vec((0u64..400, 0u64..30), 0..12),
            probes in prop::collection::vec(0u64..450, 1..60),
        ) {
            let (ta, tb) = (pool_text(&a, 3), pool_text(&b, 3));
            let (pa, pb) = (DidPool::parse(&ta).unwrap(), DidPool::parse(&tb).unwrap());
            let (na, nb) = (naive(&ta), naive(&tb));
            prop_assert_eq!(pa.numbers(), na.len() as u64);
            let first_common = na.intersection(&nb).min().cloned();
            match DidIndex::new(&[("a", &pa), ("b", &pb)]) {
                Ok(idx) => {
                    prop_assert!(first_common.is_none(), "missed overlap {:?}", first_common);
                    for p in probes {
                        let n = (100 + p).to_string();
                        let want = if na.contains(&n) { Some(0) } else if nb.contains(&n) { Some(1) } else { None };
                        prop_assert_eq!(idx.owner(&n), want, "{}", n);
                        prop_assert_eq!(pa.contains(&n), na.contains(&n));
                    }
                }
                Err(e) => prop_assert_eq!(Some(e.number), first_common),
            }
        }
    }
}
