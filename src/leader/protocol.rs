//! The Lease protocol as pure functions of what was read and the time: whether a Lease is
//! free, what a replica does with it, and the spec it writes.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

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

pub(super) fn holder(spec: Option<&LeaseSpec>) -> Option<&str> {
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
