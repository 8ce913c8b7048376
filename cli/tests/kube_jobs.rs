//! BurstJobs end to end on a real API server (see `apiserver/`): `kubectl apply` of the examples, `kubectl wait`,
//! cancel on delete, TTL, an invalid spec edited into a valid one, a job the controller lost, how often a
//! busy BurstCluster is reconciled, and `kubectl burst` reaching the controller with an operator-issued client
//! certificate through a port-forward (a stand-in kubelet carries it).
//!
//! The operator runs in this process with the chart's ServiceAccount token ([`burst_operator::run_with`]); the
//! burst controller and worker run here too, on loopback, over mutual TLS with the certificates the operator
//! wrote into the cluster's Secrets (mounted as files, as the pods would). The one thing a deployment does
//! differently is where the operator finds the controller: its Service's DNS name there, the controller's
//! loopback port here (the resolver given to `run_with`; no flag or setting exists for it).

mod apiserver;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apiserver::{ControlPlane, DEADLINE, client_for, eventually, free_port, install_chart};
use burst_operator::crd::{BurstCluster, BurstJob};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples");

/// The cluster's Secret `name` as files in `dir` (what a pod's Secret volume holds).
async fn mount(client: &Client, ns: &str, name: &str, dir: &Path) {
    let secret = eventually(DEADLINE, &format!("Secret {name}"), || async {
        Api::<Secret>::namespaced(client.clone(), ns).get_opt(name).await.unwrap()
    })
    .await;
    std::fs::create_dir_all(dir).unwrap();
    for (key, bytes) in burst_operator::cluster::tls::data_of(&secret) {
        std::fs::write(dir.join(key), bytes).unwrap();
    }
}

fn tls_files(dir: &Path, name: &str) -> burst_proto::tls::TlsFiles {
    burst_proto::tls::TlsFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
        ca: dir.join("ca.pem"),
    }
}

/// The burst controller of BurstCluster `demo` at `port`, keeping its store in `data`, over the cluster's TLS.
async fn controller(mounts: &Path, port: u16, data: &Path) -> burst_controller::RunningController {
    let config = burst_controller::ControllerConfig {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        data_dir: data.to_path_buf(),
        tls: Some(tls_files(&mounts.join("controller"), "controller")),
        ..burst_controller::ControllerConfig::default()
    };
    burst_controller::start(config).await.unwrap()
}

/// Worker `demo-worker-0` (2 slots) of that controller.
async fn worker(mounts: &Path, port: u16, out: &Path) -> burst_worker::RunningWorker {
    let url = format!("https://127.0.0.1:{port}");
    let mut cfg = burst_worker::WorkerConfig::local(&url, "demo-worker-0", 2, 4, out.to_path_buf());
    cfg.tls = Some(tls_files(&mounts.join("worker"), "demo-worker-0"));
    let worker = burst_worker::start(cfg).await.unwrap();
    tokio::time::timeout(DEADLINE, worker.agent.registered()).await.unwrap();
    worker
}

async fn phase(jobs: &Api<BurstJob>, name: &str) -> Option<String> {
    jobs.get_opt(name).await.unwrap()?.status?.phase
}

async fn until_phase(jobs: &Api<BurstJob>, name: &str, want: &str) -> BurstJob {
    eventually(DEADLINE, &format!("BurstJob {name} {want}"), || async {
        let bj = jobs.get_opt(name).await.unwrap()?;
        (bj.status.as_ref()?.phase.as_deref() == Some(want)).then_some(bj)
    })
    .await
}

fn apply_yaml(plane: &ControlPlane, ns: &str, name: &str, yaml: &str) {
    let path = plane.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    plane.kubectl(&["apply", "-n", ns, "-f", path.to_str().unwrap()]);
}

fn process_job(name: &str, command: &str, args: &[&str], extra: &str) -> String {
    let args = serde_json::to_string(args).unwrap();
    format!(
        "apiVersion: burst.dev/v1alpha1\nkind: BurstJob\nmetadata: {{name: {name}}}\nspec:\n  clusterRef: demo\n  \
         process: {{command: {command:?}, args: {args}}}\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burstjobs_run_end_to_end_against_a_real_api_server() {
    let Some(plane) = ControlPlane::start("BurstJobs on a real API server").await else { return };
    let sa = install_chart(&plane, &["--set", "leaderElection.enabled=false"]).await;
    let ns = "jobs";
    plane.namespace(ns).await;
    let admin = plane.admin().await;
    let port = free_port();
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let args = burst_operator::Args {
        namespaces: vec![],
        http_listen: http,
        leader_elect: false,
        lease_namespace: "burst-system".into(),
        lease_name: "burst-operator".into(),
        identity: Some("operator-in-test".into()),
    };
    let resolve: burst_operator::link::Resolver = Arc::new(move |_, _| format!("127.0.0.1:{port}"));
    let operator = tokio::spawn(burst_operator::run_with(client_for(&sa).await, args, resolve));

    // The cluster, and its controller and worker "mounting" the Secrets the operator made.
    plane.kubectl(&["apply", "-n", ns, "-f", &format!("{EXAMPLES}/burstcluster.yaml")]);
    let mounts = plane.dir.path().join("mounts");
    mount(&admin, ns, "demo-controller-tls", &mounts.join("controller")).await;
    mount(&admin, ns, "demo-worker-tls", &mounts.join("worker")).await;
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let burst = controller(&mounts, port, data.path()).await;
    let work = worker(&mounts, port, out.path()).await;
    let jobs: Api<BurstJob> = Api::namespaced(admin.clone(), ns);

    // 1. The examples, applied and waited for as a user would.
    plane.kubectl(&["apply", "-n", ns, "-f", &format!("{EXAMPLES}/burstjob.yaml")]);
    plane.kubectl(&["wait", "-n", ns, "--for=condition=Finished", "bj/hello", "--timeout=60s"]);
    let hello = jobs.get("hello").await.unwrap().status.unwrap();
    assert_eq!((hello.phase.as_deref(), hello.exit_code), (Some("Succeeded"), Some(0)), "{hello:?}");
    assert!(hello.output_tail.as_deref().unwrap_or_default().contains("hello from demo-worker-0"), "{hello:?}");
    let submitted = hello.conditions.iter().find(|c| c.type_ == "Submitted").unwrap();
    assert_eq!(submitted.status, "True");
    plane.kubectl(&["apply", "-n", ns, "-f", &format!("{EXAMPLES}/burstjobs.yaml")]);
    for name in ["echo", "python", "exit-3"] {
        plane.kubectl(&["wait", "-n", ns, "--for=condition=Finished", &format!("bj/{name}"), "--timeout=60s"]);
    }
    let echo = jobs.get("echo").await.unwrap().status.unwrap();
    assert_eq!(echo.phase.as_deref(), Some("Succeeded"));
    assert!(echo.output_tail.unwrap_or_default().contains("hello from a BurstJob"));
    let python = jobs.get("python").await.unwrap().status.unwrap();
    assert_eq!(python.phase.as_deref(), Some("Succeeded"), "python3 is on this machine: {python:?}");
    let failed = jobs.get("exit-3").await.unwrap().status.unwrap();
    assert_eq!((failed.phase.as_deref(), failed.exit_code), (Some("Failed"), Some(3)), "{failed:?}");
    let table = plane.kubectl(&["get", "bj", "-n", ns]);
    println!("kubectl get bj:\n{table}");

    // 2. An invalid spec waits for an edit, and runs once edited.
    apply_yaml(&plane, ns, "fixme", &process_job("fixme", " ", &[], ""));
    let refused = until_phase(&jobs, "fixme", "Failed").await.status.unwrap();
    assert_eq!(refused.reason.as_deref(), Some("InvalidSpec"), "{refused:?}");
    apply_yaml(&plane, ns, "fixme", &process_job("fixme", "/bin/echo", &["fixed"], ""));
    let fixed = until_phase(&jobs, "fixme", "Succeeded").await.status.unwrap();
    assert!(fixed.output_tail.unwrap_or_default().contains("fixed"));

    // 2b. Dependencies by name: `second` is applied before `first` exists and waits (Pending, saying for what);
    // once `first` is applied both run, `second` after `first` succeeded, at the priority it asks for.
    let after_first = "  after: [first]\n  priority: 5\n";
    apply_yaml(&plane, ns, "second", &process_job("second", "/bin/echo", &["second"], after_first));
    let waiting = eventually(DEADLINE, "second waiting for first", || async {
        let s = jobs.get("second").await.unwrap().status?;
        (s.reason.as_deref() == Some("DependencyPending")).then_some(s)
    })
    .await;
    assert_eq!(waiting.phase.as_deref(), Some("Pending"), "{waiting:?}");
    assert!(waiting.message.unwrap_or_default().contains("BurstJob first"));
    apply_yaml(&plane, ns, "first", &process_job("first", "/bin/sh", &["-c", "sleep 0.5; echo first"], ""));
    let second = until_phase(&jobs, "second", "Succeeded").await.status.unwrap();
    let first = jobs.get("first").await.unwrap().status.unwrap();
    let (spec, status) = burst.controller.lock().job(second.job_id.as_deref().unwrap()).unwrap();
    assert_eq!((spec.after.clone(), spec.priority), (vec![first.job_id.clone().unwrap()], 5));
    let (_, first_status) = burst.controller.lock().job(first.job_id.as_deref().unwrap()).unwrap();
    assert!(status.started_at_ms >= first_status.finished_at_ms, "second ran after first ended");

    // 2c. An array: one BurstJob of ten indices, counted in its status and printer columns.
    let array = "  array: {first: 0, last: 9, parallelism: 4}\n";
    apply_yaml(&plane, ns, "many", &process_job("many", "/bin/sh", &["-c", "[ $BURST_ARRAY_INDEX != 3 ]"], array));
    let many = until_phase(&jobs, "many", "Failed").await.status.unwrap();
    let counts = many.indices.clone().unwrap();
    assert_eq!((counts.total, counts.succeeded, counts.failed, counts.failed_indices), (10, 9, 1, vec![3]), "{many:?}");
    let table = plane.kubectl(&["get", "bj", "many", "-n", ns, "-o", "wide"]);
    assert!(table.contains("INDICES") && table.contains("SUCCEEDED"), "{table}");

    // 3. ttlSecondsAfterFinished deletes a finished BurstJob.
    apply_yaml(&plane, ns, "brief", &process_job("brief", "/bin/true", &[], "  ttlSecondsAfterFinished: 1\n"));
    eventually(DEADLINE, "BurstJob brief deleted after its TTL", || async {
        (jobs.get_opt("brief").await.unwrap().is_none()).then_some(())
    })
    .await;

    // 4. Deleting an unfinished BurstJob cancels its job.
    apply_yaml(&plane, ns, "long", &process_job("long", "/bin/sleep", &["60"], ""));
    let id = until_phase(&jobs, "long", "Running").await.status.unwrap().job_id.unwrap();
    plane.kubectl(&["delete", "bj", "long", "-n", ns, "--timeout=60s"]);
    let state = burst.controller.lock().job(&id).unwrap().1.state();
    assert_eq!(state, burst_proto::v1::JobState::Cancelled);
    let events: Api<Event> = Api::namespaced(admin.clone(), ns);
    let cancelled = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| e.reason.as_deref() == Some("Cancelled") && e.involved_object.name.as_deref() == Some("long"));
    assert!(cancelled, "a Cancelled Event on the deleted BurstJob");

    // 5. A busy cluster: its counts change in every refresh, yet it is reconciled only by the refresh. The
    // controller pod is marked Ready (as a kubelet would) so that the operator reads the controller's counts.
    let pod = eventually(DEADLINE, "the controller pod", || async {
        let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(admin.clone(), ns);
        pods.get_opt("demo-controller-0").await.unwrap()
    })
    .await;
    plane.pod_ready(ns, &pod.name_any()).await;
    for i in 0..24 {
        apply_yaml(&plane, ns, &format!("busy-{i}"), &process_job(&format!("busy-{i}"), "/bin/sleep", &["2.5"], ""));
    }
    let clusters: Api<BurstCluster> = Api::namespaced(admin.clone(), ns);
    eventually(DEADLINE, "the cluster's status showing running jobs", || async {
        (clusters.get("demo").await.unwrap().status?.running > 0).then_some(())
    })
    .await;
    println!("kubectl get bc:\n{}", plane.kubectl(&["get", "bc", "-n", ns]));
    let reconciles = || async {
        let page = apiserver::http_get(http, "/metrics").await.unwrap().1;
        let line = page.lines().find(|l| l.starts_with("burst_operator_reconciles_total{kind=\"BurstCluster\"}"));
        line.and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).unwrap_or(0.0)
    };
    let (start, from) = (reconciles().await, std::time::Instant::now());
    let mut statuses = std::collections::BTreeSet::new();
    while from.elapsed() < Duration::from_secs(30) {
        let s = clusters.get("demo").await.unwrap().status.unwrap();
        statuses.insert((s.queued, s.running, s.slots.unwrap_or_default()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (count, window) = (reconciles().await - start, from.elapsed());
    let per_minute = count * 60.0 / window.as_secs_f64();
    println!("busy BurstCluster: {count} reconciles in {window:?} = {per_minute:.1} per minute; {statuses:?}");
    assert!(statuses.len() >= 2, "the counts changed while busy: {statuses:?}");
    assert!(count <= apiserver::refreshes_in(window), "a busy cluster is reconciled only by its refresh: {count}");
    for i in 0..24 {
        until_phase(&jobs, &format!("busy-{i}"), "Succeeded").await;
    }

    // 5b. `kubectl burst` as a user would run it: a client certificate the operator issued (spec.tls.clients),
    // the cluster found with the kubeconfig, the controller reached by a port-forward to its pod, which a
    // stand-in kubelet carries to the controller running here.
    let kubelet = apiserver::kubelet::FakeKubelet::start(format!("127.0.0.1:{port}").parse().unwrap()).await;
    kubelet.host(&admin, ns, "demo-controller-0").await;
    let clients = r#"{"spec":{"tls":{"clients":[{"name":"ops","role":"admin"}]}}}"#;
    plane.kubectl(&["patch", "bc", "demo", "-n", ns, "--type", "merge", "-p", clients]);
    eventually(DEADLINE, "ops's certificate", || async {
        Api::<Secret>::namespaced(admin.clone(), ns).get_opt("demo-client-ops").await.unwrap()
    })
    .await;
    let plugin = apiserver::KubectlBurst::new(&plane.admin_kubeconfig);
    let kubectl_burst = |args: &[&str]| plugin.run(args);
    let (code, out, err) = kubectl_burst(&["-n", ns, "workers", "-o", "name"]);
    assert_eq!((code, out.as_str()), (Some(0), "demo-worker-0"), "{err}");
    let (code, out, err) = kubectl_burst(&["-n", ns, "submit", "--wait", "process", "/bin/echo", "through-kubectl"]);
    assert_eq!(code, Some(0), "{err}");
    let id = out.lines().next().unwrap_or_default().to_string();
    let (code, logs, err) = kubectl_burst(&["-n", ns, "logs", &id]);
    assert_eq!((code, logs.as_str()), (Some(0), "through-kubectl"), "{err}");
    let (spec, _) = burst.controller.lock().job(&id).unwrap();
    assert_eq!(spec.owner, "ops", "the job is the client's own");
    drop(kubelet);

    // 6. The controller loses its store while a BurstJob runs: deleting the BurstJob still completes.
    apply_yaml(&plane, ns, "orphan", &process_job("orphan", "/bin/sleep", &["60"], ""));
    until_phase(&jobs, "orphan", "Running").await;
    work.shutdown().await;
    burst.shutdown().await.unwrap();
    plane.kubectl(&["delete", "bj", "orphan", "-n", ns, "--wait=false"]);
    let empty = tempfile::tempdir().unwrap();
    let again = controller(&mounts, port, empty.path()).await;
    eventually(DEADLINE, "BurstJob orphan gone though its job is unknown", || async {
        (phase(&jobs, "orphan").await.is_none() && jobs.get_opt("orphan").await.unwrap().is_none()).then_some(())
    })
    .await;
    again.shutdown().await.unwrap();
    operator.abort();
}

/// Worker `id` of pool `pool` (1 slot, no queue) of the controller at `port`, with its pod's certificate.
async fn pool_worker(mounts: &Path, port: u16, id: &str, pool: &str, out: &Path) -> burst_worker::RunningWorker {
    let url = format!("https://127.0.0.1:{port}");
    let mut cfg = burst_worker::WorkerConfig::local(&url, id, 1, 0, out.to_path_buf());
    cfg.pool = pool.into();
    cfg.tls = Some(tls_files(&mounts.join("worker"), id));
    let worker = burst_worker::start(cfg).await.unwrap();
    tokio::time::timeout(DEADLINE, worker.agent.registered()).await.unwrap();
    worker
}

/// An elastic pool scaled by the operator from the controller's demand: up when jobs wait for it, never below a
/// worker that still holds a job (it is cordoned and waited for), and down to zero once idle. As in the test
/// above, the controller and the workers run here on loopback, standing in for the pods (there is no kubelet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elastic_pool_scales_up_with_demand_drains_before_it_shrinks_and_goes_back_to_zero() {
    let Some(plane) = ControlPlane::start("an elastic pool on a real API server").await else { return };
    let sa = install_chart(&plane, &["--set", "leaderElection.enabled=false"]).await;
    let ns = "pools";
    plane.namespace(ns).await;
    let admin = plane.admin().await;
    let port = free_port();
    let args = burst_operator::Args {
        namespaces: vec![],
        http_listen: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        leader_elect: false,
        lease_namespace: "burst-system".into(),
        lease_name: "burst-operator".into(),
        identity: Some("operator-in-test".into()),
    };
    let resolve: burst_operator::link::Resolver = Arc::new(move |_, _| format!("127.0.0.1:{port}"));
    let operator = tokio::spawn(burst_operator::run_with(client_for(&sa).await, args, resolve));
    let cluster = "apiVersion: burst.dev/v1alpha1\nkind: BurstCluster\nmetadata: {name: demo}\nspec:\n  image: burst:local\n  \
                   controller: {persistence: {enabled: true}}\n  pools:\n    - {name: cloud, cost: 3, minReplicas: 0, maxReplicas: 2, slots: 1, queueCapacity: 0, \
                   scaleDownDelaySeconds: 1}\n";
    apply_yaml(&plane, ns, "cluster", cluster);
    let mounts = plane.dir.path().join("mounts");
    mount(&admin, ns, "demo-controller-tls", &mounts.join("controller")).await;
    mount(&admin, ns, "demo-worker-tls", &mounts.join("worker")).await;
    // The controller as its pod runs it: with the pools of the ConfigMap the operator wrote.
    let configmaps = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), ns);
    // (Written after the certificates, in the same reconcile: waited for, not assumed.)
    let config =
        eventually(DEADLINE, "the cluster's ConfigMap", || async { configmaps.get_opt("demo-config").await.unwrap() })
            .await;
    let file = config.data.unwrap()["burst.toml"].clone();
    let path = plane.dir.path().join("burst.toml");
    std::fs::write(&path, &file).unwrap();
    let section: burst_controller::config::Section = burst_proto::config::load_section(&path, "controller").unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = burst_controller::ControllerConfig {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        data_dir: data.path().to_path_buf(),
        tls: Some(tls_files(&mounts.join("controller"), "controller")),
        pools: section.pools.unwrap(),
        ..burst_controller::ControllerConfig::default()
    };
    let burst = burst_controller::start(config).await.unwrap();
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(admin.clone(), ns);
    let controller_pod = eventually(DEADLINE, "the controller pod", || async {
        let list = pods.list(&ListParams::default().labels("burst.dev/role=controller")).await.unwrap();
        list.items.into_iter().next()
    })
    .await;
    plane.pod_ready(ns, &controller_pod.name_any()).await;
    let sets = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(admin.clone(), ns);
    let replicas = || async { sets.get_opt("demo-worker-cloud").await.unwrap().and_then(|s| s.spec.replicas) };
    assert_eq!(replicas().await, Some(0), "an elastic pool starts at its minimum");

    // 1. Two jobs wait for the cloud: it grows to two workers (one slot each).
    let submit = |command: &str, args: &[&str]| {
        let spec = burst_proto::v1::JobSpec {
            kind: Some(burst_proto::v1::job_spec::Kind::Process(burst_proto::v1::ProcessSpec {
                command: command.into(),
                args: args.iter().map(|a| a.to_string()).collect(),
            })),
            pool: "cloud".into(),
            ..Default::default()
        };
        let (ids, durable) = burst.controller.lock().submit(vec![spec], burst_proto::now_ms()).unwrap();
        (ids[0].job_id.clone(), durable)
    };
    let (long, d) = submit("/bin/sleep", &["30"]);
    d.await.unwrap();
    let (short, d) = submit("/bin/true", &[]);
    d.await.unwrap();
    eventually(DEADLINE, "the pool scaled up to 2", || async { (replicas().await == Some(2)).then_some(()) }).await;

    // 2. The pods come up (here: workers under their names). Worker 1 comes first and takes the long job, so a
    // shrink to one worker would remove a worker with a job: it is cordoned and waited for instead.
    let out = tempfile::tempdir().unwrap();
    let w1 = pool_worker(&mounts, port, "demo-worker-cloud-1", "cloud", out.path()).await;
    let held_by = |id: &str| burst.controller.lock().job(id).unwrap().1.worker_id;
    eventually(DEADLINE, "the long job on worker 1", || async {
        (held_by(&long) == "demo-worker-cloud-1").then_some(())
    })
    .await;
    let w0 = pool_worker(&mounts, port, "demo-worker-cloud-0", "cloud", out.path()).await;
    eventually(DEADLINE, "the short job done", || async {
        let state = burst.controller.lock().job(&short).unwrap().1.state();
        (state == burst_proto::v1::JobState::Succeeded).then_some(())
    })
    .await;
    let cordoned = |id: &str| {
        burst.controller.lock().workers().iter().any(|w| w.cordoned && w.info.as_ref().unwrap().worker_id == id)
    };
    eventually(DEADLINE, "worker 1 cordoned", || async { cordoned("demo-worker-cloud-1").then_some(()) }).await;
    tokio::time::sleep(Duration::from_secs(4)).await; // the delay (1 s) and a reconcile (3 s) more, to be sure
    assert_eq!(replicas().await, Some(2), "never below a worker that still holds a job");
    assert!(!cordoned("demo-worker-cloud-0"), "worker 0 stays: the running job still needs one worker");

    // 3. The long job ends: worker 1 holds nothing, and the pool goes down to zero.
    let d = burst
        .controller
        .lock()
        .cancel(std::slice::from_ref(&long), &Default::default(), burst_proto::now_ms())
        .unwrap()
        .2;
    d.await.unwrap();
    eventually(DEADLINE, "the pool back to zero", || async { (replicas().await == Some(0)).then_some(()) }).await;
    let events = Api::<Event>::namespaced(admin.clone(), ns).list(&ListParams::default()).await.unwrap().items;
    let reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
    assert!(reasons.contains(&"ScaledUp") && reasons.contains(&"ScaledDown"), "{reasons:?}");
    let notes: Vec<&str> =
        events.iter().filter_map(|e| e.message.as_deref()).filter(|n| n.starts_with("pool cloud")).collect();
    println!("scaling events: {notes:?}");
    drop((w0, w1));
    operator.abort();
}
