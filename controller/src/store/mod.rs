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

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

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

    /// How long its commits take, for a store that commits (the metrics page shows it).
    fn commit_seconds(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        None
    }
}
