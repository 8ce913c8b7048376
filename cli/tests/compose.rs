//! The Compose workflow for real: build the image locally from the test's `burst` binary (deploy/image.sh), bring
//! up a controller and three workers with deploy/compose.yaml, run jobs through the CLI, read one's output and
//! the controller's metrics, and tear it all down.
//! Skips, saying why, where docker, docker-compose or busybox is missing.

mod common;
mod procs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use burst_proto::testing::missing_tool;
use procs::{BURST, burst, json, stderr, stdout};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn have(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success())
}

/// Brings the project down (and its volumes) when the test ends, however it ends.
struct Project {
    name: String,
    env: Vec<(&'static str, String)>,
}

impl Project {
    fn compose(&self, args: &[&str]) -> std::process::Output {
        let file = repo().join("deploy/compose.yaml");
        Command::new("docker-compose")
            .args(["-f", file.to_str().unwrap(), "-p", &self.name])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--timeout", "5"]);
    }
}

#[test]
fn compose_runs_a_controller_and_three_workers_from_the_local_image() {
    if !have("docker", &["version"]) || !have("docker-compose", &["version"]) {
        missing_tool("compose test", "docker or docker-compose is missing");
        return;
    }
    if !Path::new("/bin/busybox").exists() && !have("busybox", &["true"]) {
        missing_tool("compose test", "busybox missing (apt-get install busybox-static; .ci/run does)");
        return;
    }
    let image = "burst:compose-test";
    let built = Command::new(repo().join("deploy/image.sh")).args([BURST, image]).output().unwrap();
    assert!(built.status.success(), "image.sh failed: {}", stderr(&built));

    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (port, http_port) = (free(), free());
    let project = Project {
        name: format!("bursttest{}", std::process::id()),
        env: vec![
            ("BURST_IMAGE", image.to_string()),
            ("BURST_PORT", port.to_string()),
            ("BURST_HTTP_PORT", http_port.to_string()),
        ],
    };
    let up = project.compose(&["up", "-d"]);
    assert!(up.status.success(), "compose up failed: {}", stderr(&up));
    let url = format!("http://127.0.0.1:{port}");

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let o = burst(&url, &["workers", "-o", "json"]);
        if o.status.success() && json(&o).as_array().is_some_and(|w| w.len() == 3) {
            break;
        }
        assert!(Instant::now() < deadline, "3 workers never registered: {}", stderr(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = burst(
        &url,
        &["submit", "--count", "12", "--wait", "process", "/bin/sh", "-c", "echo hi from $BURST_WORKER_ID"],
    );
    assert!(o.status.success(), "jobs failed: {}", stderr(&o));
    let jobs = json(&burst(&url, &["list", "-o", "json"]));
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 12);
    assert!(jobs.iter().all(|j| j["state"] == "JOB_STATE_SUCCEEDED"));
    let workers: std::collections::BTreeSet<&str> = jobs.iter().filter_map(|j| j["worker_id"].as_str()).collect();
    assert!(workers.len() >= 2, "the jobs spread over the containers: {workers:?}");
    assert!(workers.iter().all(|w| w.starts_with("worker-")));

    // A job's output, relayed by the controller from the worker's container; the HTTP side on its own port.
    let id = jobs[0]["job_id"].as_str().unwrap();
    let o = burst(&url, &["logs", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("hi from {}\n", jobs[0]["worker_id"].as_str().unwrap()));
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    let (code, metrics) = common::http(http, "GET", "/metrics", &[], "");
    assert_eq!(code, 200);
    assert!(metrics.contains("burst_controller_jobs_submitted_total 12"), "{metrics}");
    assert_eq!(common::http(http, "GET", "/ui", &[], "").0, 200);
}
