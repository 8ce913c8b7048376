//! Status conditions, set the Kubernetes way: a condition's `lastTransitionTime` moves only when its status
//! flips, so a reconcile that changes nothing leaves the status byte-for-byte equal (and is not patched).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// What a condition should say now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want<'a> {
    pub type_: &'a str,
    pub ok: bool,
    pub reason: &'a str,
    pub message: String,
}

impl<'a> Want<'a> {
    pub fn yes(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Want { type_, ok: true, reason, message: message.into() }
    }

    pub fn no(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Want { type_, ok: false, reason, message: message.into() }
    }
}

/// Sets `want` in `conditions`, keeping the old transition time when the status did not flip.
pub fn set(conditions: &mut Vec<Condition>, want: Want<'_>, generation: Option<i64>, now: Timestamp) {
    let status = if want.ok { "True" } else { "False" }.to_string();
    let previous = conditions.iter().position(|c| c.type_ == want.type_);
    let since = match previous.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: want.type_.to_string(),
        status,
        reason: want.reason.to_string(),
        message: want.message,
        observed_generation: generation,
        last_transition_time: since,
    };
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// The condition of `type_`, if set.
pub fn get<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_time_moves_only_when_the_status_flips() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut c = Vec::new();
        set(&mut c, Want::no("Ready", "Starting", "0/2"), Some(1), t0);
        set(&mut c, Want::no("Ready", "Starting", "1/2"), Some(1), t1);
        assert_eq!((c.len(), c[0].last_transition_time.0, c[0].message.as_str()), (1, t0, "1/2"));
        set(&mut c, Want::yes("Ready", "AllReady", "2/2"), Some(2), t1);
        assert_eq!(
            (c[0].status.as_str(), c[0].last_transition_time.0, c[0].observed_generation),
            ("True", t1, Some(2))
        );
        assert!(get(&c, "Ready").is_some() && get(&c, "Other").is_none());
    }
}
