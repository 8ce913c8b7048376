//! Leader election against a scripted API server: who takes the Lease, who stands by, and that a race is
//! settled by the resourceVersion (409 Conflict), so two replicas never both lead.

mod mock;

use burst_operator::leader::{Elector, Try};
use http::StatusCode;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/burst-system/leases/burst-operator";

fn lease(holder: &str, renewed_ago_s: i64) -> Value {
    let renewed = Timestamp::now().checked_sub(SignedDuration::from_secs(renewed_ago_s)).unwrap();
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "burst-operator", "namespace": "burst-system", "resourceVersion": "41" },
        "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15,
                  "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), "leaseTransitions": 2 }
    })
}

async fn try_once(answer: impl AsyncFnOnce(&mut mock::ApiServer)) -> Try {
    let (client, mut api) = mock::client();
    let elector = Elector::new(client, "burst-system", "burst-operator", "me");
    let task = tokio::spawn(async move { elector.try_once().await });
    answer(&mut api).await;
    mock::finish(task).await.unwrap()
}

#[tokio::test]
async fn the_first_replica_creates_the_lease_and_leads() {
    let outcome = try_once(async |api| {
        api.expect("GET", PATH).await.not_found();
        let call = api.expect("POST", "/apis/coordination.k8s.io/v1/namespaces/burst-system/leases?").await;
        assert_eq!(call.body["spec"]["holderIdentity"], "me");
        let body = call.body.clone();
        call.reply(StatusCode::CREATED, body);
    })
    .await;
    assert_eq!(outcome, Try::Leading);
}

#[tokio::test]
async fn a_live_lease_of_another_replica_is_left_alone() {
    let outcome = try_once(async |api| api.expect("GET", PATH).await.reply(StatusCode::OK, lease("other", 2))).await;
    assert_eq!(outcome, Try::Following("other".into()));
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_the_version_that_was_read() {
    let outcome = try_once(async |api| {
        api.expect("GET", PATH).await.reply(StatusCode::OK, lease("other", 60));
        let call = api.expect("PUT", PATH).await;
        assert_eq!(call.body["metadata"]["resourceVersion"], "41", "the write is conditional on what was read");
        assert_eq!(
            (call.body["spec"]["holderIdentity"].as_str(), call.body["spec"]["leaseTransitions"].as_i64()),
            (Some("me"), Some(3))
        );
        let body = call.body.clone();
        call.reply(StatusCode::OK, body);
    })
    .await;
    assert_eq!(outcome, Try::Leading);
}

#[tokio::test]
async fn losing_the_race_for_an_expired_lease_means_standing_by() {
    let outcome = try_once(async |api| {
        api.expect("GET", PATH).await.reply(StatusCode::OK, lease("other", 60));
        let conflict = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
                               "message": "the object has been modified" });
        api.expect("PUT", PATH).await.reply(StatusCode::CONFLICT, conflict);
    })
    .await;
    assert!(matches!(outcome, Try::Following(_)), "{outcome:?}");
}
