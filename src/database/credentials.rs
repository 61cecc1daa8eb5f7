//! The credentials Secret every provider fills the same way (SPEC §4): where applications reach
//! the environment's database and with which password.
//!
//! Builders never generate passwords: the controller reads the existing credentials Secret or,
//! only when there is none, generates one with [`generate_password`] and passes it in.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use rand::distr::{Alphanumeric, SampleString};

use super::db_meta;
use crate::{naming, types::Environment};

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

/// A password from the thread-local CSPRNG (ChaCha, seeded by the OS).
pub fn generate_password(length: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), length)
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
