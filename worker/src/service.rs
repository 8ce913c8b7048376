//! The worker's peer RPC, served on its advertised address.

use std::sync::Arc;

use burst_proto::v1::worker_peer_rpc_server::WorkerPeerRpc;
use burst_proto::v1::{StealJobsRequest, StealJobsResponse};
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
        if self.agent.config().tls.is_some() {
            let who = req.peer_certs().and_then(|c| c.first().and_then(|c| burst_proto::tls::identity(c)));
            match who {
                Some((_, role)) if role == "worker" => {}
                _ => return Err(Status::permission_denied("only the cluster's workers may steal")),
            }
        }
        let req = req.into_inner();
        tracing::Span::current().record("to", req.thief_worker_id.as_str());
        let (leases, queued) = crate::steal::give(&self.agent, &req.thief_worker_id, req.max_jobs).await?;
        Ok(Response::new(StealJobsResponse { leases, queued }))
    }
}
