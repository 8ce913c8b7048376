//! `power2`: the power of two choices: two random eligible workers, the one with more room wins.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{Candidate, Router};

pub struct PowerOfTwo {
    rng: SmallRng,
}

impl PowerOfTwo {
    pub fn new(seed: u64) -> Self {
        PowerOfTwo { rng: SmallRng::seed_from_u64(seed) }
    }
}

impl Router for PowerOfTwo {
    fn pick(&mut self, workers: &[Candidate]) -> Option<usize> {
        let eligible: Vec<usize> = (0..workers.len()).filter(|&i| workers[i].eligible()).collect();
        match eligible.len() {
            0 => None,
            1 => Some(eligible[0]),
            n => {
                let a = self.rng.random_range(0..n);
                let b = (a + self.rng.random_range(1..n)) % n;
                let (a, b) = (eligible[a], eligible[b]);
                Some(if workers[b].room > workers[a].room { b } else { a })
            }
        }
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
