//! How read commands print: aligned tables for people, JSON (`-o json`) for scripts. One function per thing
//! shown, so the table and the JSON of a job always agree.

use burst_proto::v1::{GetStatsResponse, JobState, JobStatus, PoolStats, Reason, SubmitterStats, WorkerStatus};
use burst_proto::{reason_name, state_name};

pub use burst_proto::json::to_text;

/// One line for people: `queued 3  leased 1  running 4  succeeded 90  failed 2  cancelled 0  slots 4/8  workers 2
/// stolen 12`.
pub fn stats_line(s: &GetStatsResponse) -> String {
    format!(
        "queued {}  leased {}  running {}  succeeded {}  failed {}  cancelled {}  slots {}/{}  workers {}  stolen {}",
        s.queued,
        s.leased,
        s.running,
        s.succeeded,
        s.failed,
        s.cancelled,
        s.slots_busy,
        s.slots_total,
        s.workers,
        s.jobs_stolen_total
    )
}

/// A short "how it ended" for a job: `exit 0`, `exit 3`, `signal 9`, `timeout`, `spawn-error: ...`, or why it
/// waits.
pub fn outcome(s: &JobStatus) -> String {
    match s.state() {
        JobState::Queued => format!("waiting: {}", s.waiting_reason),
        JobState::Leased | JobState::Running => String::new(),
        _ => match (s.reason(), s.exit_code, s.signal) {
            (Reason::Exited, Some(code), _) => format!("exit {code}"),
            (Reason::Signaled, _, Some(sig)) => format!("signal {sig}"),
            (Reason::Timeout, ..) => "timeout".into(),
            (reason, ..) if s.message.is_empty() => reason_name(reason).to_string(),
            (reason, ..) => format!("{}: {}", reason_name(reason), s.message),
        },
    }
}

pub fn jobs_table(jobs: &[JobStatus]) -> String {
    let mut rows = vec![vec!["JOB".to_string(), "STATE".into(), "WORKER".into(), "ATTEMPT".into(), "OUTCOME".into()]];
    for s in jobs {
        rows.push(vec![
            s.job_id.clone(),
            state_name(s.state()).into(),
            s.worker_id.clone(),
            s.attempt.to_string(),
            outcome(s),
        ]);
    }
    table(&rows)
}

/// [`jobs_table`] with the pool, the submission time and the labels.
pub fn jobs_table_wide(jobs: &[JobStatus]) -> String {
    let head = ["JOB", "STATE", "WORKER", "POOL", "ATTEMPT", "SUBMITTED", "LABELS", "OUTCOME"];
    let mut rows = vec![head.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for s in jobs {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        rows.push(vec![
            s.job_id.clone(),
            state_name(s.state()).into(),
            s.worker_id.clone(),
            s.pool.clone(),
            s.attempt.to_string(),
            utc_time(s.submitted_at_ms),
            labels.join(","),
            outcome(s),
        ]);
    }
    table(&rows)
}

/// A time stamp (ms since the Unix epoch) as `2026-12-05T04:51:34Z`.
fn utc_time(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Every field of one job, one per line.
pub fn job_details(s: &JobStatus) -> String {
    let mut lines = vec![
        ("job", s.job_id.clone()),
        ("state", state_name(s.state()).to_string()),
        ("outcome", outcome(s)),
        ("worker", s.worker_id.clone()),
        ("attempt", s.attempt.to_string()),
    ];
    if !s.pool.is_empty() {
        let spilled = if s.spilled { " (spilled over: a cheaper pool had no room)" } else { "" };
        lines.push(("pool", format!("{}{spilled}", s.pool)));
    }
    if !s.stolen_from.is_empty() {
        lines.push(("stolen from", s.stolen_from.clone()));
    }
    if let Some(a) = &s.array {
        lines.push((
            "indices",
            format!(
                "{} in all: {} queued, {} leased, {} running, {} succeeded, {} failed, {} cancelled",
                a.size, a.queued, a.leased, a.running, a.succeeded, a.failed, a.cancelled
            ),
        ));
        if !a.failed_indices.is_empty() {
            let listed: Vec<String> = a.failed_indices.iter().map(u32::to_string).collect();
            let more = if a.failed > listed.len() as u64 { ", ..." } else { "" };
            lines.push(("failed indices", format!("{}{more}", listed.join(","))));
        }
        for f in &a.failures {
            lines.push(("failure", f.clone()));
        }
    }
    let times = [("submitted", s.submitted_at_ms), ("started", s.started_at_ms), ("finished", s.finished_at_ms)];
    for (what, ms) in times {
        if ms > 0 {
            lines.push((what, timestamp(ms)));
        }
    }
    if s.started_at_ms >= s.submitted_at_ms && s.started_at_ms > 0 {
        lines.push(("waited", format!("{} ms", s.started_at_ms - s.submitted_at_ms)));
    }
    if s.started_at_ms > 0 && s.finished_at_ms >= s.started_at_ms {
        lines.push(("run time", format!("{} ms", s.finished_at_ms - s.started_at_ms)));
    }
    for (what, path, cut) in
        [("stdout", &s.stdout_path, s.stdout_truncated), ("stderr", &s.stderr_path, s.stderr_truncated)]
    {
        if !path.is_empty() {
            lines.push((what, if cut { format!("{path} (truncated at the cap)") } else { path.clone() }));
        }
    }
    if s.retry_at_ms > 0 {
        lines.push(("retry at", timestamp(s.retry_at_ms)));
    }
    for a in &s.attempts {
        let how = match (a.reason(), a.exit_code, a.signal) {
            (Reason::Exited, Some(code), _) => format!("exit {code}"),
            (Reason::Signaled, _, Some(sig)) => format!("signal {sig}"),
            (reason, ..) => reason_name(reason).to_string(),
        };
        let took = a.finished_at_ms.saturating_sub(a.started_at_ms);
        let pool = if a.pool.is_empty() { String::new() } else { format!(" (pool {})", a.pool) };
        lines.push(("attempt", format!("#{} on {}{pool}: {how} after {took} ms", a.attempt, a.worker_id)));
    }
    if !s.labels.is_empty() {
        let mut labels: Vec<_> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        lines.push(("labels", labels.join(",")));
    }
    let rows: Vec<Vec<String>> = lines.into_iter().map(|(k, v)| vec![format!("{k}:"), v]).collect();
    let mut text = table(&rows);
    if !s.output_tail.is_empty() {
        text.push_str("output tail:\n");
        text.push_str(&s.output_tail);
        if !s.output_tail.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}

pub fn workers_table(workers: &[WorkerStatus]) -> String {
    let mut rows = vec![vec![
        "WORKER".to_string(),
        "POOL".into(),
        "ADDRESS".into(),
        "RUNNING".into(),
        "HELD".into(),
        "CPU".into(),
        "MEMORY".into(),
        "GPUS".into(),
        "FINISHED".into(),
        "SEEN".into(),
    ]];
    for w in workers {
        let info = w.info.clone().unwrap_or_default();
        let r = info.resources.unwrap_or_default();
        rows.push(vec![
            match (w.draining, w.quarantined_ms_left) {
                (true, _) => format!("{} (draining)", info.worker_id),
                _ if w.cordoned => format!("{} (cordoned)", info.worker_id),
                (_, left) if left > 0 => format!("{} (quarantined {}s)", info.worker_id, left.div_ceil(1000)),
                _ => info.worker_id,
            },
            if info.pool.is_empty() { "default".into() } else { info.pool },
            info.advertise_addr,
            format!("{}/{}", w.running, info.slots),
            format!("{}/{}", w.held, info.slots + info.queue_capacity),
            format!("{}m", r.cpu_millis),
            format!("{:.1}Gi", r.memory_bytes as f64 / (1u64 << 30) as f64),
            r.gpus.to_string(),
            w.jobs_finished.to_string(),
            format!("{:.1}s ago", w.last_heartbeat_ms_ago as f64 / 1000.0),
        ]);
    }
    table(&rows)
}

pub fn pools_table(pools: &[PoolStats]) -> String {
    let mut rows = vec![
        [
            "POOL",
            "COST/SLOT-S",
            "KIND",
            "WORKERS",
            "SLOTS",
            "PLACED",
            "SPILLED",
            "WAITING",
            "BUSY SLOT-S",
            "SLOT-S",
            "COST",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in pools {
        rows.push(vec![
            p.name.clone(),
            format!("{}", p.cost_per_slot_second),
            if p.elastic { "elastic" } else { "fixed" }.into(),
            p.workers.to_string(),
            format!("{}/{}", p.slots_busy, p.slots_total),
            p.jobs_placed.to_string(),
            p.jobs_spilled.to_string(),
            p.jobs_waiting.to_string(),
            format!("{:.1}", p.busy_slot_seconds),
            format!("{:.1}", p.slot_seconds),
            format!("{:.2}", p.cost),
        ]);
    }
    table(&rows)
}

pub fn shares_table(submitters: &[SubmitterStats]) -> String {
    let mut rows = vec![["SUBMITTER", "WEIGHT", "QUEUED", "HELD", "HELD/WEIGHT"].map(String::from).to_vec()];
    for o in submitters {
        rows.push(vec![
            o.name.clone(),
            o.weight.to_string(),
            o.queued.to_string(),
            o.held.to_string(),
            format!("{:.1}", o.held as f64 / f64::from(o.weight.max(1))),
        ]);
    }
    table(&rows)
}

/// `2026-11-22T18:45:26.123Z` for milliseconds since the Unix epoch.
pub fn timestamp(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_line_up() {
        let t = table(&[vec!["A".into(), "B".into()], vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     B\nlong  x\n");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(1_795_373_818_099), "2026-11-22T18:56:58.099Z");
    }

    #[test]
    fn outcomes_read_plainly() {
        let mut s = JobStatus {
            state: JobState::Failed as i32,
            reason: Reason::Exited as i32,
            exit_code: Some(3),
            ..JobStatus::default()
        };
        assert_eq!(outcome(&s), "exit 3");
        s.reason = Reason::SpawnError as i32;
        s.exit_code = None;
        s.message = "cannot start \"x\"".into();
        assert_eq!(outcome(&s), "spawn-error: cannot start \"x\"");
        s.state = JobState::Queued as i32;
        s.waiting_reason = "no worker is registered".into();
        assert_eq!(outcome(&s), "waiting: no worker is registered");
    }
}
