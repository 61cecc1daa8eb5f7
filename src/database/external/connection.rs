//! The admin connection (from the Secret's data or a URL), TLS, connecting with time limits,
//! and the tenant login that doubles as readiness check and ownership proof.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::error::{classify, Who};
use super::{ExternalDbError, ExternalNames};

/// How long establishing one connection (TCP, TLS and authentication) may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for a whole provider call, so a server that stops answering mid-way cannot
/// hold a reconcile forever (statement_timeout only helps while the server is alive).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);
/// Server-side settings of every session this module opens: time limits, and a
/// `search_path` that holds nothing a tenant can create in (`pg_temp` named last, or it would
/// be searched first for relations), so no unqualified name can reach a tenant's object (see
/// `queries`). Start-up options win over the `ALTER DATABASE/ROLE … SET` defaults a tenant
/// may set on its own database or role.
const SESSION_OPTIONS: &str = "-c statement_timeout=60000 -c lock_timeout=30000 \
     -c idle_in_transaction_session_timeout=60000 -c standard_conforming_strings=on \
     -c search_path=pg_catalog,pg_temp";

/// Whether the admin connection uses TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    /// TLS with the server certificate verified against the trusted roots and the host name
    /// (libpq's `verify-full`; a stricter reading of `require`, so a man in the middle cannot
    /// collect the admin password).
    #[default]
    Require,
}

/// Connection to an existing PostgreSQL server with a role allowed to create roles and
/// databases (a superuser, or a CREATEROLE CREATEDB role as managed services hand out).
#[derive(Clone)]
pub struct AdminConnection {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    /// Database the admin session opens; `postgres` unless the secret says otherwise.
    pub dbname: String,
    pub ssl_mode: SslMode,
    /// PEM CA bundle to trust instead of the system roots (secret key `sslrootcert`).
    pub root_cert_pem: Option<String>,
    pub connect_timeout: Duration,
}

impl fmt::Debug for AdminConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConnection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("dbname", &self.dbname)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert_pem", &self.root_cert_pem.as_ref().map(|_| "<set>"))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl AdminConnection {
    /// Reads the admin Secret's data: `host`, `port`, `username`, `password`, optional `dbname`
    /// (default `postgres`), `sslmode` (`disable`, or `require`/`verify-ca`/`verify-full`, all
    /// verifying; default `require`) and `sslrootcert` (PEM).
    pub fn from_secret_data(data: &BTreeMap<String, String>) -> Result<Self, ExternalDbError> {
        // Secrets made with `kubectl create secret --from-file` often end in a newline; that is
        // never meaningful in these keys. The password is taken verbatim.
        let text = |key: &'static str| data.get(key).map(|value| value.trim());
        let required = |key: &'static str| match text(key) {
            Some(value) if !value.is_empty() => Ok(value.to_owned()),
            Some(_) => Err(secret_error(key, "is empty")),
            None => Err(secret_error(key, "is missing")),
        };

        let host = required("host")?;
        let port = parse_port(&required("port")?)?;
        let username = required("username")?;
        let password = match data.get("password") {
            Some(value) if !value.is_empty() => value.clone(),
            Some(_) => return Err(secret_error("password", "is empty")),
            None => return Err(secret_error("password", "is missing")),
        };
        let dbname = match text("dbname") {
            Some(value) if !value.is_empty() => value.to_owned(),
            _ => "postgres".to_owned(),
        };
        let ssl_mode = match text("sslmode") {
            None | Some("") => SslMode::default(),
            Some(value) => parse_ssl_mode(value)?,
        };
        let root_cert_pem = data.get("sslrootcert").filter(|pem| !pem.trim().is_empty()).cloned();

        let admin = Self { host, port, username, password, dbname, ssl_mode, root_cert_pem, connect_timeout: DEFAULT_CONNECT_TIMEOUT };
        admin.validate()?;
        Ok(admin)
    }

    /// Parses a `postgresql://user:password@host:port/dbname?sslmode=...` URL. A missing or
    /// `prefer`/`allow` sslmode means [`SslMode::Require`]: this module never falls back to
    /// clear text silently.
    pub fn from_url(url: &str) -> Result<Self, ExternalDbError> {
        let config: tokio_postgres::Config = url.parse().map_err(|err| secret_error("url", &format!("cannot be parsed: {err}")))?;
        let host = match config.get_hosts() {
            [tokio_postgres::config::Host::Tcp(host)] => host.clone(),
            [] => return Err(secret_error("host", "is missing")),
            _ => return Err(secret_error("host", "must be exactly one TCP host name or address")),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let username = config.get_user().ok_or_else(|| secret_error("username", "is missing"))?.to_owned();
        let password = config.get_password().ok_or_else(|| secret_error("password", "is missing"))?;
        let password = String::from_utf8(password.to_vec()).map_err(|_| secret_error("password", "is not valid UTF-8"))?;
        let ssl_mode = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            _ => SslMode::Require,
        };
        let admin = Self {
            host,
            port,
            username,
            password,
            dbname: config.get_dbname().unwrap_or("postgres").to_owned(),
            ssl_mode,
            root_cert_pem: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        };
        admin.validate()?;
        Ok(admin)
    }

    fn validate(&self) -> Result<(), ExternalDbError> {
        if self.port == 0 {
            return Err(secret_error("port", "must be between 1 and 65535"));
        }
        // A NUL byte cannot be sent in the startup message; catch it here with the key's name.
        for (key, value) in [("host", &self.host), ("username", &self.username), ("password", &self.password), ("dbname", &self.dbname)] {
            if value.contains('\0') {
                return Err(secret_error(key, "contains a NUL character"));
            }
        }
        Ok(())
    }

    /// `host:port`, for messages.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn secret_error(key: &'static str, message: &str) -> ExternalDbError {
    ExternalDbError::InvalidAdminSecret { key, message: message.to_owned() }
}

fn parse_port(value: &str) -> Result<u16, ExternalDbError> {
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(secret_error("port", &format!("`{value}` is not a port number (1-65535)"))),
    }
}

fn parse_ssl_mode(value: &str) -> Result<SslMode, ExternalDbError> {
    match value.to_ascii_lowercase().as_str() {
        "disable" => Ok(SslMode::Disable),
        "require" | "verify-ca" | "verify-full" => Ok(SslMode::Require),
        other => Err(secret_error("sslmode", &format!("`{other}` is not supported; use disable, require, verify-ca or verify-full"))),
    }
}

pub(super) async fn within_deadline<T>(
    admin: &AdminConnection,
    operation: impl Future<Output = Result<T, ExternalDbError>>,
) -> Result<T, ExternalDbError> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation).await.unwrap_or_else(|_| {
        Err(ExternalDbError::ServerUnreachable {
            server: admin.server(),
            message: format!("no answer within {}s", OPERATION_TIMEOUT.as_secs()),
        })
    })
}

/// Logs in as the tenant's login role and runs a query.
pub(super) async fn login(admin: &AdminConnection, names: &ExternalNames, password: &str) -> Result<(), ExternalDbError> {
    let who = Who::Tenant { role: names.login_role(), database: names.database() };
    let client = connect(admin, names.login_role(), password, names.database(), who).await?;
    client.simple_query("SELECT 1").await.map_err(|err| classify(admin, who, err, "run a query as the login role"))?;
    Ok(())
}

/// Whether the login role accepts `password`. PostgreSQL checks the password before it looks
/// at the database, so "database does not exist" and "permission denied for database" prove
/// the password as well as a session does (this holds only where the server asks for
/// passwords at all: under `trust` authentication any password would pass).
pub(super) async fn authenticates(admin: &AdminConnection, names: &ExternalNames, password: &str) -> Result<bool, ExternalDbError> {
    let who = Who::Tenant { role: names.login_role(), database: names.database() };
    match open(admin, names.login_role(), password, names.database()).await? {
        Ok(_client) => Ok(true),
        Err(err) => match err.code() {
            Some(code) if code == &SqlState::INVALID_CATALOG_NAME || code == &SqlState::INSUFFICIENT_PRIVILEGE => Ok(true),
            Some(code) if code == &SqlState::INVALID_PASSWORD || code == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION => Ok(false),
            _ => Err(classify(admin, who, err, "check the login role's password")),
        },
    }
}

pub(super) async fn connect(
    admin: &AdminConnection,
    user: &str,
    password: &str,
    dbname: &str,
    who: Who<'_>,
) -> Result<Client, ExternalDbError> {
    open(admin, user, password, dbname).await?.map_err(|err| classify(admin, who, err, "connect"))
}

/// Opens a session. The outer error is ours (time limit, TLS set-up); the inner one is the
/// server's answer, left to the caller to interpret.
async fn open(
    admin: &AdminConnection,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<Result<Client, tokio_postgres::Error>, ExternalDbError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&admin.host)
        .port(admin.port)
        .user(user)
        .password(password)
        .dbname(dbname)
        .application_name("tenant-operator")
        .options(SESSION_OPTIONS)
        .connect_timeout(admin.connect_timeout)
        .keepalives_idle(Duration::from_secs(30));

    // connect_timeout covers only the TCP handshake; a peer that accepts and then stays
    // silent (a stuck proxy, a frozen server) is caught by this outer limit.
    let timed_out = || ExternalDbError::ServerUnreachable {
        server: admin.server(),
        message: format!("no connection within {}s", admin.connect_timeout.as_secs_f32()),
    };
    let limit = admin.connect_timeout + Duration::from_millis(500);
    match admin.ssl_mode {
        SslMode::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let connected = tokio::time::timeout(limit, config.connect(tokio_postgres::NoTls)).await.map_err(|_| timed_out())?;
            Ok(connected.map(|(client, connection)| {
                tokio::spawn(drive(connection));
                client
            }))
        }
        SslMode::Require => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tls_connector(admin)?;
            let connected = tokio::time::timeout(limit, config.connect(tls)).await.map_err(|_| timed_out())?;
            Ok(connected.map(|(client, connection)| {
                tokio::spawn(drive(connection));
                client
            }))
        }
    }
}

async fn drive<F: Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(err) = connection.await {
        tracing::debug!(error = %err, "external database connection ended with an error");
    }
}

fn tls_connector(admin: &AdminConnection) -> Result<tokio_postgres_rustls::MakeRustlsConnect, ExternalDbError> {
    let tls_error = |message: String| ExternalDbError::Tls { server: admin.server(), message };
    let mut roots = rustls::RootCertStore::empty();
    match &admin.root_cert_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|err| tls_error(format!("sslrootcert is not valid PEM: {err}")))?;
                roots.add(cert).map_err(|err| tls_error(format!("sslrootcert holds an unusable certificate: {err}")))?;
            }
        }
        None => {
            // Individual unreadable system certificates are skipped, as every TLS client does.
            let native = rustls_native_certs::load_native_certs();
            let _ = roots.add_parsable_certificates(native.certs);
        }
    }
    if roots.is_empty() {
        return Err(tls_error(
            "no trusted CA certificate (set sslrootcert in the admin secret or install system CA certificates)".to_owned(),
        ));
    }
    // An explicit provider: the process-wide default panics when more than one is compiled in.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|err| tls_error(format!("TLS configuration: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn admin_secret_parsing() {
        let full = [("host", "db.example\n"), ("port", "5433"), ("username", "admin"), ("password", "p w\n")];
        let admin = AdminConnection::from_secret_data(&secret(&full)).unwrap();
        assert_eq!(admin.host, "db.example");
        assert_eq!(admin.port, 5433);
        assert_eq!(admin.password, "p w\n");
        assert_eq!(admin.dbname, "postgres");
        assert_eq!(admin.ssl_mode, SslMode::Require);
        assert!(!format!("{admin:?}").contains("p w"));

        let mut with_options = secret(&full);
        with_options.insert("dbname".into(), "defaultdb".into());
        with_options.insert("sslmode".into(), "disable".into());
        let admin = AdminConnection::from_secret_data(&with_options).unwrap();
        assert_eq!((admin.dbname.as_str(), admin.ssl_mode), ("defaultdb", SslMode::Disable));

        for (key, value, expected_key) in [
            ("host", None, "host"),
            ("host", Some(" "), "host"),
            ("port", None, "port"),
            ("port", Some("0"), "port"),
            ("port", Some("70000"), "port"),
            ("port", Some("x"), "port"),
            ("username", None, "username"),
            ("password", None, "password"),
            ("password", Some(""), "password"),
            ("password", Some("a\0b"), "password"),
            ("sslmode", Some("prefer"), "sslmode"),
        ] {
            let mut data = secret(&full);
            match value {
                Some(value) => data.insert(key.into(), value.into()),
                None => data.remove(key),
            };
            match AdminConnection::from_secret_data(&data) {
                Err(ExternalDbError::InvalidAdminSecret { key, .. }) => {
                    assert_eq!(key, expected_key)
                }
                other => panic!("{key}={value:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn admin_url_parsing() {
        let admin = AdminConnection::from_url("postgresql://adm:s%40cret@127.0.0.1:5999/postgres?sslmode=disable").unwrap();
        assert_eq!((admin.username.as_str(), admin.password.as_str(), admin.port), ("adm", "s@cret", 5999));
        assert_eq!(admin.ssl_mode, SslMode::Disable);
        assert_eq!(AdminConnection::from_url("postgresql://a:b@h/d").unwrap().ssl_mode, SslMode::Require);
        assert!(AdminConnection::from_url("postgresql://h/d").is_err());
    }

    #[test]
    fn ipv6_servers_are_bracketed_in_messages() {
        let mut admin = AdminConnection::from_url("postgresql://a:b@127.0.0.1:5432/d").unwrap();
        assert_eq!(admin.server(), "127.0.0.1:5432");
        admin.host = "::1".into();
        assert_eq!(admin.server(), "[::1]:5432");
    }
}
