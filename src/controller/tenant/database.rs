//! The database part of step 3: the credentials Secret (its password generated once, never
//! replaced, never taken from a Secret the operator did not create) and the provider's
//! readiness, per environment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event as CoreEvent, Secret};
use kube::{api::ListParams, runtime::events::EventType, Api, Resource, ResourceExt};

use super::{
    predecessor,
    rotation::{self, ExternalTarget, Kept, Outcome},
    status::Observations,
    validate::ValidatedTenant,
};
use crate::{
    controller::{
        apply::{self, applied_form, compare_cached, confirm, get_uncached, Cached},
        caches::Child,
        fingerprint,
        ownership::is_ours,
        Changes, Context, Error,
    },
    database::{
        self, credentials_secret,
        external::{self, AdminConnection, ExternalDbError, ExternalNames, LeftAlone, Stamp},
        generate_password, ConnectionInfo,
    },
    desired::{tenant::EnvironmentPlan, ChildKind, DesiredObject},
    naming::{self, ANNOTATION_DATABASE_PROVIDER, ANNOTATION_TENANT_UID},
    types::{DatabaseProvider, DatabaseStatus, Environment, Problem, Reason, Tenant},
};

pub async fn reconcile_database(
    tenant: &Tenant,
    valid: &ValidatedTenant,
    env: &EnvironmentPlan,
    ctx: &Context,
    observed: &mut Observations,
    changes: &mut Changes,
) -> Result<(), Error> {
    let provider = valid.plan.database_provider;
    let mut rotated = Outcome::default();
    let outcome = match (provider, &env.database) {
        (DatabaseProvider::None, _) => return Ok(()),
        (DatabaseProvider::External, _) => reconcile_external(tenant, valid, env, ctx, &mut rotated, changes).await?,
        (_, Some(connection)) => {
            let desired = |password: &str, kept: &Kept| desired_credentials(valid, env, connection, provider, password, kept);
            rotated = rotation::rotate(tenant, valid, env, provider, None, &desired, ctx, changes).await?;
            let credentials = match credentials_cached(valid, env, connection, provider, ctx)? {
                Some(known) => known,
                None => ensure_credentials(tenant, valid, env, connection, provider, ctx, changes).await?.map(drop),
            };
            match credentials {
                Err(problem) => Err(problem),
                Ok(()) => {
                    let source = database::readiness_source(provider);
                    let observed_object =
                        source.and_then(|kind| ctx.caches.get(kind, Some(&env.namespace), &naming::database_name(&valid.slug)));
                    let observed_data = observed_object.as_ref().map(|object| object.data());
                    match database::readiness(provider, observed_data.as_ref()) {
                        Ok(()) => Ok(connection.host.clone()),
                        Err(problem) if provider == DatabaseProvider::Statefulset && observed_object.is_some() => {
                            Err(pod_refusal(ctx, &env.namespace, &naming::database_name(&valid.slug)).await.unwrap_or(problem))
                        }
                        Err(problem) => Err(problem),
                    }
                }
            }
        }
        (_, None) => Err(Problem::new(Reason::DatabaseNotReady, "no connection details for this provider")),
    };
    let mut status = match outcome {
        Ok(host) => DatabaseStatus {
            environment: env.environment,
            provider,
            host: Some(host),
            secret_name: Some(naming::database_secret_name(&valid.slug)),
            ready: true,
            message: None,
            rotation_request: None,
            credentials_rotated_at: None,
            rotation_message: None,
        },
        Err(problem) => {
            let status = DatabaseStatus {
                environment: env.environment,
                provider,
                host: None,
                secret_name: None,
                ready: false,
                message: Some(problem.message.clone()),
                rotation_request: None,
                credentials_rotated_at: None,
                rotation_message: None,
            };
            observed.database_problems.push(Problem::new(problem.reason, format!("{}: {}", env.namespace, problem.message)));
            status
        }
    };
    rotation::status_fields(tenant, env, provider, rotated, ctx, &mut status);
    observed.databases.push(status);
    Ok(())
}

/// Why the database StatefulSet has no pod, when the API server refused to create it (a
/// quota without requests, a Pod Security level): the StatefulSet controller's latest
/// `FailedCreate` Event, quoted. A failure to read Events only loses the detail.
async fn pod_refusal(ctx: &Context, namespace: &str, statefulset: &str) -> Option<Problem> {
    let events: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("involvedObject.kind=StatefulSet,involvedObject.name={statefulset},reason=FailedCreate");
    let listed = match events.list(&ListParams::default().fields(&selector)).await {
        Ok(listed) => listed,
        Err(error) => {
            tracing::debug!(%namespace, %statefulset, %error, "cannot read the StatefulSet's events");
            return None;
        }
    };
    let latest = listed.items.into_iter().max_by_key(|e| e.last_timestamp.clone().map(|t| t.0))?;
    let message = latest.message?;
    Some(Problem::new(Reason::DatabaseNotReady, format!("the API server refused the database pod of StatefulSet {statefulset}: {message}")))
}

/// The environment's credentials Secret as the operator last read it (Secrets are not
/// watched: see `Caches::fetched`), else as the API server has it now.
async fn credentials_secret_of(valid: &ValidatedTenant, env: &EnvironmentPlan, ctx: &Context) -> Result<Option<Child>, Error> {
    let name = naming::database_secret_name(&valid.slug);
    if let Some(known) = ctx.caches.get(ChildKind::Secret, Some(&env.namespace), &name) {
        return Ok(Some(known));
    }
    let read = get_uncached(ctx, ChildKind::Secret, Some(&env.namespace), &name)
        .await?
        .map(|object| Child::from_object(ChildKind::Secret, &object));
    ctx.caches.fetched(ChildKind::Secret, Some(&env.namespace), &name, read.clone());
    Ok(read)
}

/// Whether a Secret under the credentials name exists that the operator did not create.
pub async fn secret_is_foreign(valid: &ValidatedTenant, env: &EnvironmentPlan, ctx: &Context) -> Result<bool, Error> {
    if env.database.is_none() && valid.plan.database_provider != DatabaseProvider::External {
        return Ok(false);
    }
    Ok(credentials_secret_of(valid, env, ctx).await?.is_some_and(|secret| !is_ours(&secret, &valid.slug)))
}

/// The credentials Secret the operator wants, with `password`; the provider is pinned on
/// the data it serves (a later provider change is refused).
fn desired_credentials(
    valid: &ValidatedTenant,
    env: &EnvironmentPlan,
    connection: &ConnectionInfo,
    provider: DatabaseProvider,
    password: &str,
    kept: &Kept,
) -> Result<DesiredObject, Error> {
    let mut desired =
        DesiredObject::from_typed(ChildKind::Secret, &credentials_secret(&valid.slug, env.environment, connection, password))?;
    if let Some(metadata) = desired.object.pointer_mut("/metadata").and_then(|m| m.as_object_mut()) {
        let annotations = metadata.entry("annotations").or_insert_with(|| serde_json::json!({}));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(ANNOTATION_DATABASE_PROVIDER.into(), provider.as_str().into());
        }
    }
    kept.apply_to(&mut desired);
    Ok(desired)
}

fn secret_conflict(env: &EnvironmentPlan, name: &str) -> Problem {
    Problem::new(
        Reason::SecretConflict,
        format!(
            "Secret {}/{name} exists and was not created by the operator; its password is not used and no database is \
             created. Delete it so the operator can generate one",
            env.namespace
        ),
    )
}

/// What the caches alone tell about the credentials Secret (as last read by name, within
/// `caches::FETCHED_TTL`): `Some(Ok)` when it is the operator's and as wanted, `Some(Err)`
/// when it is someone else's, `None` when only the API server's copy can tell. The caches hold
/// no Secret data: the fingerprint puts a stand-in in
/// place of the password, so the probe carries the stand-in itself (an empty password is not
/// redacted, and would never compare equal).
fn credentials_cached(
    valid: &ValidatedTenant,
    env: &EnvironmentPlan,
    connection: &ConnectionInfo,
    provider: DatabaseProvider,
    ctx: &Context,
) -> Result<Option<Result<(), Problem>>, Error> {
    let name = naming::database_secret_name(&valid.slug);
    let Some(cached) = ctx.caches.get(ChildKind::Secret, Some(&env.namespace), &name) else { return Ok(None) };
    if !is_ours(&cached, &valid.slug) {
        return Ok(Some(Err(secret_conflict(env, &name))));
    }
    let kept = Kept::from_cache(&cached, fingerprint::PASSWORD_STAND_IN);
    let probe = desired_credentials(valid, env, connection, provider, fingerprint::PASSWORD_STAND_IN, &kept)?;
    Ok((compare_cached(&ctx.caches, &probe, &applied_form(&probe, &valid.uid), &cached) == Cached::Current).then_some(Ok(())))
}

/// Make sure the environment's credentials Secret exists and is as wanted, and return its
/// password: read from the operator's existing Secret (on the API server: the caches hold no
/// Secret data) and generated only when there is none, never replaced by a reconcile. A
/// Secret of that name the operator did not create is never read (`SecretConflict`): anyone
/// able to create it could otherwise choose the password of a future tenant's database.
async fn ensure_credentials(
    tenant: &Tenant,
    valid: &ValidatedTenant,
    env: &EnvironmentPlan,
    connection: &ConnectionInfo,
    provider: DatabaseProvider,
    ctx: &Context,
    changes: &mut Changes,
) -> Result<Result<String, Problem>, Error> {
    let name = naming::database_secret_name(&valid.slug);
    // Asking the server also covers a Secret created moments ago that the cache has not seen:
    // a password can never be generated twice.
    let existing = get_uncached(ctx, ChildKind::Secret, Some(&env.namespace), &name).await?;
    let existing_child = existing.as_ref().map(|object| Child::from_object(ChildKind::Secret, object));
    ctx.caches.fetched(ChildKind::Secret, Some(&env.namespace), &name, existing_child.clone());
    if existing_child.as_ref().is_some_and(|secret| !is_ours(secret, &valid.slug)) {
        return Ok(Err(secret_conflict(env, &name)));
    }
    // An earlier Tenant's password is used only with consent (the caches do not keep a
    // Secret's UID: the server's copy tells).
    let applied_by = existing.as_ref().and_then(|object| object.annotations().get(ANNOTATION_TENANT_UID));
    if let Some(previous) = applied_by.filter(|uid| **uid != valid.uid && Some(uid.as_str()) != valid.adopt_from.as_deref()) {
        return Ok(Err(predecessor::refuse_object(&valid.slug, &format!("Secret {}/{name}", env.namespace), previous)));
    }
    let existing_password = existing
        .as_ref()
        .and_then(|object| object.clone().try_parse::<Secret>().ok())
        .and_then(|secret| secret.data?.get("password").map(|p| String::from_utf8_lossy(&p.0).into_owned()))
        .filter(|password| !password.is_empty());
    let (password, generated) = match existing_password {
        Some(password) => (password, false),
        None => (generate_password(ctx.config.database.password_length), true),
    };
    // What a rotation recorded on the Secret is kept; a new password answers a request.
    let kept = match &existing {
        Some(object) if !generated => Kept::from_server(object),
        _ => Kept { record: rotation::fresh_record(tenant, env), pending_password: None },
    };
    let desired = desired_credentials(valid, env, connection, provider, &password, &kept)?;
    let applied = applied_form(&desired, &valid.uid);
    // What the server's copy proves is remembered on the cached object, if it is the same.
    let cached = ctx.caches.get(ChildKind::Secret, Some(&env.namespace), &name);
    let current = match (&existing, cached.as_ref().or(existing_child.as_ref())) {
        (Some(object), Some(observed)) => confirm(&ctx.caches, ChildKind::Secret, &applied, object, observed),
        _ => false,
    };
    if !current {
        apply::apply(ctx, &desired, &valid.uid).await?;
        if generated {
            changes.note(Reason::Created, format!("created {} with a generated password", desired.describe()));
        } else {
            changes.applied(&desired);
        }
    }
    Ok(Ok(password))
}

/// The provider each environment's existing database was created with, from the data
/// holders the operator made (and, for databases outside the cluster, the Secret's pin and
/// the last status).
pub fn pinned_providers(tenant: &Tenant, ctx: &Context) -> BTreeMap<Environment, DatabaseProvider> {
    let slug = tenant.name_any();
    let ours = |kind: ChildKind, namespace: &str, name: &str| ctx.caches.get(kind, Some(namespace), name).filter(|o| is_ours(o, &slug));
    let mut pinned = BTreeMap::new();
    for env in Environment::ALL {
        let namespace = naming::namespace_name(&slug, env);
        let database = naming::database_name(&slug);
        let provider = if ours(ChildKind::StatefulSet, &namespace, &database).is_some() {
            Some(DatabaseProvider::Statefulset)
        } else if ours(ChildKind::CnpgCluster, &namespace, &database).is_some() {
            Some(DatabaseProvider::CloudnativePg)
        } else {
            ours(ChildKind::Secret, &namespace, &naming::database_secret_name(&slug))
                .and_then(|secret| secret.annotation(ANNOTATION_DATABASE_PROVIDER).and_then(database::provider_named))
                .or_else(|| {
                    let status = tenant.status.as_ref()?;
                    status.databases.iter().find(|db| db.environment == env).map(|db| db.provider)
                })
        };
        if let Some(provider) = provider.filter(|p| *p != DatabaseProvider::None) {
            pinned.insert(env, provider);
        }
    }
    pinned
}

/// The admin connection, read from its Secret on every use so a rotated admin password is
/// picked up without a restart.
async fn admin_connection(ctx: &Context) -> Result<AdminConnection, ExternalDbError> {
    let Some(external) = &ctx.config.database.external else {
        return Err(ExternalDbError::InvalidAdminSecret { key: "database.external", message: "not configured".into() });
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &external.admin_secret.namespace);
    let secret = secrets.get_opt(&external.admin_secret.name).await.map_err(|e| ExternalDbError::InvalidAdminSecret {
        key: "secret",
        message: format!(
            "cannot read Secret {}/{}: {}",
            external.admin_secret.namespace,
            external.admin_secret.name,
            crate::controller::error::describe_kube_error(&e)
        ),
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

fn problem_of(error: &ExternalDbError) -> Problem {
    Problem::new(error.reason(), error.to_string())
}

/// What the external provider stamps on what it creates: the tenant and its UID.
fn stamp(valid_slug: &str, uid: &str) -> Result<Stamp, ExternalDbError> {
    Stamp::new(valid_slug, uid)
}

/// Objects on the shared server that are not this Tenant's are left alone and reported.
fn report_left_alone(ctx: &Context, tenant: &Tenant, left_alone: &[LeftAlone]) {
    for item in left_alone {
        ctx.event(&tenant.object_ref(&()), EventType::Warning, Reason::DatabaseConflict, &format!("left {item} alone"));
    }
}

/// Create or adopt the environment's database on the external server and keep its
/// credentials Secret; the outcome is the host, or what keeps it from being ready.
async fn reconcile_external(
    tenant: &Tenant,
    valid: &ValidatedTenant,
    env: &EnvironmentPlan,
    ctx: &Context,
    rotated: &mut Outcome,
    changes: &mut Changes,
) -> Result<Result<String, Problem>, Error> {
    let admin = match admin_connection(ctx).await {
        Ok(admin) => admin,
        Err(error) => return Ok(Err(problem_of(&error))),
    };
    let names = match ExternalNames::new(&valid.slug, env.environment) {
        Ok(names) => names,
        Err(error) => return Ok(Err(problem_of(&error))),
    };
    let connection = external::connection_info(&admin, &names);
    let stamp = match stamp(&valid.slug, &valid.uid) {
        Ok(stamp) => stamp.adopting(valid.adopt_from.as_deref()),
        Err(error) => return Ok(Err(problem_of(&error))),
    };
    // A rotation is finished (or refused) before the ordinary reconcile, which would
    // otherwise set the role's password back to the Secret's while a new one is pending.
    let target = ExternalTarget { admin: &admin, names: &names, stamp: &stamp };
    let desired = |password: &str, kept: &Kept| desired_credentials(valid, env, &connection, DatabaseProvider::External, password, kept);
    *rotated = rotation::rotate(tenant, valid, env, DatabaseProvider::External, Some(target), &desired, ctx, changes).await?;
    if let Some(problem) = rotated.problem.clone() {
        return Ok(Err(problem));
    }
    let password = match ensure_credentials(tenant, valid, env, &connection, DatabaseProvider::External, ctx, changes).await? {
        Ok(password) => password,
        Err(problem) => return Ok(Err(problem)),
    };
    match external::ensure_database(&admin, &names, &stamp, &password).await {
        Ok(outcome) => {
            if outcome.created_database {
                changes.note(Reason::Created, format!("created database {} on {}", names.database(), admin.server()));
            } else if outcome.adopted_retained || outcome.adopted_unstamped {
                let from = outcome.previous_tenant_uid.map(|uid| format!(" of the earlier Tenant {uid}")).unwrap_or_default();
                changes.note(Reason::Adopted, format!("adopted database {} on {}{from}", names.database(), admin.server()));
            }
            Ok(Ok(connection.host))
        }
        Err(error) => {
            tracing::warn!(tenant = %tenant.name_any(), environment = %env.environment, %error, "external database not ready");
            Ok(Err(problem_of(&error)))
        }
    }
}

fn uses_external(valid_provider: DatabaseProvider) -> bool {
    valid_provider == DatabaseProvider::External
}

/// Mark the external database of a removed environment as retained.
pub async fn retain_environment(tenant: &Tenant, valid: &ValidatedTenant, env: Environment, ctx: &Context) -> Result<(), Error> {
    if !uses_external(valid.plan.database_provider) {
        return Ok(());
    }
    let admin = admin_connection(ctx).await?;
    let outcome = external::mark_retained(&admin, &ExternalNames::new(&valid.slug, env)?, &stamp(&valid.slug, &valid.uid)?).await?;
    report_left_alone(ctx, tenant, &outcome.left_alone);
    Ok(())
}

/// Drop the external database of a removed environment (deletionPolicy Delete).
pub async fn drop_environment(
    tenant: &Tenant,
    valid: &ValidatedTenant,
    env: Environment,
    ctx: &Context,
    changes: &mut Changes,
) -> Result<(), Error> {
    if !uses_external(valid.plan.database_provider) {
        return Ok(());
    }
    let admin = admin_connection(ctx).await?;
    let names = ExternalNames::new(&valid.slug, env)?;
    let outcome = external::drop_database(&admin, &names, &stamp(&valid.slug, &valid.uid)?).await?;
    if outcome.dropped_database {
        changes.note(Reason::Deleted, format!("dropped database {} on {}", names.database(), admin.server()));
    }
    report_left_alone(ctx, tenant, &outcome.left_alone);
    Ok(())
}

/// Every external database this Tenant stamped, of current and of removed environments: kept
/// (marked retained) or dropped when the Tenant is deleted.
pub async fn finish_external(tenant: &Tenant, ctx: &Context, delete: bool, changes: &mut Changes) -> Result<(), Error> {
    if database::provider_of(tenant, &ctx.config) != DatabaseProvider::External && !stamped_in_status(tenant) {
        return Ok(());
    }
    let slug = tenant.name_any();
    let uid = tenant.uid().ok_or(Error::MissingName)?;
    let stamp = stamp(&slug, &uid)?;
    let admin = admin_connection(ctx).await?;
    for env in external::stamped_databases(&admin, &stamp).await? {
        let names = ExternalNames::new(&slug, env)?;
        if delete {
            let outcome = external::drop_database(&admin, &names, &stamp).await?;
            if outcome.dropped_database {
                changes.note(Reason::Deleted, format!("dropped database {} on {}", names.database(), admin.server()));
            }
            report_left_alone(ctx, tenant, &outcome.left_alone);
        } else {
            let outcome = external::mark_retained(&admin, &names, &stamp).await?;
            if outcome.marked_database {
                changes.note(Reason::Retained, format!("kept database {} on {}", names.database(), admin.server()));
            }
            report_left_alone(ctx, tenant, &outcome.left_alone);
        }
    }
    Ok(())
}

/// Whether the last status recorded an external database (the provider is pinned).
fn stamped_in_status(tenant: &Tenant) -> bool {
    tenant.status.as_ref().is_some_and(|s| s.databases.iter().any(|db| db.provider == DatabaseProvider::External))
}
