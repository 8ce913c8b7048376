//! `burst submit`: jobs from the command line or a JSON Lines file, in batches, optionally waiting for them.

use std::io::Read;

use anyhow::Context;
use burst_proto::v1::{self, JobSpec, SubmitJobsRequest, job_spec::Kind as SpecKind, python_spec::Entry};
use serde_json::json;

use crate::args::{Kind, SpecOpts, SubmitArgs};
use crate::client::{Ctx, Usage};
use crate::commands::wait;
use crate::{jobfile, render};

/// Specs per `SubmitJobs` call: large enough to amortize the round trip, small enough to keep each call short.
const BATCH: usize = 1_000;
/// Encoded bytes per `SubmitJobs` call, far under the message limit (`burst_proto::MAX_MESSAGE_BYTES`): large
/// specs go in smaller batches.
const BATCH_BYTES: usize = 16 * 1024 * 1024;

/// The next batch from `specs`: up to [`BATCH`] specs and [`BATCH_BYTES`] (at least one spec).
fn next_batch(specs: &mut std::iter::Peekable<impl Iterator<Item = JobSpec>>) -> Vec<JobSpec> {
    let (mut batch, mut bytes) = (Vec::new(), 0);
    while batch.len() < BATCH {
        let Some(size) = specs.peek().map(prost::Message::encoded_len) else { break };
        if !batch.is_empty() && bytes + size > BATCH_BYTES {
            break;
        }
        bytes += size;
        batch.extend(specs.next());
    }
    batch
}

pub async fn run(ctx: &Ctx, args: SubmitArgs) -> anyhow::Result<u8> {
    let SubmitArgs { file, kind, spec, wait: wait_for_them, count } = args;
    let specs = match (file, kind) {
        (Some(_), Some(_)) => {
            return Err(Usage("give either -f FILE or a job kind (process, python, docker), not both".into()).into());
        }
        (Some(path), None) => {
            if !spec.is_empty() {
                return Err(Usage("spec options cannot be combined with -f; put them in the file".into()).into());
            }
            read_jobs_file(&path)?
        }
        (None, Some(kind)) => vec![spec_from(kind, spec)?],
        (None, None) => {
            return Err(Usage("say what to run: burst submit process|python|docker ..., or -f FILE".into()).into());
        }
    };
    if count == 0 {
        return Err(Usage("--count must be at least 1".into()).into());
    }
    if count > 1 && specs.iter().any(|s| !s.idempotency_key.is_empty()) {
        return Err(Usage("--count with an idempotency key would name one job; drop one of them".into()).into());
    }
    let total = specs.len() as u64 * count;
    let mut client = ctx.connect().await?;
    let bar = crate::progress::Progress::new(total > BATCH as u64, total, "submitting");
    let mut ids = Vec::with_capacity(total as usize);
    let mut all = (0..count).flat_map(|_| specs.iter().cloned()).peekable();
    loop {
        let chunk = next_batch(&mut all);
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len() as u64;
        let resp = client
            .submit_jobs(SubmitJobsRequest { specs: chunk })
            .await
            .map_err(anyhow::Error::from)
            .with_context(|| format!("submitted {} of {total} jobs, then", ids.len()))?;
        ids.extend(resp.into_inner().jobs.into_iter().map(|j| j.job_id));
        bar.inc(n);
    }
    bar.finish();
    if ctx.json() && !wait_for_them {
        println!("{}", json!({ "job_ids": ids }));
    } else if !ctx.json() {
        for id in &ids {
            println!("{id}");
        }
    }
    if !wait_for_them {
        return Ok(0);
    }
    let statuses = wait::wait_all(&mut client, &ids, None, ids.len() > 1).await?;
    if ctx.json() {
        println!("{}", render::to_text(&statuses));
    } else if let [one] = statuses.as_slice() {
        eprintln!(
            "{} {} on {}: {}",
            one.job_id,
            burst_proto::state_name(one.state()),
            one.worker_id,
            render::outcome(one)
        );
    } else {
        let ok = statuses.iter().filter(|s| s.state() == v1::JobState::Succeeded).count();
        eprintln!("{ok} of {} jobs succeeded", statuses.len());
    }
    Ok(wait::exit_code_of(&statuses))
}

fn read_jobs_file(path: &std::path::Path) -> anyhow::Result<Vec<JobSpec>> {
    let name = path.display().to_string();
    let mut text = String::new();
    if name == "-" {
        std::io::stdin().read_to_string(&mut text).context("reading jobs from stdin")?;
    } else {
        text = std::fs::read_to_string(path).map_err(|e| Usage(format!("cannot read {name}: {e}")))?;
    }
    jobfile::parse(&name, &text).map_err(|e| Usage(e).into())
}

/// A spec from `burst submit <kind> ...` and its options.
pub fn spec_from(kind: Kind, opts: SpecOpts) -> anyhow::Result<JobSpec> {
    let kind = match kind {
        Kind::Process { command, args } => SpecKind::Process(v1::ProcessSpec { command, args }),
        Kind::Python { script, module, code, interpreter, args } => {
            let entry = match (script, module, code) {
                (Some(s), _, _) => Entry::Script(s),
                (_, Some(m), _) => Entry::Module(m),
                (_, _, Some(c)) => Entry::Code(c),
                _ => return Err(Usage("python needs --script, -m MODULE or -c CODE".into()).into()),
            };
            SpecKind::Python(v1::PythonSpec { entry: Some(entry), args, interpreter: interpreter.unwrap_or_default() })
        }
        Kind::Docker { image, command } => {
            let mut command = command.into_iter();
            SpecKind::Docker(v1::DockerSpec {
                image,
                command: command.next().unwrap_or_default(),
                args: command.collect(),
            })
        }
    };
    let SpecOpts {
        env,
        workdir,
        timeout,
        cpu,
        memory,
        gpus,
        labels,
        idempotency_key,
        max_attempts,
        retry_exit_codes,
        retry_backoff,
        queue_timeout,
        output_tail,
        pool,
        pool_selector,
        expected_runtime,
        priority,
        after,
        after_any,
        array,
    } = opts;
    let resources = (cpu.is_some() || memory.is_some() || gpus.is_some()).then(|| v1::Resources {
        cpu_millis: cpu.unwrap_or(0),
        memory_bytes: memory.unwrap_or(0),
        gpus: gpus.unwrap_or(0),
    });
    Ok(JobSpec {
        kind: Some(kind),
        env: env.into_iter().collect(),
        working_dir: workdir.unwrap_or_default(),
        timeout_ms: timeout.map_or(0, |t| t.as_millis().max(1) as u64),
        resources,
        labels: labels.into_iter().collect(),
        idempotency_key: idempotency_key.unwrap_or_default(),
        max_attempts: max_attempts.unwrap_or(0),
        retry_exit_codes,
        retry_backoff_ms: retry_backoff.map_or(0, |t| t.as_millis().max(1) as u64),
        queue_timeout_ms: queue_timeout.map_or(0, |t| t.as_millis().max(1) as u64),
        output_tail_bytes: output_tail.unwrap_or(0),
        owner: String::new(),
        pool: pool.unwrap_or_default(),
        pool_selector: pool_selector.into_iter().collect(),
        expected_runtime_ms: expected_runtime.map_or(0, |t| t.as_millis().max(1) as u64),
        priority: priority.unwrap_or(0),
        after,
        after_any,
        array,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(arg_bytes: usize) -> JobSpec {
        let process = v1::ProcessSpec { command: "/bin/echo".into(), args: vec!["x".repeat(arg_bytes)] };
        JobSpec { kind: Some(SpecKind::Process(process)), ..JobSpec::default() }
    }

    #[test]
    fn batches_stay_under_the_message_limit_however_large_the_specs() {
        let sizes = |specs: Vec<JobSpec>| {
            let mut it = specs.into_iter().peekable();
            std::iter::from_fn(|| Some(next_batch(&mut it)).filter(|b| !b.is_empty()))
                .map(|b| b.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(vec![spec(10); 2_500]), [1_000, 1_000, 500], "small specs: by count");
        // 250 KiB each (just under the controller's 256 KiB per spec): 65 fit in 16 MiB, not 1,000 (250 MB).
        let big = sizes(vec![spec(250 * 1024); 200]);
        assert_eq!(big.iter().sum::<usize>(), 200);
        assert!(big.iter().all(|n| *n * 250 * 1024 <= BATCH_BYTES), "{big:?}");
        assert_eq!(
            sizes(vec![spec(BATCH_BYTES)]),
            [1],
            "one spec over the size still goes, alone (the controller says why)"
        );
    }
}
