//! The `external` database provider against a real PostgreSQL server (SPEC §7).
//!
//! `eval "$(.ci/postgres.sh)"` starts one and sets TENANT_OPERATOR_TEST_PG_URL. Without it the
//! tests say they were skipped and pass, unless TENANT_OPERATOR_REQUIRE_PG=1 (CI) makes them
//! fail. Every test uses its own random slugs, so they run in parallel and survive leftovers
//! of an earlier, interrupted run.

use std::io::Write;
use std::time::{Duration, Instant};

use tenant_operator::database::external::{
    check_ready, connection_info, drop_database, ensure_database, is_retained, mark_retained, quote_ident, quote_literal, AdminConnection,
    DropOutcome, EnsureOutcome, ExternalDbError, ExternalNames, SslMode,
};
use tenant_operator::types::Environment;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

fn admin() -> Option<AdminConnection> {
    match std::env::var("TENANT_OPERATOR_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => match AdminConnection::from_url(&url) {
            Ok(admin) => Some(admin),
            Err(err) => panic!("TENANT_OPERATOR_TEST_PG_URL is not usable: {err}"),
        },
        _ if std::env::var("TENANT_OPERATOR_REQUIRE_PG").as_deref() == Ok("1") => {
            panic!("TENANT_OPERATOR_REQUIRE_PG=1 but TENANT_OPERATOR_TEST_PG_URL is not set; run eval \"$(.ci/postgres.sh)\" first")
        }
        _ => {
            // Straight to stderr: libtest captures eprintln! of passing tests, and a skip
            // must not look like a pass.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** external_postgres: skipped: set TENANT_OPERATOR_TEST_PG_URL (see .ci/postgres.sh) ***\n"
                );
            });
            None
        }
    }
}

macro_rules! admin_or_skip {
    () => {
        match admin() {
            Some(admin) => admin,
            None => return,
        }
    };
}

fn slug(tag: &str) -> String {
    format!("{tag}-{:08x}", rand::random::<u32>())
}

fn names(tag: &str) -> ExternalNames {
    ExternalNames::new(&slug(tag), Environment::Dev).unwrap()
}

async fn connect_as(admin: &AdminConnection, user: &str, password: &str, db: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config.host(&admin.host).port(admin.port).user(user).password(password).dbname(db);
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn superuser(admin: &AdminConnection, db: &str) -> Client {
    connect_as(admin, &admin.username, &admin.password, db).await.unwrap()
}

async fn one_bool(client: &Client, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> bool {
    client.query_one(sql, params).await.unwrap().get(0)
}

async fn database_exists(admin: &AdminConnection, name: &str) -> bool {
    let client = superuser(admin, &admin.dbname).await;
    one_bool(&client, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", &[&name]).await
}

async fn role_exists(admin: &AdminConnection, name: &str) -> bool {
    let client = superuser(admin, &admin.dbname).await;
    one_bool(&client, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", &[&name]).await
}

async fn cleanup(admin: &AdminConnection, names: &ExternalNames) {
    if let Err(err) = drop_database(admin, names).await {
        eprintln!("cleanup of {} failed: {err}", names.database());
    }
}

fn password() -> String {
    format!("pw-{:032x}", rand::random::<u128>())
}

#[tokio::test]
async fn creates_database_and_roles_then_changes_nothing() {
    let admin = admin_or_skip!();
    let names = names("create");
    let password = password();

    let first = ensure_database(&admin, &names, &password).await.unwrap();
    assert!(first.created_database && first.created_roles && first.password_set, "{first:?}");
    assert!(!first.adopted_retained && !first.repaired, "{first:?}");

    let client = superuser(&admin, &admin.dbname).await;
    let row = client
        .query_one(
            "SELECT o.rolname, o.rolcanlogin, a.rolcanlogin, a.rolsuper, pg_has_role(a.oid, o.oid, 'USAGE'), \
                    has_database_privilege('public', d.oid, 'CONNECT'), \
                    has_database_privilege(a.oid, d.oid, 'CONNECT') \
             FROM pg_database d JOIN pg_roles o ON o.oid = d.datdba, pg_roles a \
             WHERE d.datname = $1 AND a.rolname = $2",
            &[&names.database(), &names.login_role()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), names.owner_role(), "database owner");
    assert!(!row.get::<_, bool>(1), "owner role must be NOLOGIN");
    assert!(row.get::<_, bool>(2), "login role must be LOGIN");
    assert!(!row.get::<_, bool>(3), "login role must not be superuser");
    assert!(row.get::<_, bool>(4), "login role must have the owner role's privileges");
    assert!(!row.get::<_, bool>(5), "PUBLIC must not have CONNECT");
    assert!(row.get::<_, bool>(6), "login role must have CONNECT");

    let inside = superuser(&admin, names.database()).await;
    assert!(!one_bool(&inside, "SELECT has_schema_privilege('public', 'public', 'CREATE')", &[]).await);

    for _ in 0..2 {
        let again = ensure_database(&admin, &names, &password).await.unwrap();
        assert_eq!(again, EnsureOutcome::default(), "a second run must find everything in place");
    }
    cleanup(&admin, &names).await;
}

#[tokio::test]
async fn login_role_uses_its_database_through_the_connection_info() {
    let admin = admin_or_skip!();
    let names = names("login");
    let password = password();
    ensure_database(&admin, &names, &password).await.unwrap();
    check_ready(&admin, &names, &password).await.unwrap();

    let info = connection_info(&admin, &names);
    assert_eq!((info.dbname.as_str(), info.username.as_str()), (names.database(), names.login_role()));
    assert_eq!((info.host.as_str(), info.port), (admin.host.as_str(), admin.port));
    let (client, connection) = tokio_postgres::connect(&info.uri(&password), NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'hello')").await.unwrap();
    let body: String = client.query_one("SELECT body FROM notes WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(body, "hello");
    drop(client);
    cleanup(&admin, &names).await;
}

#[tokio::test]
async fn login_role_cannot_connect_to_another_tenants_database() {
    let admin = admin_or_skip!();
    let (mine, theirs) = (names("mine"), names("theirs"));
    let (my_password, their_password) = (password(), password());
    ensure_database(&admin, &mine, &my_password).await.unwrap();
    ensure_database(&admin, &theirs, &their_password).await.unwrap();

    let err = connect_as(&admin, mine.login_role(), &my_password, theirs.database())
        .await
        .expect_err("connecting to another tenant's database must fail");
    let db_error = err.as_db_error().expect("the server must refuse, not the network");
    assert_eq!(db_error.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(db_error.message().starts_with("permission denied for database"), "{}", db_error.message());

    // Nor with the other tenant's login name and the wrong password.
    let err = connect_as(&admin, theirs.login_role(), &my_password, theirs.database()).await.err().unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD));
    let err = check_ready(&admin, &theirs, &my_password).await.unwrap_err();
    assert_eq!(err.reason(), "TenantLoginFailed", "{err}");

    cleanup(&admin, &mine).await;
    cleanup(&admin, &theirs).await;
}

#[tokio::test]
async fn password_survives_repeated_ensure_and_drift_is_repaired() {
    let admin = admin_or_skip!();
    let names = names("pass");
    // Quotes, backslashes and semicolons must neither break nor inject anything.
    let password = format!("p'\\\"; ALTER ROLE x SUPERUSER; --{}", rand::random::<u32>());
    ensure_database(&admin, &names, &password).await.unwrap();
    for _ in 0..3 {
        let outcome = ensure_database(&admin, &names, &password).await.unwrap();
        assert!(!outcome.password_set, "a working password must not be rewritten");
        connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    }

    // Someone changes the password, revokes the membership and opens the database to PUBLIC.
    let client = superuser(&admin, &admin.dbname).await;
    let (login, owner, db) = (quote_ident(names.login_role()), quote_ident(names.owner_role()), quote_ident(names.database()));
    client
        .batch_execute(&format!(
            "ALTER ROLE {login} PASSWORD 'changed-by-hand'; REVOKE {owner} FROM {login}; \
             GRANT CONNECT ON DATABASE {db} TO PUBLIC; ALTER ROLE {owner} LOGIN"
        ))
        .await
        .unwrap();
    let outcome = ensure_database(&admin, &names, &password).await.unwrap();
    assert!(outcome.password_set && outcome.repaired && !outcome.created_database, "{outcome:?}");
    connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    assert!(!one_bool(&client, "SELECT has_database_privilege('public', $1, 'CONNECT')", &[&names.database()]).await);
    assert!(one_bool(&client, "SELECT pg_has_role($1, $2, 'USAGE')", &[&names.login_role(), &names.owner_role()]).await);
    assert!(!one_bool(&client, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", &[&names.owner_role()]).await);
    cleanup(&admin, &names).await;
}

#[tokio::test]
async fn retained_database_is_adopted_with_its_data() {
    let admin = admin_or_skip!();
    let names = names("retain");
    let password = password();
    ensure_database(&admin, &names, &password).await.unwrap();
    let app = connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    app.batch_execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (42)").await.unwrap();
    drop(app);

    // The Tenant is deleted with deletionPolicy Retain...
    assert!(mark_retained(&admin, &names).await.unwrap());
    assert!(is_retained(&admin, &names).await.unwrap());
    assert!(database_exists(&admin, names.database()).await);

    // ...and re-created with the same credentials Secret.
    let outcome = ensure_database(&admin, &names, &password).await.unwrap();
    assert!(outcome.adopted_retained && !outcome.created_database && !outcome.created_roles, "{outcome:?}");
    assert!(!is_retained(&admin, &names).await.unwrap());
    let app = connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    let id: i32 = app.query_one("SELECT id FROM orders", &[]).await.unwrap().get(0);
    assert_eq!(id, 42);
    drop(app);

    let gone = names_for_missing();
    assert!(!mark_retained(&admin, &gone).await.unwrap(), "nothing to mark is not an error");
    assert!(!is_retained(&admin, &gone).await.unwrap());
    cleanup(&admin, &names).await;
}

fn names_for_missing() -> ExternalNames {
    names("missing")
}

#[tokio::test]
async fn drop_removes_database_and_roles_despite_open_sessions() {
    let admin = admin_or_skip!();
    let names = names("drop");
    let password = password();
    ensure_database(&admin, &names, &password).await.unwrap();
    let app = connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    app.batch_execute("CREATE TABLE t (id int)").await.unwrap();

    let started = Instant::now();
    let outcome = drop_database(&admin, &names).await.unwrap();
    assert_eq!(outcome, DropOutcome { dropped_database: true, dropped_roles: true });
    assert!(started.elapsed() < Duration::from_secs(10), "an open session must not stall the drop");
    assert!(!database_exists(&admin, names.database()).await);
    assert!(!role_exists(&admin, names.login_role()).await);
    assert!(!role_exists(&admin, names.owner_role()).await);
    assert!(app.simple_query("SELECT 1").await.is_err(), "the open session must have been ended");

    assert_eq!(drop_database(&admin, &names).await.unwrap(), DropOutcome::default(), "dropping twice is fine");
}

#[tokio::test]
async fn closed_port_is_server_unreachable_quickly() {
    let admin = admin_or_skip!();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dead = AdminConnection { host: "127.0.0.1".into(), port, ..admin };

    let started = Instant::now();
    let err = ensure_database(&dead, &names("down"), "pw").await.unwrap_err();
    assert_eq!(err.reason(), "ServerUnreachable", "{err}");
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    for result in [
        mark_retained(&dead, &names("down")).await.map(|_| ()),
        drop_database(&dead, &names("down")).await.map(|_| ()),
        check_ready(&dead, &names("down"), "pw").await,
    ] {
        assert_eq!(result.unwrap_err().reason(), "ServerUnreachable");
    }
}

#[tokio::test]
async fn silent_server_times_out_as_unreachable() {
    let admin = admin_or_skip!();
    // Accepts TCP connections and never says a word, like a hung proxy.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let silent = AdminConnection { host: "127.0.0.1".into(), port, connect_timeout: Duration::from_secs(1), ..admin };

    let started = Instant::now();
    let err = ensure_database(&silent, &names("silent"), "pw").await.unwrap_err();
    assert_eq!(err.reason(), "ServerUnreachable", "{err}");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    holder.abort();
}

#[tokio::test]
async fn wrong_admin_password_is_an_authentication_failure() {
    let admin = admin_or_skip!();
    let wrong = AdminConnection { password: "not-the-password".into(), ..admin };
    let err = ensure_database(&wrong, &names("auth"), "pw").await.unwrap_err();
    assert_eq!(err.reason(), "AdminAuthenticationFailed", "{err}");
    assert!(!err.to_string().contains("not-the-password"));
}

#[tokio::test]
async fn tls_that_cannot_be_verified_fails_clearly() {
    let admin = admin_or_skip!();
    // The test server either speaks no TLS or has a certificate no system root vouches for.
    let tls = AdminConnection { ssl_mode: SslMode::Require, root_cert_pem: None, ..admin };
    let err = ensure_database(&tls, &names("tls"), "pw").await.unwrap_err();
    assert_eq!(err.reason(), "TlsHandshakeFailed", "{err}");
}

#[tokio::test]
async fn tls_with_a_trusted_ca_works_end_to_end() {
    let admin = admin_or_skip!();
    let Ok(ca) = std::env::var("TENANT_OPERATOR_TEST_PG_CA") else {
        let _ = writeln!(std::io::stderr(), "*** TLS test skipped: TENANT_OPERATOR_TEST_PG_CA not set ***");
        return;
    };
    let pem = std::fs::read_to_string(&ca).unwrap();
    let tls = AdminConnection { ssl_mode: SslMode::Require, root_cert_pem: Some(pem), ..admin };
    let names = names("tls-ok");
    let password = password();
    ensure_database(&tls, &names, &password).await.unwrap();
    check_ready(&tls, &names, &password).await.unwrap();
    // tokio-postgres with sslmode=require refuses to continue without TLS, so success above
    // means the sessions were encrypted and the certificate verified against the CA.
    drop_database(&tls, &names).await.unwrap();

    let wrong_ca = AdminConnection { root_cert_pem: Some("not a certificate".into()), ..tls };
    let err = check_ready(&wrong_ca, &names, &password).await.unwrap_err();
    assert_eq!(err.reason(), "TlsHandshakeFailed", "{err}");
}

/// Creates a LOGIN role with the given attributes, returning an admin connection for it.
async fn extra_admin(admin: &AdminConnection, tag: &str, attributes: &str) -> AdminConnection {
    let name = slug(tag).replace('-', "_");
    let password = password();
    let client = superuser(admin, &admin.dbname).await;
    client
        .batch_execute(&format!("CREATE ROLE {} LOGIN {attributes} PASSWORD {}", quote_ident(&name), quote_literal(&password).unwrap()))
        .await
        .unwrap();
    AdminConnection { username: name, password, ..admin.clone() }
}

async fn drop_extra_admin(admin: &AdminConnection, extra: &AdminConnection) {
    let client = superuser(admin, &admin.dbname).await;
    let role = quote_ident(&extra.username);
    client.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}")).await.unwrap();
}

#[tokio::test]
async fn admin_without_privileges_gets_insufficient_privilege() {
    let admin = admin_or_skip!();
    let weak = extra_admin(&admin, "weak", "").await;
    let names = names("weak");
    let err = ensure_database(&weak, &names, "pw").await.unwrap_err();
    assert_eq!(err.reason(), "InsufficientPrivilege", "{err}");
    assert!(!role_exists(&admin, names.owner_role()).await);
    drop_extra_admin(&admin, &weak).await;
}

#[tokio::test]
async fn managed_service_style_admin_without_superuser_works() {
    let admin = admin_or_skip!();
    let managed = extra_admin(&admin, "managed", "CREATEDB CREATEROLE").await;
    let names = names("managed");
    let password = password();
    let outcome = ensure_database(&managed, &names, &password).await.unwrap();
    assert!(outcome.created_database && outcome.created_roles, "{outcome:?}");
    assert_eq!(ensure_database(&managed, &names, &password).await.unwrap(), EnsureOutcome::default());
    let app = connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    app.batch_execute("CREATE TABLE t (id int)").await.unwrap();
    drop(app);
    assert!(mark_retained(&managed, &names).await.unwrap());
    assert!(ensure_database(&managed, &names, &password).await.unwrap().adopted_retained);
    let dropped = drop_database(&managed, &names).await.unwrap();
    assert_eq!(dropped, DropOutcome { dropped_database: true, dropped_roles: true });
    assert!(!database_exists(&admin, names.database()).await);
    drop_extra_admin(&admin, &managed).await;
}

#[tokio::test]
async fn hostile_names_are_refused_or_quoted_without_injection() {
    let admin = admin_or_skip!();
    for slug in ["a\"; DROP DATABASE postgres; --", "x'; DROP ROLE admin; --", "Robert'); --", "a b"] {
        let err = ExternalNames::new(slug, Environment::Prod).unwrap_err();
        assert_eq!(err.reason(), "InvalidDatabaseName", "{slug}");
    }

    // Names passed straight in must create exactly those objects and touch nothing else.
    let tag = format!("{:08x}", rand::random::<u32>());
    let canary = format!("canary_{tag}");
    let client = superuser(&admin, &admin.dbname).await;
    // CREATE/DROP DATABASE refuse to run inside the implicit transaction of a multi-statement
    // query, hence one statement per call.
    for sql in ["CREATE ROLE", "CREATE DATABASE"] {
        client.batch_execute(&format!("{sql} {}", quote_ident(&canary))).await.unwrap();
    }
    let names = ExternalNames::custom(
        &format!("db{tag}\"; DROP DATABASE {canary}; --"),
        &format!("own{tag}'); DROP ROLE {canary}; --"),
        &format!("app{tag}\" SUPERUSER; --\\"),
    )
    .unwrap();
    let password = format!("'); DROP ROLE {canary}; --\\'");

    let outcome = ensure_database(&admin, &names, &password).await.unwrap();
    assert!(outcome.created_database && outcome.created_roles);
    assert!(database_exists(&admin, names.database()).await, "the database has exactly the given name");
    assert!(role_exists(&admin, names.owner_role()).await && role_exists(&admin, names.login_role()).await);
    assert!(database_exists(&admin, &canary).await && role_exists(&admin, &canary).await, "canary survives");
    assert!(!one_bool(&client, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&names.login_role()]).await);
    let app = connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    app.batch_execute("CREATE TABLE t (id int)").await.unwrap();
    drop(app);
    assert!(mark_retained(&admin, &names).await.unwrap());
    assert!(is_retained(&admin, &names).await.unwrap());
    drop_database(&admin, &names).await.unwrap();
    assert!(!database_exists(&admin, names.database()).await);
    assert!(database_exists(&admin, &canary).await && role_exists(&admin, &canary).await, "canary survives");
    for sql in ["DROP DATABASE", "DROP ROLE"] {
        client.batch_execute(&format!("{sql} {}", quote_ident(&canary))).await.unwrap();
    }
}

#[tokio::test]
async fn quoting_round_trips_through_the_server() {
    let admin = admin_or_skip!();
    let client = superuser(&admin, &admin.dbname).await;
    for text in ["plain", "it's", "back\\slash", "\\'", "\"double\"", "semi; colon --", "ünï", "''''", "$$x$$"] {
        let sql = format!("SELECT {} AS {}", quote_literal(text).unwrap(), quote_ident(text));
        let messages = client.simple_query(&sql).await.unwrap();
        let row = messages
            .iter()
            .find_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .unwrap();
        assert_eq!(row.get(0), Some(text), "literal {text:?}");
        assert_eq!(row.columns()[0].name(), text, "identifier {text:?}");
    }
}

#[tokio::test]
async fn admin_secret_errors_name_the_key() {
    // Needs no server, but lives here so the provider's whole contract is in one place.
    let base = [("host", "127.0.0.1"), ("port", "5432"), ("username", "admin"), ("password", "x")];
    for (key, value) in [("host", None), ("port", Some("99999")), ("username", Some("")), ("sslmode", Some("allow"))] {
        let mut data: std::collections::BTreeMap<String, String> = base.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match value {
            Some(value) => data.insert(key.to_string(), value.to_string()),
            None => data.remove(key),
        };
        let err = AdminConnection::from_secret_data(&data).unwrap_err();
        assert_eq!(err.reason(), "InvalidAdminSecret");
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
    }
    let err = ensure_database(
        &AdminConnection::from_url("postgresql://a:b@127.0.0.1:1/postgres?sslmode=disable").unwrap(),
        &ExternalNames::new("fine", Environment::Dev).unwrap(),
        "",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ExternalDbError::InvalidPassword(_)), "{err}");
}
