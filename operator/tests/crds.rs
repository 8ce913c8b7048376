//! The checked-in CRDs are what the code generates, and their schemas are structural (what a real API server
//! accepts).

use std::path::PathBuf;

use serde_json::Value;

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

/// Renders each CRD; if `crds/` differs, rewrites it and fails, so a local `cargo test` fixes drift and CI
/// catches it.
#[test]
fn crds_are_fresh() {
    let mut stale = Vec::new();
    for (file, crd) in burst_operator::crd::all() {
        let want = burst_operator::crd::to_yaml(&crd).unwrap();
        let path = crds_dir().join(file);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            std::fs::write(&path, &want).unwrap();
            stale.push(file);
        }
    }
    assert!(stale.is_empty(), "crds/ was stale and has been rewritten ({stale:?}): commit the new files");
}

/// Where a schema node is not structural, with the path to it.
fn check(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    if obj.contains_key("$ref") {
        problems.push(format!("{path}: $ref"));
    }
    let flag = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);
    let typed =
        obj.contains_key("type") || flag("x-kubernetes-int-or-string") || flag("x-kubernetes-preserve-unknown-fields");
    if !typed {
        problems.push(format!("{path}: no type"));
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if obj.contains_key(combinator) && !flag("x-kubernetes-int-or-string") && !obj.contains_key("type") {
            problems.push(format!("{path}: {combinator} without a type"));
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            check(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = obj.get("items") {
        check(items, &format!("{path}[]"), problems);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        check(extra, &format!("{path}{{}}"), problems);
    }
}

#[test]
fn crd_schemas_are_structural() {
    for (file, crd) in burst_operator::crd::all() {
        let crd = serde_json::to_value(&crd).unwrap();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            let schema = &version["schema"]["openAPIV3Schema"];
            let mut problems = Vec::new();
            check(schema, "", &mut problems);
            assert!(problems.is_empty(), "{file}: {problems:#?}");
            assert_eq!(version["subresources"]["status"], serde_json::json!({}), "{file}: status subresource");
        }
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["group"], "burst.dev");
    }
}

#[test]
fn the_structural_check_catches_what_an_api_server_refuses() {
    let mut problems = Vec::new();
    let bad = serde_json::json!({"type": "object", "properties": {
        "a": {"description": "untyped"},
        "b": {"$ref": "#/definitions/X", "type": "object"},
        "c": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "d": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": true},
        "e": {"type": "array", "items": {"description": "untyped item"}},
    }});
    check(&bad, "", &mut problems);
    assert_eq!(problems, [".a: no type", ".b: $ref", ".c: no type", ".c: anyOf without a type", ".e[]: no type"]);
}

#[test]
fn the_example_manifests_are_valid_resources() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let cluster: burst_operator::crd::BurstCluster =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("burstcluster.yaml")).unwrap()).unwrap();
    assert_eq!(cluster.spec.workers.replicas, Some(3));
    assert!(cluster.spec.controller.persistence.enabled);
    let job: burst_operator::crd::BurstJob =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("burstjob.yaml")).unwrap()).unwrap();
    assert_eq!(job.spec.cluster_ref, "demo");
    assert_eq!(job.spec.process.as_ref().map(|p| p.command.as_str()), Some("/bin/sh"));
}
