//! Step 3 for a TenantUser: its RoleBindings in the tenant's live environment namespaces,
//! each one on its own (a binding the API server refuses does not stop the others), its
//! self-service Role and bindings in the account namespace, and the revocation of every Role
//! and RoleBinding it should no longer have.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::{status::BindingObservations, validate::ValidatedUser};
use crate::{
    controller::{
        apply::{self, get_uncached, needs_apply},
        caches::Child,
        ownership::{is_ours, is_ours_for, is_retained, is_terminating, previous_owner},
        Changes, Context, Error,
    },
    desired::ChildKind,
    naming::{ANNOTATION_USER, LABEL_ASSIGNABLE_TRUE},
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
    let mut uses = BTreeMap::new();
    let owner_uid = valid.tenant_uid.clone();
    let plan = &valid.plan;
    // The self-service Role before the binding that names it; whether a binding is a custom
    // role's comes from the plan, never from its name.
    let objects =
        plan.account_objects.iter().chain(&plan.bindings).map(|o| (o, false)).chain(plan.custom_role_bindings.iter().map(|o| (o, true)));
    for (binding, custom) in objects {
        let namespace = binding.namespace.clone().unwrap_or_default();
        let role = binding.object.pointer("/roleRef/name").and_then(|r| r.as_str()).unwrap_or_default();
        if custom && !assignable(ctx, role) {
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
        let usable = match uses.get(&namespace) {
            Some(known) => known,
            None => uses.entry(namespace.clone()).or_insert(namespace_use(ctx, valid, &namespace).await?),
        };
        match usable {
            NamespaceUse::Usable => {}
            NamespaceUse::Waiting => {
                observed.waiting.push(namespace);
                continue;
            }
            NamespaceUse::Conflict(problem) => {
                if !observed.refused.contains(problem) {
                    observed.refused.push(problem.clone());
                }
                observed.conflicts.push(namespace);
                continue;
            }
        }
        let found = found(ctx, binding.kind, &namespace, &binding.name).await?;
        if let Some(problem) = found.as_ref().and_then(|object| taken(object, user, &valid.tenant.name_any())) {
            observed.refused.push(problem);
            continue;
        }
        kept.insert((binding.kind, namespace.clone(), binding.name.clone()));
        if !needs_apply(ctx, binding, &owner_uid, found.as_ref()).await? {
            continue;
        }
        // `roleRef` is immutable: a changed role means a new binding, not an update.
        if binding.kind == ChildKind::RoleBinding
            && found.as_ref().is_some_and(|c| c.data().get("roleRef") != binding.object.get("roleRef"))
        {
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

/// The object under a name the user's plan wants: the caches hold only the operator's
/// labelled objects, so a miss is confirmed with one GET (a foreign, unlabelled object must not
/// be overwritten either).
async fn found(ctx: &Context, kind: ChildKind, namespace: &str, name: &str) -> Result<Option<Child>, Error> {
    match ctx.caches.get(kind, Some(namespace), name) {
        Some(cached) => Ok(Some(cached)),
        None => Ok(get_uncached(ctx, kind, Some(namespace), name).await?.map(|object| Child::from_object(kind, &object))),
    }
}

/// Why `object`, found under a name the user's plan wants, must be left alone: it is not the
/// operator's, or it is stamped for another TenantUser (two users' names must never share
/// one binding, which the operator would otherwise flip between them for ever).
fn taken(object: &Child, user: &TenantUser, slug: &str) -> Option<Problem> {
    let (kind, namespace, name) = (object.kind().name(), object.namespace().unwrap_or_default(), object.name());
    let mine = user.name_any();
    if !is_ours(object, slug) {
        return Some(Problem::new(
            Reason::BindingConflict,
            format!("{kind} {namespace}/{name} exists and was not made by the operator for tenant {slug}; it is left alone. Delete it"),
        ));
    }
    match object.annotation(ANNOTATION_USER) {
        Some(owner) if owner == mine => None,
        owner => Some(Problem::new(
            Reason::BindingConflict,
            format!(
                "{kind} {namespace}/{name} belongs to TenantUser {}; it is left alone and this user gets no binding there. \
                 Rename one of the two users",
                owner.unwrap_or("(unnamed)")
            ),
        )),
    }
}

/// Whether the user's bindings may go into a namespace of the plan.
enum NamespaceUse {
    Usable,
    /// Not there yet, being deleted, retained, or being adopted by the Tenant.
    Waiting,
    /// Not the Tenant's: someone else's, or an earlier Tenant's it has not adopted.
    Conflict(Problem),
}

/// The rule the Tenant controller applies to its namespaces ([`is_ours_for`]): bindings go
/// only into the operator's live namespace for this very Tenant. The caches hold only labelled
/// namespaces; one they do not have is looked up, so that someone else's unlabelled namespace
/// is reported rather than waited for.
async fn namespace_use(ctx: &Context, valid: &ValidatedUser, namespace: &str) -> Result<NamespaceUse, Error> {
    let slug = valid.tenant.name_any();
    let found = match ctx.caches.get(ChildKind::Namespace, None, namespace) {
        Some(cached) => Some(cached),
        None => get_uncached(ctx, ChildKind::Namespace, None, namespace).await?.map(|ns| Child::from_object(ChildKind::Namespace, &ns)),
    };
    let Some(ns) = found else { return Ok(NamespaceUse::Waiting) };
    if is_ours_for(&ns, &slug, &valid.tenant_uid) {
        if is_terminating(&ns) || is_retained(&ns) {
            return Ok(NamespaceUse::Waiting);
        }
        // The operator may write there only once its grant is (the Tenant applies it right
        // after the namespace; its arrival re-reconciles the tenant's users).
        let grant = ctx.caches.get(ChildKind::RoleBinding, Some(namespace), &ctx.config.operator.namespace_role);
        return Ok(if grant.is_some_and(|grant| is_ours(&grant, &slug)) { NamespaceUse::Usable } else { NamespaceUse::Waiting });
    }
    let problem = match previous_owner(&ns, &valid.tenant_uid).filter(|_| is_ours(&ns, &slug)) {
        Some(previous) if valid.tenant.spec.adopt_retained_from.as_deref() == Some(previous.as_str()) => {
            return Ok(NamespaceUse::Waiting);
        }
        Some(previous) => Problem::new(
            Reason::RetainedDataFromAnotherTenant,
            format!(
                "namespace {namespace} was left by an earlier Tenant {slug} with UID {previous}, which Tenant {slug} has not \
                 adopted; the user is not bound there"
            ),
        ),
        None => Problem::new(
            Reason::NamespaceConflict,
            format!(
                "namespace {namespace} exists and was not created by the operator for tenant {slug} (the Tenant reports \
                 NamespaceConflict); the user is not bound there"
            ),
        ),
    };
    Ok(NamespaceUse::Conflict(problem))
}

/// Whether a TenantUser may name `role` in `customRoles`: listed in the configuration, or
/// labelled assignable (the ClusterRole cache holds only those).
fn assignable(ctx: &Context, role: &str) -> bool {
    ctx.config.users.assignable_roles.iter().any(|r| r == role) || ctx.caches.get(ChildKind::ClusterRole, None, role).is_some()
}

/// Delete the user's Roles and RoleBindings that are not in `keep` (kind, namespace, name).
pub async fn revoke(
    user: &TenantUser,
    keep: &BTreeSet<(ChildKind, String, String)>,
    ctx: &Context,
    changes: &mut Changes,
) -> Result<(), Error> {
    // Only a user in an account namespace can have been given anything.
    let Some(slug) = super::validate::slug_of(user) else { return Ok(()) };
    let me = kube::runtime::reflector::ObjectRef::<super::GuardedUser>::new(&user.name_any()).within(&user.namespace().unwrap_or_default());
    // Bindings first: a binding without its Role grants nothing, the reverse would.
    for kind in [ChildKind::RoleBinding, ChildKind::Role] {
        for object in ctx.caches.of_tenant(kind, &slug) {
            if super::user_of_binding(&object).as_ref() != Some(&me) || is_terminating(&object) || !is_ours(&object, &slug) {
                continue;
            }
            let namespace = object.namespace().unwrap_or_default().to_string();
            let name = object.name_any();
            if keep.contains(&(kind, namespace.clone(), name.clone())) {
                continue;
            }
            if apply::delete(ctx, kind, Some(&namespace), &name).await? {
                changes.note(Reason::Deleted, format!("deleted {} {namespace}/{name}", kind.name()));
            }
        }
    }
    Ok(())
}
