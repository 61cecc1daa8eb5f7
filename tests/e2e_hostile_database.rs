//! A hostile tenant against the operator's `external` database provider (SPEC §0a): the
//! tenant's workload reads the credentials Secret, plants SQL for the operator's admin session
//! on the shared PostgreSQL server (`support::hostile_db`), and the operator reconciles on:
//! spec changes, a new environment, a removed one, deletion under Delete. Nothing planted may
//! run as the admin, no role may gain a privilege, and nothing the tenant left in the admin
//! database may outlive it. Needs `TENANT_OPERATOR_TEST_PG_URL` (see `.ci/postgres.sh`); runs on
//! the fake, or on a real cluster with `TENANT_OPERATOR_E2E_KUBECONFIG`.

mod support;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;
use support::fixtures::{data_tenant, exclusive_admin_secret, ready, test_pg_admin, write_postgres_admin_secret};
use support::hostile_db::{self, Trap};
use support::scenario::Scenario;
use tenant_operator::database::external::{quote_ident, quote_literal, AdminConnection, ExternalNames};
use tenant_operator::types::{Environment, Tenant};

/// The login role, password and database in the tenant's credentials Secret, as its workload
/// reads them.
async fn tenant_credentials(s: &Scenario, slug: &str, env: &str) -> (String, String, String) {
    let secret = Api::<Secret>::namespaced(s.client(), &format!("{slug}-{env}")).get(&format!("{slug}-db-credentials")).await.unwrap();
    let data = secret.data.unwrap_or_default();
    let key = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
    (key("username"), key("password"), key("dbname"))
}

async fn drop_leftovers(root: &AdminConnection, slug: &str) {
    let client = hostile_db::superuser(root, &root.dbname).await;
    for env in Environment::ALL {
        let names = ExternalNames::new(slug, env).unwrap();
        let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(names.database()))).await;
        for role in [names.login_role(), names.owner_role()] {
            let _ = client.batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(role))).await;
        }
    }
}

/// The scenario, with the operator's admin Secret naming `admin` (whose `dbname` is a database
/// from [`hostile_db::open_admin_database`]); `root` is the test's own superuser.
async fn planted_sql_never_runs_in_the_admin_session(s: &Scenario, root: &AdminConnection, admin: &AdminConnection) {
    write_postgres_admin_secret(&s.client(), admin, admin.port).await;
    // No applications: a real control plane has no ingress controller to give an address.
    let external = json!({"applications": [], "database": {"provider": "external"}, "deletionPolicy": "Delete"});
    let (victim, attacker) = (s.slug("victim"), s.slug("attack"));
    for slug in [&victim, &attacker] {
        s.create_tenant(&data_tenant(slug, external.clone())).await;
    }
    for slug in [&victim, &attacker] {
        s.wait_tenant(slug, ready).await;
    }

    // The attacker's workload plants its traps with the credentials it was given.
    let (login, password, database) = tenant_credentials(s, &attacker, "dev").await;
    let victim_owner = ExternalNames::new(&victim, Environment::Dev).unwrap().owner_role().to_owned();
    let trap = Trap::plant(admin, &login, &password, &database, &victim_owner).await;

    // The operator reconciles on: spec changes, a new environment, that environment removed.
    s.patch_spec(&attacker, json!({"displayName": "Trap Corp"})).await;
    s.wait_tenant(&attacker, ready).await;
    s.patch_spec(&attacker, json!({"environments": ["dev", "prod"]})).await;
    let t = s.wait_tenant(&attacker, ready).await;
    assert_eq!(t.status.unwrap_or_default().databases.len(), 2);
    s.patch_spec(&attacker, json!({"environments": ["dev"]})).await;
    s.wait_tenant(&attacker, ready).await;
    trap.assert_never_sprung(root, true).await;

    // Deleted under Delete: its databases and roles go, and what it planted goes with them.
    s.delete_tenant(&attacker).await;
    s.wait_tenant_gone(&attacker).await;
    trap.assert_never_sprung(root, false).await;
    assert_eq!(trap.leftovers_in_admin_database(root).await, Vec::<String>::new(), "what the tenant planted outlived its roles");
    let victim_tenant: Tenant = Api::<Tenant>::all(s.client()).get(&victim).await.unwrap();
    assert!(ready(&victim_tenant), "the other tenant is untouched: {:?}", victim_tenant.status);

    s.cleanup().await;
    for slug in [&victim, &attacker] {
        drop_leftovers(root, slug).await;
    }
}

#[tokio::test]
async fn sql_a_tenant_plants_never_runs_in_a_superuser_admin_session() {
    let Some(root) = test_pg_admin("e2e_hostile_database") else { return };
    let _admin_secret = exclusive_admin_secret().await;
    let s = Scenario::start().await;
    let admin = hostile_db::open_admin_database(&root, "op").await;
    planted_sql_never_runs_in_the_admin_session(&s, &root, &admin).await;
    hostile_db::close_admin_database(&root, &admin).await;
}

/// A managed service's admin: CREATEROLE CREATEDB, no superuser.
#[tokio::test]
async fn sql_a_tenant_plants_never_runs_in_a_createrole_admin_session() {
    let Some(root) = test_pg_admin("e2e_hostile_database") else { return };
    let _admin_secret = exclusive_admin_secret().await;
    let s = Scenario::start().await;
    let name = format!("trapped_{:08x}", rand::random::<u32>());
    let password = format!("pw-{:032x}", rand::random::<u128>());
    let client = hostile_db::superuser(&root, &root.dbname).await;
    let create = format!("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}", quote_ident(&name), quote_literal(&password).unwrap());
    client.batch_execute(&create).await.unwrap();
    let database = hostile_db::open_admin_database(&root, "opcr").await;
    let admin = AdminConnection { username: name.clone(), password, ..database };
    planted_sql_never_runs_in_the_admin_session(&s, &root, &admin).await;
    hostile_db::close_admin_database(&root, &admin).await;
    client.batch_execute(&format!("DROP OWNED BY {0}; DROP ROLE {0}", quote_ident(&name))).await.unwrap();
}
