//! The owner role (NOLOGIN, owns the database) and the login role (member of the owner role,
//! used by the tenant's applications).

use tokio_postgres::error::SqlState;

use super::names::{quote_ident, quote_literal};
use super::queries;
use super::session::{RoleState, Session};
use super::stamps::{Kind, Mark, Stamp};
use super::{EnsureOutcome, ExternalDbError, ExternalNames};

const OWNER_ATTRIBUTES: &str = "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";
const LOGIN_ATTRIBUTES: &str = "LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";

/// The tenant's password as a SCRAM verifier, computed once per call so that the statements
/// of one call never disagree on the salt. Passwords themselves never appear in SQL text.
#[derive(Default)]
pub(super) struct Verifier(Option<String>);

impl Verifier {
    fn literal(&mut self, password: &str) -> Result<String, ExternalDbError> {
        let verifier = self.0.get_or_insert_with(|| postgres_protocol::password::scram_sha_256(password.as_bytes()));
        quote_literal(verifier)
    }
}

pub(super) fn check_password(password: &str) -> Result<(), ExternalDbError> {
    if password.is_empty() {
        return Err(ExternalDbError::InvalidPassword("is empty".to_owned()));
    }
    if password.contains('\0') {
        return Err(ExternalDbError::InvalidPassword("contains a NUL character".to_owned()));
    }
    Ok(())
}

/// Creates both roles (stamped in the same transaction, so no unstamped role of ours can
/// exist), re-stamps roles [`super::stamps::assess`] allowed to take on, and puts drifted
/// attributes and the membership back. Callers must have assessed the roles first.
pub(super) async fn ensure_roles(
    session: &Session<'_>,
    names: &ExternalNames,
    stamp: &Stamp,
    found: (Option<RoleState>, Option<RoleState>),
    password: &str,
    verifier: &mut Verifier,
    outcome: &mut EnsureOutcome,
) -> Result<(), ExternalDbError> {
    let record = quote_literal(&stamp.record().to_string())?;
    let (owner_found, login_found) = found;
    let owner = quote_ident(names.owner_role());
    let login = quote_ident(names.login_role());

    match owner_found {
        None => {
            let sql = format!("CREATE ROLE {owner} {OWNER_ATTRIBUTES}; COMMENT ON ROLE {owner} IS {record}");
            session.execute(&sql, "create the owner role").await?;
            outcome.created_roles = true;
        }
        Some(role) => converge(session, names.owner_role(), &role, false, stamp, outcome).await?,
    }
    session.ensure_admin_member(names.owner_role()).await?;

    match login_found {
        None => {
            let sql = format!(
                "CREATE ROLE {login} {LOGIN_ATTRIBUTES} PASSWORD {} IN ROLE {owner}; COMMENT ON ROLE {login} IS {record}",
                verifier.literal(password)?
            );
            session.execute(&sql, "create the login role").await?;
            outcome.created_roles = true;
            outcome.password_set = true;
        }
        Some(role) => converge(session, names.login_role(), &role, true, stamp, outcome).await?,
    }
    let has_owner_privileges: bool =
        session.query_one(queries::HAS_ROLE, &[&names.login_role(), &names.owner_role()], "check the login role's membership").await?;
    if !has_owner_privileges {
        session.execute(&format!("GRANT {owner} TO {login}"), "make the login role a member of the owner role").await?;
        outcome.repaired = true;
    }
    Ok(())
}

/// Re-stamps a role [`super::stamps::assess`] allowed to take on and resets drifted attributes.
async fn converge(
    session: &Session<'_>,
    name: &str,
    role: &RoleState,
    login: bool,
    stamp: &Stamp,
    outcome: &mut EnsureOutcome,
) -> Result<(), ExternalDbError> {
    if Mark::read(role.comment.as_deref()) != Mark::Stamped(stamp.record()) {
        session.stamp(Kind::Role, name, &stamp.record()).await?;
    }
    if !role.matches(login) {
        let attributes = if login { LOGIN_ATTRIBUTES } else { OWNER_ATTRIBUTES };
        session.execute(&format!("ALTER ROLE {} {attributes}", quote_ident(name)), "reset a role's attributes").await?;
        outcome.repaired = true;
    }
    Ok(())
}

/// Only called after the login failed for a role stamped by this Tenant: a working password
/// is never rewritten, so a steady state changes nothing on the server.
pub(super) async fn set_password(
    session: &Session<'_>,
    names: &ExternalNames,
    password: &str,
    verifier: &mut Verifier,
) -> Result<(), ExternalDbError> {
    let sql = format!("ALTER ROLE {} PASSWORD {}", quote_ident(names.login_role()), verifier.literal(password)?);
    session.execute(&sql, "set the login role's password").await
}

pub(super) async fn drop_role(session: &Session<'_>, role: &str) -> Result<(), ExternalDbError> {
    let quoted = quote_ident(role);
    match session.try_execute(&format!("DROP ROLE IF EXISTS {quoted}")).await {
        Ok(()) => Ok(()),
        Err(err) if err.code() == Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST) => {
            // What the role still owns or was granted in the admin's database is the tenant's
            // (where PUBLIC may create, a tenant can leave objects there) and goes with the
            // role. Handing it to the admin (REASSIGN OWNED) would turn a SECURITY DEFINER
            // function the tenant wrote into one that runs with the admin's rights. DROP OWNED
            // needs the role's privileges. Objects in other databases still block the drop,
            // and the error names them.
            session.ensure_admin_member(role).await?;
            let sql = format!("DROP OWNED BY {quoted}; DROP ROLE {quoted}");
            session.execute(&sql, "drop a role that still owns objects").await
        }
        Err(err) => Err(session.classify(err, "drop a role")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_verifiers_carry_no_quote_and_no_password() {
        let mut verifier = Verifier::default();
        let literal = verifier.literal("pa'ss\\word").unwrap();
        assert!(literal.starts_with("'SCRAM-SHA-256$") && literal.ends_with('\''), "{literal}");
        assert!(!literal[1..literal.len() - 1].contains('\'') && !literal.contains("pa'ss"));
        assert_eq!(verifier.literal("other").unwrap(), literal, "one salt per call");
    }

    #[test]
    fn passwords_must_be_sendable() {
        assert!(check_password("x").is_ok());
        for bad in ["", "a\0b"] {
            assert_eq!(check_password(bad).unwrap_err().reason().as_str(), "InvalidDatabasePassword");
        }
    }
}
