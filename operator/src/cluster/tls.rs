//! A BurstCluster's certificates, as pure functions: which Secrets hold them, what the operator-made ones
//! should contain now, and the operator's own client certificate.
//!
//! Three Secrets, so that each pod sees only what it needs:
//!
//! ```text
//! <name>-tls-ca          ca-cert.pem, ca-key.pem (the CA; mounted nowhere), ca.pem, operator.pem, operator-key.pem
//! <name>-controller-tls  ca.pem, controller.pem, controller-key.pem         mounted in the controller at /tls
//! <name>-worker-tls      ca.pem, <pod>.pem, <pod>-key.pem for each worker   mounted in every worker at /tls
//! ```
//! `ca.pem` is the bundle every side trusts: the CA, plus the one it replaced while that one is still valid.
//! With `spec.tls.{controller,worker,operator}Secret` the user supplies the last three (the operator's holds
//! `ca.pem`, `operator.pem`, `operator-key.pem`) and the operator only reads them.
//!
//! # Guarantees
//! - A certificate is renewed when less than a third of its lifetime is left (30 days of 90 by default), so a
//!   renewal is in every pod's files (a Secret volume updates within about a minute) long before the old one
//!   expires; burst programs read their files again without a restart.
//! - A renewed CA re-issues every certificate, and the old CA stays in the bundle until it expires.
//! - Worker certificates name their pod (the worker id), so a worker cannot act for another at the controller.
//!   Workers of one cluster share one Secret, so one worker pod can read the others' keys.

use std::collections::BTreeMap;

use burst_proto::tls::issue::{self, Ca, Issued};
use burst_proto::tls::{CONTROLLER_NAME, Pem, WORKER_NAME};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::{SpecError, meta};
use crate::crd::BurstCluster;
use crate::names;

/// Where every pod finds its TLS files.
pub const MOUNT: &str = "/tls";
/// The CA bundle, in every TLS Secret.
pub const CA_BUNDLE: &str = "ca.pem";
const CA_CERT: &str = "ca-cert.pem";
const CA_KEY: &str = "ca-key.pem";
/// The operator's client certificate (role admin) and key.
pub const OPERATOR_CERT: &str = "operator.pem";
pub const OPERATOR_KEY: &str = "operator-key.pem";
/// Operator-made certificates last this long unless `spec.tls.certificateDays` says otherwise.
const CERTIFICATE_DAYS: i64 = 90;
/// The CA lasts this many times as long as the certificates it signs.
const CA_LIFETIMES: i64 = 20;

/// A Secret's data as read: key -> bytes.
pub type Data = BTreeMap<String, Vec<u8>>;

/// The names of the Secrets a TLS cluster uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secrets {
    pub controller: String,
    pub workers: String,
    /// The Secret with the operator's client certificate.
    pub operator: String,
    /// Whether the operator makes and renews them (else the user does).
    pub operator_made: bool,
}

/// The Secrets `bc` uses, or `None` when TLS is off.
pub fn secrets(bc: &BurstCluster, cluster: &str) -> Option<Secrets> {
    let tls = &bc.spec.tls;
    if !tls.enabled() {
        return None;
    }
    Some(match (&tls.controller_secret, &tls.worker_secret, &tls.operator_secret) {
        (Some(c), Some(w), Some(o)) => {
            Secrets { controller: c.clone(), workers: w.clone(), operator: o.clone(), operator_made: false }
        }
        _ => Secrets {
            controller: names::controller_tls(cluster),
            workers: names::worker_tls(cluster),
            operator: names::tls_ca(cluster),
            operator_made: true,
        },
    })
}

/// The spec's TLS settings make sense: the user's Secrets all named or none, tokens only over TLS.
pub fn validate(bc: &BurstCluster) -> Result<(), SpecError> {
    let tls = &bc.spec.tls;
    let named = [&tls.controller_secret, &tls.worker_secret, &tls.operator_secret];
    let count = named.iter().filter(|n| n.is_some()).count();
    if count != 0 && count != 3 {
        return Err(SpecError(
            "spec.tls: name all of controllerSecret, workerSecret and operatorSecret, or none (the operator makes them)"
                .into(),
        ));
    }
    if bc.spec.tokens_secret.is_some() && !tls.enabled() {
        return Err(SpecError("spec.tokensSecret needs TLS: tokens would cross the network in plaintext".into()));
    }
    if tls.certificate_days == Some(0) {
        return Err(SpecError("spec.tls.certificateDays must be at least 1".into()));
    }
    Ok(())
}

/// The operator's client TLS from the Secret that holds it; the error names what is missing.
pub fn operator_pem(secret: &str, data: &Data) -> Result<Pem, String> {
    let get = |key: &str| data.get(key).cloned().ok_or_else(|| format!("Secret {secret} has no key {key}"));
    Ok(Pem { ca: get(CA_BUNDLE)?, identity: Some((get(OPERATOR_CERT)?, get(OPERATOR_KEY)?)) })
}

/// What the operator-made Secrets should hold at `now` (Unix seconds), given what they hold: every certificate
/// still fresh is kept, anything missing, unreadable or due is issued. Returns the three Secrets (CA,
/// controller, workers) with their data, complete.
pub fn desired(
    bc: &BurstCluster,
    cluster: &str,
    ns: &str,
    owner: Option<OwnerReference>,
    have: [Option<&Data>; 3],
    now: i64,
) -> Result<[Secret; 3], SpecError> {
    let [have_ca, have_controller, have_workers] = have;
    let days = bc.spec.tls.certificate_days.map_or(CERTIFICATE_DAYS, i64::from);
    let fail = |e: String| SpecError(format!("making the cluster's certificates: {e}"));
    let kept_ca = have_ca
        .filter(|d| fresh(d.get(CA_CERT), now))
        .and_then(|d| Ca::from_pem(text(d.get(CA_CERT)?)?, text(d.get(CA_KEY)?)?).ok());
    let renewed = kept_ca.is_none();
    let ca = match kept_ca {
        Some(ca) => ca,
        None => Ca::generate(&format!("burst CA of {ns}/{cluster}"), days * CA_LIFETIMES).map_err(fail)?,
    };
    // The bundle: the CA, and the CA it replaced while that one is valid, so peers not yet given their new
    // certificates are still trusted.
    let mut bundle = ca.issued.cert_pem.clone().into_bytes();
    if renewed
        && let Some(old) = have_ca.and_then(|d| d.get(CA_CERT))
        && issue::validity_window(old).is_some_and(|(_, to)| to > now)
    {
        bundle.extend_from_slice(old);
    }
    let bundle = match have_ca.and_then(|d| d.get(CA_BUNDLE)) {
        // Keep the bundle as it was written while the CA stays (an expired old CA drops out when it renews).
        Some(old) if !renewed => old.clone(),
        _ => bundle,
    };
    // A certificate is kept when the CA stayed and it is fresh; otherwise it is issued again.
    let leaf = |have: Option<&Data>, file: &str, holder: &str, role: &str, sans: Vec<String>| {
        let cert = have.and_then(|d| d.get(&format!("{file}.pem")));
        let key = have.and_then(|d| d.get(&format!("{file}-key.pem")));
        match (cert, key) {
            (Some(cert), Some(key)) if !renewed && fresh(Some(cert), now) => {
                Ok(Issued { cert_pem: lossy(cert), key_pem: lossy(key) })
            }
            _ => ca.issue(holder, role, sans, days).map_err(fail),
        }
    };
    let operator = leaf(have_ca, "operator", "burst-operator", "admin", Vec::new())?;
    let service = names::controller(cluster);
    let hosts = [
        service.clone(),
        format!("{service}.{ns}"),
        format!("{service}.{ns}.svc"),
        format!("{service}.{ns}.svc.cluster.local"),
    ];
    let controller = leaf(
        have_controller,
        "controller",
        CONTROLLER_NAME,
        "controller",
        issue::server_names(CONTROLLER_NAME, &hosts),
    )?;
    let mut workers = Data::from([(CA_BUNDLE.to_string(), bundle.clone())]);
    for i in 0..bc.spec.workers.replicas.unwrap_or(1).max(0) {
        let pod = names::worker_pod(cluster, i);
        let issued = leaf(have_workers, &pod, &pod, "worker", issue::server_names(WORKER_NAME, &[]))?;
        put(&mut workers, &pod, issued);
    }
    let mut ca_data = Data::from([
        (CA_BUNDLE.to_string(), bundle.clone()),
        (CA_CERT.to_string(), ca.issued.cert_pem.clone().into_bytes()),
        (CA_KEY.to_string(), ca.issued.key_pem.clone().into_bytes()),
    ]);
    put(&mut ca_data, "operator", operator);
    let mut controller_data = Data::from([(CA_BUNDLE.to_string(), bundle)]);
    put(&mut controller_data, "controller", controller);
    let secret = |name: String, role: &str, data: Data| Secret {
        metadata: meta(name, ns, names::labels(cluster, role), owner.clone()),
        type_: Some("Opaque".into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Secret::default()
    };
    Ok([
        secret(names::tls_ca(cluster), "tls", ca_data),
        secret(names::controller_tls(cluster), "controller", controller_data),
        secret(names::worker_tls(cluster), "worker", workers),
    ])
}

/// A Secret's data as [`Data`].
pub fn data_of(secret: &Secret) -> Data {
    secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

/// Valid now with more than a third of its lifetime left.
fn fresh(cert: Option<&Vec<u8>>, now: i64) -> bool {
    cert.and_then(|pem| issue::validity_window(pem)).is_some_and(|(from, to)| now < to - (to - from) / 3)
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn put(data: &mut Data, file: &str, issued: Issued) {
    data.insert(format!("{file}.pem"), issued.cert_pem.into_bytes());
    data.insert(format!("{file}-key.pem"), issued.key_pem.into_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(replicas: i32) -> BurstCluster {
        let mut bc = BurstCluster::new("demo", serde_json::from_value(serde_json::json!({"image": "burst"})).unwrap());
        bc.metadata.namespace = Some("ns".into());
        bc.spec.workers.replicas = Some(replicas);
        bc
    }

    fn now() -> i64 {
        burst_proto::now_ms() as i64 / 1000
    }

    fn make(bc: &BurstCluster, have: &[Option<Data>; 3], at: i64) -> [Data; 3] {
        let have = [have[0].as_ref(), have[1].as_ref(), have[2].as_ref()];
        desired(bc, "demo", "ns", None, have, at).unwrap().map(|s| data_of(&s))
    }

    fn identity_of(pem: &[u8]) -> (String, String) {
        let der = x509_parser::pem::parse_x509_pem(pem).unwrap().1.contents;
        burst_proto::tls::identity(&der).unwrap()
    }

    #[test]
    fn a_new_cluster_gets_a_ca_and_a_certificate_per_pod_that_names_it() {
        let [ca, controller, workers] = make(&cluster(2), &[None, None, None], now());
        assert!(ca.contains_key(CA_KEY) && !controller.contains_key(CA_KEY) && !workers.contains_key(CA_KEY));
        assert_eq!(identity_of(&controller["controller.pem"]), ("burst-controller".into(), "controller".into()));
        assert_eq!(identity_of(&workers["demo-worker-1.pem"]), ("demo-worker-1".into(), "worker".into()));
        assert_eq!(identity_of(&ca[OPERATOR_CERT]), ("burst-operator".into(), "admin".into()));
        assert_eq!(workers.len(), 1 + 2 * 2, "the bundle and a certificate and key per worker");
        assert!(operator_pem("demo-tls-ca", &ca).is_ok());
        assert!(operator_pem("x", &workers).unwrap_err().contains("operator.pem"));
    }

    #[test]
    fn fresh_certificates_are_kept_and_scaling_issues_only_the_new_pods() {
        let first = make(&cluster(1), &[None, None, None], now());
        let have = first.clone().map(Some);
        let again = make(&cluster(1), &have, now());
        assert_eq!(again, first, "nothing due: nothing changes");
        let scaled = make(&cluster(3), &have, now());
        assert_eq!(scaled[0], first[0]);
        assert_eq!(scaled[2]["demo-worker-0.pem"], first[2]["demo-worker-0.pem"]);
        assert!(scaled[2].contains_key("demo-worker-2-key.pem"));
        let down = make(&cluster(1), &scaled.clone().map(Some), now());
        assert_eq!(down[2], first[2], "a removed worker's certificate goes with it");
    }

    #[test]
    fn certificates_are_renewed_with_a_third_of_their_life_left_and_the_ca_near_its_end() {
        let bc = cluster(1);
        let start = now();
        let first = make(&bc, &[None, None, None], start);
        let have = first.clone().map(Some);
        // 59 days on, 31 of 90 left: kept. 61 days on: renewed, same CA.
        assert_eq!(make(&bc, &have, start + 59 * 86_400)[1], first[1]);
        let later = make(&bc, &have, start + 61 * 86_400);
        assert_ne!(later[1]["controller.pem"], first[1]["controller.pem"]);
        assert_ne!(later[2]["demo-worker-0.pem"], first[2]["demo-worker-0.pem"]);
        assert_eq!(later[0][CA_CERT], first[0][CA_CERT], "the CA lasts 20 lifetimes");
        // Near the CA's end (1,800 days of its ~1,800): a new CA, the old one still in the bundle while valid.
        let (_, ca_end) = issue::validity_window(&first[0][CA_CERT]).unwrap();
        let renewed = make(&bc, &have, ca_end - 86_400);
        assert_ne!(renewed[0][CA_CERT], first[0][CA_CERT]);
        let bundle = String::from_utf8(renewed[1][CA_BUNDLE].clone()).unwrap();
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "new CA and the old one");
    }

    #[test]
    fn user_secrets_come_all_three_or_not_at_all_and_tokens_need_tls() {
        let mut bc = cluster(1);
        assert_eq!(secrets(&bc, "demo").unwrap().controller, "demo-controller-tls");
        bc.spec.tls.controller_secret = Some("mine".into());
        assert!(validate(&bc).unwrap_err().0.contains("all of"));
        bc.spec.tls.worker_secret = Some("mine-w".into());
        bc.spec.tls.operator_secret = Some("mine-o".into());
        assert!(validate(&bc).is_ok());
        let s = secrets(&bc, "demo").unwrap();
        assert_eq!((s.controller.as_str(), s.operator.as_str(), s.operator_made), ("mine", "mine-o", false));
        bc.spec.tls.enabled = Some(false);
        assert_eq!(secrets(&bc, "demo"), None);
        bc.spec.tokens_secret = Some("tokens".into());
        assert!(validate(&bc).unwrap_err().0.contains("needs TLS"));
    }
}
