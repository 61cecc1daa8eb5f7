//! End-to-end scenarios of the database providers inside the Tenant controller:
//! `cloudnative-pg` with the minimal CloudNativePG CRD of `tests/data` (and, on the local control
//! plane, the CloudNativePG stand-in writing the `Cluster`'s status), and `external` against a
//! real PostgreSQL server (`TENANT_OPERATOR_TEST_PG_URL`, see `.ci/postgres.sh`), its admin
//! Secret written where the configuration names it.

mod support;

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    api::{DeleteParams, DynamicObject, Patch, PatchParams},
    core::{ApiResource, GroupVersionKind},
    Api,
};
use serde_json::json;
use support::fixtures::{data_tenant as tenant, example_config, exclusive_admin_secret, ready, test_pg_admin, write_postgres_admin_secret};
use support::stand_ins::{CloudNativePgStandIn, CNPG_CRD_LOCK};
use support::{
    e2e::{Target, TestEnv},
    scenario::Scenario,
    CNPG_CLUSTER_CRD,
};
use tenant_operator::{
    database::external::{self, AdminConnection, ExternalNames},
    types::{Conditions, Environment, Tenant, TenantPhase},
};

fn database_reason(t: &Tenant) -> String {
    t.status.as_ref().and_then(|s| s.condition("DatabaseReady")).map(|c| c.reason.clone()).unwrap_or_default()
}

fn cnpg_clusters(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"), "clusters");
    Api::namespaced_with(client, namespace, &resource)
}

/// The CloudNativePG CRD installed (on the fake at start, on the local control plane by its
/// stand-in) and the lock that keeps the scenarios that want it absent apart; `None` on another
/// cluster, where whether it is installed is not ours to decide.
async fn with_cnpg_crd(installed: bool) -> Option<(Scenario, Option<tokio::sync::MutexGuard<'static, ()>>)> {
    match Target::from_env() {
        Target::Fake => {
            let fake = if installed { FakeApiServer::builder().crd(CNPG_CLUSTER_CRD).start().await } else { FakeApiServer::start().await };
            Some((Scenario::start_on(TestEnv::with_fake(fake), example_config()).await, None))
        }
        Target::LocalControlPlane => {
            let guard = CNPG_CRD_LOCK.lock().await;
            // (the external scenario holds it too: see `CloudNativePgStandIn::hold_crd_steady`)
            let env = TestEnv::new().await;
            if installed {
                CloudNativePgStandIn::install_crd(&env.client()).await;
            } else {
                CloudNativePgStandIn::remove_crd(&env.client()).await;
            }
            Some((Scenario::start_on(env, example_config()).await, Some(guard)))
        }
        Target::Kubeconfig(_) => None,
    }
}

#[tokio::test]
async fn cloudnative_pg_cluster_per_environment_with_honest_readiness() {
    let Some((s, _crd)) = with_cnpg_crd(true).await else {
        return support::skipped_on_real_cluster(
            "cloudnative_pg_cluster_per_environment",
            "installing the CloudNativePG CRD is not ours to decide there",
        );
    };
    let slug = s.slug("cnpg");
    s.create_tenant(&tenant(&slug, json!({"environments": ["dev", "prod"], "database": {"provider": "cloudnative-pg", "storage": "5Gi"}})))
        .await;
    let t = s.wait_tenant(&slug, |t| database_reason(t) == "DatabaseNotReady").await;
    assert_eq!(t.status.as_ref().and_then(|s| s.phase), Some(TenantPhase::Provisioning));
    for env in ["dev", "prod"] {
        let ns = format!("{slug}-{env}");
        let cluster = cnpg_clusters(s.client(), &ns).get(&format!("{slug}-db")).await.unwrap();
        assert_eq!(cluster.data["spec"]["storage"]["size"], "5Gi");
        assert_eq!(cluster.data["spec"]["bootstrap"]["initdb"]["secret"]["name"], format!("{slug}-db-credentials"));
        let secret = Api::<Secret>::namespaced(s.client(), &ns).get(&format!("{slug}-db-credentials")).await.unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"), "CloudNativePG needs a basic-auth bootstrap secret");
        let host = String::from_utf8(secret.data.unwrap_or_default()["host"].0.clone()).unwrap();
        assert_eq!(host, format!("{slug}-db-rw.{ns}.svc"));
    }
    // CloudNativePG reports the cluster ready.
    for env in ["dev", "prod"] {
        CloudNativePgStandIn::report_ready(&s.client(), &format!("{slug}-{env}"), &format!("{slug}-db")).await;
    }
    let t = s.wait_tenant(&slug, ready).await;
    assert!(t.status.unwrap_or_default().databases.iter().all(|d| d.ready));
    s.cleanup().await;
}

#[tokio::test]
async fn cloudnative_pg_without_its_crd_says_so() {
    let Some((s, _crd)) = with_cnpg_crd(false).await else {
        return support::skipped_on_real_cluster("cloudnative_pg_without_its_crd", "whether the CRD exists there is not ours to decide");
    };
    let slug = s.slug("nocnpg");
    s.create_tenant(&tenant(&slug, json!({"database": {"provider": "cloudnative-pg"}}))).await;
    let t = s.wait_tenant(&slug, |t| database_reason(t) == "CloudNativePgNotInstalled").await;
    let message = t.status.as_ref().and_then(|s| s.condition("Ready")).map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("clusters.postgresql.cnpg.io"), "{message}");
    // The rest of the tenant is still provisioned.
    Api::<Namespace>::all(s.client()).get(&format!("{slug}-dev")).await.unwrap();
    s.cleanup().await;
}

/// The operator found the CloudNativePG CRD at start, and then its list of `Cluster`s answers 404
/// (the CRD was removed in between; here the operator's requests are failed so, for as long as
/// the scenario runs). Its other tenants are served all the same: before, the operator waited
/// for a cache of `Cluster`s that never came, and no Tenant got a status.
#[tokio::test]
async fn a_cloudnative_pg_crd_removed_after_start_does_not_stop_the_operator() {
    let Some((s, _crd)) = with_cnpg_crd(true).await else {
        return support::skipped_on_real_cluster("cloudnative_pg_crd_removed_after_start", "the CRD is not ours to install there");
    };
    s.stop_operator().await;
    s.fail_operator_requests("list", "clusters", 404, usize::MAX);
    s.start_operator();
    let slug = s.slug("crdgone");
    s.create_tenant(&tenant(&slug, json!({"database": {"provider": "none"}}))).await;
    s.wait_tenant(&slug, ready).await;
    s.cleanup().await;
}

async fn tenant_uri(s: &Scenario, slug: &str, env: &str) -> String {
    let secret = Api::<Secret>::namespaced(s.client(), &format!("{slug}-{env}")).get(&format!("{slug}-db-credentials")).await.unwrap();
    String::from_utf8(secret.data.unwrap_or_default()["uri"].0.clone()).unwrap()
}

async fn connect(uri: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(uri, tokio_postgres::NoTls).await.unwrap_or_else(|e| panic!("connect with the tenant's uri: {e}"));
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn external_database_lifecycle_with_outage_retain_and_delete() {
    let Some(admin) = test_pg_admin("e2e_databases") else { return };
    // On the local control plane the CloudNativePG CRD must not come or go under this operator:
    // it reads discovery at start and then waits for a cache of every kind it found.
    let _crd = CloudNativePgStandIn::hold_crd_steady().await;
    let _admin_secret = exclusive_admin_secret().await;
    let s = Scenario::start().await;
    write_postgres_admin_secret(&s.client(), &admin, admin.port).await;
    let slug = s.slug("ext");
    let spec = tenant(&slug, json!({"environments": ["dev", "prod"], "database": {"provider": "external"}}));
    s.create_tenant(&spec).await;
    let t = s.wait_tenant(&slug, ready).await;
    let databases = t.status.unwrap_or_default().databases;
    assert_eq!(databases.len(), 2);
    assert!(databases.iter().all(|d| d.ready && d.host.as_deref() == Some(admin.host.as_str())));

    // The application's view: connect with the Secret's uri and keep a row.
    let dev_uri = tenant_uri(&s, &slug, "dev").await;
    let db = connect(&dev_uri).await;
    db.batch_execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (42);").await.unwrap();
    drop(db);

    // The server becomes unreachable: status says so, nothing is lost, and it recovers.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    write_postgres_admin_secret(&s.client(), &admin, closed_port).await;
    s.patch_spec(&slug, json!({"displayName": "Data Corp (outage)"})).await;
    let t = s.wait_tenant(&slug, |t| database_reason(t) == "ServerUnreachable").await;
    assert_eq!(t.status.and_then(|s| s.phase), Some(TenantPhase::Provisioning));
    write_postgres_admin_secret(&s.client(), &admin, admin.port).await;
    s.patch_spec(&slug, json!({"displayName": "Data Corp"})).await;
    s.wait_tenant(&slug, ready).await;
    assert_eq!(tenant_uri(&s, &slug, "dev").await, dev_uri, "credentials survive reconciles");

    // Retain: the database stays, marked, and a re-created tenant (consenting to adopt the
    // earlier one's data) reads the old row.
    let earlier = Api::<Tenant>::all(s.client()).get(&slug).await.unwrap().metadata.uid;
    s.delete_tenant(&slug).await;
    s.wait_tenant_gone(&slug).await;
    let names = ExternalNames::new(&slug, Environment::Dev).unwrap();
    assert!(external::is_retained(&admin, &names).await.unwrap());
    let mut spec = spec.clone();
    spec.spec.adopt_retained_from = earlier;
    s.create_tenant(&spec).await;
    s.wait_tenant(&slug, ready).await;
    assert_eq!(tenant_uri(&s, &slug, "dev").await, dev_uri, "a re-created tenant reuses its credentials");
    let db = connect(&dev_uri).await;
    let row = db.query_one("SELECT id FROM orders", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    drop(db);
    assert!(!external::is_retained(&admin, &names).await.unwrap(), "adoption clears the retained mark");

    // Delete: databases and roles are dropped before the finalizer goes.
    s.patch_spec(&slug, json!({"deletionPolicy": "Delete"})).await;
    Api::<Tenant>::all(s.client()).delete(&slug, &DeleteParams::default()).await.unwrap();
    s.wait_tenant_gone(&slug).await;
    for env in [Environment::Dev, Environment::Prod] {
        let names = ExternalNames::new(&slug, env).unwrap();
        let err = tokio_postgres::connect(&format!("{}/{}", admin_base(&admin), names.database()), tokio_postgres::NoTls).await.err();
        let message = err.map(|e| format!("{e:?}")).unwrap_or_default();
        assert!(message.contains("does not exist"), "database {} still exists: {message}", names.database());
    }
    s.cleanup().await;
}

/// A reused slug on the shared server: the earlier Tenant's namespaces were deleted (the way
/// to start afresh on the cluster), but its retained database is still there, stamped with its
/// UID. The new Tenant neither takes it nor changes it without consent.
#[tokio::test]
async fn an_earlier_tenants_retained_external_database_is_adopted_only_with_consent() {
    let Some(admin) = test_pg_admin("e2e_databases") else { return };
    let _crd = CloudNativePgStandIn::hold_crd_steady().await;
    let _admin_secret = exclusive_admin_secret().await;
    let s = Scenario::start().await;
    write_postgres_admin_secret(&s.client(), &admin, admin.port).await;
    let slug = s.slug("extreuse");
    let spec = tenant(&slug, json!({"database": {"provider": "external"}}));
    s.create_tenant(&spec).await;
    let earlier = s.wait_tenant(&slug, ready).await.metadata.uid.unwrap();
    let earlier_uri = tenant_uri(&s, &slug, "dev").await;
    connect(&earlier_uri).await.batch_execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (7);").await.unwrap();
    s.delete_tenant(&slug).await;
    s.wait_tenant_gone(&slug).await;
    s.delete_namespaces_of(&slug).await;
    for namespace in [format!("{slug}-dev"), format!("{slug}-account")] {
        s.wait_gone(Api::<Namespace>::all(s.client()), &namespace).await;
    }

    s.create_tenant(&spec).await;
    let t = s.wait_tenant(&slug, |t| database_reason(t) == "RetainedDataFromAnotherTenant").await;
    assert_eq!(t.status.as_ref().and_then(|s| s.phase), Some(TenantPhase::Failed), "a person must decide");
    let message = t.status.as_ref().and_then(|s| s.condition("DatabaseReady")).map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains(&format!("spec.adoptRetainedFrom: {earlier}")), "{message}");
    let names = ExternalNames::new(&slug, Environment::Dev).unwrap();
    assert!(external::is_retained(&admin, &names).await.unwrap(), "still marked retained by the earlier Tenant");
    let row = connect(&earlier_uri).await.query_one("SELECT id FROM orders", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7, "the earlier password still works: nothing was changed");

    s.patch_spec(&slug, json!({"adoptRetainedFrom": earlier})).await;
    s.wait_tenant(&slug, ready).await;
    let row = connect(&tenant_uri(&s, &slug, "dev").await).await.query_one("SELECT id FROM orders", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7, "adopted with its data");
    assert!(!external::is_retained(&admin, &names).await.unwrap());
    s.cleanup().await;
}

fn admin_base(admin: &AdminConnection) -> String {
    format!("postgresql://{}:{}@{}:{}", admin.username, admin.password, admin.host, admin.port)
}

/// The API server takes an Event note of at most 1024 bytes of UTF-8. A failure whose message
/// is long in multi-byte text (here an admin Secret's `sslmode` quoted back) is still told,
/// cut on a character boundary.
#[tokio::test]
async fn a_long_multibyte_failure_is_told_in_an_event_cut_to_1024_bytes() {
    let _crd = CloudNativePgStandIn::hold_crd_steady().await;
    let _admin_secret = exclusive_admin_secret().await;
    let s = Scenario::start().await;
    let bogus = AdminConnection::from_url("postgresql://admin:pw@127.0.0.1:5432/postgres?sslmode=disable").unwrap();
    write_postgres_admin_secret(&s.client(), &bogus, bogus.port).await;
    let sslmode = "株式会社".repeat(100);
    let patch = json!({"apiVersion": "v1", "kind": "Secret", "stringData": {"sslmode": sslmode}});
    Api::<Secret>::namespaced(s.client(), "tenant-operator")
        .patch("postgres-admin", &PatchParams::apply("e2e-databases").force(), &Patch::Apply(&patch))
        .await
        .unwrap();
    let slug = s.slug("note");
    s.create_tenant(&tenant(&slug, json!({"database": {"provider": "external"}}))).await;
    s.wait_tenant(&slug, |t| database_reason(t) == "InvalidAdminSecret").await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(s.client());
    let told = || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            let about_it = e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(slug.as_str());
            e.note.filter(|note| about_it && note.contains("sslmode"))
        })
    };
    s.wait_for("an Event telling the failure", || async { told().await.is_some() }).await;
    let note = told().await.unwrap_or_default();
    assert!(note.len() <= 1024 && note.len() > 1000, "{} bytes", note.len());
    assert!(note.ends_with('…'), "{note}");
    // The admin Secret never worked, so no database was made; under Delete (the clean-up) the
    // operator would wait for the server forever before it lets the Tenant go.
    s.abandon_tenant(&slug).await;
    s.cleanup().await;
}
