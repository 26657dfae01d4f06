//! The TCP framer: the input cut into two writes at a place the input chooses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_sip::{parse_message, Frame, StreamFramer};

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (a, b) = data.split_at(cut);
    let mut framer = StreamFramer::new(65_535);
    for part in [a, b] {
        framer.push(part);
        while let Some(frame) = framer.next_frame() {
            match frame {
                Ok(Frame::Message(m)) => {
                    let _ = parse_message(&m);
                }
                Ok(Frame::Ping) => {}
                Err(e) => {
                    if let Some(head) = e.head {
                        let _ = parse_message(&head);
                    }
                }
            }
        }
    }
});
