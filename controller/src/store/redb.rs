//! The durable store: one redb file, `<data dir>/burst.redb`, with a table of job records keyed by job id.
//!
//! Writes are group-committed: [`JobStore::write`] only queues a batch (in order) for the writer thread, which
//! takes every batch waiting, applies them in one transaction, commits (an fsync), and then resolves each
//! batch's [`Durable`]. Under load many submissions share one fsync; alone, a submission waits for one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;
use tracing::{error, warn};

use super::{Durable, JobRecord, JobStore, StoreError, Write};
use crate::lifecycle::Job;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// The file inside the data dir.
pub const FILE_NAME: &str = "burst.redb";
/// Batches folded into one transaction at most: bounds how long one commit holds the earliest caller.
const MAX_BATCHES_PER_COMMIT: usize = 4_096;

struct Batch {
    writes: Vec<Write>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
    /// Guards the sender only so the store is `Sync`; sending is quick.
    batches: std::sync::Mutex<mpsc::Sender<Batch>>,
}

impl RedbStore {
    /// Opens (or creates) the store in `dir`. A file that is not a readable redb database is an error, never
    /// an empty store.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(FILE_NAME);
        let fail = |message: String| StoreError::Open { path: path.clone(), message };
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create the data dir: {e}")))?;
        let db = Database::create(&path).map_err(|e| fail(e.to_string()))?;
        // Create the table on first use, and prove every record reads back before serving anything.
        let txn = db.begin_write().map_err(|e| fail(e.to_string()))?;
        txn.open_table(JOBS).map_err(|e| fail(e.to_string()))?;
        txn.commit().map_err(|e| fail(e.to_string()))?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel::<Batch>();
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("burst-store".into())
            .spawn(move || write_loop(&writer_db, rx))
            .map_err(|e| fail(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbStore { db, path, batches: std::sync::Mutex::new(tx) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl JobStore for RedbStore {
    fn load(&self) -> Result<Vec<Job>, StoreError> {
        let fail = |message: String| StoreError::Open { path: self.path.clone(), message };
        let txn = self.db.begin_read().map_err(|e| fail(e.to_string()))?;
        let table = txn.open_table(JOBS).map_err(|e| fail(e.to_string()))?;
        let mut jobs = Vec::new();
        for entry in table.iter().map_err(|e| fail(e.to_string()))? {
            let (key, value) = entry.map_err(|e| fail(e.to_string()))?;
            let record = JobRecord::decode(value.value())
                .map_err(|e| fail(format!("record {:?} does not decode: {e}", key.value())))?;
            let job =
                Job::from_record(record).ok_or_else(|| fail(format!("record {:?} is not a valid job", key.value())))?;
            jobs.push(job);
        }
        Ok(jobs)
    }

    fn write(&self, writes: Vec<Write>) -> Durable {
        let (done, durable) = oneshot::channel();
        let sent = self.batches.lock().map(|tx| tx.send(Batch { writes, done }).is_ok()).unwrap_or(false);
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Unavailable("the store's writer has stopped".into()));
            }
            durable.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the store's writer has stopped".into())))
        })
    }
}

fn write_loop(db: &Database, rx: mpsc::Receiver<Batch>) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while batches.len() < MAX_BATCHES_PER_COMMIT {
            match rx.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        // Every earlier group is committed already, so a group of barriers alone has nothing to wait for.
        if batches.iter().all(|b| b.writes.is_empty()) {
            for b in batches {
                let _ = b.done.send(Ok(()));
            }
            continue;
        }
        let result = commit(db, &batches).map_err(|e| {
            error!(error = %e, batches = batches.len(), "job store commit failed");
            StoreError::Unavailable(e.to_string())
        });
        for b in batches {
            let _ = b.done.send(result.clone());
        }
    }
    warn!("job store writer stopped");
}

fn commit(db: &Database, batches: &[Batch]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(JOBS)?;
        for w in batches.iter().flat_map(|b| &b.writes) {
            match w {
                Write::Put(job) => {
                    table.insert(job.id.as_str(), job.to_record().encode_to_vec().as_slice())?;
                }
                Write::Delete(id) => {
                    table.remove(id.as_str())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}
