//! Waiting for jobs to end: `burst wait`, `burst submit --wait`, and the `burst dev` batch.
//!
//! Follows one `WatchJobs` stream for the jobs still open (their current status first, then changes). If the
//! controller cuts the stream because this client fell behind, it watches again with the jobs still open, so
//! nothing is missed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use burst_proto::v1::{JobState, JobStatus, Reason, WatchJobsRequest};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::progress::Progress;

use crate::client::{Client, Usage};

/// Ids sent per `WatchJobs` call: keeps each request far under the message limit.
const IDS_PER_WATCH: usize = 50_000;
/// After this long with no job ending, a line on stderr says why one of them is still waiting.
const STALLED_NOTE: Duration = Duration::from_secs(5);

/// Whether a job has ended (succeeded, failed or cancelled).
pub fn is_terminal(s: &JobStatus) -> bool {
    matches!(s.state(), JobState::Succeeded | JobState::Failed | JobState::Cancelled)
}

/// Waits until every job in `ids` is terminal; returns their final statuses in the order of `ids`. With
/// `progress`, shows how many have ended (see [`Progress`]).
pub async fn wait_all(
    client: &mut Client,
    ids: &[String],
    timeout: Option<Duration>,
    progress: bool,
) -> anyhow::Result<Vec<JobStatus>> {
    let bar = Progress::new(progress, ids.len() as u64, "waiting");
    let work = async {
        let mut done: HashMap<String, JobStatus> = HashMap::new();
        let mut open: HashSet<String> = ids.iter().cloned().collect();
        while !open.is_empty() {
            let batch: Vec<String> = open.iter().take(IDS_PER_WATCH).cloned().collect();
            follow(client, batch, &mut open, &mut done, &bar).await?;
        }
        anyhow::Ok(done)
    };
    let mut done = match timeout {
        None => work.await?,
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .map_err(|_| anyhow::anyhow!("jobs still running after {limit:?}"))??,
    };
    bar.finish();
    Ok(ids.iter().filter_map(|id| done.remove(id)).collect())
}

/// Follows one watch of `batch` until all of it is terminal, or the stream is cut (then the caller watches
/// again).
async fn follow(
    client: &mut Client,
    batch: Vec<String>,
    open: &mut HashSet<String>,
    done: &mut HashMap<String, JobStatus>,
    bar: &Progress,
) -> anyhow::Result<()> {
    let mut left: HashSet<String> = batch.iter().cloned().collect();
    let req = WatchJobsRequest { job_ids: batch, initial: true, terminal_only: true, ..WatchJobsRequest::default() };
    let mut stream = client.watch_jobs(req).await.map_err(anyhow::Error::from)?.into_inner();
    let mut quiet = tokio::time::interval_at(tokio::time::Instant::now() + STALLED_NOTE, STALLED_NOTE);
    while !left.is_empty() {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = quiet.tick() => {
                note_stalled(client, &left, open.len()).await;
                continue;
            }
        };
        match next {
            Some(Ok(status)) if is_terminal(&status) => {
                quiet.reset();
                if left.remove(&status.job_id) {
                    open.remove(&status.job_id);
                    bar.inc(1);
                    done.insert(status.job_id.clone(), status);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(status)) if status.code() == Code::Aborted => return Ok(()),
            Some(Err(status)) => return Err(anyhow::Error::from(status)),
            None => {
                return Err(anyhow::anyhow!("the controller closed the watch stream")).context("waiting for jobs");
            }
        }
    }
    Ok(())
}

/// One line on stderr when nothing has ended for a while: how many jobs are still open, and where one of them
/// stands (a queued job's waiting reason says why it has not started: no worker, none with room, none fits).
async fn note_stalled(client: &mut Client, left: &HashSet<String>, open: usize) {
    let Some(id) = left.iter().min() else { return };
    let req = burst_proto::v1::GetJobStatusRequest { job_id: id.clone() };
    let Ok(status) = client.get_job_status(req).await.map(tonic::Response::into_inner) else { return };
    let state = burst_proto::state_name(status.state());
    let why = match status.waiting_reason.as_str() {
        "" => String::new(),
        reason => format!(": {reason}"),
    };
    let jobs = if open == 1 { "1 job".to_string() } else { format!("{open} jobs") };
    eprintln!("burst: still waiting for {jobs}; {id} is {state}{why}");
}

/// The exit code that tells a script how jobs ended: one job's own exit code (128+signal, 124 on timeout, 127
/// when it could not start), or for several, 0 when all succeeded and 1 otherwise.
pub fn exit_code_of(statuses: &[JobStatus]) -> u8 {
    if let [one] = statuses {
        return match (one.state(), one.reason()) {
            (JobState::Succeeded, _) => 0,
            (_, Reason::Exited) => one.exit_code.map_or(1, |c| c.clamp(1, 255) as u8),
            (_, Reason::Signaled) => one.signal.map_or(1, |s| (128 + s).clamp(1, 255) as u8),
            (_, Reason::Timeout) => 124,
            (_, Reason::SpawnError) => 127,
            _ => 1,
        };
    }
    if statuses.iter().all(|s| s.state() == JobState::Succeeded) { 0 } else { 1 }
}

/// Rejects ids that cannot be job ids before asking the controller.
pub fn check_ids(ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c == '/') {
            return Err(Usage(format!("{id:?} is not a job id")).into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(state: JobState, reason: Reason, exit: Option<i32>, signal: Option<i32>) -> JobStatus {
        JobStatus { state: state as i32, reason: reason as i32, exit_code: exit, signal, ..JobStatus::default() }
    }

    #[test]
    fn one_jobs_exit_code_passes_through() {
        assert_eq!(exit_code_of(&[ended(JobState::Succeeded, Reason::Exited, Some(0), None)]), 0);
        assert_eq!(exit_code_of(&[ended(JobState::Failed, Reason::Exited, Some(3), None)]), 3);
        assert_eq!(exit_code_of(&[ended(JobState::Failed, Reason::Signaled, None, Some(9))]), 137);
        assert_eq!(exit_code_of(&[ended(JobState::Failed, Reason::Timeout, None, Some(15))]), 124);
        assert_eq!(exit_code_of(&[ended(JobState::Failed, Reason::SpawnError, None, None)]), 127);
    }

    #[test]
    fn several_jobs_exit_one_if_any_failed() {
        let ok = ended(JobState::Succeeded, Reason::Exited, Some(0), None);
        let bad = ended(JobState::Failed, Reason::Exited, Some(3), None);
        assert_eq!(exit_code_of(&[ok.clone(), ok.clone()]), 0);
        assert_eq!(exit_code_of(&[ok, bad]), 1);
    }
}
