//! Leader election on a `coordination.k8s.io/v1` Lease, so that several replicas can run and
//! only one writes.
//!
//! Written here rather than taken from a crate: of the maintained ones only
//! `kube-lease-manager` supports kube 5, and it needs Rust 1.89 (this crate promises 1.85) and
//! writes the Lease with strategic-merge and server-side-apply patches; this module needs only
//! `get`/`create`/`update` on `leases` (see `deploy/`) and uses plain optimistic concurrency.
//!
//! Protocol (compatible with client-go's `LeaseLock`, so `kubectl get lease` reads as usual):
//! - A Lease is free when it has no `holderIdentity`, or when it has expired:
//!   `renewTime + leaseDurationSeconds < now`.
//! - A replica takes a free Lease by replacing it with itself as holder (`acquireTime`,
//!   `renewTime` = now, `leaseTransitions` + 1 when the holder changes). The replace carries
//!   the `resourceVersion` that was read, so of two replicas racing for it one gets 409
//!   Conflict, re-reads, and follows.
//! - The holder renews every `renew_interval` (≈ a third of the lease duration).
//! - A holder that has not renewed successfully within `renew_deadline` (shorter than the
//!   lease duration, the difference being the clock skew tolerated between nodes) reports
//!   `false` at once, before any other replica may take the Lease over: a lost lease stops
//!   writes.
//! - [`LeaderElection::release`] clears `holderIdentity`, so a standby takes over at its next
//!   look instead of waiting for the lease to expire.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Name of the operator's Lease in its namespace.
pub const DEFAULT_LEASE_NAME: &str = "tenant-operator";

/// How many times one round re-reads the Lease after a 409 before giving up until the next.
const CONFLICT_RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("invalid leader election settings: {0}")]
    Config(String),
    #[error("lease request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("lease {0} changed under every attempt to write it")]
    Contended(String),
    #[error("lease request timed out")]
    Timeout,
    #[error("leader election task failed: {0}")]
    Task(String),
}

/// Timing and identity of one elector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica; see [`default_identity`].
    pub identity: String,
    /// How long a Lease stays valid after its last renewal (`leaseDurationSeconds`); whole
    /// seconds, at least 1.
    pub lease_duration: Duration,
    /// A leader that has not renewed within this time since its last successful renewal
    /// stops reporting leadership. Must be shorter than `lease_duration`.
    pub renew_deadline: Duration,
    /// How often the leader renews. Must be shorter than `renew_deadline`, so that several
    /// renewals can fail before it is too late.
    pub renew_interval: Duration,
    /// How often a standby looks at the Lease (and how soon a failed request is retried).
    pub retry_interval: Duration,
}

impl LeaseConfig {
    /// Defaults as client-go: 15 s lease, 10 s renew deadline, renewal every 5 s, standbys
    /// look every 2 s.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_interval: Duration::from_secs(5),
            retry_interval: Duration::from_secs(2),
        }
    }

    /// Sets the lease duration and derives the other timings from it: renew deadline ⅔,
    /// renew interval ⅓, retry interval ⅓ capped at 2 s.
    pub fn with_lease_duration(mut self, lease_duration: Duration) -> Self {
        self.lease_duration = lease_duration;
        self.renew_deadline = lease_duration * 2 / 3;
        self.renew_interval = lease_duration / 3;
        self.retry_interval = (lease_duration / 3).min(Duration::from_secs(2));
        self
    }

    pub fn validate(&self) -> Result<(), LeaseError> {
        let err = |m: &str| Err(LeaseError::Config(m.to_owned()));
        if self.identity.is_empty() {
            return err("identity must not be empty");
        }
        if self.name.is_empty() || self.namespace.is_empty() {
            return err("lease name and namespace must not be empty");
        }
        if self.lease_duration < Duration::from_secs(1)
            || self.lease_duration.subsec_nanos() != 0
            || i32::try_from(self.lease_duration.as_secs()).is_err()
        {
            return err("lease duration must be a whole number of seconds, at least 1");
        }
        if self.renew_deadline >= self.lease_duration {
            return err("renew deadline must be shorter than the lease duration");
        }
        if self.renew_interval.is_zero() || self.renew_interval >= self.renew_deadline {
            return err("renew interval must be positive and shorter than the renew deadline");
        }
        if self.retry_interval.is_zero() {
            return err("retry interval must be positive");
        }
        Ok(())
    }

    fn lease_duration_seconds(&self) -> i32 {
        // validate() guarantees the value fits.
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// This replica's identity: `POD_NAME` (set from the downward API in `deploy/`), else the host
/// name plus a random suffix, so two processes on one machine never share an identity.
pub fn default_identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|p| !p.trim().is_empty()) {
        return pod.trim().to_owned();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tenant-operator".to_owned());
    format!("{host}-{}", random_suffix())
}

fn random_suffix() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 8).to_ascii_lowercase()
}

/// When the Lease stops being valid: `renewTime` (or `acquireTime` if never renewed) plus
/// `leaseDurationSeconds` (or `default_duration` if the holder did not say). `None` when it
/// carries no time at all, which makes it free.
pub fn lease_expires_at(spec: &LeaseSpec, default_duration: Duration) -> Option<Timestamp> {
    let since = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0)?;
    let duration = spec
        .lease_duration_seconds
        .map(|s| SignedDuration::from_secs(i64::from(s)))
        .or_else(|| SignedDuration::try_from(default_duration).ok())
        .unwrap_or(SignedDuration::ZERO);
    Some(since.checked_add(duration).unwrap_or(Timestamp::MAX))
}

/// `renewTime + leaseDurationSeconds < now`.
pub fn is_expired(spec: &LeaseSpec, now: Timestamp, default_duration: Duration) -> bool {
    lease_expires_at(spec, default_duration).is_none_or(|expiry| expiry < now)
}

fn holder(spec: Option<&LeaseSpec>) -> Option<&str> {
    spec.and_then(|s| s.holder_identity.as_deref()).filter(|h| !h.is_empty())
}

/// What a replica does with the Lease it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: renew it.
    Renew,
    /// The Lease is free or expired: take it. `transition` when the holder changes.
    Acquire { transition: bool },
    /// Someone else holds a valid Lease.
    Follow { holder: String },
}

/// The pure core of the election.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp, default_duration: Duration) -> Decision {
    match holder(spec) {
        Some(h) if h == identity => Decision::Renew,
        Some(h) => {
            if spec.is_some_and(|s| is_expired(s, now, default_duration)) {
                Decision::Acquire { transition: true }
            } else {
                Decision::Follow { holder: h.to_owned() }
            }
        }
        // After a release the previous holder is gone from the object, but client-go counts
        // any change of holder as a transition, and so do we.
        None => Decision::Acquire { transition: spec.is_some() },
    }
}

/// The spec to write for a `Renew` or `Acquire` decision; `None` for `Follow`.
pub fn next_spec(
    decision: &Decision,
    current: Option<&LeaseSpec>,
    identity: &str,
    lease_duration_seconds: i32,
    now: Timestamp,
) -> Option<LeaseSpec> {
    let mut spec = current.cloned().unwrap_or_default();
    match decision {
        Decision::Follow { .. } => return None,
        Decision::Renew => {
            if spec.acquire_time.is_none() {
                spec.acquire_time = Some(MicroTime(now));
            }
        }
        Decision::Acquire { transition } => {
            spec.acquire_time = Some(MicroTime(now));
            let transitions = spec.lease_transitions.unwrap_or(0);
            spec.lease_transitions = Some(if *transition { transitions.saturating_add(1) } else { transitions });
        }
    }
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(lease_duration_seconds);
    spec.renew_time = Some(MicroTime(now));
    Some(spec)
}

/// The spec written on release: no holder, so the next reader acquires at once.
pub fn released_spec(current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        acquire_time: None,
        renew_time: Some(MicroTime(now)),
        lease_duration_seconds: Some(1),
        ..current.clone()
    }
}

fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A running elector. Dropping it stops the elector without releasing the Lease (which then
/// expires); call [`LeaderElection::release`] on graceful shutdown instead.
#[derive(Debug)]
pub struct LeaderElection {
    identity: String,
    leader: Arc<watch::Sender<bool>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), LeaseError>>>,
    lease_duration: Duration,
}

impl LeaderElection {
    /// Validates `config` and starts electing in a background task. Must be called inside a
    /// Tokio runtime.
    pub fn start(client: Client, config: LeaseConfig) -> Result<Self, LeaseError> {
        config.validate()?;
        let (leader, _) = watch::channel(false);
        let leader = Arc::new(leader);
        let (stop, stop_rx) = watch::channel(false);
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let elector = Elector { api, config: config.clone(), leader: leader.clone(), cached: None };
        let task = tokio::spawn(elector.run(stop_rx));
        Ok(Self { identity: config.identity, leader, stop, task: Some(task), lease_duration: config.lease_duration })
    }

    /// "Am I leader", updated as soon as leadership is won or lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Stops renewing, reports `false`, and if this replica holds the Lease, clears its
    /// holder so that a standby takes over at once. Call after the controllers have stopped.
    pub async fn release(mut self) -> Result<(), LeaseError> {
        let _ = self.stop.send(true);
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        // The task bounds its own requests; this only guards against a wedged client.
        match tokio::time::timeout(self.lease_duration, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(LeaseError::Task(join.to_string())),
            Err(_) => Err(LeaseError::Timeout),
        }
    }
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        set(&self.leader, false);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn set(sender: &watch::Sender<bool>, value: bool) {
    sender.send_if_modified(|current| {
        let changed = *current != value;
        *current = value;
        changed
    });
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    leader: Arc<watch::Sender<bool>>,
    /// The Lease as this replica last wrote it. While leading, renewals are written against
    /// it without a read first; any 409 drops it and re-reads.
    cached: Option<Lease>,
}

impl Elector {
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), LeaseError> {
        // Deadline by which the leader must have renewed again.
        let mut deadline: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.lost("renew deadline passed");
                deadline = None;
            }
            let started = Instant::now();
            // A hung request must not keep a leader reporting `true` past its deadline.
            let limit = deadline.map_or(self.config.lease_duration, |d| d.saturating_duration_since(started));
            let outcome = tokio::select! {
                _ = stop.changed() => break,
                r = tokio::time::timeout(limit, self.round()) => r.unwrap_or(Err(LeaseError::Timeout)),
            };
            let pause = match outcome {
                Ok(true) => {
                    if deadline.is_none() {
                        tracing::info!(identity = %self.config.identity, lease = %self.config.name, "acquired leadership");
                    }
                    deadline = Some(started + self.config.renew_deadline);
                    set(&self.leader, true);
                    self.config.renew_interval
                }
                Ok(false) => {
                    if deadline.take().is_some() {
                        self.lost("another replica holds the lease");
                    }
                    set(&self.leader, false);
                    self.config.retry_interval
                }
                Err(error) => {
                    self.cached = None;
                    tracing::warn!(%error, leading = deadline.is_some(), "leader election round failed");
                    self.config.retry_interval.min(self.config.renew_interval)
                }
            };
            let mut wake = Instant::now() + pause;
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        let was_leader = deadline.is_some();
        set(&self.leader, false);
        // Even a replica that never saw itself lead may hold the Lease: the stop can interrupt
        // a round whose write went through. release() only writes if the Lease names us.
        let limit = if was_leader { self.config.renew_deadline } else { self.config.retry_interval };
        tokio::time::timeout(limit, self.release()).await.unwrap_or(Err(LeaseError::Timeout))?;
        if was_leader {
            tracing::info!(identity = %self.config.identity, "released leadership");
        }
        Ok(())
    }

    fn lost(&mut self, why: &str) {
        self.cached = None;
        set(&self.leader, false);
        tracing::warn!(identity = %self.config.identity, reason = why, "lost leadership");
    }

    /// One read-decide-write round. `Ok(true)` when this replica holds the Lease afterwards.
    async fn round(&mut self) -> Result<bool, LeaseError> {
        let cfg = &self.config;
        for _ in 0..CONFLICT_RETRIES {
            let now = Timestamp::now();
            let current = match self.cached.take() {
                Some(lease) => Some(lease),
                None => self.api.get_opt(&cfg.name).await?,
            };
            let Some(mut lease) = current else {
                let spec = next_spec(&Decision::Acquire { transition: false }, None, &cfg.identity, cfg.lease_duration_seconds(), now);
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(cfg.name.clone()),
                        namespace: Some(cfg.namespace.clone()),
                        labels: Some([("app.kubernetes.io/name".to_owned(), "tenant-operator".to_owned())].into()),
                        ..ObjectMeta::default()
                    },
                    spec,
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(created) => {
                        self.cached = Some(created);
                        return Ok(true);
                    }
                    // Created by another replica in the meantime: read it.
                    Err(e) if status_code(&e) == Some(409) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            let decision = decide(lease.spec.as_ref(), &cfg.identity, now, cfg.lease_duration);
            let Some(spec) = next_spec(&decision, lease.spec.as_ref(), &cfg.identity, cfg.lease_duration_seconds(), now) else {
                if let Decision::Follow { holder } = &decision {
                    tracing::debug!(%holder, "following");
                }
                return Ok(false);
            };
            lease.spec = Some(spec);
            match self.api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(written) => {
                    self.cached = Some(written);
                    return Ok(true);
                }
                // Someone else wrote the Lease since we read it (another replica took it, or a
                // person edited it): read again and decide again.
                Err(e) if status_code(&e) == Some(409) => continue,
                // Deleted under us: the next round recreates it.
                Err(e) if status_code(&e) == Some(404) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Err(LeaseError::Contended(cfg.name.clone()))
    }

    async fn release(&mut self) -> Result<(), LeaseError> {
        let cfg = &self.config;
        for _ in 0..CONFLICT_RETRIES {
            let current = match self.cached.take() {
                Some(lease) => Some(lease),
                None => self.api.get_opt(&cfg.name).await?,
            };
            let Some(mut lease) = current else {
                return Ok(());
            };
            if holder(lease.spec.as_ref()) != Some(cfg.identity.as_str()) {
                return Ok(());
            }
            let spec = released_spec(&lease.spec.clone().unwrap_or_default(), Timestamp::now());
            lease.spec = Some(spec);
            match self.api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => return Ok(()),
                Err(e) if status_code(&e) == Some(409) => continue,
                Err(e) if status_code(&e) == Some(404) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(LeaseError::Contended(cfg.name.clone()))
    }
}

#[cfg(test)]
mod tests;
