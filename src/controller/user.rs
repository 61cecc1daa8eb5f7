//! TenantUser reconciler: RoleBindings per environment from the role table, uniqueness of
//! email and username inside a tenant, and honest status.

use std::{collections::BTreeSet, sync::Arc};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType, reflector::Store},
    Api, Resource, ResourceExt,
};
use serde_json::json;

use super::{apply, Context, Error, POLL, RESYNC};
use crate::{
    desired::{child_reference, rbac::NotBound, user::UserPlan, ChildKind},
    naming::{FIELD_MANAGER, LABEL_RETAINED, LABEL_USER},
    types::{condition, set_condition, Tenant, TenantUser, TenantUserStatus},
};

pub type GuardedUser = kube::core::DeserializeGuard<TenantUser>;

/// The TenantUser controller's own cache, used to find the other users of a tenant.
pub struct UserContext {
    pub shared: Arc<Context>,
    pub users: Store<GuardedUser>,
}

pub async fn reconcile(guarded: Arc<GuardedUser>, ctx: Arc<UserContext>) -> Result<Action, Error> {
    let user = match &guarded.0 {
        Ok(user) => user,
        Err(invalid) => {
            tracing::warn!(name = ?invalid.metadata.name, error = %invalid.error, "TenantUser cannot be read; waiting for it to be fixed");
            return Ok(Action::await_change());
        }
    };
    if user.metadata.deletion_timestamp.is_some() {
        // RoleBindings carry an owner reference to the user: the garbage collector removes them.
        return Ok(Action::await_change());
    }
    ctx.shared.caches_ready().await;
    let _timer = ctx.shared.metrics.reconcile_started("tenantuser");
    let name = user.name_any();
    let result = reconcile_user(user, &ctx).await;
    if result.is_ok() {
        ctx.shared.reset_failures(&format!("user/{name}"));
    }
    result
}

pub fn error_policy(guarded: Arc<GuardedUser>, error: &Error, ctx: Arc<UserContext>) -> Action {
    let name = guarded.meta().name.clone().unwrap_or_default();
    tracing::warn!(user = %name, %error, "reconcile failed");
    if error.kind() != "waiting" {
        ctx.shared.metrics.reconcile_failed("tenantuser", error.kind());
    }
    ctx.shared.failure_event(guarded.object_ref(&()), error);
    ctx.shared.backoff(&format!("user/{name}"), error)
}

/// Why a user is refused, if another user of the same tenant already has its email or name.
/// The older user (creation time, then name) keeps access.
fn duplicate_of(user: &TenantUser, users: &Store<GuardedUser>) -> Option<(&'static str, String)> {
    let key = |u: &TenantUser| (u.metadata.creation_timestamp.clone().map(|t| t.0), u.name_any());
    let me = key(user);
    let email = user.spec.email.to_lowercase();
    let mut older: Vec<TenantUser> = users
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok().cloned())
        .filter(|other| {
            other.spec.tenant == user.spec.tenant && other.name_any() != user.name_any() && other.metadata.deletion_timestamp.is_none()
        })
        .filter(|other| key(other) < me)
        .collect();
    older.sort_by_key(key);
    if let Some(other) = older.iter().find(|o| o.spec.email.to_lowercase() == email) {
        return Some((
            "DuplicateEmail",
            format!("email {} is already used by TenantUser {} of tenant {}", user.spec.email, other.name_any(), user.spec.tenant),
        ));
    }
    if let Some(other) = older.iter().find(|o| o.spec.username == user.spec.username) {
        return Some((
            "DuplicateUsername",
            format!("username {} is already used by TenantUser {} of tenant {}", user.spec.username, other.name_any(), user.spec.tenant),
        ));
    }
    None
}

async fn reconcile_user(user: &TenantUser, ctx: &UserContext) -> Result<Action, Error> {
    let shared = &ctx.shared;
    let generation = user.metadata.generation;
    let now = Time(Timestamp::now());
    let old_status = user.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    status.observed_generation = generation;

    let tenant = Api::<Tenant>::all(shared.client.clone()).get_opt(&user.spec.tenant).await?;
    let refusal = match &tenant {
        None => Some(("TenantNotFound", format!("tenant {} does not exist (yet); access is granted when it appears", user.spec.tenant))),
        Some(t) if t.metadata.deletion_timestamp.is_some() => {
            Some(("TenantTerminating", format!("tenant {} is being deleted", user.spec.tenant)))
        }
        Some(_) => duplicate_of(user, &ctx.users),
    };
    let tenant = match (tenant, refusal) {
        (Some(tenant), None) => tenant,
        (_, refusal) => {
            let (reason, message) = refusal.unwrap_or(("TenantNotFound", String::new()));
            remove_bindings(user, &BTreeSet::new(), shared).await?;
            status.effective_role = None;
            status.bound_namespaces.clear();
            set_condition(&mut status.conditions, condition("Ready", false, reason, message.clone(), generation, &now));
            if write_status(shared, user, &old_status, status).await? && reason != "TenantNotFound" {
                shared.event(&user.object_ref(&()), EventType::Warning, reason, message);
            }
            // A missing tenant triggers a reconcile when it appears (the Tenant watch), and a
            // duplicate one when the older user changes or goes (the TenantUser watch).
            return Ok(Action::await_change());
        }
    };
    let plan = UserPlan::build(user, &tenant, &shared.config);
    let slug = tenant.name_any();

    // Bind only in namespaces that exist and are the tenant's live environments.
    let mut waiting = Vec::new();
    let mut applied = BTreeSet::new();
    for binding in &plan.bindings {
        let namespace = binding.namespace.clone().unwrap_or_default();
        let ns = shared.caches.get(ChildKind::Namespace, None, &namespace);
        let usable = ns.as_ref().is_some_and(|ns| {
            ns.metadata.deletion_timestamp.is_none() && ns.labels().get(LABEL_RETAINED).map(String::as_str) != Some("true")
        });
        if !usable {
            waiting.push(namespace);
            continue;
        }
        applied.insert((namespace.clone(), binding.name.clone()));
        let cached = shared.caches.get(ChildKind::RoleBinding, Some(&namespace), &binding.name);
        if apply::needs_apply(binding, cached.as_deref()) {
            // `roleRef` is immutable: a changed role means a new binding, not an update.
            let role_changed = cached.as_ref().is_some_and(|c| c.data.get("roleRef") != binding.object.get("roleRef"));
            if role_changed {
                apply::delete(&shared.client, ChildKind::RoleBinding, Some(&namespace), &binding.name).await?;
            }
            apply::apply(&shared.client, binding).await?;
            if cached.is_none() {
                shared.child_event(&user.object_ref(&()), "Created", format!("Created {}", binding.describe()), binding.reference());
            }
        }
    }
    remove_bindings(user, &applied, shared).await?;

    waiting.sort();
    waiting.dedup();
    status.effective_role = plan.effective_role;
    status.bound_namespaces = plan.bound_namespaces.iter().filter(|ns| !waiting.contains(ns)).cloned().collect();
    let prod_only: Vec<String> =
        plan.not_bound.iter().filter(|(_, why)| *why == NotBound::ProdOnlyRole).map(|(env, _)| env.to_string()).collect();
    let ready = if !waiting.is_empty() {
        condition(
            "Ready",
            false,
            "WaitingForNamespaces",
            format!("namespaces {} of tenant {slug} do not exist yet", waiting.join(", ")),
            generation,
            &now,
        )
    } else if plan.bindings.is_empty() && !prod_only.is_empty() {
        let role = plan.effective_role.map(|r| r.to_string()).unwrap_or_default();
        condition(
            "Ready",
            false,
            "RoleRequiresProd",
            format!("{role} accounts are only supported in prod, and tenant {slug} has no prod environment"),
            generation,
            &now,
        )
    } else {
        let mut message = format!("bound in {}", status.bound_namespaces.join(", "));
        if !prod_only.is_empty() {
            let role = plan.effective_role.map(|r| r.to_string()).unwrap_or_default();
            message.push_str(&format!("; {role} is not bound in {} (prod only)", prod_only.join(", ")));
        }
        condition("Ready", true, "Bound", message, generation, &now)
    };
    let is_ready = ready.status == "True";
    set_condition(&mut status.conditions, ready);
    write_status(shared, user, &old_status, status).await?;
    Ok(Action::requeue(if is_ready { RESYNC } else { POLL }))
}

/// Delete the user's RoleBindings that are not in `keep` (namespace, name).
async fn remove_bindings(user: &TenantUser, keep: &BTreeSet<(String, String)>, shared: &Context) -> Result<(), Error> {
    let slug = &user.spec.tenant;
    let name = user.name_any();
    for binding in shared.caches.of_tenant(ChildKind::RoleBinding, slug) {
        if binding.labels().get(LABEL_USER) != Some(&name) || binding.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let namespace = binding.namespace().unwrap_or_default();
        let binding_name = binding.name_any();
        if keep.contains(&(namespace.clone(), binding_name.clone())) {
            continue;
        }
        if apply::delete(&shared.client, ChildKind::RoleBinding, Some(&namespace), &binding_name).await? {
            let related = child_reference(ChildKind::RoleBinding, Some(&namespace), &binding_name);
            shared.child_event(&user.object_ref(&()), "Deleted", format!("Deleted RoleBinding {namespace}/{binding_name}"), related);
        }
    }
    Ok(())
}

async fn write_status(ctx: &Context, user: &TenantUser, old: &TenantUserStatus, new: TenantUserStatus) -> Result<bool, Error> {
    if user.status.is_some() && *old == new {
        return Ok(false);
    }
    let api: Api<TenantUser> = Api::all(ctx.client.clone());
    let patch = json!({ "apiVersion": TenantUser::api_version(&()), "kind": TenantUser::kind(&()), "status": new });
    api.patch_status(&user.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await?;
    Ok(true)
}

/// TenantUsers of a tenant, from the controller's cache.
pub fn users_of_tenant(users: &Store<GuardedUser>, slug: &str) -> Vec<kube::runtime::reflector::ObjectRef<GuardedUser>> {
    users
        .state()
        .iter()
        .filter(|g| g.0.as_ref().is_ok_and(|u| u.spec.tenant == slug))
        .map(|g| kube::runtime::reflector::ObjectRef::from_obj(g.as_ref()))
        .collect()
}
