//! The web dashboard on the controller's HTTP side: `/ui`, one page (no build step, works offline) that reads the
//! HTTP API (`/v1`, [`crate::api`]) with the token the user gives it, so it sees what the same caller would see
//! through the API. Here too: the throughput samples it charts, and the guards every route of the port passes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::metrics::Timings;
use crate::service::ControllerService;

/// The page, served as is.
const PAGE: &str = include_str!("dashboard.html");
/// Throughput samples kept: 10 minutes at one per [`SAMPLE_EVERY`].
const SAMPLES: usize = 120;
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// `/` (to the page) and `/ui`.
pub fn page<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { axum::response::Redirect::temporary("/ui") }))
        .route("/ui", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }))
}

/// The totals of jobs submitted and finished, every [`SAMPLE_EVERY`] over the last minutes.
#[derive(Clone, Default)]
pub struct History(Arc<Mutex<VecDeque<Value>>>);

impl History {
    /// Oldest first: `{"at_ms", "submitted", "finished"}` each.
    pub fn samples(&self) -> Vec<Value> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}

/// Starts sampling; abort the task with the server.
pub fn sample(service: Arc<ControllerService>, timings: Timings) -> (History, tokio::task::JoinHandle<()>) {
    let history = History::default();
    let samples = history.0.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tick.tick().await;
            let submitted = service.submitted_total();
            let finished: u64 = ["succeeded", "failed", "cancelled"]
                .iter()
                .map(|s| timings.finished.get_or_create(&[("state", s)]).get())
                .sum();
            let mut h = samples.lock().unwrap_or_else(|p| p.into_inner());
            if h.len() == SAMPLES {
                h.pop_front();
            }
            h.push_back(json!({"at_ms": burst_proto::now_ms(), "submitted": submitted, "finished": finished}));
        }
    });
    (history, task)
}

/// Wraps `router` in the port's guards: on a controller that asks no credentials (`open`), the host guard
/// ([`guard_host`]); on every controller, no POST from a web page of another origin (a page the user visits
/// could otherwise submit jobs through the user's browser: browsers send `Origin` with such a request, and
/// burst's own page and API clients either send their own origin or none).
pub fn guard(router: Router, open: bool, allowed_hosts: Vec<String>) -> Router {
    let hosts = Arc::new(allowed_hosts);
    router.layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
        let hosts = hosts.clone();
        async move {
            if open && let Err(why) = guard_host(req.headers(), &hosts) {
                return ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", why).into_response();
            }
            if req.method() == Method::POST
                && let Err(why) = same_origin(req.headers())
            {
                return ApiError::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", why).into_response();
            }
            next.run(req).await
        }
    }))
}

/// On a controller that asks no credentials, the HTTP port answers only requests addressed to an IP address,
/// `localhost` or one of `allowed` (`--http-allowed-hosts`): a web page the user visits cannot rename itself to
/// the controller's address (DNS rebinding) and read jobs' specs through the user's browser. With
/// authentication on, the token is what protects it.
pub fn guard_host(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let name = host_name(headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default());
    let ok = name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "host {name:?} may not use the HTTP port of a controller without authentication (a guard against DNS \
             rebinding): reach it by IP address or localhost, or add the name to --http-allowed-hosts"
        )),
    }
}

/// The name in a `Host` value (no port, no brackets).
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    }
}

/// A request with an `Origin` must come from a page of this same host and port.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or_default();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let from = origin.split_once("://").map_or("", |(_, rest)| rest);
    match !host.is_empty() && from.eq_ignore_ascii_case(host) {
        true => Ok(()),
        false => Err(format!("a request from a web page of {origin:?} may not change anything here (cross-origin)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().unwrap());
        }
        h
    }

    fn host(h: &str, allowed: &[&str]) -> bool {
        let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        guard_host(&headers(&[(header::HOST, h)]), &allowed).is_ok()
    }

    #[test]
    fn only_addresses_localhost_and_listed_names_reach_an_open_controller() {
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

    #[test]
    fn only_the_same_origin_or_none_may_post() {
        let h = |origin: &str| headers(&[(header::HOST, "127.0.0.1:9090"), (header::ORIGIN, origin)]);
        assert!(same_origin(&headers(&[(header::HOST, "127.0.0.1:9090")])).is_ok(), "curl sends no Origin");
        assert!(same_origin(&h("http://127.0.0.1:9090")).is_ok());
        assert!(same_origin(&h("https://127.0.0.1:9090")).is_ok());
        assert!(same_origin(&h("http://evil.example")).is_err());
        assert!(same_origin(&h("http://127.0.0.1:9091")).is_err());
        assert!(same_origin(&h("null")).is_err());
    }
}
