//! The tenant environment's database: created owned by the owner role, closed to PUBLIC;
//! dropped even with sessions open. Everything here runs in the admin's own database: what is
//! inside the tenant's database is the tenant's, and the admin never connects there.

use super::names::quote_ident;
use super::queries;
use super::session::{DatabaseState, Session};
use super::stamps::{Kind, Mark, Stamp};
use super::{EnsureOutcome, ExternalDbError, ExternalNames};

/// Creates the database (and stamps it) or re-stamps one [`super::stamps::assess`] allowed to
/// take on, then puts ownership and CONNECT privileges back. The admin must already hold the
/// owner role's privileges.
pub(super) async fn ensure_database(
    session: &Session<'_>,
    names: &ExternalNames,
    stamp: &Stamp,
    found: Option<DatabaseState>,
    outcome: &mut EnsureOutcome,
) -> Result<(), ExternalDbError> {
    let database = quote_ident(names.database());
    let owner = quote_ident(names.owner_role());
    let db = match found {
        Some(db) => db,
        None => {
            // CREATE DATABASE refuses to run in a transaction, so the stamp follows in a second
            // statement; should the operator stop in between, the next call finds a database
            // owned by the tenant's owner role and adopts it after the login role's proof.
            // From template0, which nobody can connect to: template1 is open to PUBLIC, so a
            // tenant could seed it with objects for every later database, or hold a session in
            // it, which makes CREATE DATABASE fail for everyone.
            session.execute(&format!("CREATE DATABASE {database} OWNER {owner} TEMPLATE template0"), "create the database").await?;
            outcome.created_database = true;
            session.database(names).await?.ok_or_else(|| ExternalDbError::Database {
                operation: "create the database",
                code: String::new(),
                message: format!("database {:?} vanished right after it was created", names.database()),
            })?
        }
    };
    if Mark::read(db.comment.as_deref()) != Mark::Stamped(stamp.record()) {
        session.stamp(Kind::Database, names.database(), &stamp.record()).await?;
    }
    if db.owner != names.owner_role() {
        session.execute(&format!("ALTER DATABASE {database} OWNER TO {owner}"), "give the database to the owner role").await?;
        outcome.repaired |= !outcome.created_database;
    }
    if db.public_can_connect || !db.login_can_connect {
        let sql = format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC; \
             GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {owner}; \
             GRANT CONNECT ON DATABASE {database} TO {login}",
            login = quote_ident(names.login_role())
        );
        session.execute(&sql, "restrict who may connect to the database").await?;
        outcome.repaired |= !outcome.created_database;
    }
    Ok(())
}

/// Drops the database, ending its sessions. The admin must already hold the owner role's
/// privileges (or be superuser).
pub(super) async fn drop_database(session: &Session<'_>, names: &ExternalNames) -> Result<(), ExternalDbError> {
    let database = quote_ident(names.database());
    if session.server_version >= 130_000 {
        return session.execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"), "drop the database").await;
    }
    // Before 13 sessions must be ended by hand; connections are blocked first so none can
    // slip in between.
    session.execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS false"), "drop the database").await?;
    session.query_one::<i64>(queries::END_SESSIONS, &[&names.database()], "end the database's sessions").await?;
    session.execute(&format!("DROP DATABASE IF EXISTS {database}"), "drop the database").await
}
