use super::*;

fn job() -> Job {
    Job::new("j1".into(), Arc::new(JobSpec::default()), 1)
}

fn exited(code: i32) -> Outcome {
    Outcome { reason: Reason::Exited, exit_code: Some(code), ..Outcome::default() }
}

#[test]
fn legal_path_queued_leased_running_succeeded() {
    let mut j = job();
    let h = j.lease("w1", 7).unwrap();
    assert_eq!(h.epoch, 1);
    assert_eq!(j.start(&h, 1).unwrap(), Effect::Moved);
    assert_eq!(j.state().proto(), JobState::Running);
    assert_eq!(j.finish(&h, exited(0), 1).unwrap(), Effect::Ended { from: Some("w1".into()) });
    assert_eq!(j.state(), &State::Succeeded);
}

#[test]
fn nonzero_exit_and_spawn_errors_fail_the_job() {
    let mut j = job();
    let h = j.lease("w1", 1).unwrap();
    let _ = j.finish(&h, exited(3), 1).unwrap();
    assert_eq!(j.state(), &State::Failed);
    assert_eq!(j.status().exit_code, Some(3));

    let mut j = job();
    let h = j.lease("w1", 1).unwrap();
    let spawn = Outcome { reason: Reason::SpawnError, message: "no such file".into(), ..Outcome::default() };
    let _ = j.finish(&h, spawn, 1).unwrap();
    assert_eq!(j.state(), &State::Failed);
}

#[test]
fn illegal_transitions_are_refused_and_change_nothing() {
    // (setup, action, expected refusal kind)
    let mut j = job();
    let stranger = Holder { worker: "w9".into(), session: 1, epoch: 1 };
    assert!(matches!(j.start(&stranger, 1), Err(Refused::NotLeased(JobState::Queued))));
    assert!(matches!(j.finish(&stranger, exited(0), 1), Err(Refused::NotLeased(_))));
    assert!(matches!(j.release("w1", 1, 0), Err(Refused::NotLeased(_))));

    let h = j.lease("w1", 1).unwrap();
    assert!(matches!(j.lease("w2", 1), Err(Refused::NotQueued(JobState::Leased))));
    assert!(matches!(j.start(&stranger, 1), Err(Refused::NotHolder { .. })));
    let _ = j.finish(&h, exited(0), 1).unwrap();
    let before = j.status();
    assert!(matches!(j.finish(&h, exited(1), 1), Err(Refused::Terminal(JobState::Succeeded))));
    assert!(matches!(j.start(&h, 1), Err(Refused::Terminal(_))));
    assert!(matches!(j.release("w1", 1, 0), Err(Refused::NotLeased(_))));
    assert_eq!(j.status(), before);
}

#[test]
fn stale_epoch_report_is_refused() {
    let mut j = job();
    let old = j.lease("w1", 1).unwrap();
    let _ = j.release("w1", 1, 0).unwrap();
    let new = j.lease("w1", 1).unwrap();
    assert_eq!(new.epoch, old.epoch + 1);
    assert!(matches!(j.finish(&old, exited(0), 1), Err(Refused::NotHolder { .. })));
    assert!(j.finish(&new, exited(0), 1).is_ok());
}

#[test]
fn a_transfer_moves_a_leased_job_to_the_thief_under_a_new_epoch() {
    let mut j = job();
    let victim = j.lease("w1", 1).unwrap();
    let thief = j.transfer(&victim, "w2", 5).unwrap();
    assert_eq!(thief, Holder { worker: "w2".into(), session: 5, epoch: victim.epoch + 1 });
    let status = j.status();
    assert_eq!((status.worker_id.as_str(), status.stolen_from.as_str()), ("w2", "w1"));
    // The victim's late reports are refused; the thief's are obeyed.
    assert!(matches!(j.start(&victim, 1), Err(Refused::NotHolder { .. })));
    assert!(matches!(j.finish(&victim, exited(0), 1), Err(Refused::NotHolder { .. })));
    assert_eq!(j.start(&thief, 1).unwrap(), Effect::Moved);
    assert_eq!(j.finish(&thief, exited(0), 1).unwrap(), Effect::Ended { from: Some("w2".into()) });
}

#[test]
fn a_transfer_with_a_stale_epoch_or_of_a_running_job_is_refused() {
    let mut j = job();
    let old = j.lease("w1", 1).unwrap();
    let _ = j.release("w1", 1, 0).unwrap();
    let current = j.lease("w1", 1).unwrap();
    assert!(matches!(j.transfer(&old, "w2", 1), Err(Refused::NotHolder { .. })));
    let _ = j.start(&current, 1).unwrap();
    assert!(j.transfer(&current, "w2", 1).is_err(), "a started job never moves");
    assert_eq!(j.state(), &State::Running(current));
}

#[test]
fn a_report_from_an_old_session_is_refused() {
    let mut j = job();
    let h = j.lease("w1", 1).unwrap();
    let other_session = Holder { session: 2, ..h };
    assert!(j.start(&other_session, 1).is_err());
}

#[test]
fn a_release_of_another_registration_is_refused() {
    let mut j = job();
    let _ = j.lease("w1", 2).unwrap();
    assert!(matches!(j.release("w1", 1, 0), Err(Refused::NotHolder { .. })), "an earlier session of w1");
    assert!(matches!(j.release("w2", 2, 0), Err(Refused::NotHolder { .. })), "another worker");
    assert_eq!(j.state().proto(), JobState::Leased);
    assert!(j.release("w1", 2, 0).is_ok());
}

#[test]
fn release_before_start_requeues_without_spending_an_attempt() {
    let mut j = job();
    let _ = j.lease("w1", 1).unwrap();
    assert_eq!(j.release("w1", 1, 0).unwrap(), Effect::Requeue { from: "w1".into() });
    assert_eq!(j.attempt(), 1);
    assert_eq!(j.state(), &State::Queued);
}

#[test]
fn release_while_running_spends_an_attempt_until_the_loss_budget_is_gone() {
    let mut j = job();
    for n in 1..MAX_LOSSES {
        let h = j.lease("w1", 1).unwrap();
        let _ = j.start(&h, 1).unwrap();
        assert_eq!(j.release("w1", 1, 0).unwrap(), Effect::Requeue { from: "w1".into() });
        assert_eq!(j.attempt(), n + 1);
    }
    let h = j.lease("w1", 1).unwrap();
    let _ = j.start(&h, 1).unwrap();
    assert_eq!(j.release("w1", 1, 5).unwrap(), Effect::Ended { from: Some("w1".into()) });
    let status = j.status();
    assert_eq!(status.state(), JobState::Failed);
    assert_eq!(status.reason(), Reason::WorkerLost);
}

fn retrying(max_attempts: u32, codes: Vec<i32>) -> Job {
    let spec = JobSpec { max_attempts, retry_exit_codes: codes, retry_backoff_ms: 100, ..JobSpec::default() };
    Job::new("j".into(), Arc::new(spec), 1)
}

#[test]
fn a_failure_with_attempts_left_is_retried_after_a_doubling_backoff() {
    let mut j = retrying(3, vec![]);
    let h = j.lease("w1", 1).unwrap();
    assert_eq!(
        j.finish(&h, exited(2), 1_000).unwrap(),
        Effect::Retry { from: "w1".into(), after: Duration::from_millis(100) }
    );
    assert_eq!((j.state(), j.attempt(), j.retry_at_ms()), (&State::Queued, 2, 1_100));
    let h = j.lease("w2", 1).unwrap();
    assert_eq!(
        j.finish(&h, exited(2), 2_000).unwrap(),
        Effect::Retry { from: "w2".into(), after: Duration::from_millis(200) }
    );
    let h = j.lease("w1", 1).unwrap();
    assert_eq!(j.finish(&h, exited(2), 3_000).unwrap(), Effect::Ended { from: Some("w1".into()) });
    let status = j.status();
    assert_eq!(status.state(), JobState::Failed);
    assert_eq!(status.attempt, 3);
    let workers: Vec<_> = status.attempts.iter().map(|a| (a.attempt, a.worker_id.as_str())).collect();
    assert_eq!(workers, [(1, "w1"), (2, "w2"), (3, "w1")]);
}

#[test]
fn only_listed_exit_codes_are_retried_and_spawn_errors_never() {
    let mut j = retrying(5, vec![75]);
    let h = j.lease("w1", 1).unwrap();
    assert!(matches!(j.finish(&h, exited(75), 1).unwrap(), Effect::Retry { .. }));
    let h = j.lease("w1", 1).unwrap();
    assert!(matches!(j.finish(&h, exited(1), 1).unwrap(), Effect::Ended { .. }), "1 is not listed");

    let mut j = retrying(5, vec![]);
    let h = j.lease("w1", 1).unwrap();
    let spawn = Outcome { reason: Reason::SpawnError, ..Outcome::default() };
    assert!(matches!(j.finish(&h, spawn, 1).unwrap(), Effect::Ended { .. }));
    assert_eq!(j.attempt(), 1);
}

#[test]
fn backoff_is_capped() {
    let mut j = retrying(40, vec![]);
    let mut last = Duration::ZERO;
    for _ in 0..30 {
        let h = j.lease("w", 1).unwrap();
        if let Effect::Retry { after, .. } = j.finish(&h, exited(1), 1).unwrap() {
            last = after;
        }
    }
    assert_eq!(last, MAX_RETRY_BACKOFF);
}

#[test]
fn cancel_ends_any_unfinished_job_and_says_who_held_it() {
    let mut queued = job();
    assert_eq!(queued.cancel(5).unwrap(), Effect::Ended { from: None });
    assert_eq!(queued.state(), &State::Cancelled);
    assert!(matches!(queued.cancel(6), Err(Refused::Terminal(JobState::Cancelled))));

    let mut running = job();
    let h = running.lease("w1", 1).unwrap();
    let _ = running.start(&h, 2).unwrap();
    assert_eq!(running.cancel(5).unwrap(), Effect::Ended { from: Some("w1".into()) });
    let status = running.status();
    assert_eq!((status.state(), status.reason()), (JobState::Cancelled, Reason::Cancelled));
    assert_eq!(status.attempts.len(), 1, "the cancelled run is recorded");
    assert!(matches!(running.finish(&h, exited(0), 9), Err(Refused::Terminal(JobState::Cancelled))));
}

#[test]
fn the_queue_deadline_ends_only_jobs_that_never_started() {
    let mut j = job();
    let _ = j.lease("w1", 1).unwrap();
    assert_eq!(j.miss_queue_deadline(10).unwrap(), Effect::Ended { from: Some("w1".into()) });
    assert_eq!(j.status().reason(), Reason::QueueDeadlineExceeded);

    let mut j = job();
    let h = j.lease("w1", 1).unwrap();
    let _ = j.start(&h, 2).unwrap();
    assert!(j.miss_queue_deadline(10).is_err());
}

#[test]
fn a_job_survives_its_record_in_every_state() {
    let mut running = retrying(3, vec![]);
    let h = running.lease("w1", 4).unwrap();
    let _ = running.finish(&h, exited(2), 10).unwrap();
    let h = running.lease("w2", 5).unwrap();
    running.placed(Arc::from("cloud"), true);
    let _ = running.start(&h, 11).unwrap();
    assert_eq!((running.status().pool.as_str(), running.status().spilled), ("cloud", true));
    let mut done = job();
    let h = done.lease("w1", 1).unwrap();
    let _ = done.finish(&h, exited(0), 3).unwrap();
    for j in [job(), running, done] {
        let back = Job::from_record(j.to_record()).expect("record reads back");
        assert_eq!(back.status(), j.status());
        assert_eq!(back.state(), j.state());
        assert_eq!(back.to_record(), j.to_record());
    }
    let mut broken = job().to_record();
    broken.state = JobState::Running as i32; // running, but nobody holds it
    assert!(Job::from_record(broken).is_none());
}
