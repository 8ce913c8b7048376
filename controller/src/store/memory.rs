//! The in-memory store: for tests and `--ephemeral`. It survives a controller restarted inside the same
//! process (tests use that), never the process itself.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Durable, JobStore, StoreError, Write};
use crate::lifecycle::{Job, JobId};

#[derive(Default)]
pub struct MemoryStore {
    /// Guards the records; held only to copy a job in or out.
    jobs: Mutex<HashMap<JobId, Job>>,
}

impl JobStore for MemoryStore {
    fn load(&self) -> Result<Vec<Job>, StoreError> {
        let jobs = self.jobs.lock().map_err(|_| StoreError::Unavailable("memory store poisoned".into()))?;
        Ok(jobs.values().cloned().collect())
    }

    fn write(&self, writes: Vec<Write>) -> Durable {
        let result = match self.jobs.lock() {
            Ok(mut jobs) => {
                for w in writes {
                    match w {
                        Write::Put(job) => {
                            jobs.insert(job.id.clone(), *job);
                        }
                        Write::Delete(id) => {
                            jobs.remove(&id);
                        }
                    }
                }
                Ok(())
            }
            Err(_) => Err(StoreError::Unavailable("memory store poisoned".into())),
        };
        Box::pin(std::future::ready(result))
    }
}
