//! The `external` database provider inside the Tenant reconcile: the admin connection comes
//! from a Secret named in the configuration, databases live outside the cluster.

use super::{Context, Error};
use crate::{
    desired::tenant::EnvironmentPlan,
    types::{DatabaseStatus, Tenant},
};

pub(super) async fn reconcile(_tenant: &Tenant, env: &EnvironmentPlan, _ctx: &Context) -> Result<DatabaseStatus, Error> {
    Ok(DatabaseStatus {
        environment: env.environment,
        provider: crate::types::DatabaseProvider::External,
        host: None,
        secret_name: None,
        ready: false,
        message: Some("external provider is being wired in".into()),
    })
}

pub(super) async fn retain_all(_tenant: &Tenant, _ctx: &Context) -> Result<(), Error> {
    Ok(())
}

pub(super) async fn drop_all(_tenant: &Tenant, _ctx: &Context) -> Result<(), Error> {
    Ok(())
}
