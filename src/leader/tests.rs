use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::*;

const D: Duration = Duration::from_secs(15);

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

fn held(holder: &str, renewed: &str, secs: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.to_owned()),
        renew_time: Some(MicroTime(ts(renewed))),
        acquire_time: Some(MicroTime(ts(renewed))),
        lease_duration_seconds: Some(secs),
        lease_transitions: Some(4),
        ..LeaseSpec::default()
    }
}

#[test]
fn expiry_is_renew_time_plus_duration() {
    let spec = held("a", "2025-01-01T00:00:00Z", 15);
    assert_eq!(lease_expires_at(&spec, D), Some(ts("2025-01-01T00:00:15Z")));
    assert!(!is_expired(&spec, ts("2025-01-01T00:00:15Z"), D), "boundary is still valid");
    assert!(is_expired(&spec, ts("2025-01-01T00:00:15.000001Z"), D));
}

#[test]
fn expiry_falls_back_to_acquire_time_and_default_duration() {
    let spec =
        LeaseSpec { holder_identity: Some("a".into()), acquire_time: Some(MicroTime(ts("2025-01-01T00:00:00Z"))), ..LeaseSpec::default() };
    assert_eq!(lease_expires_at(&spec, Duration::from_secs(10)), Some(ts("2025-01-01T00:00:10Z")));
    let timeless = LeaseSpec { holder_identity: Some("a".into()), ..LeaseSpec::default() };
    assert!(is_expired(&timeless, ts("2025-01-01T00:00:00Z"), D));
}

#[test]
fn decisions() {
    let now = ts("2025-01-01T00:00:10Z");
    let spec = held("a", "2025-01-01T00:00:00Z", 15);
    assert_eq!(decide(Some(&spec), "a", now, D), Decision::Renew);
    assert_eq!(decide(Some(&spec), "b", now, D), Decision::Follow { holder: "a".into() });
    let later = ts("2025-01-01T00:00:16Z");
    assert_eq!(decide(Some(&spec), "b", later, D), Decision::Acquire { transition: true });
    // Our own expired lease is simply renewed: nobody took it.
    assert_eq!(decide(Some(&spec), "a", later, D), Decision::Renew);
    let released = released_spec(&spec, now);
    assert_eq!(decide(Some(&released), "b", now, D), Decision::Acquire { transition: true });
    assert_eq!(decide(None, "b", now, D), Decision::Acquire { transition: false });
    let empty_holder = LeaseSpec { holder_identity: Some(String::new()), ..spec.clone() };
    assert_eq!(decide(Some(&empty_holder), "b", now, D), Decision::Acquire { transition: true });
}

#[test]
fn takeover_bumps_transitions_and_renewal_keeps_acquire_time() {
    let now = ts("2025-01-01T00:01:00Z");
    let spec = held("a", "2025-01-01T00:00:00Z", 15);
    let taken = next_spec(&Decision::Acquire { transition: true }, Some(&spec), "b", 15, now);
    let taken = taken.unwrap_or_default();
    assert_eq!(taken.holder_identity.as_deref(), Some("b"));
    assert_eq!(taken.lease_transitions, Some(5));
    assert_eq!(taken.acquire_time, Some(MicroTime(now)));
    assert_eq!(taken.renew_time, Some(MicroTime(now)));

    let renewed = next_spec(&Decision::Renew, Some(&spec), "a", 15, now).unwrap_or_default();
    assert_eq!(renewed.lease_transitions, Some(4));
    assert_eq!(renewed.acquire_time, spec.acquire_time);
    assert_eq!(renewed.renew_time, Some(MicroTime(now)));

    assert_eq!(next_spec(&Decision::Follow { holder: "a".into() }, Some(&spec), "b", 15, now), None);
    let created = next_spec(&Decision::Acquire { transition: false }, None, "a", 15, now).unwrap_or_default();
    assert_eq!(created.lease_transitions, Some(0));
    assert_eq!(created.lease_duration_seconds, Some(15));
}

#[test]
fn release_clears_the_holder_and_keeps_the_count() {
    let spec = held("a", "2025-01-01T00:00:00Z", 15);
    let released = released_spec(&spec, ts("2025-01-01T00:00:05Z"));
    assert_eq!(released.holder_identity, None);
    assert_eq!(released.lease_transitions, Some(4));
}

#[test]
fn config_validation() {
    let ok = LeaseConfig::new("ns", "lease", "me");
    assert!(ok.validate().is_ok());
    let short = ok.clone().with_lease_duration(Duration::from_secs(3));
    assert!(short.validate().is_ok(), "{short:?}");
    assert_eq!(short.renew_deadline, Duration::from_secs(2));
    assert_eq!(short.renew_interval, Duration::from_secs(1));
    let mut bad = ok.clone();
    bad.renew_deadline = D;
    assert!(bad.validate().is_err());
    let bad = ok.clone().with_lease_duration(Duration::from_millis(1500));
    assert!(bad.validate().is_err());
    let mut bad = ok;
    bad.identity.clear();
    assert!(bad.validate().is_err());
}

#[test]
fn identities_differ_without_pod_name() {
    if std::env::var("POD_NAME").is_ok() {
        return;
    }
    assert_ne!(default_identity(), default_identity());
}
