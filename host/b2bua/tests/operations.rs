//! The engine under operation: drain, hang-up, reconfiguration, and a transport that fails.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_b2bua::testing::*;
use sluice_b2bua::NoHooks;
use sluice_sip::{HeaderName, Method};
use sluice_transaction::Transport;
use std::time::Duration;

#[test]
fn draining_refuses_new_calls_with_retry_after_the_time_left() {
    let mut lab = Lab::new();
    lab.engine
        .drain_until(lab.now + Duration::from_millis(12_300));
    let o = lab.from_pbx_text(&pbx_invite());
    let r = only(&o, PBX)
        .into_iter()
        .find(|m| m.status() == Some(503))
        .expect("503");
    assert_eq!(r.header(&HeaderName::RetryAfter), Some("13"));
    assert!(only(&o, TRUNK).is_empty());
}

#[test]
fn hang_up_of_a_ringing_call_answers_the_caller_and_cancels_the_callee() {
    let mut lab = Lab::new();
    let o = lab.from_pbx_text(&pbx_invite());
    let b_invite = only(&o, TRUNK)[0].clone();
    lab.from_trunk_text(&trunk_response(&b_invite, 180, "Ringing", ""));
    let key = lab.engine.call_keys()[0];
    lab.engine.hang_up(lab.now, key);
    let o = lab.out();
    assert_eq!(statuses(&only(&o, PBX)), [503]);
    let cancel = only(&o, TRUNK)[0].clone();
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    lab.from_trunk_text(&trunk_response(&cancel, 200, "OK", ""));
    let o = lab.from_trunk_text(&trunk_response(&b_invite, 487, "Request Terminated", ""));
    assert_eq!(only(&o, TRUNK)[0].method(), Some(&Method::Ack));
    assert_eq!(lab.engine.active_calls(), 0, "nothing left open");
}

#[test]
fn hang_up_during_a_drain_ends_both_legs() {
    let mut lab = Lab::new();
    lab.established_call();
    lab.engine.set_draining(true);
    let key = lab.engine.call_keys()[0];
    lab.engine.hang_up(lab.now, key);
    let o = lab.out();
    let byes: Vec<_> = o
        .iter()
        .filter(|(_, m)| m.method() == Some(&Method::Bye))
        .collect();
    assert_eq!(byes.len(), 2);
    assert_eq!(lab.engine.calls_snapshot(lab.now)[0].state, "ending");
    for (_, bye) in byes {
        let answer = if bye.call_id() == Some("pbx-call-1@127.0.0.10") {
            lab.from_pbx_text(&pbx_response(bye, 200, ""))
        } else {
            lab.from_trunk_text(&trunk_response(bye, 200, "OK", ""))
        };
        assert!(answer.is_empty());
    }
    assert_eq!(lab.engine.active_calls(), 0);
}

#[test]
fn reconfigured_timers_apply_to_what_is_armed_after() {
    let mut lab = Lab::new();
    let mut cfg = lab.engine.config().clone();
    cfg.timers.t1 = Duration::from_millis(100);
    lab.engine.reconfigure(cfg).unwrap();
    lab.from_pbx_text(&pbx_invite());
    // Timer A now fires after 100 ms, not 500 ms.
    let o = lab.run_for(Duration::from_millis(150), Duration::from_millis(50));
    let invites = only(&o, TRUNK)
        .iter()
        .filter(|m| m.method() == Some(&Method::Invite))
        .count();
    assert_eq!(invites, 1, "{o:?}");
    // A listener change is refused.
    let mut cfg = lab.engine.config().clone();
    cfg.listeners.pop();
    assert!(lab.engine.reconfigure(cfg).is_err());
}

#[test]
fn a_trunk_that_cannot_be_reached_fails_the_call_at_once() {
    let mut lab = Lab::with_hooks(lab_config(Transport::Tcp), NoHooks);
    let invite = pbx_invite().replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let o = lab.from_pbx_text(&invite);
    let b_invite = only(&o, TRUNK);
    assert_eq!(b_invite.len(), 1);
    assert_eq!(o[1].0.transport, Transport::Tcp);
    // The shell could not connect: the PBX gets its final answer now, not after Timer B.
    lab.engine
        .handle_transport_error(lab.now, Transport::Tcp, addr(TRUNK));
    let o = lab.out();
    assert_eq!(statuses(&only(&o, PBX)), vec![503]);
    assert_eq!(lab.engine.active_calls(), 0);
    assert_eq!(lab.engine.stats().transactions.transport_errors, 1);
    // An error elsewhere touches nothing.
    lab.engine
        .handle_transport_error(lab.now, Transport::Tcp, addr("127.0.0.99:5060"));
    assert!(lab.out().is_empty());
}

#[test]
fn a_trunks_maximum_call_duration_ends_a_hung_call_on_both_legs() {
    let mut cfg = sluice_b2bua::testing::lab_config(Transport::Udp);
    cfg.trunks[0].max_call_duration = Some(Duration::from_secs(60));
    let mut lab = Lab::with_hooks(cfg, NoHooks);
    lab.established_call();
    // Nothing before the limit ...
    let o = lab.run_for(Duration::from_secs(59), Duration::from_secs(1));
    assert!(
        o.iter().all(|(_, m)| m.method() != Some(&Method::Bye)),
        "{o:?}"
    );
    // ... then BYE on both legs.
    let o = lab.run_for(Duration::from_secs(2), Duration::from_millis(500));
    // One BYE per leg (and its retransmissions, same Call-ID).
    let byes: std::collections::BTreeSet<_> = o
        .iter()
        .filter(|(_, m)| m.method() == Some(&Method::Bye))
        .map(|(f, m)| (f.remote, m.call_id().map(str::to_string)))
        .collect();
    assert_eq!(byes.len(), 2, "{o:?}");
    assert!(
        byes.iter().any(|(r, _)| *r == addr(PBX)) && byes.iter().any(|(r, _)| *r == addr(TRUNK))
    );
    // Without a limit the same call goes on.
    let mut lab = Lab::new();
    lab.established_call();
    let o = lab.run_for(Duration::from_secs(120), Duration::from_secs(1));
    assert!(
        o.iter().all(|(_, m)| m.method() != Some(&Method::Bye)),
        "{o:?}"
    );
}

/// The ports of the media streams an engine opened since the test last looked.
fn opened_ports(lab: &mut Lab) -> Vec<u16> {
    lab.media
        .drain(..)
        .filter_map(|op| match op {
            sluice_media::MediaOp::Open { a, b, .. } => Some([a.port, b.port]),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn after_an_upgrade_the_old_calls_messages_reach_the_old_engine_and_new_calls_stay() {
    let mut old = Lab::with_hooks(lab_config_with_media(Transport::Udp), NoHooks);
    let up = old.established_call();
    let old_ports = opened_ports(&mut old);
    assert_eq!(old_ports.len(), 2);
    let h = old.engine.hand_over(old.now);
    assert!(h.call_ids.iter().any(|c| c == "pbx-call-1@127.0.0.10"));
    let b_call_id = up.b_invite.call_id().unwrap();
    assert!(b_call_id.starts_with(&h.call_id_token), "{b_call_id} {h:?}");
    let mut aside = h.internal_ports.clone();
    aside.extend(&h.external_ports);
    assert_eq!(aside, old_ports, "the ports the old call holds");

    let mut new = Lab::with_hooks(lab_config_with_media(Transport::Udp), NoHooks);
    new.engine.adopt(h.clone(), new.now);
    // The PBX hangs up the old call: the new engine passes the BYE on untouched.
    let bye = pbx_in_dialog("BYE", 2, &up.a_ok, "z9hG4bKbye1", "");
    assert!(new.from_pbx_text(&bye).is_empty(), "not answered here");
    let (flow, data) = new.forwarded.pop().expect("forwarded");
    assert_eq!(data.as_ref(), bye.as_bytes());
    old.engine.handle_datagram(old.now, flow, &data);
    let o = old.out();
    let b_bye = only(&o, TRUNK)[0].clone();
    assert_eq!(b_bye.method(), Some(&Method::Bye));
    // The trunk's answer to the old engine's BYE arrives at the new one: its Call-ID is the
    // old engine's.
    let ok = trunk_response(&b_bye, 200, "OK", "");
    assert!(new.from_trunk_text(&ok).is_empty());
    let (flow, data) = new.forwarded.pop().expect("forwarded");
    old.engine.handle_datagram(old.now, flow, &data);
    let o = old.out();
    assert_eq!(statuses(&only(&o, PBX)), [200], "the PBX's BYE answered");
    assert_eq!(
        old.engine.active_calls(),
        0,
        "the old call ended in the old engine"
    );

    // A new call is the new engine's own, on other ports and another Call-ID token.
    let o = new.from_pbx_text(&pbx_invite().replace("pbx-call-1@", "pbx-call-2@"));
    assert!(new.forwarded.is_empty());
    let b_invite = only(&o, TRUNK)[0].clone();
    assert!(!b_invite.call_id().unwrap().starts_with(&h.call_id_token));
    let ports = opened_ports(&mut new);
    assert_eq!(ports.len(), 2);
    assert!(ports.iter().all(|p| !old_ports.contains(p)), "{ports:?}");
    // Once the old process is gone, its ports come back and nothing more is forwarded.
    new.engine.predecessor_gone();
    assert!(
        !new.from_pbx_text(&bye).is_empty(),
        "481 from the new engine"
    );
    assert!(new.forwarded.is_empty());
}
