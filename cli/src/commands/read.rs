//! The read commands: `status`, `wait`, `list`, `workers`, `watch`. Each prints a table (`-o wide`: more columns),
//! JSON with `-o json`, or only ids with `-o name`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use burst_proto::v1::{
    CancelJobRequest, CordonWorkersRequest, GetJobStatusRequest, GetStatsRequest, JobState, JobStatus, ListJobsRequest,
    ListWorkersRequest, WorkerStatus,
};

use crate::args::Format;
use crate::client::{Ctx, Usage};
use crate::commands::wait;
use crate::render;

pub async fn status(ctx: &Ctx, ids: Vec<String>) -> anyhow::Result<u8> {
    wait::check_ids(&ids)?;
    let mut client = ctx.connect().await?;
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

pub async fn list(
    ctx: &Ctx,
    states: Vec<JobState>,
    labels: Vec<(String, String)>,
    owner: String,
    limit: usize,
    newest_first: bool,
) -> anyhow::Result<u8> {
    if limit == 0 {
        return Err(Usage("--limit must be at least 1".into()).into());
    }
    let mut client = ctx.connect().await?;
    let mut jobs = Vec::new();
    let mut page_token = String::new();
    let mut more = false;
    while jobs.len() < limit {
        let req = ListJobsRequest {
            states: states.iter().map(|s| *s as i32).collect(),
            labels: labels.iter().cloned().collect(),
            limit: (limit - jobs.len()).min(5_000) as u32,
            page_token,
            newest_first,
            owner: owner.clone(),
        };
        let resp = client.list_jobs(req).await.map_err(anyhow::Error::from)?.into_inner();
        jobs.extend(resp.jobs);
        more = !resp.next_page_token.is_empty();
        if !more {
            break;
        }
        page_token = resp.next_page_token;
    }
    print_jobs(ctx, &jobs);
    if more {
        eprintln!("burst: more jobs match than the {} shown: raise --limit, or --all for every one", jobs.len());
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
        println!("{}", render::to_value(&resp));
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

/// Jobs as the format asks: JSON (an array), names (one id a line), the wide table or the table.
pub fn print_jobs(ctx: &Ctx, jobs: &[JobStatus]) {
    match ctx.format {
        Format::Json => println!("{}", render::array(jobs)),
        Format::Name => jobs.iter().for_each(|j| println!("{}", j.job_id)),
        Format::Wide => print!("{}", render::jobs_table_wide(jobs)),
        Format::Table => print!("{}", render::jobs_table(jobs)),
    }
}

fn print_workers(ctx: &Ctx, workers: &[WorkerStatus]) {
    match ctx.format {
        Format::Json => println!("{}", render::array(workers)),
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
        println!("{}", render::array(&stats.pools));
    } else {
        print!("{}", render::pools_table(&stats.pools));
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
            println!("{}", render::to_value(&stats));
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
