//! Every query the admin session sends, written so that nothing a tenant can define is ever
//! resolved in it (the CVE-2018-1058 pattern).
//!
//! A tenant's login role may create objects in its own database (it holds the owner role's
//! privileges there) and, on servers set up before PostgreSQL 15, in schema `public` of any
//! database PUBLIC may connect to, the admin's own included. A function there named like a
//! built-in, but with a better-fitting argument type (`text` for an untyped literal where the
//! built-in takes `name`), is chosen over `pg_catalog`'s unless the call names its schema.
//! So, besides the `search_path=pg_catalog,pg_temp` pinned in every session's start-up options
//! ([`super::connection`]), each query here names `pg_catalog` for every relation, function,
//! operator (`OPERATOR(pg_catalog.=)`) and type, and gives every parameter its type. The test
//! below holds every query to that; the DDL the provider sends (CREATE, ALTER, GRANT, COMMENT,
//! DROP) calls no function and names no operator.

/// The server's version and whether the admin is a superuser.
pub(super) const SERVER_FACTS: &str = "SELECT pg_catalog.current_setting('server_version_num'::pg_catalog.text)::pg_catalog.int4, \
     (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)";

/// A role's attributes and comment, by name (`$1`).
pub(super) const ROLE: &str = "SELECT r.rolcanlogin, r.rolinherit, \
     NOT (r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls), \
     pg_catalog.shobj_description(r.oid, 'pg_authid'::pg_catalog.name) \
     FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) $1::pg_catalog.name";

/// A database's owner, whether PUBLIC may connect, whether the login role (`$2`) holds an
/// explicit CONNECT, and its comment, by name (`$1`).
pub(super) const DATABASE: &str = "SELECT pg_catalog.pg_get_userbyid(d.datdba)::pg_catalog.text, \
     pg_catalog.has_database_privilege('public'::pg_catalog.name, d.oid, 'CONNECT'::pg_catalog.text) \
     OR pg_catalog.has_database_privilege('public'::pg_catalog.name, d.oid, 'TEMPORARY'::pg_catalog.text), \
     EXISTS (SELECT 1 FROM pg_catalog.aclexplode(d.datacl) AS acl \
             JOIN pg_catalog.pg_roles AS r ON r.oid OPERATOR(pg_catalog.=) acl.grantee \
             WHERE r.rolname OPERATOR(pg_catalog.=) $2::pg_catalog.name \
             AND acl.privilege_type OPERATOR(pg_catalog.=) 'CONNECT'::pg_catalog.text), \
     pg_catalog.shobj_description(d.oid, 'pg_database'::pg_catalog.name) \
     FROM pg_catalog.pg_database AS d WHERE d.datname OPERATOR(pg_catalog.=) $1::pg_catalog.name";

/// Whether role `$1` has the privileges of role `$2`.
pub(super) const HAS_ROLE: &str = "SELECT pg_catalog.pg_has_role($1::pg_catalog.name, $2::pg_catalog.name, 'USAGE'::pg_catalog.text)";

/// Whether the admin has the privileges of role `$1`.
pub(super) const ADMIN_HAS_ROLE: &str = "SELECT pg_catalog.pg_has_role(CURRENT_USER, $1::pg_catalog.name, 'USAGE'::pg_catalog.text)";

/// Name and comment of the databases among `$1`.
pub(super) const DATABASES_NAMED: &str = "SELECT d.datname::pg_catalog.text, \
     pg_catalog.shobj_description(d.oid, 'pg_database'::pg_catalog.name) \
     FROM pg_catalog.pg_database AS d WHERE d.datname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.name[])";

/// Ends the sessions in database `$1` (servers before PostgreSQL 13, whose DROP DATABASE
/// cannot do it).
pub(super) const END_SESSIONS: &str = "SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(a.pid)) \
     FROM pg_catalog.pg_stat_activity AS a WHERE a.datname OPERATOR(pg_catalog.=) $1::pg_catalog.name";

#[cfg(test)]
const ALL: [&str; 7] = [SERVER_FACTS, ROLE, DATABASE, HAS_ROLE, ADMIN_HAS_ROLE, DATABASES_NAMED, END_SESSIONS];

#[cfg(test)]
mod tests {
    use super::ALL;

    /// Words that may stand before `(` without being a function call.
    const KEYWORDS: [&str; 6] = ["EXISTS", "NOT", "ANY", "OPERATOR", "AND", "OR"];

    /// The query with its string literals blanked out (none of them holds a quote).
    fn without_literals(sql: &str) -> String {
        sql.split('\'').enumerate().map(|(i, part)| if i % 2 == 0 { part.to_owned() } else { "''".to_owned() }).collect()
    }

    /// Problems of one query: unqualified functions, relations, operators, types or parameters.
    fn unqualified(sql: &str) -> Vec<String> {
        // The trailing space ends the last word; byte offsets are character offsets in ASCII.
        let code = without_literals(sql) + " ";
        assert!(code.is_ascii(), "{sql}");
        let mut problems = Vec::new();
        let mut word = String::new();
        let mut previous_word = String::new();
        for (i, c) in code.char_indices() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$' {
                word.push(c);
                continue;
            }
            if !word.is_empty() {
                let rest = &code[i..];
                let qualified = word.starts_with("pg_catalog.");
                if rest.trim_start().starts_with('(') && !qualified && !KEYWORDS.contains(&word.as_str()) {
                    problems.push(format!("function {word}"));
                }
                if ["FROM", "JOIN"].contains(&previous_word.as_str()) && !qualified {
                    problems.push(format!("relation {word}"));
                }
                if word.starts_with('$') && !rest.starts_with("::pg_catalog.") {
                    problems.push(format!("untyped parameter {word}"));
                }
                previous_word = std::mem::take(&mut word);
            }
            if c == '(' && previous_word == "FROM" {
                previous_word.clear(); // a subquery
            }
        }
        let operators = code.replace("OPERATOR(pg_catalog.=)", "").replace("::pg_catalog.", "");
        for symbol in ["=", "<", ">", "!", "~", "+", "-", "*", "/", "%", "|", "&", "^", "#", "@", "::"] {
            if operators.contains(symbol) {
                problems.push(format!("operator or cast {symbol:?} not qualified"));
            }
        }
        problems
    }

    #[test]
    fn every_query_names_pg_catalog_for_everything_it_resolves() {
        for sql in ALL {
            assert_eq!(unqualified(sql), Vec::<String>::new(), "{sql}");
        }
    }

    #[test]
    fn the_check_finds_what_a_tenant_could_shadow() {
        let found = unqualified("SELECT has_schema_privilege('public', n.oid, 'CREATE') FROM pg_namespace n WHERE n.nspname = $1");
        assert_eq!(found.len(), 4, "{found:?}");
        let found = unqualified("SELECT x::text FROM pg_catalog.pg_roles WHERE a OPERATOR(pg_catalog.=) $1::pg_catalog.name");
        assert_eq!(found, ["operator or cast \"::\" not qualified"]);
        // Keywords, subqueries and qualified names pass.
        assert!(unqualified("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles) AND NOT (pg_catalog.f($1::pg_catalog.int4))").is_empty());
    }
}
