//! `/healthz`, `/readyz` and `/metrics` over real HTTP on a loopback port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tenant_operator::http::{bind, serve_listener, HttpState, Readiness};
use tenant_operator::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Response {
    status: u16,
    content_type: String,
    body: String,
}

/// A minimal HTTP/1.1 client: the crate has no HTTP client dependency, and these endpoints
/// need nothing more than a GET with `Connection: close`.
async fn get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await.expect("response within 10s").expect("read response");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
    Response { status, content_type, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn start(state: HttpState) -> Server {
    let listener = bind(([127, 0, 0, 1], 0).into()).await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve_listener(listener, state, async {
            let _ = stopped.await;
        })
        .await
        .expect("server");
    });
    Server { addr, stop: Some(stop), task }
}

impl Server {
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("graceful shutdown within 10s").expect("server task");
    }
}

#[tokio::test]
async fn healthz_is_ok_while_running() {
    let server = start(HttpState { metrics: Metrics::new(), readiness: Readiness::new() }).await;
    let r = get(server.addr, "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.trim(), "ok");
    assert_eq!(get(server.addr, "/nope").await.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn readyz_follows_the_flags() {
    let readiness = Readiness::new();
    let server = start(HttpState { metrics: Metrics::new(), readiness: readiness.clone() }).await;

    let r = get(server.addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("caches not synced"), "{}", r.body);

    readiness.set_caches_synced(true);
    assert_eq!(get(server.addr, "/readyz").await.status, 200, "synced standby");

    readiness.set_leader(true);
    let r = get(server.addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("controllers not running"), "{}", r.body);

    readiness.set_controllers_running(true);
    assert_eq!(get(server.addr, "/readyz").await.status, 200);

    readiness.set_shutting_down();
    assert_eq!(get(server.addr, "/readyz").await.status, 503);
    // Liveness is unaffected by readiness.
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_change_after_reconciles() {
    let metrics = Metrics::new();
    let server = start(HttpState { metrics: metrics.clone(), readiness: Readiness::new() }).await;

    let before = get(server.addr, "/metrics").await;
    assert_eq!(before.status, 200);
    assert!(before.content_type.starts_with("application/openmetrics-text"), "{}", before.content_type);
    assert!(before.body.contains("# TYPE tenant_operator_reconciles counter"), "{}", before.body);
    assert!(before.body.contains("tenant_operator_reconciles_total{controller=\"tenant\"} 0"));
    assert!(before.body.contains("tenant_operator_tenants{phase=\"Ready\"} 0"));

    for _ in 0..3 {
        let _timer = metrics.reconcile_started("tenant");
    }
    {
        let _timer = metrics.reconcile_started("tenantuser");
        metrics.reconcile_failed("tenantuser", "TenantNotFound");
    }
    metrics.set_tenants_by_phase(&BTreeMap::from([("Ready".to_owned(), 2)]));
    metrics.set_leader(true);

    let after = get(server.addr, "/metrics").await.body;
    for expected in [
        "tenant_operator_reconciles_total{controller=\"tenant\"} 3",
        "tenant_operator_reconciles_total{controller=\"tenantuser\"} 1",
        "tenant_operator_reconcile_errors_total{controller=\"tenantuser\",error=\"TenantNotFound\"} 1",
        "tenant_operator_reconcile_duration_seconds_count{controller=\"tenant\"} 3",
        "tenant_operator_tenants{phase=\"Ready\"} 2",
        "tenant_operator_tenants{phase=\"Failed\"} 0",
        "tenant_operator_leader 1",
        "# EOF",
    ] {
        assert!(after.contains(expected), "missing {expected:?} in\n{after}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn bind_conflict_is_an_error() {
    let server = start(HttpState { metrics: Metrics::new(), readiness: Readiness::new() }).await;
    let err = bind(server.addr).await.expect_err("second bind fails");
    assert!(err.to_string().contains(&server.addr.to_string()), "{err}");
    server.shutdown().await;
}
