//! The `external` database provider inside the Tenant reconcile: the admin connection comes
//! from a Secret named in the operator configuration; the databases live outside the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{runtime::events::EventType, Api, Resource, ResourceExt};

use super::{tenant::ensure_credentials, Context, Error};
use crate::{
    database::external::{self, AdminConnection, ExternalDbError, ExternalNames, Stamp},
    desired::tenant::EnvironmentPlan,
    types::{DatabaseProvider, DatabaseStatus, Environment, Tenant},
};

/// The admin connection, read from its Secret on every use so a rotated admin password is
/// picked up without a restart.
async fn admin_connection(ctx: &Context) -> Result<AdminConnection, ExternalDbError> {
    let Some(external) = &ctx.config.database.external else {
        return Err(ExternalDbError::InvalidAdminSecret { key: "database.external", message: "not configured".into() });
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &external.admin_secret.namespace);
    let secret = secrets.get_opt(&external.admin_secret.name).await.map_err(|e| ExternalDbError::InvalidAdminSecret {
        key: "secret",
        message: format!("cannot read Secret {}/{}: {e}", external.admin_secret.namespace, external.admin_secret.name),
    })?;
    let Some(secret) = secret else {
        return Err(ExternalDbError::InvalidAdminSecret {
            key: "secret",
            message: format!("Secret {}/{} does not exist", external.admin_secret.namespace, external.admin_secret.name),
        });
    };
    let mut data: BTreeMap<String, String> =
        secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())).collect();
    data.extend(secret.string_data.unwrap_or_default());
    AdminConnection::from_secret_data(&data)
}

/// The Tenant's ownership stamp for what it creates on the server (SPEC §8 rule 5).
fn stamp(tenant: &Tenant) -> Result<Stamp, ExternalDbError> {
    Stamp::new(&tenant.name_any(), tenant.metadata.uid.as_deref().unwrap_or_default())
}

fn not_ready(env: Environment, error: &ExternalDbError) -> DatabaseStatus {
    DatabaseStatus {
        environment: env,
        provider: DatabaseProvider::External,
        host: None,
        secret_name: None,
        ready: false,
        message: Some(format!("{}: {error}", error.reason())),
    }
}

/// Create or adopt the environment's database and keep its credentials Secret.
pub(super) async fn reconcile(tenant: &Tenant, env: &EnvironmentPlan, ctx: &Context) -> Result<DatabaseStatus, Error> {
    let slug = tenant.name_any();
    let admin = match admin_connection(ctx).await {
        Ok(admin) => admin,
        Err(error) => return Ok(not_ready(env.environment, &error)),
    };
    let names = match ExternalNames::new(&slug, env.environment) {
        Ok(names) => names,
        Err(error) => return Ok(not_ready(env.environment, &error)),
    };
    let stamp = match stamp(tenant) {
        Ok(stamp) => stamp,
        Err(error) => return Ok(not_ready(env.environment, &error)),
    };
    let connection = external::connection_info(&admin, &names);
    let password = ensure_credentials(tenant, env, &connection, ctx).await?;
    match external::ensure_database(&admin, &names, &stamp, &password).await {
        Ok(outcome) => {
            if outcome.created_database {
                let note = format!("Created database {} on {}", names.database(), admin.server());
                ctx.event(&tenant.object_ref(&()), EventType::Normal, "Created", note);
            } else if outcome.adopted_retained {
                let note = format!("Adopted retained database {} on {}", names.database(), admin.server());
                ctx.event(&tenant.object_ref(&()), EventType::Normal, "Adopted", note);
            }
            Ok(DatabaseStatus {
                environment: env.environment,
                provider: DatabaseProvider::External,
                host: Some(connection.host),
                secret_name: Some(crate::naming::database_secret_name(&slug)),
                ready: true,
                message: None,
            })
        }
        Err(error) => {
            tracing::warn!(tenant = %slug, environment = %env.environment, %error, "external database not ready");
            Ok(not_ready(env.environment, &error))
        }
    }
}

fn uses_external(tenant: &Tenant, ctx: &Context) -> bool {
    crate::desired::database::provider_of(tenant, &ctx.config) == DatabaseProvider::External
}

fn database_error(error: ExternalDbError) -> Error {
    Error::Database { reason: error.reason().to_string(), message: error.to_string() }
}

/// Mark every environment's external database retained; the finalizer waits until it is.
pub(super) async fn retain_all(tenant: &Tenant, ctx: &Context) -> Result<(), Error> {
    if !uses_external(tenant, ctx) {
        return Ok(());
    }
    let admin = admin_connection(ctx).await.map_err(database_error)?;
    let stamp = stamp(tenant).map_err(database_error)?;
    for env in &tenant.spec.environments {
        let names = ExternalNames::new(&tenant.name_any(), *env).map_err(database_error)?;
        let outcome = external::mark_retained(&admin, &names, &stamp).await.map_err(database_error)?;
        for object in outcome.left_alone {
            tracing::warn!(tenant = %tenant.name_any(), %object, "external database object not marked retained");
        }
    }
    Ok(())
}

/// Drop every environment's external database and roles; the finalizer waits until done.
pub(super) async fn drop_all(tenant: &Tenant, ctx: &Context) -> Result<(), Error> {
    if !uses_external(tenant, ctx) {
        return Ok(());
    }
    let admin = admin_connection(ctx).await.map_err(database_error)?;
    let stamp = stamp(tenant).map_err(database_error)?;
    for env in &tenant.spec.environments {
        let names = ExternalNames::new(&tenant.name_any(), *env).map_err(database_error)?;
        let outcome = external::drop_database(&admin, &names, &stamp).await.map_err(database_error)?;
        for object in &outcome.left_alone {
            tracing::warn!(tenant = %tenant.name_any(), %object, "external database object not dropped");
        }
        if outcome.dropped_database {
            ctx.event(
                &tenant.object_ref(&()),
                EventType::Normal,
                "Deleted",
                format!("Dropped database {} on {}", names.database(), admin.server()),
            );
        }
    }
    Ok(())
}
