//! Mutual TLS end to end: a local cluster whose controller and workers speak only TLS with certificates from
//! `burst certs init`, and clients with the right, a foreign, an expired or a borrowed certificate.

mod common;

use std::path::Path;
use std::time::Duration;

use burst_cli::certs;
use burst_cli::client::{ClientTls, connect_tls};
use burst_cli::commands::wait::wait_all;
use burst_cli::local::{ClusterOptions, LocalCluster};
use burst_proto::auth::Bearer;
use burst_proto::v1::{
    GetJobStatusRequest, GetStatsRequest, JobState, ListWorkersRequest, RegisterWorkerRequest, ReportJobResultRequest,
    WorkerInfo,
};
use tonic::Code;

const LONG: Duration = Duration::from_secs(30);

async fn tls_cluster(dir: &Path) -> LocalCluster {
    let opts = ClusterOptions { tls_dir: Some(dir.join("certs")), ..ClusterOptions::new(2, 2, dir.join("out")) };
    common::cluster(opts).await
}

fn with_cert(certs: &Path, name: &str) -> ClientTls {
    ClientTls::Files {
        ca: certs.join("ca.pem"),
        identity: Some((certs.join(format!("{name}.pem")), certs.join(format!("{name}-key.pem")))),
    }
}

/// The first call's error code over `tls` (the handshake happens on the first call).
async fn refused(c: &LocalCluster, tls: Option<&ClientTls>) -> String {
    match connect_tls(&c.url(), Bearer::default(), tls).await {
        Err(e) => format!("{e:#}"),
        Ok(mut client) => match client.get_stats(GetStatsRequest {}).await {
            Ok(_) => panic!("the call went through"),
            Err(status) => format!("{:?}: {}", status.code(), status.message()),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_runs_jobs_and_a_plaintext_client_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = tls_cluster(dir.path()).await;
    assert!(c.url().starts_with("https://"));
    let mut client = c.client().await.unwrap();
    let ids = common::submit(&mut client, vec![common::sh("echo over tls"); 20]).await;
    let ended = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    assert!(ended.iter().all(|s| s.state() == JobState::Succeeded));
    let workers = client.list_workers(ListWorkersRequest {}).await.unwrap().into_inner().workers;
    assert_eq!(workers.len(), 2, "both workers registered over TLS");
    // Plaintext to the TLS port gets nowhere.
    let plain = format!("http://{}", c.controller.addr);
    let err = match burst_cli::client::connect(&plain).await {
        Err(e) => format!("{e:#}"),
        Ok(mut p) => format!("{:?}", p.get_stats(GetStatsRequest {}).await.unwrap_err().code()),
    };
    assert!(!err.contains("Ok"), "{err}");
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_expired_and_missing_client_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = tls_cluster(dir.path()).await;
    let ours = dir.path().join("certs");

    let other = dir.path().join("other-ca");
    let plan = certs::Plan {
        dir: other.clone(),
        workers: vec![],
        clients: vec![("admin".into(), "admin".into())],
        hosts: vec![],
        days: 30,
    };
    certs::init(&plan).unwrap();
    let other_admin = Some((other.join("admin.pem"), other.join("admin-key.pem")));
    let foreign = ClientTls::Files { ca: ours.join("ca.pem"), identity: other_admin };
    // Refused in the handshake: the call never reaches the service (no Unauthenticated, no answer).
    let at_handshake = |err: &str| !err.starts_with("Unauthenticated") && !err.starts_with("PermissionDenied");
    let err = refused(&c, Some(&foreign)).await;
    assert!(at_handshake(&err), "another CA: {err}");

    certs::issue_client(&ours, "old", "admin", -1).unwrap();
    let err = refused(&c, Some(&with_cert(&ours, "old"))).await;
    assert!(at_handshake(&err), "expired: {err}");

    // The server is verified but no client certificate and no token: not authenticated.
    let anonymous = ClientTls::Files { ca: ours.join("ca.pem"), identity: None };
    let err = refused(&c, Some(&anonymous)).await;
    assert!(err.starts_with("Unauthenticated"), "{err}");

    // A submit-role certificate is a submitter, not an admin.
    certs::issue_client(&ours, "alice", "submit", 1).unwrap();
    let mut alice = connect_tls(&c.url(), Bearer::default(), Some(&with_cert(&ours, "alice"))).await.unwrap();
    assert_eq!(alice.list_workers(ListWorkersRequest {}).await.unwrap_err().code(), Code::PermissionDenied);
    assert!(alice.get_stats(GetStatsRequest {}).await.is_ok());
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_certificate_cannot_act_for_another_worker() {
    let dir = tempfile::tempdir().unwrap();
    let c = tls_cluster(dir.path()).await;
    let certs = dir.path().join("certs");
    let mut as_worker =
        connect_tls(&c.url(), Bearer::default(), Some(&with_cert(&certs, "worker-worker-00"))).await.unwrap();
    let req = |id: &str| RegisterWorkerRequest {
        info: Some(WorkerInfo { worker_id: id.into(), slots: 1, ..WorkerInfo::default() }),
        ..RegisterWorkerRequest::default()
    };
    let err = as_worker.register_worker(req("worker-01")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("cannot act for worker-01"), "{}", err.message());
    // Nor on the report stream, opened with its own certificate: a report naming another worker ends it.
    let report = ReportJobResultRequest { worker_id: "worker-01".into(), ..Default::default() };
    let mut answers = as_worker.reports(tokio_stream::iter([report])).await.unwrap().into_inner();
    let err = answers.message().await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("cannot act for worker-01"), "{}", err.message());
    // Workers may not make client calls either.
    assert_eq!(as_worker.list_workers(ListWorkersRequest {}).await.unwrap_err().code(), Code::PermissionDenied);
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_steal_from_each_other_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClusterOptions {
        tls_dir: Some(dir.path().join("certs")),
        router: burst_controller::router::RouterKind::Biased,
        queue_capacity: Some(16),
        ..ClusterOptions::new(2, 2, dir.path().join("out"))
    };
    let c = common::cluster(opts).await;
    let mut client = c.client().await.unwrap();
    // Biased routing leases everything to worker-00; worker-01 only gets work by stealing it, peer to peer.
    // Long enough (about 3 s on one worker) for heartbeats to tell worker-01 about its busy peer.
    let ids = common::submit(&mut client, vec![common::sh("sleep 0.25"); 24]).await;
    let ended = wait_all(&mut client, &ids, Some(LONG), false).await.unwrap();
    assert!(ended.iter().all(|s| s.state() == JobState::Succeeded));
    let stolen = ended.iter().filter(|s| s.worker_id == "worker-01").count();
    assert!(stolen > 0, "worker-01 stole over mutual TLS");
    assert!(ended.iter().filter(|s| s.worker_id == "worker-01").all(|s| s.stolen_from == "worker-00"));
    c.shutdown().await.unwrap();
}

/// Certificates replaced on disk (here a whole new CA) are picked up by the running controller and workers: a
/// job running across the rotation finishes, new connections need the new CA, and the old one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_a_restart_and_running_jobs_finish() {
    let dir = tempfile::tempdir().unwrap();
    let c = tls_cluster(dir.path()).await;
    let certs_dir = dir.path().join("certs");
    let old = dir.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    for f in ["ca.pem", "admin.pem", "admin-key.pem"] {
        std::fs::copy(certs_dir.join(f), old.join(f)).unwrap();
    }
    let mut client = c.client().await.unwrap();
    let gate = dir.path().join("gate");
    let script = format!("while [ ! -e {} ]; do sleep 0.01; done; echo across", gate.display());
    let running = common::submit(&mut client, vec![common::sh(&script)]).await;
    common::eventually(LONG, "the gated job to run", || {
        let mut client = client.clone();
        let id = running[0].clone();
        async move {
            let s = client.get_job_status(GetJobStatusRequest { job_id: id }).await.unwrap().into_inner();
            (s.state() == JobState::Running).then_some(())
        }
    })
    .await;

    // A new CA and new certificates for everyone, written over the old files.
    let plan = certs::Plan {
        dir: certs_dir.clone(),
        workers: c.workers.iter().map(|w| w.worker_id().to_string()).collect(),
        clients: vec![("admin".into(), "admin".into())],
        hosts: vec![],
        days: 30,
    };
    certs::init(&plan).unwrap();
    let reloaded = c.controller.tls.as_ref().unwrap().reload(&certs::files(&certs_dir, "controller"));
    assert_eq!(reloaded, Ok(true));
    for w in &c.workers {
        let files = certs::files(&certs_dir, &format!("worker-{}", w.worker_id()));
        assert_eq!(w.agent.tls().unwrap().reload(&files), Ok(true));
        assert_eq!(w.agent.tls().unwrap().reload(&files), Ok(false), "unchanged files: nothing to do");
    }

    // New connections: the new CA works, the old one is refused in the handshake.
    let err = refused(&c, Some(&with_cert(&old, "admin"))).await;
    assert!(!err.starts_with("Unauthenticated"), "{err}");
    let mut fresh = c.client().await.unwrap();
    let ids = common::submit(&mut fresh, vec![common::sh("echo after"); 10]).await;
    let ended = wait_all(&mut fresh, &ids, Some(LONG), false).await.unwrap();
    assert!(ended.iter().all(|s| s.state() == JobState::Succeeded), "{ended:?}");
    // The connection made before the rotation still works, and the job it started finishes.
    std::fs::write(&gate, b"open").unwrap();
    let ended = wait_all(&mut client, &running, Some(LONG), false).await.unwrap();
    assert_eq!(ended[0].state(), JobState::Succeeded, "{:?}", ended[0]);
    assert_eq!(ended[0].attempt, 1, "never stopped or run again");
    c.shutdown().await.unwrap();
}
