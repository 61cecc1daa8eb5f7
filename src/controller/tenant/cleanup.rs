//! Step 5: the finalizer. A deleted Tenant's data is kept or removed under its
//! `deletionPolicy`; the finalizer is released only when that is done, so a Tenant deleted
//! while the operator was down is handled when it returns.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{api::ListParams, runtime::controller::Action, Resource, ResourceExt};

use super::{apply::mark_retained, database, status};
use crate::{
    controller::{
        apply,
        caches::Child,
        ownership::{is_ours_for, is_retained, is_terminating},
        Changes, Context, Error,
    },
    desired::ChildKind,
    naming,
    types::{DeletionPolicy, Tenant},
};

pub async fn cleanup(tenant: &Tenant, ctx: &Context) -> Result<Action, Error> {
    let slug = tenant.metadata.name.clone().ok_or(Error::MissingName)?;
    let stored = super::stored_status(tenant, ctx, super::Details::Kept).await?;
    let now = Time(Timestamp::now());
    let mut new = status::terminating(stored.status(), tenant.spec.deletion_policy, tenant.metadata.generation, &now);
    super::rotation::waiting(tenant, "the Tenant is being deleted; its credentials are kept as they are", &mut new.databases);
    super::write_status(tenant, &stored, &new, ctx).await?;
    ctx.status_written(&slug, false);
    ctx.forget_hosts(&slug);

    // The cache can lag behind; the decision to release the finalizer is made on a fresh list.
    let listed = apply::api_for(&ctx.client, ChildKind::Namespace, None)
        .list(&ListParams::default().labels(&format!("{}={slug}", naming::LABEL_TENANT)))
        .await?;
    let uid = tenant.uid().ok_or(Error::MissingName)?;
    let mut changes = Changes::default();
    let mut remaining = Vec::new();
    for ns in listed.items.iter().map(|ns| Child::from_object(ChildKind::Namespace, ns)) {
        // Namespaces someone else made, those an earlier Tenant of the slug left (and this one
        // never adopted), and data already retained, are not the finalizer's.
        if !is_ours_for(&ns, &slug, &uid) || is_retained(&ns) {
            continue;
        }
        let name = ns.name_any();
        match tenant.spec.deletion_policy {
            DeletionPolicy::Retain if !is_terminating(&ns) => {
                mark_retained(ctx, &slug, &name).await?;
                changes.note(crate::types::Reason::Retained, format!("Tenant deleted: namespace {name} and its data kept"));
            }
            DeletionPolicy::Retain => {}
            DeletionPolicy::Delete => {
                if !is_terminating(&ns) {
                    apply::delete(ctx, ChildKind::Namespace, None, &name).await?;
                    changes.note(crate::types::Reason::Deleted, format!("Tenant deleted: deleted namespace {name}"));
                }
                remaining.push(name);
            }
        }
    }
    database::finish_external(tenant, ctx, tenant.spec.deletion_policy == DeletionPolicy::Delete, &mut changes).await?;
    ctx.changes_event(&tenant.object_ref(&()), &changes);
    if remaining.is_empty() {
        Ok(Action::await_change())
    } else {
        Err(Error::WaitingForDeletion(format!("namespaces {}", remaining.join(", "))))
    }
}
