//! Reading a job's output files for the controller (`burst logs`): from the start or the last N lines, and, for
//! a job running here, on as it writes until its run ends.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use burst_proto::v1::{JobOutputChunk, JobOutputRequest, OutputStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::debug;

use crate::agent::Agent;

/// Bytes per chunk sent.
const CHUNK: usize = 64 * 1024;
/// How long a follower of a job with no run here waits for its run to begin: its lease may be on its way, or
/// waiting for a slot a stopped job still holds (up to its kill grace). The controller asks to follow only a
/// job it sees running; one that has just ended is sent as it is after this.
const FOLLOW_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub type Chunks = ReceiverStream<Result<JobOutputChunk, Status>>;

/// Streams the output `req` asks for. A file that does not exist is empty output (the job wrote nothing there,
/// or not yet).
pub fn read(agent: &Agent, req: JobOutputRequest) -> Result<Chunks, Status> {
    let (stdout, stderr) = crate::executor::output_paths(&agent.config().exec.output_dir, &req.job_id)
        .map_err(Status::invalid_argument)?;
    let path = match req.stream() {
        OutputStream::Stdout => stdout,
        OutputStream::Stderr => stderr,
    };
    let (tx, rx) = mpsc::channel(4);
    let (job, follow, tail_lines) = (req.job_id, req.follow, req.tail_lines);
    let feeds = agent.feeds.clone();
    tokio::spawn(async move {
        // Followed, the job runs as far as the controller knows, but may not have begun here yet (see
        // `Feeds::follow_soon`).
        let feed = match follow {
            true => feeds.follow_soon(&job, FOLLOW_WAIT).await,
            false => None,
        };
        if let Err(e) = send(&path, tail_lines, feed, &tx).await {
            debug!(%job, error = %e, "output read ended early");
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// Sends the file from its start (or its last `tail_lines` lines), then, while `feed` is open, what is added.
/// Ends early when the reader leaves.
async fn send(
    path: &Path,
    tail_lines: u32,
    mut feed: Option<watch::Receiver<u64>>,
    tx: &mpsc::Sender<Result<JobOutputChunk, Status>>,
) -> Result<(), String> {
    // A file not there yet has nothing to skip: all that comes is new.
    let mut offset: Option<u64> = None;
    loop {
        match open(path)? {
            Some(file) => {
                let start = match offset {
                    // A file shorter than what was sent was started again (a new run): from its start.
                    Some(at) if file.metadata().map(|m| m.len() >= at).unwrap_or(true) => at,
                    Some(_) => 0,
                    None => tail_start(&file, tail_lines).map_err(|e| format!("reading {}: {e}", path.display()))?,
                };
                offset = Some(send_from(&file, start, tx).await?);
            }
            None => offset = Some(0),
        }
        let Some(rx) = feed.as_mut() else { return Ok(()) };
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    // The run is over: whatever it wrote since the last read, then the end.
                    feed = None;
                }
            }
            () = tx.closed() => return Err("the reader left".into()),
        }
    }
}

fn open(path: &Path) -> Result<Option<File>, String> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("opening {}: {e}", path.display())),
    }
}

/// Sends `file` from `offset` to its current end; returns the new offset.
async fn send_from(
    file: &File,
    mut offset: u64,
    tx: &mpsc::Sender<Result<JobOutputChunk, Status>>,
) -> Result<u64, String> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read_at(&mut buf, offset).map_err(|e| format!("reading output: {e}"))?;
        if n == 0 {
            return Ok(offset);
        }
        offset += n as u64;
        tx.send(Ok(JobOutputChunk { data: buf[..n].to_vec() })).await.map_err(|_| "the reader left".to_string())?;
    }
}

/// Where the last `lines` lines of `file` start (0 for all of it). A final newline ends the last line rather than
/// starting another.
fn tail_start(file: &File, lines: u32) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if lines == 0 || len == 0 {
        return Ok(0);
    }
    let mut seen = 0;
    let mut buf = vec![0u8; CHUNK];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(CHUNK as u64);
        let block = &mut buf[..(end - start) as usize];
        file.read_exact_at(block, start)?;
        for (i, byte) in block.iter().enumerate().rev() {
            let at = start + i as u64;
            if *byte == b'\n' && at + 1 != len {
                seen += 1;
                if seen == lines {
                    return Ok(at + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_of_last(text: &str, lines: u32) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, text).unwrap();
        let file = File::open(&path).unwrap();
        text[tail_start(&file, lines).unwrap() as usize..].to_string()
    }

    #[test]
    fn the_last_lines_of_a_file() {
        assert_eq!(start_of_last("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(start_of_last("a\nb\nc", 2), "b\nc");
        assert_eq!(start_of_last("a\nb\nc\n", 0), "a\nb\nc\n");
        assert_eq!(start_of_last("a\nb\nc\n", 9), "a\nb\nc\n");
        assert_eq!(start_of_last("", 3), "");
        // Across reading blocks.
        let long: String = (0..40_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(start_of_last(&long, 2), "line 39998\nline 39999\n");
    }

    #[tokio::test]
    async fn a_follower_gets_each_write_and_ends_with_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.stdout");
        let (feed, rx) = watch::channel(0u64);
        let (tx, mut chunks) = mpsc::channel(4);
        let reader = tokio::spawn(async move { send(&path, 0, Some(rx), &tx).await });
        let path = dir.path().join("j.stdout");
        for line in ["one\n", "two\n"] {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
            std::io::Write::write_all(&mut f, line.as_bytes()).unwrap();
            feed.send_modify(|n| *n += line.len() as u64);
            // Each write arrives before the run ends.
            let got = chunks.recv().await.unwrap().unwrap();
            assert_eq!(got.data, line.as_bytes());
        }
        drop(feed);
        assert!(chunks.recv().await.is_none(), "the stream ends with the run");
        reader.await.unwrap().unwrap();
    }
}
