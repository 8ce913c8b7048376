//! Pools of workers and the placement policies, as users run them: a controller, an `onprem` worker and an
//! elastic `cloud` worker as separate processes, jobs submitted and read with the CLI.

mod procs;

use std::time::Duration;

use procs::{burst, json, num, serve, stderr, stdout, until};

/// A worker of one slot and no queue in `pool`.
fn worker(controller: &str, pool: &str, dir: &std::path::Path) -> procs::Proc {
    let out = dir.join(pool);
    let args = ["worker", "--controller", controller, "--listen", "127.0.0.1:0", "--slots", "1"];
    let more = ["--queue-capacity", "0", "--pool", pool, "--worker-id", pool, "--output-dir", out.to_str().unwrap()];
    serve(&[&args[..], &more[..]].concat()).0
}

fn submit(url: &str, args: &[&str]) -> String {
    let o = burst(url, &[&["submit"], args].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

fn status(url: &str, id: &str) -> serde_json::Value {
    json(&burst(url, &["status", id, "-o", "json"]))[0].clone()
}

/// Waits for job `id` to leave the queue and returns its status.
fn placed(url: &str, id: &str) -> serde_json::Value {
    until(Duration::from_secs(30), "the job to be placed", || {
        let s = status(url, id);
        (s["state"] != "JOB_STATE_QUEUED").then_some(s)
    })
}

#[test]
fn a_wait_job_takes_the_cheap_pool_inside_its_budget_and_spills_over_to_the_elastic_one_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let controller = [
        "controller",
        "--listen",
        "127.0.0.1:0",
        "--ephemeral",
        "--pool",
        "onprem=0",
        "--pool",
        "cloud=3:elastic",
        "--policy",
        "wait",
        "--wait-factor",
        "2",
    ];
    let (_controller, addr) = serve(&controller);
    let url = format!("http://{addr}");
    let _onprem = worker(&addr, "onprem", dir.path());
    let _cloud = worker(&addr, "cloud", dir.path());
    until(Duration::from_secs(30), "both workers", || {
        let w = json(&burst(&url, &["workers", "-o", "json"]));
        (w.as_array().unwrap().len() == 2).then_some(())
    });
    let workers = json(&burst(&url, &["workers", "-o", "json"]));
    let mut pools: Vec<&str> =
        workers.as_array().unwrap().iter().map(|w| w["info"]["pool"].as_str().unwrap()).collect();
    pools.sort();
    assert_eq!(pools, ["cloud", "onprem"]);

    // 1. A slot frees on onprem inside the waiting job's 2 s budget: it runs there, although the cloud is idle.
    let short = submit(&url, &["process", "/bin/sleep", "0.3"]);
    let waits = submit(&url, &["process", "/bin/true"]);
    assert_eq!(placed(&url, &short)["pool"], "onprem");
    let s = status(&url, &waits);
    if s["state"] == "JOB_STATE_QUEUED" {
        let why = s["waiting_reason"].as_str().unwrap();
        assert!(why.starts_with("waits for pool onprem until"), "{why}");
        assert!(why.contains("then may go to cloud"), "{why}");
    }
    let s = placed(&url, &waits);
    assert_eq!((s["pool"].as_str(), s["spilled"].as_bool()), (Some("onprem"), Some(false)), "{s}");
    let o = burst(&url, &["wait", &short, &waits]);
    assert!(o.status.success(), "{}", stderr(&o));

    // 2. Onprem stays busy past the budget: the job spills over to the cloud, about 2 s after its submission.
    let long = submit(&url, &["process", "/bin/sleep", "30"]);
    assert_eq!(placed(&url, &long)["pool"], "onprem");
    let spills = submit(&url, &["process", "/bin/true"]);
    // Placed is not yet started: a status read while the job is leased has no start time (it read as 0 ms of
    // waiting on a loaded machine).
    let s = until(Duration::from_secs(30), "the spilled job to start", || {
        let s = status(&url, &spills);
        (num(&s["started_at_ms"]).unwrap_or(0) > 0).then_some(s)
    });
    assert_eq!(
        (s["pool"].as_str(), s["spilled"].as_bool(), s["worker_id"].as_str()),
        (Some("cloud"), Some(true), Some("cloud"))
    );
    let waited = num(&s["started_at_ms"]).unwrap().saturating_sub(num(&s["submitted_at_ms"]).unwrap());
    assert!((1_900..20_000).contains(&waited), "it waited its budget for onprem, then spilled: {waited} ms");
    let text = stdout(&burst(&url, &["status", &spills]));
    assert!(text.contains("cloud (spilled over"), "{text}");
    let o = burst(&url, &["cancel", &long]);
    assert!(o.status.success(), "{}", stderr(&o));

    // 3. What each pool did and cost.
    let pools = json(&burst(&url, &["pools", "-o", "json"]));
    let names: Vec<&str> = pools.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["onprem", "cloud"], "cheapest first");
    let (onprem, cloud) = (&pools[0], &pools[1]);
    assert_eq!((num(&onprem["jobs_placed"]), num(&onprem["jobs_spilled"])), (Some(3), Some(0)));
    assert_eq!((num(&cloud["jobs_placed"]), num(&cloud["jobs_spilled"])), (Some(1), Some(1)));
    assert_eq!(cloud["elastic"], true);
    assert!(cloud["cost"].as_f64().unwrap() > 0.0 && onprem["cost"].as_f64() == Some(0.0), "{pools}");
    let table = stdout(&burst(&url, &["pools"]));
    assert!(table.starts_with("POOL") && table.contains("elastic"), "{table}");

    // 4. A job may name a pool; one naming a pool nobody knows is refused with one readable line.
    let pinned = submit(&url, &["--pool", "cloud", "process", "/bin/true"]);
    assert_eq!(placed(&url, &pinned)["pool"], "cloud");
    let o = burst(&url, &["submit", "--pool", "gpu", "process", "/bin/true"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("no pool matches the job's pool \"gpu\"; known pools: onprem, cloud"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // 5. A cordoned worker gets no new jobs (an autoscaler empties a worker so before removing it).
    let o = burst(&url, &["cordon", "cloud"]);
    assert!(o.status.success() && stdout(&o).contains("cloud (cordoned)"), "{}{}", stdout(&o), stderr(&o));
    let held = submit(&url, &["--pool", "cloud", "process", "/bin/true"]);
    let why = until(Duration::from_secs(10), "a waiting reason", || {
        let s = status(&url, &held);
        s["waiting_reason"].as_str().filter(|w| !w.is_empty()).map(String::from)
    });
    assert_eq!(why, "every worker of pool cloud is draining, cordoned or quarantined");
    let o = burst(&url, &["uncordon", "cloud"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(placed(&url, &held)["pool"], "cloud");
    let o = burst(&url, &["cordon", "nobody"]);
    assert!(!o.status.success() && stderr(&o).contains("worker nobody is not registered"), "{}", stderr(&o));
}

#[test]
fn bad_pool_settings_are_refused_at_start_with_a_clear_line() {
    for (args, want) in [
        (&["controller", "--ephemeral", "--pool", "cloud"][..], "expected NAME=COST"),
        (&["controller", "--ephemeral", "--pool", "cloud=-1"][..], "cost must be a number of 0 or more"),
        (&["controller", "--ephemeral", "--pool", "a=1,a=2"][..], "pool \"a\" is configured twice"),
        (&["controller", "--ephemeral", "--policy", "wait", "--wait-factor=-3"][..], "wait factor"),
        (&["worker", "--pool", "Bad_Pool"][..], "pool name \"Bad_Pool\" is not valid"),
    ] {
        let o = burst("http://127.0.0.1:1", args);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn simulate_prints_each_policy_and_ends_quietly_when_its_reader_goes_away() {
    let o = burst("http://127.0.0.1:1", &["simulate", "--jobs", "3000", "--wait-factor", "0,600", "-o", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    let policies: Vec<String> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}{}",
                p["policy"].as_str().unwrap(),
                p["wait_factor"].as_f64().map_or(String::new(), |f| format!(" {f}"))
            )
        })
        .collect();
    assert_eq!(policies, ["cheapest", "first-pool-only", "wait 0", "wait 600"]);
    assert_eq!(r["results"][1]["cost"], 0.0, "first-pool-only never pays for the elastic pool");
    let again =
        json(&burst("http://127.0.0.1:1", &["simulate", "--jobs", "3000", "--wait-factor", "0,600", "-o", "json"]));
    assert_eq!(r, again, "the same seed, the same result");

    // The reader is gone before the simulation has finished: the print fails, quietly.
    let piped = std::process::Command::new("sh")
        .args(["-c", &format!("{} simulate --jobs 3000 -o json | true", procs::BURST)])
        .output()
        .unwrap();
    assert!(!stderr(&piped).contains("panicked"), "{}", stderr(&piped));
}

#[test]
fn pools_and_the_policy_come_from_the_config_file_and_a_selector_picks_by_label() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("burst.toml");
    let text = r#"
[controller]
listen = "127.0.0.1:0"
ephemeral = true
policy = "first-pool-only"

[[controller.pools]]
name = "onprem"
cost = 0
labels = { site = "basement" }

[[controller.pools]]
name = "spot"
cost = 0.4
elastic = true
labels = { site = "cloud" }
"#;
    std::fs::write(&config, text).unwrap();
    let (_controller, addr) = serve(&["controller", "--config", config.to_str().unwrap()]);
    let url = format!("http://{addr}");
    let pools = json(&burst(&url, &["pools", "-o", "json"]));
    assert_eq!(pools[1]["name"], "spot");
    assert_eq!((pools[1]["elastic"].as_bool(), pools[1]["labels"]["site"].as_str()), (Some(true), Some("cloud")));
    assert_eq!(pools[1]["workers"], 0, "a configured pool exists before any worker joins it");

    let _spot = worker(&addr, "spot", dir.path());
    let id = submit(&url, &["--pool-selector", "site=cloud", "process", "/bin/true"]);
    assert_eq!(placed(&url, &id)["pool"], "spot", "the selector allows only spot, so first-pool-only means spot");
    let waits = submit(&url, &["process", "/bin/true"]);
    let why = status(&url, &waits)["waiting_reason"].as_str().unwrap().to_string();
    assert_eq!(why, "waits for pool onprem only (policy first-pool-only); no worker of pool onprem is registered");
}
