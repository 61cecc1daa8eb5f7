//! The `external` database provider against a real PostgreSQL server (SPEC §7).
//!
//! `eval "$(.ci/postgres.sh)"` starts one and sets TENANT_OPERATOR_TEST_PG_URL. Without it the
//! tests say they were skipped and pass, unless TENANT_OPERATOR_REQUIRE_PG=1 (CI) makes them
//! fail. Every test uses its own random slugs, so they run in parallel and survive leftovers
//! of an earlier, interrupted run.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::hostile_db::{self, Trap};

use tenant_operator::database::external::stamps::{Mark, StampRecord};
use tenant_operator::database::external::{
    check_ready, connection_info, drop_database, ensure_database, is_retained, mark_retained, quote_ident, quote_literal,
    stamped_databases, AdminConnection, DropOutcome, EnsureOutcome, ExternalDbError, ExternalNames, SslMode, Stamp, LEGACY_RETAINED_MARK,
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

fn uid() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A Tenant with a fresh slug and UID, and the names of its dev environment's objects.
struct Tenant {
    slug: String,
    stamp: Stamp,
    names: ExternalNames,
}

impl Tenant {
    fn new(tag: &str) -> Self {
        let slug = slug(tag);
        Self::with_slug(&slug)
    }

    fn with_slug(slug: &str) -> Self {
        Tenant {
            slug: slug.to_owned(),
            stamp: Stamp::new(slug, &uid()).unwrap(),
            names: ExternalNames::new(slug, Environment::Dev).unwrap(),
        }
    }

    fn names(&self, env: Environment) -> ExternalNames {
        ExternalNames::new(&self.slug, env).unwrap()
    }

    /// The same slug re-created: a new Tenant object with a new UID.
    fn recreated(&self) -> Self {
        Self::with_slug(&self.slug)
    }

    /// The same slug re-created, consenting to adopt what this Tenant left
    /// (`spec.adoptRetainedFrom`).
    fn recreated_adopting(&self) -> Self {
        let next = self.recreated();
        Tenant { stamp: next.stamp.adopting(Some(self.stamp.tenant_uid())), ..next }
    }
}

fn names(tag: &str) -> ExternalNames {
    Tenant::new(tag).names
}

fn any_stamp() -> Stamp {
    Stamp::new("any", &uid()).unwrap()
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

/// Drops whatever a test left, stamped or not; only the test's own random names are touched.
async fn cleanup(admin: &AdminConnection, names: &ExternalNames) {
    let client = superuser(admin, &admin.dbname).await;
    let database = quote_ident(names.database());
    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")).await;
    for role in [names.login_role(), names.owner_role()] {
        let role = quote_ident(role);
        let _ = client.batch_execute(&format!("DROP OWNED BY {role}")).await;
        let _ = client.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).await;
    }
}

fn password() -> String {
    format!("pw-{:032x}", rand::random::<u128>())
}

async fn database_comment(admin: &AdminConnection, name: &str) -> Option<String> {
    let client = superuser(admin, &admin.dbname).await;
    let row = client.query_one("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", &[&name]).await.unwrap();
    row.get(0)
}

async fn role_comment(admin: &AdminConnection, name: &str) -> Option<String> {
    let client = superuser(admin, &admin.dbname).await;
    let row = client.query_one("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", &[&name]).await.unwrap();
    row.get(0)
}

/// The stamps on the database and both roles, in that order.
async fn marks(admin: &AdminConnection, names: &ExternalNames) -> [Mark; 3] {
    [
        Mark::read(database_comment(admin, names.database()).await.as_deref()),
        Mark::read(role_comment(admin, names.owner_role()).await.as_deref()),
        Mark::read(role_comment(admin, names.login_role()).await.as_deref()),
    ]
}

/// What the operator version without stamps left behind: the same objects, no comments.
async fn remove_stamps(admin: &AdminConnection, names: &ExternalNames) {
    let client = superuser(admin, &admin.dbname).await;
    client
        .batch_execute(&format!(
            "COMMENT ON DATABASE {} IS NULL; COMMENT ON ROLE {} IS NULL; COMMENT ON ROLE {} IS NULL",
            quote_ident(names.database()),
            quote_ident(names.owner_role()),
            quote_ident(names.login_role())
        ))
        .await
        .unwrap();
}

fn is_conflict(result: Result<EnsureOutcome, ExternalDbError>) -> String {
    match result {
        Err(err @ ExternalDbError::DatabaseConflict { .. }) => {
            assert_eq!(err.reason().as_str(), "DatabaseConflict");
            assert!(!err.is_transient());
            err.to_string()
        }
        other => panic!("expected DatabaseConflict, got {other:?}"),
    }
}

/// A Tenant whose dev database exists, with `sql` run in it by the tenant's application,
/// whose session is returned still open.
async fn provisioned(admin: &AdminConnection, tag: &str, sql: &str) -> (Tenant, String, Client) {
    let tenant = Tenant::new(tag);
    let password = password();
    ensure_database(admin, &tenant.names, &tenant.stamp, &password).await.unwrap();
    let app = connect_as(admin, tenant.names.login_role(), &password, tenant.names.database()).await.unwrap();
    app.batch_execute(sql).await.unwrap();
    (tenant, password, app)
}

#[tokio::test]
async fn creates_stamped_database_and_roles_then_changes_nothing() {
    let admin = admin_or_skip!();
    let Tenant { stamp, names, .. } = Tenant::new("create");
    let password = password();

    let first = ensure_database(&admin, &names, &stamp, &password).await.unwrap();
    assert!(first.created_database && first.created_roles && first.password_set, "{first:?}");
    assert!(!first.adopted_retained && !first.adopted_unstamped && !first.repaired, "{first:?}");
    assert_eq!(marks(&admin, &names).await, [0, 1, 2].map(|_| Mark::Stamped(stamp.record())), "everything created is stamped");

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
        let again = ensure_database(&admin, &names, &stamp, &password).await.unwrap();
        assert_eq!(again, EnsureOutcome::default(), "a second run must find everything in place");
    }
    cleanup(&admin, &names).await;
}

#[tokio::test]
async fn login_role_uses_its_database_through_the_connection_info() {
    let admin = admin_or_skip!();
    let Tenant { stamp, names, .. } = Tenant::new("login");
    let password = password();
    ensure_database(&admin, &names, &stamp, &password).await.unwrap();
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
    let (mine, theirs) = (Tenant::new("mine"), Tenant::new("theirs"));
    let (my_password, their_password) = (password(), password());
    ensure_database(&admin, &mine.names, &mine.stamp, &my_password).await.unwrap();
    ensure_database(&admin, &theirs.names, &theirs.stamp, &their_password).await.unwrap();

    let err = connect_as(&admin, mine.names.login_role(), &my_password, theirs.names.database())
        .await
        .expect_err("connecting to another tenant's database must fail");
    let db_error = err.as_db_error().expect("the server must refuse, not the network");
    assert_eq!(db_error.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(db_error.message().starts_with("permission denied for database"), "{}", db_error.message());

    // Nor with the other tenant's login name and the wrong password.
    let err = connect_as(&admin, theirs.names.login_role(), &my_password, theirs.names.database()).await.err().unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD));
    let err = check_ready(&admin, &theirs.names, &my_password).await.unwrap_err();
    assert_eq!(err.reason().as_str(), "TenantLoginFailed", "{err}");

    cleanup(&admin, &mine.names).await;
    cleanup(&admin, &theirs.names).await;
}

#[tokio::test]
async fn password_survives_repeated_ensure_and_drift_is_repaired() {
    let admin = admin_or_skip!();
    let Tenant { stamp, names, .. } = Tenant::new("pass");
    // Quotes, backslashes and semicolons must neither break nor inject anything.
    let password = format!("p'\\\"; ALTER ROLE x SUPERUSER; --{}", rand::random::<u32>());
    ensure_database(&admin, &names, &stamp, &password).await.unwrap();
    for _ in 0..3 {
        let outcome = ensure_database(&admin, &names, &stamp, &password).await.unwrap();
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
    let outcome = ensure_database(&admin, &names, &stamp, &password).await.unwrap();
    assert!(outcome.password_set && outcome.repaired && !outcome.created_database, "{outcome:?}");
    connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    assert!(!one_bool(&client, "SELECT has_database_privilege('public', $1, 'CONNECT')", &[&names.database()]).await);
    assert!(one_bool(&client, "SELECT pg_has_role($1, $2, 'USAGE')", &[&names.login_role(), &names.owner_role()]).await);
    assert!(!one_bool(&client, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", &[&names.owner_role()]).await);
    cleanup(&admin, &names).await;
}

#[tokio::test]
async fn retained_database_is_adopted_by_the_recreated_tenant_which_records_the_previous_uid() {
    let admin = admin_or_skip!();
    let (first, password, app) = provisioned(&admin, "retain", "CREATE TABLE orders (id int); INSERT INTO orders VALUES (42)").await;
    drop(app);
    let names = &first.names;

    // The Tenant is deleted with deletionPolicy Retain...
    let marked = mark_retained(&admin, names, &first.stamp).await.unwrap();
    assert!(marked.marked_database && marked.marked_roles && marked.left_alone.is_empty(), "{marked:?}");
    assert!(is_retained(&admin, names).await.unwrap());
    for mark in marks(&admin, names).await {
        assert!(mark.is_by(&first.stamp) && mark.is_retained(), "{mark:?}");
    }
    let again = mark_retained(&admin, names, &first.stamp).await.unwrap();
    assert!(!again.marked_database && !again.marked_roles && again.left_alone.is_empty(), "marking twice writes nothing: {again:?}");
    assert!(database_exists(&admin, names.database()).await);

    // ...not even a Delete of the same Tenant drops retained data...
    let kept = drop_database(&admin, names, &first.stamp).await.unwrap();
    assert!(!kept.dropped_database && !kept.dropped_roles && kept.left_alone.len() == 3, "{kept:?}");
    assert!(database_exists(&admin, names.database()).await);

    // ...a Tenant re-created with the same slug (a new UID, maybe another customer) does not
    // take it without consent, and changes nothing...
    let stranger = first.recreated();
    match ensure_database(&admin, names, &stranger.stamp, &password).await {
        Err(err @ ExternalDbError::RetainedByEarlierTenant { .. }) => {
            assert_eq!(err.reason().as_str(), "RetainedDataFromAnotherTenant");
            let message = err.to_string();
            assert!(message.contains(&format!("spec.adoptRetainedFrom: {}", first.stamp.tenant_uid())), "{message}");
        }
        other => panic!("an earlier Tenant's retained database needs consent: {other:?}"),
    }
    for mark in marks(&admin, names).await {
        assert!(mark.is_by(&first.stamp) && mark.is_retained(), "untouched without consent: {mark:?}");
    }

    // ...and with consent (and the credentials) adopts it.
    let second = first.recreated_adopting();
    let outcome = ensure_database(&admin, names, &second.stamp, &password).await.unwrap();
    assert!(outcome.adopted_retained && !outcome.created_database && !outcome.created_roles, "{outcome:?}");
    assert_eq!(outcome.previous_tenant_uid.as_deref(), Some(first.stamp.tenant_uid()));
    assert!(!outcome.adopted_unstamped, "stamped objects need no proof");
    assert!(!is_retained(&admin, names).await.unwrap());
    assert_eq!(marks(&admin, names).await, [0, 1, 2].map(|_| Mark::Stamped(second.stamp.record())), "re-stamped with the new UID");
    let app = connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    let id: i32 = app.query_one("SELECT id FROM orders", &[]).await.unwrap().get(0);
    assert_eq!(id, 42);
    drop(app);
    assert_eq!(ensure_database(&admin, names, &second.stamp, &password).await.unwrap(), EnsureOutcome::default());

    // The first Tenant's UID no longer owns anything here.
    let stale = drop_database(&admin, names, &first.stamp).await.unwrap();
    assert!(!stale.dropped_database && database_exists(&admin, names.database()).await, "{stale:?}");

    let gone = Tenant::new("missing");
    assert_eq!(mark_retained(&admin, &gone.names, &gone.stamp).await.unwrap(), Default::default(), "nothing to mark is not an error");
    assert!(!is_retained(&admin, &gone.names).await.unwrap());
    cleanup(&admin, names).await;
}

#[tokio::test]
async fn drop_removes_database_and_roles_despite_open_sessions() {
    let admin = admin_or_skip!();
    let (Tenant { stamp, names, .. }, _, app) = provisioned(&admin, "drop", "CREATE TABLE t (id int)").await;

    let started = Instant::now();
    let outcome = drop_database(&admin, &names, &stamp).await.unwrap();
    assert_eq!(outcome, DropOutcome { dropped_database: true, dropped_roles: true, left_alone: Vec::new() });
    assert!(started.elapsed() < Duration::from_secs(10), "an open session must not stall the drop");
    assert!(!database_exists(&admin, names.database()).await);
    assert!(!role_exists(&admin, names.login_role()).await);
    assert!(!role_exists(&admin, names.owner_role()).await);
    assert!(app.simple_query("SELECT 1").await.is_err(), "the open session must have been ended");

    assert_eq!(drop_database(&admin, &names, &stamp).await.unwrap(), DropOutcome::default(), "dropping twice is fine");
}

/// Someone else's database and login-named role, with a table, a comment and a password.
struct Foreign {
    owner: String,
    password: String,
}

async fn create_foreign(admin: &AdminConnection, names: &ExternalNames, with_database: bool) -> Foreign {
    let foreign = Foreign { owner: slug("bob").replace('-', "_"), password: password() };
    let client = superuser(admin, &admin.dbname).await;
    let (owner, login) = (quote_ident(&foreign.owner), quote_ident(names.login_role()));
    let password = quote_literal(&foreign.password).unwrap();
    client.batch_execute(&format!("CREATE ROLE {owner} LOGIN PASSWORD {password}")).await.unwrap();
    client.batch_execute(&format!("CREATE ROLE {login} LOGIN PASSWORD {password}; COMMENT ON ROLE {login} IS 'bob''s app'")).await.unwrap();
    if with_database {
        let database = quote_ident(names.database());
        // From template0 like every database here: one test holds a session in template1.
        client.batch_execute(&format!("CREATE DATABASE {database} OWNER {owner} TEMPLATE template0")).await.unwrap();
        client.batch_execute(&format!("COMMENT ON DATABASE {database} IS 'bob''s data'")).await.unwrap();
        let inside = connect_as(admin, &foreign.owner, &foreign.password, names.database()).await.unwrap();
        inside.batch_execute("CREATE TABLE ledger (id int); INSERT INTO ledger VALUES (7)").await.unwrap();
    }
    foreign
}

/// Everything [`create_foreign`] made is exactly as it was.
async fn assert_foreign_untouched(admin: &AdminConnection, names: &ExternalNames, foreign: &Foreign, with_database: bool) {
    assert_eq!(role_comment(admin, names.login_role()).await.as_deref(), Some("bob's app"));
    connect_as(admin, names.login_role(), &foreign.password, &admin.dbname).await.expect("the foreign role's password is unchanged");
    let client = superuser(admin, &admin.dbname).await;
    let attributes = "SELECT rolcanlogin AND NOT rolsuper AND rolinherit FROM pg_roles WHERE rolname = $1";
    assert!(one_bool(&client, attributes, &[&names.login_role()]).await, "attributes unchanged");
    let member = "SELECT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1)";
    assert!(!one_bool(&client, member, &[&names.login_role()]).await, "no membership granted");
    assert!(!role_exists(admin, names.owner_role()).await, "no owner role created next to a foreign object");
    if with_database {
        let owner: String = client
            .query_one("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", &[&names.database()])
            .await
            .unwrap()
            .get(0);
        assert_eq!(owner, foreign.owner);
        assert_eq!(database_comment(admin, names.database()).await.as_deref(), Some("bob's data"));
        assert!(one_bool(&client, "SELECT has_database_privilege('public', $1, 'CONNECT')", &[&names.database()]).await);
        let inside = connect_as(admin, &foreign.owner, &foreign.password, names.database()).await.unwrap();
        let id: i32 = inside.query_one("SELECT id FROM ledger", &[]).await.unwrap().get(0);
        assert_eq!(id, 7);
    } else {
        assert!(!database_exists(admin, names.database()).await, "no database created next to a foreign role");
    }
}

async fn drop_foreign(admin: &AdminConnection, names: &ExternalNames, foreign: &Foreign) {
    cleanup(admin, names).await;
    let client = superuser(admin, &admin.dbname).await;
    client.batch_execute(&format!("DROP ROLE {}", quote_ident(&foreign.owner))).await.unwrap();
}

#[tokio::test]
async fn foreign_unstamped_database_is_left_untouched_by_ensure_mark_and_drop() {
    let admin = admin_or_skip!();
    let Tenant { stamp, names, .. } = Tenant::new("foreign");
    let foreign = create_foreign(&admin, &names, true).await;

    let message = is_conflict(ensure_database(&admin, &names, &stamp, &password()).await);
    assert!(message.contains(&format!("database `{}`", names.database())) && message.contains("bob's data"), "{message}");
    assert!(message.contains("COMMENT ON"), "the message says what to do: {message}");
    // The foreign role's own password proves nothing either: the database is not the owner role's.
    is_conflict(ensure_database(&admin, &names, &stamp, &foreign.password).await);

    let retained = mark_retained(&admin, &names, &stamp).await.unwrap();
    assert!(!retained.marked_database && !retained.marked_roles, "{retained:?}");
    let left: Vec<&str> = retained.left_alone.iter().map(|left| left.object.as_str()).collect();
    assert_eq!(left, [format!("database `{}`", names.database()), format!("role `{}`", names.login_role())]);
    assert!(!is_retained(&admin, &names).await.unwrap());

    let dropped = drop_database(&admin, &names, &stamp).await.unwrap();
    assert!(!dropped.dropped_database && !dropped.dropped_roles && dropped.left_alone.len() == 2, "{dropped:?}");
    assert!(stamped_databases(&admin, &stamp).await.unwrap().is_empty());

    assert_foreign_untouched(&admin, &names, &foreign, true).await;
    drop_foreign(&admin, &names, &foreign).await;
}

#[tokio::test]
async fn foreign_role_alone_is_a_conflict_and_left_untouched() {
    let admin = admin_or_skip!();
    let Tenant { stamp, names, .. } = Tenant::new("lonely");
    let foreign = create_foreign(&admin, &names, false).await;

    let message = is_conflict(ensure_database(&admin, &names, &stamp, &password()).await);
    assert!(message.contains(&format!("role `{}`", names.login_role())), "{message}");
    let dropped = drop_database(&admin, &names, &stamp).await.unwrap();
    assert!(!dropped.dropped_roles && dropped.left_alone.len() == 1, "{dropped:?}");
    let retained = mark_retained(&admin, &names, &stamp).await.unwrap();
    assert!(!retained.marked_roles && retained.left_alone.len() == 1, "{retained:?}");

    assert_foreign_untouched(&admin, &names, &foreign, false).await;
    drop_foreign(&admin, &names, &foreign).await;
}

#[tokio::test]
async fn another_tenant_uids_objects_are_a_conflict_and_left_untouched() {
    let admin = admin_or_skip!();
    // The same slug on another cluster sharing this server, or a Tenant whose finalizer was
    // removed by hand.
    let owner = Tenant::new("twin");
    let twin = owner.recreated();
    let password = password();
    ensure_database(&admin, &owner.names, &owner.stamp, &password).await.unwrap();

    let message = is_conflict(ensure_database(&admin, &owner.names, &twin.stamp, &password).await);
    assert!(message.contains(owner.stamp.tenant_uid()) && message.contains(twin.stamp.tenant_uid()), "{message}");
    assert!(
        message.contains(&format!("spec.adoptRetainedFrom: {}", owner.stamp.tenant_uid())),
        "the way out is consent on the new Tenant: {message}"
    );

    let retained = mark_retained(&admin, &owner.names, &twin.stamp).await.unwrap();
    assert!(!retained.marked_database && retained.left_alone.len() == 3, "{retained:?}");
    let dropped = drop_database(&admin, &owner.names, &twin.stamp).await.unwrap();
    assert!(!dropped.dropped_database && !dropped.dropped_roles && dropped.left_alone.len() == 3, "{dropped:?}");
    assert!(stamped_databases(&admin, &twin.stamp).await.unwrap().is_empty());

    assert_eq!(marks(&admin, &owner.names).await, [0, 1, 2].map(|_| Mark::Stamped(owner.stamp.record())), "stamps unchanged");
    check_ready(&admin, &owner.names, &password).await.unwrap();
    assert_eq!(ensure_database(&admin, &owner.names, &owner.stamp, &password).await.unwrap(), EnsureOutcome::default());
    cleanup(&admin, &owner.names).await;
}

#[tokio::test]
async fn upgrade_from_unstamped_objects_adopts_them_only_with_the_tenants_password() {
    let admin = admin_or_skip!();
    let sql = "CREATE TABLE orders (id int); INSERT INTO orders VALUES (42)";
    let (Tenant { stamp, names, .. }, password, app) = provisioned(&admin, "upgrade", sql).await;
    drop(app);
    remove_stamps(&admin, &names).await;

    // A wrong password proves nothing: nothing is stamped, nothing re-passworded.
    let message = is_conflict(ensure_database(&admin, &names, &stamp, "not-the-tenants-password").await);
    assert!(message.contains("does not accept the password"), "{message}");
    assert_eq!(marks(&admin, &names).await, [Mark::Unstamped, Mark::Unstamped, Mark::Unstamped]);
    check_ready(&admin, &names, &password).await.expect("the password was not changed");
    assert!(drop_database(&admin, &names, &stamp).await.unwrap().left_alone.len() == 3);
    assert!(database_exists(&admin, names.database()).await);

    // The password from the tenant's credentials Secret proves the objects are the tenant's.
    let outcome = ensure_database(&admin, &names, &stamp, &password).await.unwrap();
    assert!(outcome.adopted_unstamped && !outcome.adopted_retained && !outcome.password_set, "{outcome:?}");
    assert!(!outcome.created_database && !outcome.created_roles, "{outcome:?}");
    assert_eq!(marks(&admin, &names).await, [0, 1, 2].map(|_| Mark::Stamped(stamp.record())));
    let app = connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    assert_eq!(app.query_one("SELECT id FROM orders", &[]).await.unwrap().get::<_, i32>(0), 42);
    drop(app);
    assert_eq!(ensure_database(&admin, &names, &stamp, &password).await.unwrap(), EnsureOutcome::default());
    cleanup(&admin, &names).await;
}

#[tokio::test]
async fn upgrade_from_the_old_retained_mark_adopts_with_the_tenants_password() {
    let admin = admin_or_skip!();
    let old = Tenant::new("legacy");
    let password = password();
    ensure_database(&admin, &old.names, &old.stamp, &password).await.unwrap();
    remove_stamps(&admin, &old.names).await;
    let legacy = format!("{LEGACY_RETAINED_MARK}; the Tenant was deleted with deletionPolicy Retain at 2024-05-01T00:00:00Z");
    let client = superuser(&admin, &admin.dbname).await;
    let sql = format!("COMMENT ON DATABASE {} IS {}", quote_ident(old.names.database()), quote_literal(&legacy).unwrap());
    client.batch_execute(&sql).await.unwrap();
    assert!(is_retained(&admin, &old.names).await.unwrap());

    let new = old.recreated();
    is_conflict(ensure_database(&admin, &new.names, &new.stamp, "wrong-password").await);
    assert_eq!(database_comment(&admin, old.names.database()).await, Some(legacy), "a failed proof changes nothing");

    let outcome = ensure_database(&admin, &new.names, &new.stamp, &password).await.unwrap();
    assert!(outcome.adopted_retained && outcome.adopted_unstamped && outcome.previous_tenant_uid.is_none(), "{outcome:?}");
    assert!(!is_retained(&admin, &new.names).await.unwrap());
    assert_eq!(marks(&admin, &new.names).await, [0, 1, 2].map(|_| Mark::Stamped(new.stamp.record())));
    cleanup(&admin, &new.names).await;
}

#[tokio::test]
async fn stamped_databases_lists_exactly_what_the_tenant_owns() {
    let admin = admin_or_skip!();
    let tenant = Tenant::new("list");
    let password = password();
    for env in [Environment::Dev, Environment::Prod] {
        ensure_database(&admin, &tenant.names(env), &tenant.stamp, &password).await.unwrap();
    }
    // Staging's name is taken by someone else's database.
    let staging = tenant.names(Environment::Staging);
    let client = superuser(&admin, &admin.dbname).await;
    client.batch_execute(&format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(staging.database()))).await.unwrap();

    assert_eq!(stamped_databases(&admin, &tenant.stamp).await.unwrap(), [Environment::Dev, Environment::Prod]);
    assert!(stamped_databases(&admin, &tenant.recreated().stamp).await.unwrap().is_empty(), "another UID owns nothing");
    assert!(stamped_databases(&admin, &any_stamp()).await.unwrap().is_empty());

    // Retained databases are no longer the Tenant's to drop or mark.
    mark_retained(&admin, &tenant.names(Environment::Prod), &tenant.stamp).await.unwrap();
    assert_eq!(stamped_databases(&admin, &tenant.stamp).await.unwrap(), [Environment::Dev]);

    for env in Environment::ALL {
        cleanup(&admin, &tenant.names(env)).await;
    }
}

#[tokio::test]
async fn removed_environments_database_is_dropped_under_delete_and_kept_under_retain() {
    let admin = admin_or_skip!();
    let tenant = Tenant::new("removed");
    let password = password();
    for env in Environment::ALL {
        ensure_database(&admin, &tenant.names(env), &tenant.stamp, &password).await.unwrap();
    }
    // Staging was removed from the spec earlier under Retain; prod was removed later, under
    // Delete; dev is still in the spec. The controller asks the server what the Tenant owns.
    mark_retained(&admin, &tenant.names(Environment::Staging), &tenant.stamp).await.unwrap();
    let spec = [Environment::Dev];
    let removed: Vec<Environment> =
        stamped_databases(&admin, &tenant.stamp).await.unwrap().into_iter().filter(|env| !spec.contains(env)).collect();
    assert_eq!(removed, [Environment::Prod]);
    for env in removed {
        let outcome = drop_database(&admin, &tenant.names(env), &tenant.stamp).await.unwrap();
        assert!(outcome.dropped_database && outcome.dropped_roles && outcome.left_alone.is_empty(), "{outcome:?}");
    }
    assert!(!database_exists(&admin, tenant.names(Environment::Prod).database()).await);
    assert!(database_exists(&admin, tenant.names(Environment::Dev).database()).await);

    // A Delete of the whole Tenant later still keeps the retained environment.
    for env in Environment::ALL {
        drop_database(&admin, &tenant.names(env), &tenant.stamp).await.unwrap();
    }
    assert!(!database_exists(&admin, tenant.names(Environment::Dev).database()).await);
    let staging = tenant.names(Environment::Staging);
    assert!(database_exists(&admin, staging.database()).await && role_exists(&admin, staging.login_role()).await);
    check_ready(&admin, &staging, &password).await.expect("retained credentials still work");
    cleanup(&admin, &staging).await;
}

#[tokio::test]
async fn closed_port_is_server_unreachable_quickly() {
    let admin = admin_or_skip!();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dead = AdminConnection { host: "127.0.0.1".into(), port, ..admin };
    let stamp = any_stamp();

    let started = Instant::now();
    let err = ensure_database(&dead, &names("down"), &stamp, "pw").await.unwrap_err();
    assert_eq!(err.reason().as_str(), "ServerUnreachable", "{err}");
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    for result in [
        mark_retained(&dead, &names("down"), &stamp).await.map(|_| ()),
        drop_database(&dead, &names("down"), &stamp).await.map(|_| ()),
        stamped_databases(&dead, &stamp).await.map(|_| ()),
        check_ready(&dead, &names("down"), "pw").await,
    ] {
        assert_eq!(result.unwrap_err().reason().as_str(), "ServerUnreachable");
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
    let err = ensure_database(&silent, &names("silent"), &any_stamp(), "pw").await.unwrap_err();
    assert_eq!(err.reason().as_str(), "ServerUnreachable", "{err}");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    holder.abort();
}

#[tokio::test]
async fn wrong_admin_password_is_an_authentication_failure() {
    let admin = admin_or_skip!();
    let wrong = AdminConnection { password: "not-the-password".into(), ..admin };
    let err = ensure_database(&wrong, &names("auth"), &any_stamp(), "pw").await.unwrap_err();
    assert_eq!(err.reason().as_str(), "AdminAuthenticationFailed", "{err}");
    assert!(!err.to_string().contains("not-the-password"));
}

#[tokio::test]
async fn tls_that_cannot_be_verified_fails_clearly() {
    let admin = admin_or_skip!();
    // The test server either speaks no TLS or has a certificate no system root vouches for.
    let tls = AdminConnection { ssl_mode: SslMode::Require, root_cert_pem: None, ..admin };
    let err = ensure_database(&tls, &names("tls"), &any_stamp(), "pw").await.unwrap_err();
    assert_eq!(err.reason().as_str(), "TlsHandshakeFailed", "{err}");
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
    let Tenant { stamp, names, .. } = Tenant::new("tls-ok");
    let password = password();
    ensure_database(&tls, &names, &stamp, &password).await.unwrap();
    check_ready(&tls, &names, &password).await.unwrap();
    // tokio-postgres with sslmode=require refuses to continue without TLS, so success above
    // means the sessions were encrypted and the certificate verified against the CA.
    assert!(drop_database(&tls, &names, &stamp).await.unwrap().dropped_database);

    let wrong_ca = AdminConnection { root_cert_pem: Some("not a certificate".into()), ..tls };
    let err = check_ready(&wrong_ca, &names, &password).await.unwrap_err();
    assert_eq!(err.reason().as_str(), "TlsHandshakeFailed", "{err}");
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
    let Tenant { stamp, names, .. } = Tenant::new("weak");
    let err = ensure_database(&weak, &names, &stamp, "pw").await.unwrap_err();
    assert_eq!(err.reason().as_str(), "InsufficientPrivilege", "{err}");
    assert!(!role_exists(&admin, names.owner_role()).await);
    drop_extra_admin(&admin, &weak).await;
}

#[tokio::test]
async fn managed_service_style_admin_without_superuser_works() {
    let admin = admin_or_skip!();
    let managed = extra_admin(&admin, "managed", "CREATEDB CREATEROLE").await;
    let tenant = Tenant::new("managed");
    let names = &tenant.names;
    let password = password();
    let outcome = ensure_database(&managed, names, &tenant.stamp, &password).await.unwrap();
    assert!(outcome.created_database && outcome.created_roles, "{outcome:?}");
    assert_eq!(ensure_database(&managed, names, &tenant.stamp, &password).await.unwrap(), EnsureOutcome::default());
    let app = connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    app.batch_execute("CREATE TABLE t (id int)").await.unwrap();
    drop(app);
    let marked = mark_retained(&managed, names, &tenant.stamp).await.unwrap();
    assert!(marked.marked_database && marked.marked_roles, "{marked:?}");
    let recreated = tenant.recreated_adopting();
    let adopted = ensure_database(&managed, names, &recreated.stamp, &password).await.unwrap();
    assert!(adopted.adopted_retained, "{adopted:?}");
    // The upgrade path works without superuser too.
    remove_stamps(&admin, names).await;
    assert!(ensure_database(&managed, names, &recreated.stamp, &password).await.unwrap().adopted_unstamped);
    let dropped = drop_database(&managed, names, &recreated.stamp).await.unwrap();
    assert_eq!(dropped, DropOutcome { dropped_database: true, dropped_roles: true, left_alone: Vec::new() });
    assert!(!database_exists(&admin, names.database()).await);
    drop_extra_admin(&admin, &managed).await;
}

#[tokio::test]
async fn hostile_names_are_refused_or_quoted_without_injection() {
    let admin = admin_or_skip!();
    for slug in ["a\"; DROP DATABASE postgres; --", "x'; DROP ROLE admin; --", "Robert'); --", "a b"] {
        let err = ExternalNames::new(slug, Environment::Prod).unwrap_err();
        assert_eq!(err.reason().as_str(), "InvalidDatabaseName", "{slug}");
        assert_eq!(Stamp::new(slug, &uid()).unwrap_err().reason().as_str(), "InvalidDatabaseName", "{slug}");
    }

    // Names passed straight in must create exactly those objects and touch nothing else.
    let tag = format!("{:08x}", rand::random::<u32>());
    let canary = format!("canary_{tag}");
    let client = superuser(&admin, &admin.dbname).await;
    // CREATE/DROP DATABASE refuse to run inside the implicit transaction of a multi-statement
    // query, hence one statement per call.
    client.batch_execute(&format!("CREATE ROLE {}", quote_ident(&canary))).await.unwrap();
    client.batch_execute(&format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&canary))).await.unwrap();
    let names = ExternalNames::custom(
        &format!("db{tag}\"; DROP DATABASE {canary}; --"),
        &format!("own{tag}'); DROP ROLE {canary}; --"),
        &format!("app{tag}\" SUPERUSER; --\\"),
    )
    .unwrap();
    let password = format!("'); DROP ROLE {canary}; --\\'");
    let stamp = any_stamp();

    let outcome = ensure_database(&admin, &names, &stamp, &password).await.unwrap();
    assert!(outcome.created_database && outcome.created_roles);
    assert!(database_exists(&admin, names.database()).await, "the database has exactly the given name");
    assert!(role_exists(&admin, names.owner_role()).await && role_exists(&admin, names.login_role()).await);
    assert!(database_exists(&admin, &canary).await && role_exists(&admin, &canary).await, "canary survives");
    assert!(!one_bool(&client, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&names.login_role()]).await);
    assert_eq!(marks(&admin, &names).await, [0, 1, 2].map(|_| Mark::Stamped(stamp.record())));
    let app = connect_as(&admin, names.login_role(), &password, names.database()).await.unwrap();
    app.batch_execute("CREATE TABLE t (id int)").await.unwrap();
    drop(app);
    assert!(mark_retained(&admin, &names, &stamp).await.unwrap().marked_database);
    assert!(is_retained(&admin, &names).await.unwrap());
    assert!(ensure_database(&admin, &names, &stamp, &password).await.unwrap().adopted_retained);
    drop_database(&admin, &names, &stamp).await.unwrap();
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
    let texts = ["plain", "it's", "back\\slash", "\\'", "\"double\"", "semi; colon --", "ünï", "''''", "$$x$$", "\\\\'\\"];
    for text in texts {
        let sql = format!("SELECT {} AS {}", quote_literal(text).unwrap(), quote_ident(text));
        for conforming in ["on", "off"] {
            // E'' literals mean the same under either setting.
            client.batch_execute(&format!("SET standard_conforming_strings = {conforming}")).await.unwrap();
            let messages = client.simple_query(&sql).await.unwrap();
            let row = messages
                .iter()
                .find_map(|message| match message {
                    SimpleQueryMessage::Row(row) => Some(row),
                    _ => None,
                })
                .unwrap();
            assert_eq!(row.get(0), Some(text), "literal {text:?} with standard_conforming_strings={conforming}");
            assert_eq!(row.columns()[0].name(), text, "identifier {text:?}");
        }
    }
}

#[tokio::test]
async fn stamps_survive_the_server_unchanged() {
    let admin = admin_or_skip!();
    let Tenant { stamp, names, .. } = Tenant::new("roundtrip");
    ensure_database(&admin, &names, &stamp, &password()).await.unwrap();
    mark_retained(&admin, &names, &stamp).await.unwrap();
    let comment = database_comment(&admin, names.database()).await.unwrap();
    let record = StampRecord::parse(&comment).unwrap();
    assert_eq!((record.slug.as_str(), record.tenant_uid.as_str(), record.retained), (stamp.slug(), stamp.tenant_uid(), true));
    assert!(record.retained_at.is_some());
    assert_eq!(record.to_string(), comment);
    cleanup(&admin, &names).await;
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
        assert_eq!(err.reason().as_str(), "InvalidAdminSecret");
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
    }
    let err = ensure_database(
        &AdminConnection::from_url("postgresql://a:b@127.0.0.1:1/postgres?sslmode=disable").unwrap(),
        &ExternalNames::new("fine", Environment::Dev).unwrap(),
        &any_stamp(),
        "",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ExternalDbError::InvalidPassword(_)), "{err}");
}

/// CVE-2018-1058 on the shared server (SPEC §0a): a tenant plants, with its own login role,
/// functions and an operator that shadow built-ins, a `search_path` on its database and a
/// SECURITY DEFINER function in the admin database (open to PUBLIC as before PostgreSQL 15).
/// Whatever the provider does next (ensure, a new environment, readiness, listing, retain and
/// adoption, drop under Delete) must run none of it, and nothing planted may outlive the
/// tenant's roles, least of all handed over to the admin.
async fn planted_sql_never_runs_as_the_admin(root: &AdminConnection, admin: &AdminConnection) {
    let victim = Tenant::new("victim");
    ensure_database(admin, &victim.names, &victim.stamp, &password()).await.unwrap();
    let attacker = Tenant::new("attack");
    let password = password();
    ensure_database(admin, &attacker.names, &attacker.stamp, &password).await.unwrap();
    let trap = Trap::plant(admin, attacker.names.login_role(), &password, attacker.names.database(), victim.names.owner_role()).await;

    for _ in 0..2 {
        ensure_database(admin, &attacker.names, &attacker.stamp, &password).await.unwrap();
    }
    let prod = attacker.names(Environment::Prod);
    ensure_database(admin, &prod, &attacker.stamp, &password).await.unwrap();
    check_ready(admin, &attacker.names, &password).await.unwrap();
    assert_eq!(stamped_databases(admin, &attacker.stamp).await.unwrap(), [Environment::Dev, Environment::Prod]);
    assert!(mark_retained(admin, &attacker.names, &attacker.stamp).await.unwrap().marked_database);
    assert!(is_retained(admin, &attacker.names).await.unwrap());
    assert!(ensure_database(admin, &attacker.names, &attacker.stamp, &password).await.unwrap().adopted_retained);
    trap.assert_never_sprung(root, true).await;

    for names in [&attacker.names, &prod] {
        let dropped = drop_database(admin, names, &attacker.stamp).await.unwrap();
        assert!(dropped.dropped_database && dropped.dropped_roles, "{dropped:?}");
    }
    trap.assert_never_sprung(root, false).await;
    assert_eq!(trap.leftovers_in_admin_database(root).await, Vec::<String>::new(), "what the tenant planted outlived its roles");
    for names in [&attacker.names, &prod, &victim.names] {
        cleanup(root, names).await;
    }
}

#[tokio::test]
async fn planted_sql_never_runs_as_a_superuser_admin() {
    let root = admin_or_skip!();
    let admin = hostile_db::open_admin_database(&root, "su").await;
    planted_sql_never_runs_as_the_admin(&root, &admin).await;
    hostile_db::close_admin_database(&root, &admin).await;
}

#[tokio::test]
async fn planted_sql_never_runs_as_a_createrole_admin() {
    let root = admin_or_skip!();
    let managed = extra_admin(&root, "trapped", "CREATEDB CREATEROLE").await;
    let admin = hostile_db::open_admin_database(&root, "cr").await;
    let admin = AdminConnection { username: managed.username.clone(), password: managed.password.clone(), ..admin };
    planted_sql_never_runs_as_the_admin(&root, &admin).await;
    hostile_db::close_admin_database(&root, &admin).await;
    drop_extra_admin(&root, &managed).await;
}

/// template1 is open to PUBLIC, and CREATE DATABASE copies it. A tenant must neither seed
/// other tenants' new databases with what it puts there (where PUBLIC may create in its schema
/// `public`, as before PostgreSQL 15), nor stop them from being created by holding a session
/// there (CREATE DATABASE refuses to copy a template anyone is connected to).
#[tokio::test]
async fn a_tenant_in_template1_neither_seeds_nor_blocks_new_databases() {
    let admin = admin_or_skip!();
    let (attacker, password, app) = provisioned(&admin, "tmpl", "SELECT 1").await;
    drop(app);
    let login = quote_ident(attacker.names.login_role());
    let seed = format!("seeded_{:08x}", rand::random::<u32>());
    let root = superuser(&admin, "template1").await;
    root.batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {login}")).await.unwrap();
    drop(root);
    let squatter = connect_as(&admin, attacker.names.login_role(), &password, "template1").await.unwrap();
    squatter.batch_execute(&format!("CREATE FUNCTION public.{seed}() RETURNS int LANGUAGE sql AS 'SELECT 1'")).await.unwrap();
    drop(squatter);

    let seeded = Tenant::new("seeded");
    let seeded_result = ensure_database(&admin, &seeded.names, &seeded.stamp, &password).await.map(|_| ());
    let squatter = connect_as(&admin, attacker.names.login_role(), &password, "template1").await.unwrap();
    let blocked = Tenant::new("blocked");
    let blocked_result = ensure_database(&admin, &blocked.names, &blocked.stamp, &password).await.map(|_| ());
    drop(squatter);
    let copied = match &seeded_result {
        Ok(()) => {
            let inside = superuser(&admin, seeded.names.database()).await;
            one_bool(&inside, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE proname OPERATOR(pg_catalog.=) $1::name)", &[&seed])
                .await
        }
        Err(_) => false,
    };

    // Clean template1 before asserting anything: it is the whole server's.
    let root = superuser(&admin, "template1").await;
    root.batch_execute(&format!("DROP FUNCTION IF EXISTS public.{seed}(); REVOKE CREATE ON SCHEMA public FROM {login}")).await.unwrap();
    drop(root);
    for names in [&attacker.names, &seeded.names, &blocked.names] {
        cleanup(&admin, names).await;
    }
    let mut problems = Vec::new();
    if let Err(err) = &seeded_result {
        problems.push(format!("creating a database failed: {err}"));
    }
    if copied {
        problems.push("the function the tenant put into template1 was copied into another tenant's new database".to_owned());
    }
    if let Err(err) = &blocked_result {
        problems.push(format!("a tenant's session in template1 stopped another tenant's database: {err}"));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
