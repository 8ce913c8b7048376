//! Checks on what clients and workers send, before anything is stored. Each error is one sentence that names the
//! offending field, for an `InvalidArgument` status.

use burst_proto::v1::job_spec::Kind;
use burst_proto::v1::python_spec::Entry;
use burst_proto::v1::{JobSpec, WorkerInfo};

/// Longest id, key, label or env name accepted: generous for humans, small enough to index cheaply.
const MAX_NAME_LEN: usize = 253;
/// Attempts beyond this are a spec mistake, not a retry policy.
const MAX_ATTEMPTS: u32 = 100;
/// The output tail a job may keep in its status: enough for the last lines of a log, small enough that the
/// controller's memory per retained job stays bounded.
pub const MAX_OUTPUT_TAIL: u32 = 4096;
/// A spec's encoded size: room for a long command line and environment, not for smuggling data in a spec
/// (inputs belong in files or object storage).
pub const MAX_SPEC_BYTES: usize = 256 * 1024;
/// Arguments in one command line: what `execve` accepts on Linux in practice is far lower in bytes anyway.
pub const MAX_ARGS: usize = 10_000;
/// Bytes of environment (names and values) one job may set.
pub const MAX_ENV_BYTES: usize = 128 * 1024;
/// Labels on one job, and the longest label value.
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_VALUE: usize = 1024;

pub use burst_proto::MAX_PRIORITY;
/// Jobs one job may depend on (after and after_any together).
pub const MAX_DEPENDENCIES: usize = 1000;
/// Indices in one job array.
pub const MAX_ARRAY: u64 = 10_000_000;

pub fn job_spec(spec: &JobSpec) -> Result<(), String> {
    let size = prost::Message::encoded_len(spec);
    if size > MAX_SPEC_BYTES {
        return Err(format!("the spec is {size} bytes; at most {MAX_SPEC_BYTES}"));
    }
    match &spec.kind {
        None => return Err("spec has no kind: set one of process, python or docker".into()),
        Some(Kind::Process(p)) => {
            if p.command.trim().is_empty() {
                return Err("process.command is empty".into());
            }
            no_nul("process.command", &p.command)?;
            args("process.args", &p.args)?;
        }
        Some(Kind::Python(p)) => {
            match &p.entry {
                None => return Err("python spec needs one of script, module or code".into()),
                Some(Entry::Script(s) | Entry::Module(s) | Entry::Code(s)) if s.trim().is_empty() => {
                    return Err("python script, module or code is empty".into());
                }
                Some(Entry::Script(s) | Entry::Module(s) | Entry::Code(s)) => no_nul("python entry", s)?,
            }
            no_nul("python.interpreter", &p.interpreter)?;
            args("python.args", &p.args)?;
        }
        Some(Kind::Docker(d)) => {
            if d.image.trim().is_empty() {
                return Err("docker.image is empty".into());
            }
            image_reference(&d.image)
                .map_err(|why| format!("docker.image {:?} is not an image reference: {why}", d.image))?;
            no_nul("docker.command", &d.command)?;
            args("docker.args", &d.args)?;
        }
    }
    let env_bytes: usize = spec.env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if env_bytes > MAX_ENV_BYTES {
        return Err(format!("env is {env_bytes} bytes; at most {MAX_ENV_BYTES}"));
    }
    for (k, v) in &spec.env {
        env_name(k)?;
        no_nul("env value", v)?;
    }
    if spec.labels.len() > MAX_LABELS {
        return Err(format!("{} labels; at most {MAX_LABELS}", spec.labels.len()));
    }
    for (k, v) in &spec.labels {
        name("label key", k)?;
        if v.len() > MAX_LABEL_VALUE || v.chars().any(char::is_control) {
            return Err(format!(
                "label {k}: the value must be at most {MAX_LABEL_VALUE} bytes without control characters"
            ));
        }
    }
    no_nul("working_dir", &spec.working_dir)?;
    if spec.idempotency_key.len() > MAX_NAME_LEN {
        return Err(format!("idempotency_key is longer than {MAX_NAME_LEN} bytes"));
    }
    if spec.output_tail_bytes > MAX_OUTPUT_TAIL {
        return Err(format!("output_tail_bytes {} is over the limit of {MAX_OUTPUT_TAIL}", spec.output_tail_bytes));
    }
    if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&spec.priority) {
        return Err(format!("priority {} is outside -{MAX_PRIORITY}..={MAX_PRIORITY}", spec.priority));
    }
    let deps = spec.after.len() + spec.after_any.len();
    if deps > MAX_DEPENDENCIES {
        return Err(format!("{deps} dependencies (after and after_any); at most {MAX_DEPENDENCIES}"));
    }
    for id in spec.after.iter().chain(&spec.after_any) {
        job_id("dependency", id)?;
    }
    if let Some(a) = &spec.array {
        if a.last < a.first {
            return Err(format!("array {}-{} ends before it starts", a.first, a.last));
        }
        let size = u64::from(a.last) - u64::from(a.first) + 1;
        if size > MAX_ARRAY {
            return Err(format!("array {}-{} has {size} indices; at most {MAX_ARRAY}", a.first, a.last));
        }
    }
    if spec.max_attempts > MAX_ATTEMPTS {
        return Err(format!("max_attempts {} is over the limit of {MAX_ATTEMPTS}", spec.max_attempts));
    }
    if !spec.pool.is_empty() {
        burst_proto::check_pool(&spec.pool)?;
    }
    if spec.pool_selector.len() > MAX_LABELS {
        return Err(format!("{} pool_selector entries; at most {MAX_LABELS}", spec.pool_selector.len()));
    }
    for (k, v) in &spec.pool_selector {
        name("pool_selector key", k)?;
        if v.len() > MAX_LABEL_VALUE || v.chars().any(char::is_control) {
            return Err(format!(
                "pool_selector {k}: the value must be at most {MAX_LABEL_VALUE} bytes without control characters"
            ));
        }
    }
    Ok(())
}

pub fn worker_info(info: &WorkerInfo) -> Result<(), String> {
    name("worker_id", &info.worker_id)?;
    if !info.pool.is_empty() {
        burst_proto::check_pool(&info.pool)?;
    }
    if info.slots == 0 {
        return Err("slots must be at least 1".into());
    }
    Ok(())
}

/// Ids, label keys: 1 to 253 characters of letters, digits, `.`, `_`, `-`, `/`; not starting with `.` or `/`.
/// A job id: a name ([`name`]), or an index of a job array, `<array id>:<index>`.
pub fn job_id(what: &str, s: &str) -> Result<(), String> {
    match s.rsplit_once(':') {
        Some((array, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => name(what, array),
        _ => name(what, s),
    }
}

pub fn name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && !s.starts_with(['.', '/'])
        && !s.contains("..")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(format!("{what} {s:?} is not a valid name: use 1 to {MAX_NAME_LEN} letters, digits, '.', '_', '-' or '/'"))
    }
}

/// A Docker image reference: `[host[:port]/]path[:tag][@algorithm:hex]`, path components lowercase letters and
/// digits joined by `.`, `_`, `__` or dashes (Docker's own grammar), at most 255 characters before the digest.
/// Anything else (`--privileged`, spaces, upper case, `..`) never reaches `docker run`.
fn image_reference(image: &str) -> Result<(), String> {
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let (algorithm, hex) = digest.split_once(':').ok_or("a digest is algorithm:hex")?;
        let algorithm_ok = !algorithm.is_empty() && algorithm.chars().all(|c| c.is_ascii_alphanumeric());
        if !algorithm_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("a digest is algorithm:hex (sha256:<64 hex digits>)".into());
        }
    }
    if rest.is_empty() || rest.len() > 255 {
        return Err("the name is empty or longer than 255 characters".into());
    }
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last = rest.rsplit_once('/').map_or(rest, |(_, last)| last);
    let (name, tag) = match last.split_once(':') {
        Some((_, tag)) => (&rest[..rest.len() - tag.len() - 1], Some(tag)),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let first_ok = tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        let tag_ok = tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !first_ok || !tag_ok || tag.len() > 128 {
            return Err(format!("tag {tag:?} is not letters, digits, '_', '.', '-'"));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let host = (parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost")).then(|| parts.remove(0));
    if let Some(host) = host {
        let (domain, port) = host.split_once(':').map_or((host, None), |(d, p)| (d, Some(p)));
        let domain_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if !domain_ok || port.is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit())) {
            return Err(format!("registry {host:?} is not a host name with an optional port"));
        }
    }
    for part in parts {
        // Separators: one '.', one '_', "__", or any run of '-'.
        let squeezed = part.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-");
        let separators_ok = squeezed.replace("__", "_").split(['.', '_', '-']).all(|piece| !piece.is_empty());
        let component_ok = !part.is_empty()
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric())
            && !part.contains("..")
            && !part.contains("___");
        if !component_ok || !separators_ok {
            return Err(format!("path component {part:?} is not lowercase letters and digits joined by . _ __ or -"));
        }
    }
    Ok(())
}

fn env_name(k: &str) -> Result<(), String> {
    let ok = !k.is_empty()
        && k.len() <= MAX_NAME_LEN
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("env name {k:?} is not valid: use letters, digits and '_', not starting with a digit"))
    }
}

fn args(what: &str, args: &[String]) -> Result<(), String> {
    if args.len() > MAX_ARGS {
        return Err(format!("{what} has {} arguments; at most {MAX_ARGS}", args.len()));
    }
    args.iter().try_for_each(|a| no_nul(what, a))
}

fn no_nul(what: &str, s: &str) -> Result<(), String> {
    if s.contains('\0') { Err(format!("{what} contains a NUL byte")) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burst_proto::v1::{DockerSpec, ProcessSpec, PythonSpec};

    fn process(cmd: &str) -> JobSpec {
        JobSpec { kind: Some(Kind::Process(ProcessSpec { command: cmd.into(), args: vec![] })), ..JobSpec::default() }
    }

    #[test]
    fn good_specs_pass() {
        assert!(job_spec(&process("/bin/true")).is_ok());
        let py = JobSpec {
            kind: Some(Kind::Python(PythonSpec {
                entry: Some(Entry::Code("print(1)".into())),
                ..PythonSpec::default()
            })),
            ..JobSpec::default()
        };
        assert!(job_spec(&py).is_ok());
    }

    #[test]
    fn image_references_follow_dockers_grammar() {
        for good in [
            "busybox",
            "busybox:1",
            "library/python:3.12-slim",
            "ghcr.io/org/app:v1.2.3",
            "localhost:5000/my_app__x/tool-x",
            "a--b",
            "registry.example.com:443/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "burst:local",
        ] {
            assert_eq!(image_reference(good), Ok(()), "{good}");
        }
        for bad in [
            "--privileged",
            "Busybox",
            "a..b",
            "a/../b",
            "a b",
            "a:",
            "a:-x",
            "/abs",
            "a/",
            "host:/x",
            "a@sha256:xyz",
            "a___b",
            "a__b.-c",
            "-x/y",
            "reg-.io/x",
        ] {
            assert!(image_reference(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn bad_specs_name_the_problem() {
        let cases: Vec<(JobSpec, &str)> = vec![
            (JobSpec::default(), "no kind"),
            (process(""), "process.command is empty"),
            (process("a\0b"), "NUL"),
            (
                JobSpec { kind: Some(Kind::Python(PythonSpec::default())), ..JobSpec::default() },
                "script, module or code",
            ),
            (
                JobSpec {
                    kind: Some(Kind::Docker(DockerSpec { image: "--privileged".into(), ..DockerSpec::default() })),
                    ..JobSpec::default()
                },
                "not an image reference",
            ),
            (JobSpec { env: [("1BAD".to_string(), "x".to_string())].into(), ..process("x") }, "env name"),
            (JobSpec { max_attempts: 1000, ..process("x") }, "max_attempts"),
            (
                JobSpec {
                    kind: Some(Kind::Process(ProcessSpec { command: "x".into(), args: vec!["a".into(); 10_001] })),
                    ..JobSpec::default()
                },
                "10001 arguments",
            ),
            (JobSpec { env: [("BIG".to_string(), "x".repeat(200_000))].into(), ..process("x") }, "env is"),
            (JobSpec { working_dir: "x".repeat(300_000), ..process("x") }, "the spec is"),
            (
                JobSpec { labels: (0..65).map(|i| (format!("l{i}"), String::new())).collect(), ..process("x") },
                "65 labels",
            ),
            (JobSpec { labels: [("k".to_string(), "a\nb".to_string())].into(), ..process("x") }, "control"),
            (JobSpec { labels: [("../k".to_string(), String::new())].into(), ..process("x") }, "label key"),
            (JobSpec { idempotency_key: "k".repeat(300), ..process("x") }, "idempotency_key"),
            (JobSpec { pool: "Cloud".into(), ..process("x") }, "pool name \"Cloud\""),
            (
                JobSpec { pool_selector: [("../k".to_string(), "v".to_string())].into(), ..process("x") },
                "pool_selector key",
            ),
        ];
        for (spec, want) in cases {
            let err = job_spec(&spec).unwrap_err();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    /// A random string mixing the characters validation cares about (separators, dots, NUL, control, unicode).
    fn junk(rng: &mut impl rand::Rng, max: usize) -> String {
        const ALPHABET: &[char] =
            &['a', 'Z', '0', '.', '/', '_', '-', ' ', '\0', '\n', '$', '`', ';', 'é', '\u{202e}', '='];
        let len = rng.random_range(0..=max);
        (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())]).collect()
    }

    #[test]
    fn validation_never_panics_and_what_it_accepts_is_within_its_limits() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut accepted = 0;
        for i in 0..100_000 {
            let kind = match i % 4 {
                0 => None,
                1 => Some(Kind::Process(ProcessSpec {
                    command: junk(&mut rng, 12),
                    args: vec![junk(&mut rng, 8); rng.random_range(0..4)],
                })),
                2 => Some(Kind::Python(PythonSpec {
                    entry: Some(Entry::Code(junk(&mut rng, 12))),
                    ..PythonSpec::default()
                })),
                _ => Some(Kind::Docker(DockerSpec { image: junk(&mut rng, 12), ..DockerSpec::default() })),
            };
            let spec = JobSpec {
                kind,
                env: [(junk(&mut rng, 6), junk(&mut rng, 6))].into(),
                labels: [(junk(&mut rng, 6), junk(&mut rng, 6))].into(),
                working_dir: junk(&mut rng, 6),
                idempotency_key: junk(&mut rng, 300),
                max_attempts: rng.random_range(0..200),
                output_tail_bytes: rng.random_range(0..5000),
                ..JobSpec::default()
            };
            if job_spec(&spec).is_ok() {
                accepted += 1;
                assert!(spec.env.keys().all(|k| !k.is_empty() && !k.contains(['\0', '=', '/'])), "{spec:?}");
                assert!(spec.labels.keys().all(|k| !k.contains("..") && !k.starts_with('/')), "{spec:?}");
                assert!(spec.max_attempts <= MAX_ATTEMPTS && spec.output_tail_bytes <= MAX_OUTPUT_TAIL);
            }
            let id = junk(&mut rng, 20);
            if name("job_id", &id).is_ok() {
                assert!(
                    !id.contains("..") && !id.starts_with('/') && id.chars().all(|c| c.is_ascii_graphic()),
                    "{id:?}"
                );
            }
        }
        assert!(accepted >= 10, "the generator also makes valid specs ({accepted})");
    }

    #[test]
    fn worker_ids_refuse_traversal_and_junk() {
        for bad in ["", "../x", "/abs", "a b", "a\nb", &"x".repeat(300)] {
            assert!(name("worker_id", bad).is_err(), "{bad:?}");
        }
        assert!(name("worker_id", "worker-0.pod_1").is_ok());
    }
}
