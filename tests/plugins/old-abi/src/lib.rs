//! Implements `sluice:plugin@0.0.1`, an interface version Sluice does not speak.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "wit", world: "sluice:plugin/plugin" });

    use exports::sluice::plugin::hooks::Guest;
    use sluice::plugin::message::SipMessage;
    use sluice::plugin::types::*;

    struct Old;

    impl Guest for Old {
        fn info() -> PluginInfo {
            PluginInfo {
                name: "old-abi".into(),
                version: "0.0.1".into(),
            }
        }
        fn init() -> Result<(), String> {
            Ok(())
        }
        fn on_message(_: CallContext, _: &SipMessage) -> Verdict {
            Verdict::Continue
        }
        fn normalize_number(_: NumberContext, _: String) -> Option<String> {
            None
        }
        fn choose_attestation(_: CallContext, _: &SipMessage) -> Option<Attestation> {
            None
        }
    }

    export!(Old);
}
