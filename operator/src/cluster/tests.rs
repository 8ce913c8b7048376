use super::*;
use crate::crd::{BurstClusterSpec, WorkersSpec};

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
    for meta in [&d.config_map.metadata, &sts.metadata, &d.controller_service.metadata, &d.workers.metadata] {
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
    let spec = &d.workers.spec;
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
    assert_eq!(pod_spec(&d.workers.spec.template).termination_grace_period_seconds, Some(600));
    assert!(config_file(&bc, "demo", "jobs").contains("drain_grace_ms = 595000"));
    bc.spec.workers.termination_grace_period_seconds = Some(5);
    assert!(desired(&bc).unwrap_err().0.contains("terminationGracePeriodSeconds is 5"));
}

#[test]
fn every_pod_runs_restricted() {
    let d = desired(&example()).unwrap();
    let ControllerWorkload::StatefulSet(sts) = &d.controller else { unreachable!() };
    for template in [&sts.spec.template, &d.workers.spec.template] {
        let pod = pod_spec(template);
        assert_eq!(pod.automount_service_account_token, Some(false));
        let sc = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
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
    assert_eq!(secrets(&d.workers.spec.template), vec![pair("demo-worker-tls", "/tls")]);
    let env = pod_spec(&d.workers.spec.template).containers[0].env.clone().unwrap();
    let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
    assert_eq!(value("BURST_TLS_CERT").as_deref(), Some("/tls/$(BURST_WORKER_ID).pem"));
    assert_eq!(value("BURST_TLS_CA").as_deref(), Some("/tls/ca.pem"));
    let id = env.iter().position(|e| e.name == "BURST_WORKER_ID").unwrap();
    let cert = env.iter().position(|e| e.name == "BURST_TLS_CERT").unwrap();
    assert!(id < cert, "$(BURST_WORKER_ID) expands only if defined first");
    bc.spec.tls.enabled = Some(false);
    bc.spec.tokens_secret = None;
    let d = desired(&bc).unwrap();
    assert!(secrets(&d.workers.spec.template).is_empty());
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
