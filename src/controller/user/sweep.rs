//! Revocation that does not depend on a finalizer. A user may remove the operator's finalizer
//! from their own TenantUser (self-edit is a patch), and a user deleted while the operator was
//! down is gone before anyone revokes anything: Roles and RoleBindings stamped for a TenantUser
//! that no longer exists are deleted by this sweep, after every Tenant reconcile and every
//! `users.orphanSweepSeconds` for every Tenant.

use std::{sync::Arc, time::Duration};

use kube::{Resource, ResourceExt};

use crate::{
    controller::{
        apply,
        ownership::{is_ours, is_terminating},
        Changes, Context, Error,
    },
    desired::ChildKind,
    types::Reason,
};

/// Delete the Roles and RoleBindings of tenant `slug` whose TenantUser no longer exists. Only
/// the operator's, stamped for a user (see `user_of_binding`): nothing is deleted on a label or
/// a field manager alone.
pub async fn sweep_orphans(ctx: &Context, slug: &str, changes: &mut Changes) -> Result<(), Error> {
    // Bindings first: a binding without its Role grants nothing, the reverse would.
    for kind in [ChildKind::RoleBinding, ChildKind::Role] {
        for object in ctx.caches.of_tenant(kind, slug) {
            let Some(user) = super::user_of_binding(&object) else { continue };
            if ctx.users.get(&user).is_some() || is_terminating(&object) || !is_ours(&object, slug) {
                continue;
            }
            let (namespace, name) = (object.namespace().unwrap_or_default(), object.name());
            if apply::delete(ctx, kind, Some(namespace), name).await? {
                changes.note(
                    Reason::Deleted,
                    format!("deleted {} {namespace}/{name} of the TenantUser {}, which no longer exists", kind.name(), user.name),
                );
            }
        }
    }
    Ok(())
}

/// Sweep every Tenant's orphans every `users.orphanSweepSeconds`, for as long as the operator
/// runs; what a sweep deleted is one Event on its Tenant.
pub async fn sweep_periodically(ctx: Arc<Context>) {
    ctx.caches_ready().await;
    let period = Duration::from_secs(ctx.config.users.orphan_sweep_seconds.max(1));
    loop {
        tokio::time::sleep(period).await;
        let tenants: Vec<_> = ctx.tenants.state().iter().filter_map(|g| g.0.as_ref().ok().cloned()).collect();
        for tenant in tenants {
            let mut changes = Changes::default();
            if let Err(error) = sweep_orphans(&ctx, &tenant.name_any(), &mut changes).await {
                tracing::warn!(tenant = %tenant.name_any(), %error, "sweeping revoked users' bindings failed; retried next period");
            }
            ctx.changes_event(&tenant.object_ref(&()), &changes);
        }
    }
}
