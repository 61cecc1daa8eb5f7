//! Errors of the external provider and how PostgreSQL's answers map onto them.

use crate::types::Reason;
use tokio_postgres::error::SqlState;

use super::AdminConnection;

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

    /// A database or role with the tenant's name exists and is not this Tenant's (SPEC §8
    /// rule 5); nothing about it was changed.
    #[error("{object} cannot be claimed by this Tenant: {found}; it was left untouched. {remedy}")]
    DatabaseConflict { object: String, found: String, remedy: String },

    /// A database or role of the tenant's names was retained by an earlier Tenant of the same
    /// slug (another UID, possibly another customer) that this Tenant does not consent to
    /// adopt from; nothing about it was changed.
    #[error(
        "{object} was retained by an earlier Tenant of this name with UID {previous_uid}; it was left untouched. Set \
         `spec.adoptRetainedFrom: {previous_uid}` to take it over with its data, or drop it by hand"
    )]
    RetainedByEarlierTenant { object: String, previous_uid: String },
}

impl ExternalDbError {
    /// CamelCase reason for the `DatabaseReady` condition and Events.
    pub fn reason(&self) -> Reason {
        match self {
            Self::InvalidAdminSecret { .. } => Reason::InvalidAdminSecret,
            Self::InvalidName(_) => Reason::InvalidDatabaseName,
            Self::InvalidPassword(_) => Reason::InvalidDatabasePassword,
            Self::ServerUnreachable { .. } => Reason::ServerUnreachable,
            Self::Tls { .. } => Reason::TlsHandshakeFailed,
            Self::AdminAuthenticationFailed { .. } => Reason::AdminAuthenticationFailed,
            Self::TenantLoginFailed { .. } => Reason::TenantLoginFailed,
            Self::InsufficientPrivilege { .. } => Reason::InsufficientPrivilege,
            Self::Database { .. } => Reason::DatabaseError,
            Self::DatabaseConflict { .. } => Reason::DatabaseConflict,
            Self::RetainedByEarlierTenant { .. } => Reason::RetainedDataFromAnotherTenant,
        }
    }

    /// Whether retrying without any change elsewhere may succeed; configuration errors
    /// (bad secret, credentials, privileges) and conflicts need a person first.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::ServerUnreachable { .. } | Self::Database { .. } | Self::TenantLoginFailed { .. })
    }
}

/// Whose session an error comes from: a refused tenant login is the tenant's problem, not a
/// misconfigured admin connection.
#[derive(Clone, Copy)]
pub(super) enum Who<'a> {
    Admin,
    Tenant { role: &'a str, database: &'a str },
}

pub(super) fn classify(admin: &AdminConnection, who: Who<'_>, err: tokio_postgres::Error, operation: &'static str) -> ExternalDbError {
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
