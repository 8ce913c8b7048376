//! The JSON of burst's messages, wherever it is shown: the CLI's `-o json`, the controller's HTTP API and its
//! dashboard. It is the canonical protobuf JSON mapping, generated from the .proto files (pbjson, in the build
//! script): field names as the .proto files spell them (the mapping's "use proto field names" option; parsers
//! take lowerCamelCase too), enums by name (`JOB_STATE_RUNNING`), 64-bit integers as decimal strings, a oneof's
//! member as a field of its own (`{"process": {...}}`), and every field shown even when it holds its default
//! (but an unset `optional` one).

use serde_json::Value;

/// `message` as JSON text (a slice of messages: a JSON array), without building a [`Value`] first.
pub fn to_text<T: serde::Serialize + ?Sized>(message: &T) -> String {
    // The generated impls only fail on a map key that is not a string, which burst's messages do not have.
    serde_json::to_string(message).unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}).to_string())
}

/// `message` as a JSON [`Value`], to look into.
pub fn to_value<T: serde::Serialize>(message: &T) -> Value {
    serde_json::to_value(message).unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{JobSpec, JobState, JobStatus, ProcessSpec, job_spec::Kind};

    #[test]
    fn messages_map_canonically_and_parse_back_from_either_spelling() {
        let status = JobStatus {
            job_id: "j".into(),
            state: JobState::Running as i32,
            submitted_at_ms: 1_700_000_000_123,
            exit_code: None,
            ..JobStatus::default()
        };
        let v = to_value(&status);
        assert_eq!(v["state"], "JOB_STATE_RUNNING");
        assert_eq!(v["submitted_at_ms"], "1700000000123");
        assert_eq!(v["attempt"], 0, "defaults are shown");
        assert!(v.get("exit_code").is_none(), "an unset optional is not");
        let spec: JobSpec = serde_json::from_str(
            r#"{"process": {"command": "/bin/echo", "args": ["hi"]}, "timeoutMs": "5", "max_attempts": 2}"#,
        )
        .unwrap();
        assert_eq!(
            spec.kind,
            Some(Kind::Process(ProcessSpec { command: "/bin/echo".into(), args: vec!["hi".into()] }))
        );
        assert_eq!((spec.timeout_ms, spec.max_attempts), (5, 2));
        let back: JobSpec = serde_json::from_value(to_value(&spec)).unwrap();
        assert_eq!(back, spec);
        let text: Value = serde_json::from_str(&to_text(std::slice::from_ref(&spec))).unwrap();
        assert_eq!(text, serde_json::json!([to_value(&spec)]), "text and value agree");
        let err = serde_json::from_str::<JobSpec>(r#"{"proces": {}}"#).unwrap_err().to_string();
        assert!(err.contains("proces"), "an unknown field is named: {err}");
    }
}
