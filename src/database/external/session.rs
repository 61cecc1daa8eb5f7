//! An admin session and the catalogue lookups every operation starts from.

use tokio_postgres::Client;

use super::connection::connect;
use super::error::{classify, Who};
use super::names::{quote_ident, quote_literal};
use super::queries;
use super::stamps::{Found, Inventory, Kind, StampRecord};
use super::{AdminConnection, ExternalDbError, ExternalNames};

pub(super) struct Session<'a> {
    pub admin: &'a AdminConnection,
    client: Client,
    pub is_superuser: bool,
    pub server_version: i32,
}

pub(super) struct RoleState {
    pub can_login: bool,
    /// None of SUPERUSER, CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS.
    pub clean: bool,
    pub inherit: bool,
    pub comment: Option<String>,
}

impl RoleState {
    pub fn matches(&self, login: bool) -> bool {
        self.clean && self.can_login == login && (!login || self.inherit)
    }
}

pub(super) struct DatabaseState {
    pub owner: String,
    pub public_can_connect: bool,
    pub login_can_connect: bool,
    pub comment: Option<String>,
}

/// The three objects of a tenant environment as found, read in one place so that every
/// operation decides on the same facts.
pub(super) struct Observed {
    pub database: Option<DatabaseState>,
    pub owner_role: Option<RoleState>,
    pub login_role: Option<RoleState>,
}

impl Observed {
    pub fn inventory<'a>(&'a self, names: &'a ExternalNames) -> Inventory<'a> {
        let role = |state: &'a Option<RoleState>, name: &'a str| {
            state.as_ref().map(|role| Found { kind: Kind::Role, name, comment: role.comment.as_deref() })
        };
        Inventory {
            database: self.database.as_ref().map(|db| Found {
                kind: Kind::Database,
                name: names.database(),
                comment: db.comment.as_deref(),
            }),
            database_owner: self.database.as_ref().map(|db| db.owner.as_str()),
            owner_role: role(&self.owner_role, names.owner_role()),
            login_role: role(&self.login_role, names.login_role()),
        }
    }
}

impl<'a> Session<'a> {
    pub async fn admin(admin: &'a AdminConnection, dbname: &str) -> Result<Session<'a>, ExternalDbError> {
        const OPERATION: &str = "read the server settings";
        let client = connect(admin, &admin.username, &admin.password, dbname, Who::Admin).await?;
        let mut session = Session { admin, client, is_superuser: false, server_version: 0 };
        let row = session.client.query_one(queries::SERVER_FACTS, &[]).await.map_err(|err| session.classify(err, OPERATION))?;
        session.server_version = row.try_get(0).map_err(|err| session.classify(err, OPERATION))?;
        session.is_superuser = row.try_get::<_, Option<bool>>(1).map_err(|err| session.classify(err, OPERATION))?.unwrap_or(false);
        Ok(session)
    }

    pub fn classify(&self, err: tokio_postgres::Error, operation: &'static str) -> ExternalDbError {
        classify(self.admin, Who::Admin, err, operation)
    }

    pub async fn execute(&self, sql: &str, operation: &'static str) -> Result<(), ExternalDbError> {
        self.try_execute(sql).await.map_err(|err| self.classify(err, operation))
    }

    /// Several statements in one call run in one implicit transaction (except those that
    /// refuse transactions, such as CREATE DATABASE).
    pub async fn try_execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(sql).await
    }

    pub async fn query_one<T>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        operation: &'static str,
    ) -> Result<T, ExternalDbError>
    where
        T: for<'r> tokio_postgres::types::FromSql<'r>,
    {
        let row = self.client.query_one(sql, params).await.map_err(|err| self.classify(err, operation))?;
        row.try_get(0).map_err(|err| self.classify(err, operation))
    }

    pub async fn query_all(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        operation: &'static str,
    ) -> Result<Vec<tokio_postgres::Row>, ExternalDbError> {
        self.client.query(sql, params).await.map_err(|err| self.classify(err, operation))
    }

    pub async fn observe(&self, names: &ExternalNames) -> Result<Observed, ExternalDbError> {
        Ok(Observed {
            database: self.database(names).await?,
            owner_role: self.role(names.owner_role()).await?,
            login_role: self.role(names.login_role()).await?,
        })
    }

    pub async fn role(&self, name: &str) -> Result<Option<RoleState>, ExternalDbError> {
        const OPERATION: &str = "look up a role";
        let row = self.client.query_opt(queries::ROLE, &[&name]).await.map_err(|err| self.classify(err, OPERATION))?;
        let Some(row) = row else { return Ok(None) };
        let get = |index: usize| row.try_get::<_, bool>(index).map_err(|err| self.classify(err, OPERATION));
        Ok(Some(RoleState {
            can_login: get(0)?,
            inherit: get(1)?,
            clean: get(2)?,
            comment: row.try_get(3).map_err(|err| self.classify(err, OPERATION))?,
        }))
    }

    pub async fn database(&self, names: &ExternalNames) -> Result<Option<DatabaseState>, ExternalDbError> {
        const OPERATION: &str = "look up the database";
        let row = self
            .client
            .query_opt(queries::DATABASE, &[&names.database(), &names.login_role()])
            .await
            .map_err(|err| self.classify(err, OPERATION))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(DatabaseState {
            owner: row.try_get(0).map_err(|err| self.classify(err, OPERATION))?,
            public_can_connect: row.try_get(1).map_err(|err| self.classify(err, OPERATION))?,
            login_can_connect: row.try_get(2).map_err(|err| self.classify(err, OPERATION))?,
            comment: row.try_get(3).map_err(|err| self.classify(err, OPERATION))?,
        }))
    }

    /// Writes a stamp. On a database this needs the owner's privileges (see
    /// [`Session::ensure_admin_member`]); on a role, CREATEROLE.
    pub async fn stamp(&self, kind: Kind, name: &str, record: &StampRecord) -> Result<(), ExternalDbError> {
        let sql = format!("COMMENT ON {} {} IS {}", kind.sql(), quote_ident(name), quote_literal(&record.to_string())?);
        self.execute(&sql, "write the ownership stamp").await
    }

    /// A non-superuser admin must hold the owner role's privileges to create a database owned
    /// by it, comment on it or drop it, and a role's privileges to drop what it owns
    /// (CREATEROLE lets it grant itself that membership).
    pub async fn ensure_admin_member(&self, role: &str) -> Result<(), ExternalDbError> {
        if self.is_superuser {
            return Ok(());
        }
        let member: bool = self.query_one(queries::ADMIN_HAS_ROLE, &[&role], "check the admin's membership in a tenant role").await?;
        if !member {
            let sql = format!("GRANT {} TO CURRENT_USER", quote_ident(role));
            self.execute(&sql, "grant the admin membership in a tenant role").await?;
        }
        Ok(())
    }
}
