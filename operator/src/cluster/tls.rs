//! A BurstCluster's certificates, as pure functions: which Secrets hold them, what the operator-made ones
//! should contain now, and the operator's own client certificate.
//!
//! Three Secrets, so that each pod sees only what it needs, and one per client the spec lists:
//!
//! ```text
//! <name>-tls-ca          ca-cert.pem, ca-key.pem (the signing CA; mounted nowhere), ca.pem, operator.pem,
//!                        operator-key.pem; while a CA is replaced next-ca-*.pem, next-ca-since, old-ca-*
//! <name>-controller-tls  ca.pem, issuer.pem, controller.pem, controller-key.pem   mounted in the controller
//! <name>-worker-tls      ca.pem, issuer.pem, <pod>.pem, <pod>-key.pem per worker  mounted in every worker
//! <name>-client-<client> ca.pem, issuer.pem, client.pem, client-key.pem           per spec.tls.clients entry
//! ```
//! `ca.pem` is the bundle every side trusts: the CA, plus the one it replaced while that one is still valid.
//! With `spec.tls.{controller,worker,operator}Secret` the user supplies the last three (the operator's holds
//! `ca.pem`, `operator.pem`, `operator-key.pem`) and the operator only reads them.
//!
//! # Guarantees
//! - A certificate is renewed when less than a third of its lifetime is left (30 days of 90 by default), so a
//!   renewal is in every pod's files (a Secret volume updates within about a minute) long before the old one
//!   expires; burst programs read their files again without a restart.
//! - A CA is replaced in three steps (see [`desired`]): every pod trusts a certificate before it meets it.
//! - A certificate is kept only while the CA signing now is the one that issued it.
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
/// A CA made to replace the signing one, trusted (in the bundle) but not signing yet, and since when.
const NEXT_CA_CERT: &str = "next-ca-cert.pem";
const NEXT_CA_KEY: &str = "next-ca-key.pem";
const NEXT_CA_SINCE: &str = "next-ca-since";
/// The CA replaced last, still trusted for a while, and since when.
const OLD_CA_CERT: &str = "old-ca-cert.pem";
const OLD_CA_SINCE: &str = "old-ca-since";
/// In each certificate Secret: the CA that signed its certificates.
const ISSUER: &str = "issuer.pem";
/// Time between the steps of a CA replacement: every pod's mounted Secret has been updated by then (the kubelet
/// syncs a Secret volume within about a minute) and read (burst programs look every 10 s).
pub const STAGE_SECONDS: i64 = 300;
/// The longest certificate lifetime `spec.tls.certificateDays` may ask for (the CA lives 20 times as long).
pub const MAX_CERTIFICATE_DAYS: u32 = 3650;
/// The operator's client certificate (role admin) and key.
pub const OPERATOR_CERT: &str = "operator.pem";
pub const OPERATOR_KEY: &str = "operator-key.pem";
/// In a client's Secret: its certificate and key.
pub const CLIENT_CERT: &str = "client.pem";
pub const CLIENT_KEY: &str = "client-key.pem";
/// The role label of the clients' Secrets, by which the operator finds those it made.
pub const CLIENT_ROLE: &str = "client";
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
    if !tls.clients.is_empty() && (!tls.enabled() || tls.controller_secret.is_some()) {
        return Err(SpecError(
            "spec.tls.clients needs the operator's own CA (TLS on, no controllerSecret/workerSecret/operatorSecret)"
                .into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for client in &tls.clients {
        burst_proto::check_pool(&client.name)
            .map_err(|_| SpecError(format!("spec.tls.clients: name {:?} is not valid: use 1 to {} lowercase letters, digits and '-', starting with a letter", client.name, burst_proto::MAX_POOL_NAME)))?;
        // The operator's own and the servers' certificates are named burst-*: a client must not pass for one (a
        // client named burst-operator would own every BurstJob's job).
        if client.name.starts_with("burst-") {
            return Err(SpecError(format!(
                "spec.tls.clients: {} is reserved (names burst-* are burst's own)",
                client.name
            )));
        }
        if !seen.insert(&client.name) {
            return Err(SpecError(format!("spec.tls.clients: {} is listed twice", client.name)));
        }
        if client.role != "admin" && client.role != "submit" {
            return Err(SpecError(format!(
                "spec.tls.clients: {}'s role {:?} is not admin or submit",
                client.name, client.role
            )));
        }
    }
    if let Some(days) = tls.certificate_days.filter(|d| *d == 0 || *d > MAX_CERTIFICATE_DAYS) {
        return Err(SpecError(format!("spec.tls.certificateDays is {days}; it must be 1 to {MAX_CERTIFICATE_DAYS}")));
    }
    Ok(())
}

/// The operator's client TLS from the Secret that holds it; the error names what is missing.
pub fn operator_pem(secret: &str, data: &Data) -> Result<Pem, String> {
    let get = |key: &str| data.get(key).cloned().ok_or_else(|| format!("Secret {secret} has no key {key}"));
    Ok(Pem { ca: get(CA_BUNDLE)?, identity: Some((get(OPERATOR_CERT)?, get(OPERATOR_KEY)?)) })
}

/// What the operator-made Secrets should hold at `now` (Unix seconds), given what they hold. Returns the three
/// Secrets (CA, controller, workers) with their data, complete; write the last two first.
///
/// The CA is replaced in three steps, each [`STAGE_SECONDS`] apart, so that no pod ever meets a certificate
/// its files do not trust yet:
/// 1. due: a next CA is made and added to the bundle (every pod learns to trust it);
/// 2. promoted: it signs every certificate from then on, all of them issued again; the old CA stays in the
///    bundle (pods not yet given their new certificates are still trusted);
/// 3. retired: the old CA leaves the bundle.
///
/// A certificate is kept while it is fresh and was signed by the CA signing now (each Secret records its
/// issuer); otherwise it is issued again.
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
    let generate = || Ca::generate(&format!("burst CA of {ns}/{cluster}"), days * CA_LIFETIMES, now).map_err(fail);
    let stored =
        |cert: &str, key: &str| have_ca.and_then(|d| Ca::from_pem(text(d.get(cert)?)?, text(d.get(key)?)?).ok());
    let since = |key: &str| have_ca.and_then(|d| text(d.get(key)?)?.trim().parse::<i64>().ok());
    let current = stored(CA_CERT, CA_KEY).filter(|ca| valid(&ca.issued.cert_pem, now));
    let staged = stored(NEXT_CA_CERT, NEXT_CA_KEY).zip(since(NEXT_CA_SINCE));
    let mut retiring = have_ca.and_then(|d| d.get(OLD_CA_CERT)).cloned().zip(since(OLD_CA_SINCE));
    let (signing, next) = match (current, staged) {
        (Some(old), Some((next, at))) if now >= at + STAGE_SECONDS => {
            retiring = Some((old.issued.cert_pem.into_bytes(), now));
            (next, None)
        }
        (Some(ca), Some(staged)) => (ca, Some(staged)),
        (Some(ca), None) if fresh(Some(&ca.issued.cert_pem.clone().into_bytes()), now) => (ca, None),
        (Some(ca), None) => (ca, Some((generate()?, now))),
        (None, _) => (generate()?, None),
    };
    let retiring = retiring.filter(|(cert, at)| now < at + STAGE_SECONDS && valid_bytes(cert, now));
    let signer = signing.issued.cert_pem.clone().into_bytes();
    let mut bundle = signer.clone();
    for extra in next.iter().map(|(ca, _)| ca.issued.cert_pem.as_bytes()).chain(retiring.iter().map(|(c, _)| &c[..])) {
        bundle.extend_from_slice(extra);
    }
    let signer_changed = have_ca.and_then(|d| d.get(CA_CERT)) != Some(&signer);
    // A certificate is kept when it is fresh and its Secret says the signing CA issued it.
    let leaf = |have: Option<&Data>, signed_here: bool, file: &str, holder: &str, role: &str, sans: Vec<String>| {
        let cert = have.and_then(|d| d.get(&format!("{file}.pem")));
        let key = have.and_then(|d| d.get(&format!("{file}-key.pem")));
        match (cert, key) {
            (Some(cert), Some(key)) if signed_here && fresh(Some(cert), now) => {
                Ok(Issued { cert_pem: lossy(cert), key_pem: lossy(key) })
            }
            _ => signing.issue(holder, role, sans, days, now).map_err(fail),
        }
    };
    let issued_by_signer = |have: Option<&Data>| have.and_then(|d| d.get(ISSUER)) == Some(&signer);
    let operator = leaf(have_ca, !signer_changed, "operator", "burst-operator", "admin", Vec::new())?;
    let service = names::controller(cluster);
    let hosts = [
        service.clone(),
        format!("{service}.{ns}"),
        format!("{service}.{ns}.svc"),
        format!("{service}.{ns}.svc.cluster.local"),
    ];
    let controller_names = issue::server_names(CONTROLLER_NAME, &hosts);
    let controller = leaf(
        have_controller,
        issued_by_signer(have_controller),
        "controller",
        CONTROLLER_NAME,
        "controller",
        controller_names,
    )?;
    let common = Data::from([(CA_BUNDLE.to_string(), bundle.clone()), (ISSUER.to_string(), signer.clone())]);
    let mut workers = common.clone();
    for pod in super::possible_worker_pods(bc, cluster) {
        let names = issue::server_names(WORKER_NAME, &[]);
        put(&mut workers, &pod, leaf(have_workers, issued_by_signer(have_workers), &pod, &pod, "worker", names)?);
    }
    let mut ca_data = Data::from([
        (CA_BUNDLE.to_string(), bundle),
        (CA_CERT.to_string(), signer),
        (CA_KEY.to_string(), signing.issued.key_pem.clone().into_bytes()),
    ]);
    if let Some((next, at)) = next {
        ca_data.insert(NEXT_CA_CERT.into(), next.issued.cert_pem.into_bytes());
        ca_data.insert(NEXT_CA_KEY.into(), next.issued.key_pem.into_bytes());
        ca_data.insert(NEXT_CA_SINCE.into(), at.to_string().into_bytes());
    }
    if let Some((cert, at)) = retiring {
        ca_data.insert(OLD_CA_CERT.into(), cert);
        ca_data.insert(OLD_CA_SINCE.into(), at.to_string().into_bytes());
    }
    put(&mut ca_data, "operator", operator);
    let mut controller_data = common;
    put(&mut controller_data, "controller", controller);
    let secret = |name: String, role: &str, data: Data| opaque(name, ns, cluster, role, owner.clone(), data);
    Ok([
        secret(names::tls_ca(cluster), "tls", ca_data),
        secret(names::controller_tls(cluster), "controller", controller_data),
        secret(names::worker_tls(cluster), "worker", workers),
    ])
}

/// The clients' Secrets (`spec.tls.clients`) as they should be at `now`, signed by the CA in `ca` (the CA
/// Secret's data as [`desired`] made it), given what their Secrets hold (by Secret name). A certificate is kept
/// while it is fresh, of the same role, and issued by the signing CA.
pub fn clients(
    bc: &BurstCluster,
    cluster: &str,
    ns: &str,
    owner: Option<OwnerReference>,
    ca: &Data,
    have: &BTreeMap<String, Data>,
    now: i64,
) -> Result<Vec<Secret>, SpecError> {
    let fail = |e: String| SpecError(format!("making the clients' certificates: {e}"));
    let signer = ca.get(CA_CERT).ok_or_else(|| fail("the CA Secret has no certificate".into()))?;
    let key = ca.get(CA_KEY).ok_or_else(|| fail("the CA Secret has no key".into()))?;
    let bundle = ca.get(CA_BUNDLE).unwrap_or(signer);
    // Parsed only when a certificate is issued: most reconciles keep every one.
    let mut signing = None;
    let days = bc.spec.tls.certificate_days.map_or(CERTIFICATE_DAYS, i64::from);
    let mut secrets = Vec::new();
    for client in &bc.spec.tls.clients {
        let name = names::client_tls(cluster, &client.name);
        let had = have.get(&name);
        let cert = had.and_then(|d| d.get(CLIENT_CERT));
        let kept = had.filter(|d| d.get(ISSUER) == Some(signer) && fresh(cert, now)).and_then(|d| {
            let same = cert.and_then(|c| issue::identity_of_pem(c)) == Some((client.name.clone(), client.role.clone()));
            Some(Issued { cert_pem: lossy(cert?), key_pem: lossy(d.get(CLIENT_KEY)?) }).filter(|_| same)
        });
        let issued = match kept {
            Some(issued) => issued,
            None => {
                let ca = match &mut signing {
                    Some(ca) => ca,
                    None => signing.insert(Ca::from_pem(&lossy(signer), &lossy(key)).map_err(fail)?),
                };
                ca.issue(&client.name, &client.role, Vec::new(), days, now).map_err(fail)?
            }
        };
        let data = Data::from([
            (CA_BUNDLE.to_string(), bundle.clone()),
            (ISSUER.to_string(), signer.clone()),
            (CLIENT_CERT.to_string(), issued.cert_pem.into_bytes()),
            (CLIENT_KEY.to_string(), issued.key_pem.into_bytes()),
        ]);
        secrets.push(opaque(name, ns, cluster, CLIENT_ROLE, owner.clone(), data));
    }
    Ok(secrets)
}

/// An operator-made Secret of cluster `cluster` with `role`'s labels.
fn opaque(name: String, ns: &str, cluster: &str, role: &str, owner: Option<OwnerReference>, data: Data) -> Secret {
    Secret {
        metadata: meta(name, ns, names::labels(cluster, role), owner),
        type_: Some("Opaque".into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Secret::default()
    }
}

/// A Secret's data as [`Data`].
pub fn data_of(secret: &Secret) -> Data {
    secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

/// Valid now with more than a third of its lifetime left.
fn fresh(cert: Option<&Vec<u8>>, now: i64) -> bool {
    cert.and_then(|pem| issue::validity_window(pem)).is_some_and(|(from, to)| now < to - (to - from) / 3)
}

/// Not expired at `now`.
fn valid(cert_pem: &str, now: i64) -> bool {
    valid_bytes(cert_pem.as_bytes(), now)
}

fn valid_bytes(cert: &[u8], now: i64) -> bool {
    issue::validity_window(cert).is_some_and(|(_, to)| now < to)
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
        issue::identity_of_pem(pem).expect("a certificate naming its holder")
    }

    fn client(name: &str, role: &str) -> crate::crd::TlsClient {
        crate::crd::TlsClient { name: name.into(), role: role.into() }
    }

    fn client_data(bc: &BurstCluster, ca: &Data, have: &BTreeMap<String, Data>, at: i64) -> BTreeMap<String, Data> {
        let made = clients(bc, "demo", "ns", None, ca, have, at).unwrap();
        made.iter().map(|s| (s.metadata.name.clone().unwrap(), data_of(s))).collect()
    }

    #[test]
    fn each_listed_client_gets_its_own_certificate_kept_until_its_role_or_the_signing_ca_changes() {
        let mut bc = cluster(1);
        bc.spec.tls.clients = vec![client("alice", "submit"), client("ops", "admin")];
        let at = now();
        let [ca, ..] = make(&bc, &[None, None, None], at);
        let first = client_data(&bc, &ca, &BTreeMap::new(), at);
        assert_eq!(first.keys().collect::<Vec<_>>(), ["demo-client-alice", "demo-client-ops"]);
        let alice = &first["demo-client-alice"];
        assert_eq!(identity_of(&alice[CLIENT_CERT]), ("alice".into(), "submit".into()));
        assert_eq!(identity_of(&first["demo-client-ops"][CLIENT_CERT]), ("ops".into(), "admin".into()));
        assert_eq!(alice[CA_BUNDLE], ca[CA_BUNDLE]);
        assert!(!alice.contains_key(CA_KEY), "never the CA's key");
        // Nothing changed: the same certificates.
        assert_eq!(client_data(&bc, &ca, &first, at + 60), first);
        // A new role: a new certificate naming it.
        bc.spec.tls.clients[0].role = "admin".into();
        let promoted = client_data(&bc, &ca, &first, at + 60);
        assert_eq!(identity_of(&promoted["demo-client-alice"][CLIENT_CERT]), ("alice".into(), "admin".into()));
        assert_eq!(promoted["demo-client-ops"], first["demo-client-ops"]);
        // Another signing CA: issued again; two thirds into its life: renewed.
        let [other_ca, ..] = make(&bc, &[None, None, None], at);
        assert_ne!(client_data(&bc, &other_ca, &promoted, at)["demo-client-ops"], promoted["demo-client-ops"]);
        let later = at + CERTIFICATE_DAYS * 86_400 * 2 / 3 + 60;
        assert_ne!(client_data(&bc, &ca, &promoted, later)["demo-client-ops"], promoted["demo-client-ops"]);
    }

    #[test]
    fn clients_need_the_operators_ca_distinct_valid_names_and_a_known_role() {
        let mut bc = cluster(1);
        bc.spec.tls.clients = vec![client("alice", "submit")];
        assert!(validate(&bc).is_ok());
        bc.spec.tls.clients.push(client("alice", "admin"));
        assert!(validate(&bc).unwrap_err().0.contains("alice is listed twice"));
        bc.spec.tls.clients = vec![client("Alice_1", "submit")];
        assert!(validate(&bc).unwrap_err().0.contains("\"Alice_1\" is not valid"));
        bc.spec.tls.clients = vec![client("burst-operator", "submit")];
        assert!(validate(&bc).unwrap_err().0.contains("burst-operator is reserved"));
        bc.spec.tls.clients = vec![client("alice", "root")];
        assert!(validate(&bc).unwrap_err().0.contains("role \"root\" is not admin or submit"));
        bc.spec.tls.clients = vec![client("alice", "submit")];
        bc.spec.tls.enabled = Some(false);
        assert!(validate(&bc).unwrap_err().0.contains("needs the operator's own CA"));
    }

    #[test]
    fn a_new_cluster_gets_a_ca_and_a_certificate_per_pod_that_names_it() {
        let [ca, controller, workers] = make(&cluster(2), &[None, None, None], now());
        assert!(ca.contains_key(CA_KEY) && !controller.contains_key(CA_KEY) && !workers.contains_key(CA_KEY));
        assert_eq!(identity_of(&controller["controller.pem"]), ("burst-controller".into(), "controller".into()));
        assert_eq!(identity_of(&workers["demo-worker-1.pem"]), ("demo-worker-1".into(), "worker".into()));
        assert_eq!(identity_of(&ca[OPERATOR_CERT]), ("burst-operator".into(), "admin".into()));
        assert_eq!(workers.len(), 2 + 2 * 2, "the bundle, the issuer, and a certificate and key per worker");
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

    fn certs_in(pem: &[u8]) -> usize {
        String::from_utf8_lossy(pem).matches("BEGIN CERTIFICATE").count()
    }

    #[test]
    fn certificates_are_renewed_with_a_third_of_their_life_left() {
        let bc = cluster(1);
        let start = now();
        let first = make(&bc, &[None, None, None], start);
        let have = first.clone().map(Some);
        // 59 days on, 31 of 90 left: kept. 61 days on: issued again by the same CA.
        assert_eq!(make(&bc, &have, start + 59 * 86_400), first);
        let later = make(&bc, &have, start + 61 * 86_400);
        assert_ne!(later[1]["controller.pem"], first[1]["controller.pem"]);
        assert_ne!(later[2]["demo-worker-0.pem"], first[2]["demo-worker-0.pem"]);
        assert_ne!(later[0][OPERATOR_CERT], first[0][OPERATOR_CERT]);
        assert_eq!(later[0][CA_CERT], first[0][CA_CERT], "the CA lasts 20 lifetimes");
    }

    #[test]
    fn the_ca_is_replaced_in_three_steps_so_every_pod_trusts_each_certificate_before_it_meets_it() {
        let bc = cluster(1);
        let start = now();
        let first = make(&bc, &[None, None, None], start);
        let (_, ca_end) = issue::validity_window(&first[0][CA_CERT]).unwrap();
        // 1. Due: a next CA joins the bundle; the signing CA and the certificates stay.
        let t1 = ca_end - 400 * 86_400;
        let mut leaves = make(&bc, &first.clone().map(Some), t1 - 86_400);
        leaves[0] = first[0].clone(); // certificates renewed just before, by the old CA
        let staged = make(&bc, &leaves.clone().map(Some), t1);
        assert_eq!(staged[0][CA_CERT], first[0][CA_CERT]);
        assert!(staged[0].contains_key(NEXT_CA_CERT));
        assert_eq!(certs_in(&staged[1][CA_BUNDLE]), 2, "pods learn the next CA first");
        assert_eq!(staged[1]["controller.pem"], leaves[1]["controller.pem"]);
        // Not yet: nothing more happens within the stage.
        assert_eq!(make(&bc, &staged.clone().map(Some), t1 + STAGE_SECONDS - 1), staged);
        // 2. Promoted: the next CA signs; every certificate is issued again; the old CA is still trusted.
        let t2 = t1 + STAGE_SECONDS;
        let promoted = make(&bc, &staged.clone().map(Some), t2);
        assert_eq!(promoted[0][CA_CERT], staged[0][NEXT_CA_CERT]);
        assert_eq!(promoted[0][OLD_CA_CERT], first[0][CA_CERT]);
        assert_eq!(promoted[1][ISSUER], promoted[0][CA_CERT]);
        assert_ne!(promoted[1]["controller.pem"], staged[1]["controller.pem"]);
        assert_ne!(promoted[2]["demo-worker-0.pem"], staged[2]["demo-worker-0.pem"]);
        assert_eq!(certs_in(&promoted[2][CA_BUNDLE]), 2);
        // 3. Retired: the old CA leaves the bundle.
        let retired = make(&bc, &promoted.clone().map(Some), t2 + STAGE_SECONDS);
        assert_eq!(certs_in(&retired[1][CA_BUNDLE]), 1);
        assert!(!retired[0].contains_key(OLD_CA_CERT));
        assert_eq!(retired[1]["controller.pem"], promoted[1]["controller.pem"]);
    }

    #[test]
    fn a_certificate_not_signed_by_the_signing_ca_is_issued_again() {
        let bc = cluster(1);
        let first = make(&bc, &[None, None, None], now());
        // The CA Secret was lost (deleted, or never written after the others were): a new CA, and the
        // certificates signed by the old one are not kept, fresh as they are.
        let again = make(&bc, &[None, Some(first[1].clone()), Some(first[2].clone())], now());
        assert_ne!(again[0][CA_CERT], first[0][CA_CERT]);
        assert_ne!(again[1]["controller.pem"], first[1]["controller.pem"]);
        assert_eq!(again[1][ISSUER], again[0][CA_CERT]);
    }

    #[test]
    fn certificate_days_are_bounded() {
        let mut bc = cluster(1);
        bc.spec.tls.certificate_days = Some(MAX_CERTIFICATE_DAYS + 1);
        assert!(validate(&bc).unwrap_err().0.contains("1 to 3650"));
        bc.spec.tls.certificate_days = Some(MAX_CERTIFICATE_DAYS);
        assert!(validate(&bc).is_ok());
        let [ca, ..] = make(&bc, &[None, None, None], now());
        assert!(issue::validity_window(&ca[CA_CERT]).is_some(), "the longest CA still fits a date");
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
