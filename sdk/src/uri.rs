//! Helpers for the URIs and header values plugins edit: user parts, `sip:` and `tel:`
//! conversion, name-addr values and header parameters. Plain string functions, the same on
//! wasm and natively.

/// The user part of a `sip:`/`sips:` URI, or the number of a `tel:` URI.
///
/// ```
/// assert_eq!(sluice_sdk::uri::user("sip:+15552234567@example.com;user=phone"), Some("+15552234567"));
/// assert_eq!(sluice_sdk::uri::user("tel:+15552234567;phone-context=x"), Some("+15552234567"));
/// assert_eq!(sluice_sdk::uri::user("sip:example.com"), None);
/// ```
pub fn user(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        let n = rest.split(';').next()?;
        return (!n.is_empty()).then_some(n);
    }
    if !is_sip(scheme) {
        return None;
    }
    let at = rest.rfind('@')?;
    let user = rest[..at].split(':').next()?;
    (!user.is_empty()).then_some(user)
}

fn is_sip(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")
}

/// The host (and port) of a `sip:`/`sips:` URI.
pub fn host(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    if !is_sip(scheme) {
        return None;
    }
    let after = rest.rfind('@').map_or(rest, |at| &rest[at + 1..]);
    let end = after.find([';', '?']).unwrap_or(after.len());
    Some(&after[..end])
}

/// The URI with its user part (or `tel:` number) replaced.
///
/// ```
/// assert_eq!(
///     sluice_sdk::uri::with_user("sip:+15552234567@h;user=phone", "15552234567").as_deref(),
///     Some("sip:15552234567@h;user=phone")
/// );
/// ```
pub fn with_user(uri: &str, new_user: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        let params = rest.find(';').map_or("", |i| &rest[i..]);
        return Some(format!("{scheme}:{new_user}{params}"));
    }
    if !is_sip(scheme) {
        return None;
    }
    let at = rest.rfind('@')?;
    let userinfo = &rest[..at];
    let password = userinfo.find(':').map_or("", |i| &userinfo[i..]);
    Some(format!("{scheme}:{new_user}{password}{}", &rest[at..]))
}

/// A `sip:` URI's global number (`+` and digits) as a `tel:` URI (`sip:+1555@h;user=phone` →
/// `tel:+1555`). A local number has no `tel:` form without a `phone-context` (RFC 3966): see
/// [`to_tel_with`].
///
/// ```
/// assert_eq!(sluice_sdk::uri::to_tel("sip:+12345678@gw.example.com;user=phone").as_deref(), Some("tel:+12345678"));
/// assert_eq!(sluice_sdk::uri::to_tel("tel:+1").as_deref(), Some("tel:+1"));
/// assert_eq!(sluice_sdk::uri::to_tel("sip:4155550123@gw.example.com"), None);
/// ```
pub fn to_tel(uri: &str) -> Option<String> {
    to_tel_with(uri, "", None)
}

/// A `sip:` URI's number as a valid `tel:` URI (RFC 3966): a global number as it is
/// (`tel:+14155550123`); a national one made global when it is a valid number of
/// `default_country` (`4155550123` with `1` → `tel:+14155550123`); any other local number
/// (an extension, a short code) with `;phone-context=` when one is given; else `None`, never
/// an invalid URI.
///
/// ```
/// use sluice_sdk::uri::to_tel_with;
/// assert_eq!(to_tel_with("sip:4155550123@h", "1", None).as_deref(), Some("tel:+14155550123"));
/// assert_eq!(to_tel_with("sip:+44 20 7946 0018@h", "1", None).as_deref(), Some("tel:+442079460018"));
/// assert_eq!(to_tel_with("sip:100@h", "1", Some("pbx.example.com")).as_deref(), Some("tel:100;phone-context=pbx.example.com"));
/// assert_eq!(to_tel_with("sip:100@h", "1", None), None);
/// ```
pub fn to_tel_with(
    uri: &str,
    default_country: &str,
    phone_context: Option<&str>,
) -> Option<String> {
    let (scheme, _) = uri.split_once(':')?;
    if scheme.eq_ignore_ascii_case("tel") {
        return Some(uri.to_string());
    }
    let number = user(uri)?;
    let visual = |c: char| matches!(c, '-' | '.' | '(' | ')' | ' ');
    // Each URI is written once into a string of its final size: this runs on every new call
    // of a plugin that uses it, inside the plugin, where less code run is less time.
    if let Some(digits) = number.strip_prefix('+') {
        const PREFIX: &str = "tel:+";
        let mut tel = String::with_capacity(digits.len().saturating_add(PREFIX.len()));
        tel.push_str(PREFIX);
        for c in digits.chars().filter(|&c| !visual(c)) {
            if !c.is_ascii_digit() {
                return None;
            }
            tel.push(c);
        }
        return (tel.len() > PREFIX.len()).then_some(tel);
    }
    if !default_country.is_empty() {
        if let Some(n) = crate::e164::E164::parse(number, default_country) {
            return Some(["tel:", &n.to_plus()].concat());
        }
    }
    let context = phone_context.filter(|c| valid_context(c))?;
    let local = !number.is_empty()
        && number
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, '*' | '#') || visual(c));
    local.then(|| ["tel:", number, ";phone-context=", context].concat())
}

/// How the `tel:` rule sets write numbers: the settings `default_country` (`1` by default) and
/// `phone_context` (none by default), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelSettings {
    pub default_country: String,
    pub phone_context: Option<String>,
}

impl TelSettings {
    pub fn from_settings() -> Result<TelSettings, String> {
        let default_country = crate::e164::default_country_setting()?;
        let phone_context = crate::setting("phone_context");
        if let Some(c) = phone_context.as_deref().filter(|c| !valid_context(c)) {
            return Err(format!(
                "phone_context = \"{c}\": expected a domain name or a + prefix such as +1"
            ));
        }
        Ok(TelSettings {
            default_country,
            phone_context,
        })
    }

    /// [`to_tel_with`] with these settings.
    pub fn to_tel(&self, uri: &str) -> Option<String> {
        to_tel_with(uri, &self.default_country, self.phone_context.as_deref())
    }
}

/// A `phone-context`: a global number prefix (`+1`) or a domain name (RFC 3966 §5.1.5).
fn valid_context(c: &str) -> bool {
    match c.strip_prefix('+') {
        Some(d) => !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()),
        None => {
            !c.is_empty()
                && c.len() <= 253
                && c.split('.').all(|l| {
                    !l.is_empty()
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }
    }
}

/// A `tel:` URI as a `sip:` URI at `host`, with `user=phone`.
///
/// ```
/// assert_eq!(sluice_sdk::uri::tel_to_sip("tel:+1555", "example.com").as_deref(), Some("sip:+1555@example.com;user=phone"));
/// ```
pub fn tel_to_sip(uri: &str, host: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("tel") {
        return None;
    }
    let number = rest.split(';').next()?;
    Some(format!("sip:{number}@{host};user=phone"))
}

/// The URI inside a name-addr or addr-spec header value (`"A" <sip:1@h>;tag=x` → `sip:1@h`).
pub fn name_addr_uri(value: &str) -> Option<&str> {
    let v = value.trim();
    match (v.find('<'), v.find('>')) {
        (Some(open), Some(close)) if open < close => Some(&v[open + 1..close]),
        (None, None) => Some(v.split(';').next().unwrap_or(v).trim()),
        _ => None,
    }
}

/// The header value with the URI inside replaced; display name and parameters stay. A value
/// without angle brackets gets them, so that its parameters stay header parameters.
///
/// ```
/// assert_eq!(
///     sluice_sdk::uri::with_name_addr_uri("\"Al\" <sip:100@h>;tag=1", "tel:+1555").as_deref(),
///     Some("\"Al\" <tel:+1555>;tag=1")
/// );
/// ```
pub fn with_name_addr_uri(value: &str, new_uri: &str) -> Option<String> {
    let v = value.trim();
    match (v.find('<'), v.find('>')) {
        (Some(open), Some(close)) if open < close => {
            Some(format!("{}<{new_uri}>{}", &v[..open], &v[close + 1..]))
        }
        (None, None) => {
            let params = v.find(';').map_or("", |i| &v[i..]);
            Some(format!("<{new_uri}>{params}"))
        }
        _ => None,
    }
}

/// A header parameter (`;name=value`) of a header value, outside its angle brackets.
///
/// ```
/// assert_eq!(sluice_sdk::uri::param("<sip:a@b;lr>;tag=12;x", "tag"), Some("12"));
/// assert_eq!(sluice_sdk::uri::param("<sip:a@b;lr>;tag=12;x", "x"), Some(""));
/// assert_eq!(sluice_sdk::uri::param("<sip:a@b;lr>;tag=12", "lr"), None);
/// ```
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let start = value.rfind('>').map_or(0, |i| i + 1);
    value[start..]
        .split(';')
        .skip(1)
        .map(|p| p.trim())
        .find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            k.trim()
                .eq_ignore_ascii_case(name)
                .then_some(v.trim().trim_matches('"'))
        })
}

/// The header value with parameter `name` set to `value` (added or replaced); an empty value
/// writes a flag parameter.
///
/// ```
/// assert_eq!(sluice_sdk::uri::with_param("<sip:a@b>;tag=1", "tag", "2"), "<sip:a@b>;tag=2");
/// assert_eq!(sluice_sdk::uri::with_param("<sip:a@b>", "x", ""), "<sip:a@b>;x");
/// ```
pub fn with_param(value: &str, name: &str, new_value: &str) -> String {
    let mut out = without_param(value, name);
    out.push(';');
    out.push_str(name);
    if !new_value.is_empty() {
        out.push('=');
        out.push_str(new_value);
    }
    out
}

/// The header value without parameter `name`.
///
/// ```
/// assert_eq!(sluice_sdk::uri::without_param("<sip:a@b;x=1>;x=2;y", "x"), "<sip:a@b;x=1>;y");
/// ```
pub fn without_param(value: &str, name: &str) -> String {
    let start = value
        .rfind('>')
        .map_or(value.find(';').unwrap_or(value.len()), |i| i + 1);
    let (head, params) = value.split_at(start);
    let mut out = head.to_string();
    for p in params.split(';').skip(1) {
        let key = p.split('=').next().unwrap_or("").trim();
        if !key.eq_ignore_ascii_case(name) && !p.trim().is_empty() {
            out.push(';');
            out.push_str(p.trim());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_hosts() {
        assert_eq!(user("sip:alice:pw@h"), Some("alice"));
        assert_eq!(user("mailto:x@y"), None);
        assert_eq!(user("tel:"), None);
        assert_eq!(
            host("sip:1@gw.example.com:5080;transport=tcp"),
            Some("gw.example.com:5080")
        );
        assert_eq!(with_user("sip:a:pw@h", "b").as_deref(), Some("sip:b:pw@h"));
        assert_eq!(with_user("tel:+1;x=y", "+2").as_deref(), Some("tel:+2;x=y"));
        assert_eq!(with_user("sip:h", "b"), None);
    }

    #[test]
    fn tel_uris_are_valid_or_none() {
        let tel = |u: &str| to_tel_with(u, "1", Some("+44"));
        assert_eq!(
            tel("sip:+1 (555) 200-1111@h").as_deref(),
            Some("tel:+15552001111")
        );
        assert_eq!(
            tel("sips:+15552001111@h;user=phone").as_deref(),
            Some("tel:+15552001111")
        );
        assert_eq!(tel("TEL:+1;x=y").as_deref(), Some("TEL:+1;x=y"));
        // A `+` with no digit, or with anything but digits and visual separators: none.
        assert_eq!(tel("sip:+@h"), None);
        assert_eq!(tel("sip:+-.@h"), None);
        assert_eq!(tel("sip:+1555a@h"), None);
        assert_eq!(tel("sip:5552001111@h").as_deref(), Some("tel:+15552001111"));
        assert_eq!(
            tel("sip:12#@h").as_deref(),
            Some("tel:12#;phone-context=+44")
        );
        assert_eq!(to_tel_with("sip:12@h", "", None), None);
        assert_eq!(to_tel("sip:alice@h"), None);
    }

    #[test]
    fn name_addr_values() {
        assert_eq!(name_addr_uri("sip:1@h;tag=2"), Some("sip:1@h"));
        assert_eq!(name_addr_uri("<sip:1@h"), None);
        assert_eq!(
            with_name_addr_uri("sip:1@h;tag=2", "tel:+1").as_deref(),
            Some("<tel:+1>;tag=2")
        );
    }
}
