use std::time::Duration;

use burst_proto::v1::{JobResult, ProcessSpec, Reason, WorkerInfo, job_spec::Kind};
use futures::FutureExt;

use super::*;
use crate::registry::DEATH_WINDOW;
use crate::store::MemoryStore;

fn sched(router: RouterKind) -> Scheduler {
    let (events, _) = broadcast::channel(16);
    Scheduler::new(router, Arc::new(MemoryStore::default()), events)
}

fn spec() -> JobSpec {
    JobSpec {
        kind: Some(Kind::Process(ProcessSpec { command: "/bin/true".into(), args: vec![] })),
        ..JobSpec::default()
    }
}

fn worker(id: &str, slots: u32, queue_capacity: u32) -> WorkerInfo {
    WorkerInfo {
        worker_id: id.into(),
        advertise_addr: format!("{id}:1"),
        slots,
        queue_capacity,
        resources: Some(Resources { cpu_millis: 2000, memory_bytes: 1 << 30, gpus: 0 }),
        labels: Default::default(),
        pool: String::new(),
    }
}

fn target(queue_target: Option<u32>) -> Wants {
    Wants { queue_target, ..Wants::default() }
}

fn submit(s: &mut Scheduler, n: usize) -> Vec<JobId> {
    submit_specs(s, vec![spec(); n])
}

/// Submits `specs` at time 1 and returns their ids once durable.
fn submit_specs(s: &mut Scheduler, specs: Vec<JobSpec>) -> Vec<JobId> {
    let (jobs, durable) = s.submit(specs, 1).unwrap();
    durable.now_or_never().unwrap().unwrap();
    jobs.into_iter().map(|j| j.job_id).collect()
}

fn register(s: &mut Scheduler, info: WorkerInfo) -> u64 {
    s.register(info, &[], Wants::default(), 1).0
}

fn leases(s: &mut Scheduler, w: &str, session: u64) -> Vec<Lease> {
    match s.take_leases(w, session).unwrap().0 {
        Poll::Ready { leases, .. } => leases,
        Poll::Wait(_) => vec![],
    }
}

fn refs(leases: &[Lease]) -> Vec<LeaseRef> {
    leases.iter().map(Lease::to_ref).collect()
}

fn ok_result(r: &LeaseRef) -> JobResult {
    JobResult { lease: Some(r.clone()), reason: Reason::Exited as i32, exit_code: Some(0), ..JobResult::default() }
}

#[test]
fn dispatch_never_leases_past_slots_plus_queue_capacity() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 2, 3));
    submit(&mut s, 20);
    let got = leases(&mut s, "w1", session);
    assert_eq!(got.len(), 5);
    assert_eq!(s.stats().queued, 15);
    // Finishing one frees exactly one place.
    let (accepted, refused, _) = s.finished("w1", session, vec![ok_result(&refs(&got)[0])], 9).unwrap();
    assert_eq!((accepted, refused.len()), (1, 0));
    assert_eq!(leases(&mut s, "w1", session).len(), 1);
}

#[test]
fn a_worker_gets_leases_up_to_the_queue_it_wants_and_a_lower_target_takes_nothing_away() {
    let mut s = sched(RouterKind::Roundrobin);
    // Room for 1 + 8, but it wants 2 queued (its jobs are long, say).
    let session = s.register(worker("w1", 1, 8), &[], target(Some(2)), 1).0;
    submit(&mut s, 20);
    let first = leases(&mut s, "w1", session);
    assert_eq!(first.len(), 3, "slots + the target, not slots + capacity");
    // Short jobs now: it wants all of its queue; the places are filled at once.
    assert!(s.set_wants("w1", session, target(Some(8)), 2).unwrap().is_some(), "a grown target makes leases");
    assert_eq!(leases(&mut s, "w1", session).len(), 6);
    // A target above the capacity is the capacity.
    assert!(s.set_wants("w1", session, target(Some(100)), 3).unwrap().is_none());
    assert!(leases(&mut s, "w1", session).is_empty());
    // Long jobs again: it keeps the 9 it holds, and gets nothing until it holds fewer than 1 + 1.
    assert!(s.set_wants("w1", session, target(Some(1)), 4).unwrap().is_none());
    assert_eq!(s.stats().queued, 11);
    let done: Vec<JobResult> = refs(&first).iter().map(ok_result).collect();
    let _ = s.finished("w1", session, done, 5).unwrap();
    assert!(leases(&mut s, "w1", session).is_empty(), "9 - 3 = 6 held, still over 2");
    // Unset: no change; an unknown session: refused.
    assert!(s.set_wants("w1", session, target(None), 6).unwrap().is_none());
    assert!(s.set_wants("w1", session + 1, target(Some(8)), 6).is_err());
}

#[test]
fn a_stale_transfer_is_refused_and_the_victims_late_reports_are_refused_and_counted() {
    let mut s = sched(RouterKind::Biased);
    let v = register(&mut s, worker("a-victim", 1, 4));
    let t = register(&mut s, worker("b-thief", 1, 4));
    submit(&mut s, 4);
    let leased = leases(&mut s, "a-victim", v);
    assert_eq!(leased.len(), 4);
    // The first took the free slot with its lease: it runs, and never moves.
    assert_eq!(leased.iter().map(|l| l.started).collect::<Vec<_>>(), [true, false, false, false]);
    let (moved, refused, _) = s.transfer("a-victim", v, "b-thief", &refs(&leased[..1])).unwrap();
    assert!(moved.is_empty() && refused == [leased[0].job_id.clone()]);
    let got = refs(&leased[1..]);
    // A stale epoch moves nothing.
    let stale = vec![LeaseRef { job_id: got[0].job_id.clone(), epoch: got[0].epoch + 7 }];
    let (moved, refused, _) = s.transfer("a-victim", v, "b-thief", &stale).unwrap();
    assert!(moved.is_empty());
    assert_eq!(refused, vec![got[0].job_id.clone()]);
    // A current one moves under epoch + 1.
    let (moved, _, _) = s.transfer("a-victim", v, "b-thief", &got[..2]).unwrap();
    assert_eq!(moved.len(), 2);
    assert_eq!(moved[0].epoch, got[0].epoch + 1);
    let before = s.stats().stale_reports_total;
    // The victim's late start and result are refused; the thief's are accepted.
    let (refused, _) = s.started("a-victim", v, &got[..1], 2).unwrap();
    assert_eq!(refused, got[..1]);
    let (accepted, refused, _) = s.finished("a-victim", v, vec![ok_result(&got[1])], 9).unwrap();
    assert_eq!((accepted, refused.len()), (0, 1));
    assert_eq!(s.stats().stale_reports_total, before + 2);
    let (refused, _) = s.started("b-thief", t, &moved[..1], 2).unwrap();
    assert!(refused.is_empty(), "a stolen lease is never started with its transfer: its start is confirmed");
    let (accepted, _, _) = s.finished("b-thief", t, vec![ok_result(&moved[0])], 9).unwrap();
    assert_eq!(accepted, 1);
    let (_, status) = s.job(&moved[0].job_id).unwrap();
    assert_eq!((status.worker_id.as_str(), status.stolen_from.as_str()), ("b-thief", "a-victim"));
    let stats = s.stats();
    assert_eq!((stats.steals_total, stats.jobs_stolen_total), (1, 2));
}

#[test]
fn a_started_job_never_moves_and_a_thief_never_exceeds_its_room() {
    let mut s = sched(RouterKind::Biased);
    let v = register(&mut s, worker("a-victim", 1, 9));
    register(&mut s, worker("b-thief", 1, 1));
    submit(&mut s, 6);
    let got = refs(&leases(&mut s, "a-victim", v));
    let _ = s.started("a-victim", v, &got[..1], 2).unwrap();
    let (moved, refused, _) = s.transfer("a-victim", v, "b-thief", &got).unwrap();
    assert_eq!(moved.len(), 2, "thief room is slots 1 + queue 1");
    assert_eq!(refused.len(), 4);
    assert!(refused.contains(&got[0].job_id), "the running job stays");
    assert_eq!(s.workers().iter().map(|w| w.held).collect::<Vec<_>>(), [4, 2]);
}

#[test]
fn a_lease_the_worker_never_received_is_queued_again_after_the_grace_period() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 1, 1));
    let ids = submit(&mut s, 2);
    let got = leases(&mut s, "w1", session);
    assert_eq!(got.len(), 2);
    // The worker knows the first job only (the answer carrying the second was lost, say).
    let known = vec![ids[0].clone()];
    let (_, _) = s.heartbeat("w1", session, &known, 0, Duration::from_secs(3600), 5).unwrap();
    let stats = s.stats();
    assert_eq!((stats.running, stats.leased), (1, 1), "within the grace period nothing moves");
    let (_, _) = s.heartbeat("w1", session, &known, 0, Duration::ZERO, 5).unwrap();
    // Released and leased again at once (the worker has room), under a new epoch.
    let again = leases(&mut s, "w1", session);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job_id, ids[1]);
    assert_eq!(again[0].epoch, got[1].epoch + 1);
    assert_eq!(again[0].attempt, 1, "it never ran, so no attempt was spent");
}

#[test]
fn heartbeats_name_the_peers_with_jobs_queued_deepest_first() {
    let mut s = sched(RouterKind::Biased);
    let a = register(&mut s, worker("a", 1, 8));
    let _b = register(&mut s, worker("b", 1, 8));
    let c = register(&mut s, worker("c", 1, 8));
    submit(&mut s, 10);
    // The biased router fills a and b (the first half of three, rounded up); start one of a's jobs.
    // Each one's first job started with its lease (a slot was free); start another of a's.
    let got = refs(&leases(&mut s, "a", a));
    let _ = s.started("a", a, &got[1..2], 1).unwrap();
    let (peers, _) = s.heartbeat("c", c, &[], 3, Duration::from_secs(60), 1).unwrap();
    let named: Vec<(&str, u32)> = peers.iter().map(|p| (p.worker_id.as_str(), p.queued)).collect();
    assert_eq!(named, [("b", 4), ("a", 3)], "deepest first, never the asker");
    assert_eq!(peers[1].address, "a:1");
    assert_eq!(peers[1].free_slots, 0);
    assert_eq!(s.stats().steal_attempts_total, 3);
}

#[test]
fn a_lease_to_a_worker_with_a_free_slot_starts_the_job_and_one_past_its_slots_waits_for_its_start() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 2, 4));
    let ids = submit(&mut s, 3);
    let got = leases(&mut s, "w1", session);
    assert_eq!(got.iter().map(|l| l.started).collect::<Vec<_>>(), [true, true, false], "two slots free, then none");
    let states: Vec<_> = ids.iter().map(|id| s.job(id).unwrap().1.state()).collect();
    assert_eq!(states, [JobState::Running, JobState::Running, JobState::Leased]);
    let w = &s.workers()[0];
    assert_eq!((w.held, w.running), (3, 2));
    // A worker that does not know the field reports the start anyway: accepted, nothing changes.
    let (refused, _) = s.started("w1", session, &refs(&got[..1]), 2).unwrap();
    assert!(refused.is_empty());
    assert_eq!(s.workers()[0].running, 2);
    // A slot frees while the third still waits for its start: the next lease is not started, the worker holds
    // as many jobs as it has slots.
    let _ = s.finished("w1", session, vec![ok_result(&got[0].to_ref())], 3).unwrap();
    let more = submit(&mut s, 1);
    let next = leases(&mut s, "w1", session);
    assert_eq!((next.len(), next[0].started), (1, false));
    assert_eq!(s.job(&more[0]).unwrap().1.state(), JobState::Leased);
}

#[test]
fn a_worker_that_takes_leases_ahead_of_its_slots_gets_that_many_more_started_with_their_leases() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 1, 8));
    // Two per slot ahead: 1 + 2 places; a claim above the most a worker may ask for is the most.
    assert!(s.set_wants("w1", session, Wants { start_ahead: Some(2), ..Wants::default() }, 1).unwrap().is_none());
    submit(&mut s, 5);
    let got = leases(&mut s, "w1", session);
    assert_eq!(got.iter().map(|l| l.started).collect::<Vec<_>>(), [true, true, true, false, false]);
    assert_eq!(s.workers()[0].running, 3);
    // Its jobs grew long: none ahead any more; what it holds stays as it is.
    let _ = s.set_wants("w1", session, Wants { start_ahead: Some(0), ..Wants::default() }, 2).unwrap();
    let done: Vec<JobResult> = refs(&got[..3]).iter().map(ok_result).collect();
    let _ = s.finished("w1", session, done, 3).unwrap();
    submit(&mut s, 1);
    let next = leases(&mut s, "w1", session);
    assert_eq!(next.iter().map(|l| l.started).collect::<Vec<_>>(), [false], "2 held, 1 place: not started");
    assert!(s.set_wants("w1", session + 1, Wants { start_ahead: Some(1), ..Wants::default() }, 4).is_err());
    // More than the most a worker may take ahead is the most: 1 + 8 places, all held.
    let _ = s.set_wants("w1", session, Wants { start_ahead: Some(99), ..Wants::default() }, 4).unwrap();
    submit(&mut s, 6);
    let more = leases(&mut s, "w1", session);
    assert_eq!(more.iter().filter(|l| l.started).count(), 6, "3 held: 6 more places");
    assert_eq!(s.workers()[0].held, 1 + crate::registry::MAX_START_AHEAD);
    assert!(!s.registry.get("w1").unwrap().starts_with_lease(), "every place is taken");
}

#[test]
fn a_job_started_with_a_lease_that_never_reached_its_worker_loses_no_run() {
    // Drained before the lease left the controller, or handed back from the worker's queue unrun: queued
    // again as it was.
    let mut s = sched(RouterKind::Roundrobin);
    let a = register(&mut s, worker("a", 1, 1));
    let deadline = JobSpec { queue_timeout_ms: 3_600_000, ..spec() };
    let ids = submit_specs(&mut s, vec![deadline; 2]);
    assert_eq!(s.job(&ids[0]).unwrap().1.state(), JobState::Running);
    assert_eq!(s.timers.len(), 1, "a started job has no queue deadline left");
    let returned = refs(&leases(&mut s, "a", a));
    let (requeued, _) = s.drain("a", a, &returned, 2).unwrap();
    assert_eq!(requeued, 2);
    for id in &ids {
        let (_, st) = s.job(id).unwrap();
        let seen = (st.state(), st.attempt, st.attempts.len(), st.started_at_ms);
        assert_eq!(seen, (JobState::Queued, 1, 0, 0), "{id}: no run lost, none started");
    }
    assert_eq!(s.timers.len(), 2, "both wait for their first run again, under their queue deadline");
    assert_eq!(s.stats().pools[0].busy_slot_seconds, 0.0, "no slot was busy");
    // A worker that dies with such a lease still in its outbox: the same.
    let b = register(&mut s, worker("b", 1, 0));
    let st = s.job(&ids[0]).unwrap().1;
    assert_eq!((st.state(), st.worker_id.as_str()), (JobState::Running, "b"));
    let _ = s.expire(Instant::now() + Duration::from_secs(3600), 3);
    let st = s.job(&ids[0]).unwrap().1;
    assert_eq!((st.state(), st.attempt, st.attempts.len()), (JobState::Queued, 1, 0), "never delivered: no run lost");
    // Delivered, it is a run like any other: lost with its worker.
    let c = register(&mut s, worker("c", 1, 0));
    let got = leases(&mut s, "c", c);
    assert!(got[0].started);
    let _ = s.expire(Instant::now() + Duration::from_secs(3600), 4);
    let st = s.job(&got[0].job_id).unwrap().1;
    assert_eq!((st.state(), st.attempt), (JobState::Queued, 2), "a lost run is spent");
    let _ = b;
}

#[test]
fn leases_a_worker_gives_back_unrun_go_to_another_worker_with_no_run_lost_and_stale_ones_are_ignored() {
    let mut s = sched(RouterKind::Roundrobin);
    let a = register(&mut s, worker("a", 1, 1));
    let ids = submit(&mut s, 2);
    let got = leases(&mut s, "a", a);
    assert_eq!(got.iter().map(|l| l.started).collect::<Vec<_>>(), [true, false]);
    let _ = s.started("a", a, &refs(&got[1..]), 2).unwrap();
    // A return under another epoch (a stale lease) or another session changes nothing.
    let stale = LeaseRef { epoch: got[0].epoch + 1, ..got[0].to_ref() };
    assert_eq!(s.returned("a", a, &[stale], 3).unwrap().0, 0);
    assert!(s.returned("a", a + 1, &refs(&got), 3).is_err(), "not this worker's session");
    // Another worker with room (and this one cordoned, so that they all go there).
    let b = register(&mut s, worker("b", 1, 1));
    let _ = s.cordon(&["a".into()], true, 3).unwrap();
    let (requeued, _) = s.returned("a", a, &refs(&got), 3).unwrap();
    assert_eq!(requeued, 2);
    let on_b = leases(&mut s, "b", b);
    assert_eq!(on_b.iter().map(|l| l.job_id.as_str()).collect::<Vec<_>>(), [&ids[0], &ids[1]], "in their order");
    for id in &ids {
        let st = s.job(id).unwrap().1;
        assert_eq!((st.worker_id.as_str(), st.attempt, st.attempts.len()), ("b", 1, 0), "{id}: no run lost");
    }
    // The old leases are stale now: a result for one is refused.
    let (accepted, refused, _) = s.finished("a", a, vec![ok_result(&got[0].to_ref())], 4).unwrap();
    assert_eq!((accepted, refused.len()), (0, 1));
}

#[test]
fn an_expired_workers_jobs_go_to_the_others() {
    let mut s = sched(RouterKind::Roundrobin);
    let a = register(&mut s, worker("a", 1, 0));
    submit(&mut s, 1);
    let got = refs(&leases(&mut s, "a", a));
    let _ = s.started("a", a, &got, 2).unwrap();
    let b = register(&mut s, worker("b", 1, 0));
    s.registry.get_mut("b").unwrap().last_seen = Instant::now() + Duration::from_secs(60);
    let (dead, _) = s.expire(Instant::now() + Duration::from_secs(1), 3);
    assert_eq!(dead, vec!["a".to_string()]);
    let again = leases(&mut s, "b", b);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2, "it was running, so a new attempt");
}

#[test]
fn a_job_that_fits_no_worker_is_parked_until_one_registers() {
    let mut s = sched(RouterKind::Roundrobin);
    register(&mut s, worker("small", 1, 1));
    let big = JobSpec { resources: Some(Resources { memory_bytes: 1 << 40, ..Resources::default() }), ..spec() };
    let (jobs, _) = s.submit(vec![big], 1).unwrap();
    assert_eq!(s.parked.len(), 1);
    let (_, status) = s.job(&jobs[0].job_id).unwrap();
    assert!(status.waiting_reason.starts_with("no worker fits"), "{}", status.waiting_reason);
    let mut huge = worker("huge", 1, 1);
    huge.resources = Some(Resources { memory_bytes: 1 << 41, ..Resources::default() });
    let session = register(&mut s, huge);
    assert_eq!(leases(&mut s, "huge", session).len(), 1);
}

fn stops(s: &mut Scheduler, w: &str, session: u64) -> Vec<LeaseRef> {
    match s.take_leases(w, session).unwrap().0 {
        Poll::Ready { stop, .. } => stop,
        Poll::Wait(_) => vec![],
    }
}

#[test]
fn cancel_ends_queued_jobs_at_once_and_tells_the_holder_to_stop_leased_ones() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 1, 0));
    let ids = submit(&mut s, 2);
    let leased = leases(&mut s, "w1", session);
    assert_eq!(leased[0].job_id, ids[0]);
    let (cancelled, ended, _) = s.cancel(&ids, &HashMap::new(), 7).unwrap();
    assert_eq!((cancelled.len(), ended.len()), (2, 0));
    assert_eq!(stops(&mut s, "w1", session), refs(&leased), "the holder is told to stop, with the lease's epoch");
    assert_eq!(s.stats().cancelled, 2);
    assert_eq!(s.workers()[0].held, 0, "the worker's room is free again");
    // The worker's late result is refused but is not a stale report.
    let (accepted, _, _) = s.finished("w1", session, vec![ok_result(&refs(&leased)[0])], 9).unwrap();
    assert_eq!(accepted, 0);
    assert_eq!(s.stats().stale_reports_total, 0);
    // Cancelling again reports the jobs as already ended; an unknown id is an error; so is naming nothing.
    let (cancelled, ended, _) = s.cancel(&ids[..1], &HashMap::new(), 8).unwrap();
    assert_eq!((cancelled.len(), ended.len()), (0, 1));
    assert!(matches!(s.cancel(&["nope".into()], &HashMap::new(), 8), Err(SchedError::UnknownJob(_))));
    assert!(matches!(s.cancel(&[], &HashMap::new(), 8), Err(SchedError::Invalid(_))));
}

#[test]
fn cancel_by_label_selector_takes_only_unfinished_matching_jobs() {
    let mut s = sched(RouterKind::Roundrobin);
    let labelled = JobSpec { labels: [("batch".to_string(), "a".to_string())].into(), ..spec() };
    let (a, _) = s.submit(vec![labelled.clone(), labelled, spec()], 1).unwrap();
    let selector = HashMap::from([("batch".to_string(), "a".to_string())]);
    let (cancelled, _, _) = s.cancel(&[], &selector, 2).unwrap();
    assert_eq!(cancelled.len(), 2);
    let (_, other) = s.job(&a[2].job_id).unwrap();
    assert_eq!(other.state(), JobState::Queued);
}

#[test]
fn a_failed_job_is_queued_again_when_its_backoff_is_over() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 1, 0));
    let retried = JobSpec { max_attempts: 2, retry_backoff_ms: 50, ..spec() };
    let _ = s.submit(vec![retried], 1).unwrap();
    let got = refs(&leases(&mut s, "w1", session));
    let failed = JobResult { exit_code: Some(1), ..ok_result(&got[0]) };
    let _ = s.finished("w1", session, vec![failed], 9).unwrap();
    let (_, status) = s.job(&got[0].job_id).unwrap();
    assert_eq!((status.state(), status.attempt), (JobState::Queued, 2));
    assert!(status.retry_at_ms > 0);
    assert!(leases(&mut s, "w1", session).is_empty(), "not before the backoff");
    let (due, _) = s.next_timer();
    let due = due.expect("a retry timer");
    s.fire_timers(due - Duration::from_millis(1), 10).now_or_never().unwrap().unwrap();
    assert!(leases(&mut s, "w1", session).is_empty());
    s.fire_timers(due, 10).now_or_never().unwrap().unwrap();
    let again = leases(&mut s, "w1", session);
    assert_eq!((again.len(), again[0].attempt), (1, 2));
}

#[test]
fn a_job_past_its_queue_deadline_fails_and_its_holder_is_told_to_stop() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 1, 1));
    let deadline = JobSpec { queue_timeout_ms: 1_000, ..spec() };
    let (ids, _) = s.submit(vec![deadline.clone(), deadline.clone(), deadline], 1).unwrap();
    let got = refs(&leases(&mut s, "w1", session));
    assert_eq!(got.len(), 2);
    let _ = s.started("w1", session, &got[..1], 2).unwrap();
    s.fire_timers(Instant::now() + Duration::from_secs(2), 5).now_or_never().unwrap().unwrap();
    let states: Vec<_> = ids.iter().map(|j| s.job(&j.job_id).unwrap().1.state()).collect();
    assert_eq!(states, [JobState::Running, JobState::Failed, JobState::Failed], "the started job keeps running");
    assert_eq!(s.job(&ids[2].job_id).unwrap().1.reason(), Reason::QueueDeadlineExceeded);
    assert_eq!(stops(&mut s, "w1", session), got[1..].to_vec());
}

#[test]
fn finished_jobs_past_the_retention_limit_are_forgotten_oldest_first() {
    let (events, _) = broadcast::channel(16);
    let store = Arc::new(MemoryStore::default());
    let limits = crate::retention::Limits { max_jobs: 2, max_age: Duration::from_secs(3600) };
    let mut s = Scheduler::with_retention(RouterKind::Roundrobin, store.clone(), events, limits);
    let session = register(&mut s, worker("w1", 1, 3));
    let keyed = JobSpec { idempotency_key: "k".into(), ..spec() };
    let (first, d) = s.submit(vec![keyed.clone()], 1).unwrap();
    d.now_or_never().unwrap().unwrap();
    let mut ids = vec![first[0].job_id.clone()];
    ids.extend(submit(&mut s, 3));
    let got = refs(&leases(&mut s, "w1", session));
    let results = got.iter().map(ok_result).collect();
    let (_, _, d) = s.finished("w1", session, results, 9).unwrap();
    d.now_or_never().unwrap().unwrap();
    assert!(matches!(s.job(&ids[0]), Err(SchedError::UnknownJob(_))), "the oldest finished job is gone");
    assert!(matches!(s.job(&ids[1]), Err(SchedError::UnknownJob(_))));
    assert!(s.job(&ids[3]).is_ok());
    assert_eq!(s.stats().succeeded, 2);
    assert_eq!(store.load().unwrap().len(), 2, "and gone from the store");
    // Its idempotency key is free again: the same key makes a new job.
    let (again, _) = s.submit(vec![keyed], 1).unwrap();
    assert!(!again[0].existing);
}

#[test]
fn after_a_restart_workers_claim_their_leases_and_only_unclaimed_ones_are_requeued() {
    let store = Arc::new(MemoryStore::default());
    let (events, _) = broadcast::channel(16);
    let mut before = Scheduler::new(RouterKind::Roundrobin, store.clone(), events.clone());
    let a = before.register(worker("a", 1, 1), &[], Wants::default(), 1).0;
    let b = before.register(worker("b", 1, 1), &[], Wants::default(), 1).0;
    let ids = {
        let (jobs, d) = before.submit(vec![spec(); 5], 1).unwrap();
        d.now_or_never().unwrap().unwrap();
        jobs.into_iter().map(|j| j.job_id).collect::<Vec<_>>()
    };
    let on_a = refs(&leases(&mut before, "a", a));
    let on_b = refs(&leases(&mut before, "b", b));
    let (_, d) = before.started("a", a, &on_a[..1], 2).unwrap();
    d.now_or_never().unwrap().unwrap();
    drop(before);

    // The controller restarts on the same store; worker a comes back, worker b does not.
    let mut after = Scheduler::new(RouterKind::Roundrobin, store.clone(), events);
    let deadline = Instant::now() + Duration::from_secs(60);
    after.restore(store.load().unwrap(), 3, deadline).now_or_never().unwrap().unwrap();
    assert_eq!(after.stats().queued, 1, "only the never-leased job is queued");
    let mut claims = on_a.clone();
    claims.push(LeaseRef { job_id: on_b[0].job_id.clone(), epoch: on_b[0].epoch }); // not a's
    let (a2, rejected, _) = after.register(worker("a", 1, 1), &claims, Wants::default(), 4);
    assert_eq!(rejected, vec![on_b[0].job_id.clone()]);
    let w = after.workers().into_iter().find(|w| w.info.as_ref().unwrap().worker_id == "a").unwrap();
    assert_eq!((w.held, w.running), (2, 1), "a holds its two jobs again, one running");
    // a's reports under its new session are accepted, at the same epochs.
    let (accepted, _, _) = after.finished("a", a2, vec![ok_result(&on_a[0])], 5).unwrap();
    assert_eq!(accepted, 1);
    // b never claimed its leases: after the deadline they are queued again.
    let _ = after.expire(Instant::now() - Duration::from_secs(3600), 6);
    // (Its first started with its lease: b had a free slot.)
    assert_eq!(after.job(&on_b[0].job_id).unwrap().1.state(), JobState::Running, "before the deadline, kept");
    assert_eq!(after.job(&on_b[1].job_id).unwrap().1.state(), JobState::Leased, "before the deadline, kept");
    after.claim_deadline = Some(Instant::now());
    let _ = after.expire(Instant::now() - Duration::from_secs(3600), 7);
    let states: Vec<_> = on_b.iter().map(|r| after.job(&r.job_id).unwrap().1.state()).collect();
    let b_jobs_queued_or_leased_to_a = on_b.iter().all(|r| {
        let (_, st) = after.job(&r.job_id).unwrap();
        st.state() == JobState::Queued || st.worker_id == "a"
    });
    assert!(b_jobs_queued_or_leased_to_a, "{states:?}");
    assert_eq!(ids.len(), 5);
}

#[test]
fn a_worker_that_keeps_dying_is_quarantined_when_it_comes_back() {
    let mut s = sched(RouterKind::Roundrobin);
    for death in 1..=3 {
        register(&mut s, worker("sick", 1, 1));
        let (dead, _) = s.expire(Instant::now() + Duration::from_secs(1), death);
        assert_eq!(dead, vec!["sick".to_string()]);
    }
    let session = register(&mut s, worker("sick", 1, 1));
    submit(&mut s, 1);
    assert!(leases(&mut s, "sick", session).is_empty(), "quarantined: no leases");
    let w = &s.workers()[0];
    assert!(w.quarantined_ms_left > 0);
    let status = s.list(&ListFilter::default()).0.remove(0);
    assert!(status.waiting_reason.contains("quarantined"), "{}", status.waiting_reason);
    // A healthy worker still gets it.
    let ok = register(&mut s, worker("well", 1, 1));
    assert_eq!(leases(&mut s, "well", ok).len(), 1);
}

#[test]
fn listing_pages_forward_oldest_first_or_backward_newest_first() {
    let mut s = sched(RouterKind::Roundrobin);
    let ids = submit(&mut s, 5);
    let page = |s: &Scheduler, newest_first, after: Option<&JobId>| -> Vec<JobId> {
        let filter = ListFilter { limit: 2, newest_first, after: after.cloned(), ..ListFilter::default() };
        s.list(&filter).0.into_iter().map(|j| j.job_id).collect()
    };
    assert_eq!(page(&s, false, None), ids[..2]);
    assert_eq!(page(&s, false, Some(&ids[1])), ids[2..4]);
    assert_eq!(page(&s, true, None), vec![ids[4].clone(), ids[3].clone()]);
    assert_eq!(page(&s, true, Some(&ids[3])), vec![ids[2].clone(), ids[1].clone()]);
    assert_eq!(page(&s, true, Some(&ids[0])), Vec::<JobId>::new());
}

#[test]
fn a_finished_job_answers_as_before_once_packed() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 2, 2));
    let keyed = JobSpec { idempotency_key: "k1".into(), labels: [("team".into(), "a".into())].into(), ..spec() };
    let (ids, durable) = s.submit(vec![keyed.clone(), spec()], 1).unwrap();
    durable.now_or_never().unwrap().unwrap();
    let got = refs(&leases(&mut s, "w1", session));
    let (_, durable) = s.started("w1", session, &got, 2).unwrap();
    durable.now_or_never().unwrap().unwrap();
    let (before_spec, before) = s.job(&ids[0].job_id).unwrap();
    let (_, _, durable) = s.finished("w1", session, vec![ok_result(&got[0])], 3).unwrap();
    durable.now_or_never().unwrap().unwrap();
    let (spec_after, after) = s.job(&ids[0].job_id).unwrap();
    assert_eq!((*spec_after).clone(), (*before_spec).clone());
    assert_eq!(after.state(), JobState::Succeeded);
    assert_eq!((after.attempts.len(), after.worker_id.as_str(), after.exit_code), (1, "w1", Some(0)), "{after:?}");
    assert_eq!(before.submitted_at_ms, after.submitted_at_ms);

    // A late result or start for it is refused and counted; cancelling it says it has ended.
    let stale_before = s.stats().stale_reports_total;
    let (accepted, refused, _) = s.finished("w1", session, vec![ok_result(&got[0])], 4).unwrap();
    assert_eq!((accepted, refused), (0, vec![ids[0].job_id.clone()]));
    assert_eq!(s.started("w1", session, &got[..1], 4).unwrap().0, got[..1]);
    assert_eq!(s.stats().stale_reports_total, stale_before + 2);
    let (cancelled, ended, _) = s.cancel(&[ids[0].job_id.clone()], &HashMap::new(), 5).unwrap();
    assert_eq!((cancelled.len(), ended), (0, vec![ids[0].job_id.clone()]));
    assert_eq!(s.job(&ids[0].job_id).unwrap().1, after, "refusals leave it as it was");

    // Lists filter it by state and by label; its key still names it, and a different spec under it conflicts.
    let filter = |states: Vec<JobState>, labels: HashMap<String, String>| ListFilter {
        states,
        labels,
        limit: 0,
        after: None,
        owner: None,
        newest_first: false,
    };
    let listed = s.list(&filter(vec![JobState::Succeeded], HashMap::new())).0;
    assert_eq!(listed.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(), vec![ids[0].job_id.clone()]);
    let by_label = s.list(&filter(vec![], [("team".to_string(), "a".to_string())].into())).0;
    assert_eq!(by_label.len(), 1);
    let (again, _) = s.submit(vec![keyed.clone()], 6).unwrap();
    assert!(again[0].existing && again[0].job_id == ids[0].job_id);
    let changed = JobSpec { timeout_ms: 5, ..keyed };
    assert!(matches!(s.submit(vec![changed], 7), Err(SchedError::KeyConflict { .. })));
}

#[test]
fn after_a_restart_queued_jobs_still_fail_at_their_queue_deadline() {
    let store = Arc::new(MemoryStore::default());
    let (events, _) = broadcast::channel(16);
    let mut before = Scheduler::new(RouterKind::Roundrobin, store.clone(), events.clone());
    let deadline = JobSpec { queue_timeout_ms: 1_000, ..spec() };
    let (jobs, d) = before.submit(vec![deadline.clone(), deadline, spec()], 1_000).unwrap();
    d.now_or_never().unwrap().unwrap();
    drop(before);

    // Restarted 400 ms after the submit: the deadline is 600 ms away, not forgotten, and not 1 s away again.
    let mut after = Scheduler::new(RouterKind::Roundrobin, store.clone(), events);
    let claims = Instant::now() + Duration::from_secs(60);
    after.restore(store.load().unwrap(), 1_400, claims).now_or_never().unwrap().unwrap();
    let (due, _) = after.next_timer();
    let due = due.expect("the queue deadlines are armed again");
    assert!(due <= Instant::now() + Duration::from_millis(600), "armed for the time left, not a fresh timeout");
    after.fire_timers(due + Duration::from_millis(100), 2_000).now_or_never().unwrap().unwrap();
    let states: Vec<_> = jobs.iter().map(|j| after.job(&j.job_id).unwrap().1.state()).collect();
    assert_eq!(states, [JobState::Failed, JobState::Failed, JobState::Queued], "the job without a deadline waits");
}

#[test]
fn a_running_job_its_worker_no_longer_has_is_released_by_its_heartbeat() {
    // A worker fenced off (cut off for a lease timeout) stops its jobs but keeps its session: its later
    // heartbeats leave them out. A running job it no longer has must not stay Running for ever.
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 2, 0));
    let ids = submit(&mut s, 2);
    let got = refs(&leases(&mut s, "w1", session));
    let _ = s.started("w1", session, &got, 2).unwrap();
    let known = vec![ids[0].clone()];
    let _ = s.heartbeat("w1", session, &known, 0, Duration::from_secs(3600), 3).unwrap();
    assert_eq!(s.stats().running, 2, "within the grace period nothing moves");
    let _ = s.heartbeat("w1", session, &known, 0, Duration::ZERO, 3).unwrap();
    let (_, status) = s.job(&ids[1]).unwrap();
    assert_eq!(status.attempts.last().map(|a| a.reason()), Some(Reason::WorkerLost), "{status:?}");
    assert_eq!(status.attempt, 2, "a lost run is spent");
    let w = &s.workers()[0];
    assert_eq!((w.held, w.running), (2, 2), "leased again at once, and started with it: a slot was free");
    // The worker is told to stop the lease it left out: one started with its lease may still be on its way, and
    // must not run if it arrives.
    let Poll::Ready { stop, .. } = s.take_leases("w1", session).unwrap().0 else { panic!("a stop to hand over") };
    assert_eq!(stop, vec![got[1].clone()]);
}

#[test]
fn watchers_hear_of_a_change_only_once_it_is_durable() {
    let store = Arc::new(super::invariants::CrashStore::default());
    let (events, mut watcher) = broadcast::channel(16);
    let mut s = Scheduler::new(RouterKind::Roundrobin, store.clone(), events);
    let (jobs, durable) = s.submit(vec![spec()], 1).unwrap();
    assert!(watcher.try_recv().is_err(), "a crash now would lose the job: nobody may have seen it");
    // The submitter's call may be dropped (a client gone): what became durable is still told.
    drop(durable);
    let (_, later) = s.submit(vec![spec()], 2).unwrap();
    store.commit();
    later.now_or_never().expect("durable").unwrap();
    let seen: Vec<String> = std::iter::from_fn(|| watcher.try_recv().ok()).map(|s| s.job_id).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], jobs[0].job_id, "in the order they happened");
}

#[test]
fn a_registration_taken_over_by_a_second_process_is_told_so_not_forgotten() {
    // Two worker processes with the same id: the second registration replaces the first, and the first is told
    // why (so it stops), instead of "unknown" (which makes it register again, and the two evict each other).
    let mut s = sched(RouterKind::Roundrobin);
    let first = register(&mut s, worker("w1", 1, 0));
    let Ok((Poll::Wait(polling), _)) = s.take_leases("w1", first) else { panic!("a long poll waits") };
    let second = register(&mut s, worker("w1", 1, 0));
    // Its long poll wakes at once, and hears it was replaced: it must not go on running what it holds.
    assert!(polling.notified().now_or_never().is_some(), "the first process's poll was not woken");
    assert!(matches!(s.take_leases("w1", first), Err(SchedError::Replaced(_))));
    let err = s.heartbeat("w1", first, &[], 0, Duration::from_secs(60), 2).map(|_| ()).unwrap_err();
    assert!(matches!(err, SchedError::Replaced(_)), "{err:?}");
    assert!(err.to_string().contains("another process"), "{err}");
    assert!(s.heartbeat("w1", second, &[], 0, Duration::from_secs(60), 2).is_ok());
    // After a controller restart nothing is remembered: a stale session is unknown, and registers again.
    assert!(matches!(s.heartbeat("w2", 7, &[], 0, Duration::from_secs(60), 2), Err(SchedError::UnknownWorker(_))));
}

#[test]
fn finished_jobs_leave_no_timers_behind() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 1, 99));
    let deadline = JobSpec { queue_timeout_ms: 3_600_000, ..spec() };
    let (jobs, _) = s.submit(vec![deadline; 100], 1).unwrap();
    assert_eq!(s.timers.len(), 99, "the first started with its lease (the slot was free): no queue deadline left");
    let got = refs(&leases(&mut s, "w1", session));
    let _ = s.started("w1", session, &got[1..50], 2).unwrap();
    assert_eq!(s.timers.len(), 50, "a started job has no queue deadline left");
    let results = got[50..].iter().map(ok_result).collect();
    let _ = s.finished("w1", session, results, 3).unwrap();
    assert_eq!(s.timers.len(), 0, "nor has a finished one");
    assert_eq!(jobs.len(), 100);
}

#[test]
fn deaths_are_forgotten_once_out_of_the_window() {
    let mut r = Registry::default();
    let t0 = Instant::now();
    for i in 0..100 {
        r.died(&format!("w{i}"), t0);
    }
    r.died("w-late", t0 + DEATH_WINDOW + Duration::from_secs(1));
    assert_eq!(r.deaths_remembered(), 1, "only the death still inside the window is kept");
}

#[test]
fn a_list_by_label_decodes_a_bounded_number_of_finished_jobs_per_call_and_paging_finds_the_rest() {
    let mut s = sched(RouterKind::Roundrobin);
    let n = MAX_DECODED + 10;
    let session = register(&mut s, worker("w1", n as u32 + 1, 0));
    let labelled = JobSpec { labels: [("team".into(), "b".into())].into(), owner: "bo".into(), ..spec() };
    let mut specs = vec![JobSpec { owner: "al".into(), ..spec() }; n];
    specs.push(labelled);
    let (jobs, _) = s.submit(specs, 1).unwrap();
    let got = refs(&leases(&mut s, "w1", session));
    let _ = s.finished("w1", session, got.iter().map(ok_result).collect(), 2).unwrap();
    let filter = |after| ListFilter { labels: [("team".into(), "b".into())].into(), after, ..ListFilter::default() };
    let (page, next) = s.list(&filter(None));
    assert!(page.is_empty() && next.is_some(), "stops after {MAX_DECODED} decoded, with where to go on");
    let (page, next) = s.list(&filter(next));
    assert_eq!(page.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), [jobs[n].job_id.as_str()]);
    assert_eq!(next, None, "the end");
    // By owner, other owners' finished jobs are skipped without being decoded: one call finds bo's job.
    let mine = ListFilter { owner: Some("bo".into()), ..ListFilter::default() };
    assert_eq!(s.list(&mine).0.len(), 1);
}

fn submit_as(s: &mut Scheduler, owner: &str, priority: i32, n: usize) -> Vec<JobId> {
    submit_specs(s, vec![JobSpec { owner: owner.into(), priority, ..spec() }; n])
}

/// Runs worker w1 one finished job at a time (`held`: what it holds); returns the owners of the jobs leased, in
/// order.
fn serve(s: &mut Scheduler, session: u64, held: &mut Vec<Lease>, rounds: usize) -> Vec<String> {
    let mut order = Vec::new();
    for _ in 0..rounds {
        let Some(done) = held.first().map(Lease::to_ref) else { break };
        held.remove(0);
        let _ = s.finished("w1", session, vec![ok_result(&done)], 5).unwrap();
        let new = leases(s, "w1", session);
        order.extend(new.iter().map(|l| l.spec.as_ref().unwrap().owner.clone()));
        held.extend(new);
    }
    order
}

#[test]
fn a_flooding_submitter_does_not_starve_another_and_a_higher_priority_goes_first() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 1, 1));
    submit_as(&mut s, "ann", 0, 1000);
    // Bob comes later with 3 jobs: each freed place goes to whoever holds less, so Bob's jobs go at once,
    // not behind Ann's thousand.
    submit_as(&mut s, "bob", 0, 3);
    let mut held = leases(&mut s, "w1", session);
    let order = serve(&mut s, session, &mut held, 8);
    assert_eq!(order, ["bob", "ann", "bob", "ann", "bob", "ann", "ann", "ann"]);
    // The waiting reason of a queued job names its turn.
    let queued = s.list(&ListFilter { states: vec![JobState::Queued], limit: 1, ..Default::default() }).0;
    assert!(queued[0].waiting_reason.contains("ann holds 2, weight 1"), "{}", queued[0].waiting_reason);
    // An urgent job of Ann's goes before anything else of equal weight; a low one after everyone's.
    submit_as(&mut s, "carl", -1, 1);
    submit_as(&mut s, "ann", 5, 1);
    submit_as(&mut s, "bob", 0, 1);
    let order = serve(&mut s, session, &mut held, 3);
    assert_eq!(order, ["ann", "bob", "ann"]);
    let stats = s.stats();
    let names: Vec<(&str, u64)> = stats.submitters.iter().map(|o| (o.name.as_str(), o.held)).collect();
    assert_eq!(names, [("ann", 1), ("bob", 1), ("carl", 0)]);
}

#[test]
fn weights_share_the_slots_in_proportion() {
    let mut s = sched(RouterKind::Roundrobin);
    s.set_weights(HashMap::from([("ann".to_string(), 3)]));
    // Nothing held by anyone yet: leases go as the shares say from the very first.
    submit_as(&mut s, "ann", 0, 100);
    submit_as(&mut s, "bob", 0, 100);
    let session = register(&mut s, worker("w1", 8, 0));
    let got = leases(&mut s, "w1", session);
    let ann = got.iter().filter(|l| l.spec.as_ref().unwrap().owner == "ann").count();
    assert_eq!((ann, got.len() - ann), (6, 2), "3:1");
}

#[test]
fn after_a_restart_the_shares_and_priorities_hold() {
    let store = Arc::new(MemoryStore::default());
    let (events, _) = broadcast::channel(16);
    let mut s = Scheduler::new(RouterKind::Roundrobin, store.clone(), events.clone());
    let session = register(&mut s, worker("w1", 2, 0));
    submit_as(&mut s, "ann", 0, 10);
    assert_eq!(leases(&mut s, "w1", session).len(), 2);
    submit_as(&mut s, "bob", 0, 2);
    submit_as(&mut s, "ann", 1, 1);
    // A new controller on the same store: Ann still holds her two (unclaimed) places, so after her urgent job
    // Bob's go first.
    let mut s = Scheduler::new(RouterKind::Roundrobin, store.clone(), events);
    s.restore(store.load().unwrap(), 2, Instant::now() + Duration::from_secs(60)).now_or_never().unwrap().unwrap();
    assert_eq!(s.owners.share("ann").held, 2);
    let session = register(&mut s, worker("w2", 3, 0));
    let owners: Vec<(String, i32)> = leases(&mut s, "w2", session)
        .iter()
        .map(|l| l.spec.as_ref().map(|s| (s.owner.clone(), s.priority)).unwrap())
        .collect();
    assert_eq!(owners, [("ann".to_string(), 1), ("bob".to_string(), 0), ("bob".to_string(), 0)]);
}

fn after(ids: &[&JobId], any: &[&JobId]) -> JobSpec {
    JobSpec {
        after: ids.iter().map(|s| s.to_string()).collect(),
        after_any: any.iter().map(|s| s.to_string()).collect(),
        ..spec()
    }
}

fn submit_spec(s: &mut Scheduler, spec: JobSpec) -> JobId {
    submit_specs(s, vec![spec]).remove(0)
}

fn state_of(s: &Scheduler, id: &str) -> (JobState, Reason, String) {
    let status = s.job(id).unwrap().1;
    (status.state(), status.reason(), status.message)
}

/// Finishes the leases `w1` holds for `ids`, with exit code `code`.
fn finish_as(s: &mut Scheduler, session: u64, held: &[Lease], ids: &[&JobId], code: i32) {
    let results = held
        .iter()
        .filter(|l| ids.iter().any(|id| **id == l.job_id))
        .map(|l| JobResult { exit_code: Some(code), ..ok_result(&l.to_ref()) })
        .collect();
    let (_, _, durable) = s.finished("w1", session, results, 5).unwrap();
    durable.now_or_never().unwrap().unwrap();
}

#[test]
fn dependencies_hold_a_job_until_they_succeed_and_a_failure_fails_the_chain() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 4, 4));
    let a = submit_spec(&mut s, spec());
    let b = submit_spec(&mut s, after(&[&a], &[]));
    let c = submit_spec(&mut s, after(&[&b], &[]));
    let d = submit_spec(&mut s, after(&[], &[&b]));
    // Only A is leased though the worker has room; the others are blocked and say what they wait for.
    let held = leases(&mut s, "w1", session);
    assert_eq!(held.iter().map(|l| &l.job_id).collect::<Vec<_>>(), [&a]);
    assert_eq!(s.stats().blocked, 3);
    let reason = s.job(&c).unwrap().1.waiting_reason;
    assert_eq!(reason, format!("waits for the jobs it depends on: {b} to succeed (now queued)"));
    // A succeeds: B is leased; C and D still wait for B.
    finish_as(&mut s, session, &held, &[&a], 0);
    let held = leases(&mut s, "w1", session);
    assert_eq!(held.iter().map(|l| &l.job_id).collect::<Vec<_>>(), [&b]);
    // B fails: C (after) fails with dependency-failed without running; D (after-any) runs.
    finish_as(&mut s, session, &held, &[&b], 3);
    let (state, reason, message) = state_of(&s, &c);
    assert_eq!((state, reason), (JobState::Failed, Reason::DependencyFailed));
    assert_eq!(message, format!("job {b} it depends on ended failed"));
    let held = leases(&mut s, "w1", session);
    assert_eq!(held.iter().map(|l| &l.job_id).collect::<Vec<_>>(), [&d]);
    assert_eq!(s.stats().blocked, 0);
    // A job submitted after its dependency failed fails at once; an unknown id is refused.
    let e = submit_spec(&mut s, after(&[&b], &[]));
    assert_eq!(state_of(&s, &e).1, Reason::DependencyFailed);
    let unknown = s.submit(vec![after(&[&"no-such-job".to_string()], &[])], 1).err().unwrap();
    assert!(
        unknown.to_string().contains("depends on job no-such-job, which the controller does not know"),
        "{unknown}"
    );
}

#[test]
fn a_cancelled_dependency_fails_a_long_chain_without_recursion_and_cancelling_a_blocked_job_is_clean() {
    let mut s = sched(RouterKind::Roundrobin);
    let root = submit_spec(&mut s, spec());
    let mut chain = vec![root.clone()];
    for _ in 0..20_000 {
        let next = submit_spec(&mut s, after(&[chain.last().unwrap()], &[]));
        chain.push(next);
    }
    let side = submit_spec(&mut s, after(&[&root], &[]));
    let (cancelled, _, _) = s.cancel(std::slice::from_ref(&side), &HashMap::new(), 2).unwrap();
    assert_eq!(cancelled, [side]);
    let _ = s.cancel(&[root], &HashMap::new(), 3).unwrap();
    let last = chain.last().unwrap();
    assert_eq!(state_of(&s, last).1, Reason::DependencyFailed);
    assert_eq!((s.stats().blocked, s.stats().queued, s.stats().failed), (0, 0, 20_000));
}

#[test]
fn after_a_restart_blocked_jobs_still_wait_and_their_dependencies_release_them() {
    let store = Arc::new(MemoryStore::default());
    let (events, _) = broadcast::channel(16);
    let mut s = Scheduler::new(RouterKind::Roundrobin, store.clone(), events.clone());
    let session = register(&mut s, worker("w1", 1, 0));
    let a = submit_spec(&mut s, spec());
    let b = submit_spec(&mut s, spec());
    let c = submit_spec(&mut s, after(&[&a, &b], &[]));
    let held = leases(&mut s, "w1", session);
    finish_as(&mut s, session, &held, &[&a], 0);
    // Restarted with A done, B leased (its worker gone: released once the claim deadline passes), C blocked on
    // B alone.
    let mut s = Scheduler::new(RouterKind::Roundrobin, store.clone(), events);
    s.restore(store.load().unwrap(), 2, Instant::now()).now_or_never().unwrap().unwrap();
    let _ = s.expire(Instant::now() - Duration::from_secs(60), 3);
    assert_eq!(s.stats().blocked, 1);
    assert!(s.job(&c).unwrap().1.waiting_reason.contains(&format!("{b} to succeed")));
    let session = register(&mut s, worker("w1", 1, 0));
    let held = leases(&mut s, "w1", session);
    assert_eq!(held.iter().map(|l| &l.job_id).collect::<Vec<_>>(), [&b]);
    finish_as(&mut s, session, &held, &[&b], 0);
    let held = leases(&mut s, "w1", session);
    assert_eq!(held.iter().map(|l| &l.job_id).collect::<Vec<_>>(), [&c]);
}

fn array(first: u32, last: u32, parallelism: u32) -> JobSpec {
    JobSpec { array: Some(burst_proto::v1::ArraySpec { first, last, parallelism }), ..spec() }
}

fn array_status(s: &Scheduler, id: &str) -> burst_proto::v1::ArrayStatus {
    s.job(id).unwrap().1.array.unwrap()
}

#[test]
fn an_array_makes_its_indices_into_jobs_only_as_workers_have_room_and_ends_when_they_all_have() {
    let mut s = sched(RouterKind::Roundrobin);
    // A million indices cost one job until there is room for them.
    let big = submit_spec(&mut s, array(0, 999_999, 0));
    assert_eq!(s.jobs.range(.., false, |_| true, None).count(), 1);
    let status = array_status(&s, &big);
    assert_eq!((status.size, status.queued), (1_000_000, 1_000_000));
    s.cancel(std::slice::from_ref(&big), &HashMap::new(), 2).unwrap().2.now_or_never().unwrap().unwrap();
    assert_eq!(array_status(&s, &big).cancelled, 1_000_000);

    // Ten indices, at most three unfinished at once, on a worker with room for 4.
    let session = register(&mut s, worker("w1", 2, 2));
    let id = submit_spec(&mut s, array(10, 19, 3));
    let mut held = leases(&mut s, "w1", session);
    let indices = |held: &[Lease]| held.iter().map(|l| l.job_id.clone()).collect::<Vec<_>>();
    assert_eq!(indices(&held), [format!("{id}:10"), format!("{id}:11"), format!("{id}:12")]);
    let env = &held[0].spec.as_ref().unwrap().env;
    assert_eq!((env["BURST_ARRAY_INDEX"].as_str(), env["BURST_ARRAY_ID"].as_str()), ("10", id.as_str()));
    assert!(s.job(&id).unwrap().1.waiting_reason.contains("at most 3 unfinished at once"));
    // Index 11 fails; the others succeed as they come.
    let mut seen = indices(&held);
    while !held.is_empty() {
        let l = held.remove(0);
        let code = if l.job_id.ends_with(":11") { 7 } else { 0 };
        finish_as(&mut s, session, std::slice::from_ref(&l), &[&l.job_id], code);
        let more = leases(&mut s, "w1", session);
        seen.extend(indices(&more));
        held.extend(more);
        assert!(held.len() <= 3, "parallelism 3: {} held", held.len());
    }
    assert_eq!(seen.len(), 10);
    let status = array_status(&s, &id);
    assert_eq!((status.succeeded, status.failed, status.queued), (9, 1, 0));
    assert_eq!(status.failed_indices, [11]);
    assert_eq!(status.failures, ["index 11: exited 7"]);
    let (state, _, message) = state_of(&s, &id);
    assert_eq!((state, message.as_str()), (JobState::Failed, "1 of 10 indices failed, 0 cancelled"));
    // An array of successes succeeds, and a job after it runs.
    let ok = submit_spec(&mut s, array(0, 1, 0));
    let next = submit_spec(&mut s, after(&[&ok], &[]));
    let held = leases(&mut s, "w1", session);
    finish_as(&mut s, session, &held, &[&format!("{ok}:0"), &format!("{ok}:1")], 0);
    assert_eq!(state_of(&s, &ok).0, JobState::Succeeded);
    assert_eq!(leases(&mut s, "w1", session)[0].job_id, next);
}

#[test]
fn an_array_survives_a_restart_mid_way_and_cancelling_it_cancels_what_is_unfinished() {
    let store = Arc::new(MemoryStore::default());
    let (events, _) = broadcast::channel(16);
    let mut s = Scheduler::new(RouterKind::Roundrobin, store.clone(), events.clone());
    let session = register(&mut s, worker("w1", 1, 1));
    let id = submit_spec(&mut s, array(0, 5, 0));
    let held = leases(&mut s, "w1", session);
    finish_as(&mut s, session, &held[..1], &[&held[0].job_id], 3);
    // Restarted with index 0 failed, index 1 leased (to a worker that does not come back), 2 made and queued.
    let mut s = Scheduler::new(RouterKind::Roundrobin, store.clone(), events);
    s.restore(store.load().unwrap(), 2, Instant::now()).now_or_never().unwrap().unwrap();
    let _ = s.expire(Instant::now() - Duration::from_secs(60), 3);
    let status = array_status(&s, &id);
    assert_eq!((status.failed, status.queued, status.leased), (1, 5, 0), "{status:?}");
    let session = register(&mut s, worker("w2", 1, 1));
    let held = leases(&mut s, "w2", session);
    let mut indices: Vec<&str> = held.iter().map(|l| l.job_id.as_str()).collect();
    indices.sort();
    assert_eq!(indices, [format!("{id}:1"), format!("{id}:2")]);
    // Cancelled: the two held are stopped and cancelled, the three never made are counted cancelled.
    let (cancelled, _, _) = s.cancel(std::slice::from_ref(&id), &HashMap::new(), 4).unwrap();
    assert_eq!(cancelled, std::slice::from_ref(&id));
    let status = array_status(&s, &id);
    assert_eq!((status.failed, status.cancelled, status.queued + status.leased + status.running), (1, 5, 0));
    assert_eq!(state_of(&s, &id).0, JobState::Cancelled);
    assert_eq!(s.stats().queued + s.stats().leased, 0);
}

#[test]
fn a_submitter_whose_jobs_do_not_fit_does_not_keep_another_s_that_fits_from_running() {
    let mut s = sched(RouterKind::Roundrobin);
    let session = register(&mut s, worker("w1", 4, 0));
    let cpu = |m| JobSpec { resources: Some(Resources { cpu_millis: m, ..Resources::default() }), ..spec() };
    // Bob holds 1,500 of the worker's 2,000 millicores; Ann queues 300 jobs of 1,000 each: none fits.
    let big = JobSpec { owner: "bob".into(), ..cpu(1500) };
    let _ = s.submit(vec![big], 1).unwrap();
    let _ = s.submit(vec![JobSpec { owner: "ann".into(), ..cpu(1000) }; 300], 1).unwrap();
    // Bob's small job fits in the 500 left: Ann (holding nothing) comes first by share, but only for a while.
    let small = submit_spec(&mut s, JobSpec { owner: "bob".into(), ..cpu(100) });
    let held: Vec<String> = leases(&mut s, "w1", session).into_iter().map(|l| l.job_id).collect();
    assert!(held.contains(&small), "bob's small job is leased");
}

#[test]
fn retention_never_forgets_a_dependency_while_its_dependents_are_settled() {
    let (events, _) = broadcast::channel(16);
    let limits = crate::retention::Limits { max_jobs: 3, max_age: Duration::from_secs(3600) };
    let mut s = Scheduler::with_retention(RouterKind::Roundrobin, Arc::new(MemoryStore::default()), events, limits);
    let x = submit_spec(&mut s, spec());
    let ds: Vec<JobId> = (0..5).map(|_| submit_spec(&mut s, after(&[&x], &[]))).collect();
    let f = submit_spec(&mut s, after(&[], &[&ds[0]]));
    // X cancelled: its five dependents fail, and F (after any end of D1) is queued, not failed for a D1 that
    // retention forgot on the way.
    let _ = s.cancel(std::slice::from_ref(&x), &HashMap::new(), 2).unwrap();
    assert_eq!(s.jobs.state(&f), Some(JobState::Queued));
    assert!(!s.deps.is_blocked(&f));
}
