//! The `statefulset` provider: a PostgreSQL StatefulSet `<slug>-db` with one replica, its
//! Service and the PersistentVolumeClaim of its volume claim template, per environment.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec},
        core::v1::{
            Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
            PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector, SecurityContext, Service, ServicePort,
            ServiceSpec, VolumeMount, VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::api::ObjectMeta;

use super::{
    db_labels, db_meta, in_cluster_connection, selector_labels, storage, storage_class, ProviderObjects, DATA_VOLUME, POSTGRES_PORT,
};
use crate::{
    config::Config,
    desired::{tenant_labels, ChildKind, DesiredObject},
    naming,
    types::{Environment, Problem, Reason, Tenant},
};

/// User and group of the `postgres` user in the official PostgreSQL images.
const POSTGRES_UID: i64 = 999;

/// The StatefulSet and its Service; reachable at `<slug>-db.<namespace>.svc`.
pub fn desired(tenant: &Tenant, slug: &str, env: Environment, config: &Config) -> Result<ProviderObjects, serde_json::Error> {
    let namespace = naming::namespace_name(slug, env);
    Ok(ProviderObjects {
        objects: vec![
            DesiredObject::from_typed(ChildKind::Service, &service(slug, env))?,
            DesiredObject::from_typed(ChildKind::StatefulSet, &statefulset(tenant, slug, env, config))?,
        ],
        connection: Some(in_cluster_connection(slug, env, format!("{}.{namespace}.svc", naming::database_name(slug)))),
    })
}

/// Ready when the StatefulSet reports a ready replica.
pub fn readiness(observed: Option<&serde_json::Value>) -> Result<(), Problem> {
    let Some(statefulset) = observed else {
        return Err(Problem::new(Reason::DatabaseNotReady, "StatefulSet not created yet"));
    };
    let ready = statefulset.pointer("/status/readyReplicas").and_then(|v| v.as_i64()).unwrap_or(0);
    if ready >= 1 {
        Ok(())
    } else {
        Err(Problem::new(Reason::DatabaseNotReady, "waiting for the PostgreSQL pod to become ready"))
    }
}

fn service(slug: &str, env: Environment) -> Service {
    Service {
        metadata: db_meta(naming::database_name(slug), slug, env),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(slug)),
            ports: Some(vec![ServicePort {
                name: Some("postgresql".to_string()),
                port: i32::from(POSTGRES_PORT),
                target_port: Some(IntOrString::String("postgresql".to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret.to_string(), key: key.to_string(), optional: None }),
            ..EnvVarSource::default()
        }),
        value: None,
    }
}

fn statefulset(tenant: &Tenant, slug: &str, env: Environment, config: &Config) -> StatefulSet {
    let sts_config = &config.database.statefulset;
    let secret = naming::database_secret_name(slug);
    let container = Container {
        name: "postgresql".to_string(),
        image: Some(sts_config.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("postgresql".to_string()),
            container_port: i32::from(POSTGRES_PORT),
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        env: Some(vec![
            secret_env("POSTGRES_USER", &secret, "username"),
            secret_env("POSTGRES_PASSWORD", &secret, "password"),
            secret_env("POSTGRES_DB", &secret, "dbname"),
            EnvVar { name: "PGDATA".to_string(), value: Some("/var/lib/postgresql/data/pgdata".to_string()), value_from: None },
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: DATA_VOLUME.to_string(),
            mount_path: "/var/lib/postgresql/data".to_string(),
            ..VolumeMount::default()
        }]),
        resources: Some(sts_config.resources.clone().unwrap_or_else(super::default_resources)),
        // The tenant namespace profile refuses other pull policies (a node's image cache must
        // not serve an image to a pod that could not pull it).
        image_pull_policy: config.namespaces.require_image_pull_always.then(|| "Always".to_string()),
        // Complies with the `restricted` Pod Security level (with the pod's seccomp profile):
        // the official image runs as the `postgres` user (999) when started as it.
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_string()]), add: None }),
            run_as_non_root: Some(true),
            run_as_user: Some(POSTGRES_UID),
            run_as_group: Some(POSTGRES_UID),
            ..SecurityContext::default()
        }),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec!["sh".into(), "-c".into(), "pg_isready -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\" -h 127.0.0.1".into()]),
            }),
            period_seconds: Some(10),
            ..Probe::default()
        }),
        ..Container::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(DATA_VOLUME.to_string()), labels: Some(tenant_labels(slug, Some(env))), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: storage_class(tenant, &sts_config.storage_class_name),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), storage(tenant, &sts_config.storage))])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    StatefulSet {
        metadata: db_meta(naming::database_name(slug), slug, env),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(naming::database_name(slug)),
            selector: LabelSelector { match_labels: Some(selector_labels(slug)), match_expressions: None },
            // The data volume outlives the StatefulSet; only the operator deletes it, under the
            // tenant's deletionPolicy.
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".to_string()),
                when_scaled: Some("Retain".to_string()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(db_labels(slug, env)), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(PodSecurityContext {
                        fs_group: Some(POSTGRES_UID),
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_string(), localhost_profile: None }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
