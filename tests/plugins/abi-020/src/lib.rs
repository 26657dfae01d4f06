//! A brand built against `sluice:plugin@0.2.0` as first published, before
//! `host.declare-numbers` was added (its `wit/` is that interface, unchanged): it writes every
//! number that has no `+` with one through `normalize-number`. Sluice must keep loading it and
//! calling its hook.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "wit", world: "sluice:plugin/plugin" });

    use exports::sluice::plugin::hooks::Guest;
    use sluice::plugin::message::SipMessage;
    use sluice::plugin::types::*;

    struct First;

    impl Guest for First {
        fn info() -> PluginInfo {
            PluginInfo {
                name: "abi-020".into(),
                version: "0.2.0".into(),
            }
        }
        fn init() -> Result<(), String> {
            Ok(())
        }
        fn get_interest() -> Interest {
            Interest {
                requests: Vec::new(),
                responses: Vec::new(),
                numbers: true,
                attestation: false,
            }
        }
        fn on_message(_: CallContext, _: &SipMessage) -> Verdict {
            Verdict::Continue
        }
        fn normalize_number(_: NumberContext, number: String) -> Option<String> {
            (!number.starts_with('+')).then(|| format!("+{number}"))
        }
        fn choose_attestation(_: CallContext, _: &SipMessage) -> Option<Attestation> {
            None
        }
    }

    export!(First);
}
