//! Routers choose which worker a queued job is leased to. They are plain functions over plain data: the
//! scheduler shows them the live workers in worker-id order through [`Eligible`], which finds the next eligible
//! worker in a range of positions from an index (so a pick costs `O(log n)` in the workers, not a scan), and the
//! router picks one. A slice of [`Candidate`]s is the same view, for tests.
//!
//! # Guarantees
//! A router only ever picks an *eligible* worker: one with room left under its slots + queue capacity and
//! enough free cpu/memory/gpu for the job. `None` leaves the job queued.

mod biased;
mod power2;
mod roundrobin;

pub use biased::Biased;
pub use power2::PowerOfTwo;
pub use roundrobin::RoundRobin;

/// A worker as a router sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Jobs it may still be leased: slots + queue capacity - jobs it holds.
    pub room: u32,
    /// Whether its free resources cover what the job requests.
    pub fits: bool,
}

impl Candidate {
    pub fn eligible(&self) -> bool {
        self.room > 0 && self.fits
    }
}

/// The workers as a router sees them, by position in worker-id order.
pub trait Eligible {
    /// How many workers there are, eligible or not.
    fn count(&self) -> usize;
    /// The first eligible worker at a position in `from..to`.
    fn first_in(&self, from: usize, to: usize) -> Option<usize>;
    /// The room of the worker at position `i`.
    fn room(&self, i: usize) -> u32;

    /// The first eligible worker at `from` or after it, wrapping around within the first `limit` positions.
    fn next_from(&self, from: usize, limit: usize) -> Option<usize> {
        let n = self.count().min(limit);
        let from = from.min(n);
        self.first_in(from, n).or_else(|| self.first_in(0, from))
    }
}

/// Candidates by position: the view routers' tests use.
impl<const N: usize> Eligible for [Candidate; N] {
    fn count(&self) -> usize {
        N
    }

    fn first_in(&self, from: usize, to: usize) -> Option<usize> {
        (from..to.min(N)).find(|&i| self[i].eligible())
    }

    fn room(&self, i: usize) -> u32 {
        self.get(i).map_or(0, |c| c.room)
    }
}

pub trait Router: Send {
    /// Picks the position of an eligible worker in `workers` (sorted by worker id), or `None`.
    fn pick(&mut self, workers: &dyn Eligible) -> Option<usize>;
}

/// The routers a controller can be configured with (`--router`, `controller.router`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    /// Each job to the next worker in turn that has room.
    #[default]
    Roundrobin,
    /// Two random workers with room; the one with more room wins.
    Power2,
    /// Only the first half of the workers (by id): a deliberate imbalance, for stealing experiments.
    Biased,
}

impl RouterKind {
    pub fn build(self, seed: u64) -> Box<dyn Router> {
        match self {
            RouterKind::Roundrobin => Box::new(RoundRobin::default()),
            RouterKind::Power2 => Box::new(PowerOfTwo::new(seed)),
            RouterKind::Biased => Box::new(Biased::default()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RouterKind::Roundrobin => "roundrobin",
            RouterKind::Power2 => "power2",
            RouterKind::Biased => "biased",
        }
    }
}

#[cfg(test)]
pub(crate) fn c(room: u32, fits: bool) -> Candidate {
    Candidate { room, fits }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_router_picks_a_full_or_unfit_worker() {
        for kind in [RouterKind::Roundrobin, RouterKind::Power2, RouterKind::Biased] {
            let mut r = kind.build(42);
            let workers = [c(0, true), c(5, false), c(0, false)];
            for _ in 0..50 {
                assert_eq!(r.pick(&workers), None, "{kind:?}");
            }
            let none: [Candidate; 0] = [];
            assert_eq!(r.pick(&none), None, "{kind:?}");
        }
    }
}
