//! Names of a tenant environment's objects on the server, and how they are written into SQL.

use postgres_protocol::escape::{escape_identifier, escape_literal};

use super::ExternalDbError;
use crate::{config::is_dns_label, naming, types::Environment};

/// PostgreSQL's NAMEDATALEN - 1: longer identifiers are silently truncated by the server,
/// which could make two tenants' names collide.
pub const MAX_IDENTIFIER_BYTES: usize = 63;
/// Longest slug the CRD admits (SPEC §2).
pub const MAX_SLUG_LEN: usize = 40;

/// Names of one tenant environment's objects on the external server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalNames {
    database: String,
    owner_role: String,
    login_role: String,
}

impl ExternalNames {
    /// `<slug>_<env>` (with `-` → `_`), `<slug>_<env>_owner` and `<slug>_<env>_app`.
    /// The roles are per environment, not [`naming::sql_user_name`]'s one user per tenant, so
    /// that a dev credential cannot open the prod database.
    /// The slug must be a DNS-1123 label of at most 40 characters, as the CRD enforces; anything
    /// else is refused rather than quoted, since it can only come from a bypassed schema.
    pub fn new(slug: &str, env: Environment) -> Result<Self, ExternalDbError> {
        check_slug(slug)?;
        let database = naming::sql_database_name(slug, env);
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

pub(super) fn check_slug(slug: &str) -> Result<(), ExternalDbError> {
    if is_dns_label(slug) && slug.len() <= MAX_SLUG_LEN {
        Ok(())
    } else {
        Err(ExternalDbError::InvalidName(format!("tenant slug {slug:?} is not a DNS-1123 label of at most {MAX_SLUG_LEN} characters")))
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
/// [`ExternalNames`] has already refused NUL, which no quoting can carry.
pub fn quote_ident(name: &str) -> String {
    escape_identifier(name)
}

/// Quotes a string literal for SQL text; with a backslash inside it becomes an `E'...'`
/// literal, correct whatever `standard_conforming_strings` says. NUL cannot be represented
/// in a PostgreSQL string, so it is refused rather than silently cut off.
pub fn quote_literal(value: &str) -> Result<String, ExternalDbError> {
    if value.contains('\0') {
        return Err(ExternalDbError::InvalidName(format!("literal {value:?} contains a NUL character")));
    }
    Ok(escape_literal(value))
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
            assert_eq!(names.database(), naming::sql_database_name("a", env));
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
            assert_eq!(err.reason().as_str(), "InvalidDatabaseName", "{slug:?}");
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
        // Backslashes mean nothing inside identifiers.
        assert_eq!(quote_ident("a\\b"), "\"a\\b\"");
    }

    #[test]
    fn literals_double_quotes_and_escape_backslashes() {
        assert_eq!(quote_literal("abc").unwrap(), "'abc'");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        // A backslash switches to E'' syntax with the backslash doubled, so the literal means
        // the same under either setting of standard_conforming_strings.
        assert_eq!(quote_literal("a\\'; DROP ROLE x; --").unwrap(), " E'a\\\\''; DROP ROLE x; --'");
        assert!(quote_literal("a\0b").is_err());
        assert!(matches!(quote_literal("\0"), Err(ExternalDbError::InvalidName(_))));
    }
}
