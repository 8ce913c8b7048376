//! The worker's GPUs, each given to one run at a time. A job that asks for N GPUs runs with
//! `CUDA_VISIBLE_DEVICES` naming N devices no other run of this worker has (and `CUDA_DEVICE_ORDER=PCI_BUS_ID`, so
//! that CUDA numbers them as `nvidia-smi` and docker do); a container gets them with `docker run --gpus`. A job
//! that asks for none runs with `CUDA_VISIBLE_DEVICES` empty, a container with `NVIDIA_VISIBLE_DEVICES=void`, so
//! that it does not take a device given to another by mistake (the variables are advice to CUDA, not a wall: a
//! process that clears them, or talks to the driver itself, sees every device). Devices are numbered as
//! `nvidia-smi -L` lists them, from 0; a worker started with `CUDA_VISIBLE_DEVICES` set offers only those devices
//! and names its jobs' devices from that list (a worker kept to devices 2 and 3 gives its first job `2`).
//!
//! The controller never leases a worker jobs asking for more GPUs in all than it offers (queued ones included).
//! It frees a cancelled job's GPUs at once, though, while the job's processes may take their kill grace period to
//! end: a run whose devices are not free waits for them (up to [`WAIT_FOR_DEVICES`]), and only then shares the
//! least used ones, saying so in the log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::warn;

/// The longest a run waits for devices still held by another run (a stopped job's kill grace, a container's
/// `docker kill`) before it shares them.
pub const WAIT_FOR_DEVICES: Duration = Duration::from_secs(30);

/// The devices' names and how many runs use each; and a wake for runs waiting for one to free.
#[derive(Clone, Debug, Default)]
pub struct Gpus(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// How many there are: fixed at start, read for every job without the lock.
    count: u32,
    devices: Mutex<Vec<(String, u32)>>,
    freed: Notify,
}

/// The devices a `CUDA_VISIBLE_DEVICES` value names, read as CUDA reads it: up to the first entry that is not a
/// device (`-1`, the usual way to hide them all, or an empty one).
pub fn visible(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).take_while(|d| !d.is_empty() && !d.starts_with('-')).map(String::from).collect()
}

impl Gpus {
    /// A worker offering `count` devices: named `0` to `count - 1`, or, when the worker's own
    /// `CUDA_VISIBLE_DEVICES` is set (`inherited`), the first `count` it names.
    pub fn new(count: u32, inherited: Option<&str>) -> Self {
        let names: Vec<String> = match inherited {
            Some(list) => visible(list).into_iter().take(count as usize).collect(),
            None => (0..count).map(|i| i.to_string()).collect(),
        };
        let count = names.len() as u32;
        let devices = Mutex::new(names.into_iter().map(|name| (name, 0)).collect());
        Gpus(Arc::new(Inner { count, devices, freed: Notify::new() }))
    }

    /// How many devices the worker offers.
    pub fn count(&self) -> u32 {
        self.0.count
    }

    /// Whether the worker offers any device (only then are jobs' devices named).
    pub fn any(&self) -> bool {
        self.count() > 0
    }

    /// Waits until `n` devices are free (at most as many as there are), for up to `limit`; says whether they are.
    pub async fn wait_free(&self, n: u32, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let freed = self.0.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let devices = self.lock();
                let free = devices.iter().filter(|(_, uses)| *uses == 0).count();
                if free >= (n as usize).min(devices.len()) {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return false;
            }
        }
    }

    /// `n` devices for one run, held until the returned [`Devices`] is dropped: the least used ones, lowest index
    /// first (all of them when it asks for more than there are).
    pub fn take(&self, n: u32) -> Devices {
        let mut devices = self.lock();
        let mut order: Vec<usize> = (0..devices.len()).collect();
        order.sort_by_key(|&i| (devices[i].1, i));
        order.truncate(n as usize);
        order.sort_unstable();
        if order.iter().any(|&i| devices[i].1 > 0) {
            warn!(gpus = n, devices = ?order, "fewer free GPUs than a run asks for; it shares devices with another run");
        }
        for &i in &order {
            devices[i].1 += 1;
        }
        let list = order.iter().map(|&i| devices[i].0.as_str()).collect::<Vec<_>>().join(",");
        Devices { gpus: self.clone(), ids: order, list }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, u32)>> {
        self.0.devices.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Devices held by one run; dropping it gives them back.
#[derive(Debug)]
pub struct Devices {
    gpus: Gpus,
    ids: Vec<usize>,
    list: String,
}

impl Devices {
    /// As `CUDA_VISIBLE_DEVICES` names them: `0,2`; empty for none.
    pub fn list(&self) -> &str {
        &self.list
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        {
            let mut devices = self.gpus.lock();
            for &i in &self.ids {
                devices[i].1 = devices[i].1.saturating_sub(1);
            }
        }
        if !self.ids.is_empty() {
            self.gpus.0.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_gets_devices_no_other_run_has_until_it_gives_them_back() {
        let gpus = Gpus::new(4, None);
        let a = gpus.take(1);
        let b = gpus.take(2);
        assert_eq!((a.list(), b.list()), ("0", "1,2"));
        drop(a);
        let c = gpus.take(2);
        assert_eq!(c.list(), "0,3", "the freed one first, then the next free");
        assert_eq!(gpus.take(0).list(), "");
        // More than are free: it shares the least used rather than fail.
        let d = gpus.take(1);
        assert_eq!(d.list(), "0");
        drop((b, c, d));
        let all = gpus.take(5);
        assert_eq!(all.list(), "0,1,2,3", "all there are");
        assert_eq!(gpus.take(1).list(), "0", "all in use: shared");
        assert!(!Gpus::default().any() && gpus.any());
    }

    #[test]
    fn a_worker_kept_to_some_devices_offers_only_those_and_names_its_jobs_devices_from_them() {
        let gpus = Gpus::new(4, Some("2, 3,5"));
        assert_eq!(gpus.count(), 3, "at most as many as it is kept to");
        let (a, b) = (gpus.take(1), gpus.take(1));
        assert_eq!((a.list(), b.list()), ("2", "3"), "in the order listed");
        assert_eq!(Gpus::new(2, Some("")).count(), 0, "an empty list hides every device");
        assert_eq!(Gpus::new(2, Some("-1")).count(), 0, "and so does -1");
        assert_eq!(visible("GPU-a1,MIG-b2,-1,3"), ["GPU-a1", "MIG-b2"], "names up to the first that is not one");
    }

    #[tokio::test]
    async fn a_run_waits_for_devices_another_run_still_holds() {
        let gpus = Gpus::new(1, None);
        let held = gpus.take(1);
        assert!(!gpus.wait_free(1, Duration::from_millis(20)).await, "held: not free in time");
        let waiting = tokio::spawn({
            let gpus = gpus.clone();
            async move { gpus.wait_free(1, Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        drop(held);
        assert!(waiting.await.unwrap(), "freed: the waiting run goes on");
        assert!(gpus.wait_free(0, Duration::ZERO).await);
    }
}
