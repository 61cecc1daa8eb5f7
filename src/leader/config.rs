//! The settings of one elector (namespace, name, identity, timing) and the errors of the
//! election.

use std::time::Duration;

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

    pub(super) fn lease_duration_seconds(&self) -> i32 {
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
