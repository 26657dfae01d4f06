//! `header-rules`: general header rewriting configured in the Sluice configuration. Rules run
//! in order on the messages of the methods listed (INVITE by default), in the direction the
//! rule set is configured for on the trunk (`outbound_rules`: toward the trunk;
//! `inbound_rules`: toward the PBX).
//!
//! ```toml
//! [plugin.acme-out]
//! module = "header-rules"
//! [plugin.acme-out.settings]
//! methods = ["INVITE"]                 # or ["*"] for every request; "responses" adds those
//! rules = [
//!   "add X-Account: 1234",             # add a line
//!   "set User-Agent: PBX",             # replace every line by one
//!   "remove P-Preferred-Identity",     # remove every line
//!   "copy X-Src -> X-Dst",             # the value of X-Src (sent, else as received) into X-Dst
//!   "replace Diversion /sip:\\+?1?(\\d{10})@/sip:+1$1@/",   # regex replace in each line
//! ]
//! ```
//!
//! `replace` takes any delimiter after the header name (`|a|b|` works too) and `$1`, `${name}`
//! in the replacement. A rule that does not parse refuses the plugin at load.
//!
//! When every rule is fixed text (`add`, `set`, `remove`) that a declaration may edit, the
//! plugin declares them ([`Plugin::header_edits`]) and Sluice makes them itself, without
//! entering the plugin per message.

use regex_lite::Regex;
use sluice_sdk::declared::DeclaredEdits;
use sluice_sdk::{export_plugin, CallContext, HeaderEdit, Interest, Message, Plugin, Verdict};

#[derive(Debug)]
enum Rule {
    Add(String, String),
    Set(String, String),
    Remove(String),
    Copy(String, String),
    Replace(String, Regex, String),
}

fn name_value(rest: &str, rule: &str) -> Result<(String, String), String> {
    let (name, value) = rest
        .split_once(':')
        .ok_or_else(|| format!("`{rule}`: expected `NAME: VALUE`"))?;
    Ok((header_name(name, rule)?, value.trim().to_string()))
}

fn header_name(name: &str, rule: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
    {
        return Err(format!("`{rule}`: `{name}` is not a header name"));
    }
    Ok(name.to_string())
}

fn parse_rule(rule: &str) -> Result<Rule, String> {
    let rule_t = rule.trim();
    let (verb, rest) = rule_t
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("`{rule}`: expected `VERB ARGUMENTS`"))?;
    let rest = rest.trim();
    match verb.to_ascii_lowercase().as_str() {
        "add" => name_value(rest, rule).map(|(n, v)| Rule::Add(n, v)),
        "set" => name_value(rest, rule).map(|(n, v)| Rule::Set(n, v)),
        "remove" => header_name(rest, rule).map(Rule::Remove),
        "copy" => {
            let (from, to) = rest
                .split_once("->")
                .ok_or_else(|| format!("`{rule}`: expected `copy SOURCE -> DESTINATION`"))?;
            Ok(Rule::Copy(header_name(from, rule)?, header_name(to, rule)?))
        }
        "replace" => {
            let (name, expr) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("`{rule}`: expected `replace NAME /REGEX/REPLACEMENT/`"))?;
            let expr = expr.trim();
            let delim = expr
                .chars()
                .next()
                .ok_or_else(|| format!("`{rule}`: missing /REGEX/REPLACEMENT/"))?;
            let parts: Vec<&str> = expr[delim.len_utf8()..].split(delim).collect();
            if parts.len() != 3 || !parts[2].is_empty() {
                return Err(format!(
                    "`{rule}`: expected {delim}REGEX{delim}REPLACEMENT{delim}"
                ));
            }
            let re = Regex::new(parts[0]).map_err(|e| format!("`{rule}`: {e}"))?;
            Ok(Rule::Replace(
                header_name(name, rule)?,
                re,
                parts[1].to_string(),
            ))
        }
        other => Err(format!(
            "`{rule}`: unknown verb `{other}` (add, set, remove, copy, replace)"
        )),
    }
}

pub struct HeaderRules {
    rules: Vec<Rule>,
    methods: Vec<String>,
    responses: bool,
}

impl HeaderRules {
    fn apply(&self, msg: &mut Message) -> Result<(), sluice_sdk::EditError> {
        for rule in &self.rules {
            match rule {
                Rule::Add(n, v) => msg.add_header(n, v)?,
                Rule::Set(n, v) => msg.set_header(n, v)?,
                Rule::Remove(n) => {
                    msg.remove_header(n)?;
                }
                Rule::Copy(from, to) => {
                    let value = msg.header(from).or_else(|| msg.original_header(from));
                    if let Some(v) = value {
                        msg.set_header(to, &v)?;
                    }
                }
                Rule::Replace(n, re, with) => {
                    let lines = msg.headers(n);
                    let new: Vec<String> = lines
                        .iter()
                        .map(|l| re.replace_all(l, with.as_str()).into_owned())
                        .collect();
                    if new != lines {
                        // set replaces every line by the first; the others follow.
                        msg.set_header(n, &new[0])?;
                        for l in &new[1..] {
                            msg.add_header(n, l)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Plugin for HeaderRules {
    fn new() -> Result<Self, String> {
        let rules = sluice_sdk::setting_list("rules")
            .iter()
            .map(|r| parse_rule(r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut methods = sluice_sdk::setting_list("methods");
        if methods.is_empty() {
            methods.push("INVITE".into());
        }
        let responses = methods.iter().any(|m| m == "responses");
        Ok(HeaderRules {
            rules,
            methods,
            responses,
        })
    }

    fn interest(&self) -> Interest {
        let methods: Vec<&str> = self
            .methods
            .iter()
            .map(String::as_str)
            .filter(|m| *m != "responses")
            .collect();
        let i = Interest::none().requests(&methods);
        if self.responses {
            i.responses(&["*"])
        } else {
            i
        }
    }

    /// Rules of fixed text only (add, set, remove) that Sluice can make itself: declared, so
    /// that Sluice makes them without entering the plugin. Any other rule (copy, replace, an
    /// edit of From or To) keeps them all in the hooks, in order.
    fn header_edits(&self) -> Option<Vec<HeaderEdit>> {
        let edits = self
            .rules
            .iter()
            .map(|r| match r {
                Rule::Add(n, v) => Some(HeaderEdit::Add(n.clone(), v.clone())),
                Rule::Set(n, v) => Some(HeaderEdit::Set(n.clone(), v.clone())),
                Rule::Remove(n) => Some(HeaderEdit::Remove(n.clone())),
                Rule::Copy(..) | Rule::Replace(..) => None,
            })
            .collect::<Option<Vec<_>>>()?;
        DeclaredEdits::new(&edits).is_ok().then_some(edits)
    }

    // Only the messages of the interest above reach the hooks (Sluice and the SDK's harness
    // both filter by it), so the methods need no second look here.
    fn on_request(&mut self, _ctx: &CallContext, msg: &mut Message) -> Verdict {
        if let Err(e) = self.apply(msg) {
            sluice_sdk::warn!("header rule refused: {e}");
        }
        Verdict::Continue
    }

    fn on_response(&mut self, _ctx: &CallContext, msg: &mut Message) {
        if let Err(e) = self.apply(msg) {
            sluice_sdk::warn!("header rule refused: {e}");
        }
    }
}

export_plugin!(HeaderRules);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{invite, response, Harness};

    fn harness(rules: &[&str]) -> Harness<HeaderRules> {
        Harness::<HeaderRules>::new().setting_list("rules", rules)
    }

    #[test]
    fn every_verb() {
        let mut h = harness(&[
            "add X-Account: 1234",
            "add X-Account: 5678",
            "set User-Agent: PBX",
            "remove P-Asserted-Identity",
            "copy X-Account -> X-Copy",
            "copy X-Only-Original -> X-From-Original",
            r"replace To /sip:\+(\d+)@/sip:00$1@/",
        ]);
        let original = invite("+15552234567", "100").replace(
            "CSeq: 1 INVITE\r\n",
            "CSeq: 1 INVITE\r\nX-Only-Original: abc\r\n",
        );
        let out = h.run_with_original(
            &CallContext::outbound("loop"),
            &invite("+15552234567", "100"),
            &original,
        );
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.headers("X-Account"), ["1234", "5678"]);
        assert_eq!(out.header("User-Agent"), Some("PBX"));
        assert_eq!(out.header("P-Asserted-Identity"), None);
        assert_eq!(out.header("X-Copy"), Some("1234"));
        assert_eq!(out.header("X-From-Original"), Some("abc"));
        assert_eq!(
            out.header("To"),
            Some("<sip:0015552234567@trunk.example.com>")
        );
    }

    fn rules(rules: &[&str]) -> HeaderRules {
        HeaderRules {
            rules: rules.iter().map(|r| parse_rule(r).unwrap()).collect(),
            methods: vec!["INVITE".into()],
            responses: false,
        }
    }

    #[test]
    fn fixed_rules_are_declared_and_the_others_stay_in_the_hooks() {
        let fixed = rules(&["add X-A: 1", "remove Subject", "set User-Agent: PBX"]);
        assert_eq!(
            fixed.header_edits(),
            Some(vec![
                HeaderEdit::Add("X-A".into(), "1".into()),
                HeaderEdit::Remove("Subject".into()),
                HeaderEdit::Set("User-Agent".into(), "PBX".into()),
            ])
        );
        // Through the harness (which, as Sluice, makes declared edits without the hooks).
        let mut h = harness(&["add X-A: 1", "remove Subject", "set User-Agent: PBX"]);
        let text =
            invite("1", "2").replace("CSeq: 1 INVITE\r\n", "CSeq: 1 INVITE\r\nSubject: s\r\n");
        let out = h.run(&CallContext::outbound("loop"), &text);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.header("X-A"), Some("1"));
        assert_eq!(out.header("Subject"), None);
        assert_eq!(out.header("User-Agent"), Some("PBX"));
        for hooked in [
            &["add X-A: 1", "copy X-A -> X-B"][..],
            &["add X-A: 1", "replace X-A /1/2/"],
            &["set To: <sip:1@x>"],
            &["set Via: SIP/2.0/UDP evil"],
            &["add Expires: 60"],
        ] {
            assert_eq!(rules(hooked).header_edits(), None, "{hooked:?}");
        }
    }

    #[test]
    fn methods_filter() {
        let mut h = harness(&["add X-Seen: yes"]);
        let bye = invite("1", "2").replace("INVITE sip:", "BYE sip:");
        assert_eq!(
            h.run(&CallContext::outbound("loop"), &bye).header("X-Seen"),
            None
        );
        assert_eq!(
            h.run(&CallContext::outbound("loop"), &response(180, "Ringing"))
                .header("X-Seen"),
            None
        );
        let mut all = harness(&["add X-Seen: yes"]).setting_list("methods", &["*", "responses"]);
        assert_eq!(
            all.run(&CallContext::outbound("loop"), &bye)
                .header("X-Seen"),
            Some("yes")
        );
        assert_eq!(
            all.run(&CallContext::outbound("loop"), &response(180, "Ringing"))
                .header("X-Seen"),
            Some("yes")
        );
    }

    #[test]
    fn bad_rules_refuse_the_plugin() {
        for bad in [
            "frobnicate X",
            "add X-A",
            "set Bad Name: v",
            "copy X-A",
            "replace To /(/x/",
            "replace To /a/b",
        ] {
            let err = harness(&[bad]).init().unwrap_err();
            assert!(
                err.contains(bad.split_whitespace().next().unwrap()),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn managed_headers_are_refused_by_the_host_rules() {
        let mut h = harness(&["set Via: SIP/2.0/UDP evil"]);
        let out = h.run(&CallContext::outbound("loop"), &invite("1", "2"));
        assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
        assert!(out.errors[0].contains("managed"), "{:?}", out.errors);
    }
}
