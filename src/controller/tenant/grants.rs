//! The operator's grant in the tenant's namespaces (issue 20 §6): the RoleBinding of
//! `tenant-operator:tenant-namespace` to its own ServiceAccount, which is where its writes and
//! its Secret access there come from. The plan holds it right after each Namespace; this is
//! what applying it involves beyond any other object: waiting for the authorizer to honour a
//! fresh one, and putting it first into a namespace taken back from retention.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::{apply::found, validate::ValidatedTenant};
use crate::{
    controller::{
        apply::{self, needs_apply},
        ownership::is_ours,
        Changes, Context, Error,
    },
    desired::tenant::grant,
    naming,
};

/// How long a grant the operator has just written may take to reach the API server's
/// authorizer, which follows RBAC objects through a watch of its own.
const GRANT_PROPAGATION: Duration = Duration::from_secs(10);

/// Wait until the authorizer honours the grant just written in `namespace`: the credentials
/// Secret's metadata is read (a `get` only the grant allows; absent is an answer too) until it
/// is no longer refused. On a real server this takes a moment; without it the first writes
/// into a new namespace would be refused and reported as failures.
pub async fn wait_for_grant(ctx: &Context, slug: &str, namespace: &str) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + GRANT_PROPAGATION;
    loop {
        match secrets.get_metadata_opt(&naming::database_secret_name(slug)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 403 && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The operator's grant in a namespace it takes back, before anything in it is touched (a
/// namespace retained by an older operator has none).
pub async fn ensure_grant(valid: &ValidatedTenant, namespace: &str, ctx: &Context, changes: &mut Changes) -> Result<(), Error> {
    let wanted =
        valid.plan.objects().find(|o| grant::is_grant(o.kind, &o.name, &ctx.config.operator) && o.namespace.as_deref() == Some(namespace));
    let Some(desired) = wanted else { return Ok(()) };
    let current = found(ctx, desired.kind, Some(namespace), &desired.name).await?;
    if current.as_ref().is_some_and(|c| !is_ours(c, &valid.slug)) || !needs_apply(ctx, desired, &valid.uid, current.as_ref()).await? {
        return Ok(());
    }
    apply::apply(ctx, desired, &valid.uid).await?;
    changes.applied(desired);
    wait_for_grant(ctx, &valid.slug, namespace).await
}
