//! `biased`: only the first half of the workers (by id, rounded up) ever get jobs, in turn. The imbalance is the
//! point: it leaves the other half idle so that stealing has something to do.

use super::{Eligible, RoundRobin, Router};

#[derive(Debug, Default)]
pub struct Biased {
    inner: RoundRobin,
}

impl Router for Biased {
    fn pick(&mut self, workers: &dyn Eligible) -> Option<usize> {
        self.inner.pick_within(workers, workers.count().div_ceil(2))
    }
}

#[cfg(test)]
mod tests {
    use super::super::c;
    use super::*;

    #[test]
    fn only_the_first_half_is_ever_picked() {
        let mut r = Biased::default();
        let w = [c(5, true), c(5, true), c(5, true), c(5, true)];
        let picks: Vec<_> = (0..4).map(|_| r.pick(&w).unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn refuses_when_the_first_half_is_full_even_if_the_rest_has_room() {
        let mut r = Biased::default();
        let w = [c(0, true), c(0, true), c(5, true), c(5, true)];
        assert_eq!(r.pick(&w), None);
        // an odd count rounds the half up: with three workers the first two are candidates
        assert_eq!(r.pick(&[c(0, true), c(1, true), c(9, true)]), Some(1));
    }
}
