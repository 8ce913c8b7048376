//! The worker's GPUs, each given to one run at a time. A job that asks for N GPUs runs with
//! `CUDA_VISIBLE_DEVICES` naming N devices no other run of this worker has (a container gets them with
//! `docker run --gpus`); a job that asks for none sees none (`CUDA_VISIBLE_DEVICES` empty), so it cannot take a
//! device another job was given. Devices are numbered as `nvidia-smi -L` lists them, from 0.
//!
//! The controller never leases a worker jobs asking for more GPUs in all than it offers (queued ones included),
//! so a run always finds free devices. Should it not (a run of a stale lease still ending while its job's new
//! lease starts here), the run shares the least used devices rather than fail, and says so in the log.

use std::sync::{Arc, Mutex};

use tracing::warn;

/// How many runs use each device, by index.
#[derive(Clone, Debug, Default)]
pub struct Gpus(Arc<Mutex<Vec<u32>>>);

impl Gpus {
    /// A worker offering `count` devices.
    pub fn new(count: u32) -> Self {
        Gpus(Arc::new(Mutex::new(vec![0; count as usize])))
    }

    /// Whether the worker offers any device (only then are jobs' devices named).
    pub fn any(&self) -> bool {
        !self.lock().is_empty()
    }

    /// `n` devices for one run, held until the returned [`Devices`] is dropped: the least used ones, lowest index
    /// first (all of them when it asks for more than there are).
    pub fn take(&self, n: u32) -> Devices {
        let mut uses = self.lock();
        let mut order: Vec<usize> = (0..uses.len()).collect();
        order.sort_by_key(|&i| (uses[i], i));
        order.truncate(n as usize);
        order.sort_unstable();
        if order.iter().any(|&i| uses[i] > 0) {
            warn!(gpus = n, devices = ?order, "fewer free GPUs than a run asks for; it shares devices with another run");
        }
        for &i in &order {
            uses[i] += 1;
        }
        Devices { gpus: self.clone(), ids: order }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Devices held by one run; dropping it gives them back.
#[derive(Debug)]
pub struct Devices {
    gpus: Gpus,
    ids: Vec<usize>,
}

impl Devices {
    /// As `CUDA_VISIBLE_DEVICES` names them: `0,2`; empty for none.
    pub fn list(&self) -> String {
        self.ids.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        let mut uses = self.gpus.lock();
        for &i in &self.ids {
            uses[i] = uses[i].saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_gets_devices_no_other_run_has_until_it_gives_them_back() {
        let gpus = Gpus::new(4);
        let a = gpus.take(1);
        let b = gpus.take(2);
        assert_eq!((a.list(), b.list()), ("0".to_string(), "1,2".to_string()));
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
}
