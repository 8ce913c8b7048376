//! Human names of states and reasons, as the CLI prints and parses them ("queued", "worker-lost").

use crate::v1::{JobState, Reason};

#[derive(Debug, thiserror::Error)]
#[error("unknown state {0:?}: expected one of queued, leased, running, succeeded, failed, cancelled")]
pub struct ParseNameError(pub String);

pub fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Unspecified => "unspecified",
        JobState::Queued => "queued",
        JobState::Leased => "leased",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

pub fn parse_state(name: &str) -> Result<JobState, ParseNameError> {
    let state = match name.to_ascii_lowercase().as_str() {
        "queued" => JobState::Queued,
        "leased" => JobState::Leased,
        "running" => JobState::Running,
        "succeeded" => JobState::Succeeded,
        "failed" => JobState::Failed,
        "cancelled" | "canceled" => JobState::Cancelled,
        _ => return Err(ParseNameError(name.to_string())),
    };
    Ok(state)
}

pub fn reason_name(reason: Reason) -> &'static str {
    match reason {
        Reason::Unspecified => "",
        Reason::Exited => "exited",
        Reason::Signaled => "signaled",
        Reason::Timeout => "timeout",
        Reason::Cancelled => "cancelled",
        Reason::SpawnError => "spawn-error",
        Reason::WorkerLost => "worker-lost",
        Reason::RejectedInput => "rejected-input",
        Reason::QueueDeadlineExceeded => "queue-deadline-exceeded",
        Reason::DependencyFailed => "dependency-failed",
    }
}

/// Longest pool name: short enough that `<cluster>-workers-<pool>` stays a valid Kubernetes object name.
pub const MAX_POOL_NAME: usize = 30;

/// Checks a pool name: 1 to [`MAX_POOL_NAME`] lowercase letters, digits and '-', starting with a letter and not
/// ending with '-' (a DNS label, since a pool on Kubernetes names its own StatefulSet).
pub fn check_pool(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_POOL_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "pool name {name:?} is not valid: use 1 to {MAX_POOL_NAME} lowercase letters, digits and '-', starting \
             with a letter"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_state_parses_back() {
        for state in [
            JobState::Queued,
            JobState::Leased,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
        ] {
            assert_eq!(parse_state(state_name(state)).unwrap(), state);
        }
        assert!(parse_state("bogus").is_err());
    }

    #[test]
    fn pool_names_are_dns_labels() {
        for good in ["default", "onprem", "cloud-spot-2", "a"] {
            assert!(check_pool(good).is_ok(), "{good}");
        }
        for bad in ["", "Cloud", "2cloud", "cloud-", "cloud_spot", "a b", &"a".repeat(MAX_POOL_NAME + 1)] {
            assert!(check_pool(bad).unwrap_err().contains("pool name"), "{bad}");
        }
    }
}
