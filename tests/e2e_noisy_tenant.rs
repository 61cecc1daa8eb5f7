//! A noisy tenant cannot take the operator down for the others (issue 21, item 5): one
//! tenant fills its namespace with labelled ConfigMaps carrying large annotations and data,
//! forges labelled objects for another tenant in a namespace the operator does not own, and
//! creates many TenantUsers, while the operator keeps serving another tenant. The caches hold
//! none of the noise's bulk (`tenant_operator_cached_bytes`) and nothing of the forged objects.

mod support;

use std::collections::BTreeMap;

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    Api,
};
use support::{
    fixtures::{account, user, users_tenant},
    scenario::Scenario,
};
use tenant_operator::types::TenantUser;

const LABEL_TENANT: &str = "tenancy.platform.dev/tenant";

/// Annotations of 200 KB (the API server allows 256 KiB in all), under the operator's prefix
/// so that a cache keeping "the operator's annotations" would keep them.
fn loud_config_map(namespace: &str, name: &str, tenant: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(LABEL_TENANT.into(), tenant.into())])),
            annotations: Some(BTreeMap::from([
                ("tenancy.platform.dev/note".into(), "n".repeat(200_000)),
                ("tenancy.platform.dev/user".into(), "u".repeat(50_000)),
            ])),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

/// 700 KB of data (a ConfigMap may hold 1 MiB).
fn heavy_config_map(namespace: &str, name: &str, tenant: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(LABEL_TENANT.into(), tenant.into())])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("blob".into(), "d".repeat(700_000))])),
        ..ConfigMap::default()
    }
}

/// The value of one series of the operator's metrics, 0 when absent.
fn metric(s: &Scenario, series: &str) -> f64 {
    s.metrics()
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_default()
}

fn users_ready(user: &TenantUser) -> bool {
    user.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn a_noisy_tenant_does_not_take_the_operator_down_for_another() {
    const LOUD: usize = 40;
    const HEAVY: usize = 10;
    const FORGED: usize = 20;
    const USERS: usize = 150;
    let s = Scenario::start().await;
    let noisy = s.slug("noisy");
    let quiet = s.slug("quiet");
    s.create_tenant(&users_tenant(&noisy, &["dev"])).await;
    s.wait_tenant(&noisy, support::fixtures::ready).await;
    let held_before = metric(&s, "tenant_operator_cached_bytes{kind=\"ConfigMap\"}");
    let objects_before = metric(&s, "tenant_operator_cached_objects{kind=\"ConfigMap\"}");
    assert!(objects_before >= 1.0, "the cache holds the operator's tenant-config");

    // The noise: in the tenant's own namespace, and forged for the quiet tenant in a namespace
    // the operator does not own (labelled like a tenant namespace, but not created by it).
    let dev = format!("{noisy}-dev");
    let elsewhere = format!("{noisy}-elsewhere");
    let forged_ns = Namespace {
        metadata: ObjectMeta {
            name: Some(elsewhere.clone()),
            labels: Some(BTreeMap::from([(LABEL_TENANT.into(), quiet.clone())])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    s.create(&forged_ns).await.expect("create the look-alike namespace");
    let mut noise: Vec<ConfigMap> = (0..LOUD).map(|i| loud_config_map(&dev, &format!("loud-{i}"), &noisy)).collect();
    noise.extend((0..HEAVY).map(|i| heavy_config_map(&dev, &format!("heavy-{i}"), &noisy)));
    noise.extend((0..FORGED).map(|i| loud_config_map(&elsewhere, &format!("forged-{i}"), &quiet)));
    let client = s.client();
    stream::iter(noise)
        .for_each_concurrent(8, |cm| {
            let client = client.clone();
            async move {
                let namespace = cm.metadata.namespace.clone().unwrap_or_default();
                Api::<ConfigMap>::namespaced(client, &namespace)
                    .create(&PostParams::default(), &cm)
                    .await
                    .unwrap_or_else(|e| panic!("create noise ConfigMap in {namespace}: {e}"));
            }
        })
        .await;
    let users: Vec<TenantUser> =
        (0..USERS).map(|i| user(&format!("u{i}"), &noisy, &format!("u{i}@noisy.example"), &format!("u{i}"), &["Designer"], &[])).collect();
    stream::iter(users.iter()).for_each_concurrent(8, |u| s.create_user(u)).await;

    // Meanwhile another tenant is served, with a user of its own.
    // No applications: no Ingress waits for an address (a real cluster here has no ingress
    // controller).
    s.create_tenant(&users_tenant(&quiet, &["dev"])).await;
    s.wait_tenant(&quiet, support::fixtures::ready).await;
    s.create_user(&user("alice", &quiet, "alice@quiet.example", "alice", &["Designer"], &[])).await;
    s.wait_user(&quiet, "alice", users_ready).await;
    // The noisy tenant's users are served too (the last one created, and the first).
    s.wait_user(&noisy, &format!("u{}", USERS - 1), users_ready).await;
    s.wait_user(&noisy, "u0", users_ready).await;

    // How often users were reconciled, for the record: the controller's queue merges
    // repeated requests for one user, so this does not show how many were re-queued (the
    // index's unit tests do).
    let user_reconciles = metric(&s, "tenant_operator_reconciles_total{controller=\"tenantuser\"}");
    println!("TenantUser reconciles for {} users: {user_reconciles}", USERS + 1);

    // The noise in the tenant's namespace is held in compact form only (name, labels, capped
    // annotations), the forged objects not at all.
    let held = metric(&s, "tenant_operator_cached_bytes{kind=\"ConfigMap\"}") - held_before;
    let objects = metric(&s, "tenant_operator_cached_objects{kind=\"ConfigMap\"}") - objects_before;
    let per_object = held / (LOUD + HEAVY + 1) as f64;
    assert!(
        objects <= (LOUD + HEAVY + 1) as f64,
        "{objects} more ConfigMaps are held: the {FORGED} forged ones in {elsewhere} must not be"
    );
    assert!(per_object < 1024.0, "the caches hold {held} more bytes of ConfigMaps ({per_object:.0} per object)");
    assert!(
        Api::<TenantUser>::namespaced(s.client(), &account(&noisy)).list(&Default::default()).await.expect("list users").items.len()
            >= USERS
    );
    s.cleanup().await;
}

/// ConfigMaps are watched metadata only: a hand edit of a value alone (no label touched) is
/// still seen, because the editor takes the field from the operator's field set.
#[tokio::test]
async fn a_value_edited_by_hand_is_put_back_though_the_body_is_not_watched() {
    let s = Scenario::start().await;
    let slug = s.slug("body");
    s.create_tenant(&users_tenant(&slug, &["dev"])).await;
    s.wait_tenant(&slug, support::fixtures::ready).await;
    let config_maps = Api::<ConfigMap>::namespaced(s.client(), &format!("{slug}-dev"));
    let cluster = |cm: &ConfigMap| cm.data.as_ref().and_then(|d| d.get("cluster").cloned());
    let original = cluster(&config_maps.get("tenant-config").await.expect("tenant-config"));
    assert!(original.is_some());
    config_maps
        .patch("tenant-config", &PatchParams::default(), &Patch::Merge(serde_json::json!({"data": {"cluster": "hacked"}})))
        .await
        .expect("edit by hand");
    s.wait_for("the value to be put back", || async {
        config_maps.get("tenant-config").await.ok().is_some_and(|cm| cluster(&cm) == original)
    })
    .await;
    s.cleanup().await;
}
