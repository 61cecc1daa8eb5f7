//! The background task of one replica: reads the Lease, takes or renews it, and reports
//! "am I leader" the moment that changes.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    config::{LeaseConfig, LeaseError},
    protocol::{decide, holder, next_spec, released_spec, Decision},
    set,
};

/// How many times one round re-reads the Lease after a 409 before giving up until the next.
const CONFLICT_RETRIES: usize = 3;

fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

pub(super) struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    leader: Arc<watch::Sender<bool>>,
    /// The Lease as this replica last wrote it. While leading, renewals are written against
    /// it without a read first; any 409 drops it and re-reads.
    cached: Option<Lease>,
}

impl Elector {
    pub(super) fn new(api: Api<Lease>, config: LeaseConfig, leader: Arc<watch::Sender<bool>>) -> Self {
        Self { api, config, leader, cached: None }
    }

    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), LeaseError> {
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
