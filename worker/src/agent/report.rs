//! The report loop: starts and results, sent in batches in order (results before the starts after them), each
//! retried until the controller answers; and what its answers mean for the runs table.

use super::*;

impl Agent {
    pub(super) async fn report_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Report>) {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, MAX_REPORT_BATCH).await > 0 {
            let (mut starts, mut results, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
            for report in batch.drain(..) {
                match report {
                    Report::Start(lease, reply) => starts.push((lease, reply)),
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
