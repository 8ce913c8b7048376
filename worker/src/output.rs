//! Copies a job's stdout or stderr into its file, up to a byte cap. Past the cap the rest is read and dropped,
//! so the job never blocks on a full pipe, and the result says the file was truncated.
//!
//! The file is created when the first byte arrives: a job that prints nothing leaves no file. Creating two empty
//! files per job was the largest single cost of a short job on ext4 (inode allocation under the directory lock:
//! `burst dev` ran at 0.41-0.53x the local spawner with eager files, see the README), and a million empty files
//! help nobody.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use tokio::sync::{Notify, watch};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    pub written: u64,
    pub truncated: bool,
    /// Whether the file exists: the job wrote at least one byte.
    pub created: bool,
}

/// The live output of the jobs running on this worker, for readers that follow it (`burst logs -f`): per job,
/// a count of bytes written, bumped after each write to either file. The count's channel closes when the run
/// and both its captures are over, so a follower knows that nothing more will come.
#[derive(Default)]
pub struct Feeds {
    /// Guards only an insert, a remove or a lookup.
    runs: Mutex<HashMap<String, watch::Receiver<u64>>>,
    /// Woken when a feed opens, for readers waiting for a run that has not begun here yet.
    opened: Notify,
}

/// What a run's captures bump; shared by the run and its two captures.
pub type Feed = Arc<watch::Sender<u64>>;

impl Feeds {
    /// Opens the feed of `job_id`'s run starting now. The guard takes it off the list when the run ends.
    pub fn open(self: &Arc<Self>, job_id: &str) -> FeedGuard {
        let (tx, rx) = watch::channel(0);
        self.lock().insert(job_id.to_string(), rx);
        self.opened.notify_waiters();
        FeedGuard { feed: Arc::new(tx), job_id: job_id.to_string(), feeds: self.clone() }
    }

    /// The feed of `job_id`'s run, if it is running here now.
    pub fn follow(&self, job_id: &str) -> Option<watch::Receiver<u64>> {
        self.lock().get(job_id).cloned()
    }

    /// The feed of `job_id`'s run, waiting up to `within` for it to open: a job the controller started with its
    /// lease shows running there before the lease has reached this worker.
    pub async fn follow_soon(&self, job_id: &str, within: Duration) -> Option<watch::Receiver<u64>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Registered before the look, so an open in between is not missed.
            let opened = self.opened.notified();
            if let Some(feed) = self.follow(job_id) {
                return Some(feed);
            }
            tokio::time::timeout_at(deadline, opened).await.ok()?;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<u64>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running job's entry in [`Feeds`]; dropped when its run ends.
pub struct FeedGuard {
    pub feed: Feed,
    job_id: String,
    feeds: Arc<Feeds>,
}

impl Drop for FeedGuard {
    fn drop(&mut self) {
        let mut runs = self.feeds.lock();
        // Only this run's entry: a later run of the same job may have opened its own.
        if runs.get(&self.job_id).is_some_and(|rx| rx.same_channel(&self.feed.subscribe())) {
            runs.remove(&self.job_id);
        }
    }
}

/// One of a job's pipes being copied into the file at `path` (created on the first byte), keeping at most `cap`
/// bytes and dropping the rest, and bumping `feed` (when given) after each write. The run's thread reads the pipe
/// and hands each chunk to [`Capture::write`].
///
/// Writes go straight to the file: local file writes land in the page cache in microseconds.
pub struct Capture<'a> {
    path: &'a Path,
    cap: u64,
    feed: Option<Feed>,
    file: Option<File>,
    write_failed: bool,
    out: Captured,
}

impl<'a> Capture<'a> {
    pub fn new(path: &'a Path, cap: u64, feed: Option<Feed>) -> Self {
        Capture { path, cap, feed, file: None, write_failed: false, out: Captured::default() }
    }

    /// Keeps what of `chunk` fits under the cap.
    pub fn write(&mut self, chunk: &[u8]) {
        let room = self.cap.saturating_sub(self.out.written) as usize;
        let keep = chunk.len().min(room);
        if keep < chunk.len() {
            self.out.truncated = true;
        }
        if keep == 0 || self.write_failed {
            return;
        }
        if self.file.is_none() {
            self.file = create_no_follow(self.path).ok();
            self.out.created = self.file.is_some();
        }
        match self.file.as_mut().map(|f| f.write_all(&chunk[..keep])) {
            Some(Ok(())) => {
                self.out.written += keep as u64;
                if let Some(feed) = &self.feed {
                    feed.send_modify(|n| *n += keep as u64);
                }
            }
            _ => {
                self.write_failed = true;
                self.out.truncated = true;
            }
        }
    }

    /// The pipe is given up before its end: what was kept is not all the job wrote.
    pub fn give_up(&mut self) {
        self.out.truncated = true;
    }

    /// What was kept.
    pub fn captured(&self) -> Captured {
        self.out
    }
}

/// Creates (or truncates) the output file, refusing to follow a symlink at its path: a link planted in the output
/// directory cannot make a job's output overwrite a file elsewhere.
fn create_no_follow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Put between the stdout and stderr parts of a [`tail`].
const STDERR_MARK: &str = "[stderr]\n";

/// The end of a finished job's output in at most `n` bytes: the last of stdout, then (after a `[stderr]` line)
/// the last of stderr. When both have more than fits, each gets half. Missing files are empty output.
pub fn tail(stdout: &Path, stderr: &Path, n: usize) -> String {
    let out = last_bytes(stdout, n);
    let err = last_bytes(stderr, n);
    if err.is_empty() {
        return String::from_utf8_lossy(&out).into_owned();
    }
    let room = n.saturating_sub(STDERR_MARK.len());
    let err_share = err.len().min((room / 2).max(room.saturating_sub(out.len())));
    let out_share = out.len().min(room - err_share);
    let mut text = String::from_utf8_lossy(&out[out.len() - out_share..]).into_owned();
    text.push_str(STDERR_MARK);
    text.push_str(&String::from_utf8_lossy(&err[err.len() - err_share..]));
    text
}

/// Up to the last `n` bytes of the file at `path` (empty when it does not exist).
fn last_bytes(path: &Path, n: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = File::open(path) else { return Vec::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(n as u64);
    let mut buf = Vec::with_capacity((len - start) as usize);
    if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies `data` through a [`Capture`] in chunks of `chunk` bytes.
    fn capture(data: &[u8], path: &Path, cap: u64, chunk: usize) -> Captured {
        let mut capture = Capture::new(path, cap, None);
        data.chunks(chunk).for_each(|c| capture.write(c));
        capture.captured()
    }

    #[tokio::test]
    async fn a_follower_waits_a_while_for_a_run_that_has_not_begun_here() {
        let feeds = Arc::new(Feeds::default());
        assert!(feeds.follow_soon("j", Duration::from_millis(20)).await.is_none(), "none opened: none after the wait");
        let opener = feeds.clone();
        let open = tokio::spawn(async move {
            tokio::task::yield_now().await;
            opener.open("j")
        });
        let feed = feeds.follow_soon("j", Duration::from_secs(30)).await;
        assert!(feed.is_some(), "the run that begins while the reader waits is followed");
        let guard = open.await.unwrap();
        drop(guard);
        assert!(feeds.follow("j").is_none(), "gone once the run is over");
    }

    #[test]
    fn a_symlink_at_the_output_path_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("precious");
        std::fs::write(&outside, "keep me").unwrap();
        let path = dir.path().join("job.stdout");
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let got = capture(b"overwrite", &path, 100, 4);
        assert!(!got.created && got.truncated, "nothing written through the link: {got:?}");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    }

    #[test]
    fn a_tail_keeps_the_end_of_stdout_then_of_stderr_within_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (dir.path().join("o"), dir.path().join("e"));
        assert_eq!(tail(&out, &err, 64), "", "no files: no output");
        std::fs::write(&out, "line 1\nline 2\n").unwrap();
        assert_eq!(tail(&out, &err, 64), "line 1\nline 2\n");
        assert_eq!(tail(&out, &err, 7), "line 2\n", "the end is what is kept");
        std::fs::write(&err, "oops\n").unwrap();
        assert_eq!(tail(&out, &err, 64), "line 1\nline 2\n[stderr]\noops\n");
        std::fs::write(&out, "a".repeat(100)).unwrap();
        std::fs::write(&err, "b".repeat(100)).unwrap();
        let t = tail(&out, &err, 50);
        assert_eq!(t.len(), 50);
        assert_eq!(t, format!("{}[stderr]\n{}", "a".repeat(21), "b".repeat(20)), "both long: half each");
    }

    #[test]
    fn output_past_the_cap_is_dropped_and_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        // Bytes that differ along the way, so that a chunk lost or repeated between reads would show.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let got = capture(&data, &path, 150_000, 65_536);
        assert_eq!(got, Captured { written: 150_000, truncated: true, created: true });
        assert!(std::fs::read(&path).unwrap() == data[..150_000], "the first 150,000 bytes, in order");
    }

    #[test]
    fn output_under_the_cap_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let got = capture(b"hello\n", &path, 10, 2);
        assert_eq!(got, Captured { written: 6, truncated: false, created: true });
        assert_eq!(std::fs::read(&path).unwrap(), b"hello\n");
    }

    #[test]
    fn no_output_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let got = capture(b"", &path, 10, 4);
        assert_eq!(got, Captured::default());
        assert!(!path.exists());
    }
}
