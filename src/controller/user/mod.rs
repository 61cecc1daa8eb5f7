//! TenantUser reconciler: RoleBindings per environment from the role table, uniqueness of
//! email and username inside a tenant, and honest status. Steps: validate → build (in
//! `crate::desired::user`) → apply → status.

mod apply;
mod status;
mod validate;

use std::{collections::BTreeSet, sync::Arc};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    runtime::{
        controller::Action,
        events::EventType,
        reflector::{ObjectRef, Store},
    },
    Resource, ResourceExt,
};

use super::{caches::Child, readable, Changes, Context, ControllerKind, Error, ErrorKind, POLL, RESYNC};
use crate::{
    naming::{ANNOTATION_USER, LABEL_USER},
    types::{Reason, TenantUser},
};

pub type GuardedUser = kube::core::DeserializeGuard<TenantUser>;

pub async fn reconcile(guarded: Arc<GuardedUser>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(user) = readable(&guarded) else { return Ok(Action::await_change()) };
    if user.metadata.deletion_timestamp.is_some() {
        // RoleBindings carry an owner reference to the user: the garbage collector removes them.
        return Ok(Action::await_change());
    }
    ctx.caches_ready().await;
    let _timer = ctx.metrics.reconcile_started(ControllerKind::TenantUser.as_str());
    let result = reconcile_user(&user, &ctx).await;
    match &result {
        Ok(_) => ctx.succeeded(ControllerKind::TenantUser, &user.name_any()),
        Err(error) if error.kind() != ErrorKind::Waiting => {
            // A failed reconcile never leaves a stale condition behind.
            let old = ctx.current_status(&user, user.status.as_ref()).unwrap_or_default();
            let new = status::failed(&old, &error.to_string(), user.metadata.generation, &Time(Timestamp::now()));
            if let Err(write_error) = ctx.write_status(&user, user.status.as_ref(), &new).await {
                tracing::debug!(user = %user.name_any(), %write_error, "could not record the failure in status");
            }
        }
        Err(_) => {}
    }
    result
}

pub fn error_policy(guarded: Arc<GuardedUser>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.failed(ControllerKind::TenantUser, guarded.as_ref(), error)
}

async fn reconcile_user(user: &TenantUser, ctx: &Context) -> Result<Action, Error> {
    let generation = user.metadata.generation;
    let now = Time(Timestamp::now());
    let old = ctx.current_status(user, user.status.as_ref()).unwrap_or_default();
    let tenant = ctx.tenants.get(&ObjectRef::new(&user.spec.tenant)).and_then(|guarded| guarded.0.as_ref().ok().cloned());
    let others: Vec<TenantUser> = ctx.users.state().iter().filter_map(|g| g.0.as_ref().ok().cloned()).collect();
    let mut changes = Changes::default();
    let valid = match validate::validate(user, tenant, &others, &ctx.config) {
        Ok(valid) => valid,
        Err(problem) => {
            apply::revoke(user, &BTreeSet::new(), ctx, &mut changes).await?;
            ctx.changes_event(&user.object_ref(&()), &changes);
            let new = status::refused(&old, &problem, generation, &now);
            if ctx.write_status(user, user.status.as_ref(), &new).await? && problem.reason != Reason::TenantNotFound {
                ctx.event(&user.object_ref(&()), EventType::Warning, problem.reason, &problem.message);
            }
            // A missing tenant triggers a reconcile when it appears (the Tenant watch), and a
            // duplicate one when the older user changes or goes (the TenantUser watch).
            return Ok(Action::await_change());
        }
    };
    let observed = apply::apply_bindings(user, &valid, ctx, &mut changes).await?;
    ctx.changes_event(&user.object_ref(&()), &changes);
    let refused = observed.refused.clone();
    let new = status::bound(&old, &valid.plan, &valid.tenant.name_any(), observed, generation, &now);
    if ctx.write_status(user, user.status.as_ref(), &new).await? {
        for problem in &refused {
            ctx.event(&user.object_ref(&()), EventType::Warning, problem.reason, &problem.message);
        }
    }
    let ready = new.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
    Ok(Action::requeue(if ready { RESYNC } else { POLL }))
}

/// The TenantUser a RoleBinding of the operator is for: the full name is in an annotation
/// (a label value is cut at 63 characters).
pub fn user_of_binding(binding: &Child) -> Option<String> {
    binding.annotation(ANNOTATION_USER).or_else(|| binding.label(LABEL_USER)).map(str::to_string)
}

/// TenantUsers that name `role` among their custom roles.
pub fn users_naming_role(users: &Store<GuardedUser>, role: &str) -> Vec<ObjectRef<GuardedUser>> {
    users
        .state()
        .iter()
        .filter(|g| g.0.as_ref().is_ok_and(|u| u.spec.custom_roles.iter().any(|r| r == role)))
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

/// TenantUsers of a tenant, from the controller's cache.
pub fn users_of_tenant(users: &Store<GuardedUser>, slug: &str) -> Vec<ObjectRef<GuardedUser>> {
    users.state().iter().filter(|g| g.0.as_ref().is_ok_and(|u| u.spec.tenant == slug)).map(|g| ObjectRef::from_obj(g.as_ref())).collect()
}
