//! A hostile tenant on the shared PostgreSQL server of the `external` provider (SPEC §0a), as
//! the CVE-2018-1058 pattern plays it: with nothing but the login role's credentials from its
//! Secret, the tenant plants functions, an operator and a `search_path` that shadow what an
//! admin's SQL calls, in its own database and wherever else PUBLIC may create.
//!
//! Every planted object calls one trap function. Run by anyone but the tenant, the trap writes
//! a row naming `session_user` and `current_user` into a witness table, creates a witness
//! role, grants the victim tenant's owner role to the hostile login role and tries to make that
//! login role a superuser, each step on its own, so the caller's statement carries on unaware.
//! [`Trap::assert_never_sprung`] checks all four traces.

use tokio_postgres::{Client, NoTls};

use tenant_operator::database::external::{quote_ident, quote_literal, AdminConnection};

/// Opens a session with its own `search_path` pinned, so that the test's checks cannot be
/// fooled by the objects the hostile tenant planted either.
pub async fn connect(admin: &AdminConnection, user: &str, password: &str, db: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config.host(&admin.host).port(admin.port).user(user).password(password).dbname(db).options("-c search_path=pg_catalog,pg_temp");
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The test's own superuser session.
pub async fn superuser(admin: &AdminConnection, db: &str) -> Client {
    connect(admin, &admin.username, &admin.password, db).await.unwrap_or_else(|e| panic!("superuser session in {db}: {e}"))
}

/// A database to serve as the admin connection's `dbname`, set up as PostgreSQL < 15 set up
/// every database: PUBLIC may connect and create in schema `public`. Returns the admin
/// connection that opens its sessions there.
pub async fn open_admin_database(admin: &AdminConnection, tag: &str) -> AdminConnection {
    let name = format!("trap_admin_{tag}_{:08x}", rand::random::<u32>());
    let root = superuser(admin, &admin.dbname).await;
    // From template0: a scenario of `external_postgres` holds a session in template1.
    root.batch_execute(&format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&name))).await.unwrap();
    let inside = superuser(admin, &name).await;
    inside
        .batch_execute(
            "GRANT CREATE, USAGE ON SCHEMA public TO PUBLIC; \
             CREATE TABLE public.trap_witness (place text, session_name text, acting_name text); \
             GRANT INSERT ON public.trap_witness TO PUBLIC",
        )
        .await
        .unwrap();
    AdminConnection { dbname: name, ..admin.clone() }
}

/// Drops the database [`open_admin_database`] made.
pub async fn close_admin_database(root_admin: &AdminConnection, hostile_admin: &AdminConnection) {
    let root = superuser(root_admin, &root_admin.dbname).await;
    let _ = root.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&hostile_admin.dbname))).await;
}

/// What one hostile tenant planted, and whom it meant to harm.
pub struct Trap {
    /// Created by the trap when it runs with CREATEROLE.
    pub witness_role: String,
    pub tenant_login: String,
    tenant_database: String,
    victim_owner: String,
    admin_database: String,
}

impl Trap {
    /// Plants the traps as `tenant_login` (with `password`): in `tenant_database` (shadowing
    /// functions and `=` on names, and `ALTER DATABASE … SET search_path = public, pg_catalog`)
    /// and in the admin connection's database, where PUBLIC may create (shadowing functions,
    /// and a SECURITY DEFINER function that must never end up owned by the admin).
    pub async fn plant(admin: &AdminConnection, tenant_login: &str, password: &str, tenant_database: &str, victim_owner: &str) -> Trap {
        let trap = Trap {
            witness_role: format!("trap_witness_{:08x}", rand::random::<u32>()),
            tenant_login: tenant_login.to_owned(),
            tenant_database: tenant_database.to_owned(),
            victim_owner: victim_owner.to_owned(),
            admin_database: admin.dbname.clone(),
        };
        let own = connect(admin, tenant_login, password, tenant_database).await.unwrap_or_else(|e| panic!("tenant login: {e}"));
        own.batch_execute(
            "CREATE TABLE public.trap_witness (place text, session_name text, acting_name text); \
             GRANT INSERT ON public.trap_witness TO PUBLIC",
        )
        .await
        .unwrap();
        own.batch_execute(&trap.trap_function("tenant database")).await.unwrap();
        own.batch_execute(&shadows(&["has_schema_privilege(text, oid, text)", "current_setting(text)"])).await.unwrap();
        own.batch_execute(
            "CREATE FUNCTION public.trap_name_eq(name, name) RETURNS boolean LANGUAGE plpgsql AS $$ \
                 BEGIN PERFORM public.trap_spring(); RETURN pg_catalog.nameeq($1, $2); END $$; \
             CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = name, FUNCTION = public.trap_name_eq)",
        )
        .await
        .unwrap();
        own.batch_execute(&format!("ALTER DATABASE {} SET search_path = public, pg_catalog", quote_ident(tenant_database))).await.unwrap();

        let shared = connect(admin, tenant_login, password, &admin.dbname).await.unwrap_or_else(|e| panic!("tenant in admin db: {e}"));
        shared.batch_execute(&trap.trap_function("admin database")).await.unwrap();
        shared
            .batch_execute(&shadows(&[
                "has_database_privilege(text, oid, text)",
                "shobj_description(oid, text)",
                "pg_has_role(text, text, text)",
                "pg_get_userbyid(oid)",
            ]))
            .await
            .unwrap();
        shared
            .batch_execute(
                "CREATE FUNCTION public.trap_definer() RETURNS void LANGUAGE sql SECURITY DEFINER AS 'SELECT public.trap_spring()'; \
                 GRANT EXECUTE ON FUNCTION public.trap_definer() TO PUBLIC",
            )
            .await
            .unwrap();
        trap
    }

    /// `public.trap_spring()`: harmless when the tenant itself runs it.
    fn trap_function(&self, place: &str) -> String {
        let statements = [
            format!("CREATE ROLE {}", quote_ident(&self.witness_role)),
            format!("GRANT {} TO {}", quote_ident(&self.victim_owner), quote_ident(&self.tenant_login)),
            format!("ALTER ROLE {} SUPERUSER", quote_ident(&self.tenant_login)),
        ];
        let attempts: String = statements
            .iter()
            .map(|sql| format!("BEGIN EXECUTE {}; EXCEPTION WHEN OTHERS THEN NULL; END; ", quote_literal(sql).unwrap()))
            .collect();
        format!(
            "CREATE FUNCTION public.trap_spring() RETURNS void LANGUAGE plpgsql AS $trap$ BEGIN \
                 IF session_user::text = {login} THEN RETURN; END IF; \
                 BEGIN INSERT INTO public.trap_witness VALUES ({place}, session_user, current_user); \
                 EXCEPTION WHEN OTHERS THEN NULL; END; \
                 {attempts} \
             END $trap$",
            login = quote_literal(&self.tenant_login).unwrap(),
            place = quote_literal(place).unwrap(),
        )
    }

    /// Asserts that nothing the tenant planted ran as anyone else, in `tenant_database` too
    /// when it still exists (`check_tenant_database`).
    pub async fn assert_never_sprung(&self, admin: &AdminConnection, check_tenant_database: bool) {
        let mut sprung = Vec::new();
        let mut databases = vec![self.admin_database.clone()];
        if check_tenant_database {
            databases.push(self.tenant_database.clone());
        }
        for database in databases {
            let client = superuser(admin, &database).await;
            let rows = client
                .query("SELECT place || ' as ' || session_name || '/' || acting_name, count(*) FROM public.trap_witness GROUP BY 1", &[])
                .await
                .unwrap();
            sprung.extend(rows.iter().map(|r| format!("ran {} time(s) in the {}", r.get::<_, i64>(1), r.get::<_, String>(0))));
        }
        let client = superuser(admin, &admin.dbname).await;
        let witness: bool = client
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1)", &[&self.witness_role])
            .await
            .unwrap()
            .get(0);
        if witness {
            sprung.push(format!("created role {}", self.witness_role));
        }
        let row = client
            .query_opt(
                "SELECT r.rolsuper, pg_has_role(r.oid, $2::name, 'MEMBER') FROM pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1",
                &[&self.tenant_login, &self.victim_owner],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            if row.get::<_, bool>(0) {
                sprung.push(format!("made {} a superuser", self.tenant_login));
            }
            if row.get::<_, bool>(1) {
                sprung.push(format!("made {} a member of {}", self.tenant_login, self.victim_owner));
            }
        }
        assert!(sprung.is_empty(), "the tenant's planted SQL ran as someone else: {sprung:#?}");
    }

    /// What the tenant planted in the admin database and is still there, with its owner: after
    /// the tenant's roles were dropped, nothing may be left, least of all owned by the admin.
    pub async fn leftovers_in_admin_database(&self, admin: &AdminConnection) -> Vec<String> {
        let client = superuser(admin, &self.admin_database).await;
        let rows = client
            .query(
                "SELECT p.oid::regprocedure::text || ' owned by ' || pg_get_userbyid(p.proowner)::text \
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                 WHERE n.nspname = 'public' AND (p.proname LIKE 'trap%' OR p.proname IN \
                     ('has_database_privilege', 'shobj_description', 'pg_has_role', 'pg_get_userbyid'))",
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|row| row.get(0)).collect()
    }
}

/// Functions in schema `public` with the names and argument types of built-ins, each springing
/// the trap and then answering as the built-in would, so that nothing looks wrong.
fn shadows(signatures: &[&str]) -> String {
    signatures
        .iter()
        .map(|signature| {
            let (name, args) = signature.split_once('(').unwrap_or((signature, ")"));
            let args = args.trim_end_matches(')');
            let count = if args.trim().is_empty() { 0 } else { args.split(',').count() };
            let forwarded: Vec<String> = (1..=count).map(|i| format!("${i}")).collect();
            let returns = match name {
                "current_setting" | "shobj_description" | "pg_get_userbyid" => "text",
                _ => "boolean",
            };
            // The built-ins take `name` where these take `text`; pg_catalog's own casts apply.
            let body = match name {
                "has_schema_privilege" | "has_database_privilege" => format!("pg_catalog.{name}($1::name, $2, $3)"),
                "pg_has_role" => "pg_catalog.pg_has_role($1::name, $2::name, $3)".to_owned(),
                "shobj_description" => "pg_catalog.shobj_description($1, $2::name)".to_owned(),
                "pg_get_userbyid" => "pg_catalog.pg_get_userbyid($1)::text".to_owned(),
                _ => format!("pg_catalog.{name}({})", forwarded.join(", ")),
            };
            format!(
                "CREATE FUNCTION public.{name}({args}) RETURNS {returns} LANGUAGE plpgsql AS $shadow$ \
                     BEGIN PERFORM public.trap_spring(); RETURN {body}; END $shadow$; "
            )
        })
        .collect()
}
