//! `roundrobin`: each job to the next eligible worker after the one chosen last.

use super::{Eligible, Router};

#[derive(Debug, Default)]
pub struct RoundRobin {
    /// Index to start the next search from.
    next: usize,
}

impl RoundRobin {
    /// Like [`Router::pick`], but only among the first `limit` workers.
    pub(super) fn pick_within(&mut self, workers: &dyn Eligible, limit: usize) -> Option<usize> {
        let chosen = workers.next_from(self.next, limit)?;
        self.next = chosen + 1;
        Some(chosen)
    }
}

impl Router for RoundRobin {
    fn pick(&mut self, workers: &dyn Eligible) -> Option<usize> {
        self.pick_within(workers, workers.count())
    }
}

#[cfg(test)]
mod tests {
    use super::super::c;
    use super::*;

    #[test]
    fn cycles_through_workers_in_order() {
        let mut r = RoundRobin::default();
        let w = [c(1, true), c(1, true), c(1, true)];
        let picks: Vec<_> = (0..6).map(|_| r.pick(&w).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skips_full_and_unfit_workers() {
        let mut r = RoundRobin::default();
        let w = [c(0, true), c(3, false), c(2, true)];
        assert_eq!(r.pick(&w), Some(2));
        assert_eq!(r.pick(&w), Some(2));
    }
}
