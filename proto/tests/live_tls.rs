//! Live TLS over real sockets: a peer server and clients on loopback, their certificates replaced while they
//! run. New connections use the new certificates at once; connections already made go on; what does not load
//! is refused and changes nothing.

use std::time::Duration;

use burst_proto::tls::issue::{Ca, Issued, now, server_names};
use burst_proto::tls::{self, LiveTls, Pem, WORKER_NAME};
use burst_proto::v1::worker_peer_rpc_client::WorkerPeerRpcClient;
use burst_proto::v1::worker_peer_rpc_server::{WorkerPeerRpc, WorkerPeerRpcServer};
use burst_proto::v1::{StealJobsRequest, StealJobsResponse};
use tonic::{Request, Response, Status};

const DEADLINE: Duration = Duration::from_secs(10);

/// Answers with how many certificates the caller presented, so a test sees that mutual TLS happened.
struct Echo;

#[tonic::async_trait]
impl WorkerPeerRpc for Echo {
    async fn steal_jobs(&self, req: Request<StealJobsRequest>) -> Result<Response<StealJobsResponse>, Status> {
        let certs = req.peer_certs().map_or(0, |c| c.len() as u32);
        Ok(Response::new(StealJobsResponse { queued: certs, ..StealJobsResponse::default() }))
    }
}

fn pem(ca: &Ca, issued: &Issued) -> Pem {
    Pem {
        ca: ca.issued.cert_pem.clone().into_bytes(),
        identity: Some((issued.cert_pem.clone().into_bytes(), issued.key_pem.clone().into_bytes())),
    }
}

/// A CA, and server and client certificates from it.
fn world() -> (Pem, Pem) {
    let ca = Ca::generate("test", 10, now()).unwrap();
    let server = ca.issue("w-server", "worker", server_names(WORKER_NAME, &[]), 1, now()).unwrap();
    let client = ca.issue("w-client", "worker", vec![], 1, now()).unwrap();
    (pem(&ca, &server), pem(&ca, &client))
}

async fn call(addr: &str, tls: &LiveTls) -> Result<u32, Status> {
    let endpoint = tls::endpoint(addr).unwrap().connect_timeout(DEADLINE);
    let mut client = WorkerPeerRpcClient::new(tls::lazy(&endpoint, Some(tls), WORKER_NAME));
    let req = StealJobsRequest { thief_worker_id: "w-client".into(), max_jobs: 1 };
    let resp = tokio::time::timeout(DEADLINE, client.steal_jobs(req)).await.expect("an answer or an error in time");
    resp.map(|r| r.into_inner().queued)
}

#[tokio::test]
async fn replaced_certificates_serve_new_connections_while_old_ones_go_on() {
    let (server_a, client_a) = world();
    let server_tls = LiveTls::new(server_a).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let incoming = tls::incoming(listener, server_tls.clone(), tls::Accept::GrpcClientCert).unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder().add_service(WorkerPeerRpcServer::new(Echo)).serve_with_incoming(incoming),
    );

    let client_tls = LiveTls::new(client_a.clone()).unwrap();
    assert_eq!(call(&addr, &client_tls).await.unwrap(), 1, "the client presented its certificate");
    // One connection made before the rotation, kept open.
    let endpoint = tls::endpoint(&addr).unwrap();
    let mut kept = WorkerPeerRpcClient::new(tls::connect(&endpoint, Some(&client_tls), WORKER_NAME).await.unwrap());
    let req = || StealJobsRequest { thief_worker_id: "w-client".into(), max_jobs: 1 };
    kept.steal_jobs(req()).await.unwrap();

    // A whole new CA on both sides.
    let (server_b, client_b) = world();
    assert_eq!(server_tls.replace(server_b.clone()), Ok(true));
    assert_eq!(server_tls.replace(server_b), Ok(false), "the same PEM again changes nothing");
    let old_client = LiveTls::new(client_a).unwrap();
    assert!(call(&addr, &old_client).await.is_err(), "a client of the old CA is refused");
    assert_eq!(client_tls.replace(client_b.clone()), Ok(true));
    assert_eq!(call(&addr, &client_tls).await.unwrap(), 1, "new connections use the new certificates");
    kept.steal_jobs(req()).await.expect("the connection made before the rotation goes on");

    // A certificate with another certificate's key, and an empty CA bundle, do not load; nothing changes.
    let (_, other) = world();
    let mut mismatched = client_b.clone();
    mismatched.identity.as_mut().unwrap().1 = other.identity.unwrap().1;
    assert!(client_tls.replace(mismatched).unwrap_err().contains("key"));
    assert!(server_tls.replace(Pem { ca: Vec::new(), ..client_b.clone() }).unwrap_err().contains("CA bundle"));
    let no_identity = Pem { ca: client_b.ca.clone(), identity: None };
    assert!(server_tls.replace(no_identity).unwrap_err().contains("needs a certificate"), "a server keeps serving");
    assert_eq!(call(&addr, &client_tls).await.unwrap(), 1);

    // The peer port requires a client certificate: verifying the server alone is not enough.
    let anonymous = LiveTls::new(Pem { ca: client_b.ca.clone(), identity: None }).unwrap();
    assert!(call(&addr, &anonymous).await.is_err());
    assert!(
        tls::incoming(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), anonymous, tls::Accept::Grpc)
            .is_err()
    );
    server.abort();
}
