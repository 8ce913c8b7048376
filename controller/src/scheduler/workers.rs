//! The scheduler's dealings with workers: registration (and claims after a restart), leases handed over and
//! reported on, heartbeats and the peers they name, steals, drains, departures and deaths.

use std::time::Instant;

use burst_proto::v1::{JobResult, LeaseRef, PeerInfo, WorkerInfo, WorkerStatus};
use tracing::{debug, info, warn};

use super::*;

impl Scheduler {
    /// Adds a worker (or a new registration of a known one, whose old leases are released).
    ///
    /// `claims` are the leases the worker says it still has from an earlier registration. Each one the job is
    /// still this worker's at that epoch is kept, under the new session; the others are returned as rejected (the
    /// worker must drop them). Whatever the worker's previous session held and did not claim is released.
    pub fn register(
        &mut self,
        info: WorkerInfo,
        claims: &[LeaseRef],
        wants: Wants,
        now_ms: u64,
    ) -> (u64, Vec<JobId>, Durable) {
        let worker = info.worker_id.clone();
        let (session, old) = self.registry.insert(info, now_ms);
        if let Some(target) = wants.queue_target {
            self.registry.set_queue_target(&worker, target);
        }
        if let Some(per_slot) = wants.start_ahead {
            self.registry.set_start_ahead(&worker, per_slot);
        }
        let mut rejected = Vec::new();
        for c in claims {
            if !self.jobs.contains_key(&c.job_id) {
                rejected.push(c.job_id.clone());
                continue;
            }
            match self.transition(&c.job_id, |job| job.rebind(&worker, c.epoch, session).map(|()| Effect::Moved)) {
                Ok(_) => {
                    self.unclaimed.remove(&c.job_id);
                }
                Err(_) => rejected.push(c.job_id.clone()),
            }
        }
        if !claims.is_empty() {
            info!(worker, claimed = claims.len() - rejected.len(), rejected = rejected.len(), "leases claimed");
        }
        if let Some(old) = old {
            info!(worker = %old.id(), "worker registered again; releasing what its previous session held");
            // A process still polling under that session hears now that it was replaced (and stops), rather than
            // at its next heartbeat: until then it would run what it holds that was started with its lease.
            old.wake.notify_one();
            self.release_all(old, now_ms);
        }
        // A new worker may fit jobs that fit nobody before.
        for id in std::mem::take(&mut self.parked).into_iter().rev() {
            self.requeue(id);
        }
        self.dispatch(now_ms);
        (session, rejected, self.flush())
    }

    /// Removes workers silent since `deadline` and releases their jobs. Returns the ids removed.
    /// After a restart, once the claim deadline has passed, also releases the leases no worker claimed.
    pub fn expire(&mut self, deadline: Instant, now_ms: u64) -> (Vec<WorkerId>, Durable) {
        if self.claim_deadline.is_some_and(|d| Instant::now() >= d) {
            self.claim_deadline = None;
            let unclaimed: Vec<JobId> = self.unclaimed.drain().collect();
            for id in unclaimed {
                let Some(h) = self.jobs.get(&id).and_then(|j| j.state().holder().cloned()) else { continue };
                let held_by_live = self.registry.get(&h.worker).is_some_and(|w| w.session == h.session);
                if !held_by_live {
                    warn!(job = %id, "no worker claimed this lease after the restart; queueing it again");
                    let _ = self.transition(&id, |job| job.release(&h.worker, h.session, now_ms));
                }
            }
        }
        let lifted = self.registry.lift_quarantines(Instant::now());
        let dead = self.registry.silent_since(deadline);
        for id in &dead {
            if let Some(entry) = self.registry.remove(id) {
                self.registry.died(id, Instant::now());
                warn!(worker = %id, held = entry.held().len(), "worker silent past the lease timeout; releasing its jobs");
                self.release_all(entry, now_ms);
            }
        }
        if lifted || !dead.is_empty() {
            self.dispatch(now_ms);
        }
        (dead, self.flush())
    }

    /// The leases (and stops) waiting for a worker. Hand them over only once the returned barrier resolves:
    /// a lease a worker acts on must be durable, or a controller restarted in between would lease the job again
    /// under the same epoch.
    pub fn take_leases(&mut self, worker: &str, session: u64) -> Result<(Poll, Durable), SchedError> {
        let w = self.live(worker, session)?;
        if w.outbox.is_empty() && w.stops.is_empty() {
            let wake = w.wake.clone();
            return Ok((Poll::Wait(wake), Box::pin(std::future::ready(Ok(())))));
        }
        let poll = Poll::Ready { leases: std::mem::take(&mut w.outbox), stop: std::mem::take(&mut w.stops) };
        Ok((poll, self.store.write(Vec::new())))
    }

    /// Records a heartbeat; returns the peers a would-be thief should know about.
    ///
    /// `known` is every job the worker has. A job it has held for more than `grace`, not waiting in its outbox
    /// and not known to it, is not there:
    /// - a leased one never arrived (a lost `PollJob` answer, or a steal whose victim died before handing the
    ///   job over): it is queued again. That is safe even if the lease was merely slow: the worker's start
    ///   report for it would be refused.
    /// - a running one was stopped without a result (the worker was cut off for a lease timeout and fenced
    ///   itself, but its session lived on): it is released like a dead worker's, spending a lost run. One started
    ///   with its lease may instead be on its way still (it has no start report to be refused): the worker is
    ///   told to stop it, so that if it does arrive it never starts (see `Runs` on the worker).
    pub fn heartbeat(
        &mut self,
        worker: &str,
        session: u64,
        known: &[String],
        steal_attempts: u64,
        grace: std::time::Duration,
        now_ms: u64,
    ) -> Result<(Vec<PeerInfo>, Durable), SchedError> {
        let w = self.live(worker, session)?;
        w.steal_attempts = steal_attempts;
        let Some(deadline) = Instant::now().checked_sub(grace) else {
            return Ok((self.peers(worker), self.flush()));
        };
        let known: std::collections::HashSet<&str> = known.iter().map(String::as_str).collect();
        let missing: Vec<JobId> = w
            .held()
            .iter()
            .filter(|(id, since)| **since < deadline && !known.contains(id.as_str()))
            .filter(|(id, _)| !w.outbox.iter().any(|l| l.job_id == **id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in missing {
            match self.jobs.state(&id) {
                Some(JobState::Leased) => {
                    warn!(job = %id, worker, "leased job never reached its worker; queueing it again")
                }
                Some(JobState::Running) => warn!(job = %id, worker, "running job is gone from its worker; released"),
                _ => continue,
            }
            let epoch = self.jobs.get(&id).and_then(|j| j.state().holder().map(|h| h.epoch));
            if self.transition(&id, |job| job.release(worker, session, now_ms)).is_ok()
                && let (Some(epoch), Some(w)) = (epoch, self.registry.session_mut(worker, session))
            {
                w.stops.push(LeaseRef { job_id: id, epoch });
                w.wake.notify_one();
            }
        }
        self.dispatch(now_ms);
        Ok((self.peers(worker), self.flush()))
    }

    /// Marks a worker as draining (no new leases) and queues again the leases it hands back, and those decided
    /// for it but not yet delivered. Returns how many jobs were queued again.
    pub fn drain(
        &mut self,
        worker: &str,
        session: u64,
        returned: &[LeaseRef],
        now_ms: u64,
    ) -> Result<(u32, Durable), SchedError> {
        let w = self.live(worker, session)?;
        let outbox = std::mem::take(&mut w.outbox);
        self.registry.set_draining(worker);
        // Oldest first: the worker's queue, then what it has not received yet.
        let mut give_back = returned.to_vec();
        give_back.extend(outbox.iter().map(Lease::to_ref));
        let requeued = self.hand_back(worker, session, &give_back);
        info!(worker, requeued, "worker draining");
        self.dispatch(now_ms);
        Ok((requeued, self.flush()))
    }

    /// Queues again, as they were, the leases a worker gives back without having run them (oldest first; each
    /// goes to the front of the queue): no attempt is spent, even for one recorded as running with its lease.
    /// A lease no longer this worker's at that epoch is left alone. Returns how many were queued again.
    pub(super) fn hand_back(&mut self, worker: &str, session: u64, returned: &[LeaseRef]) -> u32 {
        let mut requeued = 0;
        for r in returned.iter().rev() {
            let by = holder(worker, session, r.epoch);
            if self.transition(&r.job_id, |job| job.hand_back(&by)).is_ok() {
                requeued += 1;
            }
        }
        requeued
    }

    /// Removes a worker that is leaving; whatever it still holds is queued again (a running job spends a lost
    /// run, as with a dead worker). Returns how many jobs were queued again.
    pub fn deregister(&mut self, worker: &str, session: u64, now_ms: u64) -> Result<(u32, Durable), SchedError> {
        self.live(worker, session)?;
        let entry = self.registry.remove(worker).ok_or_else(|| SchedError::UnknownWorker(worker.to_string()))?;
        let held = entry.held().len() as u32;
        info!(worker, held, "worker deregistered");
        self.release_all(entry, now_ms);
        self.dispatch(now_ms);
        Ok((held, self.flush()))
    }

    /// Workers other than `except` with jobs queued, most queued first.
    /// Where worker `id` is reached, while it is registered.
    /// Cordons (or uncordons) the named workers, all or none: an unknown id changes nothing. Uncordoning may
    /// lease them jobs at once. Returns their statuses.
    pub fn cordon(
        &mut self,
        ids: &[String],
        cordoned: bool,
        now_ms: u64,
    ) -> Result<(Vec<WorkerStatus>, Durable), SchedError> {
        if let Some(unknown) = ids.iter().find(|id| self.registry.get(id).is_none()) {
            return Err(SchedError::UnknownWorker(unknown.clone()));
        }
        for id in ids {
            self.registry.set_cordoned(id, cordoned);
            info!(worker = %id, cordoned, "worker cordon changed");
        }
        if !cordoned {
            self.dispatch(now_ms);
        }
        let statuses = ids.iter().filter_map(|id| self.registry.get(id)).map(WorkerEntry::status).collect();
        Ok((statuses, self.flush()))
    }

    /// Records what the worker wants now (`None`s: unchanged): how many queued jobs beyond those running, at most
    /// its queue capacity, and how many leases per slot it takes ahead of a free slot. A target that grew gives
    /// it leases at once: then the answer says when they are durable (`None` otherwise, which costs the store
    /// nothing).
    pub fn set_wants(
        &mut self,
        worker: &str,
        session: u64,
        wants: Wants,
        now_ms: u64,
    ) -> Result<Option<Durable>, SchedError> {
        // Nothing to set (an older worker): its other calls check the session.
        if wants == Wants::default() {
            return Ok(None);
        }
        self.live(worker, session)?;
        if let Some(per_slot) = wants.start_ahead {
            self.registry.set_start_ahead(worker, per_slot);
        }
        let Some(target) = wants.queue_target else { return Ok(None) };
        if !self.registry.set_queue_target(worker, target) {
            return Ok(None);
        }
        self.dispatch(now_ms);
        Ok(Some(self.flush()))
    }

    pub fn worker_address(&self, id: &str) -> Option<String> {
        self.registry.get(id).map(|w| w.info.advertise_addr.clone())
    }

    /// Workers a would-be thief may steal from: its own pool's (a job never moves to a pool it was not placed
    /// in), those with most queued first.
    pub(super) fn peers(&self, except: &str) -> Vec<PeerInfo> {
        let Some(pool) = self.registry.get(except).map(|w| w.pool) else { return Vec::new() };
        let mut peers: Vec<PeerInfo> = self
            .registry
            .iter()
            .filter(|w| w.id() != except && w.pool == pool && w.queued() > 0 && !w.draining())
            .map(|w| PeerInfo {
                worker_id: w.id().to_string(),
                address: w.info.advertise_addr.clone(),
                queued: w.queued(),
                free_slots: w.info.slots.saturating_sub(w.running()),
            })
            .collect();
        peers.sort_by(|a, b| b.queued.cmp(&a.queued).then_with(|| a.worker_id.cmp(&b.worker_id)));
        peers.truncate(MAX_PEERS);
        peers
    }

    /// Moves leases from `victim` to `thief` (a steal), each under a new epoch. A lease moves only if the victim
    /// holds it at that epoch and has not started it, and only while the thief has room and free resources for
    /// it. Returns the moved leases (new epochs) and the refused job ids.
    pub fn transfer(
        &mut self,
        victim: &str,
        session: u64,
        thief: &str,
        refs: &[LeaseRef],
    ) -> Result<(Vec<LeaseRef>, Vec<JobId>, Durable), SchedError> {
        self.live(victim, session)?;
        let thief_session = match self.registry.get(thief) {
            Some(t) if thief != victim => t.session,
            _ => return Err(SchedError::UnknownWorker(thief.to_string())),
        };
        let (mut moved, mut refused) = (Vec::new(), Vec::new());
        for r in refs {
            let by = holder(victim, session, r.epoch);
            match self.move_lease(&r.job_id, &by, thief, thief_session) {
                Some(epoch) => moved.push(LeaseRef { job_id: r.job_id.clone(), epoch }),
                None => refused.push(r.job_id.clone()),
            }
        }
        if !moved.is_empty() {
            self.totals.steals += 1;
            self.totals.jobs_stolen += moved.len() as u64;
            info!(from = victim, to = thief, jobs = moved.len(), "leases transferred");
        }
        Ok((moved, refused, self.flush()))
    }

    pub(super) fn move_lease(&mut self, id: &str, by: &Holder, thief: &str, thief_session: u64) -> Option<u64> {
        let need = self.jobs.get(id)?.spec.resources.unwrap_or_default();
        let (thief_entry, victim) = (self.registry.get(thief)?, self.registry.get(&by.worker)?);
        if !thief_entry.fits(&need) || thief_entry.pool != victim.pool {
            return None;
        }
        match self.transition(id, |job| job.transfer(by, thief, thief_session).map(|_| Effect::Moved)) {
            Ok(_) => self.jobs.get(id).map(|job| job.epoch()),
            Err(_) => {
                self.totals.stale_reports += 1;
                None
            }
        }
    }

    /// Leased → Running for each lease; returns the leases refused (stale ones the worker must not run).
    pub fn started(
        &mut self,
        worker: &str,
        session: u64,
        refs: &[LeaseRef],
        now_ms: u64,
    ) -> Result<(Vec<LeaseRef>, Durable), SchedError> {
        self.live(worker, session)?;
        let mut refused = Vec::new();
        for r in refs {
            let by = holder(worker, session, r.epoch);
            match self.transition(&r.job_id, |job| job.start(&by, now_ms)) {
                Ok(_) => {}
                Err(why) => {
                    self.count_refusal(&why);
                    debug!(job = %r.job_id, worker, epoch = r.epoch, reason = %why, "start refused");
                    refused.push(r.clone());
                }
            }
        }
        Ok((refused, self.flush()))
    }

    /// Fails unless `session` is `worker`'s current registration (which is then seen alive).
    pub fn check_session(&mut self, worker: &str, session: u64) -> Result<(), SchedError> {
        self.live(worker, session).map(drop)
    }

    /// Takes back the leases a worker returns unrun (see [`Scheduler::hand_back`]) and gives them out again.
    /// Returns how many were queued again.
    pub fn returned(
        &mut self,
        worker: &str,
        session: u64,
        returned: &[LeaseRef],
        now_ms: u64,
    ) -> Result<(u32, Durable), SchedError> {
        self.live(worker, session)?;
        let requeued = self.hand_back(worker, session, returned);
        info!(worker, returned = returned.len(), requeued, "leases given back unrun");
        self.dispatch(now_ms);
        Ok((requeued, self.flush()))
    }

    /// Records results; returns how many were accepted and the ids refused as stale.
    pub fn finished(
        &mut self,
        worker: &str,
        session: u64,
        results: Vec<JobResult>,
        now_ms: u64,
    ) -> Result<(u32, Vec<JobId>, Durable), SchedError> {
        self.live(worker, session)?;
        let (mut accepted, mut refused) = (0, Vec::new());
        for r in results {
            let lease = r.lease.clone().unwrap_or_default();
            let by = holder(worker, session, lease.epoch);
            let outcome = outcome_of(r);
            match self.transition(&lease.job_id, |job| job.finish(&by, outcome, now_ms)) {
                Ok(_) => accepted += 1,
                Err(why) => {
                    self.count_refusal(&why);
                    debug!(job = %lease.job_id, worker, epoch = lease.epoch, reason = %why, "result refused");
                    refused.push(lease.job_id);
                }
            }
        }
        self.dispatch(now_ms);
        Ok((accepted, refused, self.flush()))
    }

    /// Releases every job a removed (or replaced) worker entry still held: those its session holds, not those a
    /// new registration of the same worker claimed (the release is fenced by holder).
    pub(super) fn release_all(&mut self, entry: WorkerEntry, now_ms: u64) {
        // Leases still in the outbox never reached the worker: no run of theirs is lost, even of one recorded as
        // running with its lease.
        for lease in entry.outbox.iter().rev() {
            let by = holder(entry.id(), entry.session, lease.epoch);
            let _ = self.transition(&lease.job_id, |job| job.hand_back(&by));
        }
        let mut held: Vec<&JobId> = entry.held().keys().collect();
        held.sort();
        for id in held.into_iter().rev() {
            // Those a new registration claimed are its now: refused here, as a release of another holder.
            let _ = self.transition(id, |job| job.release(entry.id(), entry.session, now_ms));
        }
    }

    /// The worker's current registration `session`, now seen alive.
    pub(super) fn live(&mut self, worker: &str, session: u64) -> Result<&mut WorkerEntry, SchedError> {
        // Looked up only when the session is not current: not on every call of a live worker.
        if self.registry.session_mut(worker, session).is_none() {
            return Err(match self.registry.was_replaced(worker, session) {
                true => SchedError::Replaced(worker.to_string()),
                false => SchedError::UnknownWorker(worker.to_string()),
            });
        }
        let w =
            self.registry.session_mut(worker, session).ok_or_else(|| SchedError::UnknownWorker(worker.to_string()))?;
        w.last_seen = Instant::now();
        Ok(w)
    }
}
