use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::{
    desired::tenant::tests::example_config,
    types::{Conditions, Environment, NamespaceState, Tenant, TenantSpec},
};

fn plan(provider: &str) -> TenantPlan {
    let config = example_config();
    let spec: TenantSpec = serde_json::from_value(serde_json::json!({
        "displayName": "Acme", "cluster": "uk", "environments": ["dev"], "applications": ["xconsole"],
        "database": {"provider": provider}
    }))
    .unwrap();
    TenantPlan::build(&Tenant::new("acme", spec), &config).unwrap()
}

fn now() -> Time {
    Time(Timestamp::from_second(1_000).unwrap())
}

fn active() -> Observations {
    Observations {
        namespaces: vec![NamespaceStatus { environment: Environment::Dev, name: "acme-dev".into(), state: NamespaceState::Active }],
        ..Observations::default()
    }
}

fn reason(status: &TenantStatus, type_: ConditionType) -> (String, String) {
    let c = status.condition(type_).unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}

/// Exactly one of Ready / Reconciling / Stalled is True (none when suspended).
fn assert_summary(status: &TenantStatus, phase: TenantPhase, true_one: Option<ConditionType>, reason_text: &str) {
    assert_eq!(status.phase, Some(phase));
    for type_ in [ConditionType::Ready, ConditionType::Reconciling, ConditionType::Stalled] {
        let expected = if Some(type_) == true_one { "True" } else { "False" };
        assert_eq!(reason(status, type_).0, expected, "{type_} in {:?}", status.conditions);
    }
    assert_eq!(reason(status, ConditionType::Ready).1, reason_text);
}

#[test]
fn everything_ready() {
    let (status, _) = reconciled(&TenantStatus::default(), &plan("none"), active(), Some(3), &now());
    assert_summary(&status, TenantPhase::Ready, Some(ConditionType::Ready), "Ready");
    assert_eq!(reason(&status, ConditionType::DatabaseReady), ("True".into(), "NoDatabase".into()));
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.endpoints.len(), 1);
}

#[test]
fn a_database_still_starting_is_progress() {
    let mut observed = active();
    observed.database_problems.push(Problem::new(Reason::DatabaseNotReady, "acme-dev: waiting for the PostgreSQL pod"));
    let (status, _) = reconciled(&TenantStatus::default(), &plan("statefulset"), observed, Some(1), &now());
    assert_summary(&status, TenantPhase::Provisioning, Some(ConditionType::Reconciling), "DatabaseNotReady");
    assert_eq!(reason(&status, ConditionType::DatabaseReady), ("False".into(), "DatabaseNotReady".into()));
    assert_eq!(reason(&status, ConditionType::NamespacesReady).0, "True");
}

#[test]
fn an_ingress_without_an_address_is_progress_not_ready() {
    let mut observed = active();
    observed.ingress_problems.push(Problem::new(Reason::WaitingForAddress, "Ingress acme-dev/xconsole has no address yet"));
    let (status, stalled) = reconciled(&TenantStatus::default(), &plan("none"), observed, Some(1), &now());
    assert_summary(&status, TenantPhase::Provisioning, Some(ConditionType::Reconciling), "WaitingForAddress");
    assert_eq!(reason(&status, ConditionType::IngressReady), ("False".into(), "WaitingForAddress".into()));
    assert_eq!(reason(&status, ConditionType::NamespacesReady).0, "True");
    assert_eq!(stalled, None);
}

#[test]
fn a_terminating_namespace_is_progress() {
    let mut observed = active();
    observed.namespace_problems.push(Problem::new(Reason::NamespaceTerminating, "namespace acme-dev is being deleted"));
    let (status, _) = reconciled(&TenantStatus::default(), &plan("none"), observed, Some(1), &now());
    assert_summary(&status, TenantPhase::Provisioning, Some(ConditionType::Reconciling), "NamespaceTerminating");
    assert_eq!(reason(&status, ConditionType::IngressReady), ("False".into(), "NamespacesNotReady".into()));
}

#[test]
fn conflicts_and_refusals_stall() {
    for (reason_, place) in [
        (Reason::NamespaceConflict, 0),
        (Reason::ApplyFailed, 1),
        (Reason::ObjectConflict, 1),
        (Reason::HostnameConflict, 2),
        (Reason::SecretConflict, 3),
        (Reason::DatabaseConflict, 3),
        (Reason::CloudNativePgNotInstalled, 3),
        (Reason::InvalidAdminSecret, 3),
    ] {
        let mut observed = active();
        let problem = Problem::new(reason_, "someone else's");
        match place {
            0 => observed.namespace_problems.push(problem),
            1 => observed.object_problems.push(problem),
            2 => observed.ingress_problems.push(problem),
            _ => observed.database_problems.push(problem),
        }
        let (status, _) = reconciled(&TenantStatus::default(), &plan("statefulset"), observed, Some(1), &now());
        assert_summary(&status, TenantPhase::Failed, Some(ConditionType::Stalled), reason_.as_str());
        assert_eq!(reason(&status, ConditionType::Stalled).1, reason_.as_str());
        let (_, stalled) = reconciled(
            &TenantStatus::default(),
            &plan("statefulset"),
            {
                let mut o = active();
                o.database_problems.push(Problem::new(reason_, "x"));
                o
            },
            Some(1),
            &now(),
        );
        assert_eq!(stalled.map(|p| p.reason), Some(reason_));
    }
}

#[test]
fn a_stall_wins_over_progress_for_the_summary() {
    let mut observed = active();
    observed.database_problems.push(Problem::new(Reason::DatabaseNotReady, "starting"));
    observed.ingress_problems.push(Problem::new(Reason::HostnameConflict, "older tenant flip has it"));
    let (status, _) = reconciled(&TenantStatus::default(), &plan("statefulset"), observed, Some(1), &now());
    assert_summary(&status, TenantPhase::Failed, Some(ConditionType::Stalled), "HostnameConflict");
}

#[test]
fn unreachable_database_server_is_retried_not_stalled() {
    let mut observed = active();
    observed.database_problems.push(Problem::new(Reason::ServerUnreachable, "db.example:5432 refused the connection"));
    let (status, _) = reconciled(&TenantStatus::default(), &plan("none"), observed, Some(1), &now());
    assert_summary(&status, TenantPhase::Provisioning, Some(ConditionType::Reconciling), "ServerUnreachable");
}

#[test]
fn refused_suspended_terminating_failed() {
    let problem = Problem::new(Reason::UnknownCluster, "cluster mars is not configured");
    let status = refused(&TenantStatus::default(), &problem, Some(2), &now());
    assert_summary(&status, TenantPhase::Failed, Some(ConditionType::Stalled), "UnknownCluster");
    assert_eq!(status.observed_generation, Some(2));

    let status = suspended(&TenantStatus::default(), Some(2), &now());
    assert_summary(&status, TenantPhase::Suspended, None, "Suspended");

    let status = terminating(&TenantStatus::default(), DeletionPolicy::Retain, Some(2), &now());
    assert_summary(&status, TenantPhase::Terminating, Some(ConditionType::Reconciling), "Terminating");

    let (ready, _) = reconciled(&TenantStatus::default(), &plan("none"), active(), Some(1), &now());
    let status = failed(&ready, "Kubernetes API request failed: etcdserver: timeout (HTTP 500)", Some(1), &now());
    assert_summary(&status, TenantPhase::Provisioning, Some(ConditionType::Reconciling), "ReconcileFailed");
}

#[test]
fn an_unchanged_outcome_gives_an_identical_status() {
    let (first, _) = reconciled(&TenantStatus::default(), &plan("none"), active(), Some(1), &now());
    let later = Time(Timestamp::from_second(9_000).unwrap());
    let (second, _) = reconciled(&first, &plan("none"), active(), Some(1), &later);
    assert_eq!(first, second, "same observations must not cause a status write");
}

#[test]
fn only_progress_details_can_wait() {
    let waiting = |problem: Problem, generation| {
        let mut observed = active();
        observed.ingress_problems.push(problem);
        reconciled(&TenantStatus::default(), &plan("statefulset"), observed, Some(generation), &now()).0
    };
    let no_address = waiting(Problem::new(Reason::WaitingForAddress, "Ingress acme-dev/xconsole has no address yet"), 1);
    let database = waiting(Problem::new(Reason::DatabaseNotReady, "acme-dev: waiting for the PostgreSQL pod"), 1);
    assert!(progress_only(&no_address, &database), "another detail of the same provisioning");
    assert!(!progress_only(&TenantStatus::default(), &no_address), "the first status");
    assert!(!progress_only(&no_address, &waiting(Problem::new(Reason::DatabaseNotReady, "x"), 2)), "a new generation");
    let (ready, _) = reconciled(&TenantStatus::default(), &plan("none"), active(), Some(1), &now());
    assert!(!progress_only(&no_address, &ready), "becoming Ready");
    let stalled = waiting(Problem::new(Reason::HostnameConflict, "taken"), 1);
    assert!(!progress_only(&no_address, &stalled), "stalled needs a person now");
}
