//! The web dashboard, in a real headless browser (Debian's chromium, driven through chromedriver's WebDriver
//! API): the page loads, shows a submitted job, follows it from running to succeeded and shows its output. And
//! its API under a tokens file: refused without a token, scoped to the caller's jobs with one.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burst_cli::local::ClusterOptions;
use burst_proto::testing::missing_tool;
use common::{cluster, http, sh, submit};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

/// A chromedriver process, killed when dropped.
struct Driver(std::process::Child, SocketAddr);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Driver {
    /// Starts chromedriver on a free port, or says why it cannot (not installed).
    fn start() -> Result<Driver, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("chromedriver cannot start ({e}); install Debian's chromium and chromium-driver"))?;
        let driver = Driver(child, SocketAddr::from(([127, 0, 0, 1], port)));
        let deadline = Instant::now() + LONG;
        loop {
            if std::net::TcpStream::connect(driver.1).is_ok() {
                let (code, body) = http(driver.1, "GET", "/status", &[], "");
                if code == 200 && body.contains("\"ready\":true") {
                    return Ok(driver);
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let (code, answer) = http(self.1, method, path, &[], &body);
        let value: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{code} {answer}: {e}"));
        assert_eq!(code, 200, "WebDriver {method} {path}: {value}");
        value["value"].clone()
    }
}

/// A headless browser session.
struct Browser<'a> {
    driver: &'a Driver,
    session: String,
}

impl<'a> Browser<'a> {
    fn open(driver: &'a Driver) -> Self {
        let args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"];
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"args": args}}}});
        let session = driver.call("POST", "/session", caps)["sessionId"].as_str().unwrap().to_string();
        Browser { driver, session }
    }

    fn go(&self, url: &str) {
        self.driver.call("POST", &format!("/session/{}/url", self.session), json!({"url": url}));
    }

    /// The text of the element with `id` ("" while it does not exist).
    fn text(&self, id: &str) -> String {
        let script = "const e = document.getElementById(arguments[0]); return e ? e.innerText : '';";
        let path = format!("/session/{}/execute/sync", self.session);
        self.driver.call("POST", &path, json!({"script": script, "args": [id]})).as_str().unwrap_or("").to_string()
    }

    /// Waits until the element with `id` shows every one of `wanted`.
    fn until_shows(&self, id: &str, wanted: &[&str]) -> String {
        let deadline = Instant::now() + LONG;
        loop {
            let text = self.text(id);
            if wanted.iter().all(|w| text.contains(w)) {
                return text;
            }
            assert!(Instant::now() < deadline, "#{id} never showed {wanted:?}; it shows:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = http(self.driver.1, "DELETE", &format!("/session/{}", self.session), &[], "");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_job_and_follows_it_to_the_end_in_a_browser() {
    let driver = match Driver::start() {
        Ok(d) => d,
        Err(why) => {
            missing_tool("browser test", &why);
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let opts = ClusterOptions {
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ClusterOptions::new(1, 1, dir.path().join("out"))
    };
    let c = cluster(opts).await;
    let http_addr = c.controller.http.unwrap();
    let mut client = c.client().await.unwrap();
    let gate = dir.path().join("gate");
    let script = format!("echo hello-from-the-job; while [ ! -e {} ]; do sleep 0.02; done", gate.display());
    let id = submit(&mut client, vec![sh(&script)]).await.remove(0);

    tokio::task::spawn_blocking(move || {
        let browser = Browser::open(&driver);
        browser.go(&format!("http://{http_addr}/ui#job={id}"));
        // The list and the job's panel show it running, with what it printed so far, and the worker busy.
        browser.until_shows("jobs", &[&id, "running"]);
        browser.until_shows("detail-body", &["running", "worker-00"]);
        browser.until_shows("detail-stdout", &["hello-from-the-job"]);
        browser.until_shows("workers", &["worker-00", "1/1"]);
        // The fair-share table: the one submitter (no credentials: anonymous) holds the one slot.
        browser.until_shows("submitters", &["anonymous", "1.0"]);
        std::fs::write(&gate, "").unwrap();
        // Followed to the end without reloading the page.
        browser.until_shows("detail-body", &["succeeded", "exit 0"]);
        browser.until_shows("counts", &["1\nsucceeded"]);
        // Searching by id finds it; an unknown text finds nothing.
        let search = format!("/v1/jobs?q={}", &id[..8]);
        let (code, body) = http(http_addr, "GET", &search, &[], "");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(&id), "{body}");
        let (_, none) = http(http_addr, "GET", "/v1/jobs?q=no-such-thing", &[], "");
        assert!(!none.contains(&id), "{none}");
        // No credentials here, so only requests addressed to an IP or localhost are answered (DNS rebinding).
        let (code, body) = http(http_addr, "GET", "/v1/stats", &["Host: evil.example:80"], "");
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("--http-allowed-hosts"), "{body}");
        assert_eq!(http(http_addr, "GET", "/v1/stats", &["Host: localhost"], "").0, 200);
        assert_eq!(http(http_addr, "GET", "/metrics", &["Host: evil.example"], "").0, 200, "metrics stay open");
    })
    .await
    .unwrap();
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_api_needs_a_token_when_the_api_does_and_shows_only_the_callers_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let entries =
        [("alice", "submit", "alice-secret-token-0123456789"), ("bob", "submit", "bob-secret-token-0123456789ab")];
    let tokens = common::tokens_file(dir.path(), &entries);
    let config = burst_controller::ControllerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        tokens_file: Some(tokens),
        ..burst_controller::ControllerConfig::default()
    };
    let controller = burst_controller::start(config).await.unwrap();
    let url = format!("http://{}", controller.addr);
    let bearer = |t: &str| burst_proto::auth::Bearer::new(Some(t)).unwrap();
    let mut alice = burst_cli::client::connect_with(&url, bearer("alice-secret-token-0123456789")).await.unwrap();
    let id = submit(&mut alice, vec![sh("true")]).await.remove(0);
    let addr = controller.http.unwrap();
    tokio::task::spawn_blocking(move || {
        let (code, body) = http(addr, "GET", "/v1/jobs", &[], "");
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("token"), "{body}");
        let (code, _) = http(addr, "GET", "/v1/stats", &["Authorization: Bearer wrong"], "");
        assert_eq!(code, 401);
        let (code, body) = http(addr, "GET", "/v1/jobs", &["Authorization: Bearer alice-secret-token-0123456789"], "");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(&id), "alice sees her job: {body}");
        let (code, body) = http(addr, "GET", "/v1/jobs", &["Authorization: Bearer bob-secret-token-0123456789ab"], "");
        assert_eq!(code, 200, "{body}");
        assert!(!body.contains(&id), "bob does not see alice's job: {body}");
        let (code, _) =
            http(addr, "GET", &format!("/v1/jobs/{id}"), &["Authorization: Bearer bob-secret-token-0123456789ab"], "");
        assert_eq!(code, 403, "bob may not open alice's job");
        // Health and the page itself need no token; the page asks for one.
        assert_eq!(http(addr, "GET", "/healthz", &[], "").0, 200);
        let (code, page) = http(addr, "GET", "/ui", &[], "");
        assert_eq!(code, 200);
        assert!(page.contains("API token"));
    })
    .await
    .unwrap();
    controller.shutdown().await.unwrap();
}
