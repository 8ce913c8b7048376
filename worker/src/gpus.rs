//! The worker's GPUs, each given to one run at a time. A job that asks for N GPUs runs with
//! `CUDA_VISIBLE_DEVICES` naming N devices no other run of this worker has (a container gets them with
//! `docker run --gpus`); a job that asks for none sees none (`CUDA_VISIBLE_DEVICES` empty), so it cannot take a
//! device another job was given. Devices are numbered as `nvidia-smi -L` lists them, from 0; a worker started with
//! `CUDA_VISIBLE_DEVICES` set names its jobs' devices from that list instead (a worker kept to devices 2 and 3
//! gives its first job `2`).
//!
//! The controller never leases a worker jobs asking for more GPUs in all than it offers (queued ones included),
//! so a run always finds free devices. Should it not (a run of a stale lease still ending while its job's new
//! lease starts here), the run shares the least used devices rather than fail, and says so in the log.

use std::sync::{Arc, Mutex};

use tracing::warn;

/// The devices' names, and how many runs use each.
#[derive(Clone, Debug, Default)]
pub struct Gpus(Arc<Mutex<Vec<(String, u32)>>>);

impl Gpus {
    /// A worker offering `count` devices: named from `visible` (the worker's own `CUDA_VISIBLE_DEVICES`, a
    /// comma-separated list) when it is set, else `0` to `count - 1`.
    pub fn new(count: u32, visible: Option<&str>) -> Self {
        let listed: Vec<String> = visible
            .map(|v| v.split(',').map(str::trim).filter(|d| !d.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        let names: Vec<(String, u32)> = match listed.is_empty() {
            true => (0..count).map(|i| (i.to_string(), 0)).collect(),
            false => listed.into_iter().take(count as usize).map(|name| (name, 0)).collect(),
        };
        Gpus(Arc::new(Mutex::new(names)))
    }

    /// Whether the worker offers any device (only then are jobs' devices named).
    pub fn any(&self) -> bool {
        !self.lock().is_empty()
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
        self.0.lock().unwrap_or_else(|p| p.into_inner())
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
        let mut devices = self.gpus.lock();
        for &i in &self.ids {
            devices[i].1 = devices[i].1.saturating_sub(1);
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
        assert_eq!(gpus.take(5).list(), "0,1,2,3", "all there are");
        assert!(!Gpus::default().any() && gpus.any());
    }

    #[test]
    fn a_worker_kept_to_some_devices_names_its_jobs_devices_from_them() {
        let gpus = Gpus::new(2, Some("2, 3,5"));
        let (a, b) = (gpus.take(1), gpus.take(1));
        assert_eq!((a.list(), b.list()), ("2", "3"), "as many as it offers, in the order listed");
        assert_eq!(Gpus::new(2, Some("")).take(2).list(), "0,1", "an empty list names nothing");
    }
}
