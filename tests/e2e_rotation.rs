//! Database credential rotation on request (the Tenant annotation
//! `tenancy.platform.dev/rotate-credentials.<env>`): `external` against a real PostgreSQL
//! server (the new password logs in, the old one does not, a restart in the middle loses
//! nothing), `cloudnative-pg` with its stand-in, the refusal of `statefulset` and the wait
//! of a suspended Tenant.

mod support;

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::{core::v1::Secret, events::v1::Event};
use kube::{
    api::{DynamicObject, Patch, PatchParams},
    Api,
};
use serde_json::json;
use support::fixtures::{data_tenant as tenant, example_config, logs_in, ready, test_pg_admin, write_postgres_admin_secret};
use support::stand_ins::{CloudNativePgStandIn, CNPG_CRD_LOCK};
use support::{
    e2e::{Target, TestEnv},
    scenario::Scenario,
    CNPG_CLUSTER_CRD,
};
use tenant_operator::{
    database::external::{quote_ident, AdminConnection, ExternalNames},
    types::{DatabaseStatus, Environment, Tenant},
};

const REQUEST: &str = "tenancy.platform.dev/rotate-credentials.dev";

async fn request_rotation(s: &Scenario, slug: &str, token: &str) {
    let patch = json!({"metadata": {"annotations": {REQUEST: token}}});
    Api::<Tenant>::all(s.client()).patch(slug, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

fn dev_database(t: &Tenant) -> Option<DatabaseStatus> {
    t.status.as_ref()?.databases.iter().find(|d| d.environment == Environment::Dev).cloned()
}

fn rotated(token: &str) -> impl Fn(&Tenant) -> bool + '_ {
    move |t| dev_database(t).is_some_and(|d| d.rotation_request.as_deref() == Some(token) && d.rotation_message.is_none())
}

fn rotation_message(t: &Tenant) -> String {
    dev_database(t).and_then(|d| d.rotation_message).unwrap_or_default()
}

async fn secret(s: &Scenario, slug: &str) -> Secret {
    Api::<Secret>::namespaced(s.client(), &format!("{slug}-dev")).get(&format!("{slug}-db-credentials")).await.unwrap()
}

fn key(secret: &Secret, key: &str) -> Option<String> {
    secret.data.as_ref()?.get(key).map(|v| String::from_utf8(v.0.clone()).unwrap())
}

fn annotation(secret: &Secret, key: &str) -> Option<String> {
    secret.metadata.annotations.as_ref()?.get(key).cloned()
}

async fn admin_session(admin: &AdminConnection) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config.host(&admin.host).port(admin.port).user(&admin.username).password(&admin.password).dbname(&admin.dbname);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn external_rotation_changes_the_password_once_per_request_and_survives_a_restart_in_the_middle() {
    let Some(admin) = test_pg_admin("e2e_rotation") else { return };
    let _crd = CloudNativePgStandIn::hold_crd_steady().await;
    let s = Scenario::start().await;
    write_postgres_admin_secret(&s.client(), &admin, admin.port).await;
    let slug = s.slug("rot");
    let names = ExternalNames::new(&slug, Environment::Dev).unwrap();
    s.create_tenant(&tenant(&slug, json!({"database": {"provider": "external"}}))).await;
    s.wait_tenant(&slug, ready).await;
    let original = key(&secret(&s, &slug).await, "password").unwrap();
    assert!(logs_in(&admin, &names, &original).await);

    // A plain rotation: the new password logs in, the old one no longer does.
    request_rotation(&s, &slug, "2026-12-06T08:00:00Z").await;
    let t = s.wait_tenant(&slug, rotated("2026-12-06T08:00:00Z")).await;
    assert!(dev_database(&t).and_then(|d| d.credentials_rotated_at).is_some());
    let first = secret(&s, &slug).await;
    let new = key(&first, "password").unwrap();
    assert_ne!(new, original);
    assert!(key(&first, "uri").unwrap().contains(&new), "the URIs carry the new password");
    assert_eq!(key(&first, "pending-password"), None);
    assert!(logs_in(&admin, &names, &new).await, "the new password logs in");
    assert!(!logs_in(&admin, &names, &original).await, "the old password no longer does");
    // The rotation is told in the Tenant's Event, never with the password.
    let events: Api<Event> = Api::namespaced(s.client(), "default");
    let told = || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            let about = e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(slug.as_str());
            e.note
                .filter(|note| about && note.contains("rotated the password of role") && e.reason.as_deref() == Some("CredentialsRotated"))
        })
    };
    s.wait_for("the CredentialsRotated Event", || async { told().await.is_some() }).await;
    let note = told().await.unwrap_or_default();
    assert!(note.contains("2026-12-06T08:00:00Z") && !note.contains(&new), "{note}");

    // A restart with the same request outstanding does not rotate again.
    s.stop_operator().await;
    s.start_operator();
    s.patch_spec(&slug, json!({"displayName": "Data Corp (restarted)"})).await;
    s.wait_tenant(&slug, ready).await;
    assert_eq!(key(&secret(&s, &slug).await, "password").unwrap(), new, "one rotation per request");

    // A restart in the middle: the server is unreachable after the new password was kept
    // (step 1), the operator stops, and the server gets the new password while it is down (a
    // crash after step 2). The operator that comes back finishes with that password.
    write_postgres_admin_secret(&s.client(), &admin, closed_port()).await;
    request_rotation(&s, &slug, "second").await;
    let t = s.wait_tenant(&slug, |t| rotation_message(t).contains("second")).await;
    assert!(rotation_message(&t).contains("unreachable"), "{}", rotation_message(&t));
    s.stop_operator().await;
    let kept = secret(&s, &slug).await;
    assert_eq!(annotation(&kept, "tenancy.platform.dev/credentials-rotation-pending").as_deref(), Some("second"));
    let pending = key(&kept, "pending-password").expect("the new password is kept before the server has it");
    assert_eq!(key(&kept, "password").unwrap(), new, "applications still read the working password");
    assert!(logs_in(&admin, &names, &new).await, "the server was not changed yet");
    let verifier = postgres_protocol::password::scram_sha_256(pending.as_bytes());
    admin_session(&admin)
        .await
        .batch_execute(&format!("ALTER ROLE {} PASSWORD '{verifier}'", quote_ident(names.login_role())))
        .await
        .unwrap();
    assert!(!logs_in(&admin, &names, &new).await, "the crash left the server ahead of the Secret's password");
    write_postgres_admin_secret(&s.client(), &admin, admin.port).await;
    s.start_operator();
    s.wait_tenant(&slug, rotated("second")).await;
    let finished = secret(&s, &slug).await;
    assert_eq!(key(&finished, "password").unwrap(), pending, "the kept password, not a third one");
    assert_eq!(key(&finished, "pending-password"), None);
    assert!(logs_in(&admin, &names, &pending).await);
    assert!(!logs_in(&admin, &names, &new).await);
    s.cleanup().await;
}

/// The CloudNativePG CRD installed (on the fake at start, on the local control plane by its
/// stand-in), as in `e2e_databases`; `None` on another cluster.
async fn with_cnpg_crd() -> Option<(Scenario, Option<tokio::sync::MutexGuard<'static, ()>>)> {
    match Target::from_env() {
        Target::Fake => {
            let fake = FakeApiServer::builder().crd(CNPG_CLUSTER_CRD).start().await;
            Some((Scenario::start_on(TestEnv::with_fake(fake), example_config()).await, None))
        }
        Target::LocalControlPlane => {
            let guard = CNPG_CRD_LOCK.lock().await;
            let env = TestEnv::new().await;
            CloudNativePgStandIn::install_crd(&env.client()).await;
            Some((Scenario::start_on(env, example_config()).await, Some(guard)))
        }
        Target::Kubeconfig(_) => None,
    }
}

#[tokio::test]
async fn cloudnative_pg_rotation_goes_through_the_role_password_secret_and_waits_while_suspended() {
    let Some((s, _crd)) = with_cnpg_crd().await else {
        return support::skipped_on_real_cluster("cloudnative_pg_rotation", "installing the CloudNativePG CRD is not ours to decide there");
    };
    let slug = s.slug("cnpgrot");
    let (namespace, cluster, role) = (format!("{slug}-dev"), format!("{slug}-db"), slug.replace('-', "_"));
    s.create_tenant(&tenant(&slug, json!({"database": {"provider": "cloudnative-pg"}}))).await;
    s.wait_for("the Cluster", || async {
        Api::<DynamicObject>::namespaced_with(s.client(), &namespace, &CloudNativePgStandIn::cluster_resource()).get(&cluster).await.is_ok()
    })
    .await;
    CloudNativePgStandIn::report_ready(&s.client(), &namespace, &cluster).await;
    s.wait_tenant(&slug, ready).await;
    let clusters = Api::<DynamicObject>::namespaced_with(s.client(), &namespace, &CloudNativePgStandIn::cluster_resource());
    let managed = clusters.get(&cluster).await.unwrap().data["spec"]["managed"]["roles"][0].clone();
    assert_eq!(managed["passwordSecret"]["name"], format!("{slug}-db-credentials"), "{managed}");
    assert_eq!(managed["login"], true);
    let original = key(&secret(&s, &slug).await, "password").unwrap();

    // Suspended: the request waits, and status says so; nothing is changed.
    s.patch_spec(&slug, json!({"suspend": true})).await;
    request_rotation(&s, &slug, "t1").await;
    let t = s.wait_tenant(&slug, |t| rotation_message(t).contains("suspended")).await;
    assert!(rotation_message(&t).contains("t1"), "{}", rotation_message(&t));
    assert_eq!(key(&secret(&s, &slug).await, "password").unwrap(), original);

    // Resumed: the Secret gets the new password; the rotation is complete once CloudNativePG
    // reports that version of the Secret applied to the role.
    s.patch_spec(&slug, json!({"suspend": false})).await;
    let t = s.wait_tenant(&slug, |t| rotation_message(t).contains("waiting for CloudNativePG")).await;
    assert_ne!(dev_database(&t).and_then(|d| d.rotation_request).as_deref(), Some("t1"));
    let rotated_secret = secret(&s, &slug).await;
    let new = key(&rotated_secret, "password").unwrap();
    assert_ne!(new, original);
    assert!(key(&rotated_secret, "uri").unwrap().contains(&new));
    assert_eq!(annotation(&rotated_secret, "tenancy.platform.dev/credentials-rotation").as_deref(), Some("t1"));
    CloudNativePgStandIn::report_password_applied(&s.client(), &namespace, &cluster, &role).await;
    s.wait_tenant(&slug, rotated("t1")).await;
    assert_eq!(key(&secret(&s, &slug).await, "password").unwrap(), new, "rotated once");
    s.cleanup().await;
}

#[tokio::test]
async fn the_statefulset_provider_refuses_a_rotation_it_cannot_do_safely() {
    let s = Scenario::start().await;
    let slug = s.slug("stsrot");
    s.create_tenant(&tenant(&slug, json!({"database": {"provider": "statefulset"}}))).await;
    s.wait_for("the credentials Secret", || async {
        Api::<Secret>::namespaced(s.client(), &format!("{slug}-dev"))
            .get_opt(&format!("{slug}-db-credentials"))
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    let original = key(&secret(&s, &slug).await, "password").unwrap();
    request_rotation(&s, &slug, "t1").await;
    let t = s.wait_tenant(&slug, |t| rotation_message(t).contains("refused")).await;
    assert!(rotation_message(&t).contains("NetworkPolicy"), "{}", rotation_message(&t));
    let kept = secret(&s, &slug).await;
    assert_eq!(key(&kept, "password").unwrap(), original, "the Secret and the server stay in step");
    assert_eq!(key(&kept, "pending-password"), None);
    s.cleanup().await;
}
