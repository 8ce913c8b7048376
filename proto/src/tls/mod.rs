//! Mutual TLS between burst programs: the files each side loads, and the identity a certificate carries.
//!
//! Every certificate comes from one burst CA (`burst certs init`). A certificate says who it is in its subject:
//! the common name is the name (a worker's id, a user's name) and the organizational unit the role
//! (`controller`, `worker`, `submit`, `admin`). Servers are checked against a fixed role name rather than the
//! address dialled ([`CONTROLLER_NAME`], [`WORKER_NAME`]), so workers found by IP and controllers behind any
//! Service name verify the same way; only certificates of the cluster's own CA are accepted.
//!
//! [`live`] holds the running side (servers' handshakes, clients' connector, certificates read again when they
//! change); [`issue`] makes certificates.

use std::path::{Path, PathBuf};

pub mod issue;
pub mod live;

pub use live::{Accept, LiveTls, Pem, connect, endpoint, incoming, keep_alive, lazy, serve};

/// The name a controller's certificate carries and clients verify.
pub const CONTROLLER_NAME: &str = "burst-controller";
/// The name every worker's certificate carries and peers verify.
pub const WORKER_NAME: &str = "burst-worker";

/// The TLS flags every burst server takes (`burst controller`, `burst worker`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TlsArgs {
    /// This server's certificate (PEM, from burst certs init; a worker's names its id), for mutual TLS.
    #[arg(long, env = "BURST_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "BURST_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA (PEM): every peer's certificate must be signed by it.
    #[arg(long, env = "BURST_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Plaintext gRPC (no TLS): only on a network you trust; logged as a warning at start.
    #[arg(long, env = "BURST_INSECURE")]
    pub insecure: bool,
}

impl TlsArgs {
    /// The flags over the config file's `tls_cert`, `tls_key`, `tls_ca` and `insecure` (see [`TlsFiles::choose`]).
    pub fn resolve(self, file: [Option<PathBuf>; 3], file_insecure: Option<bool>) -> Result<Option<TlsFiles>, String> {
        let TlsArgs { tls_cert, tls_key, tls_ca, insecure } = self;
        TlsFiles::choose([tls_cert, tls_key, tls_ca], file, insecure || file_insecure.unwrap_or(false))
    }
}

/// A certificate, its key and the CA that signs every peer's certificate, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading the {what} {}: {e}", path.display()))
}

impl TlsFiles {
    /// All three flags, or none (plaintext); one or two of them is a mistake.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
    ) -> Result<Option<Self>, String> {
        match (cert, key, ca) {
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
            (None, None, None) => Ok(None),
            _ => Err("TLS needs all of --tls-cert, --tls-key and --tls-ca".into()),
        }
    }

    /// What a server runs with: TLS from the flags, else from the config file, else plaintext only when asked
    /// for (`insecure`); no TLS without `--insecure` is refused.
    pub fn choose(
        flags: [Option<PathBuf>; 3],
        file: [Option<PathBuf>; 3],
        insecure: bool,
    ) -> Result<Option<Self>, String> {
        let [cert, key, ca] = flags;
        let [file_cert, file_key, file_ca] = file;
        let tls = TlsFiles::from_flags(cert.or(file_cert), key.or(file_key), ca.or(file_ca))?;
        if tls.is_none() && !insecure {
            return Err(
                "no TLS: pass --tls-cert, --tls-key and --tls-ca (burst certs init makes them), or --insecure for plaintext"
                    .into(),
            );
        }
        Ok(tls)
    }
}

/// `https://` for a TLS connection, `http://` otherwise (a scheme already given is kept only if it agrees).
pub fn url(addr: &str, tls: bool) -> String {
    let rest = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    format!("{}://{rest}", if tls { "https" } else { "http" })
}

/// (name, role) from a DER certificate's subject: its common name and organizational unit.
pub fn identity(der: &[u8]) -> Option<(String, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let role = subject.iter_organizational_unit().next()?.as_str().ok()?.to_string();
    Some((name, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_flags_come_all_together_or_not_at_all() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert!(TlsFiles::from_flags(p("c"), p("k"), p("a")).unwrap().is_some());
        assert_eq!(TlsFiles::from_flags(None, None, None), Ok(None));
        assert!(TlsFiles::from_flags(p("c"), None, p("a")).unwrap_err().contains("all of"));
    }

    #[test]
    fn urls_follow_the_transport() {
        assert_eq!(url("127.0.0.1:5", true), "https://127.0.0.1:5");
        assert_eq!(url("http://c:5", true), "https://c:5");
        assert_eq!(url("https://c:5", false), "http://c:5");
    }
}
