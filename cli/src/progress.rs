//! Progress for commands that take a while (`submit --count`, `wait`, `dev`, `bench`): a bar on a terminal,
//! and plain lines on stderr otherwise (a log or CI keeps a readable trace instead of control characters).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Between two plain lines, at least this long.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub enum Progress {
    Off,
    Bar(ProgressBar),
    Lines(Lines),
}

pub struct Lines {
    what: String,
    len: u64,
    done: AtomicU64,
    started: Instant,
    /// When the last line was printed.
    printed: Mutex<Instant>,
}

impl Progress {
    /// Progress over `len` steps of `what` when `show`: a bar when stderr is a terminal, else a line every few
    /// seconds and one at the end.
    pub fn new(show: bool, len: u64, what: &str) -> Self {
        if !show {
            return Progress::Off;
        }
        if !std::io::stderr().is_terminal() {
            let now = Instant::now();
            return Progress::Lines(Lines {
                what: what.to_string(),
                len,
                done: AtomicU64::new(0),
                started: now,
                printed: Mutex::new(now),
            });
        }
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        Progress::Bar(bar)
    }

    pub fn inc(&self, n: u64) {
        match self {
            Progress::Off => {}
            Progress::Bar(bar) => bar.inc(n),
            Progress::Lines(lines) => {
                // Relaxed: a count for display.
                let done = lines.done.fetch_add(n, Ordering::Relaxed) + n;
                let mut printed = lines.printed.lock().unwrap_or_else(|p| p.into_inner());
                if printed.elapsed() >= LINE_EVERY && done < lines.len {
                    *printed = Instant::now();
                    eprintln!("{}", lines.line(done));
                }
            }
        }
    }

    /// Clears the bar, or prints the closing line.
    pub fn finish(&self) {
        match self {
            Progress::Off => {}
            Progress::Bar(bar) => bar.finish_and_clear(),
            Progress::Lines(lines) => eprintln!("{}", lines.line(lines.done.load(Ordering::Relaxed))),
        }
    }
}

impl Lines {
    fn line(&self, done: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-9);
        format!("{}: {done}/{} ({rate:.0}/s, {secs:.1} s)", self.what, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_says_how_far_and_how_fast() {
        let lines = Lines {
            what: "waiting".into(),
            len: 10,
            done: AtomicU64::new(0),
            started: Instant::now() - Duration::from_secs(2),
            printed: Mutex::new(Instant::now()),
        };
        let line = lines.line(4);
        assert!(line.starts_with("waiting: 4/10 (2/s, 2."), "{line}");
    }
}
