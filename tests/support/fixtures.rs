//! The objects scenarios start from: Tenants, TenantUsers and the operator configuration of
//! `examples/config.yaml`. Each builder takes a JSON spec so a scenario states only what it
//! is about; the presets name the tenant shapes the scenario files share.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tenant_operator::config::Config;
use tenant_operator::database::external::AdminConnection;
use tenant_operator::types::{Tenant, TenantPhase, TenantUser};

pub const API_VERSION: &str = "tenancy.platform.dev/v1alpha1";

/// The configuration users start from (`examples/config.yaml`): cluster `uk`, applications
/// `xconsole` and `u-assist`.
pub fn example_config() -> Config {
    Config::parse(include_str!("../../examples/config.yaml"), "examples/config.yaml").expect("example config")
}

/// `base` with the top-level fields of `extra` replacing its own (`null` clears one).
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    base
}

/// A Tenant manifest with exactly this spec, as JSON (for requests the schema must refuse).
pub fn tenant_json(slug: &str, spec: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": "Tenant", "metadata": {"name": slug}, "spec": spec})
}

/// A Tenant with exactly this spec.
pub fn tenant(slug: &str, spec: Value) -> Tenant {
    serde_json::from_value(tenant_json(slug, spec)).expect("test tenant")
}

/// Three environments, two applications, a quota, no database: `extra` changes spec fields.
pub fn acme_tenant(slug: &str, extra: Value) -> Tenant {
    let base = json!({
        "displayName": "Acme Corp",
        "cluster": "uk",
        "environments": ["dev", "staging", "prod"],
        "applications": ["xconsole", "u-assist"],
        "database": {"provider": "none"},
        "quota": {"cpu": "8", "memory": "16Gi", "pods": 50},
    });
    tenant(slug, with(base, extra))
}

/// One environment (`dev`) and one application, for database scenarios: `extra` changes spec
/// fields (usually `database`).
pub fn data_tenant(slug: &str, extra: Value) -> Tenant {
    tenant(slug, with(json!({"displayName": "Data Corp", "cluster": "uk", "environments": ["dev"], "applications": ["xconsole"]}), extra))
}

/// One environment (`dev`), one application, no database: `extra` changes spec fields.
pub fn small_tenant(slug: &str, extra: Value) -> Tenant {
    let base = json!({"displayName": "Safe Corp", "cluster": "uk", "environments": ["dev"], "applications": ["xconsole"], "database": {"provider": "none"}});
    tenant(slug, with(base, extra))
}

/// A tenant for user scenarios: these environments, no database, deleted with everything.
pub fn users_tenant(slug: &str, environments: &[&str]) -> Tenant {
    tenant(
        slug,
        json!({"displayName": "Users Inc", "cluster": "uk", "environments": environments, "database": {"provider": "none"}, "deletionPolicy": "Delete"}),
    )
}

/// The smallest valid Tenant spec with these environments, as JSON.
pub fn minimal_tenant_json(slug: &str, environments: Value) -> Value {
    tenant_json(slug, json!({"displayName": "E2E Corp", "cluster": "uk", "environments": environments}))
}

/// The account namespace of tenant `slug`, where its TenantUsers live.
pub fn account(slug: &str) -> String {
    format!("{slug}-account")
}

/// A TenantUser of tenant `slug` (in its account namespace).
pub fn user(name: &str, slug: &str, email: &str, username: &str, roles: &[&str], custom: &[&str]) -> TenantUser {
    serde_json::from_value(json!({
        "apiVersion": API_VERSION, "kind": "TenantUser",
        "metadata": {"name": name, "namespace": account(slug)},
        "spec": {"email": email, "username": username, "firstName": "F", "lastName": "L", "roles": roles, "customRoles": custom},
    }))
    .expect("test user")
}

/// `phase: Ready` for the Tenant's current generation.
pub fn ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| s.phase == Some(TenantPhase::Ready) && s.observed_generation == t.metadata.generation)
}

/// The external provider's admin Secret where the example configuration names it
/// (tenant-operator/postgres-admin), pointing at `admin`'s server on `port`.
/// Held by a scenario that writes the external provider's admin Secret, from writing it to its
/// cleanup. The Secret is one per API server (deploy/ lets the operator read that name only), and
/// the scenarios of a test binary share the local control plane: two of them writing it at once
/// would point each other's operator at the wrong server. (On the fake each scenario has a server
/// of its own; holding it there costs a little parallelism, nothing else.)
pub async fn exclusive_admin_secret() -> tokio::sync::MutexGuard<'static, ()> {
    static ADMIN_SECRET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ADMIN_SECRET.lock().await
}

pub async fn write_postgres_admin_secret(client: &kube::Client, admin: &AdminConnection, port: u16) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "tenant-operator"}})).unwrap();
    let _ = namespaces.create(&PostParams::default(), &ns).await;
    let data = BTreeMap::from([
        ("host".to_string(), admin.host.clone()),
        ("port".to_string(), port.to_string()),
        ("username".to_string(), admin.username.clone()),
        ("password".to_string(), admin.password.clone()),
        ("dbname".to_string(), admin.dbname.clone()),
        ("sslmode".to_string(), "disable".to_string()),
    ]);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "postgres-admin", "namespace": "tenant-operator"},
        "stringData": data,
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "tenant-operator")
        .patch("postgres-admin", &PatchParams::apply("e2e-fixtures").force(), &Patch::Apply(&secret))
        .await
        .unwrap();
}

/// The test PostgreSQL server's admin connection (`TENANT_OPERATOR_TEST_PG_URL`), or None with
/// a loud skip line naming `binary`; a failure when `TENANT_OPERATOR_REQUIRE_PG=1`.
pub fn test_pg_admin(binary: &str) -> Option<AdminConnection> {
    match std::env::var("TENANT_OPERATOR_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(AdminConnection::from_url(&url).unwrap_or_else(|e| panic!("TENANT_OPERATOR_TEST_PG_URL: {e}"))),
        _ if std::env::var("TENANT_OPERATOR_REQUIRE_PG").as_deref() == Ok("1") => {
            panic!("TENANT_OPERATOR_REQUIRE_PG=1 but TENANT_OPERATOR_TEST_PG_URL is not set; run eval \"$(bash .ci/postgres.sh)\"")
        }
        _ => {
            eprintln!("\n*** {binary}: external provider scenario skipped: set TENANT_OPERATOR_TEST_PG_URL (see .ci/postgres.sh) ***\n");
            None
        }
    }
}

/// Whether the tenant's login role of `names` gets a session with `password` on the test
/// server (the external provider's database, as the tenant's applications connect).
pub async fn logs_in(admin: &AdminConnection, names: &tenant_operator::database::external::ExternalNames, password: &str) -> bool {
    let mut config = tokio_postgres::Config::new();
    config.host(&admin.host).port(admin.port).user(names.login_role()).password(password).dbname(names.database());
    match config.connect(tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client.simple_query("SELECT 1").await.is_ok()
        }
        Err(_) => false,
    }
}
