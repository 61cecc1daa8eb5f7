//! Desired database objects per environment (SPEC §4) and the credentials Secret layout.
//!
//! Builders never generate passwords: the controller reads the existing credentials Secret or,
//! only when there is none, generates one, and passes it in.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec},
        core::v1::{
            Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
            PodTemplateSpec, Probe, Secret, SecretKeySelector, Service, ServicePort, ServiceSpec, VolumeMount, VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::api::ObjectMeta;
use serde_json::json;

use super::{tenant_labels, ChildKind, DesiredObject};
use crate::{
    config::Config,
    naming,
    types::{DatabaseProvider, Environment, Tenant},
};

pub const POSTGRES_PORT: u16 = 5432;
/// Volume claim template of the database StatefulSet; PVCs are `data-<slug>-db-0`.
pub const DATA_VOLUME: &str = "data";
pub const SECRET_KEYS: [&str; 7] = ["username", "password", "host", "port", "dbname", "uri", "jdbc-uri"];

/// Where applications reach an environment's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub username: String,
    /// The server demands TLS (an external server with `sslmode: require`).
    pub require_tls: bool,
}

impl ConnectionInfo {
    fn uri_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `postgresql://user:password@host:port/dbname[?sslmode=require]`, percent-encoded.
    pub fn uri(&self, password: &str) -> String {
        let mut uri = format!(
            "postgresql://{}:{}@{}:{}/{}",
            percent_encode(&self.username),
            percent_encode(password),
            self.uri_host(),
            self.port,
            percent_encode(&self.dbname)
        );
        if self.require_tls {
            uri.push_str("?sslmode=require");
        }
        uri
    }

    /// `jdbc:postgresql://host:port/dbname?user=...&password=...`: the PostgreSQL JDBC driver
    /// takes credentials as parameters, not in the authority.
    pub fn jdbc_uri(&self, password: &str) -> String {
        let mut uri = format!(
            "jdbc:postgresql://{}:{}/{}?user={}&password={}",
            self.uri_host(),
            self.port,
            percent_encode(&self.dbname),
            percent_encode(&self.username),
            percent_encode(password)
        );
        if self.require_tls {
            uri.push_str("&sslmode=require");
        }
        uri
    }

    /// The data of the tenant's credentials Secret (SPEC §4).
    pub fn secret_data(&self, password: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("username".to_owned(), self.username.clone()),
            ("password".to_owned(), password.to_owned()),
            ("host".to_owned(), self.host.clone()),
            ("port".to_owned(), self.port.to_string()),
            ("dbname".to_owned(), self.dbname.clone()),
            ("uri".to_owned(), self.uri(password)),
            ("jdbc-uri".to_owned(), self.jdbc_uri(password)),
        ])
    }
}

/// The provider a Tenant uses: its own choice, else the configured default.
pub fn provider_of(tenant: &Tenant, config: &Config) -> DatabaseProvider {
    tenant.spec.database.as_ref().and_then(|db| db.provider).unwrap_or(config.database.default_provider)
}

pub struct ProviderObjects {
    pub objects: Vec<DesiredObject>,
    pub connection: Option<ConnectionInfo>,
}

/// Objects of the database of one environment, except the credentials Secret (which needs the
/// password) and anything living outside the cluster (the `external` provider).
pub fn provider_objects(tenant: &Tenant, slug: &str, env: Environment, provider: DatabaseProvider, config: &Config) -> ProviderObjects {
    let namespace = naming::namespace_name(slug, env);
    let name = naming::database_name(slug);
    match provider {
        DatabaseProvider::None | DatabaseProvider::External => ProviderObjects { objects: Vec::new(), connection: None },
        DatabaseProvider::Statefulset => ProviderObjects {
            objects: vec![
                DesiredObject::from_typed(ChildKind::Service, &statefulset_service(slug, env)),
                DesiredObject::from_typed(ChildKind::StatefulSet, &statefulset(tenant, slug, env, config)),
            ],
            connection: Some(ConnectionInfo {
                host: format!("{name}.{namespace}.svc"),
                port: POSTGRES_PORT,
                dbname: naming::sql_database_name(slug, env),
                username: naming::sql_user_name(slug),
                require_tls: false,
            }),
        },
        DatabaseProvider::CloudnativePg => ProviderObjects {
            objects: vec![cnpg_cluster(tenant, slug, env, config)],
            // CloudNativePG's read-write Service is `<cluster>-rw`.
            connection: Some(ConnectionInfo {
                host: format!("{name}-rw.{namespace}.svc"),
                port: POSTGRES_PORT,
                dbname: naming::sql_database_name(slug, env),
                username: naming::sql_user_name(slug),
                require_tls: false,
            }),
        },
    }
}

fn storage(tenant: &Tenant, default: &Quantity) -> Quantity {
    tenant.spec.database.as_ref().and_then(|db| db.storage.clone()).unwrap_or_else(|| default.clone())
}

fn storage_class(tenant: &Tenant, default: &Option<String>) -> Option<String> {
    tenant.spec.database.as_ref().and_then(|db| db.storage_class_name.clone()).or_else(|| default.clone())
}

fn selector_labels(slug: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "postgresql".to_string()),
        ("app.kubernetes.io/instance".to_string(), naming::database_name(slug)),
    ])
}

fn db_labels(slug: &str, env: Environment) -> BTreeMap<String, String> {
    let mut labels = tenant_labels(slug, Some(env));
    labels.extend(selector_labels(slug));
    labels.insert(naming::LABEL_COMPONENT.to_string(), "database".to_string());
    labels
}

/// Metadata of a database object in an environment namespace.
fn db_meta(name: String, slug: &str, env: Environment) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(naming::namespace_name(slug, env)),
        labels: Some(db_labels(slug, env)),
        ..ObjectMeta::default()
    }
}

fn statefulset_service(slug: &str, env: Environment) -> Service {
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
        resources: sts_config.resources.clone(),
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
                spec: Some(PodSpec { containers: vec![container], ..PodSpec::default() }),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn cnpg_cluster(tenant: &Tenant, slug: &str, env: Environment, config: &Config) -> DesiredObject {
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
    });
    if let Some(image) = &cnpg.image_name {
        spec["imageName"] = json!(image);
    }
    let object = json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": { "name": name, "namespace": namespace, "labels": db_labels(slug, env) },
        "spec": spec,
    });
    DesiredObject { kind: ChildKind::CnpgCluster, namespace: Some(namespace), name, object }
}

/// The credentials Secret of one environment. Type `kubernetes.io/basic-auth` so that
/// CloudNativePG accepts it as its bootstrap secret; the extra keys are allowed by that type.
pub fn credentials_secret(slug: &str, env: Environment, connection: &ConnectionInfo, password: &str) -> Secret {
    let data = connection.secret_data(password);
    Secret {
        metadata: db_meta(naming::database_secret_name(slug), slug, env),
        type_: Some("kubernetes.io/basic-auth".to_string()),
        string_data: None,
        data: Some(data.into_iter().map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes()))).collect()),
        ..Secret::default()
    }
}

/// Percent-encode everything outside RFC 3986's unreserved set, so any password fits a URI.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> ConnectionInfo {
        ConnectionInfo {
            host: "acme-db.acme-dev.svc".into(),
            port: 5432,
            dbname: "acme_dev".into(),
            username: "acme".into(),
            require_tls: false,
        }
    }

    fn secret_data(secret: &Secret) -> BTreeMap<String, String> {
        secret.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap_or_default())).collect()
    }

    #[test]
    fn credentials_secret_has_every_key_and_uri_formats() {
        let secret = credentials_secret("acme", Environment::Dev, &connection(), "s3cret");
        let data = secret_data(&secret);
        let keys: Vec<_> = data.keys().map(String::as_str).collect();
        let mut expected = SECRET_KEYS.to_vec();
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(data["uri"], "postgresql://acme:s3cret@acme-db.acme-dev.svc:5432/acme_dev");
        assert_eq!(data["jdbc-uri"], "jdbc:postgresql://acme-db.acme-dev.svc:5432/acme_dev?user=acme&password=s3cret");
        assert_eq!(data["port"], "5432");
        assert_eq!(secret.metadata.name.as_deref(), Some("acme-db-credentials"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("acme-dev"));
        assert!(secret.metadata.owner_references.is_none(), "database secrets never carry owner references");
    }

    #[test]
    fn tls_servers_and_ipv6_hosts_in_uris() {
        let info = ConnectionInfo {
            host: "db.example".into(),
            port: 5432,
            dbname: "acme_dev".into(),
            username: "acme_dev_app".into(),
            require_tls: true,
        };
        let password = "a:b@c/d?e&f";
        assert_eq!(info.uri(password), "postgresql://acme_dev_app:a%3Ab%40c%2Fd%3Fe%26f@db.example:5432/acme_dev?sslmode=require");
        assert_eq!(
            info.jdbc_uri(password),
            "jdbc:postgresql://db.example:5432/acme_dev?user=acme_dev_app&password=a%3Ab%40c%2Fd%3Fe%26f&sslmode=require"
        );
        let v6 = ConnectionInfo { host: "::1".into(), require_tls: false, ..info };
        assert_eq!(v6.uri("p"), "postgresql://acme_dev_app:p@[::1]:5432/acme_dev");
    }

    #[test]
    fn uri_escapes_reserved_characters_in_passwords() {
        let data = secret_data(&credentials_secret("acme", Environment::Dev, &connection(), "p@ss:w/rd?&"));
        assert_eq!(data["password"], "p@ss:w/rd?&");
        assert_eq!(data["uri"], "postgresql://acme:p%40ss%3Aw%2Frd%3F%26@acme-db.acme-dev.svc:5432/acme_dev");
    }
}
