//! The worker's RPCs, served on its advertised address: [`PeerService`] for peers (stealing),
//! [`WorkerService`] for the controller (reading output).

use std::sync::Arc;

use burst_proto::v1::worker_peer_rpc_server::WorkerPeerRpc;
use burst_proto::v1::worker_rpc_server::WorkerRpc;
use burst_proto::v1::{JobOutputRequest, StealJobsRequest, StealJobsResponse};
use tonic::{Request, Response, Status};

use crate::agent::Agent;

pub struct PeerService {
    agent: Arc<Agent>,
}

impl PeerService {
    pub fn new(agent: Arc<Agent>) -> Self {
        PeerService { agent }
    }
}

#[tonic::async_trait]
impl WorkerPeerRpc for PeerService {
    #[tracing::instrument(skip_all, fields(worker = %self.agent.worker_id(), to))]
    async fn steal_jobs(&self, req: Request<StealJobsRequest>) -> Result<Response<StealJobsResponse>, Status> {
        // With TLS the handshake already required a certificate of the cluster's CA; it must also be a worker's.
        require_role(&self.agent, &req, "worker", "only the cluster's workers may steal")?;
        let req = req.into_inner();
        tracing::Span::current().record("to", req.thief_worker_id.as_str());
        let (leases, queued) = crate::steal::give(&self.agent, &req.thief_worker_id, req.max_jobs).await?;
        Ok(Response::new(StealJobsResponse { leases, queued }))
    }
}

/// With TLS, refuses a caller whose certificate is not of `role`. Without TLS anyone who reaches the port may
/// call (the worker warns of that at start).
fn require_role<T>(agent: &Agent, req: &Request<T>, role: &str, refusal: &'static str) -> Result<(), Status> {
    if agent.config().tls.is_none() {
        return Ok(());
    }
    let who = req.peer_certs().and_then(|c| c.first().and_then(|c| burst_proto::tls::identity(c)));
    match who {
        Some((_, r)) if r == role => Ok(()),
        _ => Err(Status::permission_denied(refusal)),
    }
}

pub struct WorkerService {
    agent: Arc<Agent>,
}

impl WorkerService {
    pub fn new(agent: Arc<Agent>) -> Self {
        WorkerService { agent }
    }
}

#[tonic::async_trait]
impl WorkerRpc for WorkerService {
    type ReadJobOutputStream = crate::logs::Chunks;

    #[tracing::instrument(skip_all, fields(worker = %self.agent.worker_id(), job))]
    async fn read_job_output(
        &self,
        req: Request<JobOutputRequest>,
    ) -> Result<Response<Self::ReadJobOutputStream>, Status> {
        require_role(&self.agent, &req, "controller", "only the controller may read job output from a worker")?;
        let req = req.into_inner();
        tracing::Span::current().record("job", req.job_id.as_str());
        Ok(Response::new(crate::logs::read(&self.agent, req)?))
    }
}
