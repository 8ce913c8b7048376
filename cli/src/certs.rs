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
use burst_proto::tls::{self, issue, issue::Ca, issue::Issued};

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
    let ca =
        Ca::generate("burst development CA", plan.days.saturating_mul(10), issue::now()).map_err(anyhow::Error::msg)?;
    written.extend(save(&plan.dir, "ca", &ca.issued)?);
    let hosts = [loopback(), plan.hosts.clone()].concat();
    let mut leaf = |file: &str, cn: &str, ou: &str, names: Vec<String>| -> anyhow::Result<()> {
        let issued = ca.issue(cn, ou, names, plan.days, issue::now()).map_err(anyhow::Error::msg)?;
        written.extend(save(&plan.dir, file, &issued)?);
        Ok(())
    };
    let controller = issue::server_names(tls::CONTROLLER_NAME, &hosts);
    leaf("controller", tls::CONTROLLER_NAME, "controller", controller)?;
    for id in &plan.workers {
        burst_controller::validate::name("worker id", id).map_err(anyhow::Error::msg)?;
        leaf(&format!("worker-{id}"), id, "worker", issue::server_names(tls::WORKER_NAME, &hosts))?;
    }
    for (name, role) in &plan.clients {
        burst_controller::validate::name("client name", name).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(role == "admin" || role == "submit", "client {name}: role {role:?} is not admin or submit");
        leaf(name, name, role, Vec::new())?;
    }
    Ok(written)
}

/// Issues one more client certificate (`role` admin or submit) from the CA in `dir`, valid for `days` (negative:
/// already expired, for tests), as `<name>.pem` and `<name>-key.pem`. The CA is `ca-cert.pem` (a BurstCluster's
/// CA Secret, whose `ca.pem` is a bundle) or else `ca.pem`, with `ca-key.pem`.
pub fn issue_client(dir: &Path, name: &str, role: &str, days: i64) -> anyhow::Result<[PathBuf; 2]> {
    burst_controller::validate::name("client name", name).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(role == "admin" || role == "submit", "role {role:?} is not admin or submit");
    let ca = load_ca(dir)?;
    save(dir, name, &ca.issue(name, role, Vec::new(), days, issue::now()).map_err(anyhow::Error::msg)?)
}

/// Issues a certificate for one more worker `id` from the CA in `dir` (as [`issue_client`] finds it), as
/// `worker-<id>.pem` and its key, for loopback hosts.
pub fn issue_worker(dir: &Path, id: &str, days: i64) -> anyhow::Result<[PathBuf; 2]> {
    burst_controller::validate::name("worker id", id).map_err(anyhow::Error::msg)?;
    let ca = load_ca(dir)?;
    let names = issue::server_names(tls::WORKER_NAME, &loopback());
    save(dir, &format!("worker-{id}"), &ca.issue(id, "worker", names, days, issue::now()).map_err(anyhow::Error::msg)?)
}

/// The names every server certificate carries: a cluster on one machine is reached on loopback.
fn loopback() -> Vec<String> {
    vec!["localhost".to_string(), "127.0.0.1".to_string()]
}

/// The CA in `dir`: `ca-cert.pem` (a BurstCluster's CA Secret, whose `ca.pem` is a bundle) or else `ca.pem`, with
/// `ca-key.pem`.
fn load_ca(dir: &Path) -> anyhow::Result<Ca> {
    let read =
        |f: &str| std::fs::read_to_string(dir.join(f)).with_context(|| format!("reading {f} in {}", dir.display()));
    let ca_cert = if dir.join("ca-cert.pem").exists() { read("ca-cert.pem")? } else { read("ca.pem")? };
    Ca::from_pem(&ca_cert, &read("ca-key.pem")?).map_err(anyhow::Error::msg)
}

/// Writes `<name>.pem` and `<name>-key.pem` (0600).
fn save(dir: &Path, name: &str, issued: &Issued) -> anyhow::Result<[PathBuf; 2]> {
    Ok([
        write(dir, &format!("{name}.pem"), &issued.cert_pem, false)?,
        write(dir, &format!("{name}-key.pem"), &issued.key_pem, true)?,
    ])
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

    #[test]
    fn a_client_certificate_is_issued_from_a_clusters_ca_secret_written_out() {
        // The keys of a BurstCluster's `<name>-tls-ca` Secret: the CA, its key, and a bundle with an older CA.
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("cluster CA", 10, issue::now()).unwrap();
        let older = Ca::generate("older CA", 10, issue::now()).unwrap();
        std::fs::write(dir.path().join("ca-cert.pem"), &ca.issued.cert_pem).unwrap();
        std::fs::write(dir.path().join("ca-key.pem"), &ca.issued.key_pem).unwrap();
        std::fs::write(dir.path().join("ca.pem"), older.issued.cert_pem + &ca.issued.cert_pem).unwrap();
        let [cert, key] = issue_client(dir.path(), "alice", "submit", 5).unwrap();
        let pem = std::fs::read_to_string(&cert).unwrap();
        assert_eq!(burst_proto::tls::identity(&x509_der(&pem)), Some(("alice".into(), "submit".into())));
        let issuer = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1;
        assert!(issuer.parse_x509().unwrap().issuer().to_string().contains("cluster CA"), "signed by ca-cert.pem");
        assert!(key.ends_with("alice-key.pem"));
        let err = issue_client(dir.path(), "bob", "root", 5).unwrap_err().to_string();
        assert!(err.contains("not admin or submit"), "{err}");
    }

    fn x509_der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents
    }
}
