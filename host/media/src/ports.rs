//! A side's RTP port range as even/odd pairs: RTP on the even port, RTCP on the odd one above
//! (RFC 3550 §11). Pairs are handed out least recently used first, so that a late packet of an
//! ended call rarely reaches a new one.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct PortPool {
    free: VecDeque<u16>,
    pairs: usize,
    /// The first RTP port and the range's last port.
    range: (u16, u16),
}

impl PortPool {
    /// Every even port from `first` (rounded up to even) whose odd neighbour is at most `last`.
    pub fn new(first: u16, last: u16) -> PortPool {
        let start = first.saturating_add(first % 2);
        let free: VecDeque<u16> = (start..last).step_by(2).collect();
        PortPool {
            pairs: free.len(),
            free,
            range: (start, last),
        }
    }

    /// The RTP ports handed out and not given back (an upgrade's successor must not use them).
    pub fn in_use(&self) -> Vec<u16> {
        let free: std::collections::HashSet<u16> = self.free.iter().copied().collect();
        (self.range.0..self.range.1)
            .step_by(2)
            .filter(|p| !free.contains(p))
            .collect()
    }

    /// Take `ports` out of the free list (another process uses them); returns the ones that
    /// were free here, to [`PortPool::give_back`] when that process is gone.
    pub fn set_aside(&mut self, ports: &[u16]) -> Vec<u16> {
        let wanted: std::collections::HashSet<u16> = ports.iter().copied().collect();
        let mut taken = Vec::new();
        self.free.retain(|p| {
            let keep = !wanted.contains(p);
            if !keep {
                taken.push(*p);
            }
            keep
        });
        taken
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

    #[test]
    fn ports_in_use_can_be_set_aside_by_another_pool() {
        let mut old = PortPool::new(20000, 20009);
        let a = old.take().unwrap();
        let b = old.take().unwrap();
        old.give_back(a);
        assert_eq!(old.in_use(), vec![b]);
        let mut new = PortPool::new(20000, 20009);
        let aside = new.set_aside(&old.in_use());
        assert_eq!(aside, vec![b]);
        let handed: Vec<u16> = std::iter::from_fn(|| new.take()).collect();
        assert!(!handed.contains(&b), "{handed:?}");
        assert_eq!(handed.len(), 4);
        for p in aside {
            new.give_back(p);
        }
        assert_eq!(new.take(), Some(b));
    }
}
