//! Telephone numbers as PASSporTs carry them (RFC 8224 §8.3): the digits of the number
//! (`*` and `#` too), without `+` and without the visual separators `-`, `.`, `(` and `)`.

/// The canonical form of `number`, or `None` when nothing of a telephone number is left (a
/// name such as `anonymous`, an empty string, letters).
pub fn canonical(number: &str) -> Option<String> {
    let number = number.trim();
    let number = number.strip_prefix('+').unwrap_or(number);
    let mut out = String::with_capacity(number.len());
    for c in number.chars() {
        match c {
            '0'..='9' | '*' | '#' => out.push(c),
            '-' | '.' | '(' | ')' | ' ' => {}
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The number of a SIP or tel URI (`sip:+1555@host;user=phone`, `tel:+1-555`): its user part
/// (or the tel number) without parameters, canonical.
pub fn of_uri(uri: &str) -> Option<String> {
    let uri = uri.trim();
    let uri = uri
        .strip_prefix('<')
        .map_or(uri, |u| u.split('>').next().unwrap_or(u));
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .map(|r| r.split('@').next().unwrap_or(r))
        .or_else(|| uri.strip_prefix("tel:"))?;
    canonical(rest.split(';').next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_the_plus_go() {
        assert_eq!(
            canonical("+1 (555) 201-1111").as_deref(),
            Some("15552011111")
        );
        assert_eq!(
            canonical("+44.20.7946.0000").as_deref(),
            Some("442079460000")
        );
        assert_eq!(canonical("*67#").as_deref(), Some("*67#"));
        assert_eq!(canonical("anonymous"), None);
        assert_eq!(canonical("+"), None);
        assert_eq!(canonical("1555x"), None);
    }

    #[test]
    fn numbers_of_uris() {
        assert_eq!(
            of_uri("sip:+15552011111@example.com;user=phone").as_deref(),
            Some("15552011111")
        );
        assert_eq!(
            of_uri("<sip:+1-555-201-1111;npdi@127.0.0.1:5060>").as_deref(),
            Some("15552011111")
        );
        assert_eq!(
            of_uri("tel:+1-555-201-1111;phone-context=x").as_deref(),
            Some("15552011111")
        );
        assert_eq!(of_uri("sip:alice@example.com"), None);
        assert_eq!(of_uri("mailto:x"), None);
    }
}
