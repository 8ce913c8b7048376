//! A scripted Kubernetes API server: a kube `Client` over a `tower_test` mock pair. Each test states the
//! requests the reconciler must make, in order, and what each gets back; a missing, extra or different request
//! fails the test (an unexpected one is answered by no one, so the reconcile under test never finishes and its
//! deadline fails the test).

#![allow(dead_code)]

use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

/// How long a test waits for the reconciler's next request or its end.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// A request the reconciler made, waiting for its answer.
pub struct Call {
    pub method: String,
    /// Path and query, e.g. `/api/v1/namespaces/jobs/configmaps/demo-config?fieldManager=...`.
    pub uri: String,
    pub body: Value,
    reply: SendResponse<Response<Body>>,
}

pub fn client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer { handle })
}

impl ApiServer {
    /// The next request, which must be `method` on a path starting with `path`.
    pub async fn expect(&mut self, method: &str, path: &str) -> Call {
        self.expect_one_of(&[method], path).await
    }

    /// The next request, which must be one of `methods` on a path starting with `path`.
    pub async fn expect_one_of(&mut self, methods: &[&str], path: &str) -> Call {
        let method = methods.join(" or ");
        let next = tokio::time::timeout(DEADLINE, self.handle.next_request()).await;
        let (request, reply) = next
            .unwrap_or_else(|_| panic!("no request within {DEADLINE:?}; expected {method} {path}"))
            .unwrap_or_else(|| panic!("the client went away; expected {method} {path}"));
        let method_seen = request.method().to_string();
        let uri = request.uri().to_string();
        let bytes = request.into_body().collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("a JSON body") };
        let known = methods.contains(&method_seen.as_str());
        assert!(known, "expected {method} {path}, got {method_seen} {uri}\n{body:#}");
        assert!(uri.starts_with(path), "expected {method} {path}, got {method_seen} {uri}\n{body:#}");
        Call { method: method_seen, uri, body, reply }
    }

    /// Expects an Event recorded on an object (a new one, or a repeat of a recent one, which the recorder
    /// patches as a series), answers it, and returns (type, reason, note).
    pub async fn expect_event(&mut self, ns: &str) -> (String, String, String) {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{ns}/events");
        let call = self.expect_one_of(&["POST", "PATCH"], &path).await;
        let ev = call.body.clone();
        call.reply(StatusCode::CREATED, ev.clone());
        let field = |k: &str| ev[k].as_str().unwrap_or_default().to_string();
        (field("type"), field("reason"), field("note"))
    }
}

impl Call {
    pub fn reply(self, code: StatusCode, body: Value) {
        let bytes = serde_json::to_vec(&body).expect("a JSON reply");
        let response = Response::builder().status(code).body(Body::from(bytes)).expect("a response");
        self.reply.send_response(response);
    }

    /// Answers with what was sent (what a server-side apply of a new object returns), plus `status`.
    pub fn echo_with_status(self, status: Value) {
        let mut body = self.body.clone();
        if !status.is_null() {
            body["status"] = status;
        }
        self.reply(StatusCode::OK, body);
    }

    pub fn not_found(self) {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "not found", "reason": "NotFound", "code": 404
        });
        self.reply(StatusCode::NOT_FOUND, body);
    }

    /// The query parameter `key`, if present.
    pub fn query(&self, key: &str) -> Option<String> {
        let query = self.uri.split_once('?')?.1;
        query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
    }
}

/// Awaits a reconcile task with the test deadline.
pub async fn finish<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the reconcile did not finish in time")
        .expect("the reconcile panicked")
}

/// "Mounts" a Secret: writes each of its keys as a file in `dir`, as a Secret volume would.
pub fn mount_secret(dir: &std::path::Path, secret: &k8s_openapi::api::core::v1::Secret) {
    std::fs::create_dir_all(dir).expect("a mount dir");
    for (key, bytes) in burst_operator::cluster::tls::data_of(secret) {
        std::fs::write(dir.join(key), bytes).expect("a mounted file");
    }
}

/// The TLS files of certificate `name` in a mounted TLS Secret.
pub fn tls_files(dir: &std::path::Path, name: &str) -> burst_proto::tls::TlsFiles {
    burst_proto::tls::TlsFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
        ca: dir.join("ca.pem"),
    }
}
