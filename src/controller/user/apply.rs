//! Step 3 for a TenantUser: its RoleBindings in the tenant's live environment namespaces,
//! each one on its own (a binding the API server refuses does not stop the others), and the
//! revocation of every binding it should no longer have.

use std::collections::BTreeSet;

use kube::ResourceExt;

use super::{status::BindingObservations, validate::ValidatedUser};
use crate::{
    controller::{
        apply::{self, needs_apply},
        ownership::{is_retained, is_terminating},
        Changes, Context, Error,
    },
    desired::ChildKind,
    naming::{self, LABEL_ASSIGNABLE_TRUE},
    types::{Problem, Reason, TenantUser},
};

pub async fn apply_bindings(
    user: &TenantUser,
    valid: &ValidatedUser,
    ctx: &Context,
    changes: &mut Changes,
) -> Result<BindingObservations, Error> {
    let mut observed = BindingObservations::default();
    let mut kept = BTreeSet::new();
    let owner_uid = valid.tenant.uid().unwrap_or_default();
    let system_binding = naming::user_binding_name(&user.spec.username);
    for binding in &valid.plan.bindings {
        let namespace = binding.namespace.clone().unwrap_or_default();
        let role = binding.object.pointer("/roleRef/name").and_then(|r| r.as_str()).unwrap_or_default();
        if binding.name != system_binding && !assignable(ctx, role) {
            let problem = Problem::new(
                Reason::CustomRoleRefused,
                format!(
                    "custom role {role} is not assignable to TenantUsers: label the ClusterRole {LABEL_ASSIGNABLE_TRUE} or list it \
                     in the configuration's users.assignableRoles; no RoleBinding to it is made"
                ),
            );
            if !observed.refused.contains(&problem) {
                observed.refused.push(problem);
            }
            continue;
        }
        let usable = ctx.caches.get(ChildKind::Namespace, None, &namespace).is_some_and(|ns| !is_terminating(&ns) && !is_retained(&ns));
        if !usable {
            observed.waiting.push(namespace);
            continue;
        }
        kept.insert((namespace.clone(), binding.name.clone()));
        let cached = ctx.caches.get(ChildKind::RoleBinding, Some(&namespace), &binding.name);
        if !needs_apply(ctx, binding, &owner_uid, cached.as_ref()).await? {
            continue;
        }
        // `roleRef` is immutable: a changed role means a new binding, not an update.
        if cached.as_ref().is_some_and(|c| c.data().get("roleRef") != binding.object.get("roleRef")) {
            apply::delete(ctx, ChildKind::RoleBinding, Some(&namespace), &binding.name).await?;
        }
        match apply::apply(ctx, binding, &owner_uid).await {
            Ok(_) => changes.applied(binding),
            Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404 | 422) => {
                let reason = if status.code == 404 { Reason::CustomRoleNotFound } else { Reason::CustomRoleRefused };
                observed.refused.push(Problem::new(
                    reason,
                    format!("the API server refused RoleBinding {namespace}/{} to ClusterRole {role}: {}", binding.name, status.message),
                ));
            }
            Err(other) => return Err(other.into()),
        }
    }
    revoke(user, &kept, ctx, changes).await?;
    Ok(observed)
}

/// Whether a TenantUser may name `role` in `customRoles`: listed in the configuration, or
/// labelled assignable (the ClusterRole cache holds only those).
fn assignable(ctx: &Context, role: &str) -> bool {
    ctx.config.users.assignable_roles.iter().any(|r| r == role) || ctx.caches.get(ChildKind::ClusterRole, None, role).is_some()
}

/// Delete the user's RoleBindings that are not in `keep` (namespace, name).
pub async fn revoke(user: &TenantUser, keep: &BTreeSet<(String, String)>, ctx: &Context, changes: &mut Changes) -> Result<(), Error> {
    let name = user.name_any();
    for binding in ctx.caches.of_tenant(ChildKind::RoleBinding, &user.spec.tenant) {
        if super::user_of_binding(&binding).as_deref() != Some(name.as_str()) || is_terminating(&binding) {
            continue;
        }
        let namespace = binding.namespace().unwrap_or_default().to_string();
        let binding_name = binding.name_any();
        if keep.contains(&(namespace.clone(), binding_name.clone())) {
            continue;
        }
        if apply::delete(ctx, ChildKind::RoleBinding, Some(&namespace), &binding_name).await? {
            changes.note(Reason::Deleted, format!("deleted RoleBinding {namespace}/{binding_name}"));
        }
    }
    Ok(())
}
