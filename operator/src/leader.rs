//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator replicas never reconcile at once.
//!
//! 1. A replica takes the Lease when nobody holds it, or when the holder has not renewed it for its duration.
//!    Every write carries the resourceVersion it read, so of two replicas racing for it exactly one wins (the
//!    other gets 409 Conflict and tries again after [`RETRY`]).
//! 2. The leader renews every [`RENEW`]. Its leadership is good until [`LEASE_DURATION`] − [`MARGIN`] after the
//!    start of its last renewal that succeeded (the `renewTime` it wrote was read before that start), and
//!    [`Elector::hold`] returns at that instant if no renewal succeeded since — also while a renewal is still
//!    waiting on an API server that does not answer, whatever the HTTP client's own timeouts. The process then
//!    stops reconciling before any other replica can take the Lease.
//! 3. A leader told to stop (SIGTERM: a rollout, a scale-down) hands the Lease back ([`Elector::release`]), so
//!    a standby takes over within [`RETRY`] instead of waiting for the lease to expire.
//!
//! # Guarantees
//! With clocks that agree within [`MARGIN`], the intervals in which two replicas reconcile never overlap.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Another replica takes over this long after the leader stops renewing (client-go's default).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The leader renews this often: several tries fit in one lease duration.
pub const RENEW: Duration = Duration::from_secs(5);
/// A standby tries to take the Lease this often, and a leader whose renewal failed tries again this soon: the
/// longest a handed-back Lease waits for its next holder.
pub const RETRY: Duration = Duration::from_secs(2);
/// The leader stops this long before its lease could expire elsewhere: room for clock skew between replicas and
/// for a write in flight at the moment it stops.
pub const MARGIN: Duration = Duration::from_secs(3);
/// How long handing the Lease back may take when stopping; past it the Lease simply expires.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

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

    /// Waits until this replica leads; returns until when its leadership is good without a renewal.
    pub async fn acquire(&self) -> Instant {
        let mut announced = false;
        loop {
            let started = Instant::now();
            match self.try_once().await {
                Ok(Try::Leading) => {
                    info!(identity = %self.identity, lease = %self.name, "leading");
                    return started + LEASE_DURATION - MARGIN;
                }
                Ok(Try::Following(holder)) if !announced => {
                    info!(holder = %holder, "another replica leads; standing by");
                    announced = true;
                }
                Ok(Try::Following(_)) => {}
                Err(e) => debug!(error = %e, "lease not taken"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Renews the lease until leadership is lost (see the module's step 2), then returns. `valid_until` is what
    /// [`Elector::acquire`] returned.
    pub async fn hold(&self, mut valid_until: Instant) {
        let mut next = Instant::now() + RENEW;
        loop {
            tokio::time::sleep_until(next.min(valid_until)).await;
            let started = Instant::now();
            if started >= valid_until {
                warn!(lease = %self.name, "lease not renewed in time; stopping before it can expire");
                return;
            }
            match tokio::time::timeout_at(valid_until, self.try_once()).await {
                Ok(Ok(Try::Leading)) => {
                    valid_until = started + LEASE_DURATION - MARGIN;
                    next = started + RENEW;
                }
                Ok(Ok(Try::Following(holder))) => {
                    warn!(holder = %holder, "lease taken over by another replica");
                    return;
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "lease renewal failed; retrying");
                    next = Instant::now() + RETRY;
                }
                Err(_) => {
                    warn!(lease = %self.name, "lease renewal unanswered; stopping before the lease can expire");
                    return;
                }
            }
        }
    }

    /// Hands the Lease back if this replica holds it (an empty holder, as client-go's ReleaseOnCancel writes),
    /// so that a standby need not wait for it to expire. Best effort: a failure only means the lease expires.
    pub async fn release(&self) {
        let give_back = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(false) };
            let mut spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            lease.spec = Some(spec);
            self.api.replace(&self.name, &PostParams::default(), &lease).await.map(|_| true)
        };
        match tokio::time::timeout(RELEASE_TIMEOUT, give_back).await {
            Ok(Ok(true)) => info!(lease = %self.name, "lease handed back"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(error = %e, "could not hand the lease back; it expires instead"),
            Err(_) => warn!("handing the lease back timed out; it expires instead"),
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
