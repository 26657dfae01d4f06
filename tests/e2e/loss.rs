//! Packet loss: 5 % of the datagrams between SIPp and Sluice dropped in both directions (an
//! nftables `numgen random` rule on the input hook for the lab's loopback addresses, silent to
//! the sender as real loss is; `tc netem` is not available
//! here). Retransmissions must carry every call through, and no call may be relayed twice.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sluice_e2e::{sipp_available, Lab, Peer, Transport};
use std::process::Command;
use std::time::Duration;

/// An nftables table that drops `percent` % of the UDP datagrams to `net`; removed on drop.
struct Loss {
    table: &'static str,
}

impl Loss {
    fn drop_percent(table: &'static str, net: &str, percent: u8) -> Loss {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", table])
            .status();
        let nft = |args: &[&str]| {
            let ok = Command::new("nft")
                .args(args)
                .status()
                .expect("nft (package nftables) is required for the loss test");
            assert!(ok.success(), "nft {args:?} failed");
        };
        nft(&["add", "table", "inet", table]);
        nft(&[
            "add",
            "chain",
            "inet",
            table,
            "lossy",
            "{ type filter hook input priority 0; }",
        ]);
        let rule = format!(
            "ip daddr {net} meta l4proto udp numgen random mod 100 lt {percent} counter drop"
        );
        let mut args = vec!["add", "rule", "inet", table, "lossy"];
        args.extend(rule.split_whitespace());
        nft(&args);
        Loss { table }
    }

    /// How many datagrams the rule dropped.
    fn dropped(&self) -> u64 {
        let out = Command::new("nft")
            .args(["list", "table", "inet", self.table])
            .output()
            .expect("nft");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", self.table])
            .status();
    }
}

#[test]
fn calls_complete_through_five_percent_loss_both_ways() {
    assert!(sipp_available(), "sipp (package sip-tester) is required");
    const BLOCK: u8 = 75;
    let lab = Lab::start(BLOCK, Transport::Udp);
    let loss = Loss::drop_percent("sluice_e2e_loss", &format!("127.0.{BLOCK}.0/24"), 5);
    let uas = lab.sipp(
        "uas",
        "uas_lossy.xml",
        Peer::Trunk,
        None,
        &["-timeout", "100"],
    );
    let uac = lab.sipp(
        "uac",
        "uac.xml",
        Peer::Pbx,
        Some(&lab.internal()),
        &["-m", "1000", "-r", "50", "-l", "400", "-d", "2000"],
    );
    let r = uac.wait(Duration::from_secs(120));
    let dropped = loss.dropped();
    drop(loss);
    let calls: std::collections::HashSet<String> = uas
        .received_messages()
        .iter()
        .filter(|m| m.starts_with("INVITE "))
        .filter_map(|m| {
            m.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("call-id:"))
                .map(str::to_string)
        })
        .collect();
    eprintln!(
        "{r:?}; {dropped} datagrams dropped; {} calls reached the trunk",
        calls.len()
    );
    assert!(dropped > 100, "the rule dropped datagrams: {dropped}");
    // Every call completes, except where SIPp's own UAS gives up: it cannot take a message
    // that arrives while it is about to resend its 200 (a retransmitted INVITE that crossed its
    // retransmitted 200, after its 100, 180 and 200 were all lost, then the ACK for it). Those
    // aborts are in its error log; no other failure is allowed.
    let uas_aborts = std::fs::read_to_string(lab.dir.path().join("uas.err"))
        .unwrap_or_default()
        .matches("Aborting call on unexpected message")
        .count() as u64;
    eprintln!("SIPp's UAS aborted {uas_aborts} calls on a crossing retransmission");
    assert_eq!(r.successful + r.failed, 1000, "{r:?}");
    assert!(r.failed <= uas_aborts, "{r:?}");
    // Each call reached the trunk as one call (a retransmitted INVITE is not a new call).
    assert_eq!(calls.len(), 1000);
}
