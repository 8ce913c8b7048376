//! The worker's runs table: one entry per lease taken out of the local queue, from that moment to its last
//! report (the controller's answer to its result), owning the lease's epoch and the way to stop its run.
//! With the local queue (leases not yet taken) it is everything the worker has: what heartbeats list and what a
//! re-registration claims. Stops, steals and fencing all go through it.
//!
//! # Guarantees
//! - Entries are keyed by job *and epoch*: stopping, refusing or rejecting one lease never touches another lease
//!   of the same job.
//! - A stop that arrives while a run's start is still being confirmed is kept: that run never starts. So a
//!   cancel the controller sends right after accepting a start is never lost.
//! - The slot and running counts and the entry itself are held by a [`Run`] guard: a task aborted at any await
//!   (a fence, a shutdown) gives them back when it is dropped, so the counts never stay high.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use burst_proto::v1::{Lease, LeaseRef};
use tokio::sync::oneshot;

type Key = (String, u64);

#[derive(Default)]
pub struct Runs {
    /// Guards an insert, a remove or a lookup, never an await.
    table: Mutex<HashMap<Key, Entry>>,
    /// Runs in a slot: starting or running.
    busy: AtomicU32,
    /// Runs whose start the controller confirmed and that have not ended.
    running: AtomicU32,
}

#[derive(Debug)]
enum Entry {
    /// Out of the queue, its start not yet confirmed; `stopped` if a stop came meanwhile.
    Starting { stopped: bool },
    /// Running: stopping it sends on `stop`.
    Running { stop: Option<oneshot::Sender<()>> },
    /// Ended; its result is with the reporter until the controller answers it.
    Reporting,
    /// On its way to a thief (a steal in progress).
    Moving,
}

impl Runs {
    /// Takes `lease` into a slot: it is in hand from now on, until the returned guard is dropped (or hands the
    /// lease to the reporter). A lease of the same job at an older epoch is stale by construction: it is stopped.
    pub fn take(&self, lease: &Lease) -> Run<'_> {
        let key = (lease.job_id.clone(), lease.epoch);
        {
            let mut table = self.lock();
            let stale: Vec<Key> = table.keys().filter(|(id, e)| *id == key.0 && *e < key.1).cloned().collect();
            for old in stale {
                if let Some(entry) = table.get_mut(&old) {
                    stop_entry(entry);
                }
            }
            table.insert(key.clone(), Entry::Starting { stopped: false });
        }
        self.busy.fetch_add(1, Ordering::Relaxed);
        Run { runs: self, key, running: false, reporting: false }
    }

    /// Marks `leases` as on their way to a thief until the guard is dropped.
    pub fn moving<'a>(&'a self, leases: &[Lease]) -> Moving<'a> {
        let keys: Vec<Key> = leases.iter().map(|l| (l.job_id.clone(), l.epoch)).collect();
        let mut table = self.lock();
        for key in &keys {
            table.insert(key.clone(), Entry::Moving);
        }
        Moving { runs: self, keys }
    }

    /// Stops the run of lease `r`: a running one is signalled, a starting one will not start. Says whether the
    /// lease was in hand.
    pub fn stop(&self, r: &LeaseRef) -> bool {
        let mut table = self.lock();
        match table.get_mut(&(r.job_id.clone(), r.epoch)) {
            Some(entry) => {
                stop_entry(entry);
                true
            }
            None => false,
        }
    }

    /// The controller answered the result of lease `r`: the worker lets go of it.
    pub fn answered(&self, r: &LeaseRef) {
        self.lock().remove(&(r.job_id.clone(), r.epoch));
    }

    /// Every lease in hand, with its epoch.
    pub fn claims(&self) -> Vec<LeaseRef> {
        self.lock().keys().map(|(id, epoch)| LeaseRef { job_id: id.clone(), epoch: *epoch }).collect()
    }

    /// The jobs in hand.
    pub fn known(&self) -> Vec<String> {
        self.lock().keys().map(|(id, _)| id.clone()).collect()
    }

    /// Stops every run and forgets every lease in hand (the worker lost them all); returns them.
    pub fn clear(&self) -> Vec<LeaseRef> {
        let mut table = self.lock();
        for entry in table.values_mut() {
            stop_entry(entry);
        }
        table.drain().map(|((id, epoch), _)| LeaseRef { job_id: id, epoch }).collect()
    }

    /// Runs in a slot: starting or running.
    pub fn busy(&self) -> u32 {
        self.busy.load(Ordering::Relaxed)
    }

    pub fn running(&self) -> u32 {
        self.running.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn stop_entry(entry: &mut Entry) {
    match entry {
        Entry::Starting { stopped } => *stopped = true,
        Entry::Running { stop } => {
            if let Some(stop) = stop.take() {
                let _ = stop.send(());
            }
        }
        Entry::Reporting | Entry::Moving => {}
    }
}

/// One lease in a slot. Dropping it frees the slot (and the running count), and forgets the lease unless it was
/// handed to the reporter.
pub struct Run<'a> {
    runs: &'a Runs,
    key: Key,
    running: bool,
    reporting: bool,
}

impl Run<'_> {
    /// The controller confirmed the start: the run may go, and is stopped through the returned receiver. `None`
    /// when a stop came first (or the lease is no longer in hand): it must not run.
    pub fn confirmed(&mut self) -> Option<oneshot::Receiver<()>> {
        let mut table = self.runs.lock();
        let entry = table.get_mut(&self.key)?;
        if let Entry::Starting { stopped: true } = entry {
            return None;
        }
        let (stop, stopped) = oneshot::channel();
        *entry = Entry::Running { stop: Some(stop) };
        drop(table);
        self.running = true;
        self.runs.running.fetch_add(1, Ordering::Relaxed);
        Some(stopped)
    }

    /// The run ended and its result goes to the reporter: the slot is free, the lease stays in hand until the
    /// controller answers (see [`Runs::answered`]).
    pub fn reporting(mut self) {
        if let Some(entry) = self.runs.lock().get_mut(&self.key) {
            *entry = Entry::Reporting;
            self.reporting = true;
        }
    }
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        self.runs.busy.fetch_sub(1, Ordering::Relaxed);
        if self.running {
            self.runs.running.fetch_sub(1, Ordering::Relaxed);
        }
        if !self.reporting {
            self.runs.lock().remove(&self.key);
        }
    }
}

/// Leases on their way to a thief; dropping it forgets them (moved, or back in the queue).
pub struct Moving<'a> {
    runs: &'a Runs,
    keys: Vec<Key>,
}

impl Drop for Moving<'_> {
    fn drop(&mut self) {
        let mut table = self.runs.lock();
        for key in &self.keys {
            if matches!(table.get(key), Some(Entry::Moving)) {
                table.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: &str, epoch: u64) -> Lease {
        Lease { job_id: id.into(), epoch, ..Lease::default() }
    }

    fn r(id: &str, epoch: u64) -> LeaseRef {
        LeaseRef { job_id: id.into(), epoch }
    }

    #[test]
    fn a_stop_before_the_start_is_confirmed_keeps_the_run_from_starting() {
        let runs = Runs::default();
        let mut run = runs.take(&lease("a", 1));
        assert!(runs.stop(&r("a", 1)), "in hand while its start is confirmed");
        assert!(run.confirmed().is_none(), "the stop came first: it must not run");
        drop(run);
        assert_eq!((runs.busy(), runs.running(), runs.claims().len()), (0, 0, 0));
    }

    #[test]
    fn a_stop_reaches_only_the_lease_it_names() {
        let runs = Runs::default();
        let mut new = runs.take(&lease("a", 2));
        assert!(!runs.stop(&r("a", 1)), "an older epoch is not this run");
        let mut stopped = new.confirmed().expect("confirmed");
        assert!(stopped.try_recv().is_err());
        assert!(runs.stop(&r("a", 2)));
        assert!(stopped.try_recv().is_ok());
    }

    #[test]
    fn a_newer_lease_of_the_same_job_stops_the_older_one() {
        let runs = Runs::default();
        let mut old = runs.take(&lease("a", 1));
        let _new = runs.take(&lease("a", 2));
        assert!(old.confirmed().is_none(), "the older lease is stale");
    }

    #[tokio::test]
    async fn an_aborted_run_gives_back_its_slot_and_running_count() {
        let runs = std::sync::Arc::new(Runs::default());
        let task = tokio::spawn({
            let runs = runs.clone();
            async move {
                let mut run = runs.take(&lease("a", 1));
                let _stop = run.confirmed();
                std::future::pending::<()>().await;
            }
        });
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while runs.running() == 0 && tokio::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!((runs.busy(), runs.running()), (1, 1));
        task.abort();
        let _ = task.await;
        assert_eq!((runs.busy(), runs.running(), runs.claims().len()), (0, 0, 0), "an aborted task leaks nothing");
    }

    #[test]
    fn a_reported_run_stays_in_hand_until_answered_and_a_steal_until_done() {
        let runs = Runs::default();
        let mut run = runs.take(&lease("a", 1));
        let _ = run.confirmed();
        run.reporting();
        assert_eq!((runs.busy(), runs.running()), (0, 0), "the slot is free");
        assert_eq!(runs.known(), ["a"], "but the lease is still claimed");
        runs.answered(&r("a", 1));
        let moving = runs.moving(&[lease("b", 3)]);
        assert_eq!(runs.claims(), [r("b", 3)]);
        drop(moving);
        assert!(runs.claims().is_empty());
    }
}
