//! Reaching the controller, and the errors the CLI turns into exit codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use burst_proto::auth::{Bearer, ControlClient, control_client};
use burst_proto::tls::{LiveTls, Pem};
use serde::Deserialize;
use tonic::Code;

use crate::args::Format;

pub type Client = ControlClient;

/// Where the controller is by default: plaintext, or TLS when the cluster's CA is given.
pub const DEFAULT_CONTROLLER: &str = "127.0.0.1:50051";
/// How long the CLI waits for a TCP connection before saying the controller is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `[cli]` section of the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub controller: Option<String>,
    pub output: Option<Format>,
}

/// A mistake in what the user asked for: printed as one line, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// What every command needs: where the controller is and how to print.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub controller: String,
    pub format: Format,
    /// Sent with every call when the controller requires a token.
    pub bearer: Bearer,
    /// TLS to the controller, when the cluster's CA is given.
    pub tls: Option<ClientTls>,
}

/// The CLI's side of TLS: the CA that signed the controller's certificate, and optionally a client certificate
/// (otherwise the CLI authenticates with its token).
#[derive(Clone, Debug)]
pub enum ClientTls {
    /// Files, read when connecting (`burst certs init`'s, or a client Secret written out).
    Files { ca: PathBuf, identity: Option<(PathBuf, PathBuf)> },
    /// Held in memory only (`kubectl burst`'s, read from the cluster's client Secret: never on disk).
    Pem(Pem),
}

impl ClientTls {
    fn live(&self) -> Result<LiveTls, Usage> {
        let pem = match self {
            ClientTls::Files { ca, identity } => {
                let identity = identity.as_ref().map(|(cert, key)| (cert.as_path(), key.as_path()));
                Pem::read_paths(ca, identity).map_err(Usage)?
            }
            ClientTls::Pem(pem) => pem.clone(),
        };
        LiveTls::new(pem).map_err(|e| Usage(format!("TLS: {e}")))
    }
}

impl Ctx {
    pub fn new(
        controller: Option<String>,
        config: Option<&Path>,
        format: Option<Format>,
        token: Option<&str>,
        tls: Option<ClientTls>,
    ) -> anyhow::Result<Self> {
        let file: Section = match config {
            Some(path) => burst_proto::config::load_section(path, "cli").map_err(|e| Usage(e.to_string()))?,
            None => Section::default(),
        };
        let controller = controller.or(file.controller).unwrap_or_else(|| DEFAULT_CONTROLLER.into());
        Ok(Ctx {
            controller,
            format: format.or(file.output).unwrap_or_default(),
            bearer: Bearer::new(token).map_err(|e| Usage(format!("--token: {e}")))?,
            tls,
        })
    }

    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect_tls(&self.controller, self.bearer.clone(), self.tls.as_ref()).await
    }
}

/// A client with no credentials (a controller without a tokens file).
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    connect_with(url, Bearer::default()).await
}

pub async fn connect_with(url: &str, bearer: Bearer) -> anyhow::Result<Client> {
    connect_tls(url, bearer, None).await
}

/// Whether `controller` is reached over TLS: its scheme decides (`https://` needs the cluster's CA; `http://` is
/// plaintext even with one); a bare `host:port` uses TLS when the CA is given. Other schemes are refused.
pub fn use_tls(controller: &str, have_ca: bool) -> Result<bool, Usage> {
    let Some((scheme, _)) = controller.split_once("://") else { return Ok(have_ca) };
    match scheme.to_ascii_lowercase().as_str() {
        "https" if have_ca => Ok(true),
        "https" => Err(Usage(format!(
            "{controller} is TLS: pass the cluster's CA with --tls-ca (BURST_TLS_CA) to verify the controller"
        ))),
        "http" => Ok(false),
        _ => Err(Usage(format!("controller {controller:?}: the scheme must be http:// or https://"))),
    }
}

/// A client over TLS when the URL says so (see [`use_tls`]), with `tls`'s CA and client certificate.
pub async fn connect_tls(url: &str, bearer: Bearer, tls: Option<&ClientTls>) -> anyhow::Result<Client> {
    let tls = if use_tls(url, tls.is_some())? { tls } else { None };
    let url = burst_proto::tls::url(url, tls.is_some());
    let endpoint = burst_proto::tls::endpoint(&url)
        .map_err(|e| Usage(format!("controller: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT);
    let live = tls.map(ClientTls::live).transpose()?;
    let channel = burst_proto::tls::connect(&endpoint, live.as_ref(), burst_proto::tls::CONTROLLER_NAME)
        .await
        .with_context(|| format!("cannot reach the controller at {url}"))?;
    Ok(control_client(channel, bearer))
}

/// The exit code for an error: 2 for the user's mistakes (bad input, unknown ids), 1 for everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Usage>().is_some() {
        return 2;
    }
    match e.downcast_ref::<tonic::Status>().map(tonic::Status::code) {
        Some(
            Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::FailedPrecondition | Code::OutOfRange,
        ) => 2,
        // Credentials and rights: the user's to fix, told apart from bad input.
        Some(Code::Unauthenticated | Code::PermissionDenied) => 3,
        // Over a rate or quota: try again later.
        Some(Code::ResourceExhausted) => 4,
        _ => 1,
    }
}

/// One readable line for an error: a gRPC status shows its message, not its debug form.
pub fn error_line(e: &anyhow::Error) -> String {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        let context: Vec<String> =
            e.chain().take_while(|c| c.downcast_ref::<tonic::Status>().is_none()).map(|c| c.to_string()).collect();
        let mut parts = context;
        parts.push(status.message().to_string());
        if status.message().contains("h2 protocol error") {
            // What plaintext sees of a TLS server.
            parts.push("does the controller use TLS? then pass --tls-ca (and a client certificate or --token)".into());
        }
        return join_once(parts);
    }
    join_once(e.chain().map(|c| c.to_string()).collect())
}

/// The parts of an error chain joined with `: `, each said once: transport errors often repeat their source's
/// text in their own (`tcp connect error: tcp connect error: ...`).
fn join_once(parts: Vec<String>) -> String {
    let mut line = String::new();
    for part in parts {
        let part = part.trim();
        if part.is_empty() || line.ends_with(part) {
            continue;
        }
        // A part that begins with what the line ends with (its own cause) adds only the rest.
        let overlap = (1..=part.len().min(line.len()))
            .rev()
            .filter(|&n| part.is_char_boundary(n))
            .find(|&n| line.ends_with(&part[..n]) && part[n..].starts_with(": "));
        match overlap {
            Some(n) => line.push_str(&part[n..]),
            None if line.is_empty() => line.push_str(part),
            None => {
                line.push_str(": ");
                line.push_str(part);
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_says_each_thing_once() {
        let join = |parts: &[&str]| join_once(parts.iter().map(|p| p.to_string()).collect());
        assert_eq!(
            join(&[
                "cannot reach x",
                "transport error",
                "tcp connect error",
                "tcp connect error",
                "Connection refused"
            ]),
            "cannot reach x: transport error: tcp connect error: Connection refused"
        );
        assert_eq!(
            join(&[
                "transport error",
                "invalid peer certificate: BadSignature",
                "invalid peer certificate: BadSignature"
            ]),
            "transport error: invalid peer certificate: BadSignature"
        );
        assert_eq!(join(&["a: b", "b: c", "c"]), "a: b: c");
        assert_eq!(join(&["reading f", "No such file"]), "reading f: No such file");
    }

    #[test]
    fn the_urls_scheme_decides_tls() {
        assert!(!use_tls("127.0.0.1:50051", false).unwrap());
        assert!(use_tls("127.0.0.1:50051", true).unwrap());
        assert!(use_tls("https://c:50051", true).unwrap());
        assert!(use_tls("HTTPS://c:50051", true).unwrap());
        assert!(!use_tls("http://c:50051", true).unwrap(), "http:// is plaintext even with a CA");
        assert!(use_tls("https://c:50051", false).unwrap_err().0.contains("--tls-ca"));
        assert!(use_tls("ftp://c:50051", true).unwrap_err().0.contains("http:// or https://"));
    }
}
