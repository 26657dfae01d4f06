//! A plugin written against `wit/plugin.wit` directly, without the SDK (which gives
//! `host.reject-reason` only with the rejection it belongs to). By the To user of a request:
//!
//! - `1…`: gives the reason `Left Over` and lets the request through;
//! - `2…`: rejects with 403 and no reason (the standard phrase is due);
//! - `3…`: gives the reason `Left Over`, then traps;
//! - anything else: lets it through.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "../../../wit", world: "sluice:plugin/plugin" });

    use exports::sluice::plugin::call_hooks::Guest;
    use sluice::plugin::host::reject_reason;
    use sluice::plugin::message::SipMessage;
    use sluice::plugin::types::*;

    /// The To header's user part, `<sip:USER@…>`.
    fn to_user(msg: &SipMessage) -> String {
        let to = msg.get("To").unwrap_or_default();
        let start = to.find("sip:").map_or(0, |i| i + 4);
        to[start..]
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    struct Raw;

    impl Guest for Raw {
        fn info() -> PluginInfo {
            PluginInfo {
                name: "raw-reason".into(),
                version: "1.0.0".into(),
            }
        }
        fn init() -> Result<(), String> {
            Ok(())
        }
        fn get_interest() -> Interest {
            Interest {
                requests: vec!["INVITE".into()],
                responses: Vec::new(),
                numbers: false,
                attestation: false,
            }
        }
        fn on_message(_: CallInfo, msg: &SipMessage) -> Decision {
            match to_user(msg).chars().next() {
                Some('1') => {
                    reject_reason("Left Over");
                    Decision::Continue
                }
                Some('2') => Decision::Reject(403),
                Some('3') => {
                    reject_reason("Left Over");
                    panic!("trapped after giving a reason")
                }
                _ => Decision::Continue,
            }
        }
        fn normalize_number(_: NumberInfo, _: String) -> Option<String> {
            None
        }
        fn choose_attestation(_: CallInfo, _: &SipMessage) -> Option<Attestation> {
            None
        }
    }

    export!(Raw);
}
