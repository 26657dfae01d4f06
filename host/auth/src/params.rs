//! The `name=value, name="quoted value"` lists of digest headers (RFC 3261 §25.1 `auth-param`).

/// The parameters of a digest header value after the scheme: names lowercased, quotes removed,
/// `\"` unescaped. `None` when the list is malformed (an unterminated quote, a name without
/// `=`).
pub fn parse(list: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ',') {
            return None;
        }
        let after = after.trim_start();
        let (value, remainder) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end?;
            (value, q.get(end.saturating_add(1)..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            let token = after.get(..end).unwrap_or("").trim();
            if token.contains(char::is_whitespace) {
                return None;
            }
            (token.to_string(), after.get(end..).unwrap_or(""))
        };
        out.push((name, value));
        let remainder = remainder.trim_start();
        rest = match remainder.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if remainder.is_empty() => "",
            None => return None,
        };
    }
    Some(out)
}

/// `"value"` with `"` and `\` escaped.
pub fn quote(value: &str) -> String {
    let mut s = String::with_capacity(value.len().saturating_add(2));
    s.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// The value of parameter `name` (lowercase).
pub fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_and_bare_values_with_commas_inside_quotes() {
        let p =
            parse(r#"realm="a, b", nonce="x\"y", algorithm=MD5 , qop="auth,auth-int""#).unwrap();
        assert_eq!(get(&p, "realm"), Some("a, b"));
        assert_eq!(get(&p, "nonce"), Some("x\"y"));
        assert_eq!(get(&p, "algorithm"), Some("MD5"));
        assert_eq!(get(&p, "qop"), Some("auth,auth-int"));
        assert_eq!(quote("x\"y"), r#""x\"y""#);
    }

    #[test]
    fn malformed_lists() {
        for bad in [r#"realm="open"#, "realm", "realm=a nonce=b", "=x", "a b=c"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert_eq!(parse("").unwrap(), vec![]);
    }
}
