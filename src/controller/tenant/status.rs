//! Step 4 (pure): what a reconcile observed → the Tenant's status.
//!
//! Conditions follow kstatus: `Ready` says whether everything works, `Reconciling` that the
//! operator is still working towards the spec (and on what), `Stalled` that it cannot make
//! progress until a person changes something. Exactly one of the three is True at any time
//! (none while suspended). `NamespacesReady`, `IngressReady` and `DatabaseReady` detail
//! `Ready`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::{
    controller::summary::Summary,
    desired::tenant::TenantPlan,
    types::{
        condition, set_condition, AccountNamespaceStatus, ConditionType, Conditions, DatabaseProvider, DatabaseStatus, DeletionPolicy,
        NamespaceStatus, Problem, Reason, TenantPhase, TenantStatus,
    },
};

/// What one reconcile of the environments found.
#[derive(Debug, Default)]
pub struct Observations {
    /// The account namespace, unless it is someone else's.
    pub account_namespace: Option<AccountNamespaceStatus>,
    pub namespaces: Vec<NamespaceStatus>,
    pub databases: Vec<DatabaseStatus>,
    /// Namespaces that cannot be used (terminating, someone else's, refused).
    pub namespace_problems: Vec<Problem>,
    /// Objects in the namespaces the API server refused or that are someone else's.
    pub object_problems: Vec<Problem>,
    pub ingress_problems: Vec<Problem>,
    pub database_problems: Vec<Problem>,
    /// The earlier Tenant whose retained namespaces this Tenant adopted, as recorded on them.
    pub adopted_from: Option<String>,
}

/// Status after a reconcile of a valid Tenant, and the problem that stalls it, if any (a
/// person is told through a Warning Event too).
pub fn reconciled(
    old: &TenantStatus,
    plan: &TenantPlan,
    observed: Observations,
    generation: Option<i64>,
    now: &Time,
) -> (TenantStatus, Option<Problem>) {
    let mut status = old.clone();
    status.observed_generation = generation;
    status.endpoints = plan.endpoints.clone();
    let mut namespaces = observed.namespaces;
    namespaces.sort_by(|a, b| a.environment.cmp(&b.environment).then(a.name.cmp(&b.name)));
    status.namespaces = namespaces;
    status.account_namespace = observed.account_namespace;
    status.databases = observed.databases;
    status.adopted_from = observed.adopted_from;

    let namespaces_problem = observed.namespace_problems.first().cloned().or_else(|| joined(&observed.object_problems));
    let namespaces_condition = match &namespaces_problem {
        Some(problem) => detail(ConditionType::NamespacesReady, Err(problem), generation, now),
        None => {
            let message = format!("{} environment namespace(s) and the account namespace reconciled", plan.environments.len());
            detail(ConditionType::NamespacesReady, Ok((Reason::Applied, message)), generation, now)
        }
    };
    let ingress_problem = match (&namespaces_problem, joined(&observed.ingress_problems)) {
        (_, Some(problem)) => Some(problem),
        (Some(_), None) => Some(Problem::new(Reason::NamespacesNotReady, "waiting for the environment namespaces")),
        (None, None) => None,
    };
    let ingress_condition = match &ingress_problem {
        Some(problem) => detail(ConditionType::IngressReady, Err(problem), generation, now),
        None => {
            let message = format!("{} endpoint(s) routed: every Ingress has an address, every HTTPRoute is accepted", plan.endpoints.len());
            detail(ConditionType::IngressReady, Ok((Reason::Ready, message)), generation, now)
        }
    };
    let database_problem = joined(&observed.database_problems);
    let database_condition = match (&database_problem, plan.database_provider) {
        (Some(problem), _) => detail(ConditionType::DatabaseReady, Err(problem), generation, now),
        (None, DatabaseProvider::None) => {
            detail(ConditionType::DatabaseReady, Ok((Reason::NoDatabase, "database provider is none".into())), generation, now)
        }
        (None, provider) => {
            let message = format!("{} database(s) ready ({provider})", status.databases.len());
            detail(ConditionType::DatabaseReady, Ok((Reason::Ready, message)), generation, now)
        }
    };

    // The first problem in the order a person would fix them decides the summary.
    let blocking = [&namespaces_problem, &ingress_problem, &database_problem]
        .into_iter()
        .flatten()
        .find(|p| p.reason.needs_a_person())
        .or_else(|| [&namespaces_problem, &ingress_problem, &database_problem].into_iter().flatten().next())
        .cloned();
    for c in [namespaces_condition, ingress_condition, database_condition] {
        set_condition(&mut status.conditions, c);
    }
    match blocking {
        None => summarise(&mut status, Summary::Ready("all environments, endpoints and databases are ready"), generation, now),
        Some(problem) if problem.reason.needs_a_person() => {
            summarise(&mut status, Summary::Stalled(&problem), generation, now);
            return (status, Some(problem));
        }
        Some(problem) => summarise(&mut status, Summary::Progressing(&problem), generation, now),
    }
    (status, None)
}

/// Whether `new` only refreshes the details of work in progress that `old` already reports:
/// same generation, Provisioning and `Reconciling` in both. Such an update can wait a little
/// (see `PROGRESS_REFRESH`); kstatus readers see `Reconciling` either way.
pub fn progress_only(old: &TenantStatus, new: &TenantStatus) -> bool {
    let progressing = |s: &TenantStatus| s.phase == Some(TenantPhase::Provisioning) && s.is_true(ConditionType::Reconciling.as_str());
    progressing(old) && progressing(new) && old.observed_generation == new.observed_generation
}

/// Status of a Tenant the validate step refused: nothing was changed.
pub fn refused(old: &TenantStatus, problem: &Problem, generation: Option<i64>, now: &Time) -> TenantStatus {
    let mut status = old.clone();
    status.observed_generation = generation;
    summarise(&mut status, Summary::Stalled(problem), generation, now);
    status
}

pub fn suspended(old: &TenantStatus, generation: Option<i64>, now: &Time) -> TenantStatus {
    let mut status = old.clone();
    status.observed_generation = generation;
    summarise(&mut status, Summary::Suspended("spec.suspend is true: nothing is created, changed or deleted"), generation, now);
    status
}

pub fn terminating(old: &TenantStatus, policy: DeletionPolicy, generation: Option<i64>, now: &Time) -> TenantStatus {
    let mut status = old.clone();
    let message = match policy {
        DeletionPolicy::Retain => "deletionPolicy Retain: namespaces, volumes, credentials and databases are kept",
        DeletionPolicy::Delete => "deletionPolicy Delete: removing the namespaces and databases the operator created",
    };
    summarise(&mut status, Summary::Terminating(message), generation, now);
    status
}

/// Status after a reconcile that failed with an error it retries (an API failure): `Ready` is
/// never left True by a reconcile that did not complete.
pub fn failed(old: &TenantStatus, message: &str, generation: Option<i64>, now: &Time) -> TenantStatus {
    let mut status = old.clone();
    let problem = Problem::new(Reason::ReconcileFailed, format!("{message}; retrying"));
    summarise(&mut status, Summary::Progressing(&problem), generation, now);
    status
}

fn summarise(status: &mut TenantStatus, summary: Summary<'_>, generation: Option<i64>, now: &Time) {
    let phase = match summary {
        Summary::Ready(_) => TenantPhase::Ready,
        Summary::Progressing(_) => TenantPhase::Provisioning,
        Summary::Stalled(_) => TenantPhase::Failed,
        Summary::Suspended(_) => TenantPhase::Suspended,
        Summary::Terminating(_) => TenantPhase::Terminating,
    };
    status.phase = Some(phase);
    summary.apply(&mut status.conditions, generation, now);
}

fn detail(type_: ConditionType, outcome: Result<(Reason, String), &Problem>, generation: Option<i64>, now: &Time) -> Condition {
    match outcome {
        Ok((reason, message)) => condition(type_, true, reason, message, generation, now),
        Err(problem) => condition(type_, false, problem.reason, problem.message.clone(), generation, now),
    }
}

/// Several problems of one kind as one: the first one's reason, every message.
fn joined(problems: &[Problem]) -> Option<Problem> {
    let first = problems.first()?;
    let reason = problems.iter().find(|p| p.reason.needs_a_person()).map_or(first.reason, |p| p.reason);
    Some(Problem::new(reason, problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ")))
}

#[cfg(test)]
mod tests;
