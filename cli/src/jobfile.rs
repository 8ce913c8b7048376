//! The JSON Lines jobs file of `burst submit -f`: one job spec per line, e.g.
//!
//! ```text
//! {"process": {"command": "/bin/echo", "args": ["hi"]}, "labels": {"batch": "a"}}
//! {"python": {"code": "print(6*7)"}, "timeout_ms": 5000}
//! {"docker": {"image": "busybox", "command": "echo", "args": ["hi"]}, "resources": {"memory_bytes": 67108864}}
//! ```
//!
//! Blank lines and lines starting with `#` are skipped. Unknown keys are errors, so a typo is caught; every error
//! names its line.

use std::collections::HashMap;

use burst_proto::v1::{self, JobSpec, job_spec::Kind, python_spec::Entry};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    process: Option<Process>,
    python: Option<Python>,
    docker: Option<Docker>,
    #[serde(default)]
    env: HashMap<String, String>,
    #[serde(default)]
    working_dir: String,
    #[serde(default)]
    timeout_ms: u64,
    resources: Option<Resources>,
    #[serde(default)]
    labels: HashMap<String, String>,
    #[serde(default)]
    idempotency_key: String,
    #[serde(default)]
    max_attempts: u32,
    #[serde(default)]
    retry_exit_codes: Vec<i32>,
    #[serde(default)]
    retry_backoff_ms: u64,
    #[serde(default)]
    queue_timeout_ms: u64,
    #[serde(default)]
    output_tail_bytes: u32,
    #[serde(default)]
    pool: String,
    #[serde(default)]
    pool_selector: HashMap<String, String>,
    #[serde(default)]
    expected_runtime_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Process {
    command: String,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Python {
    script: Option<String>,
    module: Option<String>,
    code: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    interpreter: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Docker {
    image: String,
    #[serde(default)]
    command: String,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resources {
    #[serde(default)]
    cpu_millis: u32,
    #[serde(default)]
    memory_bytes: u64,
    #[serde(default)]
    gpus: u32,
}

/// Parses a whole jobs file. `source` names it in errors.
pub fn parse(source: &str, text: &str) -> Result<Vec<JobSpec>, String> {
    let mut specs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let spec = parse_line(line).map_err(|e| format!("{source} line {}: {e}", i + 1))?;
        specs.push(spec);
    }
    if specs.is_empty() {
        return Err(format!("{source} has no jobs"));
    }
    Ok(specs)
}

fn parse_line(line: &str) -> Result<JobSpec, String> {
    let l: Line = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let kind = match (l.process, l.python, l.docker) {
        (Some(p), None, None) => Kind::Process(v1::ProcessSpec { command: p.command, args: p.args }),
        (None, Some(p), None) => {
            let entry = match (p.script, p.module, p.code) {
                (Some(s), None, None) => Entry::Script(s),
                (None, Some(m), None) => Entry::Module(m),
                (None, None, Some(c)) => Entry::Code(c),
                _ => return Err("python needs exactly one of script, module or code".into()),
            };
            Kind::Python(v1::PythonSpec { entry: Some(entry), args: p.args, interpreter: p.interpreter })
        }
        (None, None, Some(d)) => Kind::Docker(v1::DockerSpec { image: d.image, command: d.command, args: d.args }),
        _ => return Err("a job needs exactly one of process, python or docker".into()),
    };
    Ok(JobSpec {
        kind: Some(kind),
        env: l.env,
        working_dir: l.working_dir,
        timeout_ms: l.timeout_ms,
        resources: l.resources.map(|r| v1::Resources {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            gpus: r.gpus,
        }),
        labels: l.labels,
        idempotency_key: l.idempotency_key,
        max_attempts: l.max_attempts,
        retry_exit_codes: l.retry_exit_codes,
        retry_backoff_ms: l.retry_backoff_ms,
        queue_timeout_ms: l.queue_timeout_ms,
        output_tail_bytes: l.output_tail_bytes,
        owner: String::new(),
        pool: l.pool,
        pool_selector: l.pool_selector,
        expected_runtime_ms: l.expected_runtime_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_never_panics_on_100000_mangled_lines() {
        use rand::{Rng, SeedableRng};
        let seeds = [
            r#"{"process": {"command": "/bin/echo", "args": ["hi"]}, "labels": {"b": "1"}, "max_attempts": 3}"#,
            r#"{"python": {"code": "print(1)"}, "env": {"A": "1"}, "timeout_ms": 5}"#,
            r#"{"docker": {"image": "busybox", "args": ["x"]}, "resources": {"cpu_millis": 500}}"#,
        ];
        let noise = b"{}[]\":,0-9aZ \n\t\\\0";
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut parsed = 0;
        for i in 0..100_000 {
            let mut line = seeds[i % seeds.len()].as_bytes().to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..line.len());
                match rng.random_range(0..3) {
                    0 => line[at] = noise[rng.random_range(0..noise.len())],
                    1 => line.insert(at, noise[rng.random_range(0..noise.len())]),
                    _ => {
                        line.remove(at);
                    }
                }
            }
            let text = String::from_utf8_lossy(&line);
            if parse("jobs", &text).is_ok() {
                parsed += 1;
            }
        }
        assert!(parsed > 0, "some mutations still parse");
    }

    #[test]
    fn every_kind_parses() {
        let text = r#"
# a comment
{"process": {"command": "/bin/echo", "args": ["hi"]}, "labels": {"b": "1"}}

{"python": {"code": "print(1)"}, "timeout_ms": 5}
{"docker": {"image": "busybox", "command": "true"}, "resources": {"memory_bytes": 64}}
{"process": {"command": "/bin/true"}, "pool": "cloud", "pool_selector": {"tier": "spot"}, "expected_runtime_ms": 900}
"#;
        let specs = parse("jobs.jsonl", text).unwrap();
        assert_eq!(specs.len(), 4);
        assert_eq!((specs[3].pool.as_str(), specs[3].expected_runtime_ms), ("cloud", 900));
        assert_eq!(specs[3].pool_selector.get("tier").map(String::as_str), Some("spot"));
        assert!(matches!(specs[0].kind, Some(Kind::Process(_))));
        assert_eq!(specs[1].timeout_ms, 5);
        assert_eq!(specs[2].resources.unwrap().memory_bytes, 64);
    }

    #[test]
    fn errors_name_the_line() {
        let text = "{\"process\": {\"command\": \"a\"}}\n{\"process\": {\"comand\": \"a\"}}\n";
        let err = parse("jobs.jsonl", text).unwrap_err();
        assert!(err.starts_with("jobs.jsonl line 2:"), "{err}");
        assert!(err.contains("comand"), "{err}");
        let err = parse("f", "not json").unwrap_err();
        assert!(err.starts_with("f line 1:"), "{err}");
        let err = parse("f", r#"{"env": {}}"#).unwrap_err();
        assert!(err.contains("exactly one of process"), "{err}");
        assert!(parse("f", "\n# only comments\n").is_err());
    }
}
