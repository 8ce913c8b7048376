use super::*;
use crate::crd::{BurstClusterSpec, OutputVolumeSpec, WorkersSpec};

fn example() -> BurstCluster {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/burstcluster.yaml"));
    let mut bc: BurstCluster = serde_yaml::from_str(&text.unwrap()).unwrap();
    bc.metadata.namespace = Some("jobs".into());
    bc.metadata.uid = Some("uid-1".into());
    bc
}

fn pod_spec(t: &PodTemplateSpec) -> &PodSpec {
    t.spec.as_ref().unwrap()
}

#[test]
fn a_persistent_cluster_gets_a_controller_statefulset_with_a_claim_and_everything_is_owned() {
    let d = desired(&example()).unwrap();
    let ControllerWorkload::StatefulSet(sts) = &d.controller else { panic!("persistence needs a StatefulSet") };
    assert_eq!(sts.metadata.name.as_deref(), Some("demo-controller"));
    let spec = &sts.spec;
    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    let size = &claim.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"];
    assert_eq!(size.0, "1Gi");
    let mounts = pod_spec(&spec.template).containers[0].volume_mounts.as_ref().unwrap();
    assert!(mounts.iter().any(|m| m.name == "data" && m.mount_path == "/data"));
    for meta in [&d.config_map.metadata, &sts.metadata, &d.controller_service.metadata, &d.workers[0].metadata] {
        let owner = &meta.owner_references.as_ref().expect("owned")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("BurstCluster", "demo", "uid-1"));
        assert_eq!(meta.namespace.as_deref(), Some("jobs"));
        assert_eq!(meta.labels.as_ref().unwrap()[names::CLUSTER_LABEL], "demo");
    }
}

#[test]
fn without_persistence_the_controller_is_a_deployment_on_an_empty_dir() {
    let mut bc = example();
    bc.spec.controller.persistence.enabled = false;
    let d = desired(&bc).unwrap();
    let ControllerWorkload::Deployment(dep) = &d.controller else { panic!("no persistence: a Deployment") };
    let volumes = pod_spec(&dep.spec.template).volumes.as_ref().unwrap();
    assert!(volumes.iter().any(|v| v.name == "data" && v.empty_dir.is_some()));
}

#[test]
fn workers_take_their_id_and_address_from_the_downward_api_and_their_count_from_the_spec() {
    let d = desired(&example()).unwrap();
    let spec = &d.workers[0].spec;
    assert_eq!(spec.replicas, Some(3));
    let c = &pod_spec(&spec.template).containers[0];
    assert_eq!(c.args.as_deref(), Some(&["worker".to_string()][..]));
    let env = c.env.as_ref().unwrap();
    let by_name = |n: &str| env.iter().find(|e| e.name == n).unwrap();
    let field = |n: &str| by_name(n).value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path.clone();
    assert_eq!(field("BURST_WORKER_ID"), "metadata.name");
    assert_eq!(field("POD_IP"), "status.podIP");
    assert_eq!(by_name("BURST_WORKER_ADVERTISE").value.as_deref(), Some("$(POD_IP):7000"));
    assert_eq!(pod_spec(&spec.template).termination_grace_period_seconds, Some(30), "covers the 25 s drain");
}

#[test]
fn a_longer_grace_period_gives_running_jobs_longer_to_finish_on_scale_down() {
    let mut bc = example();
    bc.spec.workers.termination_grace_period_seconds = Some(600);
    let d = desired(&bc).unwrap();
    assert_eq!(pod_spec(&d.workers[0].spec.template).termination_grace_period_seconds, Some(600));
    assert!(config_file(&bc, "demo", "jobs").contains("drain_grace_ms = 595000"));
    bc.spec.workers.termination_grace_period_seconds = Some(5);
    assert!(desired(&bc).unwrap_err().0.contains("terminationGracePeriodSeconds is 5"));
}

#[test]
fn every_pod_runs_restricted() {
    let d = desired(&example()).unwrap();
    let ControllerWorkload::StatefulSet(sts) = &d.controller else { unreachable!() };
    for template in [&sts.spec.template, &d.workers[0].spec.template] {
        let pod = pod_spec(template);
        assert_eq!(pod.automount_service_account_token, Some(false));
        let sc = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(sc.run_as_user, None, "the user is the pod's to set");
        let pod_sc = pod.security_context.as_ref().unwrap();
        assert_eq!(
            (pod_sc.run_as_user, pod_sc.fs_group, pod_sc.run_as_non_root),
            (Some(65534), Some(65534), Some(true))
        );
    }
}

#[test]
fn a_pod_security_context_in_the_spec_replaces_the_fixed_ids_and_the_containers_stay_restricted() {
    let mut bc = example();
    bc.spec.pod_security_context = Some(serde_json::from_value(serde_json::json!({})).unwrap());
    let d = desired(&bc).unwrap();
    let ControllerWorkload::StatefulSet(sts) = &d.controller else { unreachable!() };
    for template in [&sts.spec.template, &d.workers[0].spec.template] {
        let pod = pod_spec(template);
        let pod_sc = pod.security_context.as_ref().unwrap();
        assert_eq!((pod_sc.run_as_user, pod_sc.fs_group), (None, None), "the platform picks them (OpenShift)");
        let sc = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!((sc.run_as_user, sc.read_only_root_filesystem), (None, Some(true)));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
    }
}

#[test]
fn the_config_file_is_one_burst_itself_reads_and_carries_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burst.toml");
    std::fs::write(&path, config_file(&example(), "demo", "jobs")).unwrap();
    // The real section types, which refuse unknown keys.
    let c: burst_controller::config::Section = burst_proto::config::load_section(&path, "controller").unwrap();
    assert_eq!(c.router, Some(burst_controller::router::RouterKind::Power2));
    assert_eq!(c.lease_timeout_ms, Some(10_000));
    assert_eq!(c.data_dir.as_deref(), Some(std::path::Path::new("/data")));
    assert_eq!(c.tls_cert.as_deref(), Some(std::path::Path::new("/tls/controller.pem")));
    assert_eq!((c.insecure, c.tokens_file.as_deref()), (None, None));
    let w: burst_worker::config::Section = burst_proto::config::load_section(&path, "worker").unwrap();
    assert_eq!(w.controller.as_deref(), Some("https://demo-controller.jobs.svc:50051"));
    assert_eq!((w.slots, w.queue_capacity, w.steal), (Some(2), Some(4), Some(true)));
    assert_eq!(w.drain_grace_ms, Some(25_000));
    assert_eq!(w.insecure, None, "the worker's certificate comes from its environment");
    // Both serve HTTP on the port their pods name "http", on every interface (the kubelet probes the pod's IP).
    for listen in [c.http_listen.clone(), w.http_listen.clone()] {
        let addr = burst_proto::http::parse_listen(listen).unwrap().expect("http_listen is set");
        assert_eq!((addr.ip().is_unspecified(), i32::from(addr.port())), (true, names::HTTP_PORT));
    }
    // Plaintext only when asked for; tokens from their Secret.
    let mut bc = example();
    bc.spec.tls.enabled = Some(false);
    std::fs::write(&path, config_file(&bc, "demo", "jobs")).unwrap();
    let c: burst_controller::config::Section = burst_proto::config::load_section(&path, "controller").unwrap();
    let w: burst_worker::config::Section = burst_proto::config::load_section(&path, "worker").unwrap();
    assert_eq!((c.insecure, c.tls_cert, w.insecure), (Some(true), None, Some(true)));
    assert_eq!(w.controller.as_deref(), Some("http://demo-controller.jobs.svc:50051"));
    let mut bc = example();
    bc.spec.tokens_secret = Some("demo-tokens".into());
    std::fs::write(&path, config_file(&bc, "demo", "jobs")).unwrap();
    let c: burst_controller::config::Section = burst_proto::config::load_section(&path, "controller").unwrap();
    assert_eq!(c.tokens_file.as_deref(), Some(std::path::Path::new("/tokens/tokens.toml")));
}

#[test]
fn pods_mount_only_their_own_tls_secret_and_workers_find_their_certificate_by_pod_name() {
    let mut bc = example();
    bc.spec.tokens_secret = Some("demo-tokens".into());
    let d = desired(&bc).unwrap();
    let ControllerWorkload::StatefulSet(sts) = &d.controller else { unreachable!() };
    let secrets = |template| -> Vec<(String, String)> {
        let pod = pod_spec(template);
        let mounts = pod.containers[0].volume_mounts.clone().unwrap_or_default();
        let mut out = Vec::new();
        for v in pod.volumes.iter().flatten() {
            if let Some(secret) = &v.secret {
                assert_eq!(secret.default_mode, Some(0o440), "{}", v.name);
                let at = mounts.iter().find(|m| m.name == v.name).expect("mounted").mount_path.clone();
                out.push((secret.secret_name.clone().unwrap(), at));
            }
        }
        out
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(secrets(&sts.spec.template), vec![pair("demo-controller-tls", "/tls"), pair("demo-tokens", "/tokens")]);
    assert_eq!(secrets(&d.workers[0].spec.template), vec![pair("demo-worker-tls", "/tls")]);
    let env = pod_spec(&d.workers[0].spec.template).containers[0].env.clone().unwrap();
    let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
    assert_eq!(value("BURST_TLS_CERT").as_deref(), Some("/tls/$(BURST_WORKER_ID).pem"));
    assert_eq!(value("BURST_TLS_CA").as_deref(), Some("/tls/ca.pem"));
    let id = env.iter().position(|e| e.name == "BURST_WORKER_ID").unwrap();
    let cert = env.iter().position(|e| e.name == "BURST_TLS_CERT").unwrap();
    assert!(id < cert, "$(BURST_WORKER_ID) expands only if defined first");
    bc.spec.tls.enabled = Some(false);
    bc.spec.tokens_secret = None;
    let d = desired(&bc).unwrap();
    assert!(secrets(&d.workers[0].spec.template).is_empty());
}

#[test]
fn bad_specs_are_refused_with_a_readable_reason() {
    let with = |f: &dyn Fn(&mut BurstClusterSpec)| {
        let mut bc = example();
        f(&mut bc.spec);
        desired(&bc).unwrap_err().0
    };
    assert!(with(&|s| s.image = " ".into()).contains("spec.image"));
    assert!(
        with(&|s| s.workers = WorkersSpec { replicas: Some(-1), ..WorkersSpec::default() }).contains("replicas is -1")
    );
    assert!(with(&|s| s.workers.slots = Some(0)).contains("slots is 0"));
    assert!(with(&|s| s.controller.router = Some("fastest".into())).contains("roundrobin, power2, biased"));
    let output = |size: &str| Some(OutputVolumeSpec { size: size.into(), storage_class_name: None });
    assert!(with(&|s| s.workers.output_volume = output("lots")).contains("spec.workers.outputVolume.size \"lots\""));
    assert!(with(&|s| s.workers.output_volume = output("0")).contains("spec.workers.outputVolume.size"));
    assert!(
        with(&|s| s.controller.persistence.size = Some("1 GB".into())).contains("spec.controller.persistence.size")
    );
    let own_label = with(&|s| s.workers.labels = [("burst.dev/role".to_string(), "x".to_string())].into());
    assert!(own_label.contains("spec.workers.labels sets \"burst.dev/role\""), "{own_label}");
    let own_label = with(&|s| s.controller.labels = [("app.kubernetes.io/name".to_string(), "x".to_string())].into());
    assert!(own_label.contains("spec.controller.labels"), "{own_label}");
}

#[test]
fn the_controller_and_the_workers_are_placed_as_the_spec_says() {
    use k8s_openapi::api::core::v1::{LocalObjectReference, Toleration};
    let mut bc = example();
    bc.spec.image_pull_secrets = vec![LocalObjectReference { name: "regcred".into() }];
    let c = &mut bc.spec.controller;
    c.node_selector = [("disk".to_string(), "ssd".to_string())].into();
    c.tolerations =
        vec![Toleration { key: Some("dedicated".into()), operator: Some("Exists".into()), ..Toleration::default() }];
    c.labels = [("team".to_string(), "data".to_string())].into();
    c.priority_class_name = Some("high".into());
    bc.spec.workers.priority_class_name = Some("batch".into());
    let d = desired(&bc).unwrap();
    let ControllerWorkload::StatefulSet(sts) = &d.controller else { unreachable!() };
    let controller = pod_spec(&sts.spec.template);
    assert_eq!(controller.node_selector.as_ref().unwrap()["disk"], "ssd");
    assert_eq!(controller.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("dedicated"));
    assert_eq!(controller.priority_class_name.as_deref(), Some("high"));
    let labels = sts.spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!((labels["team"].as_str(), labels[names::ROLE_LABEL].as_str()), ("data", "controller"));
    let worker = pod_spec(&d.workers[0].spec.template);
    assert_eq!(worker.priority_class_name.as_deref(), Some("batch"));
    assert!(worker.node_selector.is_none(), "the controller's placement is its own");
    for pod in [controller, worker] {
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
    }
}

/// The container's ports as (name, number).
fn ports(template: &PodTemplateSpec) -> Vec<(String, i32)> {
    let c = &pod_spec(template).containers[0];
    c.ports.iter().flatten().map(|p| (p.name.clone().unwrap_or_default(), p.container_port)).collect()
}

/// A probe's HTTP path and port, and how long it takes to fail (period x failures, in seconds).
fn http_probe_of(probe: Option<&Probe>) -> (String, IntOrString, i32) {
    let probe = probe.expect("a probe");
    let get = probe.http_get.as_ref().expect("an HTTP probe");
    let gives_up = probe.period_seconds.unwrap_or(10) * probe.failure_threshold.unwrap_or(3);
    (get.path.clone().unwrap_or_default(), get.port.clone(), gives_up)
}

#[test]
fn controller_and_workers_serve_http_and_are_probed_on_it() {
    let d = desired(&example()).unwrap();
    let ControllerWorkload::StatefulSet(sts) = &d.controller else { unreachable!() };
    let http = IntOrString::String("http".into());
    for (template, grpc) in [(&sts.spec.template, 50051), (&d.workers[0].spec.template, 7000)] {
        let pair = |n: &str, p| (n.to_string(), p);
        assert_eq!(ports(template), [pair("grpc", grpc), pair("http", 9090)]);
        let c = &pod_spec(template).containers[0];
        let (path, port, _) = http_probe_of(c.readiness_probe.as_ref());
        assert_eq!((path.as_str(), &port), ("/readyz", &http));
        let (path, port, gives_up) = http_probe_of(c.liveness_probe.as_ref());
        assert_eq!((path.as_str(), &port), ("/healthz", &http));
        // Busy is not dead: a minute of silence, not a slow answer or two, restarts the container.
        assert!(gives_up >= 60, "liveness gives up after {gives_up} s");
        assert!(c.liveness_probe.as_ref().unwrap().timeout_seconds >= Some(5));
        let (path, port, gives_up) = http_probe_of(c.startup_probe.as_ref());
        assert_eq!((path.as_str(), &port), ("/healthz", &http));
        assert!(gives_up >= 300, "a controller replaying its store has 5 minutes, not {gives_up} s");
    }
    // With TLS, the controller's HTTP port (it takes submissions) speaks HTTPS; the workers' stays plain HTTP.
    let scheme = |t: &k8s_openapi::api::core::v1::PodTemplateSpec| {
        let probe = pod_spec(t).containers[0].readiness_probe.clone().unwrap();
        probe.http_get.unwrap().scheme
    };
    assert!(example().spec.tls.enabled());
    assert_eq!(scheme(&sts.spec.template).as_deref(), Some("HTTPS"));
    assert_eq!(scheme(&d.workers[0].spec.template), None);
    let mut plain = example();
    plain.spec.tls.enabled = Some(false);
    let d = desired(&plain).unwrap();
    let ControllerWorkload::StatefulSet(sts) = &d.controller else { unreachable!() };
    assert_eq!(scheme(&sts.spec.template), None);
}

#[test]
fn the_controller_service_carries_http_only_while_it_stays_inside_the_cluster() {
    let service_ports = |service_type: Option<&str>| {
        let mut bc = example();
        bc.spec.service_type = service_type.map(Into::into);
        let service = desired(&bc).unwrap().controller_service;
        let ports = service.spec.unwrap().ports.unwrap();
        ports.into_iter().map(|p| (p.name.unwrap(), p.port, p.target_port.unwrap())).collect::<Vec<_>>()
    };
    let grpc = ("grpc".to_string(), 50051, IntOrString::Int(50051));
    let http = ("http".to_string(), 9090, IntOrString::Int(9090));
    assert_eq!(service_ports(None), [grpc.clone(), http.clone()]);
    assert_eq!(service_ports(Some("ClusterIP")), [grpc.clone(), http]);
    // Published beyond the cluster: the HTTP port (no TLS, metrics for anyone) stays off it.
    assert_eq!(service_ports(Some("LoadBalancer")), std::slice::from_ref(&grpc));
    assert_eq!(service_ports(Some("NodePort")), [grpc]);
}

/// Where the worker pod's `/out` comes from: ("emptyDir" | "claim", the claim template's size and class).
fn output_of(workers: &k8s_openapi::api::apps::v1::StatefulSet) -> (&'static str, Option<(String, Option<String>)>) {
    let pod = pod_spec(&workers.spec.template);
    let mounts: Vec<_> = pod.containers[0].volume_mounts.iter().flatten().filter(|m| m.mount_path == "/out").collect();
    assert_eq!(mounts.len(), 1, "/out is mounted once");
    let name = &mounts[0].name;
    let claims = workers.spec.volume_claim_templates.clone().unwrap_or_default();
    let claim = claims.iter().find(|c| c.metadata.name.as_ref() == Some(name));
    let volume = pod.volumes.iter().flatten().find(|v| &v.name == name);
    match (volume, claim) {
        (Some(v), None) if v.empty_dir.is_some() => ("emptyDir", None),
        (None, Some(c)) => {
            let spec = c.spec.clone().unwrap();
            let size = spec.resources.unwrap().requests.unwrap()["storage"].0.clone();
            assert_eq!(spec.access_modes.as_deref(), Some(&["ReadWriteOnce".to_string()][..]));
            ("claim", Some((size, spec.storage_class_name)))
        }
        other => panic!("/out is mounted from {name:?}, which is {other:?}"),
    }
}

#[test]
fn workers_keep_output_on_an_empty_dir_unless_an_output_volume_claims_one_per_pod() {
    let mut bc = example();
    let d = desired(&bc).unwrap();
    assert_eq!(output_of(&d.workers[0]), ("emptyDir", None));
    assert_eq!(d.workers[0].spec.volume_claim_templates, None);
    bc.spec.workers.output_volume = Some(OutputVolumeSpec { size: "10Gi".into(), storage_class_name: None });
    let d = desired(&bc).unwrap();
    assert_eq!(output_of(&d.workers[0]), ("claim", Some(("10Gi".to_string(), None))));
    assert_eq!(d.workers[0].spec.volume_claim_templates.as_ref().map(Vec::len), Some(1));
    bc.spec.workers.output_volume =
        Some(OutputVolumeSpec { size: "50Gi".into(), storage_class_name: Some("fast".into()) });
    let d = desired(&bc).unwrap();
    assert_eq!(output_of(&d.workers[0]), ("claim", Some(("50Gi".to_string(), Some("fast".to_string())))));
    // The YAML a user writes.
    let spec: WorkersSpec = serde_yaml::from_str("outputVolume: {size: 10Gi, storageClassName: fast}").unwrap();
    assert_eq!(spec.output_volume.unwrap().storage_class_name.as_deref(), Some("fast"));
}

#[test]
fn network_policies_can_be_turned_off_and_clients_named() {
    let mut bc = example();
    let peer = k8s_openapi::api::networking::v1::NetworkPolicyPeer {
        ip_block: Some(k8s_openapi::api::networking::v1::IPBlock { cidr: "10.0.0.0/8".into(), except: None }),
        ..Default::default()
    };
    bc.spec.network_policy.allowed_clients = vec![peer.clone()];
    let d = desired(&bc).unwrap();
    let from = d.network_policies[0].spec.as_ref().unwrap().ingress.as_ref().unwrap()[0].from.clone().unwrap();
    assert_eq!(from.last(), Some(&peer), "the named clients replace the default label");
    assert_eq!(from.len(), 3);
    bc.spec.network_policy.enabled = Some(false);
    assert!(desired(&bc).unwrap().network_policies.is_empty());
}

#[test]
fn the_controller_reaches_the_workers_grpc_port_and_any_peer_the_http_port_where_it_asks_credentials() {
    use k8s_openapi::api::networking::v1::NetworkPolicyIngressRule;
    let d = desired(&example()).unwrap();
    // Each rule as (port, the roles of the cluster it admits; None: any peer).
    let rules = |d: &Desired, i: usize| -> Vec<(i32, Option<Vec<String>>)> {
        let ingress = d.network_policies[i].spec.clone().unwrap().ingress.unwrap();
        let port = |r: &NetworkPolicyIngressRule| match r.ports.as_ref().unwrap()[0].port {
            Some(IntOrString::Int(p)) => p,
            ref other => panic!("port {other:?}"),
        };
        let role = |p: &k8s_openapi::api::networking::v1::NetworkPolicyPeer| {
            let labels = p.pod_selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap_or_default();
            match (labels.get(names::CLUSTER_LABEL), labels.get(names::ROLE_LABEL)) {
                (Some(cluster), Some(role)) if cluster == "demo" => role.clone(),
                _ if p.namespace_selector.is_some() => "operator".into(),
                _ => "client".into(),
            }
        };
        ingress.iter().map(|r| (port(r), r.from.as_ref().map(|from| from.iter().map(role).collect()))).collect()
    };
    let roles = |r: &[&str]| Some(r.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(d.network_policies[0].metadata.name.as_deref(), Some("demo-controller"));
    assert_eq!(rules(&d, 0), [(50051, roles(&["worker", "operator", "client"])), (9090, None)]);
    assert_eq!(d.network_policies[1].metadata.name.as_deref(), Some("demo-worker"));
    assert_eq!(rules(&d, 1), [(7000, roles(&["worker", "controller"])), (9090, None)]);
    // Plaintext: the controller's dashboard asks no credentials, so its HTTP port is no more open than gRPC.
    let mut bc = example();
    bc.spec.tls.enabled = Some(false);
    let d = desired(&bc).unwrap();
    let peers = roles(&["worker", "operator", "client"]);
    assert_eq!(rules(&d, 0), [(50051, peers.clone()), (9090, peers)]);
    assert_eq!(rules(&d, 1), [(7000, roles(&["worker", "controller"])), (9090, None)]);
}

fn with_pools(bc: &mut BurstCluster) {
    let yaml = r#"
- name: onprem
  cost: 0
  replicas: 2
  slots: 8
  nodeSelector: {rack: a}
  labels: {site: basement}
- name: cloud
  cost: 3
  replicas: 1
  tolerations: [{key: spot, operator: Exists}]
"#;
    bc.spec.pools = serde_yaml::from_str(yaml).unwrap();
    bc.spec.controller.policy = Some("wait".into());
    bc.spec.controller.wait_factor = Some(30.0);
}

#[test]
fn each_pool_is_a_statefulset_of_its_own_workers_and_the_controller_knows_the_pools() {
    let mut bc = example();
    with_pools(&mut bc);
    bc.spec.workers.replicas = None;
    bc.spec.workers.node_selector = [("zone".to_string(), "x".to_string())].into();
    let d = desired(&bc).unwrap();
    let sets: Vec<(&str, Option<i32>)> =
        d.workers.iter().map(|s| (s.metadata.name.as_deref().unwrap(), s.spec.replicas)).collect();
    assert_eq!(sets, [("demo-worker", Some(0)), ("demo-worker-onprem", Some(2)), ("demo-worker-cloud", Some(1))]);
    let onprem = &d.workers[1];
    let selector = onprem.spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(selector[names::POOL_LABEL], "onprem");
    let pod = pod_spec(&onprem.spec.template);
    let env = pod.containers[0].env.as_ref().unwrap();
    let value = |n: &str| env.iter().find(|e| e.name == n).and_then(|e| e.value.clone());
    assert_eq!((value("BURST_POOL"), value("BURST_SLOTS")), (Some("onprem".into()), Some("8".into())));
    assert_eq!(pod.node_selector.as_ref().unwrap()["rack"], "a", "the pool's own placement");
    let cloud = pod_spec(&d.workers[2].spec.template);
    assert_eq!(cloud.node_selector.as_ref().unwrap()["zone"], "x", "what a pool leaves unset comes from workers");
    assert_eq!(cloud.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("spot"));
    let labels = onprem.spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!((labels["site"].as_str(), labels[names::ROLE_LABEL].as_str()), ("basement", "worker"));

    // The controller reads the generated file as its own config.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burst.toml");
    std::fs::write(&path, config_file(&bc, "demo", "jobs")).unwrap();
    let section: burst_controller::config::Section = burst_proto::config::load_section(&path, "controller").unwrap();
    assert_eq!(section.policy, Some(burst_controller::policy::PolicyKind::Wait));
    assert_eq!(section.wait_factor, Some(30.0));
    let pools = section.pools.unwrap();
    let pools: Vec<(&str, f64, Option<&String>)> =
        pools.iter().map(|p| (p.name.as_str(), p.cost, p.labels.get("site"))).collect();
    let basement = "basement".to_string();
    assert_eq!(pools, [("default", 1.0, None), ("onprem", 0.0, Some(&basement)), ("cloud", 3.0, None)]);
    assert_eq!(status::desired_workers(&bc), 3);
    assert_eq!(worker_pods(&bc, "demo"), ["demo-worker-onprem-0", "demo-worker-onprem-1", "demo-worker-cloud-0"]);
}

#[test]
fn bad_pools_and_policies_are_named() {
    let with = |f: &dyn Fn(&mut BurstCluster)| {
        let mut bc = example();
        with_pools(&mut bc);
        f(&mut bc);
        desired(&bc).unwrap_err().0
    };
    assert!(with(&|bc| bc.spec.pools[0].name = "Bad".into()).contains("spec.pools[0].name: pool name \"Bad\""));
    assert!(with(&|bc| bc.spec.pools[1].name = "default".into()).contains("is the pool of spec.workers"));
    assert!(with(&|bc| bc.spec.pools[1].name = "onprem".into()).contains("listed twice"));
    assert!(with(&|bc| bc.spec.pools[1].cost = Some(-1.0)).contains("spec.pools[1].cost"));
    assert!(with(&|bc| bc.spec.pools[0].slots = Some(0)).contains("spec.pools[0].slots is 0"));
    assert!(with(&|bc| bc.spec.controller.policy = Some("fastest".into())).contains("spec.controller.policy"));
    assert!(with(&|bc| bc.spec.controller.wait_by = Some("mood".into())).contains("spec.controller.waitBy"));
    let long = "p".repeat(30);
    let too_long = |bc: &mut BurstCluster| {
        bc.metadata.name = Some("c".repeat(20));
        bc.spec.pools[0].name = long.clone();
    };
    assert!(with(&too_long).contains("longer than 52"));
}

#[test]
fn an_elastic_pool_runs_what_the_operator_set_within_its_bounds_with_certificates_up_to_its_maximum() {
    let mut bc = example();
    bc.spec.pools = serde_yaml::from_str("[{name: cloud, minReplicas: 1, maxReplicas: 3}]").unwrap();
    let replicas = |bc: &BurstCluster| desired(bc).unwrap().workers[1].spec.replicas;
    assert_eq!(replicas(&bc), Some(1), "the minimum before the operator set anything");
    let set = |n| crate::crd::ElasticPoolStatus { replicas: n, surplus_since: None };
    bc.status =
        Some(crate::crd::BurstClusterStatus { elastic: [("cloud".into(), set(2))].into(), ..Default::default() });
    assert_eq!(replicas(&bc), Some(2));
    bc.status.as_mut().unwrap().elastic.insert("cloud".into(), set(9));
    assert_eq!(replicas(&bc), Some(3), "never above the maximum, whatever the status says");
    let possible = possible_worker_pods(&bc, "demo");
    assert!(possible.ends_with(&[
        "demo-worker-cloud-0".into(),
        "demo-worker-cloud-1".into(),
        "demo-worker-cloud-2".into()
    ]));
    assert!(config_file(&bc, "demo", "jobs").contains("name = \"cloud\"\ncost = 1.0\nelastic = true"));
    for (yaml, want) in [
        ("[{name: cloud, minReplicas: 2, maxReplicas: 1}]", "0 <= min <= max"),
        ("[{name: cloud, minReplicas: 2}]", "minReplicas needs maxReplicas"),
        ("[{name: cloud, maxReplicas: 2, scaleDownDelaySeconds: -1}]", "scaleDownDelaySeconds"),
    ] {
        bc.spec.pools = serde_yaml::from_str(yaml).unwrap();
        assert!(desired(&bc).unwrap_err().0.contains(want), "{yaml}");
    }
}
