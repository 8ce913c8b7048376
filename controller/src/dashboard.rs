//! The web dashboard on the controller's HTTP side: `/ui` (one page, no build step, works offline) and the JSON
//! it reads under `/api/`. Every API call goes through the gRPC service's own methods, with the request's
//! `Authorization: Bearer` header as their metadata: the dashboard sees what the same caller would see through
//! the API, under the same authentication, owner scoping and validation — nothing is decided twice.
//!
//! A controller that authenticates by client certificate only (TLS, no tokens file) refuses the API here: the
//! HTTP side asks for no certificate. Give it a tokens file to use the dashboard.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use burst_proto::json::{job_json, spec_json, stats_json, worker_json};
use burst_proto::v1::controller_rpc_server::ControllerRpc;
use burst_proto::v1::*;
use serde_json::{Value, json};
use tonic::{Code, Request, Status};

use crate::metrics::Timings;
use crate::service::ControllerService;

/// The page, served as is.
const PAGE: &str = include_str!("dashboard.html");
/// Throughput samples kept: 10 minutes at one per [`SAMPLE_EVERY`].
const SAMPLES: usize = 120;
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Most jobs one search looks through (newest first) for matches.
const SEARCH_SCAN: usize = 20_000;
/// Most output one tail read returns.
const OUTPUT_CAP: usize = 64 * 1024;

#[derive(Clone)]
struct Dash {
    service: Arc<ControllerService>,
    history: Arc<Mutex<VecDeque<Value>>>,
}

/// The routes, and the task that samples throughput for them (abort it with the server). `allowed_hosts`: see
/// [`guard_host`].
pub fn routes(
    service: Arc<ControllerService>,
    timings: Timings,
    allowed_hosts: Vec<String>,
) -> (Router, tokio::task::JoinHandle<()>) {
    let history = Arc::new(Mutex::new(VecDeque::with_capacity(SAMPLES)));
    let sampler = tokio::spawn(sample(service.clone(), timings, history.clone()));
    let open = !service.authenticates();
    let hosts = Arc::new(allowed_hosts);
    let dash = Dash { service, history };
    let router = Router::new()
        .route("/", get(|| async { axum::response::Redirect::temporary("/ui") }))
        .route("/ui", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }))
        .route("/api/overview", get(overview))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/output", get(output))
        .with_state(dash)
        .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let hosts = hosts.clone();
            async move {
                if open && let Err(why) = guard_host(req.headers(), &hosts) {
                    return (StatusCode::FORBIDDEN, why).into_response();
                }
                next.run(req).await
            }
        }));
    (router, sampler)
}

/// On a controller that asks no credentials, the dashboard answers only requests addressed to an IP address,
/// `localhost` or one of `allowed` (`--http-allowed-hosts`): a web page the user visits cannot rename itself to
/// the controller's address (DNS rebinding) and read jobs' specs through the user's browser. With
/// authentication on, the token is what protects it.
fn guard_host(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let ok = name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "host {name:?} may not use the dashboard of a controller without authentication (a guard against DNS \
             rebinding): reach it by IP address or localhost, or add the name to --http-allowed-hosts"
        )),
    }
}

/// Every [`SAMPLE_EVERY`], the totals of jobs submitted and finished, for throughput over the last minutes.
async fn sample(service: Arc<ControllerService>, timings: Timings, history: Arc<Mutex<VecDeque<Value>>>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let submitted = service.submitted_total();
        let finished: u64 = ["succeeded", "failed", "cancelled"]
            .iter()
            .map(|s| timings.finished.get_or_create(&[("state", s)]).get())
            .sum();
        let mut h = history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == SAMPLES {
            h.pop_front();
        }
        h.push_back(json!({"at_ms": burst_proto::now_ms(), "submitted": submitted, "finished": finished}));
    }
}

/// A gRPC request carrying the HTTP caller's credentials.
fn request<T>(headers: &HeaderMap, message: T) -> Request<T> {
    let mut req = Request::new(message);
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Ok(value) = value.parse()
    {
        req.metadata_mut().insert(burst_proto::auth::AUTHORIZATION, value);
    }
    req
}

/// A gRPC refusal as an HTTP answer with the same message.
fn refused(status: Status) -> Response {
    let code = match status.code() {
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], status.message().to_string()).into_response()
}

fn json_response(value: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

fn query(raw: Option<String>) -> HashMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect()
}

async fn overview(State(d): State<Dash>, headers: HeaderMap) -> Response {
    let stats = match d.service.get_stats(request(&headers, GetStatsRequest {})).await {
        Ok(r) => r.into_inner(),
        Err(s) => return refused(s),
    };
    let workers = match d.service.list_workers(request(&headers, ListWorkersRequest {})).await {
        Ok(r) => r.into_inner().workers,
        Err(s) => return refused(s),
    };
    let history: Vec<Value> = d.history.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
    let mut stats_value = stats_json(&stats);
    stats_value["refusals"] = json!({
        "stale_epoch": stats.stale_reports_total,
        "unauthenticated": stats.unauthenticated_total,
        "permission_denied": stats.permission_denied_total,
        "rate_limited": stats.rate_limited_total,
        "quota": stats.quota_refused_total,
    });
    json_response(json!({
        "stats": stats_value,
        "workers": workers.iter().map(worker_json).collect::<Vec<_>>(),
        "history": history,
        "sample_every_ms": SAMPLE_EVERY.as_millis() as u64,
    }))
}

/// Whether `status` matches the search text: its id, worker, stolen-from, state, waiting reason or a label.
fn matches(status: &JobStatus, needle: &str) -> bool {
    let state = burst_proto::state_name(status.state());
    [&status.job_id, &status.worker_id, &status.stolen_from, &status.waiting_reason, &state.to_string()]
        .iter()
        .any(|field| field.to_lowercase().contains(needle))
        || status.labels.iter().any(|(k, v)| format!("{k}={v}").to_lowercase().contains(needle))
}

/// `?state=running&q=text&limit=50&before=<id>`: newest first; `next` continues the list.
async fn jobs(State(d): State<Dash>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let q = query(raw);
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(50).clamp(1, 500);
    let states = match q.get("state").filter(|s| !s.is_empty()) {
        Some(s) => match burst_proto::parse_state(s) {
            Ok(state) => vec![state as i32],
            Err(e) => return refused(Status::invalid_argument(e.to_string())),
        },
        None => Vec::new(),
    };
    let needle = q.get("q").map(|s| s.trim().to_lowercase()).unwrap_or_default();
    let mut page_token = q.get("before").cloned().unwrap_or_default();
    let (mut found, mut scanned) = (Vec::new(), 0);
    loop {
        let req = ListJobsRequest {
            states: states.clone(),
            limit: if needle.is_empty() { (limit - found.len()) as u32 } else { 1_000 },
            page_token: page_token.clone(),
            newest_first: true,
            ..ListJobsRequest::default()
        };
        let page = match d.service.list_jobs(request(&headers, req)).await {
            Ok(r) => r.into_inner(),
            Err(s) => return refused(s),
        };
        scanned += page.jobs.len();
        for status in page.jobs {
            if found.len() == limit {
                break;
            }
            page_token = status.job_id.clone();
            if needle.is_empty() || matches(&status, &needle) {
                found.push(job_json(&status));
            }
        }
        if found.len() == limit || page.next_page_token.is_empty() || scanned >= SEARCH_SCAN {
            let more = found.len() == limit || (!page.next_page_token.is_empty() && scanned >= SEARCH_SCAN);
            let next = if more { page_token } else { String::new() };
            return json_response(json!({"jobs": found, "next": next, "scanned": scanned}));
        }
    }
}

async fn job(State(d): State<Dash>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    match d.service.get_job(request(&headers, GetJobRequest { job_id: id })).await {
        Ok(r) => {
            let job = r.into_inner();
            let spec = job.spec.as_ref().map(spec_json).unwrap_or(Value::Null);
            let status = job.status.as_ref().map(job_json).unwrap_or(Value::Null);
            json_response(json!({"spec": spec, "status": status}))
        }
        Err(s) => refused(s),
    }
}

/// `?stream=stderr&tail=40`: the end of a job's output as text (at most [`OUTPUT_CAP`] bytes), from its worker.
async fn output(
    State(d): State<Dash>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = query(raw);
    let stream = match q.get("stream").map(String::as_str) {
        Some("stderr") => OutputStream::Stderr,
        _ => OutputStream::Stdout,
    };
    let tail_lines = q.get("tail").and_then(|t| t.parse().ok()).unwrap_or(40);
    let req = JobOutputRequest { job_id: id, stream: stream as i32, follow: false, tail_lines };
    let mut chunks = match d.service.stream_job_output(request(&headers, req)).await {
        Ok(r) => r.into_inner(),
        Err(s) => return refused(s),
    };
    let mut text = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
        match chunk {
            Ok(c) => text.extend_from_slice(&c.data),
            Err(s) => return refused(s),
        }
        if text.len() > OUTPUT_CAP {
            text.drain(..text.len() - OUTPUT_CAP);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], String::from_utf8_lossy(&text).into_owned()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str, allowed: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, h.parse().unwrap());
        let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        guard_host(&headers, &allowed).is_ok()
    }

    #[test]
    fn only_addresses_localhost_and_listed_names_reach_an_open_dashboard() {
        assert!(host("127.0.0.1:9090", &[]));
        assert!(host("[::1]:9090", &[]));
        assert!(host("10.0.0.7", &[]));
        assert!(host("LOCALHOST:9090", &[]));
        assert!(host("burst.internal:9090", &["burst.internal"]));
        assert!(!host("burst.internal:9090", &[]));
        assert!(!host("evil.example", &["burst.internal"]));
        assert!(!host("127.0.0.1.evil.example", &[]));
        assert!(!host("", &[]));
    }
}
