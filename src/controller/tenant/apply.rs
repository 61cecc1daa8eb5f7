//! Step 3: bring the cluster to the plan. Each desired object is compared with what the
//! caches hold and server-side applied only when it differs; objects that are not the
//! operator's are never overwritten or deleted (SPEC §8), they are reported instead.

use std::collections::BTreeSet;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;

use super::{database, grants, predecessor, routes, status::Observations, validate::ValidatedTenant};
use crate::{
    controller::{
        apply::{self, get_uncached, needs_apply},
        caches::Child,
        ownership::{claim, is_ours, is_ours_for, is_retained, is_terminating, Claim},
        Changes, Context, Error,
    },
    database::DATA_VOLUME,
    desired::{
        tenant::{grant, AccountPlan, EnvironmentPlan},
        ChildKind, DesiredObject,
    },
    naming::{self, ANNOTATION_ADOPTED_FROM, LABEL_ENVIRONMENT, LABEL_RETAINED},
    types::{AccountNamespaceStatus, DeletionPolicy, Environment, NamespaceState, NamespaceStatus, Problem, Reason, Tenant},
};

/// Kinds a spec change can make unwanted: the route (Ingress or HTTPRoute) of a removed
/// application, or of the other kind after a switch of routing. (The quota and its LimitRange
/// are in every environment namespace, whatever the spec says.)
/// Data holders (Secrets, PVCs, the StatefulSet, the CloudNativePG Cluster) are never among
/// them: they go only with their environment or Tenant, under `deletionPolicy: Delete`.
const REMOVABLE: [ChildKind; 2] = [ChildKind::Ingress, ChildKind::HttpRoute];

/// Apply every environment of the plan and remove what the spec no longer asks for.
pub async fn apply_tenant(tenant: &Tenant, valid: &ValidatedTenant, ctx: &Context, changes: &mut Changes) -> Result<Observations, Error> {
    let mut observed = Observations::default();
    for (host, older) in &valid.contested_hosts {
        observed.ingress_problems.push(Problem::new(
            Reason::HostnameConflict,
            format!("host {host} is already routed by the older Tenant {older}; its route (Ingress or HTTPRoute) is not created. Choose other applications, cluster or hostname templates, or remove the host from {older}"),
        ));
    }
    let has_routes = valid.plan.objects().any(|o| o.kind == ChildKind::HttpRoute);
    if let Some(problem) = ctx.config.clusters.get(&tenant.spec.cluster).and_then(|c| routes::gateway_problem(ctx, c, has_routes)) {
        observed.ingress_problems.push(problem);
    }
    apply_account(valid, ctx, &mut observed, changes).await?;
    for env in &valid.plan.environments {
        apply_environment(tenant, valid, env, ctx, &mut observed, changes).await?;
    }
    remove_unwanted(tenant, valid, ctx, &mut observed, changes).await?;
    sweep_orphaned_bindings(valid, ctx, changes).await?;
    Ok(observed)
}

/// RoleBindings and Roles of TenantUsers that no longer exist: a user whose finalizer a
/// person removed, or one deleted while the operator was down, must not keep access (the user
/// controller also sweeps every `users.orphanSweepSeconds`).
async fn sweep_orphaned_bindings(valid: &ValidatedTenant, ctx: &Context, changes: &mut Changes) -> Result<(), Error> {
    crate::controller::user::sweep_orphans(ctx, &valid.slug, changes).await
}

/// An object under `name` as the API server has it: the label-narrowed caches do not hold
/// objects without the tenant label, so a miss is confirmed with one GET.
pub(super) async fn found(ctx: &Context, kind: ChildKind, namespace: Option<&str>, name: &str) -> Result<Option<Child>, Error> {
    match ctx.caches.get(kind, namespace, name) {
        Some(cached) => Ok(Some(cached)),
        None => Ok(get_uncached(ctx, kind, namespace, name).await?.map(|object| Child::from_object(kind, &object))),
    }
}

/// Whether a namespace the plan wants can be used, after [`claim_namespace`].
enum NamespaceClaim {
    /// Someone else's, or being deleted: nothing in it is touched (the problem is recorded).
    Unusable { terminating: bool },
    /// The operator's (adopted if it was retained), or free; `fresh`: it does not exist yet.
    Usable { found: Option<Child>, fresh: bool },
}

/// Decide whether the namespace `name` may be used for the tenant, adopting it if it was
/// retained by this Tenant, or left by the earlier Tenant of the slug it consents to adopt
/// from (validation refused the Tenant for any other earlier Tenant's namespace).
async fn claim_namespace(
    valid: &ValidatedTenant,
    name: &str,
    ctx: &Context,
    observed: &mut Observations,
    changes: &mut Changes,
) -> Result<NamespaceClaim, Error> {
    let namespace = found(ctx, ChildKind::Namespace, None, name).await?;
    if let Some(from) = namespace.as_ref().and_then(|ns| ns.annotation(ANNOTATION_ADOPTED_FROM)) {
        observed.adopted_from.get_or_insert_with(|| from.to_string());
    }
    let fresh = match claim(namespace.as_ref(), &valid.slug, &valid.uid) {
        Claim::Foreign => {
            observed.namespace_problems.push(Problem::new(
                Reason::NamespaceConflict,
                format!(
                    "namespace {name} exists and was not created by the operator for tenant {}; nothing in it is touched. \
                     Delete or rename it, or choose another slug",
                    valid.slug
                ),
            ));
            return Ok(NamespaceClaim::Unusable { terminating: false });
        }
        Claim::Earlier { uid } if valid.adopt_from.as_deref() != Some(uid.as_str()) => {
            let problem = predecessor::refuse_object(&valid.slug, &format!("namespace {name}"), &uid);
            observed.namespace_problems.push(problem);
            return Ok(NamespaceClaim::Unusable { terminating: false });
        }
        _ if namespace.as_ref().is_some_and(is_terminating) => {
            observed.namespace_problems.push(Problem::new(
                Reason::NamespaceTerminating,
                format!("namespace {name} is being deleted; it is re-created once it is gone"),
            ));
            return Ok(NamespaceClaim::Unusable { terminating: true });
        }
        Claim::Earlier { uid } => {
            adopt(valid, name, Some(&uid), ctx, changes).await?;
            observed.adopted_from = Some(uid);
            false
        }
        Claim::Retained => {
            adopt(valid, name, None, ctx, changes).await?;
            false
        }
        Claim::Ours => false,
        Claim::Free => true,
    };
    Ok(NamespaceClaim::Usable { found: namespace, fresh })
}

/// The account namespace, home of the tenant's TenantUsers: claimed and applied like an
/// environment namespace, with its count quota and nothing else from the Tenant.
async fn apply_account(valid: &ValidatedTenant, ctx: &Context, observed: &mut Observations, changes: &mut Changes) -> Result<(), Error> {
    let account = &valid.plan.account;
    let state = match claim_namespace(valid, &account.namespace, ctx, observed, changes).await? {
        NamespaceClaim::Unusable { terminating: true } => NamespaceState::Terminating,
        NamespaceClaim::Unusable { terminating: false } => return Ok(()),
        NamespaceClaim::Usable { found: namespace, fresh } => {
            for desired in &account.objects {
                let current = match desired.kind {
                    ChildKind::Namespace => namespace.clone(),
                    // Nothing can be in a namespace this reconcile is creating.
                    _ if fresh => None,
                    _ => found(ctx, desired.kind, desired.namespace.as_deref(), &desired.name).await?,
                };
                if let Some(current) = current.as_ref().filter(|_| desired.kind != ChildKind::Namespace) {
                    if !is_ours(current, &valid.slug) {
                        observed.object_problems.push(object_conflict(desired));
                        continue;
                    }
                    if is_terminating(current) {
                        continue;
                    }
                }
                if !needs_apply(ctx, desired, &valid.uid, current.as_ref()).await? {
                    continue;
                }
                match apply::apply(ctx, desired, &valid.uid).await {
                    Ok(_) => {
                        changes.applied(desired);
                        if grant::is_grant(desired.kind, &desired.name, &ctx.config.operator) {
                            grants::wait_for_grant(ctx, &valid.slug, &account.namespace).await?;
                        }
                    }
                    Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404 | 422) => {
                        observed.object_problems.push(apply_refused(desired, &status.message));
                        return Ok(());
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            observed.object_problems.extend(uncounted_quotas(account, ctx));
            NamespaceState::Active
        }
    };
    observed.account_namespace = Some(AccountNamespaceStatus { name: account.namespace.clone(), state });
    Ok(())
}

async fn apply_environment(
    tenant: &Tenant,
    valid: &ValidatedTenant,
    env: &EnvironmentPlan,
    ctx: &Context,
    observed: &mut Observations,
    changes: &mut Changes,
) -> Result<(), Error> {
    let (namespace, fresh_namespace) = match claim_namespace(valid, &env.namespace, ctx, observed, changes).await? {
        NamespaceClaim::Unusable { terminating } => {
            if terminating {
                observed.namespaces.push(NamespaceStatus {
                    environment: env.environment,
                    name: env.namespace.clone(),
                    state: NamespaceState::Terminating,
                });
            }
            return Ok(());
        }
        NamespaceClaim::Usable { found, fresh } => (found, fresh),
    };

    // The namespace first (everything else lives in it), then the operator's grant in it (its
    // write access there), then the rest of the environment's objects at once: they do not
    // depend on each other.
    let is_grant = |o: &&DesiredObject| grant::is_grant(o.kind, &o.name, &ctx.config.operator);
    let (namespace_objects, rest): (Vec<&DesiredObject>, Vec<&DesiredObject>) =
        env.objects.iter().partition(|o| o.kind == ChildKind::Namespace);
    let (grant_objects, contents): (Vec<&DesiredObject>, Vec<&DesiredObject>) = rest.into_iter().partition(is_grant);
    for batch in [namespace_objects, grant_objects] {
        match apply_batch(valid, batch, namespace.as_ref(), fresh_namespace, ctx, observed, changes).await? {
            Batch::Refused => return Ok(()),
            Batch::Applied { grant: true } => grants::wait_for_grant(ctx, &valid.slug, &env.namespace).await?,
            Batch::Applied { grant: false } => {}
        }
    }
    // A database must not start on a password someone else chose: with a foreign credentials
    // Secret, the database objects wait (the database step reports the conflict).
    let foreign_secret = !fresh_namespace && database::secret_is_foreign(valid, env, ctx).await?;
    let database_kinds = [ChildKind::StatefulSet, ChildKind::CnpgCluster, ChildKind::Service];
    let contents = contents.into_iter().filter(|o| !(foreign_secret && database_kinds.contains(&o.kind))).collect();
    if let Batch::Refused = apply_batch(valid, contents, namespace.as_ref(), fresh_namespace, ctx, observed, changes).await? {
        return Ok(());
    }
    observed.namespaces.push(NamespaceStatus { environment: env.environment, name: env.namespace.clone(), state: NamespaceState::Active });
    if let Some(cluster) = ctx.config.clusters.get(&tenant.spec.cluster) {
        observed.ingress_problems.extend(routes::unrouted(env, ctx, cluster));
    }
    database::reconcile_database(tenant, valid, env, ctx, observed, changes).await
}

/// An object of the plan exists and is not the operator's: it is left as it is.
fn object_conflict(desired: &DesiredObject) -> Problem {
    Problem::new(
        Reason::ObjectConflict,
        format!("{} exists and was not created by the operator; it is left as it is. Rename or delete it", desired.describe()),
    )
}

/// The API server refused an object of the plan (a value it cannot accept, a permission the
/// operator lacks, a namespace going away).
fn apply_refused(desired: &DesiredObject, message: &str) -> Problem {
    Problem::new(Reason::ApplyFailed, format!("the API server refused {}: {message}", desired.describe()))
}

/// The account namespace's quota until the cluster's quota controller has counted it: the API
/// server refuses every TenantUser the quota counts until then, so the tenant is not ready for
/// its users yet. (Seconds on a settled cluster; up to the controller's resync period, five
/// minutes by default, while the TenantUser CRD is new to it.)
fn uncounted_quotas(account: &AccountPlan, ctx: &Context) -> Option<Problem> {
    let quota = account.objects.iter().find(|desired| desired.kind == ChildKind::ResourceQuota)?;
    let observed = ctx.caches.get(ChildKind::ResourceQuota, quota.namespace.as_deref(), &quota.name);
    if observed.is_some_and(|quota| quota.quota_counted()) {
        return None;
    }
    Some(Problem::new(
        Reason::QuotaNotCounted,
        format!(
            "{} is not counted yet by the cluster's quota controller: until it is, the API server refuses new TenantUsers there (\"status unknown for quota\")",
            quota.describe()
        ),
    ))
}

/// What became of a batch of an environment's objects.
enum Batch {
    /// Applied (or already current); `grant`: the operator's grant was among what was written.
    Applied { grant: bool },
    /// The API server refused the Namespace itself: nothing else can go into it.
    Refused,
}

/// Apply one batch of an environment's objects at once, each only when it differs from what
/// is there; what is not the operator's is reported, never overwritten.
async fn apply_batch(
    valid: &ValidatedTenant,
    batch: Vec<&DesiredObject>,
    namespace: Option<&Child>,
    fresh_namespace: bool,
    ctx: &Context,
    observed: &mut Observations,
    changes: &mut Changes,
) -> Result<Batch, Error> {
    let mut pending = Vec::new();
    for desired in batch {
        if desired.kind == ChildKind::HttpRoute && !ctx.caches.has(ChildKind::HttpRoute) {
            // Reported once for the Tenant (`routes::gateway_problem`).
            continue;
        }
        if desired.kind == ChildKind::CnpgCluster && !ctx.caches.has(ChildKind::CnpgCluster) {
            observed.database_problems.push(Problem::new(
                Reason::CloudNativePgNotInstalled,
                "the CloudNativePG operator (CRD clusters.postgresql.cnpg.io) is not installed on this cluster",
            ));
            continue;
        }
        let current = match desired.kind {
            ChildKind::Namespace => namespace.cloned(),
            // Nothing can be in a namespace this reconcile is creating.
            _ if fresh_namespace => None,
            _ => found(ctx, desired.kind, desired.namespace.as_deref(), &desired.name).await?,
        };
        if let Some(current) = &current {
            if desired.kind != ChildKind::Namespace && !is_ours(current, &valid.slug) {
                observed.object_problems.push(object_conflict(desired));
                continue;
            }
            if is_terminating(current) || !needs_apply(ctx, desired, &valid.uid, Some(current)).await? {
                continue;
            }
        }
        pending.push(async move { (desired, apply::apply(ctx, desired, &valid.uid).await) });
    }
    let mut grant = false;
    for (desired, result) in join_all(pending).await {
        match result {
            Ok(_) => {
                changes.applied(desired);
                grant |= grant::is_grant(desired.kind, &desired.name, &ctx.config.operator);
            }
            Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404 | 422) => {
                // The server refused this object (a value it cannot accept, a permission the
                // operator lacks, a namespace going away): report it, go on with the others.
                observed.object_problems.push(apply_refused(desired, &status.message));
                if desired.kind == ChildKind::Namespace || grant::is_grant(desired.kind, &desired.name, &ctx.config.operator) {
                    return Ok(Batch::Refused);
                }
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(Batch::Applied { grant })
}

/// The PersistentVolumeClaims the database StatefulSet's claim template made: the StatefulSet
/// controller creates them (so they carry the tenant label but not the operator's field
/// manager), and they hold the tenant's data.
fn is_database_volume(object: &Child, slug: &str) -> bool {
    object.name().starts_with(&format!("{DATA_VOLUME}-{}-", naming::database_name(slug)))
}

/// The data holders of a namespace that follow its `retained` mark: the database volumes (from
/// the caches) and the credentials Secret (by name: Secrets are not watched).
async fn data_of(ctx: &Context, slug: &str, namespace: &str) -> Result<Vec<(ChildKind, String)>, Error> {
    let mut data = Vec::new();
    for object in ctx.caches.of_tenant(ChildKind::PersistentVolumeClaim, slug) {
        if object.namespace() == Some(namespace) && (is_ours(&object, slug) || is_database_volume(&object, slug)) {
            data.push((ChildKind::PersistentVolumeClaim, object.name_any()));
        }
    }
    let secret = naming::database_secret_name(slug);
    let known = match ctx.caches.get(ChildKind::Secret, Some(namespace), &secret) {
        Some(known) => Some(known),
        None => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
            secrets.get_metadata_opt(&secret).await?.map(|meta| Child::from_object(ChildKind::Secret, &metadata_only(meta)))
        }
    };
    if known.is_some_and(|object| is_ours(&object, slug)) {
        data.push((ChildKind::Secret, secret));
    }
    Ok(data)
}

/// An object read as metadata only, in the form the caches reduce.
fn metadata_only(meta: kube::core::PartialObjectMeta<Secret>) -> kube::core::DynamicObject {
    kube::core::DynamicObject { types: None, metadata: meta.metadata, data: serde_json::Value::Null }
}

/// A retained namespace of this Tenant, or one the earlier Tenant `previous` of the slug left,
/// is taken back: the `retained` mark is removed from it and from the data it holds, and the
/// Tenant it came from is recorded on it.
async fn adopt(
    valid: &ValidatedTenant,
    namespace: &str,
    previous: Option<&str>,
    ctx: &Context,
    changes: &mut Changes,
) -> Result<(), Error> {
    grants::ensure_grant(valid, namespace, ctx, changes).await?;
    for (kind, name) in data_of(ctx, &valid.slug, namespace).await? {
        apply::patch_metadata(ctx, kind, Some(namespace), &name, json!({ "labels": { LABEL_RETAINED: null } })).await?;
    }
    let mut metadata = json!({ "labels": { LABEL_RETAINED: null } });
    if let Some(previous) = previous {
        metadata["annotations"] = json!({ ANNOTATION_ADOPTED_FROM: previous });
    }
    apply::patch_metadata(ctx, ChildKind::Namespace, None, namespace, metadata).await?;
    let from = previous.map(|uid| format!(" of the earlier Tenant {uid}")).unwrap_or_default();
    changes.note(Reason::Adopted, format!("adopted retained namespace {namespace}{from}"));
    Ok(())
}

/// Label a namespace and the data in it as retained.
pub async fn mark_retained(ctx: &Context, slug: &str, namespace: &str) -> Result<(), Error> {
    let mark = json!({ "labels": { LABEL_RETAINED: "true" } });
    for (kind, name) in data_of(ctx, slug, namespace).await? {
        apply::patch_metadata(ctx, kind, Some(namespace), &name, mark.clone()).await?;
    }
    apply::patch_metadata(ctx, ChildKind::Namespace, None, namespace, mark).await?;
    Ok(())
}

/// Children that are no longer desired: namespaces of removed environments (retained or
/// deleted under the deletion policy) and objects of removed applications or quota. Only the
/// operator's own objects are considered; retained namespaces are never deleted.
async fn remove_unwanted(
    tenant: &Tenant,
    valid: &ValidatedTenant,
    ctx: &Context,
    observed: &mut Observations,
    changes: &mut Changes,
) -> Result<(), Error> {
    let slug = &valid.slug;
    let wanted: BTreeSet<&str> = valid.plan.namespaces().collect();
    for ns in ctx.caches.of_tenant(ChildKind::Namespace, slug) {
        let name = ns.name_any();
        if wanted.contains(name.as_str()) || !is_ours(&ns, slug) {
            continue;
        }
        // An earlier Tenant's namespace the plan does not want is not this Tenant's to retain
        // or delete; it is reported while it is retained.
        let earlier = !is_ours_for(&ns, slug, &valid.uid);
        let environment =
            ns.label(LABEL_ENVIRONMENT).and_then(Environment::parse).or_else(|| naming::environment_of_namespace(slug, &name));
        let Some(environment) = environment else { continue };
        let state = if is_terminating(&ns) {
            NamespaceState::Terminating
        } else if is_retained(&ns) {
            // Retained data is deleted only by a person, whatever the policy says now.
            NamespaceState::Retained
        } else if earlier {
            continue;
        } else {
            match tenant.spec.deletion_policy {
                DeletionPolicy::Retain => {
                    database::retain_environment(tenant, valid, environment, ctx).await?;
                    mark_retained(ctx, slug, &name).await?;
                    changes.note(Reason::Retained, format!("environment {environment} removed: namespace {name} and its data kept"));
                    NamespaceState::Retained
                }
                DeletionPolicy::Delete => {
                    database::drop_environment(tenant, valid, environment, ctx, changes).await?;
                    apply::delete(ctx, ChildKind::Namespace, None, &name).await?;
                    changes.note(Reason::Deleted, format!("environment {environment} removed: deleted namespace {name}"));
                    NamespaceState::Terminating
                }
            }
        };
        observed.namespaces.push(NamespaceStatus { environment, name, state });
    }

    let desired: BTreeSet<(ChildKind, Option<&str>, &str)> =
        valid.plan.objects().map(|o| (o.kind, o.namespace.as_deref(), o.name.as_str())).collect();
    let cluster = ctx.config.clusters.get(&tenant.spec.cluster);
    for kind in REMOVABLE {
        for object in ctx.caches.of_tenant(kind, slug) {
            let Some(ns) = object.namespace() else { continue };
            let name = object.name();
            if !wanted.contains(ns) || is_terminating(&object) || !is_ours(&object, slug) || desired.contains(&(kind, Some(ns), name)) {
                continue;
            }
            // A route of the other kind replaces it (routing switched): it keeps serving the
            // application until its replacement routes.
            let replacement =
                valid.plan.objects().find(|o| o.kind.is_route() && o.kind != kind && o.namespace.as_deref() == Some(ns) && o.name == name);
            if replacement.is_some_and(|new| cluster.is_none_or(|cluster| !routes::is_routed(new, ctx, cluster))) {
                continue;
            }
            if apply::delete(ctx, kind, Some(ns), name).await? {
                changes.note(Reason::Deleted, format!("deleted {} {ns}/{name} (no longer in the spec)", kind.name()));
            }
        }
    }
    Ok(())
}
