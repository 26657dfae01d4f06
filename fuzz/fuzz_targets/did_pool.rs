//! DID pools: any text is parsed without panicking; two parsed pools are indexed (or refused
//! with an overlap that both really hold), and every number the input names is looked up
//! consistently with the pools themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_routing::{DidIndex, DidPool};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (a, b) = text.split_once('|').unwrap_or((text, ""));
    let (Ok(pa), Ok(pb)) = (DidPool::parse(a), DidPool::parse(b)) else {
        return;
    };
    let numbers = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty());
    match DidIndex::new(&[("a", &pa), ("b", &pb)]) {
        Ok(idx) => {
            for n in numbers {
                let want = match (pa.contains(n), pb.contains(n)) {
                    (true, false) => Some(0),
                    (false, true) => Some(1),
                    (false, false) => None,
                    (true, true) => panic!("{n} in both pools, yet indexed"),
                };
                assert_eq!(idx.owner(n), want, "{n}");
            }
        }
        Err(e) => assert!(pa.contains(&e.number) && pb.contains(&e.number), "{e}"),
    }
});
