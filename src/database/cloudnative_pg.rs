//! The `cloudnative-pg` provider: a CloudNativePG `Cluster` per environment, bootstrapped
//! from the tenant's credentials Secret; CloudNativePG runs the database.

use serde_json::json;

use super::{db_labels, in_cluster_connection, storage, storage_class, ProviderObjects};
use crate::{
    config::Config,
    desired::{ChildKind, DesiredObject},
    naming,
    types::{Environment, Problem, Reason, Tenant},
};

/// The Cluster; reachable through CloudNativePG's read-write Service `<cluster>-rw`.
pub fn desired(tenant: &Tenant, slug: &str, env: Environment, config: &Config) -> Result<ProviderObjects, serde_json::Error> {
    let namespace = naming::namespace_name(slug, env);
    Ok(ProviderObjects {
        objects: vec![cluster(tenant, slug, env, config)],
        connection: Some(in_cluster_connection(slug, env, format!("{}-rw.{namespace}.svc", naming::database_name(slug)))),
    })
}

/// Ready when CloudNativePG reports a ready instance; its phase says what it is doing.
pub fn readiness(observed: Option<&serde_json::Value>) -> Result<(), Problem> {
    let Some(cluster) = observed else {
        return Err(Problem::new(Reason::DatabaseNotReady, "CloudNativePG Cluster not created yet"));
    };
    let ready = cluster.pointer("/status/readyInstances").and_then(|v| v.as_i64()).unwrap_or(0);
    if ready >= 1 {
        return Ok(());
    }
    let phase = cluster.pointer("/status/phase").and_then(|v| v.as_str()).unwrap_or("");
    let message = if phase.is_empty() { "waiting for CloudNativePG".to_string() } else { format!("CloudNativePG: {phase}") };
    Err(Problem::new(Reason::DatabaseNotReady, message))
}

/// Whether CloudNativePG reports the password of `role` applied from the Secret version
/// `secret_version` (`status.managedRolesStatus.passwordStatus.<role>.resourceVersion`).
pub fn password_applied(observed: Option<&serde_json::Value>, role: &str, secret_version: &str) -> bool {
    observed
        .and_then(|cluster| cluster.pointer("/status/managedRolesStatus/passwordStatus")?.get(role)?.get("resourceVersion")?.as_str())
        .is_some_and(|applied| applied == secret_version)
}

fn cluster(tenant: &Tenant, slug: &str, env: Environment, config: &Config) -> DesiredObject {
    let cnpg = &config.database.cloudnative_pg;
    let name = naming::database_name(slug);
    let namespace = naming::namespace_name(slug, env);
    let mut storage_spec = json!({ "size": storage(tenant, &cnpg.storage).0 });
    if let Some(class) = storage_class(tenant, &None) {
        storage_spec["storageClass"] = json!(class);
    }
    let mut spec = json!({
        "instances": cnpg.instances,
        "storage": storage_spec,
        "bootstrap": { "initdb": {
            "database": naming::sql_database_name(slug, env),
            "owner": naming::sql_user_name(slug),
            "secret": { "name": naming::database_secret_name(slug) },
        }},
        // The owner role is also a managed role whose password CloudNativePG keeps equal to
        // the credentials Secret's: a rotated password reaches the server through it.
        "managed": { "roles": [{
            "name": naming::sql_user_name(slug),
            "ensure": "present",
            "login": true,
            "passwordSecret": { "name": naming::database_secret_name(slug) },
        }]},
    });
    if let Some(image) = &cnpg.image_name {
        spec["imageName"] = json!(image);
    }
    // The tenant namespace profile: pods pull always, and set the resources its quota covers.
    // CloudNativePG's pods comply with Pod Security `restricted` by themselves.
    if config.namespaces.require_image_pull_always {
        spec["imagePullPolicy"] = json!("Always");
    }
    spec["resources"] = serde_json::to_value(cnpg.resources.clone().unwrap_or_else(super::default_resources)).unwrap_or_default();
    let object = json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": { "name": name, "namespace": namespace, "labels": db_labels(slug, env) },
        "spec": spec,
    });
    DesiredObject { kind: ChildKind::CnpgCluster, namespace: Some(namespace), name, object }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_counts_as_applied_for_the_secret_version_cloudnative_pg_reports() {
        let cluster =
            json!({"status": {"managedRolesStatus": {"passwordStatus": {"acme": {"transactionID": 7, "resourceVersion": "42"}}}}});
        assert!(password_applied(Some(&cluster), "acme", "42"));
        assert!(!password_applied(Some(&cluster), "acme", "43"), "an older version");
        assert!(!password_applied(Some(&cluster), "other", "42"));
        assert!(!password_applied(Some(&json!({"status": {}})), "acme", "42"));
        assert!(!password_applied(None, "acme", "42"));
    }
}
