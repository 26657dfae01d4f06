//! The same edit two ways, for `cargo bench -p sluice-plugins --bench plugin_cost`.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "wit", world: "sluice:iface-bench/bench" });

    /// `<sip:+1555@host>` → `<tel:+1555>`
    fn tel_to(to: &str) -> Option<String> {
        let start = to.find("<sip:")? + 5;
        let at = start + to[start..].find('@')?;
        let close = at + to[at..].find('>')?;
        Some(format!(
            "{}<tel:{}>{}",
            &to[..start - 5],
            &to[start..at],
            &to[close + 1..]
        ))
    }

    struct B;

    impl Guest for B {
        fn by_handle(m: &SipMessage) -> bool {
            let _uri = m.request_uri();
            match m.get("To").as_deref().and_then(tel_to) {
                Some(new) => m.set("To", &new).is_ok(),
                None => false,
            }
        }

        fn by_copy(m: WholeMessage) -> Vec<Edit> {
            let _uri = m.start_line.split(' ').nth(1).map(str::to_string);
            m.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("To"))
                .and_then(|h| tel_to(&h.value))
                .map(|value| {
                    vec![Edit {
                        name: "To".into(),
                        value,
                    }]
                })
                .unwrap_or_default()
        }
    }

    export!(B);
}
