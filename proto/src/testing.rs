//! Test support used by the crates' integration tests: what a test does when an external tool it needs (helm,
//! docker, busybox, chromedriver, setsid, the Kubernetes API server) is missing, and waiting on a condition
//! with a deadline.
//!
//! # Guarantees
//! - Outside CI a missing tool is a skip: `SKIPPED <test>: <why>` on stdout, and the test returns and passes,
//!   so a developer's machine without the tool still runs the rest of the suite.
//! - Under CI (`CI=true` or `CI=1`) a missing tool is a failure: the runner is meant to have every tool
//!   installed, and a skip there would hide a broken setup behind a green build.

/// Reports that `test` cannot run because of `why` (a missing tool, and how to install it). Under CI it panics,
/// failing the test; otherwise it prints `SKIPPED {test}: {why}` and returns, and the caller returns too.
pub fn missing_tool(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: {why} (CI=true: a missing tool is a failure, not a skip)");
    }
    println!("SKIPPED {test}: {why}");
}

/// Whether this process runs under CI: the environment variable `CI` is `true` or `1`.
pub fn in_ci() -> bool {
    ci_value_means_ci(std::env::var("CI").ok().as_deref())
}

/// What a value of `CI` means: `true` (any case) or `1` is CI; unset, empty, `false`, `0` or anything else is not.
fn ci_value_means_ci(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Polls `check` every `every` until it gives `Some`, failing the test with `what` after `limit`: how tests wait
/// on a condition instead of sleeping.
pub async fn eventually_every<T, F, Fut>(
    every: std::time::Duration,
    limit: std::time::Duration,
    what: &str,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::ci_value_means_ci;

    #[test]
    fn only_true_or_one_means_ci() {
        for (value, ci) in [
            (None, false),
            (Some(""), false),
            (Some("true"), true),
            (Some("TRUE"), true),
            (Some("True"), true),
            (Some("1"), true),
            (Some("false"), false),
            (Some("0"), false),
            (Some("yes"), false),
        ] {
            assert_eq!(ci_value_means_ci(value), ci, "CI={value:?}");
        }
    }
}
