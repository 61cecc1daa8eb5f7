//! The `external` database provider (SPEC §4): one database per tenant and environment on an
//! existing PostgreSQL server, owned by a NOLOGIN owner role, reached through a LOGIN role that
//! is a member of the owner role and may connect to no other tenant's database.
//!
//! Pure I/O against PostgreSQL, knowing nothing of Kubernetes: the caller supplies the admin
//! connection (parsed from the data of the Secret the operator configuration names), the
//! Tenant's [`Stamp`] (slug and UID) and the tenant's password (generated once, kept in the
//! tenant's credentials Secret).
//!
//! Ownership (SPEC §8 rule 5): every database and role created here carries a stamp comment
//! naming the Tenant ([`stamps`]); only stamped objects of the calling Tenant are changed,
//! marked or dropped.
//!
//! Statements that cannot take bind parameters are built from [`quote_ident`] and
//! [`quote_literal`]; tenant passwords never appear in SQL at all (only their SCRAM verifier
//! does), so they cannot leak into server logs either.
//!
//! | file | concern |
//! |---|---|
//! | `connection.rs` | admin connection from Secret data or URL, TLS, connecting with time limits, tenant login |
//! | `error.rs` | [`ExternalDbError`] and the classification of the server's errors |
//! | `names.rs` | object names and SQL quoting |
//! | `stamps.rs` | the ownership stamp and what may be done with what is found |
//! | `queries.rs` | every query the admin sends, each naming `pg_catalog` for all it resolves |
//! | `session.rs` | admin session and catalogue lookups |
//! | `roles.rs`, `databases.rs` | creating, repairing and dropping each kind of object |
//! | `lifecycle.rs` | the public operations |
//! | `rotation.rs` | rotating the login role's password on demand |

mod connection;
mod databases;
mod error;
mod lifecycle;
mod names;
mod queries;
mod roles;
mod rotation;
mod session;
pub mod stamps;

use std::fmt;

pub use connection::{AdminConnection, SslMode, DEFAULT_CONNECT_TIMEOUT, OPERATION_TIMEOUT};
pub use error::ExternalDbError;
pub use lifecycle::{check_ready, drop_database, ensure_database, is_retained, mark_retained, stamped_databases};
pub use names::{quote_ident, quote_literal, ExternalNames, MAX_IDENTIFIER_BYTES, MAX_SLUG_LEN};
pub use rotation::rotate_password;
pub use stamps::{Stamp, LEGACY_RETAINED_MARK};

/// What [`ensure_database`] found and did, for Kubernetes Events and the Tenant's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnsureOutcome {
    pub created_database: bool,
    /// At least one of the two roles was created.
    pub created_roles: bool,
    /// Objects retained by an earlier Tenant with this slug (or by the operator version
    /// without stamps) were adopted and stamped with this Tenant's UID.
    pub adopted_retained: bool,
    /// The UID of the Tenant that retained them, when they carried a stamp (SPEC §8 rule 3
    /// asks for it to be recorded).
    pub previous_tenant_uid: Option<String>,
    /// Unstamped objects (made by the operator version without stamps) were adopted after the
    /// login role accepted the tenant's password.
    pub adopted_unstamped: bool,
    /// The login role's password did not work and was set again.
    pub password_set: bool,
    /// Something had drifted (role attributes, membership, ownership, privileges) and was
    /// put back.
    pub repaired: bool,
}

/// What [`mark_retained`] marked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetainOutcome {
    /// The database was this Tenant's and now carries its retained stamp (false when it
    /// already did, or is absent).
    pub marked_database: bool,
    pub marked_roles: bool,
    /// Objects with the tenant's names that are not this Tenant's; untouched.
    pub left_alone: Vec<LeftAlone>,
}

/// What [`drop_database`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropOutcome {
    pub dropped_database: bool,
    pub dropped_roles: bool,
    /// Objects kept: not this Tenant's, retained, or the roles of a database kept.
    pub left_alone: Vec<LeftAlone>,
}

/// An object an operation found under the tenant's names and did not touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftAlone {
    /// For example "database `acme_dev`".
    pub object: String,
    pub reason: String,
}

impl fmt::Display for LeftAlone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} was left alone: {}", self.object, self.reason)
    }
}

/// Connection details for the tenant's login role: same server as the admin connection.
pub fn connection_info(admin: &AdminConnection, names: &ExternalNames) -> crate::database::ConnectionInfo {
    use crate::database::ConnectionInfo;
    ConnectionInfo {
        host: admin.host.clone(),
        port: admin.port,
        dbname: names.database().to_owned(),
        username: names.login_role().to_owned(),
        require_tls: admin.ssl_mode == SslMode::Require,
    }
}
