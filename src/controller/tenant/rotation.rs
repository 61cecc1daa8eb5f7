//! Credential rotation on request, inside step 3 (the protocol and the order of the writes
//! are in [`crate::database::rotation`]): started or resumed before the ordinary credentials
//! reconcile, which then carries the rotation's record forward.

use k8s_openapi::{api::core::v1::Secret, ByteString};
use kube::{api::DynamicObject, ResourceExt};

use super::validate::ValidatedTenant;
use crate::{
    controller::{
        apply::{self, get_uncached},
        caches::Child,
        ownership::is_ours,
        Changes, Context, Error,
    },
    database::{
        cloudnative_pg,
        external::{self, AdminConnection, ExternalNames, Stamp},
        generate_password,
        rotation::{self, Requested, SecretRecord, Step, PENDING_PASSWORD_KEY},
    },
    desired::{tenant::EnvironmentPlan, ChildKind, DesiredObject},
    naming::{self, ANNOTATION_TENANT_UID},
    types::{DatabaseProvider, DatabaseStatus, Problem, Reason, Tenant},
};

/// What a credentials Secret carries of rotations: the record (annotations) and a pending
/// password. Ordinary reconciles keep both as they are.
#[derive(Clone, Debug, Default)]
pub struct Kept {
    pub record: SecretRecord,
    pub pending_password: Option<String>,
}

impl Kept {
    /// From the API server's copy of the Secret.
    pub fn from_server(object: &DynamicObject) -> Kept {
        let annotations = object.annotations();
        let record = SecretRecord::read(|key| annotations.get(key).map(String::as_str));
        let pending_password = object
            .clone()
            .try_parse::<Secret>()
            .ok()
            .and_then(|secret| secret.data?.get(PENDING_PASSWORD_KEY).map(|p| String::from_utf8_lossy(&p.0).into_owned()))
            .filter(|p| !p.is_empty() && record.pending.is_some());
        Kept { record, pending_password }
    }

    /// From the caches, which hold no Secret data: a pending password is represented by
    /// `stand_in` (what the fingerprint puts in its place).
    pub fn from_cache(child: &Child, stand_in: &str) -> Kept {
        let record = SecretRecord::read(|key| child.annotation(key));
        let pending_password = record.pending.as_ref().map(|_| stand_in.to_string());
        Kept { record, pending_password }
    }

    /// Put the record and the pending password into a desired credentials Secret.
    pub fn apply_to(&self, desired: &mut DesiredObject) {
        if let Some(metadata) = desired.object.pointer_mut("/metadata").and_then(|m| m.as_object_mut()) {
            let annotations = metadata.entry("annotations").or_insert_with(|| serde_json::json!({}));
            if let Some(annotations) = annotations.as_object_mut() {
                for (key, value) in self.record.annotations() {
                    annotations.insert(key, value.into());
                }
            }
        }
        if let (Some(pending), Some(data)) = (&self.pending_password, desired.object.get_mut("data").and_then(|d| d.as_object_mut())) {
            let encoded = serde_json::to_value(ByteString(pending.clone().into_bytes())).unwrap_or_default();
            data.insert(PENDING_PASSWORD_KEY.to_string(), encoded);
        }
    }
}

/// Where the external provider's role lives, for its rotation.
pub struct ExternalTarget<'a> {
    pub admin: &'a AdminConnection,
    pub names: &'a ExternalNames,
    pub stamp: &'a Stamp,
}

/// What the rotation step did or found, for the database's status.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Why the newest request is not completed (refused, malformed, failed and retried).
    pub message: Option<String>,
    /// A failure that keeps the database from being reported ready this time.
    pub problem: Option<Problem>,
}

/// Builds the credentials Secret the operator wants from a password and what it keeps.
pub type DesiredSecret<'a> = dyn Fn(&str, &Kept) -> Result<DesiredObject, Error> + Send + Sync + 'a;

/// Start, resume or refuse the rotation the Tenant requests for this environment. Decides on
/// the caches first: without a request outstanding it costs no request to anyone.
#[allow(clippy::too_many_arguments)]
pub async fn rotate(
    tenant: &Tenant,
    valid: &ValidatedTenant,
    env: &EnvironmentPlan,
    provider: DatabaseProvider,
    external: Option<ExternalTarget<'_>>,
    desired: &DesiredSecret<'_>,
    ctx: &Context,
    changes: &mut Changes,
) -> Result<Outcome, Error> {
    let requested = rotation::requested(tenant.annotations(), env.environment);
    let name = naming::database_secret_name(&valid.slug);
    let cached = ctx.caches.get(ChildKind::Secret, Some(&env.namespace), &name);
    let cached_record = cached.as_ref().map(|c| SecretRecord::read(|key| c.annotation(key))).unwrap_or_default();
    if cached.is_some() {
        // What needs no write is decided on the cache alone; a write reads the server's copy.
        match next_step(provider, requested.as_ref(), &cached_record) {
            Step::Nothing => return Ok(Outcome::default()),
            Step::Refuse(text) => return Ok(Outcome { message: Some(text), problem: None }),
            Step::Malformed => return Ok(Outcome { message: Some(rotation::malformed_message(env.environment)), problem: None }),
            Step::Start(_) | Step::Resume(_) => {}
        }
    }
    if requested.is_none() && cached.is_none() {
        return Ok(Outcome::default());
    }
    // No Secret yet: the password generated for it answers the request (see `fresh_record`).
    let Some(object) = get_uncached(ctx, ChildKind::Secret, Some(&env.namespace), &name).await? else { return Ok(Outcome::default()) };
    let child = Child::from_object(ChildKind::Secret, &object);
    if !is_ours(&child, &valid.slug) || object.annotations().get(ANNOTATION_TENANT_UID) != Some(&valid.uid) {
        // Someone else's, or an earlier Tenant's not adopted yet: the credentials step says so.
        return Ok(Outcome::default());
    }
    let kept = Kept::from_server(&object);
    let current = current_password(&object);
    let step = next_step(provider, requested.as_ref(), &kept.record);
    let message = |text: String| Ok(Outcome { message: Some(text), problem: None });
    match step {
        Step::Nothing => Ok(Outcome::default()),
        Step::Malformed => message(rotation::malformed_message(env.environment)),
        Step::Refuse(text) => message(text),
        Step::Resume(token) => match (external, kept.pending_password.clone()) {
            (Some(target), Some(new)) => finish_external(&target, env, &token, &current, &new, desired, ctx, changes).await,
            // A pending mark without its password (edited by hand): nothing to finish, and
            // the password in `password` is the one the server has. Drop the mark.
            _ => {
                let record = SecretRecord { pending: None, ..kept.record.clone() };
                apply::apply(ctx, &desired(&current, &Kept { record, pending_password: None })?, &valid.uid).await?;
                Ok(Outcome::default())
            }
        },
        Step::Start(token) => {
            let new = generate_password(ctx.config.database.password_length);
            match external {
                Some(target) => {
                    // Step 1: the new password is safe in the Secret before the server has it.
                    let pending = Kept {
                        record: SecretRecord { pending: Some(token.clone()), ..kept.record.clone() },
                        pending_password: Some(new.clone()),
                    };
                    apply::apply(ctx, &desired(&current, &pending)?, &valid.uid).await?;
                    finish_external(&target, env, &token, &current, &new, desired, ctx, changes).await
                }
                None => {
                    // CloudNativePG applies the Secret's password to the role itself.
                    let done = done_record(&token);
                    apply::apply(ctx, &desired(&new, &Kept { record: done, pending_password: None })?, &valid.uid).await?;
                    changes.note(
                        Reason::CredentialsRotated,
                        format!("rotated the password in Secret {}/{name} (request {token}) for CloudNativePG to apply", env.namespace),
                    );
                    Ok(Outcome::default())
                }
            }
        }
    }
}

fn next_step(provider: DatabaseProvider, requested: Option<&Requested>, record: &SecretRecord) -> Step {
    rotation::next_step(provider, requested, record)
}

fn current_password(object: &DynamicObject) -> String {
    object
        .clone()
        .try_parse::<Secret>()
        .ok()
        .and_then(|secret| secret.data?.get("password").map(|p| String::from_utf8_lossy(&p.0).into_owned()))
        .unwrap_or_default()
}

fn done_record(token: &str) -> SecretRecord {
    let now = jiff::Timestamp::now();
    let at = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    SecretRecord { done: Some(token.to_string()), rotated_at: Some(at.to_string()), pending: None }
}

/// Steps 2 and 3 of the external provider's rotation.
#[allow(clippy::too_many_arguments)]
async fn finish_external(
    target: &ExternalTarget<'_>,
    env: &EnvironmentPlan,
    token: &str,
    old: &str,
    new: &str,
    desired: &DesiredSecret<'_>,
    ctx: &Context,
    changes: &mut Changes,
) -> Result<Outcome, Error> {
    if let Err(error) = external::rotate_password(target.admin, target.names, target.stamp, old, new).await {
        tracing::warn!(namespace = %env.namespace, %error, "credential rotation not finished; retrying");
        let problem = Problem::new(error.reason(), format!("rotation request {token}: {error}; the new password is kept and retried"));
        return Ok(Outcome { message: Some(problem.message.clone()), problem: Some(problem) });
    }
    let written = desired(new, &Kept { record: done_record(token), pending_password: None })?;
    apply::apply(ctx, &written, target.stamp.tenant_uid()).await?;
    changes.note(
        Reason::CredentialsRotated,
        format!(
            "rotated the password of role {} on {} and in Secret {}/{} (request {token})",
            target.names.login_role(),
            target.admin.server(),
            env.namespace,
            written.name
        ),
    );
    Ok(Outcome::default())
}

/// The record a new credentials Secret starts with: a freshly generated password answers
/// the request outstanding, if any.
pub fn fresh_record(tenant: &Tenant, env: &EnvironmentPlan) -> SecretRecord {
    match rotation::requested(tenant.annotations(), env.environment) {
        Some(Requested::Token(token)) => done_record(&token),
        _ => SecretRecord::default(),
    }
}

/// The rotation fields of the environment's database status: the request last completed
/// (for CloudNativePG only once it reports the Secret's password applied) and what is
/// outstanding.
pub fn status_fields(
    tenant: &Tenant,
    env: &EnvironmentPlan,
    provider: DatabaseProvider,
    outcome: Outcome,
    ctx: &Context,
    status: &mut DatabaseStatus,
) {
    let slug = tenant.name_any();
    let secret = ctx.caches.get(ChildKind::Secret, Some(&env.namespace), &naming::database_secret_name(&slug));
    let record = secret.as_ref().map(|s| SecretRecord::read(|key| s.annotation(key))).unwrap_or_default();
    let previous = tenant.status.as_ref().and_then(|s| s.databases.iter().find(|db| db.environment == env.environment));
    let confirmed = || {
        if provider != DatabaseProvider::CloudnativePg {
            return true;
        }
        let cluster = ctx.caches.get(ChildKind::CnpgCluster, Some(&env.namespace), &naming::database_name(&slug));
        let version = secret.as_ref().and_then(|s| s.resource_version().map(str::to_string)).unwrap_or_default();
        cloudnative_pg::password_applied(cluster.map(|c| c.data()).as_ref(), &naming::sql_user_name(&slug), &version)
    };
    let mut message = outcome.message;
    match &record.done {
        Some(done) if previous.and_then(|p| p.rotation_request.as_deref()) == Some(done.as_str()) || confirmed() => {
            status.rotation_request = record.done.clone();
            status.credentials_rotated_at = record.rotated_at.clone();
        }
        Some(done) => {
            status.rotation_request = previous.and_then(|p| p.rotation_request.clone());
            status.credentials_rotated_at = previous.and_then(|p| p.credentials_rotated_at.clone());
            message.get_or_insert_with(|| {
                format!(
                    "rotation request {done}: the new password is in Secret {}; waiting for CloudNativePG to apply it to role {}",
                    naming::database_secret_name(&slug),
                    naming::sql_user_name(&slug)
                )
            });
        }
        None => {}
    }
    if message.is_none() {
        if let Some(Requested::Token(token)) = rotation::requested(tenant.annotations(), env.environment) {
            if status.rotation_request.as_deref() != Some(token.as_str()) {
                message = Some(format!("rotation request {token} is in progress"));
            }
        }
    }
    status.rotation_message = message;
}

/// Every outstanding request waits while the Tenant is not reconciled (suspended, stalled,
/// terminating): its database status says so.
pub fn waiting(tenant: &Tenant, why: &str, databases: &mut [DatabaseStatus]) {
    for db in databases {
        db.rotation_message = match rotation::requested(tenant.annotations(), db.environment) {
            Some(Requested::Token(token)) if db.rotation_request.as_deref() != Some(token.as_str()) => {
                Some(rotation::waiting_message(&token, why))
            }
            _ => None,
        };
    }
}
