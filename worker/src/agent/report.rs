//! The report loop: starts and results, sent in batches in order (results before the starts after them), each
//! retried until the controller answers; and what its answers mean for the runs table.
//!
//! # Lingering
//! Each report costs both sides far more than each result in it (TLS records, HTTP/2 frames, the controller's lock and
//! a durable commit; a call's headers and HTTP/2 stream too, which the `Reports` stream saves). So while a worker's
//! slots are all busy and leases whose starts are confirmed wait in line for them (short jobs, [`super::slots`]), a
//! batch of results waits a little ([`LINGER`]) for more to go with it, up to [`batch_target`] of them. Meanwhile every
//! slot that frees goes to a lease that runs at once: the wait ends before the confirmed leases in line could run out
//! (each result in the batch may still free a slot), and at once when a start in the batch holds a free slot, or for a
//! flush (a drain). Starts alone never wait (their answers feed the slots); nor does a job alone, or a worker of long
//! jobs (no starts are confirmed ahead then).

use super::*;

/// About the longest a batch of results waits for more (the runtime's timers tick in milliseconds): while a
/// worker is busy with short jobs, their results reach the controller (and users) up to this much later.
pub(super) const LINGER: Duration = Duration::from_millis(2);

/// Results a lingering batch waits for at most: as many as the starts a worker may confirm ahead of its slots.
pub(super) fn batch_target(slots: u32) -> usize {
    slots.max(1).saturating_mul(slots::MAX_AHEAD_PER_SLOT) as usize
}

/// Whether a batch waits for more (see the module docs): `confirmed_in_line` leases with confirmed starts wait in
/// line for a slot.
fn lingers(batch: &[Report], confirmed_in_line: u32, slots: u32) -> bool {
    let mut results = 0u32;
    for report in batch {
        match report {
            Report::Start { waiting: true, .. } | Report::Flush(_) | Report::Return(_) => return false,
            Report::Start { .. } => {}
            Report::Finished(_) => results += 1,
        }
    }
    results > 0 && (results as usize) < batch_target(slots) && confirmed_in_line > results
}

/// Adds to `batch` what arrives on `rx` while `lingers` says so, until `until`; returns when the batch is done.
async fn gather(
    rx: &mut mpsc::UnboundedReceiver<Report>,
    batch: &mut Vec<Report>,
    until: tokio::time::Instant,
    mut lingers: impl FnMut(&[Report]) -> bool,
) {
    while lingers(batch) {
        let room = MAX_REPORT_BATCH.saturating_sub(batch.len());
        match tokio::time::timeout_at(until, rx.recv_many(batch, room)).await {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

impl Agent {
    pub(super) async fn report_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Report>) {
        let mut batch = Vec::new();
        let mut link = Link::Closed;
        while rx.recv_many(&mut batch, MAX_REPORT_BATCH).await > 0 {
            let until = tokio::time::Instant::now() + LINGER;
            gather(&mut rx, &mut batch, until, |b| lingers(b, self.slots.confirmed_in_line(), self.cfg.slots)).await;
            let (mut starts, mut results, mut returned, mut flushes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for report in batch.drain(..) {
                match report {
                    Report::Start { lease, reply, .. } => starts.push((lease, reply)),
                    Report::Finished(result) => results.push(result),
                    Report::Return(lease) => returned.push(lease),
                    Report::Flush(reply) => flushes.push(reply),
                }
            }
            let (refs, replies): (Vec<LeaseRef>, Vec<_>) = starts.into_iter().unzip();
            // Results, leases given back and the starts after them go in one report (one round trip, one commit).
            let refused = match results.is_empty() && refs.is_empty() && returned.is_empty() {
                true => Refusals::default(),
                false => self.report(&mut link, results, returned, refs.clone()).await,
            };
            for (r, reply) in refs.iter().zip(replies) {
                let _ = reply.send(!refused.refuses(r));
            }
            for reply in flushes {
                let _ = reply.send(());
            }
        }
    }

    /// Sends results, leases given back unrun, and the starts that follow them, until the controller answers;
    /// returns the starts it refused. Results of a session it forgot are dropped: it has released those jobs
    /// already.
    async fn report(
        &self,
        link: &mut Link,
        results: Vec<JobResult>,
        returned: Vec<LeaseRef>,
        started: Vec<LeaseRef>,
    ) -> Refusals {
        let mut delays = backoff();
        loop {
            let session = self.current();
            let req = ReportJobResultRequest {
                worker_id: self.cfg.worker_id.clone(),
                session,
                results: results.clone(),
                started: started.clone(),
                // Starts alone take none: they go at once, and their answers feed the slots.
                take_leases: !results.is_empty() && self.intake.load(Ordering::Relaxed),
                queue_target: self.queue_target(),
                start_ahead: Some(self.slots.start_ahead()),
                returned: returned.clone(),
            };
            match self.send(link, req).await {
                Ok(answer) => {
                    let ReportJobResultResponse { refused, refused_starts, refused_start_leases, leases, stop, .. } =
                        answer;
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
                    for l in results.iter().filter_map(|r| r.lease.as_ref()).chain(&returned) {
                        self.runs.answered(l);
                    }
                    return Refusals { ids: refused_starts, leases: refused_start_leases };
                }
                // On NotFound this registers again (claiming what it holds), then sends them again: results of
                // jobs it still holds are accepted, the others refused.
                Err(status) => self.on_error("report", status, session, &mut delays).await,
            }
        }
    }

    /// One report and its answer: over the `Reports` stream (opened now if it is not), or as a call to a controller
    /// without it. An error closes the stream; the next report opens another.
    async fn send(&self, link: &mut Link, req: ReportJobResultRequest) -> Result<ReportJobResultResponse, Status> {
        if let Link::Calls(until) = link
            && tokio::time::Instant::now() >= *until
        {
            *link = Link::Closed;
        }
        if let Link::Closed = link {
            let (requests, rx) = mpsc::channel(1);
            let mut client = self.client.clone();
            let open = client.reports(tokio_stream::wrappers::ReceiverStream::new(rx));
            match tokio::time::timeout(STREAM_OPEN, open).await {
                Ok(Ok(answers)) => *link = Link::Open { requests, answers: Box::new(answers.into_inner()) },
                Ok(Err(status)) if status.code() == Code::Unimplemented => {
                    info!(worker = %self.cfg.worker_id, "the controller has no report stream (an older version); reporting by calls");
                    *link = Link::Calls(tokio::time::Instant::now() + RETRY_AFTER_UNIMPLEMENTED);
                }
                Ok(Err(status)) => return Err(status),
                // Not open in time: a controller still starting, a network that drops packets, or a proxy that
                // holds streams back. A lost network fails the call too, and the stream is tried again; a call
                // that goes through makes it calls for a long while (after a controller that took over 10 s to
                // start as well: slower by a few percent, not wrong).
                Err(_) => {
                    let answer = self.call(req).await?;
                    warn!(worker = %self.cfg.worker_id, "the report stream did not open in time but a call went through (a proxy that holds streams back?); reporting by calls");
                    *link = Link::Calls(tokio::time::Instant::now() + RETRY_AFTER_TIMEOUT);
                    return Ok(answer);
                }
            }
        }
        let Link::Open { requests, answers } = link else { return self.call(req).await };
        // A stream that has ended refuses the request; its end then says why.
        let _ = requests.send(req).await;
        let answer = answers.message().await;
        match answer {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => {
                *link = Link::Closed;
                Err(Status::unavailable("the controller ended the report stream"))
            }
            Err(status) => {
                *link = Link::Closed;
                Err(status)
            }
        }
    }

    /// A report as a call: starts alone as `ReportJobStarted` (which every controller has), the rest as
    /// `ReportJobResult`.
    async fn call(&self, req: ReportJobResultRequest) -> Result<ReportJobResultResponse, Status> {
        let mut client = self.client.clone();
        if !req.results.is_empty() || !req.returned.is_empty() {
            return client.report_job_result(req).await.map(tonic::Response::into_inner);
        }
        let starts = ReportJobStartedRequest { worker_id: req.worker_id, session: req.session, started: req.started };
        let answer = client.report_job_started(starts).await?.into_inner();
        Ok(ReportJobResultResponse {
            refused_starts: answer.refused,
            refused_start_leases: answer.refused_leases,
            ..Default::default()
        })
    }
}

/// How long the `Reports` stream may take to open before the report goes as a call.
const STREAM_OPEN: Duration = Duration::from_secs(10);
/// When a worker reporting by calls tries the stream again: a controller without it may be upgraded meanwhile; a
/// stream that did not open while calls went through costs its report [`STREAM_OPEN`] each time it is tried.
const RETRY_AFTER_UNIMPLEMENTED: Duration = Duration::from_secs(300);
const RETRY_AFTER_TIMEOUT: Duration = Duration::from_secs(3_600);

/// The report loop's way to the controller.
enum Link {
    /// Opened by the next report.
    Closed,
    /// The `Reports` stream: one answer per report, in order.
    Open { requests: mpsc::Sender<ReportJobResultRequest>, answers: Box<tonic::Streaming<ReportJobResultResponse>> },
    /// Each report is a call, until then: the controller has no `Reports` stream, or it did not open.
    Calls(tokio::time::Instant),
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
    fn results_wait_for_more_only_while_confirmed_leases_will_take_every_slot_that_frees() {
        // A job alone, or a worker with nothing confirmed in line (long jobs, or the line ran dry): at once.
        assert!(!lingers(&[finished()], 0, 2));
        // Each result may still free a slot: the confirmed leases in line must outnumber them.
        assert!(lingers(&[finished()], 2, 2));
        assert!(lingers(&[finished(), start(false), finished()], 3, 2));
        assert!(!lingers(&[finished(), finished()], 2, 2), "the second freed slot could go to an unconfirmed lease");
        assert!(!lingers(&[start(false)], 8, 2), "starts alone go at once: their answers feed the slots");
        // Up to as many results as the starts confirmed ahead of the slots.
        let full: Vec<Report> = (0..batch_target(2)).map(|_| finished()).collect();
        assert!(!lingers(&full, 20, 2));
    }

    #[test]
    fn a_start_holding_a_free_slot_or_a_flush_goes_at_once() {
        assert!(!lingers(&[finished(), start(true)], 8, 2), "its slot would stay idle");
        assert!(!lingers(&[start(true)], 8, 2));
        assert!(!lingers(&[finished(), Report::Flush(oneshot::channel().0)], 8, 2), "a drain waits on it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lingering_batch_takes_what_comes_until_its_deadline_or_a_report_that_must_go() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let wants_more = |b: &[Report]| lingers(b, 8, 2);
        // Results that arrive within the linger join the batch; then the deadline sends it.
        let (mut batch, began) = (vec![finished()], tokio::time::Instant::now());
        tokio::spawn({
            let tx = tx.clone();
            async move {
                tokio::time::sleep(Duration::from_micros(500)).await;
                let _ = tx.send(finished());
            }
        });
        gather(&mut rx, &mut batch, began + LINGER, wants_more).await;
        assert_eq!(batch.len(), 2);
        assert_eq!(began.elapsed(), LINGER, "it waited out the linger for a third");
        // A start that holds a free slot ends the wait when it comes.
        let (mut batch, began) = (vec![finished()], tokio::time::Instant::now());
        tokio::spawn({
            let tx = tx.clone();
            async move {
                tokio::time::sleep(Duration::from_micros(300)).await;
                let _ = tx.send(start(true));
            }
        });
        gather(&mut rx, &mut batch, began + LINGER, wants_more).await;
        assert_eq!(batch.len(), 2);
        assert!(began.elapsed() < LINGER, "{:?}", began.elapsed());
        // Never past the most one report carries.
        let mut batch: Vec<Report> = (0..MAX_REPORT_BATCH - 1).map(|_| start(false)).collect();
        batch.push(finished());
        for _ in 0..5 {
            let _ = tx.send(start(false));
        }
        gather(&mut rx, &mut batch, tokio::time::Instant::now() + LINGER, |_| true).await;
        assert_eq!(batch.len(), MAX_REPORT_BATCH);
    }

    /// An agent reporting to `url`.
    fn agent_for(url: &str, dir: &std::path::Path) -> Arc<Agent> {
        let cfg = WorkerConfig::local(url, "w", 1, 1, dir.to_path_buf());
        let channel = burst_proto::tls::lazy(&burst_proto::tls::endpoint(url).unwrap(), None, "controller");
        Agent::new(cfg, url.to_string(), channel, None).0
    }

    /// A controller from before the `Reports` stream answers it `Unimplemented`: the worker then sends each report
    /// as a call, starts alone as `ReportJobStarted` (which every controller has), the rest as `ReportJobResult`.
    /// Here a server answers every path `Unimplemented` and notes which were asked for. A controller that cannot be
    /// reached is no reason to give up the stream.
    #[tokio::test]
    async fn a_controller_without_the_report_stream_gets_reports_as_calls() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let mut link = Link::Closed;
        let err = agent_for(&url, dir.path()).send(&mut link, ReportJobResultRequest::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(matches!(link, Link::Closed), "the stream is opened again by the next report");

        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let note = {
            let asked = asked.clone();
            move |uri: axum::http::Uri| async move {
                asked.lock().unwrap().push(uri.path().rsplit('/').next().unwrap_or_default().to_string());
                [("content-type", "application/grpc"), ("grpc-status", "12")]
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let routes = tonic::service::Routes::from(axum::Router::new().fallback(note));
        tokio::spawn(tonic::transport::Server::builder().add_routes(routes).serve_with_incoming(incoming));
        let agent = agent_for(&url, dir.path());
        let starts = ReportJobResultRequest { started: vec![r("s", 1)], ..Default::default() };
        let err = agent.send(&mut link, starts).await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
        assert!(matches!(link, Link::Calls(_)), "the stream is not tried again for a while");
        let results = ReportJobResultRequest { results: vec![JobResult::default()], ..Default::default() };
        assert_eq!(agent.send(&mut link, results).await.unwrap_err().code(), Code::Unimplemented);
        assert_eq!(*asked.lock().unwrap(), ["Reports", "ReportJobStarted", "ReportJobResult"]);
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
