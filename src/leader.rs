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
//!
//! Module map: `config` (the elector's settings and errors), `protocol` (pure: whether a
//! Lease is free, what to write into it), `elector` (the background task that reads and
//! writes it); this file is the handle the operator holds.

mod config;
mod elector;
mod protocol;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{default_identity, LeaseConfig, LeaseError};
pub use protocol::{decide, is_expired, lease_expires_at, next_spec, released_spec, Decision};

use elector::Elector;

/// Name of the operator's Lease in its namespace.
pub const DEFAULT_LEASE_NAME: &str = "tenant-operator";

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
        let elector = Elector::new(api, config.clone(), leader.clone());
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

pub(crate) fn set(sender: &watch::Sender<bool>, value: bool) {
    sender.send_if_modified(|current| {
        let changed = *current != value;
        *current = value;
        changed
    });
}

#[cfg(test)]
mod tests;
