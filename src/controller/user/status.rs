//! Step 4 for a TenantUser (pure): which bindings exist → the user's status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::SelfService;
use crate::{
    controller::summary::Summary,
    desired::{rbac::NotBound, user::UserPlan},
    types::{condition, set_condition, ConditionType, Problem, Reason, TenantUserStatus},
};

/// What applying a user's bindings found.
#[derive(Debug, Default)]
pub struct BindingObservations {
    /// Environment namespaces that do not exist (yet) or are not the tenant's live ones.
    pub waiting: Vec<String>,
    /// Bindings the API server refused, and namespaces that are not the tenant's, one problem
    /// each.
    pub refused: Vec<Problem>,
    /// Namespaces of the plan that are not the tenant's (someone else's, or an earlier Tenant's):
    /// nothing is bound there.
    pub conflicts: Vec<String>,
}

/// `tenant`: the slug and UID of the Tenant the user is bound under.
pub fn bound(
    old: &TenantUserStatus,
    plan: &UserPlan,
    (slug, tenant_uid): (&str, &str),
    observed: BindingObservations,
    generation: Option<i64>,
    now: &Time,
) -> TenantUserStatus {
    let mut status = old.clone();
    status.observed_generation = generation;
    status.tenant = Some(slug.to_string());
    status.tenant_uid = Some(tenant_uid.to_string());
    let mut waiting = observed.waiting;
    waiting.sort();
    waiting.dedup();
    status.effective_role = plan.effective_role;
    status.bound_namespaces =
        plan.bound_namespaces.iter().filter(|ns| !waiting.contains(ns) && !observed.conflicts.contains(ns)).cloned().collect();
    let role = plan.effective_role.map(|r| r.to_string()).unwrap_or_default();
    let prod_only: Vec<String> =
        plan.not_bound.iter().filter(|(_, why)| *why == NotBound::ProdOnlyRole).map(|(env, _)| env.to_string()).collect();

    let problem = if let Some(first) = observed.refused.first() {
        // Every refused binding is named; the others are in place.
        let message = observed.refused.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ");
        Some(Problem::new(first.reason, message))
    } else if !waiting.is_empty() {
        Some(Problem::new(Reason::WaitingForNamespaces, format!("namespaces {} of tenant {slug} do not exist yet", waiting.join(", "))))
    } else if !plan.binds_environments() && !prod_only.is_empty() {
        Some(Problem::new(
            Reason::RoleRequiresProd,
            format!("{role} accounts are only supported in prod, and tenant {slug} has no prod environment"),
        ))
    } else {
        None
    };
    match &problem {
        Some(problem) => Summary::of(problem).apply(&mut status.conditions, generation, now),
        None => {
            let mut message = format!("bound in {}", status.bound_namespaces.join(", "));
            if !prod_only.is_empty() {
                message.push_str(&format!("; {role} is not bound in {} (prod only)", prod_only.join(", ")));
            }
            Summary::Ready(&message).apply(&mut status.conditions, generation, now);
        }
    }
    status
}

/// The `SelfService` condition: whether the user may edit their own TenantUser, and if not,
/// why (the self-service admission policy is not installed as shipped).
pub fn self_service(status: &mut TenantUserStatus, verdict: &SelfService, generation: Option<i64>, now: &Time) {
    let (allowed, reason, message) = match verdict {
        SelfService::Verified => (
            true,
            Reason::SelfServiceVerified,
            "the user may edit their own names and details (the self-service admission policy is verified)".to_string(),
        ),
        SelfService::Withheld(why) => {
            (false, Reason::SelfServiceUnavailable, format!("the user may only read their own TenantUser: {why}"))
        }
        SelfService::Unknown => {
            (false, Reason::SelfServiceUnavailable, "the self-service admission policy has not been checked yet".to_string())
        }
    };
    set_condition(&mut status.conditions, condition(ConditionType::SelfService, allowed, reason, message, generation, now));
}

/// Status of a user the validate step refused: no bindings. `slug`: the tenant whose account
/// namespace the user is in, if it is one.
pub fn refused(old: &TenantUserStatus, problem: &Problem, slug: Option<String>, generation: Option<i64>, now: &Time) -> TenantUserStatus {
    let mut status = old.clone();
    status.observed_generation = generation;
    status.tenant = slug.filter(|_| problem.reason != Reason::NotInAccountNamespace);
    status.effective_role = None;
    status.bound_namespaces.clear();
    Summary::of(problem).apply(&mut status.conditions, generation, now);
    status
}

/// Status after a reconcile that failed with an error it retries.
pub fn failed(old: &TenantUserStatus, message: &str, generation: Option<i64>, now: &Time) -> TenantUserStatus {
    let mut status = old.clone();
    let problem = Problem::new(Reason::ReconcileFailed, format!("{message}; retrying"));
    Summary::Progressing(&problem).apply(&mut status.conditions, generation, now);
    status
}
