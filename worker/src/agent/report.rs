//! The report loop: starts and results, sent in batches in order (results before the starts after them), each
//! retried until the controller answers; and what its answers mean for the runs table.
//!
//! # Lingering
//! Each call costs both sides far more than each result in it (TLS records, HTTP/2 frames, the controller's lock
//! and a durable commit). So a batch of results waits a little ([`LINGER`] at most) for more to go with it, up to
//! [`batch_target`] of them, while more are due within that time: other runs are going (those confirmed ahead of a
//! slot included) and, at the recent run time, at least one of them ends within the linger. It never waits when
//! that could delay work: starts alone go at once (their answers feed the slots), and so does a batch with a start
//! that holds a free slot (the slot would stay idle) or a flush (a drain). A job alone is reported at once. The
//! next jobs do not wait meanwhile: with short jobs their starts are confirmed ahead of the slots
//! ([`super::slots`]), and a start that comes to hold a free slot ends the wait.

use super::*;

/// The longest a batch of results waits for more: while a worker is busy with short jobs, their results reach the
/// controller (and users) up to this much later.
pub(super) const LINGER: Duration = Duration::from_millis(2);

/// Results a lingering batch waits for at most: as many as the starts a worker may confirm ahead of its slots.
pub(super) fn batch_target(slots: u32) -> usize {
    (slots.max(1) * slots::AHEAD_PER_SLOT) as usize
}

/// Whether a batch waits for more (see the module docs): `running` runs are confirmed and not ended (those whose
/// results are in the batch may still be counted), and recent runs took `recent_run` on average.
fn lingers(batch: &[Report], running: u32, recent_run: Duration, slots: u32) -> bool {
    let mut results = 0u32;
    for report in batch {
        match report {
            Report::Start { waiting: true, .. } | Report::Flush(_) => return false,
            Report::Start { .. } => {}
            Report::Finished(_) => results += 1,
        }
    }
    // Starts alone go at once: their answers feed the slots. Results wait while the runs still going, at one
    // result per `recent_run` each, bring at least one more within the linger.
    let others = running.saturating_sub(results);
    results > 0 && (results as usize) < batch_target(slots) && others > 0 && LINGER * others >= recent_run
}

impl Agent {
    pub(super) async fn report_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Report>) {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, MAX_REPORT_BATCH).await > 0 {
            let until = tokio::time::Instant::now() + LINGER;
            while lingers(&batch, self.runs.running(), self.slots.recent_run(), self.cfg.slots) {
                match tokio::time::timeout_at(until, rx.recv_many(&mut batch, MAX_REPORT_BATCH)).await {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            let (mut starts, mut results, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
            for report in batch.drain(..) {
                match report {
                    Report::Start { lease, reply, .. } => starts.push((lease, reply)),
                    Report::Finished(result) => results.push(result),
                    Report::Flush(reply) => flushes.push(reply),
                }
            }
            let (refs, replies): (Vec<LeaseRef>, Vec<_>) = starts.into_iter().unzip();
            // Results and the starts after them go in one call when there are results (one round trip, one
            // commit), the starts alone otherwise.
            let refused = match (results.is_empty(), refs.is_empty()) {
                (false, _) => self.report_results(results, refs.clone()).await,
                (true, false) => self.report_started(refs.clone()).await,
                (true, true) => Refusals::default(),
            };
            for (r, reply) in refs.iter().zip(replies) {
                let _ = reply.send(!refused.refuses(r));
            }
            for reply in flushes {
                let _ = reply.send(());
            }
        }
    }

    /// Sends start reports until the controller answers; returns the starts it refused.
    async fn report_started(&self, started: Vec<LeaseRef>) -> Refusals {
        let mut delays = backoff();
        loop {
            let session = self.current();
            let req =
                ReportJobStartedRequest { worker_id: self.cfg.worker_id.clone(), session, started: started.clone() };
            match self.client.clone().report_job_started(req).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    return Refusals { ids: resp.refused, leases: resp.refused_leases };
                }
                // On NotFound this registers again, claiming these leases; then they are sent again.
                Err(status) => self.on_error("report starts", status, session, &mut delays).await,
            }
        }
    }

    /// Sends results, and the starts that follow them, until the controller answers; returns the starts it
    /// refused. Results of a session it forgot are dropped: it has released those jobs already.
    async fn report_results(&self, results: Vec<JobResult>, started: Vec<LeaseRef>) -> Refusals {
        let mut delays = backoff();
        loop {
            let session = self.current();
            let req = ReportJobResultRequest {
                worker_id: self.cfg.worker_id.clone(),
                session,
                results: results.clone(),
                started: started.clone(),
                take_leases: self.intake.load(Ordering::Relaxed),
                queue_target: self.queue_target(),
            };
            match self.client.clone().report_job_result(req).await {
                Ok(resp) => {
                    let ReportJobResultResponse { refused, refused_starts, refused_start_leases, leases, stop, .. } =
                        resp.into_inner();
                    self.take(session, leases, &stop);
                    // A stopped job's result is refused because the job was cancelled: expected, not stale.
                    let stale = results
                        .iter()
                        .filter(|r| r.reason() != Reason::Cancelled)
                        .filter(|r| r.lease.as_ref().is_some_and(|l| refused.contains(&l.job_id)))
                        .count();
                    if stale > 0 {
                        warn!(worker = %self.cfg.worker_id, refused = stale, "results refused as stale");
                    }
                    for l in results.iter().filter_map(|r| r.lease.as_ref()) {
                        self.runs.answered(l);
                    }
                    return Refusals { ids: refused_starts, leases: refused_start_leases };
                }
                // On NotFound this registers again (claiming what it holds), then sends them again: results of
                // jobs it still holds are accepted, the others refused.
                Err(status) => self.on_error("report results", status, session, &mut delays).await,
            }
        }
    }
}

/// Starts the controller refused, by lease (by job id from a controller that names only ids).
#[derive(Default)]
struct Refusals {
    ids: Vec<String>,
    leases: Vec<LeaseRef>,
}

impl Refusals {
    fn refuses(&self, r: &LeaseRef) -> bool {
        match self.leases.is_empty() {
            false => self.leases.contains(r),
            true => self.ids.contains(&r.job_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, epoch: u64) -> LeaseRef {
        LeaseRef { job_id: id.into(), epoch }
    }

    fn finished() -> Report {
        Report::Finished(JobResult::default())
    }

    fn start(waiting: bool) -> Report {
        Report::Start { lease: r("s", 1), reply: oneshot::channel().0, waiting }
    }

    #[test]
    fn a_result_waits_for_more_only_while_other_short_runs_will_bring_them() {
        let short = Duration::from_micros(600);
        // A job alone (its own run may still be counted): its result goes at once.
        assert!(!lingers(&[finished()], 0, short, 2));
        assert!(!lingers(&[finished()], 1, short, 2));
        // Another run is going and ends within the linger: wait for it, starts ahead of the slots too.
        assert!(lingers(&[finished()], 2, short, 2));
        assert!(lingers(&[finished(), start(false)], 2, short, 2));
        assert!(!lingers(&[start(false)], 2, short, 2), "starts alone go at once: their answers feed the slots");
        // Up to as many results as the starts confirmed ahead of the slots.
        let full: Vec<Report> = (0..batch_target(2)).map(|_| finished()).collect();
        assert!(!lingers(&full, 20, short, 2));
        // Runs too long to end within the linger: nothing to wait for, unless there are enough of them.
        let long = Duration::from_millis(50);
        assert!(!lingers(&[finished()], 8, long, 8), "7 runs of 50 ms: one ends every ~7 ms");
        assert!(lingers(&[finished()], 32, long, 32), "31 runs of 50 ms: one ends every ~1.6 ms");
    }

    #[test]
    fn a_start_holding_a_free_slot_or_a_flush_goes_at_once() {
        let short = Duration::from_micros(600);
        assert!(!lingers(&[finished(), start(true)], 4, short, 2), "its slot would stay idle");
        assert!(!lingers(&[start(true)], 4, short, 2));
        assert!(!lingers(&[finished(), Report::Flush(oneshot::channel().0)], 4, short, 2), "a drain waits on it");
    }

    #[test]
    fn a_refusal_by_lease_names_one_epoch_and_one_by_id_all_of_the_job() {
        let by_lease = Refusals { ids: vec!["a".into()], leases: vec![r("a", 1)] };
        assert!(by_lease.refuses(&r("a", 1)));
        assert!(!by_lease.refuses(&r("a", 2)), "the newer lease of the same job runs");
        // A controller that names only ids refuses every lease of the job.
        let by_id = Refusals { ids: vec!["a".into()], leases: vec![] };
        assert!(by_id.refuses(&r("a", 1)) && by_id.refuses(&r("a", 2)));
        assert!(!Refusals::default().refuses(&r("a", 1)));
    }
}
