//! Following a file that may change under a running program (certificates, a tokens file; on Kubernetes a
//! mounted Secret that is updated in place): read it again now and then, and use what changed.

use std::time::Duration;

use tracing::{info, warn};

/// How often a followed file is read again. Kubernetes updates a mounted Secret within about a minute, and a
/// rotation is planned days ahead, so ten seconds costs nothing and loses nothing.
pub const EVERY: Duration = Duration::from_secs(10);

/// Every `every`, reads the file with `read` and hands what it read to `apply`, which answers whether it
/// changed anything (`Ok(false)`: same as in use). A change is logged; so is content that does not load, once
/// per distinct content, and what is in use then stays. Runs until the returned task is aborted.
pub fn follow<T, R, A>(what: String, every: Duration, read: R, apply: A) -> tokio::task::JoinHandle<()>
where
    T: PartialEq + Clone + Send + 'static,
    R: Fn() -> Result<T, String> + Send + 'static,
    A: Fn(T) -> Result<bool, String> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refused: Option<Result<T, String>> = None;
        loop {
            tick.tick().await;
            let read = read();
            if refused.as_ref() == Some(&read) {
                continue;
            }
            match read.clone().and_then(&apply) {
                Ok(changed) => {
                    if changed {
                        info!(file = %what, "reloaded: new connections and calls use it");
                    }
                    refused = None;
                }
                Err(error) => {
                    warn!(file = %what, %error, "changed but not used; what was in use stays");
                    refused = Some(read);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_are_applied_once_and_content_that_does_not_load_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "good 1").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let file = path.clone();
        let read = move || std::fs::read_to_string(&file).map_err(|e| e.to_string());
        let current = std::sync::Mutex::new(String::new());
        let apply = move |text: String| {
            if !text.starts_with("good") {
                return Err("not good".to_string());
            }
            let mut current = current.lock().unwrap();
            let changed = *current != text;
            if changed {
                current.clone_from(&text);
                tx.send(text).unwrap();
            }
            Ok(changed)
        };
        let task = follow("f".into(), Duration::from_millis(5), read, apply);
        let deadline = Duration::from_secs(10);
        assert_eq!(tokio::time::timeout(deadline, rx.recv()).await.unwrap().unwrap(), "good 1");
        std::fs::write(&path, "bad").unwrap();
        std::fs::write(&path, "good 2").unwrap();
        let next = tokio::time::timeout(deadline, rx.recv()).await.unwrap().unwrap();
        assert_eq!(next, "good 2", "nothing in between: bad content is never applied");
        task.abort();
        assert!(rx.try_recv().is_err(), "each change applied once");
    }
}
