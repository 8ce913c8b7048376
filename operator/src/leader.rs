//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator replicas never reconcile at once.
//!
//! 1. A replica takes the Lease when nobody holds it, or when the holder has not renewed it for its duration.
//!    Every write carries the resourceVersion it read, so of two replicas racing for it exactly one wins (the
//!    other gets 409 Conflict and tries again later).
//! 2. The leader renews every [`RENEW`]; if it cannot renew before the lease would expire it has lost
//!    leadership and [`Elector::hold`] returns, and the process stops rather than risk two leaders.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{debug, info, warn};

/// Another replica takes over this long after the leader stops renewing.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The leader renews this often: three tries fit in one lease duration.
pub const RENEW: Duration = Duration::from_secs(5);

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

/// What one try at the Lease found.
#[derive(Debug, PartialEq, Eq)]
pub enum Try {
    Leading,
    /// Someone else holds a live lease.
    Following(String),
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Elector { api: Api::namespaced(client, namespace), name: name.into(), identity: identity.into() }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) -> Result<(), kube::Error> {
        let mut announced = false;
        loop {
            match self.try_once().await {
                Ok(Try::Leading) => {
                    info!(identity = %self.identity, lease = %self.name, "leading");
                    return Ok(());
                }
                Ok(Try::Following(holder)) if !announced => {
                    info!(holder = %holder, "another replica leads; standing by");
                    announced = true;
                }
                Ok(Try::Following(_)) => {}
                Err(e) => debug!(error = %e, "lease not taken"),
            }
            tokio::time::sleep(RENEW).await;
        }
    }

    /// Renews the lease until a renewal fails for a whole lease duration (or another replica took it); then
    /// returns: leadership is lost.
    pub async fn hold(&self) {
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW).await;
            match self.try_once().await {
                Ok(Try::Leading) => last = tokio::time::Instant::now(),
                Ok(Try::Following(holder)) => {
                    warn!(holder = %holder, "lease taken over by another replica");
                    return;
                }
                Err(e) if last.elapsed() >= LEASE_DURATION => {
                    warn!(error = %e, "lease not renewed in time");
                    return;
                }
                Err(e) => warn!(error = %e, "lease renewal failed; retrying"),
            }
        }
    }

    /// One read-modify-write of the Lease.
    pub async fn try_once(&self) -> Result<Try, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Try::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Try::Following("a replica that just won".into())),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        if !ours && !holder.is_empty() && !expired(&spec, now) {
            return Ok(Try::Following(holder));
        }
        let acquired = if ours { spec.acquire_time.map_or(now, |t| t.0) } else { now };
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        lease.spec = Some(self.spec(acquired, now, transitions));
        // `replace` sends the resourceVersion read above: a concurrent writer makes this fail with 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Try::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Try::Following(holder)),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: Timestamp, now: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// Whether a lease was last renewed longer ago than its duration.
pub fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else { return true };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    renewed.0.checked_add(duration).map_or(true, |until| until < now)
}
