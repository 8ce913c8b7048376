//! The JSON Lines jobs file of `burst submit -f`: one job spec per line, e.g.
//!
//! ```text
//! {"process": {"command": "/bin/echo", "args": ["hi"]}, "labels": {"batch": "a"}}
//! {"python": {"code": "print(6*7)"}, "timeout_ms": 5000}
//! {"docker": {"image": "busybox", "command": "echo", "args": ["hi"]}, "resources": {"memory_bytes": 67108864}}
//! ```
//!
//! Each line is a JobSpec in the canonical protobuf JSON mapping (field names as above or lowerCamelCase; 64-bit
//! numbers as numbers or strings). Blank lines and lines starting with `#` are skipped. Unknown keys are errors, so a typo is caught; every error
//! names its line.

use burst_proto::v1::JobSpec;

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

/// One line: a JobSpec in the canonical protobuf JSON mapping (`burst_proto::json`), the body `POST /v1/jobs`
/// takes too, checked as the controller checks it so a mistake is reported with its line.
fn parse_line(line: &str) -> Result<JobSpec, String> {
    let spec: JobSpec = serde_json::from_str(line).map_err(|e| {
        // The file's line is named by the caller; serde's own "at line 1" would be a second, wrong one.
        let text = e.to_string();
        let what = text.rsplit_once(" at line ").map_or(text.as_str(), |(what, _)| what);
        format!("{what} (column {})", e.column())
    })?;
    burst_controller::validate::job_spec(&spec)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burst_proto::v1::job_spec::Kind;

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
        assert!(!err.contains("line 1") && err.contains("column"), "one line number, the file's: {err}");
        let err = parse("f", "not json").unwrap_err();
        assert!(err.starts_with("f line 1:"), "{err}");
        let err = parse("f", r#"{"env": {}}"#).unwrap_err();
        assert!(err.contains("no kind"), "{err}");
        let err = parse("f", r#"{"process": {}}"#).unwrap_err();
        assert!(err.contains("process.command is empty"), "{err}");
        assert!(parse("f", "\n# only comments\n").is_err());
    }
}
