//! The durable store: one redb file, `<data dir>/burst.redb`, with a table of job records keyed by job id, and
//! its write-ahead log `burst.wal` ([`super::wal`]).
//!
//! Writes are group-committed: [`JobStore::write`] only queues a batch (in order) for the writer thread, which
//! takes every batch waiting and:
//! 1. appends their records to the log and syncs it (one write, one `fdatasync`): they are durable;
//! 2. resolves each batch's [`Durable`];
//! 3. keeps the last record of each job written ([`Pending`]) and applies those to redb in one transaction
//!    committed without a sync (redb keeps it in memory), after a commit that finds the oldest of them waiting
//!    for [`APPLY_EVERY`] or [`APPLY_AT`] jobs waiting, and when the writer stops; a job written several times
//!    meanwhile (submitted, leased, started, ended) is applied once (an idle store may keep a few waiting until
//!    the next write: they are in the log, which a restart replays);
//! 4. once the log passes [`CHECKPOINT_BYTES`], applies what waits and commits redb with a sync (everything so
//!    far is then in the redb file), then empties the log.
//!
//! Until a checkpoint the log is the record: what waits to be applied is in it, and a restart replays it.
//!
//! Under load many submissions share one sync; alone, a submission waits for one. Opening the store replays the
//! log into redb, checkpoints and empties it, so the log only ever holds what came after the last checkpoint.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use super::wal::{self, Entry, Wal};
use super::{Commits, Durable, JobRecord, JobStore, StoreError, Write};
use crate::lifecycle::Job;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// The file inside the data dir.
pub const FILE_NAME: &str = "burst.redb";
/// The store's page cache. redb's default (1 GiB) would grow the controller by a few hundred bytes per job kept
/// until it reached that, for little gain: ids grow with time, so writes land on the B-tree's newest pages and
/// the kernel's page cache serves the rest.
const CACHE_BYTES: usize = 64 << 20;
/// Batches folded into one transaction at most: bounds how long one commit holds the earliest caller.
const MAX_BATCHES_PER_COMMIT: usize = 4_096;
/// The log's size at which redb is checkpointed and the log emptied: large enough that a checkpoint's page
/// writes serve thousands of jobs' changes, small enough that replaying it at start takes a moment.
const CHECKPOINT_BYTES: u64 = 32 << 20;
/// How long durable writes may wait to be applied to redb, and how many jobs' (see [`Pending`]). A redb
/// transaction per group commit was a quarter of the writer thread's time with short jobs, where a group holds
/// a job or two.
const APPLY_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
const APPLY_AT: usize = 4_096;

struct Batch {
    writes: Vec<Write>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
    /// Guards the sender only so the store is `Sync`; sending is quick. `None` once the store is dropped.
    batches: std::sync::Mutex<Option<mpsc::Sender<Batch>>>,
    /// The writer thread, joined on drop so that the file is closed when the store is gone (a controller
    /// restarted in the same process opens it again at once).
    writer: Option<std::thread::JoinHandle<()>>,
    commits: Commits,
}

impl RedbStore {
    /// Opens (or creates) the store in `dir`. A file that is not a readable redb database is an error, never
    /// an empty store.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, CHECKPOINT_BYTES)
    }

    /// [`RedbStore::open`], checkpointing once the log holds `checkpoint_bytes`.
    fn open_with(dir: &Path, checkpoint_bytes: u64) -> Result<Self, StoreError> {
        let path = dir.join(FILE_NAME);
        let fail = |message: String| StoreError::Open { path: path.clone(), message };
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create the data dir: {e}")))?;
        let existed = path.exists();
        let db = redb::Builder::new().set_cache_size(CACHE_BYTES).create(&path).map_err(|e| fail(e.to_string()))?;
        let (mut log, entries, ignored) = Wal::open(dir)
            .map_err(|e| fail(format!("cannot read the log {}: {e}", dir.join(wal::FILE_NAME).display())))?;
        if !existed && !entries.is_empty() {
            // Replaying it would make a store of only the jobs changed since the last checkpoint.
            let _ = std::fs::remove_file(&path);
            return Err(fail(format!(
                "it is missing but its log {} holds {} records: the store was removed without its log; restore {} or remove the log too",
                log.path().display(),
                entries.len(),
                FILE_NAME
            )));
        }
        if ignored > 0 {
            // A crash in the middle of an append leaves a partial record, never acknowledged.
            warn!(path = %log.path().display(), bytes = ignored, "ignoring the end of the store's log: a record cut short or damaged");
        }
        // Create the table on first use, replay what the log holds beyond the last checkpoint, make it durable in
        // redb, and prove every record reads back before serving anything.
        let txn = db.begin_write().map_err(|e| fail(e.to_string()))?;
        {
            let mut table = txn.open_table(JOBS).map_err(|e| fail(e.to_string()))?;
            for entry in &entries {
                let applied = match entry {
                    Entry::Put { id, record } => table.insert(id.as_str(), record.as_slice()).map(|_| ()),
                    Entry::Delete(id) => table.remove(id.as_str()).map(|_| ()),
                };
                applied.map_err(|e| fail(format!("replaying the log: {e}")))?;
            }
        }
        txn.commit().map_err(|e| fail(e.to_string()))?;
        log.clear().map_err(|e| fail(format!("cannot empty the log {}: {e}", log.path().display())))?;
        if !entries.is_empty() {
            debug!(records = entries.len(), "replayed the store's log");
        }
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel::<Batch>();
        let writer_db = db.clone();
        let commits = Commits::default();
        let observed = commits.clone();
        let writer = std::thread::Builder::new()
            .name("burst-store".into())
            .spawn(move || write_loop(&writer_db, &mut log, checkpoint_bytes, rx, &observed))
            .map_err(|e| fail(format!("cannot start the writer thread: {e}")))?;
        Ok(RedbStore { db, path, batches: std::sync::Mutex::new(Some(tx)), writer: Some(writer), commits })
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
        let sent = self
            .batches
            .lock()
            .map(|tx| tx.as_ref().is_some_and(|tx| tx.send(Batch { writes, done }).is_ok()))
            .unwrap_or(false);
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Unavailable("the store's writer has stopped".into()));
            }
            durable.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the store's writer has stopped".into())))
        })
    }

    fn commits(&self) -> Option<Commits> {
        Some(self.commits.clone())
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has committed what was queued.
        if let Ok(mut tx) = self.batches.lock() {
            tx.take();
        }
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            error!(path = %self.path.display(), "the job store's writer thread panicked");
        }
    }
}

fn write_loop(db: &Database, log: &mut Wal, checkpoint_bytes: u64, rx: mpsc::Receiver<Batch>, commits: &Commits) {
    let mut records = Vec::new();
    let mut pending = Pending::default();
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
        let began = std::time::Instant::now();
        let result = commit(log, &batches, &mut records, &mut pending);
        commits.observe(began.elapsed());
        let result = result.map_err(|e| {
            error!(error = %e, batches = batches.len(), "job store commit failed");
            StoreError::Unavailable(e)
        });
        let ok = result.is_ok();
        for b in batches {
            let _ = b.done.send(result.clone());
        }
        if !ok {
            continue;
        }
        let full = log.len() >= checkpoint_bytes;
        if (full || pending.due())
            && let Err(e) = pending.apply(db)
        {
            // Still in the log, which stays the record; the next round tries again.
            error!(error = %e, jobs = pending.writes.len(), "applying durable writes to the job store failed");
            continue;
        }
        if full && let Err(e) = checkpoint(db, log) {
            // The log keeps growing and stays the record; the next checkpoint tries again.
            error!(error = %e, "job store checkpoint failed");
        }
    }
    if let Err(e) = pending.apply(db) {
        // Still in the log, which the next start replays.
        warn!(error = %e, "could not apply the last durable writes to the job store before stopping");
    }
    debug!("job store writer stopped");
}

/// Makes `batches` durable in the log and leaves their writes to be applied to redb. Each job record is
/// encoded once, into the log's buffer.
fn commit(log: &mut Wal, batches: &[Batch], records: &mut Vec<u8>, pending: &mut Pending) -> Result<(), String> {
    records.clear();
    let mut writes: Vec<(&str, Option<Range<usize>>)> = Vec::new();
    for w in batches.iter().flat_map(|b| &b.writes) {
        match w {
            Write::Put(job) => {
                let record = wal::encode_put(records, &job.id, |buf| job.to_record().encode_raw(buf));
                writes.push((job.id.as_str(), Some(record)));
            }
            Write::Delete(id) => {
                wal::encode_delete(records, id);
                writes.push((id.as_str(), None));
            }
        }
    }
    log.append(records).map_err(|e| format!("appending to the log {}: {e}", log.path().display()))?;
    for (id, record) in writes {
        pending.keep(id, record.map(|r| records[r].to_vec()));
    }
    Ok(())
}

/// Durable writes (in the log) not yet applied to redb: each job's last record, or `None` for a delete. In id
/// order, which is redb's: applied in that order they fill its pages from one end (in hash order they split
/// pages all over the tree, which took more memory and time in W4).
#[derive(Default)]
struct Pending {
    writes: std::collections::BTreeMap<String, Option<Vec<u8>>>,
    /// When the oldest of them was kept.
    since: Option<std::time::Instant>,
}

impl Pending {
    fn keep(&mut self, id: &str, record: Option<Vec<u8>>) {
        self.since.get_or_insert_with(std::time::Instant::now);
        match self.writes.get_mut(id) {
            Some(last) => *last = record,
            None => {
                self.writes.insert(id.to_string(), record);
            }
        }
    }

    fn due(&self) -> bool {
        self.writes.len() >= APPLY_AT || self.since.is_some_and(|t| t.elapsed() >= APPLY_EVERY)
    }

    /// Puts and deletes them in one redb transaction that is not synced; they are forgotten once it commits.
    fn apply(&mut self, db: &Database) -> Result<(), redb::Error> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let mut txn = db.begin_write()?;
        // Durable already, in the log: redb's copy becomes durable at the next checkpoint.
        txn.set_durability(redb::Durability::None)?;
        {
            let mut table = txn.open_table(JOBS)?;
            for (id, record) in &self.writes {
                match record {
                    Some(record) => {
                        table.insert(id.as_str(), record.as_slice())?;
                    }
                    None => {
                        table.remove(id.as_str())?;
                    }
                }
            }
        }
        txn.commit()?;
        self.writes.clear();
        self.since = None;
        Ok(())
    }
}

/// Commits redb with a sync, which makes every earlier unsynced commit durable in its file, then empties the log.
fn checkpoint(db: &Database, log: &mut Wal) -> Result<(), String> {
    let began = std::time::Instant::now();
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())?;
    let bytes = log.len();
    log.clear().map_err(|e| format!("emptying the log {}: {e}", log.path().display()))?;
    debug!(bytes, took_ms = began.elapsed().as_millis() as u64, "job store checkpointed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burst_proto::v1::JobSpec;

    use super::*;

    fn job(id: &str, submitted_at_ms: u64) -> Box<Job> {
        Box::new(Job::new(id.into(), Arc::new(JobSpec::default()), submitted_at_ms))
    }

    #[tokio::test]
    async fn a_group_keeps_each_jobs_last_write_and_it_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            // Several writes of one job and a put-then-delete, sent without waiting so they may share a commit:
            // the last write of each job wins.
            let first = store.write(vec![Write::Put(job("a", 1)), Write::Put(job("b", 1))]);
            let second = store.write(vec![Write::Put(job("a", 2)), Write::Delete("b".into())]);
            let third = store.write(vec![Write::Put(job("c", 3)), Write::Put(job("a", 3))]);
            first.await.unwrap();
            second.await.unwrap();
            third.await.unwrap();
            // A barrier after the writes resolves too.
            store.write(vec![]).await.unwrap();
            let (commits, seconds) = store.commits().unwrap().totals();
            assert!((1..=3).contains(&commits) && seconds > 0.0, "{commits} commits in {seconds} s");
        }
        let store = RedbStore::open(dir.path()).unwrap();
        let mut loaded: Vec<(String, u64)> =
            store.load().unwrap().into_iter().map(|j| (j.id.clone(), j.to_record().submitted_at_ms)).collect();
        loaded.sort();
        assert_eq!(loaded, vec![("a".to_string(), 3), ("c".to_string(), 3)]);
    }

    #[tokio::test]
    async fn acknowledged_writes_survive_in_the_log_a_torn_record_after_them_is_ignored_and_a_checkpoint_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(wal::FILE_NAME);
        {
            // Never checkpoints: what is acknowledged is durable in the log alone.
            let store = RedbStore::open_with(dir.path(), u64::MAX).unwrap();
            store.write(vec![Write::Put(job("a", 1)), Write::Put(job("b", 1))]).await.unwrap();
            store.write(vec![Write::Delete("b".into()), Write::Put(job("c", 2))]).await.unwrap();
            assert!(std::fs::metadata(&log).unwrap().len() > 0);
        }
        // A crash in the middle of the next append: half a record.
        let mut torn = Vec::new();
        wal::encode_put(&mut torn, "d", |b| b.extend_from_slice(b"never acknowledged"));
        let mut bytes = std::fs::read(&log).unwrap();
        // Right after the records, over the zeros the log was made longer with.
        let records = Wal::open(dir.path()).unwrap().0.len();
        bytes.truncate(records as usize);
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(&log, &bytes).unwrap();
        let ids = |store: &RedbStore| {
            let mut ids: Vec<String> = store.load().unwrap().into_iter().map(|j| j.id.clone()).collect();
            ids.sort();
            ids
        };
        {
            let store = RedbStore::open_with(dir.path(), 1).unwrap();
            assert_eq!(ids(&store), ["a", "c"]);
            assert_eq!(std::fs::metadata(&log).unwrap().len(), 0, "replayed into redb and emptied at open");
            // Past the threshold after this write: redb is checkpointed and the log emptied. Of a job written twice
            // in one group, redb gets the last write.
            store.write(vec![Write::Put(job("e", 3)), Write::Put(job("e", 4))]).await.unwrap();
            store.write(vec![]).await.unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::fs::metadata(&log).unwrap().len() > 0 {
                assert!(std::time::Instant::now() < deadline, "the log was never emptied");
                std::thread::yield_now();
            }
        }
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(ids(&store), ["a", "c", "e"]);
        let e = store.load().unwrap().into_iter().find(|j| j.id == "e").unwrap();
        assert_eq!(e.to_record().submitted_at_ms, 4, "the last write of the job, from redb");
    }

    #[tokio::test]
    async fn a_log_without_its_store_is_an_error_not_a_partial_store() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open_with(dir.path(), u64::MAX).unwrap();
            store.write(vec![Write::Put(job("a", 1))]).await.unwrap();
        }
        std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        let Err(e) = RedbStore::open(dir.path()) else { panic!("opened a log without its store") };
        assert!(e.to_string().contains(wal::FILE_NAME) && e.to_string().contains("1 records"), "{e}");
        // Removing the log too starts an empty store.
        std::fs::remove_file(dir.path().join(wal::FILE_NAME)).unwrap();
        assert!(RedbStore::open(dir.path()).unwrap().load().unwrap().is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_store_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"not a database").unwrap();
        let Err(e) = RedbStore::open(dir.path()) else { panic!("opened a file that is not a store") };
        assert!(e.to_string().contains(FILE_NAME), "{e}");
    }
}
