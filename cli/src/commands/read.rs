//! The read commands: `status`, `wait`, `list`, `workers`, `watch`. Each prints a table (`-o wide`: more columns),
//! JSON with `-o json`, or only ids with `-o name`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use std::collections::HashSet;

use burst_proto::v1::{
    CancelJobRequest, CordonWorkersRequest, GetJobStatusRequest, GetStatsRequest, JobState, JobStatus, ListJobsRequest,
    ListWorkersRequest, WatchJobsRequest, WorkerStatus,
};

use crate::args::Format;
use crate::client::{Ctx, Usage};
use crate::commands::wait;
use crate::render;

pub async fn status(ctx: &Ctx, ids: Vec<String>, watch: bool) -> anyhow::Result<u8> {
    wait::check_ids(&ids)?;
    let mut client = ctx.connect().await?;
    if watch {
        // The watch's first messages are the current statuses, so nothing changes unseen between a read and it.
        let req = WatchJobsRequest { job_ids: ids.clone(), initial: true, ..WatchJobsRequest::default() };
        let stream = client.watch_jobs(req).await.map_err(anyhow::Error::from)?.into_inner();
        print_header(ctx);
        print_changes(ctx, stream, &[], Some(ids.into_iter().collect())).await?;
        return Ok(0);
    }
    let mut statuses = Vec::new();
    for id in ids {
        let req = GetJobStatusRequest { job_id: id };
        statuses.push(client.get_job_status(req).await.map_err(anyhow::Error::from)?.into_inner());
    }
    match (ctx.format, statuses.as_slice()) {
        (Format::Table, [one]) => print!("{}", render::job_details(one)),
        // An array whatever the number of ids, as every command that prints jobs.
        _ => print_jobs(ctx, &statuses),
    }
    Ok(0)
}

pub async fn wait_jobs(ctx: &Ctx, ids: Vec<String>, timeout: Option<Duration>) -> anyhow::Result<u8> {
    wait::check_ids(&ids)?;
    let mut client = ctx.connect().await?;
    let statuses = wait::wait_all(&mut client, &ids, timeout, ids.len() > 1).await?;
    print_jobs(ctx, &statuses);
    Ok(wait::exit_code_of(&statuses))
}

/// What `burst list` asks for.
pub struct ListQuery {
    pub states: Vec<JobState>,
    pub labels: Vec<(String, String)>,
    pub owner: String,
    pub limit: usize,
    pub newest: bool,
}

pub async fn list(ctx: &Ctx, query: ListQuery, watch: bool) -> anyhow::Result<u8> {
    let ListQuery { states, labels, owner, limit, newest: newest_first } = query;
    if limit == 0 {
        return Err(Usage("--limit must be at least 1".into()).into());
    }
    let mut client = ctx.connect().await?;
    // Watching starts before the list is read: a change while it is read is printed after it, not lost.
    let changes = match watch {
        true => {
            let req = WatchJobsRequest { labels: labels.iter().cloned().collect(), ..WatchJobsRequest::default() };
            Some(client.watch_jobs(req).await.map_err(anyhow::Error::from)?.into_inner())
        }
        false => None,
    };
    // Printed page by page: `--all` over a million jobs holds one page, not all of them.
    let mut out = Pages::default();
    let mut page_token = String::new();
    let mut more = false;
    while out.printed < limit {
        let req = ListJobsRequest {
            states: states.iter().map(|s| *s as i32).collect(),
            labels: labels.iter().cloned().collect(),
            limit: (limit - out.printed).min(5_000) as u32,
            page_token,
            newest_first,
            owner: owner.clone(),
        };
        let resp = client.list_jobs(req).await.map_err(anyhow::Error::from)?.into_inner();
        out.page(ctx, &resp.jobs)?;
        more = !resp.next_page_token.is_empty();
        if !more {
            break;
        }
        page_token = resp.next_page_token;
    }
    out.finish(ctx)?;
    if more {
        eprintln!("burst: more jobs match than the {} shown: raise --limit, or --all for every one", out.printed);
    }
    if let Some(changes) = changes {
        print_changes(ctx, changes, &states, None).await?;
    }
    Ok(0)
}

/// Not a read, but it prints like one: the cancelled ids (and those that had already ended).
pub async fn cancel(ctx: &Ctx, ids: Vec<String>, labels: Vec<(String, String)>) -> anyhow::Result<u8> {
    if ids.is_empty() && labels.is_empty() {
        return Err(Usage("name the jobs to cancel, or give --label KEY=VALUE".into()).into());
    }
    wait::check_ids(&ids)?;
    let mut client = ctx.connect().await?;
    let req = CancelJobRequest { job_ids: ids, labels: labels.into_iter().collect() };
    let resp = client.cancel_job(req).await.map_err(anyhow::Error::from)?.into_inner();
    if ctx.json() {
        println!("{}", render::to_text(&resp));
    } else {
        for id in &resp.cancelled {
            println!("{id} cancelled");
        }
        for id in &resp.already_ended {
            println!("{id} had already ended");
        }
    }
    Ok(0)
}

pub async fn workers(ctx: &Ctx) -> anyhow::Result<u8> {
    let mut client = ctx.connect().await?;
    let workers = client.list_workers(ListWorkersRequest {}).await.map_err(anyhow::Error::from)?.into_inner().workers;
    print_workers(ctx, &workers);
    Ok(0)
}

/// `--watch`: after the first print, each change as it happens, one line each (a table row, a JSON object, an
/// id), for jobs in `states` (empty: any); with `open`, until every one of those jobs has ended.
async fn print_changes(
    ctx: &Ctx,
    mut stream: tonic::Streaming<JobStatus>,
    states: &[JobState],
    mut open: Option<HashSet<String>>,
) -> anyhow::Result<()> {
    while let Some(item) = tokio_stream::StreamExt::next(&mut stream).await {
        let status = match item {
            Ok(status) => status,
            Err(s) if s.code() == tonic::Code::Aborted => {
                anyhow::bail!("this watch fell too far behind the controller's changes; run it again")
            }
            Err(s) => return Err(s.into()),
        };
        if states.is_empty() || states.contains(&status.state()) {
            let line = match ctx.format {
                Format::Json => render::to_text(&status),
                Format::Name => status.job_id.clone(),
                Format::Wide => {
                    render::jobs_table_wide(std::slice::from_ref(&status)).lines().nth(1).unwrap_or("").into()
                }
                Format::Table => render::jobs_table(std::slice::from_ref(&status)).lines().nth(1).unwrap_or("").into(),
            };
            println!("{line}");
            std::io::stdout().flush()?;
        }
        if let Some(left) = open.as_mut()
            && wait::is_terminal(&status)
        {
            left.remove(&status.job_id);
            if left.is_empty() {
                break;
            }
        }
    }
    Ok(())
}

/// Jobs printed a page at a time, as [`print_jobs`] prints them all at once: one JSON array, one table (its
/// header once; each page's columns aligned among themselves), or ids.
#[derive(Default)]
struct Pages {
    printed: usize,
}

impl Pages {
    fn page(&mut self, ctx: &Ctx, jobs: &[JobStatus]) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        let first = self.printed == 0;
        match ctx.format {
            Format::Json => {
                for (i, job) in jobs.iter().enumerate() {
                    let sep = if first && i == 0 { "[" } else { "," };
                    write!(stdout, "{sep}{}", render::to_text(job))?;
                }
            }
            Format::Name => jobs.iter().try_for_each(|j| writeln!(stdout, "{}", j.job_id))?,
            Format::Table | Format::Wide if !first && jobs.is_empty() => {}
            Format::Table | Format::Wide => {
                let table = match ctx.format {
                    Format::Wide => render::jobs_table_wide(jobs),
                    _ => render::jobs_table(jobs),
                };
                let mut rows = table.split_inclusive('\n').skip(usize::from(!first));
                rows.try_for_each(|row| stdout.write_all(row.as_bytes()))?;
            }
        }
        self.printed += jobs.len();
        Ok(())
    }

    fn finish(&self, ctx: &Ctx) -> std::io::Result<()> {
        if ctx.format == Format::Json {
            println!("{}", if self.printed == 0 { "[]" } else { "]" });
        }
        std::io::stdout().flush()
    }
}

/// The table's header line, for rows printed one by one.
fn print_header(ctx: &Ctx) {
    match ctx.format {
        Format::Table => print!("{}", render::jobs_table(&[])),
        Format::Wide => print!("{}", render::jobs_table_wide(&[])),
        Format::Json | Format::Name => {}
    }
}

/// Jobs as the format asks: JSON (an array), names (one id a line), the wide table or the table.
pub fn print_jobs(ctx: &Ctx, jobs: &[JobStatus]) {
    match ctx.format {
        Format::Json => println!("{}", render::to_text(jobs)),
        Format::Name => jobs.iter().for_each(|j| println!("{}", j.job_id)),
        Format::Wide => print!("{}", render::jobs_table_wide(jobs)),
        Format::Table => print!("{}", render::jobs_table(jobs)),
    }
}

fn print_workers(ctx: &Ctx, workers: &[WorkerStatus]) {
    match ctx.format {
        Format::Json => println!("{}", render::to_text(workers)),
        Format::Name => {
            workers.iter().for_each(|w| println!("{}", w.info.as_ref().map_or("", |i| i.worker_id.as_str())))
        }
        Format::Table | Format::Wide => print!("{}", render::workers_table(workers)),
    }
}

/// Cordons (or uncordons) workers and prints them as they are now.
pub async fn cordon(ctx: &Ctx, workers: Vec<String>, cordon: bool) -> anyhow::Result<u8> {
    let mut client = ctx.connect().await?;
    let req = CordonWorkersRequest { worker_ids: workers, uncordon: !cordon };
    let workers = client.cordon_workers(req).await.map_err(anyhow::Error::from)?.into_inner().workers;
    print_workers(ctx, &workers);
    Ok(0)
}

pub async fn pools(ctx: &Ctx) -> anyhow::Result<u8> {
    let mut client = ctx.connect().await?;
    let stats = client.get_stats(GetStatsRequest {}).await.map_err(anyhow::Error::from)?.into_inner();
    if ctx.json() {
        println!("{}", render::to_text(&stats.pools));
    } else {
        print!("{}", render::pools_table(&stats.pools));
    }
    Ok(0)
}

pub async fn shares(ctx: &Ctx) -> anyhow::Result<u8> {
    let mut client = ctx.connect().await?;
    let stats = client.get_stats(GetStatsRequest {}).await.map_err(anyhow::Error::from)?.into_inner();
    if ctx.json() {
        println!("{}", render::to_text(&stats.submitters));
    } else {
        print!("{}", render::shares_table(&stats.submitters));
    }
    Ok(0)
}

/// Prints job counts by state every `interval` until Ctrl-C (or once). On a terminal the line is redrawn in
/// place; otherwise each update is a line of its own.
pub async fn watch(ctx: &Ctx, once: bool, interval: Duration) -> anyhow::Result<u8> {
    if interval < Duration::from_millis(50) {
        return Err(Usage("--interval must be at least 50ms".into()).into());
    }
    let mut client = ctx.connect().await?;
    let tty = std::io::stdout().is_terminal() && !ctx.json();
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let stats = client.get_stats(GetStatsRequest {}).await.map_err(anyhow::Error::from)?.into_inner();
        if ctx.json() {
            println!("{}", render::to_text(&stats));
        } else if tty {
            print!("\r\x1b[2K{}", render::stats_line(&stats));
            let _ = std::io::stdout().flush();
        } else {
            println!("{}", render::stats_line(&stats));
        }
        if once {
            break;
        }
    }
    if tty {
        println!();
    }
    Ok(0)
}
