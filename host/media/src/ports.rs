//! A side's RTP port range as even/odd pairs: RTP on the even port, RTCP on the odd one above
//! (RFC 3550 §11). Pairs are handed out least recently used first, so that a late packet of an
//! ended call rarely reaches a new one.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct PortPool {
    free: VecDeque<u16>,
    pairs: usize,
}

impl PortPool {
    /// Every even port from `first` (rounded up to even) whose odd neighbour is at most `last`.
    pub fn new(first: u16, last: u16) -> PortPool {
        let start = first.saturating_add(first % 2);
        let free: VecDeque<u16> = (start..last).step_by(2).collect();
        PortPool {
            pairs: free.len(),
            free,
        }
    }

    /// A pair's RTP port; `None` when the range is exhausted.
    pub fn take(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    pub fn give_back(&mut self, port: u16) {
        if port != 0 {
            self.free.push_back(port);
        }
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Pairs in the range.
    pub fn capacity(&self) -> usize {
        self.pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_pairs_least_recently_used_first() {
        let mut p = PortPool::new(20001, 20009);
        assert_eq!(p.capacity(), 4, "20002, 20004, 20006, 20008 (RTCP 20009)");
        let a = p.take().unwrap();
        assert_eq!(a, 20002);
        let b = p.take().unwrap();
        p.give_back(a);
        assert_eq!(p.take(), Some(20006), "a returned port waits its turn");
        assert_eq!(p.take(), Some(20008));
        assert_eq!(p.take(), Some(20002));
        assert_eq!(p.take(), None);
        p.give_back(b);
        assert_eq!(p.available(), 1);
        assert_eq!(PortPool::new(30000, 30000).capacity(), 0);
    }
}
