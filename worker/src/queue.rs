//! The worker's local queue of leases received but not yet started: in the order they came, except that a job of
//! higher priority goes before those of lower priority (the controller orders its queue the same way, so a
//! higher-priority job leased to a busy worker does not wait behind jobs leased before it).

use std::collections::VecDeque;
use std::sync::Mutex;

use burst_proto::v1::Lease;
use tokio::sync::Notify;

#[derive(Default)]
pub struct LocalQueue {
    /// Guards the leases; held only to push or pop.
    leases: Mutex<VecDeque<Lease>>,
    /// Wakes the runner when a lease arrives.
    arrived: Notify,
}

fn priority(lease: &Lease) -> i32 {
    lease.spec.as_ref().map_or(0, |s| s.priority)
}

impl LocalQueue {
    pub fn push(&self, leases: impl IntoIterator<Item = Lease>) {
        let mut q = self.lock();
        let before = q.len();
        for lease in leases {
            let p = priority(&lease);
            // Usually all of one priority: the back, at once.
            if q.back().is_none_or(|last| priority(last) >= p) {
                q.push_back(lease);
            } else {
                let at = q.iter().rposition(|l| priority(l) >= p).map_or(0, |i| i + 1);
                q.insert(at, lease);
            }
        }
        if q.len() > before {
            self.arrived.notify_one();
        }
    }

    /// Waits for the next lease and hands it to `then` before letting go of the queue: a reader that looks at the
    /// queue and at where `then` puts the lease under the queue's lock ([`LocalQueue::listed`]) finds it in one or the other, never in neither.
    pub async fn pop_then<T>(&self, then: impl FnOnce(Lease) -> T) -> T {
        loop {
            let arrived = self.arrived.notified();
            {
                let mut q = self.lock();
                if let Some(lease) = q.pop_front() {
                    return then(lease);
                }
            }
            arrived.await;
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes up to `count(len)` of the newest leases that may move to another worker (the last to be started),
    /// oldest of them first: not those the controller started with their lease (`Lease.started`), which stay.
    /// `count` sees how many may move under the same lock, so the decision and the taking are one step.
    pub fn take_newest(&self, count: impl FnOnce(usize) -> usize) -> Vec<Lease> {
        let mut q = self.lock();
        let movable = q.iter().filter(|l| !l.started).count();
        let mut n = count(movable).min(movable);
        let mut taken = Vec::with_capacity(n);
        let mut at = q.len();
        while n > 0 && at > 0 {
            at -= 1;
            if !q[at].started
                && let Some(lease) = q.remove(at)
            {
                taken.push(lease);
                n -= 1;
            }
        }
        taken.reverse();
        taken
    }

    /// Takes the leases the controller started with their lease (`Lease.started`), oldest first, and hands them to
    /// `then` before letting go of the queue (see [`LocalQueue::pop_then`]).
    pub fn take_started_then<T>(&self, then: impl FnOnce(Vec<Lease>) -> T) -> T {
        let mut q = self.lock();
        let (started, rest): (VecDeque<Lease>, VecDeque<Lease>) =
            std::mem::take(&mut *q).into_iter().partition(|l| l.started);
        *q = rest;
        then(started.into())
    }

    /// Takes every lease, oldest first.
    pub fn take_all(&self) -> Vec<Lease> {
        self.lock().drain(..).collect()
    }

    /// Puts back leases taken with [`LocalQueue::take_newest`] that did not move, at the end where they were.
    pub fn put_back(&self, leases: Vec<Lease>) {
        self.push(leases);
    }

    /// Removes the lease of `job_id` at `epoch`, if it is waiting here; says whether it was.
    pub fn remove(&self, job_id: &str, epoch: u64) -> bool {
        let mut q = self.lock();
        let before = q.len();
        q.retain(|l| !(l.job_id == job_id && l.epoch == epoch));
        q.len() < before
    }

    /// `each` of the leases waiting in the queue, then `also` (read under the queue's lock: see
    /// [`LocalQueue::pop_then`]).
    pub fn listed<T>(&self, each: impl FnMut(&Lease) -> T, also: impl FnOnce() -> Vec<T>) -> Vec<T> {
        let q = self.lock();
        let mut listed: Vec<T> = q.iter().map(each).collect();
        listed.extend(also());
        listed
    }

    /// Removes every lease of `job_id`, whatever its epoch; says whether there was one.
    pub fn remove_job(&self, job_id: &str) -> bool {
        let mut q = self.lock();
        let before = q.len();
        q.retain(|l| l.job_id != job_id);
        q.len() < before
    }

    /// Removes every lease (they belonged to a session the controller no longer knows).
    pub fn clear(&self) -> usize {
        let mut q = self.lock();
        let n = q.len();
        q.clear();
        n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Lease>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(q: &LocalQueue) -> Vec<String> {
        q.listed(|l| l.job_id.clone(), Vec::new)
    }

    fn lease(id: &str) -> Lease {
        Lease { job_id: id.into(), ..Lease::default() }
    }

    #[tokio::test]
    async fn leases_come_out_in_arrival_order() {
        let q = LocalQueue::default();
        q.push([lease("a"), lease("b")]);
        q.push([lease("c")]);
        assert_eq!(q.pop_then(|l| l).await.job_id, "a");
        assert_eq!(q.pop_then(|l| l).await.job_id, "b");
        assert_eq!(q.pop_then(|l| l).await.job_id, "c");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_higher_priority_goes_before_lower_ones_and_after_its_equals() {
        let q = LocalQueue::default();
        let at = |id: &str, priority| Lease {
            spec: Some(burst_proto::v1::JobSpec { priority, ..Default::default() }),
            ..lease(id)
        };
        q.push([at("a", 0), at("b", 0), at("low", -1)]);
        q.push([at("urgent", 5), at("c", 0), at("urgent2", 5)]);
        assert_eq!(ids(&q), ["urgent", "urgent2", "a", "b", "c", "low"]);
        assert_eq!(q.pop_then(|l| l).await.job_id, "urgent");
    }

    #[tokio::test]
    async fn the_newest_leases_are_taken_and_put_back_in_order() {
        let q = LocalQueue::default();
        q.push(["a", "b", "c", "d"].map(lease));
        let taken = q.take_newest(|len| len / 2);
        assert_eq!(taken.iter().map(|l| l.job_id.as_str()).collect::<Vec<_>>(), ["c", "d"]);
        assert_eq!(ids(&q), ["a", "b"]);
        q.put_back(taken);
        assert_eq!(ids(&q), ["a", "b", "c", "d"]);
        assert!(q.take_newest(|_| 0).is_empty());
        assert_eq!(q.take_newest(|_| 99).len(), 4, "never more than there is");
    }

    #[tokio::test]
    async fn leases_started_with_their_lease_never_move() {
        let q = LocalQueue::default();
        let started = |id: &str| Lease { started: true, ..lease(id) };
        q.push([lease("a"), started("b"), lease("c"), started("d")]);
        let mut seen = 0;
        let taken = q.take_newest(|movable| {
            seen = movable;
            movable
        });
        assert_eq!(seen, 2, "only those that may move are counted");
        assert_eq!(taken.iter().map(|l| l.job_id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(ids(&q), ["b", "d"]);
        assert_eq!(q.take_all().len(), 2, "a drain hands them all back");
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let q = std::sync::Arc::new(LocalQueue::default());
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop_then(|l| l).await.job_id }
        });
        tokio::task::yield_now().await;
        q.push([lease("late")]);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(got, "late");
    }

    #[test]
    fn a_lease_on_its_way_out_is_never_missing_from_what_a_reader_sees() {
        // The worker's heartbeat lists the jobs it knows (queued, or in its runs table); a lease it lists in
        // neither, the controller takes for lost and gives to another worker, though this one runs it.
        let q = std::sync::Arc::new(LocalQueue::default());
        let taken = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for i in 0..50 {
            let id = format!("j{i}");
            q.push([Lease { job_id: id.clone(), epoch: 1, ..Lease::default() }]);
            let reader = std::thread::spawn({
                let (q, taken, id) = (q.clone(), taken.clone(), id.clone());
                // Reads until the lease is where it went.
                move || loop {
                    let seen = q.listed(|l| l.job_id.clone(), || taken.lock().unwrap().clone());
                    assert!(seen.contains(&id), "{id} missing from {seen:?}");
                    if taken.lock().unwrap().contains(&id) {
                        break;
                    }
                }
            });
            runtime.block_on(q.pop_then(|lease| {
                // Slow to register it: a reader meanwhile must wait, not see it nowhere.
                std::thread::sleep(std::time::Duration::from_micros(50));
                taken.lock().unwrap().push(lease.job_id);
            }));
            reader.join().expect("the reader saw the lease nowhere");
        }
    }
}
