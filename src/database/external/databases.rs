//! The tenant environment's database: created owned by the owner role, closed to PUBLIC,
//! schema public restricted; dropped even with sessions open.

use super::names::quote_ident;
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
            session.execute(&format!("CREATE DATABASE {database} OWNER {owner}"), "create the database").await?;
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

/// PostgreSQL < 15 lets PUBLIC create in schema public; this runs inside the tenant's database.
pub(super) async fn restrict_public_schema(
    inside: &Session<'_>,
    names: &ExternalNames,
    outcome: &mut EnsureOutcome,
) -> Result<(), ExternalDbError> {
    // A tenant that dropped schema public made its own choice; nothing to restrict then.
    let needs = inside
        .query_one::<Option<bool>>(
            "SELECT CASE WHEN n.oid IS NULL THEN NULL ELSE \
                 has_schema_privilege('public', n.oid, 'CREATE') \
                 OR NOT has_schema_privilege($1, n.oid, 'CREATE') \
                 OR NOT has_schema_privilege($1, n.oid, 'USAGE') END \
             FROM (SELECT (SELECT oid FROM pg_namespace WHERE nspname = 'public') AS oid) AS n",
            &[&names.owner_role()],
            "inspect schema public",
        )
        .await?;
    if needs.unwrap_or(false) {
        let sql =
            format!("REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE, CREATE ON SCHEMA public TO {}", quote_ident(names.owner_role()));
        inside.execute(&sql, "restrict schema public to the owner role").await?;
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
    session
        .query_one::<i64>(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
            &[&names.database()],
            "end the database's sessions",
        )
        .await?;
    session.execute(&format!("DROP DATABASE IF EXISTS {database}"), "drop the database").await
}
