//! The worker's runs table: one entry per lease taken out of the local queue, from that moment to its last
//! report (the controller's answer to its result), owning the lease's epoch and the way to stop its run.
//! With the local queue (leases not yet taken) it is everything the worker has: what heartbeats list and what a
//! re-registration claims. Stops, steals and fencing all go through it.
//!
//! # Guarantees
//! - An entry is a job's lease at one epoch: stopping, refusing or rejecting one lease never touches another
//!   lease of the same job. A job has one entry: a newer lease of it replaces (and stops) the older, which is
//!   stale by construction. Every operation is one map lookup.
//! - A stop that arrives while a run's start is still being confirmed is kept: that run never starts. So a
//!   cancel the controller sends right after accepting a start is never lost.
//! - A stop for a lease not in hand yet (its lease and its stop came by different answers, the stop first) is
//!   kept too ([`EARLY_STOPS`] of them): the lease, once taken, never starts. A lease the controller started
//!   with its lease (`Lease.started`) has no start to confirm that would catch it otherwise.
//! - The slot and running counts and the entry itself are held by a [`Run`] guard: a task aborted at any await
//!   (a fence, a shutdown) gives them back when it is dropped, so the counts never stay high.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use burst_proto::v1::{Lease, LeaseRef};
use tokio::sync::oneshot;

/// Stops kept for leases not in hand yet, at most; the oldest are forgotten first (a stop for a lease that ended
/// long ago is kept for nothing).
pub const EARLY_STOPS: usize = 1024;

#[derive(Default)]
pub struct Runs {
    /// Each job's lease in hand, by job id, with its epoch, and the stops that came before their leases. Guards an
    /// insert, a remove or a lookup, never an await.
    table: Mutex<Table>,
    /// Leases taken from the queue: in a slot (starting or running), or confirmed ahead of one.
    busy: AtomicU32,
    /// Runs whose start the controller confirmed and that have not ended.
    running: AtomicU32,
}

#[derive(Default)]
struct Table {
    leases: HashMap<String, (u64, Entry)>,
    early_stops: VecDeque<LeaseRef>,
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
    /// So is `lease` itself if a newer one of its job is in hand already (a stale lease that came late): it never
    /// starts, and the newer one is left alone.
    pub fn take(self: &Arc<Self>, lease: &Lease) -> Run {
        let mut table = self.lock();
        let early = table.early_stops.iter().position(|r| r.job_id == lease.job_id && r.epoch == lease.epoch);
        let stopped = early.and_then(|at| table.early_stops.remove(at)).is_some();
        let newer_in_hand = table.leases.get(&lease.job_id).is_some_and(|(epoch, _)| *epoch > lease.epoch);
        if !newer_in_hand {
            let fresh = (lease.epoch, Entry::Starting { stopped });
            if let Some((_, mut older)) = table.leases.insert(lease.job_id.clone(), fresh) {
                stop_entry(&mut older);
            }
        }
        drop(table);
        self.busy.fetch_add(1, Ordering::Relaxed);
        let job = lease.job_id.clone();
        Run { runs: self.clone(), job, epoch: lease.epoch, superseded: newer_in_hand, running: false, reporting: false }
    }

    /// Marks `leases` as on their way to a thief until the guard is dropped.
    pub fn moving<'a>(&'a self, leases: &[Lease]) -> Moving<'a> {
        let refs: Vec<LeaseRef> = leases.iter().map(Lease::to_ref).collect();
        let mut table = self.lock();
        for r in &refs {
            table.leases.insert(r.job_id.clone(), (r.epoch, Entry::Moving));
        }
        Moving { runs: self, refs }
    }

    /// Stops the run of lease `r`: a running one is signalled, a starting one will not start, one not in hand
    /// yet will not start once taken. Says whether the lease was in hand.
    pub fn stop(&self, r: &LeaseRef) -> bool {
        let mut table = self.lock();
        match table.leases.get_mut(&r.job_id) {
            Some((epoch, entry)) if *epoch == r.epoch => {
                stop_entry(entry);
                true
            }
            _ => {
                if table.early_stops.len() >= EARLY_STOPS {
                    table.early_stops.pop_front();
                }
                table.early_stops.push_back(r.clone());
                false
            }
        }
    }

    /// The controller answered the result of lease `r`: the worker lets go of it.
    pub fn answered(&self, r: &LeaseRef) {
        self.remove(&r.job_id, r.epoch);
    }

    /// Removes job `id`'s entry if it is the lease at `epoch`.
    fn remove(&self, id: &str, epoch: u64) {
        let mut table = self.lock();
        if table.leases.get(id).is_some_and(|(e, _)| *e == epoch) {
            table.leases.remove(id);
        }
    }

    /// Every lease in hand, with its epoch.
    pub fn claims(&self) -> Vec<LeaseRef> {
        self.lock().leases.iter().map(|(id, (epoch, _))| LeaseRef { job_id: id.clone(), epoch: *epoch }).collect()
    }

    /// The jobs in hand.
    pub fn known(&self) -> Vec<String> {
        self.lock().leases.keys().cloned().collect()
    }

    /// Stops every run and forgets every lease in hand (the worker lost them all); returns them.
    pub fn clear(&self) -> Vec<LeaseRef> {
        let mut table = self.lock();
        table
            .leases
            .drain()
            .map(|(id, (epoch, mut entry))| {
                stop_entry(&mut entry);
                LeaseRef { job_id: id, epoch }
            })
            .collect()
    }

    /// Leases taken from the queue: in a slot (starting or running), or confirmed ahead of one.
    pub fn busy(&self) -> u32 {
        self.busy.load(Ordering::Relaxed)
    }

    pub fn running(&self) -> u32 {
        self.running.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
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
pub struct Run {
    runs: Arc<Runs>,
    job: String,
    epoch: u64,
    superseded: bool,
    running: bool,
    reporting: bool,
}

impl Run {
    /// A newer lease of its job was in hand when it was taken (see [`Runs::take`]): it never runs.
    pub fn superseded(&self) -> bool {
        self.superseded
    }

    /// The controller confirmed the start: the run may go, and is stopped through the returned receiver. `None`
    /// when a stop came first (or the lease is no longer in hand): it must not run.
    pub fn confirmed(&mut self) -> Option<oneshot::Receiver<()>> {
        let mut table = self.runs.lock();
        let entry = match table.leases.get_mut(&self.job) {
            Some((epoch, entry)) if *epoch == self.epoch => entry,
            _ => return None,
        };
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
        if let Some((epoch, entry)) = self.runs.lock().leases.get_mut(&self.job)
            && *epoch == self.epoch
        {
            *entry = Entry::Reporting;
            self.reporting = true;
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.runs.busy.fetch_sub(1, Ordering::Relaxed);
        if self.running {
            self.runs.running.fetch_sub(1, Ordering::Relaxed);
        }
        if !self.reporting {
            self.runs.remove(&self.job, self.epoch);
        }
    }
}

/// Leases on their way to a thief; dropping it forgets them (moved, or back in the queue).
pub struct Moving<'a> {
    runs: &'a Runs,
    refs: Vec<LeaseRef>,
}

impl Drop for Moving<'_> {
    fn drop(&mut self) {
        let mut table = self.runs.lock();
        for r in &self.refs {
            if matches!(table.leases.get(&r.job_id), Some((epoch, Entry::Moving)) if *epoch == r.epoch) {
                table.leases.remove(&r.job_id);
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
    fn a_stop_that_comes_before_its_lease_keeps_the_run_from_starting() {
        let runs = Arc::new(Runs::default());
        assert!(!runs.stop(&r("a", 2)), "not in hand yet");
        let mut other = runs.take(&lease("a", 3));
        assert!(other.confirmed().is_some(), "a stop of another epoch stops nothing");
        drop(other);
        let mut run = runs.take(&lease("a", 2));
        assert!(run.confirmed().is_none(), "its stop came first: it must not run");
        drop(run);
        let mut again = runs.take(&lease("a", 2));
        assert!(again.confirmed().is_some(), "a kept stop is spent once");
        drop(again);
        for i in 0..EARLY_STOPS as u64 + 1 {
            runs.stop(&r("b", i));
        }
        assert!(runs.take(&lease("b", 0)).confirmed().is_some(), "the oldest kept stop is forgotten past the bound");
        assert!(runs.take(&lease("b", 1)).confirmed().is_none());
    }

    #[test]
    fn a_stop_before_the_start_is_confirmed_keeps_the_run_from_starting() {
        let runs = Arc::new(Runs::default());
        let mut run = runs.take(&lease("a", 1));
        assert!(runs.stop(&r("a", 1)), "in hand while its start is confirmed");
        assert!(run.confirmed().is_none(), "the stop came first: it must not run");
        drop(run);
        assert_eq!((runs.busy(), runs.running(), runs.claims().len()), (0, 0, 0));
    }

    #[test]
    fn a_stop_reaches_only_the_lease_it_names() {
        let runs = Arc::new(Runs::default());
        let mut new = runs.take(&lease("a", 2));
        assert!(!runs.stop(&r("a", 1)), "an older epoch is not this run");
        let mut stopped = new.confirmed().expect("confirmed");
        assert!(stopped.try_recv().is_err());
        assert!(runs.stop(&r("a", 2)));
        assert!(stopped.try_recv().is_ok());
    }

    #[test]
    fn a_stale_lease_that_comes_after_a_newer_one_never_runs_and_leaves_the_newer_alone() {
        let runs = Arc::new(Runs::default());
        let mut new = runs.take(&lease("a", 2));
        let mut stale = runs.take(&lease("a", 1));
        assert!(stale.superseded() && !new.superseded());
        assert!(stale.confirmed().is_none(), "the stale lease must not run");
        drop(stale);
        assert!(new.confirmed().is_some(), "the newer lease is not stopped by a stale one");
        assert_eq!(runs.claims(), vec![r("a", 2)]);
    }

    #[test]
    fn a_newer_lease_of_the_same_job_stops_the_older_one() {
        let runs = Arc::new(Runs::default());
        let mut old = runs.take(&lease("a", 1));
        let _new = runs.take(&lease("a", 2));
        assert!(old.confirmed().is_none(), "the older lease is stale");
    }

    #[tokio::test]
    async fn an_aborted_run_gives_back_its_slot_and_running_count() {
        let runs = Arc::new(Runs::default());
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
        let runs = Arc::new(Runs::default());
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

    /// Seeded random sequences of what the worker's tasks do with the table (take, confirm, stop, report, answer,
    /// abort, steal, fence), each step checked: the counts equal the live guards, a stopped lease never
    /// confirms, a lease stays claimed exactly while a guard or the reporter has it. `BURST_SEED` replays one.
    #[test]
    fn no_sequence_of_takes_stops_reports_and_aborts_breaks_the_table() {
        use rand::{Rng, SeedableRng};
        let base = std::env::var("BURST_SEED").ok().and_then(|s| s.parse().ok());
        let (first, count) = base.map_or((0x7ab1e_u64, 2_000), |s| (s, 1));
        println!("runs table: seeds {first}..{} (BURST_SEED=<n> replays one)", first + count);
        for seed in first..first + count {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let runs = Arc::new(Runs::default());
            // Live guards: (job, epoch, confirmed, stopped before confirming).
            let mut guards: Vec<(Run, bool, bool)> = Vec::new();
            let mut reporting: Vec<LeaseRef> = Vec::new();
            let mut epoch = 0;
            let mut log = Vec::new();
            for _ in 0..60 {
                let job = format!("j{}", rng.random_range(0..4));
                match rng.random_range(0..8) {
                    0 | 1 => {
                        epoch += 1;
                        log.push(format!("take {job}@{epoch}"));
                        // An older lease of the job, even one being reported, is stale from now on.
                        reporting.retain(|r| r.job_id != job);
                        guards.push((runs.take(&lease(&job, epoch)), false, false));
                    }
                    2 if !guards.is_empty() => {
                        let i = rng.random_range(0..guards.len());
                        let (g, confirmed, stopped) = &mut guards[i];
                        let superseded = runs.lock().leases.get(&g.job).is_none_or(|(e, _)| *e != g.epoch);
                        log.push(format!("confirm {}@{}", g.job, g.epoch));
                        if !*confirmed {
                            let got = g.confirmed().is_some();
                            assert_eq!(got, !*stopped && !superseded, "seed {seed}: {log:?}");
                            *confirmed = got;
                            *stopped |= !got;
                        }
                    }
                    3 if !guards.is_empty() => {
                        let i = rng.random_range(0..guards.len());
                        let r = r(&guards[i].0.job, guards[i].0.epoch);
                        log.push(format!("stop {}@{}", r.job_id, r.epoch));
                        if runs.stop(&r) && !guards[i].1 {
                            guards[i].2 = true;
                        }
                    }
                    4 if !guards.is_empty() => {
                        let (g, _, _) = guards.remove(rng.random_range(0..guards.len()));
                        log.push(format!("report {}@{}", g.job, g.epoch));
                        let r = r(&g.job, g.epoch);
                        let current = runs.lock().leases.get(&g.job).is_some_and(|(e, _)| *e == g.epoch);
                        g.reporting();
                        if current {
                            reporting.push(r);
                        }
                    }
                    5 if !reporting.is_empty() => {
                        let r = reporting.remove(rng.random_range(0..reporting.len()));
                        log.push(format!("answered {}@{}", r.job_id, r.epoch));
                        runs.answered(&r);
                    }
                    6 if !guards.is_empty() => {
                        let (g, _, _) = guards.remove(rng.random_range(0..guards.len()));
                        log.push(format!("abort {}@{}", g.job, g.epoch));
                        drop(g);
                    }
                    7 if rng.random_bool(0.1) => {
                        log.push("fence".into());
                        guards.clear();
                        runs.clear();
                        reporting.clear();
                    }
                    _ => {}
                }
                let confirmed = guards.iter().filter(|(_, c, _)| *c).count() as u32;
                assert_eq!(runs.busy(), guards.len() as u32, "seed {seed}: busy is the live guards: {log:?}");
                assert_eq!(runs.running(), confirmed, "seed {seed}: running is the confirmed guards: {log:?}");
                // Claimed: every reported lease not yet answered (and not superseded), and only those or a guard's.
                let claims = runs.claims();
                for r in &reporting {
                    assert!(claims.contains(r), "seed {seed}: {r:?} is being reported, so still claimed: {log:?}");
                }
                for c in &claims {
                    let held =
                        guards.iter().any(|(g, _, _)| g.job == c.job_id && g.epoch == c.epoch) || reporting.contains(c);
                    assert!(held, "seed {seed}: {c:?} claimed but nobody has it: {log:?}");
                }
            }
        }
    }
}
