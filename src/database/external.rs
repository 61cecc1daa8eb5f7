//! The `external` database provider (SPEC §4): one database per tenant and environment on an
//! existing PostgreSQL server, owned by a NOLOGIN owner role, reached through a LOGIN role that
//! is a member of the owner role and may connect to no other tenant's database.
//!
//! Pure I/O against PostgreSQL; the Tenant controller supplies the admin connection (from the
//! Secret the operator configuration names) and the tenant's password (from the tenant's
//! credentials Secret, generated once).
//!
//! Every statement that cannot take bind parameters is built from [`quote_ident`] and
//! [`quote_literal`]; tenant passwords never appear in SQL at all (only their SCRAM verifier
//! does), so they cannot leak into server logs either.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::types::Environment;

/// How long establishing one connection (TCP, TLS and authentication) may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for a whole provider call, so a server that stops answering mid-way cannot
/// hold a reconcile forever (statement_timeout only helps while the server is alive).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);
/// Server-side limits for every session this module opens.
const SESSION_OPTIONS: &str = "-c statement_timeout=60000 -c lock_timeout=30000 \
     -c idle_in_transaction_session_timeout=60000 -c standard_conforming_strings=on";

/// PostgreSQL's NAMEDATALEN - 1: longer identifiers are silently truncated by the server,
/// which could make two tenants' names collide.
pub const MAX_IDENTIFIER_BYTES: usize = 63;
/// Longest slug the CRD admits (SPEC §2).
pub const MAX_SLUG_LEN: usize = 40;

/// Prefix of the database comment that marks a database kept after its Tenant was deleted
/// with `deletionPolicy: Retain`.
pub const RETAINED_MARK: &str = "tenancy.platform.dev/retained=true";

/// Errors of the external provider. [`ExternalDbError::reason`] gives the status reason.
#[derive(Debug, thiserror::Error)]
pub enum ExternalDbError {
    #[error("invalid admin connection secret: key `{key}`: {message}")]
    InvalidAdminSecret { key: &'static str, message: String },

    #[error("invalid database object name: {0}")]
    InvalidName(String),

    #[error("invalid tenant database password: {0}")]
    InvalidPassword(String),

    #[error("PostgreSQL server {server} is unreachable: {message}")]
    ServerUnreachable { server: String, message: String },

    #[error("TLS connection to PostgreSQL server {server} failed: {message}")]
    Tls { server: String, message: String },

    #[error("PostgreSQL server {server} rejected the admin credentials of user `{user}`: {message}")]
    AdminAuthenticationFailed { server: String, user: String, message: String },

    #[error("login role `{role}` cannot connect to database `{database}`: {message}")]
    TenantLoginFailed { role: String, database: String, message: String },

    #[error("admin user `{user}` lacks a privilege needed to {operation}: {message}")]
    InsufficientPrivilege { user: String, operation: &'static str, message: String },

    #[error("PostgreSQL error while trying to {operation} (SQLSTATE {code}): {message}")]
    Database { operation: &'static str, code: String, message: String },
}

impl ExternalDbError {
    /// CamelCase reason for the `DatabaseReady` condition and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidAdminSecret { .. } => "InvalidAdminSecret",
            Self::InvalidName(_) => "InvalidDatabaseName",
            Self::InvalidPassword(_) => "InvalidDatabasePassword",
            Self::ServerUnreachable { .. } => "ServerUnreachable",
            Self::Tls { .. } => "TlsHandshakeFailed",
            Self::AdminAuthenticationFailed { .. } => "AdminAuthenticationFailed",
            Self::TenantLoginFailed { .. } => "TenantLoginFailed",
            Self::InsufficientPrivilege { .. } => "InsufficientPrivilege",
            Self::Database { .. } => "DatabaseError",
        }
    }

    /// Whether retrying without any change elsewhere may succeed; configuration errors
    /// (bad secret, credentials, privileges) need a person first.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::ServerUnreachable { .. } | Self::Database { .. } | Self::TenantLoginFailed { .. })
    }
}

/// Whether the admin connection uses TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    /// TLS with the server certificate verified against the trusted roots and the host name
    /// (libpq's `verify-full`; a stricter reading of `require`, so a man in the middle cannot
    /// collect the admin password).
    #[default]
    Require,
}

/// Connection to an existing PostgreSQL server with a role allowed to create roles and
/// databases (a superuser, or a CREATEROLE CREATEDB role as managed services hand out).
#[derive(Clone)]
pub struct AdminConnection {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    /// Database the admin session opens; `postgres` unless the secret says otherwise.
    pub dbname: String,
    pub ssl_mode: SslMode,
    /// PEM CA bundle to trust instead of the system roots (secret key `sslrootcert`).
    pub root_cert_pem: Option<String>,
    pub connect_timeout: Duration,
}

impl fmt::Debug for AdminConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("dbname", &self.dbname)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert_pem", &self.root_cert_pem.as_ref().map(|_| "<set>"))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl AdminConnection {
    /// Reads the admin Secret's data: `host`, `port`, `username`, `password`, optional `dbname`
    /// (default `postgres`), `sslmode` (`disable`, or `require`/`verify-ca`/`verify-full`, all
    /// verifying; default `require`) and `sslrootcert` (PEM).
    pub fn from_secret_data(data: &BTreeMap<String, String>) -> Result<Self, ExternalDbError> {
        // Secrets made with `kubectl create secret --from-file` often end in a newline; that is
        // never meaningful in these keys. The password is taken verbatim.
        let text = |key: &'static str| data.get(key).map(|value| value.trim());
        let required = |key: &'static str| match text(key) {
            Some(value) if !value.is_empty() => Ok(value.to_owned()),
            Some(_) => Err(secret_error(key, "is empty")),
            None => Err(secret_error(key, "is missing")),
        };

        let host = required("host")?;
        let port = parse_port(&required("port")?)?;
        let username = required("username")?;
        let password = match data.get("password") {
            Some(value) if !value.is_empty() => value.clone(),
            Some(_) => return Err(secret_error("password", "is empty")),
            None => return Err(secret_error("password", "is missing")),
        };
        let dbname = match text("dbname") {
            Some(value) if !value.is_empty() => value.to_owned(),
            _ => "postgres".to_owned(),
        };
        let ssl_mode = match text("sslmode") {
            None | Some("") => SslMode::default(),
            Some(value) => parse_ssl_mode(value)?,
        };
        let root_cert_pem = data.get("sslrootcert").filter(|pem| !pem.trim().is_empty()).cloned();

        let admin = Self { host, port, username, password, dbname, ssl_mode, root_cert_pem, connect_timeout: DEFAULT_CONNECT_TIMEOUT };
        admin.validate()?;
        Ok(admin)
    }

    /// Parses a `postgresql://user:password@host:port/dbname?sslmode=...` URL. A missing or
    /// `prefer`/`allow` sslmode means [`SslMode::Require`]: this module never falls back to
    /// clear text silently.
    pub fn from_url(url: &str) -> Result<Self, ExternalDbError> {
        let config: tokio_postgres::Config = url.parse().map_err(|err| secret_error("url", &format!("cannot be parsed: {err}")))?;
        let host = match config.get_hosts() {
            [tokio_postgres::config::Host::Tcp(host)] => host.clone(),
            [] => return Err(secret_error("host", "is missing")),
            _ => return Err(secret_error("host", "must be exactly one TCP host name or address")),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let username = config.get_user().ok_or_else(|| secret_error("username", "is missing"))?.to_owned();
        let password = config.get_password().ok_or_else(|| secret_error("password", "is missing"))?;
        let password = String::from_utf8(password.to_vec()).map_err(|_| secret_error("password", "is not valid UTF-8"))?;
        let ssl_mode = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            _ => SslMode::Require,
        };
        let admin = Self {
            host,
            port,
            username,
            password,
            dbname: config.get_dbname().unwrap_or("postgres").to_owned(),
            ssl_mode,
            root_cert_pem: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        };
        admin.validate()?;
        Ok(admin)
    }

    fn validate(&self) -> Result<(), ExternalDbError> {
        if self.port == 0 {
            return Err(secret_error("port", "must be between 1 and 65535"));
        }
        // A NUL byte cannot be sent in the startup message; catch it here with the key's name.
        for (key, value) in [("host", &self.host), ("username", &self.username), ("password", &self.password), ("dbname", &self.dbname)] {
            if value.contains('\0') {
                return Err(secret_error(key, "contains a NUL character"));
            }
        }
        Ok(())
    }

    /// `host:port`, for messages.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn secret_error(key: &'static str, message: &str) -> ExternalDbError {
    ExternalDbError::InvalidAdminSecret { key, message: message.to_owned() }
}

fn parse_port(value: &str) -> Result<u16, ExternalDbError> {
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(secret_error("port", &format!("`{value}` is not a port number (1-65535)"))),
    }
}

fn parse_ssl_mode(value: &str) -> Result<SslMode, ExternalDbError> {
    match value.to_ascii_lowercase().as_str() {
        "disable" => Ok(SslMode::Disable),
        "require" | "verify-ca" | "verify-full" => Ok(SslMode::Require),
        other => Err(secret_error("sslmode", &format!("`{other}` is not supported; use disable, require, verify-ca or verify-full"))),
    }
}

/// Names of one tenant environment's objects on the external server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalNames {
    database: String,
    owner_role: String,
    login_role: String,
}

impl ExternalNames {
    /// `<slug>_<env>` (with `-` → `_`), `<slug>_<env>_owner` and `<slug>_<env>_app`.
    /// The slug must be a DNS-1123 label of at most 40 characters, as the CRD enforces; anything
    /// else is refused rather than quoted, since it can only come from a bypassed schema.
    pub fn new(slug: &str, env: Environment) -> Result<Self, ExternalDbError> {
        if !is_dns1123_label(slug) || slug.len() > MAX_SLUG_LEN {
            return Err(ExternalDbError::InvalidName(format!(
                "tenant slug {slug:?} is not a DNS-1123 label of at most {MAX_SLUG_LEN} characters"
            )));
        }
        let database = format!("{}_{}", slug.replace('-', "_"), env.as_str());
        Self::custom(&database, &format!("{database}_owner"), &format!("{database}_app"))
    }

    /// Names not derived from a slug (for example a database adopted under an older naming
    /// scheme). Any text PostgreSQL accepts as a quoted identifier is allowed.
    pub fn custom(database: &str, owner_role: &str, login_role: &str) -> Result<Self, ExternalDbError> {
        check_identifier("database", database)?;
        for (what, role) in [("owner role", owner_role), ("login role", login_role)] {
            check_identifier(what, role)?;
            // The server reserves these; refusing here gives a clearer message.
            let lower = role.to_ascii_lowercase();
            if lower.starts_with("pg_") || ["public", "none"].contains(&lower.as_str()) {
                return Err(ExternalDbError::InvalidName(format!("{what} name {role:?} is reserved by PostgreSQL")));
            }
        }
        if owner_role == login_role {
            return Err(ExternalDbError::InvalidName(format!("owner role and login role must differ (both {owner_role:?})")));
        }
        Ok(Self { database: database.to_owned(), owner_role: owner_role.to_owned(), login_role: login_role.to_owned() })
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn owner_role(&self) -> &str {
        &self.owner_role
    }

    pub fn login_role(&self) -> &str {
        &self.login_role
    }
}

fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-') && bytes.len() <= 63,
        _ => false,
    }
}

fn check_identifier(what: &str, name: &str) -> Result<(), ExternalDbError> {
    if name.is_empty() {
        return Err(ExternalDbError::InvalidName(format!("{what} name is empty")));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(ExternalDbError::InvalidName(format!(
            "{what} name {name:?} is {} bytes long; PostgreSQL keeps only {MAX_IDENTIFIER_BYTES}",
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(ExternalDbError::InvalidName(format!("{what} name {name:?} contains a NUL character")));
    }
    Ok(())
}

/// Quotes an identifier for SQL text: always double-quoted, embedded `"` doubled. Quoting even
/// plain names keeps the exact spelling (no case folding) and makes keywords harmless.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL text: `'...'` with embedded `'` doubled. Only correct with
/// `standard_conforming_strings = on`, where backslashes are ordinary characters; every session
/// of this module sets it at startup and checks it took effect. NUL cannot be represented.
pub fn quote_literal(value: &str) -> Result<String, ExternalDbError> {
    if value.contains('\0') {
        return Err(ExternalDbError::InvalidName(format!("literal {value:?} contains a NUL character")));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// What [`ensure_database`] found and did, for Kubernetes Events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnsureOutcome {
    pub created_database: bool,
    /// At least one of the two roles was created.
    pub created_roles: bool,
    /// The database carried the retained mark of a deleted Tenant and is adopted again.
    pub adopted_retained: bool,
    /// The login role's password did not work and was set again.
    pub password_set: bool,
    /// Something had drifted (role attributes, membership, ownership, privileges) and was
    /// put back.
    pub repaired: bool,
}

/// What [`drop_database`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropOutcome {
    pub dropped_database: bool,
    pub dropped_roles: bool,
}

/// Connection details for the tenant's login role: same server as the admin connection.
pub fn connection_info(admin: &AdminConnection, names: &ExternalNames) -> crate::database::ConnectionInfo {
    use crate::database::ConnectionInfo;
    ConnectionInfo {
        host: admin.host.clone(),
        port: admin.port,
        dbname: names.database.clone(),
        username: names.login_role.clone(),
        require_tls: admin.ssl_mode == SslMode::Require,
    }
}

/// Creates or adopts the tenant environment's roles and database and puts drifted settings
/// back; safe to call on every reconcile. `Ok` means the login role can connect with
/// `password` right now (the readiness check is part of the call).
pub async fn ensure_database(admin: &AdminConnection, names: &ExternalNames, password: &str) -> Result<EnsureOutcome, ExternalDbError> {
    check_password(password)?;
    within_deadline(admin, async {
        let mut outcome = EnsureOutcome::default();
        let session = Session::admin(admin, &admin.dbname).await?;
        // Computed once so that no two calls race on different salts for the same password.
        let mut verifier = None;

        // Roles. CREATE ROLE can race with another replica's reconcile; "already exists"
        // then means found.
        match session.role(&names.owner_role).await? {
            None => {
                let sql = format!("CREATE ROLE {} {OWNER_ATTRIBUTES}", quote_ident(&names.owner_role));
                outcome.created_roles |= session.execute_creating(&sql, "create the owner role").await?;
            }
            Some(role) if !role.matches(false) => {
                let sql = format!("ALTER ROLE {} {OWNER_ATTRIBUTES}", quote_ident(&names.owner_role));
                session.execute(&sql, "reset the owner role's attributes").await?;
                outcome.repaired = true;
            }
            Some(_) => {}
        }
        session.ensure_admin_member(&names.owner_role).await?;

        match session.role(&names.login_role).await? {
            None => {
                let scram = verifier.get_or_insert_with(|| scram_verifier(password));
                let sql = format!(
                    "CREATE ROLE {} {LOGIN_ATTRIBUTES} PASSWORD {} IN ROLE {}",
                    quote_ident(&names.login_role),
                    quote_literal(scram)?,
                    quote_ident(&names.owner_role)
                );
                let created = session.execute_creating(&sql, "create the login role").await?;
                outcome.created_roles |= created;
                outcome.password_set |= created;
            }
            Some(role) if !role.matches(true) => {
                let sql = format!("ALTER ROLE {} {LOGIN_ATTRIBUTES}", quote_ident(&names.login_role));
                session.execute(&sql, "reset the login role's attributes").await?;
                outcome.repaired = true;
            }
            Some(_) => {}
        }
        let has_owner_privileges: bool = session
            .query_one("SELECT pg_has_role($1, $2, 'USAGE')", &[&names.login_role, &names.owner_role], "check the login role's membership")
            .await?;
        if !has_owner_privileges {
            let sql = format!("GRANT {} TO {}", quote_ident(&names.owner_role), quote_ident(&names.login_role));
            session.execute(&sql, "make the login role a member of the owner role").await?;
            outcome.repaired = true;
        }

        // Database.
        let db = match session.database(names).await? {
            Some(db) => db,
            None => {
                let sql = format!("CREATE DATABASE {} OWNER {}", quote_ident(&names.database), quote_ident(&names.owner_role));
                outcome.created_database = session.execute_creating(&sql, "create the database").await?;
                session.database(names).await?.ok_or_else(|| ExternalDbError::Database {
                    operation: "create the database",
                    code: String::new(),
                    message: format!("database {:?} vanished right after it was created", names.database),
                })?
            }
        };
        let database = quote_ident(&names.database);
        if !db.owned_by_owner {
            let sql = format!("ALTER DATABASE {database} OWNER TO {}", quote_ident(&names.owner_role));
            session.execute(&sql, "give the database to the owner role").await?;
            outcome.repaired |= !outcome.created_database;
        }
        if db.public_can_connect || !db.login_can_connect {
            let sql = format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC; \
                 GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {owner}; \
                 GRANT CONNECT ON DATABASE {database} TO {login}",
                owner = quote_ident(&names.owner_role),
                login = quote_ident(&names.login_role)
            );
            session.execute(&sql, "restrict who may connect to the database").await?;
            outcome.repaired |= !outcome.created_database;
        }
        if db.comment.as_deref().is_some_and(|comment| comment.starts_with(RETAINED_MARK)) {
            session.execute(&format!("COMMENT ON DATABASE {database} IS NULL"), "clear the retained mark").await?;
            outcome.adopted_retained = true;
        }
        drop(session);

        // Inside the database: PostgreSQL < 15 lets PUBLIC create in schema public.
        let inside = Session::admin(admin, &names.database).await?;
        if inside.public_schema_needs_fixing(&names.owner_role).await? {
            let sql = format!(
                "REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE, CREATE ON SCHEMA public TO {}",
                quote_ident(&names.owner_role)
            );
            inside.execute(&sql, "restrict schema public to the owner role").await?;
            outcome.repaired |= !outcome.created_database;
        }
        drop(inside);

        // The password is checked by logging in, which needs no superuser (pg_authid is not
        // readable otherwise) and doubles as the readiness check; it is written only when the
        // login fails, so a steady state changes nothing on the server.
        match login(admin, names, password).await {
            Ok(()) => {}
            Err(ExternalDbError::TenantLoginFailed { .. }) if !outcome.password_set => {
                let session = Session::admin(admin, &admin.dbname).await?;
                let scram = verifier.get_or_insert_with(|| scram_verifier(password));
                let sql = format!("ALTER ROLE {} PASSWORD {}", quote_ident(&names.login_role), quote_literal(scram)?);
                session.execute(&sql, "set the login role's password").await?;
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

/// Marks the database as kept after its Tenant was deleted with `deletionPolicy: Retain`.
/// Returns whether a database was there to mark.
pub async fn mark_retained(admin: &AdminConnection, names: &ExternalNames) -> Result<bool, ExternalDbError> {
    within_deadline(admin, async {
        let session = Session::admin(admin, &admin.dbname).await?;
        if session.database(names).await?.is_none() {
            return Ok(false);
        }
        session.ensure_admin_member(&names.owner_role).await?;
        let comment = format!(
            "{RETAINED_MARK}; the Tenant was deleted with deletionPolicy Retain at {}; \
             re-creating the Tenant adopts this database",
            jiff::Timestamp::now()
        );
        let sql = format!("COMMENT ON DATABASE {} IS {}", quote_ident(&names.database), quote_literal(&comment)?);
        session.execute(&sql, "mark the database as retained").await?;
        Ok(true)
    })
    .await
}

/// Whether the database exists and carries the retained mark.
pub async fn is_retained(admin: &AdminConnection, names: &ExternalNames) -> Result<bool, ExternalDbError> {
    within_deadline(admin, async {
        let session = Session::admin(admin, &admin.dbname).await?;
        Ok(session.database(names).await?.and_then(|db| db.comment).is_some_and(|comment| comment.starts_with(RETAINED_MARK)))
    })
    .await
}

/// Drops the database (ending its sessions) and both roles; nothing there is not an error.
pub async fn drop_database(admin: &AdminConnection, names: &ExternalNames) -> Result<DropOutcome, ExternalDbError> {
    within_deadline(admin, async {
        let mut outcome = DropOutcome::default();
        let session = Session::admin(admin, &admin.dbname).await?;
        let database = quote_ident(&names.database);
        if session.database(names).await?.is_some() {
            if session.role(&names.owner_role).await?.is_some() {
                session.ensure_admin_member(&names.owner_role).await?;
            }
            if session.server_version >= 130_000 {
                let sql = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
                session.execute(&sql, "drop the database").await?;
            } else {
                // Before 13 sessions must be ended by hand; connections are blocked first so
                // none can slip in between.
                session.execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS false"), "drop the database").await?;
                session
                    .query_one::<i64>(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
                        &[&names.database],
                        "end the database's sessions",
                    )
                    .await?;
                session.execute(&format!("DROP DATABASE IF EXISTS {database}"), "drop the database").await?;
            }
            outcome.dropped_database = true;
        }

        for role in [&names.login_role, &names.owner_role] {
            if session.role(role).await?.is_none() {
                continue;
            }
            let sql = format!("DROP ROLE IF EXISTS {}", quote_ident(role));
            match session.try_execute(&sql).await {
                Ok(()) => {}
                Err(err) if err.code() == Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST) => {
                    // Leftovers in the admin database (grants, stray objects) are kept but
                    // handed to the admin; objects in other databases still block the drop
                    // and the error names them.
                    let role = quote_ident(role);
                    let sql = format!("REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}; DROP ROLE {role}");
                    session.execute(&sql, "drop a role that still owns objects").await?;
                }
                Err(err) => return Err(session.classify(err, "drop a role")),
            }
            outcome.dropped_roles = true;
        }
        Ok(outcome)
    })
    .await
}

const OWNER_ATTRIBUTES: &str = "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";
const LOGIN_ATTRIBUTES: &str = "LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";

fn check_password(password: &str) -> Result<(), ExternalDbError> {
    if password.is_empty() {
        return Err(ExternalDbError::InvalidPassword("is empty".to_owned()));
    }
    if password.contains('\0') {
        return Err(ExternalDbError::InvalidPassword("contains a NUL character".to_owned()));
    }
    Ok(())
}

fn scram_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

async fn within_deadline<T>(
    admin: &AdminConnection,
    operation: impl Future<Output = Result<T, ExternalDbError>>,
) -> Result<T, ExternalDbError> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation).await.unwrap_or_else(|_| {
        Err(ExternalDbError::ServerUnreachable {
            server: admin.server(),
            message: format!("no answer within {}s", OPERATION_TIMEOUT.as_secs()),
        })
    })
}

async fn login(admin: &AdminConnection, names: &ExternalNames, password: &str) -> Result<(), ExternalDbError> {
    let who = Who::Tenant { role: &names.login_role, database: &names.database };
    let client = connect(admin, &names.login_role, password, &names.database, who).await?;
    client.simple_query("SELECT 1").await.map_err(|err| classify(admin, who, err, "run a query as the login role"))?;
    Ok(())
}

#[derive(Clone, Copy)]
enum Who<'a> {
    Admin,
    Tenant { role: &'a str, database: &'a str },
}

async fn connect(admin: &AdminConnection, user: &str, password: &str, dbname: &str, who: Who<'_>) -> Result<Client, ExternalDbError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&admin.host)
        .port(admin.port)
        .user(user)
        .password(password)
        .dbname(dbname)
        .application_name("tenant-operator")
        .options(SESSION_OPTIONS)
        .connect_timeout(admin.connect_timeout)
        .keepalives_idle(Duration::from_secs(30));

    // connect_timeout covers only the TCP handshake; a peer that accepts and then stays
    // silent (a stuck proxy, a frozen server) is caught by this outer limit.
    let timed_out = || ExternalDbError::ServerUnreachable {
        server: admin.server(),
        message: format!("no connection within {}s", admin.connect_timeout.as_secs_f32()),
    };
    let limit = admin.connect_timeout + Duration::from_millis(500);
    match admin.ssl_mode {
        SslMode::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = tokio::time::timeout(limit, config.connect(tokio_postgres::NoTls))
                .await
                .map_err(|_| timed_out())?
                .map_err(|err| classify(admin, who, err, "connect"))?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
        SslMode::Require => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tls_connector(admin)?;
            let (client, connection) = tokio::time::timeout(limit, config.connect(tls))
                .await
                .map_err(|_| timed_out())?
                .map_err(|err| classify(admin, who, err, "connect"))?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
    }
}

async fn drive<F: Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(err) = connection.await {
        tracing::debug!(error = %err, "external database connection ended with an error");
    }
}

fn tls_connector(admin: &AdminConnection) -> Result<tokio_postgres_rustls::MakeRustlsConnect, ExternalDbError> {
    let tls_error = |message: String| ExternalDbError::Tls { server: admin.server(), message };
    let mut roots = rustls::RootCertStore::empty();
    match &admin.root_cert_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|err| tls_error(format!("sslrootcert is not valid PEM: {err}")))?;
                roots.add(cert).map_err(|err| tls_error(format!("sslrootcert holds an unusable certificate: {err}")))?;
            }
        }
        None => {
            // Individual unreadable system certificates are skipped, as every TLS client does.
            let native = rustls_native_certs::load_native_certs();
            let _ = roots.add_parsable_certificates(native.certs);
        }
    }
    if roots.is_empty() {
        return Err(tls_error(
            "no trusted CA certificate (set sslrootcert in the admin secret or install system CA certificates)".to_owned(),
        ));
    }
    // An explicit provider: the process-wide default panics when more than one is compiled in.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|err| tls_error(format!("TLS configuration: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn classify(admin: &AdminConnection, who: Who<'_>, err: tokio_postgres::Error, operation: &'static str) -> ExternalDbError {
    let server = admin.server();
    let Some(db) = err.as_db_error() else {
        let message = error_chain(&err);
        // tokio-postgres reports TLS failures as "error performing TLS handshake".
        if message.contains("TLS") {
            return ExternalDbError::Tls { server, message };
        }
        // Everything else without a server error is I/O: refused, reset, timed out, closed.
        return ExternalDbError::ServerUnreachable { server, message };
    };
    let mut message = db.message().to_owned();
    if let Some(detail) = db.detail() {
        message.push_str(&format!(" ({detail})"));
    }
    let code = db.code();
    if code == &SqlState::INVALID_PASSWORD || code == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        return match who {
            Who::Admin => ExternalDbError::AdminAuthenticationFailed { server, user: admin.username.clone(), message },
            Who::Tenant { role, database } => {
                ExternalDbError::TenantLoginFailed { role: role.to_owned(), database: database.to_owned(), message }
            }
        };
    }
    // A tenant role refused CONNECT is a login problem of the tenant, not of the admin.
    if code == &SqlState::INSUFFICIENT_PRIVILEGE {
        return match who {
            Who::Admin => ExternalDbError::InsufficientPrivilege { user: admin.username.clone(), operation, message },
            Who::Tenant { role, database } => {
                ExternalDbError::TenantLoginFailed { role: role.to_owned(), database: database.to_owned(), message }
            }
        };
    }
    let unavailable = code.code().starts_with("08")
        || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW, SqlState::TOO_MANY_CONNECTIONS]
            .contains(code);
    if unavailable {
        return ExternalDbError::ServerUnreachable { server, message };
    }
    ExternalDbError::Database { operation, code: code.code().to_owned(), message }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

struct Session<'a> {
    admin: &'a AdminConnection,
    client: Client,
    is_superuser: bool,
    server_version: i32,
}

struct RoleState {
    can_login: bool,
    clean: bool,
    inherit: bool,
}

impl RoleState {
    fn matches(&self, login: bool) -> bool {
        self.clean && self.can_login == login && (!login || self.inherit)
    }
}

struct DatabaseState {
    owned_by_owner: bool,
    public_can_connect: bool,
    login_can_connect: bool,
    comment: Option<String>,
}

impl<'a> Session<'a> {
    async fn admin(admin: &'a AdminConnection, dbname: &str) -> Result<Session<'a>, ExternalDbError> {
        let client = connect(admin, &admin.username, &admin.password, dbname, Who::Admin).await?;
        let mut session = Session { admin, client, is_superuser: false, server_version: 0 };
        let row = session
            .client
            .query_one(
                "SELECT current_setting('standard_conforming_strings'), \
                        current_setting('server_version_num')::int4, \
                        (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
                &[],
            )
            .await
            .map_err(|err| session.classify(err, "read the server settings"))?;
        let conforming: String = row.try_get(0).map_err(|err| session.classify(err, "read the server settings"))?;
        // quote_literal relies on this; refuse to build any SQL text otherwise.
        if conforming != "on" {
            return Err(ExternalDbError::Database {
                operation: "read the server settings",
                code: String::new(),
                message: format!("standard_conforming_strings is {conforming:?}, expected \"on\""),
            });
        }
        session.server_version = row.try_get(1).map_err(|err| session.classify(err, "read the server settings"))?;
        session.is_superuser =
            row.try_get::<_, Option<bool>>(2).map_err(|err| session.classify(err, "read the server settings"))?.unwrap_or(false);
        Ok(session)
    }

    fn classify(&self, err: tokio_postgres::Error, operation: &'static str) -> ExternalDbError {
        classify(self.admin, Who::Admin, err, operation)
    }

    async fn execute(&self, sql: &str, operation: &'static str) -> Result<(), ExternalDbError> {
        self.try_execute(sql).await.map_err(|err| self.classify(err, operation))
    }

    async fn try_execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(sql).await
    }

    /// Runs a CREATE; `Ok(false)` when a concurrent caller created the object first.
    async fn execute_creating(&self, sql: &str, operation: &'static str) -> Result<bool, ExternalDbError> {
        match self.try_execute(sql).await {
            Ok(()) => Ok(true),
            Err(err) if err.code() == Some(&SqlState::DUPLICATE_OBJECT) || err.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(false),
            Err(err) => Err(self.classify(err, operation)),
        }
    }

    async fn query_one<T>(
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

    async fn role(&self, name: &str) -> Result<Option<RoleState>, ExternalDbError> {
        let row = self
            .client
            .query_opt(
                "SELECT rolcanlogin, rolinherit, \
                        NOT (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls) \
                 FROM pg_roles WHERE rolname = $1",
                &[&name],
            )
            .await
            .map_err(|err| self.classify(err, "look up a role"))?;
        let Some(row) = row else { return Ok(None) };
        let get = |index: usize| row.try_get::<_, bool>(index).map_err(|err| self.classify(err, "look up a role"));
        Ok(Some(RoleState { can_login: get(0)?, inherit: get(1)?, clean: get(2)? }))
    }

    async fn database(&self, names: &ExternalNames) -> Result<Option<DatabaseState>, ExternalDbError> {
        const OPERATION: &str = "look up the database";
        let row = self
            .client
            .query_opt(
                "SELECT d.datdba = (SELECT oid FROM pg_roles WHERE rolname = $2), \
                        has_database_privilege('public', d.oid, 'CONNECT') \
                            OR has_database_privilege('public', d.oid, 'TEMPORARY'), \
                        EXISTS (SELECT 1 FROM aclexplode(d.datacl) AS acl \
                                JOIN pg_roles AS r ON r.oid = acl.grantee \
                                WHERE r.rolname = $3 AND acl.privilege_type = 'CONNECT'), \
                        shobj_description(d.oid, 'pg_database') \
                 FROM pg_database AS d WHERE d.datname = $1",
                &[&names.database, &names.owner_role, &names.login_role],
            )
            .await
            .map_err(|err| self.classify(err, OPERATION))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(DatabaseState {
            owned_by_owner: row.try_get::<_, Option<bool>>(0).map_err(|err| self.classify(err, OPERATION))?.unwrap_or(false),
            public_can_connect: row.try_get(1).map_err(|err| self.classify(err, OPERATION))?,
            login_can_connect: row.try_get(2).map_err(|err| self.classify(err, OPERATION))?,
            comment: row.try_get(3).map_err(|err| self.classify(err, OPERATION))?,
        }))
    }

    /// A non-superuser admin must hold the owner role's privileges to create a database owned
    /// by it, comment on it or drop it (CREATEROLE lets it grant itself that membership).
    async fn ensure_admin_member(&self, owner_role: &str) -> Result<(), ExternalDbError> {
        if self.is_superuser {
            return Ok(());
        }
        let member: bool = self
            .query_one("SELECT pg_has_role(current_user, $1, 'USAGE')", &[&owner_role], "check the admin's membership in the owner role")
            .await?;
        if !member {
            let sql = format!("GRANT {} TO CURRENT_USER", quote_ident(owner_role));
            self.execute(&sql, "grant the admin membership in the owner role").await?;
        }
        Ok(())
    }

    async fn public_schema_needs_fixing(&self, owner_role: &str) -> Result<bool, ExternalDbError> {
        // A tenant that dropped schema public made its own choice; nothing to restrict then.
        let needs = self
            .query_one::<Option<bool>>(
                "SELECT CASE WHEN n.oid IS NULL THEN NULL ELSE \
                     has_schema_privilege('public', n.oid, 'CREATE') \
                     OR NOT has_schema_privilege($1, n.oid, 'CREATE') \
                     OR NOT has_schema_privilege($1, n.oid, 'USAGE') END \
                 FROM (SELECT (SELECT oid FROM pg_namespace WHERE nspname = 'public') AS oid) AS n",
                &[&owner_role],
                "inspect schema public",
            )
            .await?;
        Ok(needs.unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        let names = ExternalNames::new("acme-corp", Environment::Staging).unwrap();
        assert_eq!(names.database(), "acme_corp_staging");
        assert_eq!(names.owner_role(), "acme_corp_staging_owner");
        assert_eq!(names.login_role(), "acme_corp_staging_app");
        for env in Environment::ALL {
            let names = ExternalNames::new("a", env).unwrap();
            assert_eq!(names.database(), format!("a_{}", env.as_str()));
        }
    }

    #[test]
    fn the_longest_slug_fits_the_identifier_limit() {
        let slug = format!("a{}", "-b".repeat(19) + "c");
        assert_eq!(slug.len(), MAX_SLUG_LEN);
        for env in Environment::ALL {
            let names = ExternalNames::new(&slug, env).unwrap();
            for name in [names.database(), names.owner_role(), names.login_role()] {
                assert!(name.len() <= MAX_IDENTIFIER_BYTES, "{name}");
            }
        }
        let too_long = "a".repeat(MAX_SLUG_LEN + 1);
        assert!(matches!(ExternalNames::new(&too_long, Environment::Dev), Err(ExternalDbError::InvalidName(_))));
    }

    #[test]
    fn slugs_that_are_not_dns_labels_are_refused() {
        for slug in ["", "-a", "a-", "Acme", "a_b", "a\"b", "a'b", "a;drop", "a b", "a--", "ä", "a\0"] {
            let err = ExternalNames::new(slug, Environment::Dev).unwrap_err();
            assert_eq!(err.reason(), "InvalidDatabaseName", "{slug:?}");
        }
        assert!(ExternalNames::new("a--b", Environment::Dev).is_ok());
    }

    #[test]
    fn custom_names_are_checked() {
        assert!(ExternalNames::custom("d\"; x", "o'", "l;--").is_ok());
        for (db, owner, login) in [
            ("", "o", "l"),
            (&*"d".repeat(64), "o", "l"),
            ("d", "o\0", "l"),
            ("d", "pg_owner", "l"),
            ("d", "o", "PUBLIC"),
            ("d", "same", "same"),
        ] {
            assert!(ExternalNames::custom(db, owner, login).is_err(), "{db:?} {owner:?} {login:?}");
        }
        // 63 bytes of multi-byte characters is the limit, not 63 characters.
        assert!(ExternalNames::custom(&"é".repeat(32), "o", "l").is_err());
        assert!(ExternalNames::custom(&"é".repeat(31), "o", "l").is_ok());
    }

    #[test]
    fn identifiers_are_always_quoted_and_quotes_doubled() {
        assert_eq!(quote_ident("acme_dev"), "\"acme_dev\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("x\"; DROP DATABASE y; --"), "\"x\"\"; DROP DATABASE y; --\"");
        assert_eq!(quote_ident("\"\""), "\"\"\"\"\"\"");
    }

    #[test]
    fn literals_double_single_quotes_and_keep_backslashes() {
        assert_eq!(quote_literal("abc").unwrap(), "'abc'");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(quote_literal("a\\'; DROP ROLE x; --").unwrap(), "'a\\''; DROP ROLE x; --'");
        assert!(quote_literal("a\0b").is_err());
    }

    #[test]
    fn scram_verifiers_carry_no_quote() {
        let verifier = scram_verifier("pa'ss\\word");
        assert!(verifier.starts_with("SCRAM-SHA-256$"));
        assert!(!verifier.contains('\'') && !verifier.contains("pa'ss"));
    }

    fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn admin_secret_parsing() {
        let full = [("host", "db.example\n"), ("port", "5433"), ("username", "admin"), ("password", "p w\n")];
        let admin = AdminConnection::from_secret_data(&secret(&full)).unwrap();
        assert_eq!(admin.host, "db.example");
        assert_eq!(admin.port, 5433);
        assert_eq!(admin.password, "p w\n");
        assert_eq!(admin.dbname, "postgres");
        assert_eq!(admin.ssl_mode, SslMode::Require);
        assert!(!format!("{admin:?}").contains("p w"));

        let mut with_options = secret(&full);
        with_options.insert("dbname".into(), "defaultdb".into());
        with_options.insert("sslmode".into(), "disable".into());
        let admin = AdminConnection::from_secret_data(&with_options).unwrap();
        assert_eq!((admin.dbname.as_str(), admin.ssl_mode), ("defaultdb", SslMode::Disable));

        for (key, value, expected_key) in [
            ("host", None, "host"),
            ("host", Some(" "), "host"),
            ("port", None, "port"),
            ("port", Some("0"), "port"),
            ("port", Some("70000"), "port"),
            ("port", Some("x"), "port"),
            ("username", None, "username"),
            ("password", None, "password"),
            ("password", Some(""), "password"),
            ("sslmode", Some("prefer"), "sslmode"),
        ] {
            let mut data = secret(&full);
            match value {
                Some(value) => data.insert(key.into(), value.into()),
                None => data.remove(key),
            };
            match AdminConnection::from_secret_data(&data) {
                Err(ExternalDbError::InvalidAdminSecret { key, .. }) => {
                    assert_eq!(key, expected_key)
                }
                other => panic!("{key}={value:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn admin_url_parsing() {
        let admin = AdminConnection::from_url("postgresql://adm:s%40cret@127.0.0.1:5999/postgres?sslmode=disable").unwrap();
        assert_eq!((admin.username.as_str(), admin.password.as_str(), admin.port), ("adm", "s@cret", 5999));
        assert_eq!(admin.ssl_mode, SslMode::Disable);
        assert_eq!(AdminConnection::from_url("postgresql://a:b@h/d").unwrap().ssl_mode, SslMode::Require);
        assert!(AdminConnection::from_url("postgresql://h/d").is_err());
    }
}
