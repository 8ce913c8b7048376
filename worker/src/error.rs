//! What can go wrong inside the worker, in its own terms. Only the gRPC edge ([`crate::service`]) turns it
//! into a `tonic::Status`, so the agent and the thief say what failed instead of passing wire codes around.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The controller refused this worker's description: a configuration error that retrying cannot fix.
    #[error("the controller refused this worker: {0}")]
    Refused(String),
    /// A request that makes no sense (a worker stealing from itself, a peer address that does not parse).
    #[error("{0}")]
    BadRequest(String),
    /// A peer did not answer in time.
    #[error("{0} did not answer in time")]
    NoAnswer(String),
    /// The controller or a peer answered a call with an error.
    #[error("{call} failed: {}", .status.message())]
    Call { call: &'static str, status: Status },
}

impl WorkerError {
    /// A failed call, named.
    pub fn call(call: &'static str) -> impl FnOnce(Status) -> WorkerError {
        move |status| WorkerError::Call { call, status }
    }
}

impl From<WorkerError> for Status {
    fn from(e: WorkerError) -> Status {
        match &e {
            WorkerError::Refused(_) => Status::failed_precondition(e.to_string()),
            WorkerError::BadRequest(_) => Status::invalid_argument(e.to_string()),
            WorkerError::NoAnswer(_) => Status::deadline_exceeded(e.to_string()),
            WorkerError::Call { status, .. } if status.code() == Code::Ok => Status::unknown(e.to_string()),
            WorkerError::Call { status, .. } => Status::new(status.code(), e.to_string()),
        }
    }
}
