//! Helpers for tests that run the built `burst` binary as separate processes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

pub const BURST: &str = env!("CARGO_BIN_EXE_burst");

/// A child process killed when the test ends, however it ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; it touches no memory of ours.
        unsafe { libc::kill(self.0.id() as i32, sig) };
    }
}

/// Starts `burst <args>` and returns it with the first line it prints (the bound address).
pub fn serve(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(BURST)
        .args(args)
        .env("BURST_LOG", "warn")
        // Loopback test processes: plaintext, chosen explicitly (tls.rs covers TLS).
        .env("BURST_INSECURE", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("burst starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(!line.trim().is_empty(), "burst {args:?} printed no address");
    (Proc(child), line.trim().to_string())
}

/// [`burst`], with more environment variables.
pub fn burst_env(controller: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BURST)
        .args(args)
        .env("BURST_CONTROLLER", controller)
        .env("BURST_INSECURE", "true")
        .env_remove("BURST_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("burst runs")
}

/// Runs `burst <args>` against `controller` and returns what it did.
pub fn burst(controller: &str, args: &[&str]) -> Output {
    burst_env(controller, args, &[])
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", stdout(o), stderr(o)))
}

/// A number of the canonical JSON mapping: 64-bit ones come as decimal strings, others as numbers.
pub fn num(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `limit`.
pub fn until<T>(limit: std::time::Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
