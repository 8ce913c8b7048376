//! `StreamJobOutput`: finds the worker that runs (or last ran) a job and relays the job's output from there, so
//! that a client never needs a route to a worker.
//!
//! Output lives on the worker, in its output directory: a finished job's output is readable while the job is
//! retained here and its worker — or a restart of it with the same id and output directory — is registered.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use burst_proto::tls::LiveTls;
use burst_proto::v1::worker_rpc_client::WorkerRpcClient;
use burst_proto::v1::{JobOutputChunk, JobOutputRequest, JobState, JobStatus};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use crate::Controller;

/// How long a worker may take to answer before the read fails.
const WORKER_ANSWER: Duration = Duration::from_secs(5);
/// After the controller saw a followed run end (or its lease move), how long the worker may take to finish
/// sending before the relay gives up on it.
const END_GRACE: Duration = Duration::from_secs(5);

pub type Chunks = Pin<Box<dyn Stream<Item = Result<JobOutputChunk, Status>> + Send>>;

/// Reaches workers for output, with the controller's own certificate when the cluster uses TLS.
#[derive(Clone, Default)]
pub struct OutputRelay {
    tls: Option<LiveTls>,
}

impl OutputRelay {
    pub fn new(tls: Option<LiveTls>) -> Self {
        OutputRelay { tls }
    }

    /// The output `req` asks for, of the job whose current status is `status`. With `follow`, a job that has
    /// not started yet is waited for.
    pub async fn open(
        &self,
        controller: &Arc<Controller>,
        status: JobStatus,
        req: JobOutputRequest,
    ) -> Result<Chunks, Status> {
        let id = req.job_id.clone();
        let status = match (ran(&status), req.follow) {
            (true, _) => status,
            (false, true) => until_started(controller, &id).await?,
            (false, false) => return Err(not_run(&status)),
        };
        if !ran(&status) {
            return Err(not_run(&status));
        }
        let worker = status.worker_id.clone();
        let address = controller.lock().worker_address(&worker).ok_or_else(|| {
            Status::unavailable(format!(
                "job {id} ran on worker {worker}, which is not registered now; its output stays in that worker's \
                 output directory and is readable again if the worker comes back"
            ))
        })?;
        let endpoint =
            burst_proto::tls::endpoint(&address).map(burst_proto::tls::keep_alive).map_err(Status::internal)?;
        // A run that is over has nothing more to follow: the worker sends what it wrote at once.
        let mut req = req;
        req.follow &= status.state() == JobState::Running;
        let follow = req.follow;
        let run = (status.job_id.clone(), worker.clone(), status.epoch);
        let channel = burst_proto::tls::lazy(&endpoint, self.tls.as_ref(), burst_proto::tls::WORKER_NAME);
        let mut client = WorkerRpcClient::new(channel);
        let context = move |e: Status| {
            Status::new(e.code(), format!("reading job {id}'s output on worker {worker}: {}", e.message()))
        };
        let answer = tokio::time::timeout(WORKER_ANSWER, client.read_job_output(req))
            .await
            .map_err(|_| Status::unavailable(format!("worker at {address} did not answer within {WORKER_ANSWER:?}")))
            .and_then(|r| r.map_err(&context))?;
        let chunks = answer.into_inner().map(move |chunk| chunk.map_err(&context));
        if !follow {
            return Ok(Box::pin(chunks));
        }
        Ok(relay_until_the_run_ends(chunks, run_ended(controller.clone(), run)))
    }
}

/// Relays `chunks`, but once `ended` (the controller saw the run end or move) gives the worker [`END_GRACE`] to
/// close the stream itself; a worker that went silent (lost, cut off) then ends it with UNAVAILABLE rather
/// than leaving the reader waiting.
fn relay_until_the_run_ends(
    mut chunks: impl Stream<Item = Result<JobOutputChunk, Status>> + Send + Unpin + 'static,
    ended: impl std::future::Future<Output = String> + Send + 'static,
) -> Chunks {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut ended = Box::pin(ended);
        let mut deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        let mut why = String::new();
        loop {
            let chunk = tokio::select! {
                chunk = chunks.next() => chunk,
                w = &mut ended, if deadline.is_none() => {
                    why = w;
                    deadline = Some(Box::pin(tokio::time::sleep(END_GRACE)));
                    continue;
                }
                () = async {
                    match deadline.as_mut() {
                        Some(d) => d.await,
                        None => std::future::pending().await,
                    }
                }, if deadline.is_some() => {
                    let _ = tx.send(Err(Status::unavailable(format!("{why}; the output may be incomplete")))).await;
                    return;
                }
                () = tx.closed() => return,
            };
            match chunk {
                Some(c) => {
                    if tx.send(c).await.is_err() {
                        return;
                    }
                }
                None => return,
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Resolves, saying why, once job `id`'s run by `worker` under `epoch` is over as far as the controller knows:
/// the job ended, was queued again, or moved to another worker.
async fn run_ended(controller: Arc<Controller>, (id, worker, epoch): (String, String, u64)) -> String {
    let mut changes = controller.subscribe();
    loop {
        let current = controller.lock().job(&id).map(|(_, s)| s);
        match current {
            Ok(s) if s.state() == JobState::Running && s.worker_id == worker && s.epoch == epoch => {}
            Ok(s) => {
                let state = s.state().as_str_name().trim_start_matches("JOB_STATE_").to_lowercase();
                return format!(
                    "job {id} is {state} (its run on worker {worker} is over) but {worker} did not end                                 the output stream"
                );
            }
            Err(_) => return format!("job {id} is no longer known"),
        }
        // Wait for a change of this job (or missed changes), then look again.
        loop {
            match changes.recv().await {
                Ok(s) if s.job_id == id => break,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return "the controller is shutting down".into(),
            }
        }
    }
}

/// Whether the job has run somewhere (it is running or ended after running), so a worker has its output.
fn ran(status: &JobStatus) -> bool {
    let state = status.state();
    !status.worker_id.is_empty() && !matches!(state, JobState::Queued | JobState::Leased)
}

fn not_run(status: &JobStatus) -> Status {
    let state = status.state().as_str_name().trim_start_matches("JOB_STATE_").to_lowercase();
    let hint = match status.state() {
        JobState::Queued | JobState::Leased => "; follow it to wait until it starts",
        _ => "",
    };
    Status::failed_precondition(format!("job {} is {state} and has not run: no output{hint}", status.job_id))
}

/// Waits until job `id` runs (or ends); returns its status then.
async fn until_started(controller: &Controller, id: &str) -> Result<JobStatus, Status> {
    // Subscribe before reading the status, so no change falls between the two.
    let mut changes = controller.subscribe();
    let mut stopping = controller.stopping();
    loop {
        let (_, status) = controller.lock().job(id).map_err(|e| Status::not_found(e.to_string()))?;
        let ended = matches!(status.state(), JobState::Succeeded | JobState::Failed | JobState::Cancelled);
        if ran(&status) || ended {
            return Ok(status);
        }
        loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                _ = stopping.wait_for(|s| *s) => return Err(Status::unavailable("the controller is shutting down")),
            };
            match change {
                Ok(s) if s.job_id == id => break,
                Ok(_) => {}
                // Missed changes: read the status again.
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return Err(Status::unavailable("the controller is shutting down")),
            }
        }
    }
}
