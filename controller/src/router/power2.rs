//! `power2`: the power of two choices: two random eligible workers, the one with more room wins. Each is the
//! first eligible worker from a random position on (so one found in `O(log n)`); a worker right after a run of
//! full ones is drawn a little more often than the others, which only matters while most workers are full.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{Eligible, Router};

pub struct PowerOfTwo {
    rng: SmallRng,
}

impl PowerOfTwo {
    pub fn new(seed: u64) -> Self {
        PowerOfTwo { rng: SmallRng::seed_from_u64(seed) }
    }
}

impl Router for PowerOfTwo {
    fn pick(&mut self, workers: &dyn Eligible) -> Option<usize> {
        let n = workers.count();
        if n == 0 {
            return None;
        }
        let a = workers.next_from(self.rng.random_range(0..n), n)?;
        let b = match workers.next_from(self.rng.random_range(0..n), n)? {
            // The same worker twice: its next eligible neighbour is the second choice (itself if it is alone).
            b if b == a => workers.next_from(a + 1, n).unwrap_or(a),
            b => b,
        };
        Some(if workers.room(b) > workers.room(a) { b } else { a })
    }
}

#[cfg(test)]
mod tests {
    use super::super::c;
    use super::*;

    #[test]
    fn with_two_eligible_workers_the_roomier_one_wins() {
        let mut r = PowerOfTwo::new(7);
        let w = [c(1, true), c(0, true), c(9, true)];
        for _ in 0..100 {
            assert_eq!(r.pick(&w), Some(2));
        }
    }

    #[test]
    fn spreads_over_equal_workers() {
        let mut r = PowerOfTwo::new(7);
        let w = [c(4, true); 4];
        let mut seen = [0; 4];
        for _ in 0..400 {
            seen[r.pick(&w).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 40), "{seen:?}");
    }
}
