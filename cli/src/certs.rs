//! `burst certs init DIR`: a development CA and the certificates a cluster needs, as PEM files.
//!
//! ```text
//! DIR/ca.pem, ca-key.pem                      the CA (keep ca-key.pem away from the cluster)
//! DIR/controller.pem, controller-key.pem      CN burst-controller, OU controller
//! DIR/worker-<id>.pem, worker-<id>-key.pem    CN <id>,             OU worker      (one per --worker)
//! DIR/<name>.pem, <name>-key.pem              CN <name>,           OU admin|submit (one per --client)
//! ```
//! Server certificates carry their role name ([`burst_proto::tls::CONTROLLER_NAME`], `WORKER_NAME`) plus
//! `localhost`, `127.0.0.1` and every `--host` as subject alternative names. Keys are ECDSA P-256, written 0600.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// What to make.
#[derive(Clone, Debug)]
pub struct Plan {
    pub dir: PathBuf,
    pub workers: Vec<String>,
    /// (name, role): role `admin` or `submit`.
    pub clients: Vec<(String, String)>,
    pub hosts: Vec<String>,
    pub days: i64,
}

/// Writes the CA and every certificate of `plan`; returns the files written.
pub fn init(plan: &Plan) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&plan.dir).with_context(|| format!("creating {}", plan.dir.display()))?;
    let mut written = Vec::new();
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "burst development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca, plan.days * 10);
    let ca_cert = ca.self_signed(&ca_key)?;
    written.push(write(&plan.dir, "ca.pem", &ca_cert.pem(), false)?);
    written.push(write(&plan.dir, "ca-key.pem", &ca_key.serialize_pem(), true)?);
    let issuer = Issuer::new(ca, ca_key);

    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    sans.extend(plan.hosts.iter().cloned());
    let server = |role_name: &str| [vec![role_name.to_string()], sans.clone()].concat();
    let mut leaf = |file: &str, cn: &str, ou: &str, names: Vec<String>| -> anyhow::Result<()> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.distinguished_name.push(DnType::OrganizationalUnitName, ou);
        validity(&mut params, plan.days);
        let cert = params.signed_by(&key, &issuer)?;
        written.push(write(&plan.dir, &format!("{file}.pem"), &cert.pem(), false)?);
        written.push(write(&plan.dir, &format!("{file}-key.pem"), &key.serialize_pem(), true)?);
        Ok(())
    };
    leaf("controller", burst_proto::tls::CONTROLLER_NAME, "controller", server(burst_proto::tls::CONTROLLER_NAME))?;
    for id in &plan.workers {
        burst_controller::validate::name("worker id", id).map_err(anyhow::Error::msg)?;
        leaf(&format!("worker-{id}"), id, "worker", server(burst_proto::tls::WORKER_NAME))?;
    }
    for (name, role) in &plan.clients {
        burst_controller::validate::name("client name", name).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(role == "admin" || role == "submit", "client {name}: role {role:?} is not admin or submit");
        leaf(name, name, role, Vec::new())?;
    }
    Ok(written)
}

/// Issues one more client certificate (`role` admin or submit) from the CA in `dir`, valid for `days` (negative:
/// already expired, for tests), as `<name>.pem` and `<name>-key.pem`.
pub fn issue_client(dir: &Path, name: &str, role: &str, days: i64) -> anyhow::Result<()> {
    let read =
        |f: &str| std::fs::read_to_string(dir.join(f)).with_context(|| format!("reading {f} in {}", dir.display()));
    let issuer = Issuer::from_ca_cert_pem(&read("ca.pem")?, KeyPair::from_pem(&read("ca-key.pem")?)?)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name.push(DnType::OrganizationalUnitName, role);
    validity(&mut params, days);
    if days < 0 {
        params.not_before = time::OffsetDateTime::now_utc() + time::Duration::days(days * 2);
    }
    let cert = params.signed_by(&key, &issuer)?;
    write(dir, &format!("{name}.pem"), &cert.pem(), false)?;
    write(dir, &format!("{name}-key.pem"), &key.serialize_pem(), true)?;
    Ok(())
}

/// Valid from an hour ago (clock skew) for `days`.
fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn write(dir: &Path, name: &str, pem: &str, secret: bool) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mode = if secret { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, pem.as_bytes())?;
    Ok(path)
}

/// The TLS files of a certificate written by [`init`] (`controller`, `worker-<id>`, a client's name).
pub fn files(dir: &Path, name: &str) -> burst_proto::tls::TlsFiles {
    burst_proto::tls::TlsFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
        ca: dir.join("ca.pem"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_certificate_names_its_holder_and_role() {
        let dir = tempfile::tempdir().unwrap();
        let plan = Plan {
            dir: dir.path().to_path_buf(),
            workers: vec!["w-1".into()],
            clients: vec![("ops".into(), "admin".into())],
            hosts: vec!["burst.example".into()],
            days: 30,
        };
        let written = init(&plan).unwrap();
        assert_eq!(written.len(), 8);
        for (file, want) in [
            ("controller", ("burst-controller", "controller")),
            ("worker-w-1", ("w-1", "worker")),
            ("ops", ("ops", "admin")),
        ] {
            let pem = std::fs::read_to_string(dir.path().join(format!("{file}.pem"))).unwrap();
            let der = x509_der(&pem);
            assert_eq!(burst_proto::tls::identity(&der), Some((want.0.to_string(), want.1.to_string())), "{file}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca-key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "keys are private");
        let bad = Plan { workers: vec!["../x".into()], ..plan };
        assert!(init(&bad).is_err());
    }

    fn x509_der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents
    }
}
