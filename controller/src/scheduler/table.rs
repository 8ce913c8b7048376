//! The scheduler's jobs by id. An unfinished job is kept as it is; a finished one no longer changes and is read
//! rarely (a status query, a list), so it is kept packed: its store record, encoded, without the id its key
//! already holds. A retained finished job then costs a few hundred bytes instead of a few kilobytes, which is
//! what lets a controller keep its default of a million of them.
//!
//! Reading a packed job decodes a copy; changing one ([`JobTable::get_mut`]) unpacks it first, and
//! [`JobTable::settle`] packs it again once it is finished. A job left unpacked costs memory, never correctness.
//! A packed job keeps its state and its owner (interned: a number) beside the record, so lists filtered by state
//! or owner skip the others without decoding them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::RangeBounds;

use burst_proto::v1::JobState;
use prost::Message;
use tracing::error;

use crate::lifecycle::{Job, JobId};
use crate::store::JobRecord;

#[derive(Default)]
pub struct JobTable {
    jobs: BTreeMap<JobId, Kept>,
    owners: Owners,
}

enum Kept {
    Live(Box<Job>),
    /// A finished job: its state and owner (so filters need not decode it) and its record, encoded.
    Packed(JobState, OwnerId, Box<[u8]>),
}

/// An owner's number in [`Owners`].
type OwnerId = u32;

/// Owner names by number: a few submitters own millions of jobs.
#[derive(Default)]
struct Owners {
    names: Vec<String>,
    ids: std::collections::HashMap<String, OwnerId>,
}

impl Owners {
    fn intern(&mut self, name: &str) -> OwnerId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as OwnerId;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }
}

impl JobTable {
    /// Adds (or replaces) a job; a finished one is packed at once.
    pub fn insert(&mut self, job: Job) {
        let id = job.id.clone();
        self.jobs.insert(id.clone(), Kept::Live(Box::new(job)));
        self.settle(&id);
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.jobs.contains_key(id)
    }

    pub fn get(&self, id: &str) -> Option<Cow<'_, Job>> {
        let (key, kept) = self.jobs.get_key_value(id)?;
        read(key, kept)
    }

    /// The job, to change it; a packed one is unpacked first (call [`JobTable::settle`] afterwards).
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Job> {
        let kept = self.jobs.get_mut(id)?;
        if let Kept::Packed(..) = kept {
            let job = read(id, kept)?.into_owned();
            *kept = Kept::Live(Box::new(job));
        }
        match kept {
            Kept::Live(job) => Some(job),
            Kept::Packed(..) => None,
        }
    }

    /// Packs job `id` if it has finished.
    pub fn settle(&mut self, id: &str) {
        let Some(kept) = self.jobs.get_mut(id) else { return };
        let Kept::Live(job) = kept else { return };
        if !job.is_terminal() {
            return;
        }
        let mut record = job.to_record();
        record.id.clear();
        let owner = self.owners.intern(&job.spec.owner);
        *kept = Kept::Packed(job.state().proto(), owner, record.encode_to_vec().into());
    }

    /// Removes job `id`; returns what forgetting it needs (its state and idempotency key), read from a packed
    /// job without unpacking the rest: past the retention limit every job that finishes forgets another.
    pub fn remove(&mut self, id: &str) -> Option<Forgotten> {
        match self.jobs.remove(id)? {
            Kept::Live(job) => {
                Some(Forgotten { state: job.state().proto(), idempotency_key: job.spec.idempotency_key.clone() })
            }
            Kept::Packed(state, _, bytes) => {
                let key = KeyOnly::decode(bytes.as_ref()).ok().and_then(|k| k.spec).unwrap_or_default();
                Some(Forgotten { state, idempotency_key: key.idempotency_key })
            }
        }
    }

    /// The owner of job `id`, without unpacking it.
    pub fn owner(&self, id: &str) -> Option<&str> {
        match self.jobs.get(id)? {
            Kept::Live(job) => Some(job.spec.owner.as_str()),
            Kept::Packed(_, owner, _) => self.owners.names.get(*owner as usize).map(String::as_str),
        }
    }

    /// The state of job `id`, without unpacking it.
    pub fn state(&self, id: &str) -> Option<JobState> {
        match self.jobs.get(id)? {
            Kept::Live(job) => Some(job.state().proto()),
            Kept::Packed(state, ..) => Some(*state),
        }
    }

    /// Jobs in id order within `range`, newest first if `rev`; those whose state `keep` refuses, or (with
    /// `owner`) of another owner, are skipped without being unpacked.
    pub fn range<'a>(
        &'a self,
        range: impl RangeBounds<JobId>,
        rev: bool,
        keep: impl Fn(JobState) -> bool + 'a,
        owner: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = Cow<'a, Job>> + 'a> {
        let entries = self.jobs.range(range);
        let entries: Box<dyn Iterator<Item = (&JobId, &Kept)>> =
            if rev { Box::new(entries.rev()) } else { Box::new(entries) };
        // An owner with no packed job matches no packed job.
        let packed_owner = owner.map(|o| self.owners.ids.get(o).copied());
        let owned = move |kept: &Kept| match (kept, owner, packed_owner) {
            (_, None, _) | (_, _, None) => true,
            (Kept::Live(job), Some(o), _) => job.spec.owner == o,
            (Kept::Packed(_, id, _), _, Some(want)) => want == Some(*id),
        };
        Box::new(
            entries
                .filter(move |(_, kept)| keep(state_of(kept)) && owned(kept))
                .filter_map(|(key, kept)| read(key, kept)),
        )
    }

    /// The unfinished jobs, in id order.
    pub fn live(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values().filter_map(|kept| match kept {
            Kept::Live(job) if !job.is_terminal() => Some(job.as_ref()),
            _ => None,
        })
    }
}

/// What [`JobTable::remove`] tells of the job it removed.
#[derive(Debug, PartialEq)]
pub struct Forgotten {
    pub state: JobState,
    pub idempotency_key: String,
}

/// The part of a [`JobRecord`] that forgetting a job reads: the same field numbers (`JobRecord.spec` = 2,
/// `JobSpec.idempotency_key` = 9); protobuf skips the rest.
#[derive(Clone, PartialEq, prost::Message)]
struct KeyOnly {
    #[prost(message, optional, tag = "2")]
    spec: Option<SpecKey>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SpecKey {
    #[prost(string, tag = "9")]
    idempotency_key: String,
}

fn state_of(kept: &Kept) -> JobState {
    match kept {
        Kept::Live(job) => job.state().proto(),
        Kept::Packed(state, ..) => *state,
    }
}

fn read<'a>(key: &str, kept: &'a Kept) -> Option<Cow<'a, Job>> {
    match kept {
        Kept::Live(job) => Some(Cow::Borrowed(job.as_ref())),
        Kept::Packed(_, _, bytes) => {
            let unpacked = JobRecord::decode(bytes.as_ref()).ok().and_then(|mut record| {
                record.id = key.to_string();
                Job::from_record(record)
            });
            if unpacked.is_none() {
                // Only this module packs, from a valid job: a failure here is a bug, reported rather than hidden.
                error!(job = %key, "a finished job's packed record does not unpack");
            }
            unpacked.map(Cow::Owned)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burst_proto::v1::{JobSpec, Reason};

    use super::*;
    use crate::lifecycle::Outcome;

    fn finished(id: &str) -> Job {
        let spec = JobSpec { owner: "ann".into(), idempotency_key: format!("key-{id}"), ..JobSpec::default() };
        let mut job = Job::new(id.into(), Arc::new(spec), 7);
        let by = job.lease("w1", 1).unwrap();
        assert!(job.start(&by, 8).is_ok());
        let outcome = Outcome { reason: Reason::Exited, exit_code: Some(0), finished_at_ms: 9, ..Outcome::default() };
        assert!(job.finish(&by, outcome, 9).is_ok());
        job
    }

    #[test]
    fn a_finished_job_is_packed_and_reads_back_the_same() {
        let mut table = JobTable::default();
        let job = finished("a");
        table.insert(job.clone());
        table.insert(Job::new("b".into(), Arc::new(JobSpec::default()), 1));
        assert!(matches!(table.jobs["a"], Kept::Packed(JobState::Succeeded, ..)));
        assert!(matches!(table.jobs["b"], Kept::Live(_)));
        // What makes a retained job cheap: its record, without the id, is a few dozen bytes here (a live job is
        // a 328-byte struct plus its spec's 344).
        let Kept::Packed(_, _, bytes) = &table.jobs["a"] else { unreachable!() };
        assert!(bytes.len() < 64, "{} bytes packed", bytes.len());
        assert_eq!(table.get("a").unwrap().to_record(), job.to_record());
        assert_eq!(table.state("a"), Some(JobState::Succeeded));
        // Filters on state skip without unpacking; the live iterator sees only unfinished jobs.
        let queued: Vec<String> =
            table.range(.., false, |s| s == JobState::Queued, None).map(|j| j.id.clone()).collect();
        assert_eq!(queued, ["b"]);
        // So do filters on owner: ann's packed job, nobody's for bob.
        let ids = |owner| table.range(.., false, |_| true, Some(owner)).map(|j| j.id.clone()).collect::<Vec<_>>();
        assert_eq!((ids("ann"), ids("bob")), (vec!["a".to_string()], Vec::<String>::new()));
        assert_eq!(table.live().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["b"]);
        // Changing a packed job unpacks it; settling packs it again.
        assert!(table.get_mut("a").unwrap().cancel(10).is_err());
        assert!(matches!(table.jobs["a"], Kept::Live(_)));
        table.settle("a");
        assert!(matches!(table.jobs["a"], Kept::Packed(..)));
        // Removing reads the state and key, packed or not.
        let forgotten = |state, key: &str| Some(Forgotten { state, idempotency_key: key.to_string() });
        assert_eq!(table.remove("a"), forgotten(JobState::Succeeded, "key-a"));
        assert_eq!(table.remove("b"), forgotten(JobState::Queued, ""));
        assert!(!table.contains_key("a") && table.remove("a").is_none());
    }
}
