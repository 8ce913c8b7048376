//! The operator's one error type. Each variant says what failed; [`Error::reason`] is its stable CamelCase name,
//! used as a condition reason, an Event reason and a metric label.

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed (transient, or RBAC); retried with backoff.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The spec can never work as written; shown as a condition and an Event, not retried until it changes.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A BurstJob names a BurstCluster that does not exist (yet); retried with backoff.
    #[error("BurstCluster {0:?} not found in this namespace")]
    ClusterNotFound(String),
    /// A BurstJob depends on BurstJobs (spec.after, spec.afterAny) not yet created or submitted; looked at again
    /// shortly, not a failure.
    #[error("waits for BurstJob {0} to be submitted before it can be")]
    DependencyPending(String),
    /// The burst controller did not answer (not up yet, or down); retried with backoff.
    #[error("controller {endpoint} unreachable: {message}")]
    ControllerUnreachable { endpoint: String, message: String },
    /// The burst controller answered with an error.
    #[error("controller refused {what}: {status}")]
    Controller {
        what: &'static str,
        #[source]
        status: tonic::Status,
    },
    /// A cluster's TLS Secret is missing, lacks a key, or holds certificates that do not load; retried with
    /// backoff (the operator makes its own on the cluster's next reconcile; a user's may be created later).
    #[error("TLS secret: {0}")]
    TlsSecret(String),
    /// Adding or removing the BurstJob finalizer, or its cleanup, failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Stable name for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::ClusterNotFound(_) => "ClusterNotFound",
            Error::DependencyPending(_) => "DependencyPending",
            Error::ControllerUnreachable { .. } => "ControllerUnreachable",
            Error::Controller { .. } => "ControllerError",
            Error::TlsSecret(_) => "TlsSecretNotReady",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.reason()
                }
                _ => "FinalizerError",
            },
        }
    }

    /// A gRPC failure from the controller at `endpoint`: unreachable when the transport failed, else refused.
    pub fn from_status(endpoint: &str, what: &'static str, status: tonic::Status) -> Self {
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                Error::ControllerUnreachable { endpoint: endpoint.to_string(), message: status.message().to_string() }
            }
            _ => Error::Controller { what, status },
        }
    }
}
