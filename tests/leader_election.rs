//! Leader election against the fake API server (`tests/support/`): its Lease `get`, `create`
//! (409 AlreadyExists) and `update` (409 Conflict on a stale `resourceVersion`) behave like the
//! real API server's.
//!
//! Each elector uses its own identity (a user in group `tenant-operator-replicas`, which the
//! test binds to `deploy/`'s ClusterRole and Role of the operator, loaded into the fake), so that
//! one replica can be cut off from the API server (errors or hung requests,
//! `fail_next_as`/`hang_next_as`) while the others still reach it, and every replica is
//! authorized by the permissions users install.
//! Timings use a 3 s lease: renew deadline 2 s, renewal every 1 s, standbys look every 1 s.

mod support;

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tenant_operator::leader::{LeaderElection, LeaseConfig};
use tokio::sync::watch;
use tokio::time::Instant;

const NS: &str = "tenant-operator";
const LEASE: &str = "tenant-operator";
const LEASE_DURATION: Duration = Duration::from_secs(3);
/// Outlasts every test: a fault that stays until `clear_faults`.
const FOREVER: usize = 1_000_000;

/// Replicas of one Deployment share a ServiceAccount; here each is its own user in this group,
/// bound to the same roles, so the fake can tell their requests apart.
const REPLICAS: &str = "tenant-operator-replicas";

/// The fake, with the operator's namespace, ServiceAccount and RBAC from `deploy/`, and the
/// replicas' group bound to the operator's roles.
async fn api_server() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    // Not the tenant namespace policies: they let only the operator's ServiceAccount write the
    // operator's objects, and these replicas are users of their own (e2e_namespace_profile
    // covers the policies).
    for (file, yaml) in support::e2e::deploy_manifests().into_iter().filter(|(file, _)| !file.ends_with("tenant-namespace-policies.yaml")) {
        fake.apply_manifests(&yaml).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let bindings = format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: replicas}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tenant-operator}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: {REPLICAS}}}]
---
# The operator's grant: the operator binds it to its ServiceAccount in each namespace it
# creates; these replicas are users of their own, so they hold it everywhere instead.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: replicas-grant}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "tenant-operator:tenant-namespace"}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: {REPLICAS}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: replicas, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: tenant-operator}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: {REPLICAS}}}]
"#
    );
    fake.apply_manifests(&bindings).expect("replica bindings");
    fake
}

/// A replica's client: its own user, the operator's permissions.
fn replica_client(fake: &FakeApiServer, identity: &str) -> kube::Client {
    fake.client_as_user(identity, &[REPLICAS])
}

fn lease(fake: &FakeApiServer) -> Option<Lease> {
    fake.object("coordination.k8s.io/v1", "Lease", NS, LEASE).map(|v| serde_json::from_value(v).expect("stored lease deserialises"))
}

fn holder(fake: &FakeApiServer) -> Option<String> {
    lease(fake).and_then(|l| l.spec).and_then(|s| s.holder_identity).filter(|h| !h.is_empty())
}

/// Successful Lease writes (create/update) by the replicas.
fn lease_writes(fake: &FakeApiServer) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.resource == "leases" && matches!(r.verb.as_str(), "create" | "update") && matches!(r.code, 200 | 201))
        .count()
}

/// Writes the spec as someone else would (another controller, or a person with kubectl).
async fn overwrite_spec(fake: &FakeApiServer, spec: Value) {
    let api: Api<Lease> = Api::namespaced(fake.client(), NS);
    if api.get_opt(LEASE).await.expect("get lease").is_some() {
        api.patch(LEASE, &PatchParams::default(), &Patch::Merge(json!({ "spec": spec }))).await.expect("patch lease");
    } else {
        let lease = serde_json::from_value(json!({"metadata": {"name": LEASE, "namespace": NS}, "spec": spec})).expect("lease");
        api.create(&PostParams::default(), &lease).await.expect("create lease");
    }
}

struct Replica {
    election: Option<LeaderElection>,
    leader: watch::Receiver<bool>,
    identity: String,
}

impl Replica {
    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    async fn release(&mut self) {
        if let Some(e) = self.election.take() {
            e.release().await.expect("release");
        }
    }
}

fn replica(fake: &FakeApiServer, identity: &str) -> Replica {
    let config = LeaseConfig::new(NS, LEASE, identity).with_lease_duration(LEASE_DURATION);
    let election = LeaderElection::start(replica_client(fake, identity), config).expect("start");
    Replica { leader: election.subscribe(), election: Some(election), identity: identity.to_owned() }
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
    let fake = api_server().await;
    let a = replica(&fake, "a");
    let b = replica(&fake, "b");
    let first = one_leader(&[&a, &b], Duration::from_secs(5)).await;
    let leader = [&a, &b][first];
    let writes_before = lease_writes(&fake);
    // Over several renewals, never two leaders, and the Lease names the one that leads.
    for _ in 0..15 {
        assert!(!(a.is_leader() && b.is_leader()), "two leaders");
        assert_eq!(holder(&fake).as_deref(), Some(leader.identity.as_str()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(leader.is_leader(), "leadership must be stable while renewals succeed");
    let spec = lease(&fake).and_then(|l| l.spec).expect("lease spec");
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert_eq!(spec.lease_transitions, Some(0));
    let writes = lease_writes(&fake) - writes_before;
    assert!((2..=5).contains(&writes), "a renewal a second, no write storm: {writes} writes in 3 s");
    // Only the leader writes; the standby only reads.
    let standby = [&a, &b][1 - first].identity.as_str();
    let standby_writes: Vec<_> = fake.requests().into_iter().filter(|r| r.user.as_deref() == Some(standby) && r.verb != "get").collect();
    assert!(standby_writes.iter().all(|r| r.code == 409), "the standby's writes all lost the race: {standby_writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_over_at_once() {
    let fake = api_server().await;
    let mut a = replica(&fake, "a");
    becomes(&a.leader, true, Duration::from_secs(5)).await;
    let b = replica(&fake, "b");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_leader());

    let rx = a.leader.clone();
    a.release().await;
    assert!(!*rx.borrow(), "released replica reports false");
    // Sooner than the lease would have expired: the standby's next look (1 s) finds it free.
    let took = becomes(&b.leader, true, LEASE_DURATION).await;
    assert!(took < Duration::from_millis(2500), "takeover took {took:?}");
    let spec = lease(&fake).and_then(|l| l.spec).expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_when_the_leader_dies_without_releasing() {
    let fake = api_server().await;
    let mut a = replica(&fake, "a");
    becomes(&a.leader, true, Duration::from_secs(5)).await;
    let b = replica(&fake, "b");
    // Dropping the elector is a crash as far as the Lease is concerned: nothing is released.
    drop(a.election.take());
    assert!(!a.is_leader());
    let took = becomes(&b.leader, true, LEASE_DURATION + Duration::from_secs(3)).await;
    assert!(took >= Duration::from_secs(1), "must wait for expiry: {took:?}");
    assert_eq!(holder(&fake).as_deref(), Some("b"));
}

#[derive(Clone, Copy)]
enum Cut {
    /// Every Lease request of the leader answers 503.
    Errors,
    /// Every Lease request of the leader hangs (longer than the test).
    Hangs,
}

async fn leader_cut_off_stops_before_the_standby_starts(cut_mode: Cut) {
    let fake = api_server().await;
    let a = replica(&fake, "a");
    becomes(&a.leader, true, Duration::from_secs(5)).await;
    let b = replica(&fake, "b");
    tokio::time::sleep(Duration::from_millis(300)).await;

    match cut_mode {
        Cut::Errors => fake.fail_next_as("a", "*", "leases", 503, FOREVER),
        Cut::Hangs => fake.hang_next_as("a", "*", "leases", Duration::from_secs(60), FOREVER),
    }
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
    assert_eq!(holder(&fake).as_deref(), Some("b"));

    // Reconnected, the old leader follows.
    fake.clear_faults();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!a.is_leader() && b.is_leader());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_whose_requests_fail_steps_down_before_the_lease_expires() {
    leader_cut_off_stops_before_the_standby_starts(Cut::Errors).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_whose_requests_hang_steps_down_before_the_lease_expires() {
    leader_cut_off_stops_before_the_standby_starts(Cut::Hangs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stolen_lease_flips_the_old_leader_to_false() {
    let fake = api_server().await;
    let a = replica(&fake, "a");
    becomes(&a.leader, true, Duration::from_secs(5)).await;
    let now = jiff::Timestamp::now().to_string();
    overwrite_spec(
        &fake,
        json!({
            "holderIdentity": "intruder", "leaseDurationSeconds": 60,
            "acquireTime": now, "renewTime": now, "leaseTransitions": 7
        }),
    )
    .await;
    // Its next renewal (≤ 1 s) hits a 409, re-reads, and finds another holder.
    let took = becomes(&a.leader, false, Duration::from_secs(2)).await;
    assert!(took <= Duration::from_millis(1500), "{took:?}");
    assert!(
        fake.requests().iter().any(|r| r.user.as_deref() == Some("a") && r.verb == "update" && r.code == 409),
        "the renewal was refused with a Conflict"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!a.is_leader());
    assert_eq!(holder(&fake).as_deref(), Some("intruder"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_of_a_dead_holder_is_taken_over() {
    let fake = api_server().await;
    overwrite_spec(
        &fake,
        json!({
            "holderIdentity": "dead", "leaseDurationSeconds": 3,
            "acquireTime": "2020-01-01T00:00:00.000000Z",
            "renewTime": "2020-01-01T00:00:00.000000Z", "leaseTransitions": 2
        }),
    )
    .await;
    let mut a = replica(&fake, "a");
    becomes(&a.leader, true, Duration::from_secs(3)).await;
    let spec = lease(&fake).and_then(|l| l.spec).expect("lease spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_transitions, Some(3));
    a.release().await;
    assert_eq!(holder(&fake), None, "release clears the holder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_lease_of_another_holder_is_respected() {
    let fake = api_server().await;
    let now = jiff::Timestamp::now().to_string();
    overwrite_spec(
        &fake,
        json!({
            "holderIdentity": "other", "leaseDurationSeconds": 30,
            "acquireTime": now, "renewTime": now
        }),
    )
    .await;
    let mut a = replica(&fake, "a");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!a.is_leader());
    assert_eq!(holder(&fake).as_deref(), Some("other"));
    // Releasing a lease one does not hold leaves it alone.
    a.release().await;
    assert_eq!(holder(&fake).as_deref(), Some("other"));
    assert!(!fake.requests().iter().any(|r| r.user.as_deref() == Some("a") && r.verb != "get"), "a follower that never led writes nothing");
}

// ------------------------------------------------------------------ two operator instances

/// An operator instance wired as `run` in `src/main.rs` wires it: controllers only while
/// leading, aborted at once when leadership is lost; on stop, controllers finish and the Lease
/// is released.
struct Instance {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    leader: watch::Receiver<bool>,
}

fn instance(fake: &FakeApiServer, identity: &str) -> Instance {
    use std::sync::Arc;
    use tenant_operator::operator::{run_with_leader_election, ControllerOptions};
    let client = replica_client(fake, identity);
    let config = LeaseConfig::new(NS, LEASE, identity).with_lease_duration(LEASE_DURATION);
    let election = LeaderElection::start(client.clone(), config).expect("start");
    let (stop, stop_rx) = watch::channel(false);
    let leader_rx = election.subscribe();
    let operator_config = Arc::new(support::fixtures::example_config());
    let task = tokio::spawn(run_with_leader_election(client, operator_config, ControllerOptions::default(), election, stop_rx));
    Instance { stop, task, leader: leader_rx }
}

impl Instance {
    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("instance stops").expect("instance task");
    }
}

/// Writes (create/update/patch/delete) of one instance to anything but the Lease.
fn operator_writes(fake: &FakeApiServer, identity: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.user.as_deref() == Some(identity) && r.resource != "leases")
        .filter(|r| matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete"))
        .count()
}

async fn wait_ready(fake: &FakeApiServer, slug: &str) {
    use tenant_operator::types::{Tenant, TenantPhase};
    let api: Api<Tenant> = Api::all(fake.client());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(t)) = api.get_opt(slug).await {
            if t.status.as_ref().is_some_and(|s| s.phase == Some(TenantPhase::Ready) && s.observed_generation == t.metadata.generation) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "tenant {slug} did not become Ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_tenant(fake: &FakeApiServer, slug: &str, environments: &[&str]) {
    use tenant_operator::types::Tenant;
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "tenancy.platform.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": slug},
        "spec": {"displayName": slug, "cluster": "uk", "environments": environments, "applications": ["xconsole"],
                 "database": {"provider": "none"}, "deletionPolicy": "Delete"},
    }))
    .expect("tenant");
    Api::<tenant_operator::types::Tenant>::all(fake.client()).create(&PostParams::default(), &tenant).await.expect("create tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_the_standby_takes_over_and_converges() {
    let fake = api_server().await;
    let a = instance(&fake, "a");
    becomes(&a.leader, true, Duration::from_secs(5)).await;
    let b = instance(&fake, "b");
    create_tenant(&fake, "first", &["dev", "prod"]).await;
    wait_ready(&fake, "first").await;
    assert!(operator_writes(&fake, "a") > 0, "the leader reconciled");
    assert_eq!(operator_writes(&fake, "b"), 0, "the standby writes nothing");
    assert!(!*b.leader.borrow());

    // The leader stops (SIGTERM): controllers finish, the Lease is released, the standby takes
    // over at its next look and converges what changed meanwhile.
    a.stop().await;
    let a_writes = operator_writes(&fake, "a");
    create_tenant(&fake, "second", &["dev"]).await;
    let took = becomes(&b.leader, true, Duration::from_secs(3)).await;
    assert!(took < Duration::from_millis(2500), "takeover took {took:?}");
    wait_ready(&fake, "second").await;
    assert!(fake.object("v1", "Namespace", "", "second-dev").is_some());
    assert!(operator_writes(&fake, "b") > 0, "the new leader reconciled");
    assert_eq!(operator_writes(&fake, "a"), a_writes, "the stopped replica writes nothing");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_lease_stops_writing_and_the_standby_converges() {
    let fake = api_server().await;
    let a = instance(&fake, "a");
    becomes(&a.leader, true, Duration::from_secs(5)).await;
    let b = instance(&fake, "b");
    create_tenant(&fake, "first", &["dev"]).await;
    wait_ready(&fake, "first").await;

    // Only a's Lease requests fail: its controllers could still write, but must not.
    fake.fail_next_as("a", "*", "leases", 503, FOREVER);
    becomes(&a.leader, false, Duration::from_secs(4)).await;
    // A write already on the wire when the controllers were aborted may still land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a_writes = operator_writes(&fake, "a");
    becomes(&b.leader, true, Duration::from_secs(6)).await;
    create_tenant(&fake, "second", &["dev", "staging"]).await;
    wait_ready(&fake, "second").await;
    assert!(operator_writes(&fake, "b") > 0, "the new leader reconciled");
    assert_eq!(operator_writes(&fake, "a"), a_writes, "the replica that lost its lease writes nothing");
    fake.clear_faults();
    a.stop().await;
    b.stop().await;
}
