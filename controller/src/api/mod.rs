//! The controller's HTTP/JSON API, `/v1`, beside gRPC on its HTTP port: submit, read, list, cancel, follow logs,
//! watch, workers and counts, plus the dashboard at `/ui` and this API's OpenAPI document at
//! `/v1/openapi.json`.
//!
//! Every route calls the gRPC service's own method, with the request's `Authorization: Bearer` header (and, over
//! TLS, its client certificate) as the call's credentials: authentication, roles, owner scoping, validation,
//! rate limits and quotas are decided once, in the service. Bodies and answers are the canonical protobuf JSON
//! of the same messages (`burst_proto::json`). A refusal is one JSON shape, `{"error": {"code", "status",
//! "message"}}`, with the HTTP status that matches the gRPC code ([`error`]).
//!
//! [`ROUTES`] is the one list of routes: the router is built from it and so is the OpenAPI document
//! ([`openapi`]), so the two cannot drift apart.

pub mod error;
pub mod openapi;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use burst_proto::http::Peer;
use burst_proto::json::to_text;
use burst_proto::v1::controller_rpc_server::ControllerRpc;
use burst_proto::v1::*;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tonic::{Request, Status};

use crate::dashboard::History;
use crate::metrics::Timings;
use crate::service::ControllerService;
use error::ApiError;

/// Most bytes of a submission body: a [`crate::service::MAX_BATCH`]-spec batch of large specs fits.
pub const MAX_SUBMIT_BODY: usize = burst_proto::MAX_MESSAGE_BYTES;
/// Most bytes of any other request body.
pub const MAX_BODY: usize = 1024 * 1024;
/// Most jobs one `GET /v1/jobs` page returns.
pub const MAX_PAGE: u32 = 1_000;
/// Most jobs a text search (`q`) looks through, newest first, for one page.
const SEARCH_SCAN: usize = 20_000;
/// How often a quiet `GET /v1/jobs:watch` stream sends a comment, so proxies keep it open.
const WATCH_KEEPALIVE: Duration = Duration::from_secs(15);

/// What every handler reaches: the gRPC service and the dashboard's throughput samples.
#[derive(Clone)]
pub struct Api {
    service: Arc<ControllerService>,
    history: History,
}

/// Where a parameter goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
}

/// A parameter's values.
#[derive(Clone, Copy)]
pub enum Kind {
    Text,
    /// A job or worker id ([`openapi::NAME_PATTERN`]).
    Name,
    /// A non-negative integer up to this.
    Count(u32),
    Bool,
    /// A job state, by name (`running` or `JOB_STATE_RUNNING`).
    State,
    /// `KEY=VALUE`.
    Pair,
    /// One of these words.
    Word(&'static [&'static str]),
}

pub struct Param {
    pub name: &'static str,
    pub place: In,
    pub kind: Kind,
    /// May be given more than once.
    pub repeated: bool,
    pub doc: &'static str,
}

/// A body, or an answer's body.
#[derive(Clone, Copy)]
pub enum Shape {
    /// A burst.v1 message, by name.
    Message(&'static str),
    /// One JobSpec, or an array of them.
    Specs,
    /// What a submission answers: a SubmitJobResponse for one spec, a SubmitJobsResponse for an array; 201 when
    /// a job was created, 200 when its idempotency key named one already.
    Submitted,
    /// The dashboard's throughput samples.
    History,
    /// The OpenAPI document itself.
    Document,
    /// Plain text (output, probes).
    Text,
    /// The OpenMetrics text format.
    Metrics,
    /// Server-sent events, each a JobStatus.
    Events,
}

/// One route: what the OpenAPI document says of it and what serves it.
pub struct Route {
    pub method: &'static str,
    /// As the document names it.
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    pub params: &'static [Param],
    pub body: Option<Shape>,
    /// The success status and its body.
    pub ok: (u16, Shape),
    /// Served by the HTTP side every burst server has (`burst_proto::http`), not by this module.
    pub probe: bool,
    /// Answers without credentials.
    pub public: bool,
}

const fn query(name: &'static str, kind: Kind, repeated: bool, doc: &'static str) -> Param {
    Param { name, place: In::Query, kind, repeated, doc }
}

const JOB_ID: Param = Param { name: "id", place: In::Path, kind: Kind::Name, repeated: false, doc: "The job's id." };

const fn route(method: &'static str, path: &'static str, id: &'static str, summary: &'static str) -> Route {
    Route { method, path, id, summary, params: &[], body: None, ok: (200, Shape::Text), probe: false, public: false }
}

/// Every route of the controller's HTTP port.
pub const ROUTES: &[Route] = &[
    Route {
        body: Some(Shape::Specs),
        ok: (201, Shape::Submitted),
        ..route(
            "post",
            "/v1/jobs",
            "submitJobs",
            "Submit one job (a JobSpec, as a jobs-file line), answered with a SubmitJobResponse, or a batch (an \
             array of them, all or none), answered with a SubmitJobsResponse. 201 when a job was created, 200 when \
             its idempotency key (the spec's idempotency_key or an Idempotency-Key header) named one already.",
        )
    },
    Route {
        params: &[
            query(
                "state",
                Kind::State,
                true,
                "Only jobs in this state (queued, leased, running, succeeded, failed, cancelled).",
            ),
            query("label", Kind::Pair, true, "Only jobs with this label, KEY=VALUE."),
            query(
                "owner",
                Kind::Text,
                false,
                "Only jobs of this owner (callers who are not admins see only their own).",
            ),
            query(
                "q",
                Kind::Text,
                false,
                "Only jobs whose id, worker, state, waiting reason or a label contains this text.",
            ),
            query("limit", Kind::Count(MAX_PAGE), false, "At most this many jobs (default 100)."),
            query("page_token", Kind::Text, false, "Continue from a previous answer's next_page_token."),
            query("order", Kind::Word(&["newest", "oldest"]), false, "newest first (the default) or oldest first."),
        ],
        ok: (200, Shape::Message("ListJobsResponse")),
        ..route("get", "/v1/jobs", "listJobs", "List jobs, newest first; pages stay correct while jobs are submitted.")
    },
    Route {
        params: &[JOB_ID],
        ok: (200, Shape::Message("Job")),
        ..route("get", "/v1/jobs/{id}", "getJob", "A job's spec and status.")
    },
    Route {
        params: &[JOB_ID],
        ok: (200, Shape::Message("CancelJobResponse")),
        ..route("post", "/v1/jobs/{id}:cancel", "cancelJob", "Cancel a job (one that already ended is left as it was).")
    },
    Route {
        body: Some(Shape::Message("CancelJobRequest")),
        ok: (200, Shape::Message("CancelJobResponse")),
        ..route(
            "post",
            "/v1/jobs:cancel",
            "cancelJobs",
            "Cancel the named jobs, or every unfinished job whose labels match (a label selector).",
        )
    },
    Route {
        params: &[
            JOB_ID,
            query("stream", Kind::Word(&["stdout", "stderr"]), false, "Which output (default stdout)."),
            query("tail", Kind::Count(u32::MAX), false, "Start at the last this many lines (default: from the start)."),
            query("follow", Kind::Bool, false, "Keep sending what the job writes until its run ends."),
        ],
        ok: (200, Shape::Text),
        ..route("get", "/v1/jobs/{id}/logs", "getJobLogs", "A job's stdout or stderr, relayed from its worker.")
    },
    Route {
        params: &[
            query("job_id", Kind::Name, true, "Only these jobs."),
            query("label", Kind::Pair, true, "Only jobs with this label, KEY=VALUE."),
            query("initial", Kind::Bool, false, "Send each named job's current status first (with job_id)."),
            query("terminal_only", Kind::Bool, false, "Only statuses of jobs that ended."),
        ],
        ok: (200, Shape::Events),
        ..route(
            "get",
            "/v1/jobs:watch",
            "watchJobs",
            "Status changes as server-sent events (`event: status`, the JobStatus as data); an `event: error` \
             ends a stream that fell too far behind.",
        )
    },
    Route {
        ok: (200, Shape::Message("ListWorkersResponse")),
        ..route("get", "/v1/workers", "listWorkers", "The registered workers (admins).")
    },
    Route {
        body: Some(Shape::Message("CordonWorkersRequest")),
        ok: (200, Shape::Message("CordonWorkersResponse")),
        ..route(
            "post",
            "/v1/workers:cordon",
            "cordonWorkers",
            "Stop (or with uncordon, resume) leasing to workers (admins).",
        )
    },
    Route {
        ok: (200, Shape::Message("GetStatsResponse")),
        ..route(
            "get",
            "/v1/stats",
            "getStats",
            "The cluster's counts, each pool's, and each submitter's fair share (a submitter sees only its own).",
        )
    },
    Route {
        ok: (200, Shape::History),
        ..route(
            "get",
            "/v1/stats/history",
            "getStatsHistory",
            "Jobs submitted and finished so far, sampled over the last minutes.",
        )
    },
    Route {
        ok: (200, Shape::Document),
        public: true,
        ..route("get", "/v1/openapi.json", "getOpenApi", "This document.")
    },
    Route { probe: true, public: true, ..route("get", "/healthz", "healthz", "The process answers.") },
    Route {
        probe: true,
        public: true,
        ..route("get", "/readyz", "readyz", "The controller does its job now (503: why not).")
    },
    Route {
        probe: true,
        public: true,
        ok: (200, Shape::Metrics),
        ..route("get", "/metrics", "metrics", "Metrics in the OpenMetrics text format.")
    },
];

/// The handler of a route of [`ROUTES`] served here, with the path the router knows it by (a `:verb` after a
/// path parameter is matched by the handler, since the router matches whole segments).
fn handler(id: &str) -> Option<(&'static str, MethodRouter<Api>)> {
    Some(match id {
        "submitJobs" => ("/v1/jobs", post(submit).layer(DefaultBodyLimit::max(MAX_SUBMIT_BODY))),
        "listJobs" => ("/v1/jobs", get(list)),
        "getJob" => ("/v1/jobs/{id}", get(get_job)),
        "cancelJob" => ("/v1/jobs/{id}", post(cancel_one)),
        "cancelJobs" => ("/v1/jobs:cancel", post(cancel_many)),
        "getJobLogs" => ("/v1/jobs/{id}/logs", get(logs)),
        "watchJobs" => ("/v1/jobs:watch", get(watch)),
        "listWorkers" => ("/v1/workers", get(workers)),
        "cordonWorkers" => ("/v1/workers:cordon", post(cordon)),
        "getStats" => ("/v1/stats", get(stats)),
        "getStatsHistory" => ("/v1/stats/history", get(history)),
        "getOpenApi" => ("/v1/openapi.json", get(document)),
        _ => return None,
    })
}

/// The routes of [`ROUTES`], the dashboard, and JSON refusals for paths and methods that are not there. The
/// caller adds the probes and the host guard.
pub fn router(service: Arc<ControllerService>, history: History) -> Router {
    let mut router = Router::new();
    for r in ROUTES.iter().filter(|r| !r.probe) {
        let (path, method) = handler(r.id).unwrap_or_else(|| panic!("route {} has no handler", r.id));
        router = router.route(path, method);
    }
    router
        .merge(crate::dashboard::page())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path (see /v1/openapi.json)") })
        .method_not_allowed_fallback(|uri: axum::http::Uri| async move { not_allowed(uri.path()) })
        .with_state(Api { service, history })
}

/// The routes, the dashboard's throughput sampler (abort it with the server) and the guards. `allowed_hosts`:
/// see [`crate::dashboard::guard_host`].
pub fn routes(
    service: Arc<ControllerService>,
    timings: Timings,
    allowed_hosts: Vec<String>,
) -> (Router, tokio::task::JoinHandle<()>) {
    let (history, sampler) = crate::dashboard::sample(service.clone(), timings);
    let open = !service.authenticates();
    let router = router(service, history);
    (crate::dashboard::guard(router, open, allowed_hosts), sampler)
}

/// 405, with the methods [`ROUTES`] documents for `path` in `Allow`.
fn not_allowed(path: &str) -> Response {
    let segments: Vec<&str> = path.split('/').collect();
    let matches = |template: &str| {
        let parts: Vec<&str> = template.split('/').collect();
        parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(t, s)| match t.find('{') {
                None => t == s,
                // `{id}` is one segment without a `:`; `{id}:verb` one that ends with `:verb`.
                Some(at) => {
                    let suffix = &t[t.find('}').map_or(t.len(), |e| e + 1)..];
                    s.starts_with(&t[..at])
                        && s.len() > at + suffix.len()
                        && match suffix {
                            "" => !s.contains(':'),
                            _ => s.ends_with(suffix) && !s[..s.len() - suffix.len()].contains(':'),
                        }
                }
            })
    };
    let methods: Vec<String> =
        ROUTES.iter().filter(|r| matches(r.path)).map(|r| r.method.to_ascii_uppercase()).collect();
    let error =
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "this path does not take that method");
    match methods.is_empty() {
        true => {
            ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path (see /v1/openapi.json)").into_response()
        }
        false => ([(header::ALLOW, methods.join(", "))], error).into_response(),
    }
}

/// The HTTP caller's credentials: its `Authorization` header, and its connection's peer (address, and over TLS
/// the client certificate it presented).
pub struct Caller {
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    peer: Option<Peer>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let peer = parts.extensions.get::<ConnectInfo<Peer>>().map(|c| c.0.clone());
        Ok(Caller { authorization: authorization.and_then(|v| v.parse().ok()), peer })
    }
}

impl Caller {
    /// A gRPC request with the caller's credentials, for the service's method.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        if let Some(value) = &self.authorization {
            req.metadata_mut().insert(burst_proto::auth::AUTHORIZATION, value.clone());
        }
        if let Some(peer) = &self.peer {
            req.extensions_mut().insert(peer.clone());
        }
        req
    }
}

/// An answer carrying `message` as JSON.
fn json_of<T: serde::Serialize>(status: StatusCode, message: &T) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], to_text(message)).into_response()
}

/// A body that must be JSON of `T`, or a 4xx naming what is wrong.
fn parse_body<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(ApiError::from)?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("the body is not a valid request: {e}")))
}

/// The query string's pairs, in order (a parameter may repeat).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<String>) -> Query {
        Query(form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    fn all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.all(name).last()
    }

    fn count(&self, name: &str, max: u32) -> Result<Option<u32>, ApiError> {
        self.one(name)
            .map(|v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| ApiError::bad(format!("{name} {v:?} is not a whole number from 0 to {max}")))
            })
            .transpose()
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.one(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(v) => Err(ApiError::bad(format!("{name} {v:?} is not true or false"))),
        }
    }

    fn labels(&self) -> Result<HashMap<String, String>, ApiError> {
        self.all("label")
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(ApiError::bad(format!("label {pair:?} is not KEY=VALUE"))),
            })
            .collect()
    }
}

/// A submission's body: one JobSpec, or an array of them.
enum Submission {
    One(Box<JobSpec>),
    Many(Vec<JobSpec>),
}

/// Reads a submission straight from its bytes, with no JSON tree in between (a 64 MiB batch costs its specs, not
/// several times its size), refusing an array longer than a batch may be as soon as it gets there.
fn parse_submission(body: &[u8]) -> Result<Submission, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice::<Batch>(body)
            .map(|b| Submission::Many(b.0))
            .map_err(|e| ApiError::bad(format!("the body is not an array of job specs: {e}"))),
        Some(b'{') => serde_json::from_slice::<JobSpec>(body)
            .map(|spec| Submission::One(Box::new(spec)))
            .map_err(|e| ApiError::bad(format!("the body is not a job spec: {e}"))),
        _ => Err(ApiError::bad("the body is neither a job spec (an object) nor an array of them")),
    }
}

/// An array of specs, at most [`crate::service::MAX_BATCH`]; an error names the spec's index.
struct Batch(Vec<JobSpec>);

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Specs;
        impl<'de> serde::de::Visitor<'de> for Specs {
            type Value = Batch;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of job specs")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Batch, A::Error> {
                use serde::de::Error;
                let max = crate::service::MAX_BATCH;
                let mut specs = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(max));
                loop {
                    let i = specs.len();
                    match seq.next_element::<JobSpec>().map_err(|e| A::Error::custom(format!("spec #{i}: {e}")))? {
                        None => return Ok(Batch(specs)),
                        Some(_) if i == max => {
                            return Err(A::Error::custom(format!("more than {max} specs in one batch")));
                        }
                        Some(spec) => specs.push(spec),
                    }
                }
            }
        }
        d.deserialize_seq(Specs)
    }
}

async fn submit(
    State(api): State<Api>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(ApiError::from)?;
    let key = headers.get("idempotency-key").map(|v| v.to_str().map(str::to_string));
    let key = key.transpose().map_err(|_| ApiError::bad("the Idempotency-Key header is not text"))?;
    match parse_submission(&body)? {
        Submission::Many(specs) => {
            if key.is_some() {
                return Err(ApiError::bad(
                    "an Idempotency-Key header names one job; give each spec its idempotency_key",
                ));
            }
            let resp = api.service.submit_jobs(caller.request(SubmitJobsRequest { specs })).await?.into_inner();
            let created = resp.jobs.iter().any(|j| !j.existing);
            Ok(json_of(if created { StatusCode::CREATED } else { StatusCode::OK }, &resp))
        }
        Submission::One(mut spec) => {
            if let Some(key) = key {
                if !spec.idempotency_key.is_empty() && spec.idempotency_key != key {
                    return Err(ApiError::bad("the Idempotency-Key header and the spec's idempotency_key differ"));
                }
                spec.idempotency_key = key;
            }
            let req = SubmitJobRequest { spec: Some(*spec) };
            let resp = api.service.submit_job(caller.request(req)).await?.into_inner();
            let mut answer = json_of(if resp.existing { StatusCode::OK } else { StatusCode::CREATED }, &resp);
            if let Ok(at) = HeaderValue::from_str(&format!("/v1/jobs/{}", resp.job_id)) {
                answer.headers_mut().insert(header::LOCATION, at);
            }
            Ok(answer)
        }
    }
}

/// Whether `status` matches the search text: its id, worker, stolen-from, state, waiting reason or a label.
fn matches(status: &JobStatus, needle: &str) -> bool {
    let state = burst_proto::state_name(status.state());
    [&status.job_id, &status.worker_id, &status.stolen_from, &status.waiting_reason, &state.to_string()]
        .iter()
        .any(|field| field.to_lowercase().contains(needle))
        || status.labels.iter().any(|(k, v)| format!("{k}={v}").to_lowercase().contains(needle))
}

async fn list(State(api): State<Api>, caller: Caller, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let limit = q.count("limit", MAX_PAGE)?.unwrap_or(100).max(1) as usize;
    let states = q
        .all("state")
        .map(|s| burst_proto::parse_state(s).map(|s| s as i32).map_err(|e| ApiError::bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let newest_first = match q.one("order") {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(other) => return Err(ApiError::bad(format!("order {other:?} is not newest or oldest"))),
    };
    let needle = q.one("q").map(|s| s.trim().to_lowercase()).unwrap_or_default();
    let base = ListJobsRequest {
        states,
        labels: q.labels()?,
        newest_first,
        owner: q.one("owner").unwrap_or_default().to_string(),
        ..ListJobsRequest::default()
    };
    let mut page_token = q.one("page_token").unwrap_or_default().to_string();
    let (mut found, mut scanned) = (Vec::new(), 0);
    loop {
        let want = if needle.is_empty() { (limit - found.len()) as u32 } else { MAX_PAGE };
        let req = ListJobsRequest { limit: want, page_token: page_token.clone(), ..base.clone() };
        let page = api.service.list_jobs(caller.request(req)).await?.into_inner();
        scanned += page.jobs.len();
        let mut cut = false;
        for status in page.jobs {
            if found.len() == limit {
                cut = true;
                break;
            }
            page_token = status.job_id.clone();
            if needle.is_empty() || matches(&status, &needle) {
                found.push(status);
            }
        }
        let more = cut || !page.next_page_token.is_empty();
        if !page.next_page_token.is_empty() && !cut {
            page_token = page.next_page_token;
        }
        if found.len() == limit || !more || scanned >= SEARCH_SCAN {
            let next_page_token = if more { page_token } else { String::new() };
            return Ok(json_of(StatusCode::OK, &ListJobsResponse { jobs: found, next_page_token }));
        }
    }
}

async fn get_job(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    if id.contains(':') {
        return Ok(not_allowed(&format!("/v1/jobs/{id}")));
    }
    let job = api.service.get_job(caller.request(GetJobRequest { job_id: id })).await?.into_inner();
    Ok(json_of(StatusCode::OK, &job))
}

async fn cancel_one(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let Some(id) = id.strip_suffix(":cancel") else {
        return Ok(not_allowed(&format!("/v1/jobs/{id}")));
    };
    let req = CancelJobRequest { job_ids: vec![id.to_string()], labels: HashMap::new() };
    let resp = api.service.cancel_job(caller.request(req)).await?.into_inner();
    Ok(json_of(StatusCode::OK, &resp))
}

async fn cancel_many(
    State(api): State<Api>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CancelJobRequest = parse_body(body)?;
    if req.job_ids.is_empty() && req.labels.is_empty() {
        return Err(ApiError::bad("name the jobs to cancel (job_ids) or give a label selector (labels)"));
    }
    let resp = api.service.cancel_job(caller.request(req)).await?.into_inner();
    Ok(json_of(StatusCode::OK, &resp))
}

async fn logs(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let stream = match q.one("stream") {
        None | Some("stdout") => OutputStream::Stdout,
        Some("stderr") => OutputStream::Stderr,
        Some(other) => return Err(ApiError::bad(format!("stream {other:?} is not stdout or stderr"))),
    };
    let tail_lines = q.count("tail", u32::MAX)?.unwrap_or(0);
    let req = JobOutputRequest { job_id: id, stream: stream as i32, follow: q.flag("follow")?, tail_lines };
    let chunks = api.service.stream_job_output(caller.request(req)).await?.into_inner();
    // An error once output has begun can only end the body early: the status line is already sent.
    let body = Body::from_stream(chunks.map(|c| c.map(|c| Bytes::from(c.data)).map_err(std::io::Error::other)));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")], body)
        .into_response())
}

async fn watch(State(api): State<Api>, caller: Caller, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(raw);
    let req = WatchJobsRequest {
        job_ids: q.all("job_id").map(str::to_string).collect(),
        initial: q.flag("initial")?,
        labels: q.labels()?,
        terminal_only: q.flag("terminal_only")?,
    };
    let statuses = api.service.watch_jobs(caller.request(req)).await?.into_inner();
    let events = statuses.scan(false, |ended, item| {
        if *ended {
            return futures::future::ready(None);
        }
        let event = match item {
            Ok(status) => Event::default().event("status").data(to_text(&status)),
            Err(status) => {
                *ended = true;
                Event::default().event("error").data(ApiError::from(status).body().to_string())
            }
        };
        futures::future::ready(Some(Ok::<_, Infallible>(event)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(WATCH_KEEPALIVE)).into_response())
}

async fn workers(State(api): State<Api>, caller: Caller) -> Result<Response, ApiError> {
    let resp = api.service.list_workers(caller.request(ListWorkersRequest {})).await?.into_inner();
    Ok(json_of(StatusCode::OK, &resp))
}

async fn cordon(
    State(api): State<Api>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CordonWorkersRequest = parse_body(body)?;
    let resp = api.service.cordon_workers(caller.request(req)).await?.into_inner();
    Ok(json_of(StatusCode::OK, &resp))
}

async fn stats(State(api): State<Api>, caller: Caller) -> Result<Response, ApiError> {
    let resp = api.service.get_stats(caller.request(GetStatsRequest {})).await?.into_inner();
    Ok(json_of(StatusCode::OK, &resp))
}

async fn history(State(api): State<Api>, caller: Caller) -> Result<Response, ApiError> {
    // Whoever may read the counts may read how they moved.
    api.service.get_stats(caller.request(GetStatsRequest {})).await?;
    let samples = api.history.samples();
    let every = crate::dashboard::SAMPLE_EVERY.as_millis() as u64;
    let body = json!({"sample_every_ms": every, "samples": samples});
    Ok(([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}

async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi::document_text()).into_response()
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError::from_status(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_served_here_has_a_handler_and_ids_are_unique() {
        let mut ids = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(ids.insert(r.id), "{} twice", r.id);
            assert_eq!(handler(r.id).is_some(), !r.probe, "{}", r.id);
            assert!(r.path.starts_with('/'), "{}", r.path);
        }
    }

    #[test]
    fn a_wrong_method_is_told_the_documented_ones_and_an_unknown_path_is_not_found() {
        let allow = |path: &str| {
            let answer = not_allowed(path);
            let allow = answer.headers().get(header::ALLOW).map(|v| v.to_str().unwrap().to_string());
            (answer.status().as_u16(), allow)
        };
        assert_eq!(allow("/v1/jobs/j1"), (405, Some("GET".into())));
        assert_eq!(allow("/v1/jobs/j1:cancel"), (405, Some("POST".into())));
        assert_eq!(allow("/v1/jobs"), (405, Some("POST, GET".into())));
        assert_eq!(allow("/v1/jobs/j1/logs"), (405, Some("GET".into())));
        assert_eq!(allow("/v1/jobs/j1:stop"), (404, None));
        assert_eq!(allow("/v1/jobs/:cancel"), (404, None));
    }

    #[test]
    fn a_submission_is_one_spec_or_a_bounded_array_and_errors_name_the_spec() {
        assert!(matches!(parse_submission(br#" {"process": {"command": "x"}}"#), Ok(Submission::One(_))));
        let Ok(Submission::Many(specs)) = parse_submission(br#"[{}, {"python": {"code": "1"}}]"#) else { panic!() };
        assert_eq!(specs.len(), 2);
        let err = |body: &[u8]| parse_submission(body).err().map(|e| e.message).unwrap_or_default();
        assert!(err(br#"[{}, {"timeout_ms": "x"}]"#).contains("spec #1"));
        assert!(err(b"42").contains("neither"));
        let too_many = format!("[{}]", vec!["{}"; crate::service::MAX_BATCH + 1].join(","));
        assert!(err(too_many.as_bytes()).contains("more than 10000 specs"));
    }

    #[test]
    fn query_values_are_checked() {
        let q = Query::parse(Some("limit=5&label=a=b&label=c=&follow=true&x=1&limit=7".into()));
        assert_eq!(q.count("limit", 10).unwrap(), Some(7));
        assert!(q.count("limit", 6).is_err());
        assert!(q.flag("follow").unwrap());
        assert!(!q.flag("nothing").unwrap());
        let labels = q.labels().unwrap();
        assert_eq!((labels["a"].as_str(), labels["c"].as_str()), ("b", ""));
        assert!(Query::parse(Some("label=novalue".into())).labels().is_err());
        assert!(Query::parse(Some("follow=maybe".into())).flag("follow").is_err());
        assert!(Query::parse(Some("limit=-1".into())).count("limit", 10).is_err());
    }
}
