//! The stored form of a job: a protobuf message (prost), so records stay readable across versions that add
//! fields. Only [`crate::lifecycle`] turns jobs into records and back.

use burst_proto::v1::{ArrayStatus, Attempt, JobResult, JobSpec};

#[derive(Clone, PartialEq, prost::Message)]
pub struct JobRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub spec: Option<JobSpec>,
    /// A `burst.v1.JobState`.
    #[prost(int32, tag = "3")]
    pub state: i32,
    /// The holder, for a leased or running job.
    #[prost(string, tag = "4")]
    pub holder_worker: String,
    #[prost(uint64, tag = "5")]
    pub holder_session: u64,
    #[prost(uint64, tag = "6")]
    pub holder_epoch: u64,
    #[prost(uint32, tag = "7")]
    pub attempt: u32,
    #[prost(uint32, tag = "8")]
    pub losses: u32,
    #[prost(uint64, tag = "9")]
    pub epoch: u64,
    #[prost(uint64, tag = "10")]
    pub submitted_at_ms: u64,
    #[prost(uint64, tag = "11")]
    pub started_at_ms: u64,
    #[prost(string, tag = "12")]
    pub last_worker: String,
    #[prost(string, tag = "13")]
    pub stolen_from: String,
    /// How the last run ended, if one did (the lease field is unused).
    #[prost(message, optional, tag = "14")]
    pub outcome: Option<JobResult>,
    #[prost(message, repeated, tag = "15")]
    pub attempts: Vec<Attempt>,
    #[prost(uint64, tag = "16")]
    pub retry_at_ms: u64,
    /// The pool of the worker it was last leased to.
    #[prost(string, tag = "17")]
    pub pool: String,
    #[prost(bool, tag = "18")]
    pub spilled: bool,
    /// A job array's ended indices (its unfinished ones are jobs of their own, counted again at a restart).
    #[prost(message, optional, tag = "19")]
    pub array: Option<ArrayStatus>,
    /// A job array's next index to make into a job.
    #[prost(uint64, tag = "20")]
    pub array_next: u64,
}
