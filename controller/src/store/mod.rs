//! Where the controller keeps job records so they outlive it.
//!
//! The scheduler's in-memory tables are the working copy; a [`JobStore`] is the record that a restarted
//! controller reloads. The scheduler hands the store every change *in order, while it still holds its lock*;
//! the store may write them later, grouped, and the returned [`Durable`] resolves once they are safe. A caller
//! acknowledges a submission only after awaiting it.
//!
//! # Guarantees a store must give
//! - Writes are applied in the order `write` was called.
//! - When a `Durable` resolves `Ok`, its writes and every earlier one survive a crash of the process.

mod memory;
mod record;
mod redb;
mod wal;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use memory::MemoryStore;
pub use record::JobRecord;
pub use redb::{FILE_NAME, RedbStore};

use crate::lifecycle::{Job, JobId};

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store is unavailable: {0}")]
    Unavailable(String),
    #[error("cannot open the job store {path}: {message}")]
    Open { path: PathBuf, message: String },
}

/// One change to the record.
#[derive(Clone, Debug)]
pub enum Write {
    Put(Box<Job>),
    Delete(JobId),
}

/// Resolves once the writes it stands for are durable.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

pub trait JobStore: Send + Sync + 'static {
    /// Every job on record, for a controller starting on this store.
    fn load(&self) -> Result<Vec<Job>, StoreError>;

    /// Queues `writes` after every earlier write; must not block on I/O (the scheduler lock is held). An empty
    /// `writes` is a barrier: it resolves once every earlier write is durable.
    fn write(&self, writes: Vec<Write>) -> Durable;

    /// Its commits so far, for a store that commits (the metrics page and `burst bench` show them).
    fn commits(&self) -> Option<Commits> {
        None
    }
}

/// How many commits a store made and how long they took: a histogram for the metrics page, and running totals
/// for whoever wants them without one. Cloning shares the counts.
#[derive(Clone, Debug)]
pub struct Commits {
    histogram: prometheus_client::metrics::histogram::Histogram,
    count: Arc<AtomicU64>,
    nanos: Arc<AtomicU64>,
}

impl Default for Commits {
    fn default() -> Self {
        // 250 µs .. ~4 s in doublings: an fsync on a fast disk to a stalled one.
        let buckets = prometheus_client::metrics::histogram::exponential_buckets(0.00025, 2.0, 15);
        Commits {
            histogram: prometheus_client::metrics::histogram::Histogram::new(buckets),
            count: Arc::default(),
            nanos: Arc::default(),
        }
    }
}

impl Commits {
    pub fn observe(&self, took: std::time::Duration) {
        self.histogram.observe(took.as_secs_f64());
        // Relaxed: counters read for display.
        self.count.fetch_add(1, Ordering::Relaxed);
        self.nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn histogram(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.histogram.clone()
    }

    /// Commits so far, and the seconds they took in all.
    pub fn totals(&self) -> (u64, f64) {
        (self.count.load(Ordering::Relaxed), self.nanos.load(Ordering::Relaxed) as f64 / 1e9)
    }
}
