//! Pools and placement policies in the scheduler: which pool a job goes to, when it spills over, what it says
//! while it waits, and what each pool is charged.

use std::time::Duration;

use burst_proto::v1::{JobResult, ProcessSpec, Reason, WorkerInfo, job_spec::Kind};
use futures::FutureExt;

use super::*;
use crate::policy::{PolicyKind, WaitBy};
use crate::store::MemoryStore;

/// A scheduler with an `onprem` pool (cost 0) and an elastic `cloud` pool (cost 3), each with one worker of one
/// slot and no queue.
/// Now, by the clock the scheduler's queries read (a waiting reason says how long is left).
fn t0() -> u64 {
    burst_proto::now_ms()
}

fn two_pools(kind: PolicyKind, wait_s: f64) -> Scheduler {
    let (events, _) = broadcast::channel(16);
    let mut s = Scheduler::new(RouterKind::Roundrobin, Arc::new(MemoryStore::default()), events);
    let pools = vec![
        PoolConfig::parse_flag("cloud=3:elastic").unwrap(),
        PoolConfig { labels: [("site".into(), "here".into())].into(), ..PoolConfig::parse_flag("onprem=0").unwrap() },
    ];
    s.set_pools(pools, Policy { kind, wait_by: WaitBy::Constant, factor: wait_s });
    let _ = s.register(worker("a", "onprem"), &[], Wants::default(), t0());
    let _ = s.register(worker("b", "cloud"), &[], Wants::default(), t0());
    s
}

fn worker(id: &str, pool: &str) -> WorkerInfo {
    WorkerInfo { worker_id: id.into(), slots: 1, pool: pool.into(), ..WorkerInfo::default() }
}

fn spec() -> JobSpec {
    JobSpec {
        kind: Some(Kind::Process(ProcessSpec { command: "/bin/true".into(), args: vec![] })),
        ..JobSpec::default()
    }
}

fn submit(s: &mut Scheduler, specs: Vec<JobSpec>, now_ms: u64) -> Vec<JobId> {
    let (jobs, durable) = s.submit(specs, now_ms).unwrap();
    durable.now_or_never().unwrap().unwrap();
    jobs.into_iter().map(|j| j.job_id).collect()
}

fn status(s: &Scheduler, id: &str) -> JobStatus {
    s.job(id).unwrap().1
}

fn pool<'a>(stats: &'a GetStatsResponse, name: &str) -> &'a PoolStats {
    stats.pools.iter().find(|p| p.name == name).unwrap()
}

/// Runs job `id` on its worker from `from_ms` to `to_ms` and reports it finished at `now_ms`.
fn run(s: &mut Scheduler, id: &str, from_ms: u64, to_ms: u64) {
    let st = status(s, id);
    let session = s.registry.get(&st.worker_id).unwrap().session;
    let r = LeaseRef { job_id: id.into(), epoch: st.epoch };
    let _ = s.started(&st.worker_id, session, std::slice::from_ref(&r), from_ms).unwrap();
    let result = JobResult {
        lease: Some(r),
        reason: Reason::Exited as i32,
        exit_code: Some(0),
        started_at_ms: from_ms,
        finished_at_ms: to_ms,
        ..JobResult::default()
    };
    let _ = s.finished(&st.worker_id, session, vec![result], to_ms).unwrap();
}

#[test]
fn cheapest_fills_the_cheap_pool_first_then_spills_over() {
    let t0 = t0();
    let mut s = two_pools(PolicyKind::Cheapest, 10.0);
    let ids = submit(&mut s, vec![spec(); 3], t0);
    let (a, b, c) = (status(&s, &ids[0]), status(&s, &ids[1]), status(&s, &ids[2]));
    assert_eq!((a.worker_id.as_str(), a.pool.as_str(), a.spilled), ("a", "onprem", false));
    assert_eq!((b.worker_id.as_str(), b.pool.as_str(), b.spilled), ("b", "cloud", true));
    assert_eq!(c.state(), JobState::Queued);
    assert!(c.waiting_reason.contains("every worker of pool onprem, cloud is full"), "{}", c.waiting_reason);
    let stats = s.stats();
    assert_eq!(stats.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["onprem", "cloud"], "cheapest first");
    let (onprem, cloud) = (pool(&stats, "onprem"), pool(&stats, "cloud"));
    // Each started with its lease: its worker had a free slot.
    assert_eq!((onprem.jobs_placed, onprem.jobs_spilled, onprem.slots_busy), (1, 0, 1));
    assert_eq!((cloud.jobs_placed, cloud.jobs_spilled, cloud.elastic), (1, 1, true));
    assert_eq!((onprem.jobs_waiting, cloud.jobs_waiting), (1, 1), "the third job may go to either");
}

#[test]
fn first_pool_only_never_spills() {
    let t0 = t0();
    let mut s = two_pools(PolicyKind::FirstPoolOnly, 10.0);
    let ids = submit(&mut s, vec![spec(); 2], t0);
    assert_eq!(status(&s, &ids[0]).pool, "onprem");
    let waiting = status(&s, &ids[1]);
    assert_eq!(waiting.state(), JobState::Queued);
    assert!(
        waiting
            .waiting_reason
            .starts_with("waits for pool onprem only (policy first-pool-only); every worker of pool onprem is full"),
        "{}",
        waiting.waiting_reason
    );
    assert_eq!(pool(&s.stats(), "cloud").jobs_waiting, 0, "no job may go to the cloud");
    run(&mut s, &ids[0], t0, t0 + 5);
    assert_eq!(status(&s, &ids[1]).pool, "onprem", "the freed onprem slot takes it");
}

#[test]
fn wait_holds_a_job_for_the_cheap_pool_until_its_budget_is_spent_then_spills_over() {
    let t0 = t0();
    let mut s = two_pools(PolicyKind::Wait, 2.0);
    let ids = submit(&mut s, vec![spec(); 3], t0);
    assert_eq!(status(&s, &ids[0]).pool, "onprem");
    let waiting = status(&s, &ids[1]);
    assert_eq!(waiting.state(), JobState::Queued, "the cloud has room, but the budget is not spent");
    assert!(waiting.waiting_reason.starts_with("waits for pool onprem until"), "{}", waiting.waiting_reason);
    assert!(waiting.waiting_reason.contains("then may go to cloud"), "{}", waiting.waiting_reason);
    assert_eq!(pool(&s.stats(), "cloud").jobs_waiting, 0);
    assert!(s.next_timer().0.is_some(), "a timer wakes the scheduler when the budget runs out");

    // A slot frees on the cheap pool inside the budget: the first waiting job takes it.
    run(&mut s, &ids[0], t0, t0 + 1_000);
    assert_eq!((status(&s, &ids[1]).pool.as_str(), status(&s, &ids[1]).spilled), ("onprem", false));

    // The budget runs out (2 s after submission) with the cheap pool still full: the job spills over.
    s.fire_timers(Instant::now() + Duration::from_secs(3), t0 + 2_000).now_or_never().unwrap().unwrap();
    let spilled = status(&s, &ids[2]);
    assert_eq!((spilled.pool.as_str(), spilled.spilled, spilled.worker_id.as_str()), ("cloud", true, "b"));
    let stats = s.stats();
    let cloud = pool(&stats, "cloud");
    assert_eq!((cloud.jobs_placed, cloud.jobs_spilled), (1, 1));
}

#[test]
fn a_budget_of_zero_spills_at_once_and_runtime_budgets_scale_with_the_job() {
    let t0 = t0();
    let mut s = two_pools(PolicyKind::Wait, 0.0);
    let ids = submit(&mut s, vec![spec(); 2], t0);
    assert_eq!(status(&s, &ids[1]).pool, "cloud");

    let mut s = two_pools(PolicyKind::Wait, 0.5);
    s.policy.wait_by = WaitBy::Runtime;
    let long = JobSpec { expected_runtime_ms: 60_000, ..spec() };
    let short = JobSpec { expected_runtime_ms: 10, ..spec() };
    let ids = submit(&mut s, vec![spec(), long, short], t0);
    // The long job waits up to 30 s for the cheap pool; the short one's 5 ms budget is spent at the next pass.
    assert_eq!(status(&s, &ids[1]).state(), JobState::Queued);
    s.fire_timers(Instant::now() + Duration::from_millis(10), t0 + 10).now_or_never().unwrap().unwrap();
    assert_eq!(status(&s, &ids[2]).pool, "cloud", "the short job spilled over, passing the long one");
    assert_eq!(status(&s, &ids[1]).state(), JobState::Queued);
}

#[test]
fn a_job_naming_a_pool_goes_only_there_and_an_unknown_pool_is_refused() {
    let t0 = t0();
    let mut s = two_pools(PolicyKind::Cheapest, 10.0);
    let ids = submit(&mut s, vec![JobSpec { pool: "cloud".into(), ..spec() }; 2], t0);
    assert_eq!(status(&s, &ids[0]).pool, "cloud");
    assert!(!status(&s, &ids[0]).spilled, "the cheapest pool it may use is the cloud");
    let waiting = status(&s, &ids[1]);
    assert_eq!(waiting.state(), JobState::Queued, "onprem has room but the job may not go there");
    assert!(waiting.waiting_reason.contains("every worker of pool cloud is full"), "{}", waiting.waiting_reason);

    let selected =
        submit(&mut s, vec![JobSpec { pool_selector: [("site".into(), "here".into())].into(), ..spec() }], t0);
    assert_eq!(status(&s, &selected[0]).pool, "onprem");

    for (bad, want) in [
        (
            JobSpec { pool: "gpu".into(), ..spec() },
            "no pool matches the job's pool \"gpu\"; known pools: cloud, onprem",
        ),
        (JobSpec { pool_selector: [("site".into(), "mars".into())].into(), ..spec() }, "pool selector site=mars"),
    ] {
        match s.submit(vec![spec(), bad], t0) {
            Err(SchedError::UnknownPool(msg)) => assert!(msg.contains(want), "{msg}"),
            other => panic!("expected an unknown pool error, got {:?}", other.map(|r| r.0)),
        }
    }
    assert_eq!(s.stats().submitted_total, 3, "a refused batch submits nothing");
}

#[test]
fn a_pool_without_workers_is_a_waiting_reason_and_a_new_worker_ends_the_wait() {
    let t0 = t0();
    let (events, _) = broadcast::channel(16);
    let mut s = Scheduler::new(RouterKind::Roundrobin, Arc::new(MemoryStore::default()), events);
    s.set_pools(vec![PoolConfig::parse_flag("gpu=5:elastic").unwrap()], Policy::default());
    let _ = s.register(worker("a", ""), &[], Wants::default(), t0);
    let ids = submit(&mut s, vec![JobSpec { pool: "gpu".into(), ..spec() }], t0);
    assert_eq!(status(&s, &ids[0]).waiting_reason, "no worker of pool gpu is registered");
    assert_eq!(pool(&s.stats(), "gpu").jobs_waiting, 1, "the demand an autoscaler reads");
    let _ = s.register(worker("g", "gpu"), &[], Wants::default(), t0);
    assert_eq!(status(&s, &ids[0]).worker_id, "g");
}

#[test]
fn steals_stay_inside_a_pool() {
    let t0 = t0();
    let (events, _) = broadcast::channel(16);
    let mut s = Scheduler::new(RouterKind::Roundrobin, Arc::new(MemoryStore::default()), events);
    s.set_pools(
        vec![PoolConfig::parse_flag("onprem=0").unwrap(), PoolConfig::parse_flag("cloud=1").unwrap()],
        Policy::default(),
    );
    let busy = WorkerInfo { queue_capacity: 4, ..worker("a", "onprem") };
    let a = s.register(busy, &[], Wants::default(), t0).0;
    let b = s.register(worker("b", "cloud"), &[], Wants::default(), t0).0;
    let _ = s.register(worker("c", "onprem"), &[], Wants::default(), t0);
    // Fill c, then a holds the rest in its queue.
    let ids = submit(&mut s, vec![JobSpec { pool: "onprem".into(), ..spec() }; 4], t0);
    assert!(ids.iter().all(|id| status(&s, id).pool == "onprem"));
    assert!(s.peers("b").iter().all(|p| p.worker_id != "a"), "a cloud worker is not shown onprem victims");
    assert!(s.peers("c").iter().any(|p| p.worker_id == "a"), "an onprem worker is");
    let _ = b;
    let queued: Vec<LeaseRef> = ids
        .iter()
        .map(|id| status(&s, id))
        .filter(|st| st.worker_id == "a")
        .map(|st| LeaseRef { job_id: st.job_id, epoch: st.epoch })
        .collect();
    let (moved, refused, _) = s.transfer("a", a, "b", &queued).unwrap();
    assert!(moved.is_empty(), "no lease moves to another pool");
    assert_eq!(refused.len(), queued.len());
}

#[test]
fn each_pool_is_charged_its_busy_time_and_its_registered_slot_time() {
    let t0 = t0();
    let mut s = two_pools(PolicyKind::Cheapest, 10.0);
    let ids = submit(&mut s, vec![spec(); 2], t0);
    run(&mut s, &ids[0], t0, t0 + 1_500);
    run(&mut s, &ids[1], t0, t0 + 250);
    let stats = s.stats();
    let (onprem, cloud) = (pool(&stats, "onprem"), pool(&stats, "cloud"));
    assert_eq!((onprem.busy_slot_seconds, cloud.busy_slot_seconds), (1.5, 0.25));
    assert_eq!((onprem.workers, onprem.slots_total), (1, 1));
    assert!(cloud.slot_seconds > 0.0 && cloud.slot_seconds < 60.0, "{}", cloud.slot_seconds);
    assert_eq!(cloud.cost, cloud.slot_seconds * 3.0);
    assert_eq!(onprem.cost, 0.0);
}

#[test]
fn a_single_pool_keeps_the_old_waiting_reasons() {
    let t0 = t0();
    let (events, _) = broadcast::channel(16);
    let mut s = Scheduler::new(RouterKind::Roundrobin, Arc::new(MemoryStore::default()), events);
    let ids = submit(&mut s, vec![spec()], t0);
    assert_eq!(status(&s, &ids[0]).waiting_reason, "no worker is registered");
    let _ = s.register(worker("a", ""), &[], Wants::default(), t0);
    assert_eq!(status(&s, &ids[0]).pool, "default");
    assert_eq!(s.stats().pools.len(), 1);
}

#[test]
fn a_spent_budget_does_not_cut_a_retry_backoff_short() {
    let t0 = t0();
    let mut s = two_pools(PolicyKind::Wait, 1.0);
    let retried = JobSpec { max_attempts: 2, retry_backoff_ms: 60_000, ..spec() };
    let ids = submit(&mut s, vec![spec(), retried], t0);
    run(&mut s, &ids[0], t0, t0 + 5);
    // The second job (its budget's timer still set) runs on the freed onprem slot and fails: it waits 60 s.
    let st = status(&s, &ids[1]);
    let session = s.registry.get(&st.worker_id).unwrap().session;
    let failed = JobResult {
        lease: Some(LeaseRef { job_id: ids[1].clone(), epoch: st.epoch }),
        reason: Reason::Exited as i32,
        exit_code: Some(1),
        ..JobResult::default()
    };
    let _ = s.finished(&st.worker_id, session, vec![failed], t0 + 10).unwrap();
    s.fire_timers(Instant::now() + Duration::from_secs(2), t0 + 2_000).now_or_never().unwrap().unwrap();
    let st = status(&s, &ids[1]);
    assert_eq!((st.state(), st.attempt), (JobState::Queued, 2), "the cloud has room, but the backoff is not over");
}

#[test]
fn a_cordoned_worker_gets_no_new_jobs_keeps_its_cordon_across_a_registration_and_empties() {
    let t0 = t0();
    let mut s = two_pools(PolicyKind::Cheapest, 10.0);
    let ids = submit(&mut s, vec![spec()], t0);
    assert_eq!(status(&s, &ids[0]).worker_id, "a");
    match s.cordon(&["a".into(), "nobody".into()], true, t0) {
        Err(SchedError::UnknownWorker(id)) => assert_eq!(id, "nobody"),
        other => panic!("expected an unknown worker, got {:?}", other.map(|r| r.0)),
    }
    assert!(!s.registry.get("a").unwrap().cordoned(), "a refused call changes nothing");
    let (workers, _) = s.cordon(&["a".into()], true, t0).unwrap();
    assert_eq!((workers[0].cordoned, workers[0].held), (true, 1), "it still holds its job");

    run(&mut s, &ids[0], t0, t0 + 5);
    let more = submit(&mut s, vec![spec(); 2], t0 + 5);
    assert_eq!(status(&s, &more[0]).worker_id, "b", "the cordoned onprem worker gets nothing");
    let waiting = status(&s, &more[1]);
    assert!(
        waiting.waiting_reason.contains("every worker of pool onprem, cloud is full"),
        "{}",
        waiting.waiting_reason
    );
    assert_eq!(s.registry.get("a").unwrap().held().len(), 0, "empty: safe to remove");

    // Registering again (a restart of its process) does not lift the cordon; uncordoning does, and it gets work.
    let _ = s.register(worker("a", "onprem"), &[], Wants::default(), t0 + 6);
    assert!(s.registry.get("a").unwrap().cordoned());
    assert_eq!(status(&s, &more[1]).state(), JobState::Queued);
    let _ = s.cordon(&["a".into()], false, t0 + 7).unwrap();
    assert_eq!(status(&s, &more[1]).worker_id, "a");

    // A worker that leaves takes its cordon along: a new one under its id (a pod scaled up again) gets work.
    let _ = s.cordon(&["b".into()], true, t0 + 8).unwrap();
    let session = s.registry.get("b").unwrap().session;
    let _ = s.deregister("b", session, t0 + 9).unwrap();
    let _ = s.register(worker("b", "cloud"), &[], Wants::default(), t0 + 10);
    assert!(!s.registry.get("b").unwrap().cordoned());
}

#[test]
fn a_job_that_spilled_over_and_failed_waits_out_its_backoff() {
    let t0 = t0();
    let mut s = two_pools(PolicyKind::Wait, 1.0);
    let retried = JobSpec { max_attempts: 2, retry_backoff_ms: 60_000, ..spec() };
    let ids = submit(&mut s, vec![spec(), retried], t0);
    s.fire_timers(Instant::now() + Duration::from_secs(2), t0 + 2_000).now_or_never().unwrap().unwrap();
    let st = status(&s, &ids[1]);
    assert_eq!(st.pool, "cloud", "its budget ran out with onprem busy");
    let session = s.registry.get("b").unwrap().session;
    let failed = JobResult {
        lease: Some(LeaseRef { job_id: ids[1].clone(), epoch: st.epoch }),
        reason: Reason::Exited as i32,
        exit_code: Some(1),
        ..JobResult::default()
    };
    let _ = s.finished("b", session, vec![failed], t0 + 2_100).unwrap();
    let st = status(&s, &ids[1]);
    assert_eq!((st.state(), st.attempt), (JobState::Queued, 2), "the cloud has room, but its backoff is not over");
    // Onprem frees up: the line the job once waited in for it opens, and the job still waits out its backoff.
    run(&mut s, &ids[0], t0, t0 + 2_200);
    let st = status(&s, &ids[1]);
    assert_eq!((st.state(), st.attempt), (JobState::Queued, 2), "onprem has room too, but the backoff is not over");
}

#[test]
fn jobs_held_back_for_a_full_pool_do_not_stand_in_front_of_jobs_for_another() {
    let t0 = t0();
    let mut s = two_pools(PolicyKind::FirstPoolOnly, 10.0);
    let waiting = submit(&mut s, vec![spec(); 300], t0);
    assert_eq!(status(&s, &waiting[299]).state(), JobState::Queued);
    let pinned = submit(&mut s, vec![JobSpec { pool: "cloud".into(), ..spec() }], t0);
    assert_eq!(status(&s, &pinned[0]).worker_id, "b", "300 jobs held for onprem do not block the cloud's job");
    // They keep their order: the onprem slot goes to the oldest.
    run(&mut s, &waiting[0], t0, t0 + 5);
    assert_eq!(status(&s, &waiting[1]).worker_id, "a");
    assert_eq!(status(&s, &waiting[2]).state(), JobState::Queued);

    let mut s = two_pools(PolicyKind::Wait, 1.0);
    s.policy.wait_by = WaitBy::Runtime;
    let hour = JobSpec { expected_runtime_ms: 3_600_000, ..spec() };
    let long = submit(&mut s, vec![hour; 300], t0);
    assert_eq!(status(&s, &long[1]).state(), JobState::Queued, "each waits up to an hour for onprem");
    let none = submit(&mut s, vec![spec()], t0);
    assert_eq!(status(&s, &none[0]).pool, "cloud", "no runtime, no budget: it spills at once, past 300 waiting");
}

#[test]
fn a_job_held_back_for_a_full_pool_does_not_go_before_a_higher_priority_job() {
    let t0 = t0();
    let mut s = two_pools(PolicyKind::Cheapest, 10.0);
    // Onprem busy; a low-priority job for onprem is held back for it while cloud still has room.
    let busy = submit(&mut s, vec![JobSpec { pool: "onprem".into(), ..spec() }], t0);
    let low = submit(&mut s, vec![JobSpec { pool: "onprem".into(), priority: -10, ..spec() }], t0);
    // Cloud fills; then an urgent job for onprem waits in the queue (nothing has room).
    let cloud = submit(&mut s, vec![JobSpec { pool: "cloud".into(), ..spec() }], t0);
    let urgent = submit(&mut s, vec![JobSpec { pool: "onprem".into(), priority: 100, ..spec() }], t0);
    assert_eq!(status(&s, &cloud[0]).state(), JobState::Running, "started with its lease: a slot was free");
    // Onprem frees its slot: the urgent job takes it, not the older, lower one.
    run(&mut s, &busy[0], t0, t0 + 1);
    assert_eq!(status(&s, &urgent[0]).state(), JobState::Running);
    assert_eq!(status(&s, &low[0]).state(), JobState::Queued);
}
