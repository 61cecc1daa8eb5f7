//! Leader election against a Lease endpoint that behaves like the API server's: `get`,
//! `create` (409 AlreadyExists) and `update` with optimistic concurrency (409 Conflict on a
//! stale `resourceVersion`).
//!
//! Each elector talks to the store through its own port, so that one replica can be cut off
//! from the "API server" (errors or hung requests) while the others still reach it.
//! Timings use a 3 s lease: renew deadline 2 s, renewal every 1 s, standbys look every 1 s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{json, Value};
use tenant_operator::leader::{LeaderElection, LeaseConfig};
use tokio::sync::watch;
use tokio::time::Instant;

const NS: &str = "tenant-operator";
const LEASE: &str = "tenant-operator";
const LEASE_DURATION: Duration = Duration::from_secs(3);

/// The Lease store shared by every port.
#[derive(Default)]
struct Store {
    lease: Mutex<Option<Value>>,
    version: AtomicU64,
    writes: AtomicU64,
}

impl Store {
    fn lease(&self) -> Option<Lease> {
        let guard = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        guard.clone().map(|v| serde_json::from_value(v).expect("stored lease deserialises"))
    }

    fn holder(&self) -> Option<String> {
        self.lease().and_then(|l| l.spec).and_then(|s| s.holder_identity).filter(|h| !h.is_empty())
    }

    /// Writes the spec as someone else would (another controller, or a person with kubectl).
    fn overwrite_spec(&self, spec: Value) {
        let mut guard = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        let lease = guard.get_or_insert_with(|| {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": LEASE, "namespace": NS}})
        });
        lease["spec"] = spec;
        let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        lease["metadata"]["resourceVersion"] = json!(version.to_string());
    }
}

const MODE_OK: u8 = 0;
const MODE_ERROR: u8 = 1;
const MODE_HANG: u8 = 2;

#[derive(Clone)]
struct Port {
    store: Arc<Store>,
    mode: Arc<AtomicU8>,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                      "status": "Failure", "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(body)).into_response()
}

/// Applies the port's fault mode; `Some` is the response to send instead of serving.
async fn fault(port: &Port) -> Option<Response> {
    match port.mode.load(Ordering::SeqCst) {
        MODE_ERROR => Some(status(503, "ServiceUnavailable", "injected outage")),
        MODE_HANG => {
            // Never answers while the mode lasts, as a partitioned API server would.
            while port.mode.load(Ordering::SeqCst) == MODE_HANG {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Some(status(503, "ServiceUnavailable", "injected outage"))
        }
        _ => None,
    }
}

async fn get_lease(State(port): State<Port>, Path((_ns, name)): Path<(String, String)>) -> Response {
    if let Some(r) = fault(&port).await {
        return r;
    }
    let guard = port.store.lease.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some(lease) if name == LEASE => Json(lease.clone()).into_response(),
        _ => status(404, "NotFound", "lease not found"),
    }
}

async fn create_lease(State(port): State<Port>, Path(ns): Path<String>, Json(mut body): Json<Value>) -> Response {
    if let Some(r) = fault(&port).await {
        return r;
    }
    let mut guard = port.store.lease.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_some() {
        return status(409, "AlreadyExists", "lease already exists");
    }
    let version = port.store.version.fetch_add(1, Ordering::SeqCst) + 1;
    body["metadata"]["resourceVersion"] = json!(version.to_string());
    body["metadata"]["namespace"] = json!(ns);
    port.store.writes.fetch_add(1, Ordering::SeqCst);
    *guard = Some(body.clone());
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn replace_lease(State(port): State<Port>, Path((_ns, _name)): Path<(String, String)>, Json(mut body): Json<Value>) -> Response {
    if let Some(r) = fault(&port).await {
        return r;
    }
    let mut guard = port.store.lease.lock().unwrap_or_else(|e| e.into_inner());
    let Some(current) = guard.as_ref() else {
        return status(404, "NotFound", "lease not found");
    };
    if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
        return status(409, "Conflict", "the object has been modified");
    }
    let version = port.store.version.fetch_add(1, Ordering::SeqCst) + 1;
    body["metadata"]["resourceVersion"] = json!(version.to_string());
    port.store.writes.fetch_add(1, Ordering::SeqCst);
    *guard = Some(body.clone());
    Json(body).into_response()
}

async fn open_port(store: Arc<Store>) -> (SocketAddr, Port) {
    let port = Port { store, mode: Arc::new(AtomicU8::new(MODE_OK)) };
    let app = Router::new()
        .route("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", post(create_lease))
        .route("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", get(get_lease).put(replace_lease))
        .with_state(port.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, port)
}

struct Replica {
    election: Option<LeaderElection>,
    leader: watch::Receiver<bool>,
    port: Port,
    identity: String,
}

impl Replica {
    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    fn cut_off(&self, mode: u8) {
        self.port.mode.store(mode, Ordering::SeqCst);
    }

    async fn release(&mut self) {
        if let Some(e) = self.election.take() {
            e.release().await.expect("release");
        }
    }
}

async fn replica(store: &Arc<Store>, identity: &str) -> Replica {
    let (addr, port) = open_port(store.clone()).await;
    let url = format!("http://{addr}").parse().expect("url");
    let client = kube::Client::try_from(kube::Config::new(url)).expect("client");
    let config = LeaseConfig::new(NS, LEASE, identity).with_lease_duration(LEASE_DURATION);
    let election = LeaderElection::start(client, config).expect("start");
    Replica { leader: election.subscribe(), election: Some(election), port, identity: identity.to_owned() }
}

/// Waits until `rx` shows `want`, at most `within`; returns how long it took.
async fn becomes(rx: &watch::Receiver<bool>, want: bool, within: Duration) -> Duration {
    let start = Instant::now();
    let mut rx = rx.clone();
    tokio::time::timeout(within, rx.wait_for(|v| *v == want))
        .await
        .unwrap_or_else(|_| panic!("did not become {want} within {within:?}"))
        .expect("elector alive");
    start.elapsed()
}

/// Waits until exactly one of `replicas` leads; returns its index.
async fn one_leader(replicas: &[&Replica], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let leading: Vec<usize> = (0..replicas.len()).filter(|i| replicas[*i].is_leader()).collect();
        if leading.len() == 1 {
            return leading[0];
        }
        assert!(Instant::now() < deadline, "leaders: {leading:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_replica_leads_and_holds_the_lease() {
    let store = Arc::new(Store::default());
    let a = replica(&store, "a").await;
    let b = replica(&store, "b").await;
    let first = one_leader(&[&a, &b], Duration::from_secs(5)).await;
    let leader = [&a, &b][first];
    // Over several renewals, never two leaders, and the Lease names the one that leads.
    for _ in 0..15 {
        assert!(!(a.is_leader() && b.is_leader()), "two leaders");
        assert_eq!(store.holder().as_deref(), Some(leader.identity.as_str()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(leader.is_leader(), "leadership must be stable while renewals succeed");
    let spec = store.lease().and_then(|l| l.spec).expect("lease spec");
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert_eq!(spec.lease_transitions, Some(0));
    let writes = store.writes.load(Ordering::SeqCst);
    assert!((2..=8).contains(&writes), "a renewal a second, no write storm: {writes} writes in 3 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_over_at_once() {
    let store = Arc::new(Store::default());
    let mut a = replica(&store, "a").await;
    becomes(&a.leader, true, Duration::from_secs(5)).await;
    let b = replica(&store, "b").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_leader());

    let rx = a.leader.clone();
    a.release().await;
    assert!(!*rx.borrow(), "released replica reports false");
    // Sooner than the lease would have expired: the standby's next look (1 s) finds it free.
    let took = becomes(&b.leader, true, LEASE_DURATION).await;
    assert!(took < Duration::from_millis(2500), "takeover took {took:?}");
    let spec = store.lease().and_then(|l| l.spec).expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_when_the_leader_dies_without_releasing() {
    let store = Arc::new(Store::default());
    let mut a = replica(&store, "a").await;
    becomes(&a.leader, true, Duration::from_secs(5)).await;
    let b = replica(&store, "b").await;
    // Dropping the elector is a crash as far as the Lease is concerned: nothing is released.
    drop(a.election.take());
    assert!(!a.is_leader());
    let took = becomes(&b.leader, true, LEASE_DURATION + Duration::from_secs(3)).await;
    assert!(took >= Duration::from_secs(1), "must wait for expiry: {took:?}");
    assert_eq!(store.holder().as_deref(), Some("b"));
}

async fn leader_cut_off_stops_before_the_standby_starts(mode: u8) {
    let store = Arc::new(Store::default());
    let a = replica(&store, "a").await;
    becomes(&a.leader, true, Duration::from_secs(5)).await;
    let b = replica(&store, "b").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    a.cut_off(mode);
    let cut = Instant::now();
    let mut a_rx = a.leader.clone();
    let mut b_rx = b.leader.clone();
    let (a_lost, b_won) = tokio::join!(
        async {
            tokio::time::timeout(Duration::from_secs(4), a_rx.wait_for(|v| !*v))
                .await
                .expect("old leader stops reporting leadership")
                .expect("elector alive");
            Instant::now()
        },
        async {
            tokio::time::timeout(Duration::from_secs(8), b_rx.wait_for(|v| *v)).await.expect("standby takes over").expect("elector alive");
            Instant::now()
        }
    );
    assert!(
        a_lost < b_won,
        "a lost lease stops writes before another replica starts: lost at {:?}, taken at {:?}",
        a_lost - cut,
        b_won - cut
    );
    // The renew deadline (2 s) after the last successful renewal (at most 1 s before the cut).
    assert!(a_lost - cut <= Duration::from_millis(2300), "{:?}", a_lost - cut);
    assert_eq!(store.holder().as_deref(), Some("b"));

    // Reconnected, the old leader follows.
    a.cut_off(MODE_OK);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!a.is_leader() && b.is_leader());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_whose_requests_fail_steps_down_before_the_lease_expires() {
    leader_cut_off_stops_before_the_standby_starts(MODE_ERROR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_whose_requests_hang_steps_down_before_the_lease_expires() {
    leader_cut_off_stops_before_the_standby_starts(MODE_HANG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stolen_lease_flips_the_old_leader_to_false() {
    let store = Arc::new(Store::default());
    let a = replica(&store, "a").await;
    becomes(&a.leader, true, Duration::from_secs(5)).await;
    let now = jiff::Timestamp::now().to_string();
    store.overwrite_spec(json!({
        "holderIdentity": "intruder", "leaseDurationSeconds": 60,
        "acquireTime": now, "renewTime": now, "leaseTransitions": 7
    }));
    // Its next renewal (≤ 1 s) hits a 409, re-reads, and finds another holder.
    let took = becomes(&a.leader, false, Duration::from_secs(2)).await;
    assert!(took <= Duration::from_millis(1500), "{took:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!a.is_leader());
    assert_eq!(store.holder().as_deref(), Some("intruder"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_of_a_dead_holder_is_taken_over() {
    let store = Arc::new(Store::default());
    store.overwrite_spec(json!({
        "holderIdentity": "dead", "leaseDurationSeconds": 3,
        "acquireTime": "2020-01-01T00:00:00.000000Z",
        "renewTime": "2020-01-01T00:00:00.000000Z", "leaseTransitions": 2
    }));
    let mut a = replica(&store, "a").await;
    becomes(&a.leader, true, Duration::from_secs(3)).await;
    let spec = store.lease().and_then(|l| l.spec).expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_transitions, Some(3));
    a.release().await;
    assert_eq!(store.holder(), None, "release clears the holder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_lease_of_another_holder_is_respected() {
    let store = Arc::new(Store::default());
    let now = jiff::Timestamp::now().to_string();
    store.overwrite_spec(json!({
        "holderIdentity": "other", "leaseDurationSeconds": 30,
        "acquireTime": now, "renewTime": now
    }));
    let mut a = replica(&store, "a").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!a.is_leader());
    assert_eq!(store.holder().as_deref(), Some("other"));
    // Releasing a lease one does not hold leaves it alone.
    a.release().await;
    assert_eq!(store.holder().as_deref(), Some("other"));
}
