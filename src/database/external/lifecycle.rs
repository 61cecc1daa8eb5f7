//! The provider's operations: ensure, check, retain, drop, list. Each reads the three objects
//! first, decides with [`super::stamps`] what it may touch, and only then writes.

use jiff::Timestamp;

use super::connection::{authenticates, login, within_deadline};
use super::queries;
use super::roles::{self, check_password, Verifier};
use super::session::{Observed, Session};
use super::stamps::{self, Found, Kind, Mark, Stamp};
use super::{databases, AdminConnection, DropOutcome, EnsureOutcome, ExternalDbError, ExternalNames, LeftAlone, RetainOutcome};
use crate::types::Environment;

/// Creates or adopts the tenant environment's roles and database and puts drifted settings
/// back; safe to call on every reconcile. `Ok` means the login role can connect with
/// `password` right now (the readiness check is part of the call).
///
/// Objects stamped by another Tenant, and unstamped ones the login role cannot prove to be
/// this Tenant's by accepting `password`, make it fail with
/// [`ExternalDbError::DatabaseConflict`] before anything is written.
pub async fn ensure_database(
    admin: &AdminConnection,
    names: &ExternalNames,
    stamp: &Stamp,
    password: &str,
) -> Result<EnsureOutcome, ExternalDbError> {
    check_password(password)?;
    within_deadline(admin, async {
        let mut outcome = EnsureOutcome::default();
        let session = Session::admin(admin, &admin.dbname).await?;
        let observed = session.observe(names).await?;
        let claim = stamps::assess(stamp, names, &admin.server(), &observed.inventory(names))?;
        if claim.needs_proof {
            if !authenticates(admin, names, password).await? {
                return Err(stamps::unproven_conflict(stamp, names, &admin.server(), &observed.inventory(names)));
            }
            outcome.adopted_unstamped = true;
        }
        outcome.adopted_retained = claim.adopted_retained;
        outcome.previous_tenant_uid = claim.previous_tenant_uid;

        let Observed { database, owner_role, login_role } = observed;
        let mut verifier = Verifier::default();
        roles::ensure_roles(&session, names, stamp, (owner_role, login_role), password, &mut verifier, &mut outcome).await?;
        databases::ensure_database(&session, names, stamp, database, &mut outcome).await?;
        // The admin never opens a session inside the tenant's database: the tenant may define
        // objects there (see `queries`), and nothing in it needs the admin's rights.
        drop(session);

        // The password is checked by logging in, which needs no superuser (pg_authid is not
        // readable otherwise) and doubles as the readiness check.
        match login(admin, names, password).await {
            Ok(()) => {}
            Err(ExternalDbError::TenantLoginFailed { .. }) if !outcome.password_set => {
                let session = Session::admin(admin, &admin.dbname).await?;
                roles::set_password(&session, names, password, &mut verifier).await?;
                outcome.password_set = true;
                drop(session);
                login(admin, names, password).await?;
            }
            Err(err) => return Err(err),
        }
        Ok(outcome)
    })
    .await
}

/// Whether the login role can connect to its database with `password` and run a query.
pub async fn check_ready(admin: &AdminConnection, names: &ExternalNames, password: &str) -> Result<(), ExternalDbError> {
    check_password(password)?;
    within_deadline(admin, login(admin, names, password)).await
}

/// Marks what this Tenant stamped as kept after it let go of it (`deletionPolicy: Retain`), so
/// a re-created Tenant with the same slug adopts it. Objects not stamped by this Tenant are
/// left alone and listed in the outcome, not treated as errors: the Tenant never owned them,
/// so there is nothing of its to keep.
pub async fn mark_retained(admin: &AdminConnection, names: &ExternalNames, stamp: &Stamp) -> Result<RetainOutcome, ExternalDbError> {
    within_deadline(admin, async {
        let session = Session::admin(admin, &admin.dbname).await?;
        let observed = session.observe(names).await?;
        let inventory = observed.inventory(names);
        let retained = stamp.retained_record(now());
        let mut outcome = RetainOutcome::default();
        for object in inventory.existing() {
            let mark = object.mark();
            if !mark.is_by(stamp) {
                outcome.left_alone.push(left_alone(object, mark.describe(object.comment)));
                continue;
            }
            if mark.is_retained() {
                continue;
            }
            if object.kind == Kind::Database {
                admin_member_if_ours(&session, names, &inventory, stamp).await?;
            }
            session.stamp(object.kind, object.name, &retained).await?;
            match object.kind {
                Kind::Database => outcome.marked_database = true,
                Kind::Role => outcome.marked_roles = true,
            }
        }
        Ok(outcome)
    })
    .await
}

/// Whether the database exists and carries a retained mark (of any Tenant or operator version).
pub async fn is_retained(admin: &AdminConnection, names: &ExternalNames) -> Result<bool, ExternalDbError> {
    within_deadline(admin, async {
        let session = Session::admin(admin, &admin.dbname).await?;
        Ok(session.database(names).await?.is_some_and(|db| Mark::read(db.comment.as_deref()).is_retained()))
    })
    .await
}

/// Drops the database (ending its sessions) and both roles, but only those stamped by this
/// Tenant and not retained; retained data is deleted only by a person (SPEC §8 rule 3).
/// Anything else is left alone and listed in the outcome, as are the roles of a database left
/// alone (they still own it). Nothing there is not an error.
pub async fn drop_database(admin: &AdminConnection, names: &ExternalNames, stamp: &Stamp) -> Result<DropOutcome, ExternalDbError> {
    within_deadline(admin, async {
        let mut outcome = DropOutcome::default();
        let session = Session::admin(admin, &admin.dbname).await?;
        let observed = session.observe(names).await?;
        let inventory = observed.inventory(names);
        let database_gone = match &inventory.database {
            None => true,
            Some(database) if database.mark().is_live_by(stamp) => {
                admin_member_if_ours(&session, names, &inventory, stamp).await?;
                databases::drop_database(&session, names).await?;
                outcome.dropped_database = true;
                true
            }
            Some(database) => {
                outcome.left_alone.push(left_alone(database, database.mark().describe(database.comment)));
                false
            }
        };
        for role in [&inventory.login_role, &inventory.owner_role].into_iter().flatten() {
            let mark = role.mark();
            if !mark.is_live_by(stamp) {
                outcome.left_alone.push(left_alone(role, mark.describe(role.comment)));
            } else if !database_gone {
                outcome.left_alone.push(left_alone(role, format!("database `{}` is left alone and needs its roles", names.database())));
            } else {
                roles::drop_role(&session, role.name).await?;
                outcome.dropped_roles = true;
            }
        }
        Ok(outcome)
    })
    .await
}

/// Environments whose database on this server is stamped by this Tenant and not retained, in
/// [`Environment::ALL`] order: what is this Tenant's to drop under Delete or to mark under
/// Retain, including environments no longer in its spec.
pub async fn stamped_databases(admin: &AdminConnection, stamp: &Stamp) -> Result<Vec<Environment>, ExternalDbError> {
    const OPERATION: &str = "list the tenant's databases";
    within_deadline(admin, async {
        let mut candidates = Vec::new();
        for env in Environment::ALL {
            candidates.push((env, ExternalNames::new(stamp.slug(), env)?.database().to_owned()));
        }
        let names: Vec<&str> = candidates.iter().map(|(_, name)| name.as_str()).collect();
        let session = Session::admin(admin, &admin.dbname).await?;
        let rows = session.query_all(queries::DATABASES_NAMED, &[&names], OPERATION).await?;
        let mut stamped = Vec::new();
        for row in rows {
            let name: String = row.try_get(0).map_err(|err| session.classify(err, OPERATION))?;
            let comment: Option<String> = row.try_get(1).map_err(|err| session.classify(err, OPERATION))?;
            if Mark::read(comment.as_deref()).is_live_by(stamp) {
                stamped.extend(candidates.iter().filter(|(_, candidate)| *candidate == name).map(|(env, _)| *env));
            }
        }
        stamped.sort_by_key(|env| Environment::ALL.iter().position(|all| all == env));
        Ok(stamped)
    })
    .await
}

/// Changing a database's comment or dropping it needs the owner role's privileges; the admin
/// grants itself membership only in an owner role this Tenant stamped.
async fn admin_member_if_ours(
    session: &Session<'_>,
    names: &ExternalNames,
    inventory: &stamps::Inventory<'_>,
    stamp: &Stamp,
) -> Result<(), ExternalDbError> {
    if inventory.owner_role.as_ref().is_some_and(|owner| owner.mark().is_by(stamp)) {
        session.ensure_admin_member(names.owner_role()).await?;
    }
    Ok(())
}

fn left_alone(object: &Found<'_>, reason: String) -> LeftAlone {
    LeftAlone { object: object.label(), reason }
}

/// Whole seconds: the stamp is read by people too.
fn now() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}
