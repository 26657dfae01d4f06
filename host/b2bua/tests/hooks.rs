//! Where plugins touch calls, with a test implementation of the hooks: numbers, verdicts on
//! new calls and in-dialog requests, attestation, and the generation a call pins.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_b2bua::{
    Attestation, Generation, HookContext, HookVerdict, Hooks, NumberKind, NumberVerdict,
};
use sluice_sip::{HeaderName, Message, Method};
use sluice_transaction::Transport;

#[derive(Default)]
struct TestHooks {
    /// Refuse requests of this method with 403.
    refuse: Option<Method>,
    /// Fail the number hook as a fail-closed plugin would.
    number_fails: bool,
    pinned: i32,
    seen: Vec<String>,
}

impl Hooks for TestHooks {
    fn current(&self) -> Generation {
        3
    }
    fn pin(&mut self, _: Generation) {
        self.pinned += 1;
    }
    fn release(&mut self, _: Generation) {
        self.pinned -= 1;
    }
    fn active(&self, g: Generation, trunk: &str) -> bool {
        g == 3 && trunk == "loop"
    }
    fn number(
        &mut self,
        _: Generation,
        _: &HookContext<'_>,
        kind: NumberKind,
        n: &str,
    ) -> NumberVerdict {
        if self.number_fails {
            return NumberVerdict::Refuse { status: 503 };
        }
        match kind {
            NumberKind::Called => NumberVerdict::Replace(format!("+1{n}")),
            NumberKind::Calling => NumberVerdict::Keep,
        }
    }
    fn message(
        &mut self,
        _: Generation,
        ctx: &HookContext<'_>,
        msg: &mut Message,
        _: &mut Message,
    ) -> HookVerdict {
        self.seen.push(format!(
            "{:?} {}",
            ctx.leg,
            msg.method().map_or("response", |m| m.as_str())
        ));
        if msg.method().is_some() && msg.method() == self.refuse.as_ref() {
            return HookVerdict::Reject {
                status: 403,
                reason: "Refused By Test".into(),
            };
        }
        msg.headers.push(HeaderName::parse("X-Hooked"), "yes");
        HookVerdict::Continue
    }
    fn attestation(
        &mut self,
        _: Generation,
        _: &HookContext<'_>,
        _: &mut Message,
    ) -> Option<Attestation> {
        Some(Attestation::B)
    }
}

fn lab(hooks: TestHooks) -> Lab<TestHooks> {
    Lab::with_hooks(lab_config(Transport::Udp), hooks)
}

#[test]
fn a_new_call_runs_numbers_message_and_attestation_and_pins_its_generation() {
    let mut lab = lab(TestHooks::default());
    let Answered { b_invite, a_ok } = lab.established_call();
    assert_eq!(b_invite.request_uri(), Some("sip:+115552001111@127.0.0.20"));
    assert_eq!(b_invite.header(&HeaderName::parse("X-Hooked")), Some("yes"));
    assert_eq!(a_ok.header(&HeaderName::parse("X-Hooked")), Some("yes"));
    let calls = lab.engine.calls_snapshot(lab.now);
    assert_eq!(
        (calls[0].attestation, calls[0].generation),
        (Some(Attestation::B), 3)
    );
    assert_eq!(lab.engine.hooks().pinned, 1);
    // The call ends: its generation is released.
    let o = lab.from_pbx_text(&pbx_in_dialog("BYE", 2, &a_ok, "z9hG4bKbye", ""));
    let bye = only(&o, TRUNK)[0].clone();
    lab.from_trunk_text(&trunk_response(&bye, 200, "OK", ""));
    assert_eq!(lab.engine.active_calls(), 0);
    assert_eq!(lab.engine.hooks().pinned, 0);
}

#[test]
fn a_failed_number_hook_refuses_the_call_before_anything_is_sent() {
    let mut lab = lab(TestHooks {
        number_fails: true,
        ..TestHooks::default()
    });
    let o = lab.from_pbx_text(&pbx_invite());
    assert!(only(&o, TRUNK).is_empty());
    let r = only(&o, PBX)
        .into_iter()
        .find(|m| m.status() == Some(503))
        .expect("503");
    assert_eq!(r.reason(), Some("Plugin Failure"));
    assert_eq!(lab.engine.active_calls(), 0);
    assert_eq!(lab.engine.stats().calls_failed, 1);
    assert_eq!(lab.engine.hooks().pinned, 0);
}

#[test]
fn a_plugin_refusing_an_in_dialog_request_answers_it_and_the_call_goes_on() {
    let mut lab = lab(TestHooks {
        refuse: Some(Method::Info),
        ..TestHooks::default()
    });
    let Answered { a_ok, .. } = lab.established_call();
    let o = lab.from_pbx_text(&pbx_in_dialog("INFO", 2, &a_ok, "z9hG4bKinfo", ""));
    assert!(
        only(&o, TRUNK).is_empty(),
        "the INFO never reaches the trunk"
    );
    let r = only(&o, PBX);
    assert_eq!(statuses(&r), vec![403]);
    assert_eq!(r[0].reason(), Some("Refused By Test"));
    // The dialog is intact: an UPDATE still goes through.
    let o = lab.from_pbx_text(&pbx_in_dialog("UPDATE", 3, &a_ok, "z9hG4bKupd", ""));
    assert_eq!(only(&o, TRUNK)[0].method(), Some(&Method::Update));
    assert_eq!(lab.engine.active_calls(), 1);
}

/// A REFER carried out by Sluice (`transfer = "handle"`) places its new call through the
/// plugins as a call from the trunk: numbers, then the message chain; a plugin refusing the
/// new INVITE answers the REFER, and the call stays as it was.
#[test]
fn a_transfer_handled_by_sluice_runs_the_new_calls_hooks() {
    for refuse in [None, Some(Method::Invite)] {
        let mut cfg = lab_config(Transport::Udp);
        cfg.trunks[0].transfer = sluice_b2bua::config::Transfer::Handle;
        let mut lab = Lab::with_hooks(cfg, TestHooks::default());
        let up = lab.established_call();
        lab.engine.hooks_mut().seen.clear();
        lab.engine.hooks_mut().refuse = refuse.clone();
        let refer = with_headers(
            &trunk_in_dialog("REFER", 2, &up.b_invite, "z9hG4bKrefer", ""),
            "Refer-To: <sip:5559870000@127.0.0.20;user=phone>\r\n",
        );
        let o = lab.from_trunk_text(&refer);
        assert_eq!(
            lab.engine.hooks().seen,
            ["Internal INVITE"],
            "the new call's INVITE, toward the PBX"
        );
        if refuse.is_some() {
            assert_eq!(statuses(&only(&o, TRUNK)), [403]);
            assert!(only(&o, PBX).is_empty(), "no new leg");
            assert_eq!(lab.engine.active_calls(), 1, "the call goes on");
            continue;
        }
        assert_eq!(statuses(&only(&o, TRUNK)), [202]);
        let invite = only(&o, PBX)[0].clone();
        assert_eq!(invite.method(), Some(&Method::Invite));
        assert!(
            invite
                .request_uri()
                .unwrap()
                .starts_with("sip:+15559870000@"),
            "the number hook ran: {invite}"
        );
        assert_eq!(invite.header(&HeaderName::parse("X-Hooked")), Some("yes"));
    }
}
