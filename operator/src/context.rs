//! What every reconcile shares: the Kubernetes client, the links to burst controllers, the Event recorder, the
//! metrics, and the per-object failure counts that space out retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

use crate::error::Error;
use crate::link::Links;
use crate::metrics::Metrics;
use crate::names;

/// Retries after a failure wait 2^n seconds (n = failures in a row), at most this long.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub struct Context {
    pub client: Client,
    pub links: Links,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Failures in a row per object (kind/namespace/name); reset by a successful reconcile.
    failures: Mutex<HashMap<String, u32>>,
    /// What the operator last applied to each child (kind/namespace/name), so that an unchanged child is not
    /// applied again (see `cluster::reconcile::apply`). Held only to look up or insert.
    pub applied: Mutex<HashMap<String, Applied>>,
}

/// A child as the operator applied it: a hash of the object it sent, and the stored object's version in the
/// answer (its generation where it has one, which status writes leave alone; else its resourceVersion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub sent: u64,
    pub version: String,
}

impl Context {
    pub fn new(client: Client, links: Links, metrics: Arc<Metrics>, instance: Option<String>) -> Arc<Self> {
        let reporter = Reporter { controller: names::FIELD_MANAGER.into(), instance };
        let recorder = Recorder::new(client.clone(), reporter);
        Arc::new(Context { client, links, metrics, recorder, failures: Mutex::default(), applied: Mutex::default() })
    }

    /// Records an Event on `object`. An Event that cannot be written is logged, never a reconcile failure.
    pub async fn event(&self, object: &ObjectReference, warning: bool, reason: &str, note: String) {
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, object).await {
            warn!(error = %e, reason, "could not record an event");
        }
    }

    /// The requeue after a failed reconcile of `key`: exponential in its failures in a row.
    pub fn retry(&self, key: String, error: &Error) -> Action {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        let wait = Duration::from_secs(1u64 << (*n - 1).min(9)).min(MAX_BACKOFF);
        warn!(error = %error, reason = error.reason(), retry_in = ?wait, "reconcile failed");
        Action::requeue(wait)
    }

    /// Forgets `key`'s failures after a reconcile that worked.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// The failure-count key of an object.
pub fn key(kind: &str, ns: &str, name: &str) -> String {
    format!("{kind}/{ns}/{name}")
}
