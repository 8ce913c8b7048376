//! `burst logs JOB [-f] [--stderr] [--tail N]`: a job's output, relayed by the controller from its worker.

use std::io::Write;

use burst_proto::v1::{JobOutputRequest, OutputStream};

use crate::client::Ctx;
use crate::commands::wait;

pub async fn run(ctx: &Ctx, job: String, follow: bool, stderr: bool, tail: Option<u32>) -> anyhow::Result<u8> {
    wait::check_ids(std::slice::from_ref(&job))?;
    let mut client = ctx.connect().await?;
    let stream = if stderr { OutputStream::Stderr } else { OutputStream::Stdout };
    let req = JobOutputRequest { job_id: job, stream: stream as i32, follow, tail_lines: tail.unwrap_or(0) };
    let mut chunks = client.stream_job_output(req).await.map_err(anyhow::Error::from)?.into_inner();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = chunks.message().await.map_err(anyhow::Error::from)? {
        // Live output shows as it comes, not when a buffer fills.
        match out.write_all(&chunk.data).and_then(|()| out.flush()) {
            Ok(()) => {}
            // The reader has gone (`burst logs JOB | head`): that is the end, not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(0)
}
