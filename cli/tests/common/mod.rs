//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use burst_cli::local::{ClusterOptions, LocalCluster};
use burst_proto::v1::{JobSpec, ProcessSpec, SubmitJobsRequest, job_spec::Kind};

pub fn process(command: &str, args: &[&str]) -> JobSpec {
    JobSpec {
        kind: Some(Kind::Process(ProcessSpec {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        })),
        ..JobSpec::default()
    }
}

pub fn sh(script: &str) -> JobSpec {
    process("/bin/sh", &["-c", script])
}

/// Submits `specs` in one batch; returns their ids in order.
pub async fn submit(client: &mut burst_cli::client::Client, specs: Vec<JobSpec>) -> Vec<String> {
    let resp = client.submit_jobs(SubmitJobsRequest { specs }).await.expect("batch accepted").into_inner();
    resp.jobs.into_iter().map(|j| j.job_id).collect()
}

/// Writes a tokens file of `(name, role, token)` entries into `dir`; returns its path.
pub fn tokens_file(dir: &std::path::Path, entries: &[(&str, &str, &str)]) -> std::path::PathBuf {
    let path = dir.join("tokens.toml");
    let text: String = entries
        .iter()
        .map(|(name, role, token)| format!("[[token]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken = \"{token}\"\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

pub async fn cluster(opts: ClusterOptions) -> LocalCluster {
    LocalCluster::start(opts).await.expect("local cluster starts")
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    burst_proto::testing::eventually_every(Duration::from_millis(10), limit, what, check).await
}

/// One HTTP/1.1 request on a new connection: (status code, body). `headers` are extra header lines (a `Host` among
/// them replaces the address).
pub fn http(addr: std::net::SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    let (code, _, body) = http_full(addr, method, path, headers, body);
    (code, body)
}

/// [`http`], with the answer's headers (names in lower case).
pub fn http_full(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::Read;
    let (code, answer_headers, mut reader) = http_open(addr, method, path, headers, body);
    let mut raw = Vec::new();
    let chunked = answer_headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let length = answer_headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok());
    match (chunked, length) {
        (true, _) => {
            while let Some(chunk) = read_chunk(&mut reader) {
                raw.extend(chunk);
            }
        }
        (false, Some(n)) => {
            raw.resize(n, 0);
            reader.read_exact(&mut raw).unwrap();
        }
        (false, None) => {
            reader.read_to_end(&mut raw).unwrap();
        }
    }
    (code, answer_headers, String::from_utf8_lossy(&raw).into_owned())
}

/// Sends a request and reads the answer's status line and headers; the body is left to read from the reader
/// (with [`read_chunk`] when it is chunked, as streamed answers are).
pub fn http_open(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, Vec<(String, String)>, std::io::BufReader<std::net::TcpStream>) {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("HTTP server reachable");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|h| h.to_ascii_lowercase().starts_with("host:")) {
        req += &format!("Host: {addr}\r\n");
    }
    for h in headers {
        req += &format!("{h}\r\n");
    }
    if !body.is_empty() && !headers.iter().any(|h| h.to_ascii_lowercase().starts_with("content-type:")) {
        req += "Content-Type: application/json\r\n";
    }
    write!(s, "{req}\r\n{body}").unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let code = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut answer_headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            answer_headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    (code, answer_headers, reader)
}

/// The next chunk of a chunked body, or `None` at its end.
pub fn read_chunk(reader: &mut impl std::io::BufRead) -> Option<Vec<u8>> {
    let mut size = String::new();
    if reader.read_line(&mut size).ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}

/// One HTTPS request (HTTP/1.1) on a new connection to `addr` as the server `127.0.0.1`, trusting the CA bundle
/// `ca`, with a client certificate when `identity` (certificate and key files) is given: (status code, body), or
/// why the connection failed (a refused handshake). The answer must carry a Content-Length.
pub fn https(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::io::{Read, Write};
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    if let Err(e) = tls.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Err(e.to_string());
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, body.to_string()))
}
