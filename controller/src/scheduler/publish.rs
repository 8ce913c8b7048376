//! Tells watchers of status changes once they are durable, in the order they happened: a watcher never sees a
//! state that a crash right after could undo.
//!
//! Each operation's statuses wait beside its store barrier. Whoever finds a barrier resolved (the operation's
//! own caller, or any later one: the store resolves barriers in order) sends the statuses of every resolved
//! barrier at the front, oldest first. A caller that drops its barrier unawaited loses nothing: the next
//! operation's publishing polls it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use burst_proto::v1::JobStatus;
use futures::FutureExt;
use futures::future::Shared;
use tokio::sync::broadcast;

use crate::store::Durable;

pub struct Publisher {
    events: broadcast::Sender<JobStatus>,
    /// Guards a push or a pop, never an await.
    pending: Mutex<VecDeque<(Shared<Durable>, Vec<JobStatus>)>>,
}

impl Publisher {
    pub fn new(events: broadcast::Sender<JobStatus>) -> Arc<Self> {
        Arc::new(Publisher { events, pending: Mutex::default() })
    }

    /// Whether anyone watches: statuses are worth making only then.
    pub fn watched(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// `durable` stands for writes that record `statuses`: they are sent once it resolves `Ok`. Returns the
    /// barrier for the caller to await (which also sends them).
    pub fn after(self: &Arc<Self>, durable: Durable, statuses: Vec<JobStatus>) -> Durable {
        self.publish();
        if statuses.is_empty() {
            return durable;
        }
        let durable = durable.shared();
        self.lock().push_back((durable.clone(), statuses));
        let publisher = self.clone();
        Box::pin(async move {
            let result = durable.await;
            publisher.publish();
            result
        })
    }

    /// Sends the statuses of every resolved barrier at the front of the line, in order.
    fn publish(&self) {
        let mut pending = self.lock();
        while let Some((durable, _)) = pending.front() {
            let Some(result) = durable.clone().now_or_never() else { break };
            let Some((_, statuses)) = pending.pop_front() else { break };
            // A write that failed is not durable: nobody is told of it.
            if result.is_ok() {
                for status in statuses {
                    let _ = self.events.send(status);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Shared<Durable>, Vec<JobStatus>)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}
