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
/// them replaces the address). The answer
/// must carry a Content-Length or end with the connection (no chunked bodies: burst and chromedriver send none).
pub fn http(addr: std::net::SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("HTTP server reachable");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|h| h.to_ascii_lowercase().starts_with("host:")) {
        req += &format!("Host: {addr}\r\n");
    }
    for h in headers {
        req += &format!("{h}\r\n");
    }
    if !body.is_empty() {
        req += "Content-Type: application/json\r\n";
    }
    write!(s, "{req}\r\n{body}").unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let code = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut raw = Vec::new();
    match length {
        Some(n) => {
            raw.resize(n, 0);
            reader.read_exact(&mut raw).unwrap();
        }
        None => {
            reader.read_to_end(&mut raw).unwrap();
        }
    }
    (code, String::from_utf8_lossy(&raw).into_owned())
}
