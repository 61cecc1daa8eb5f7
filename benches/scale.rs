//! Scale benchmark (issue 4): N tenants created at once on the in-process fake API server with
//! the real controllers running.
//!
//! ```sh
//! cargo bench --bench scale            # N = 100, then N = 1000
//! cargo bench --bench scale -- 100     # one or more sizes
//! BENCH_TENANTS=100,1000 cargo bench --bench scale
//! ```
//!
//! Other knobs: `BENCH_CONCURRENCY` (operator reconcile concurrency, default 16 as in
//! `tenant-operator run`), `BENCH_TIMEOUT_SECS` (per phase, default 1200), `RUST_LOG`.
//!
//! For each N it prints (see BENCHMARKS.md):
//! 1. the time until every Tenant is `phase: Ready` with `observedGeneration == generation`;
//! 2. the operator's API requests per tenant by verb during convergence;
//! 3. its writes per tenant against the minimum (desired objects + credentials Secrets + 1 status);
//! 4. the writes of one full resync (operator restarted, everything re-listed and reconciled),
//!    which must be 0: the process exits non-zero otherwise.
//!
//! The bench plays the kubelet: it marks each database StatefulSet ready through the status
//! subresource as soon as it appears (like `Scenario::mark_statefulsets_ready`). Those status
//! patches and the bench's own Tenant creates are excluded from the operator's figures.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use fake_apiserver::{FakeApiServer, RequestCounts};
use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::{
    api::{Patch, PatchParams, PostParams},
    Api, Client,
};
use serde_json::{json, Value};
use tenant_operator::{
    config::Config,
    desired::tenant::TenantPlan,
    metrics::Metrics,
    operator::{run_controllers, ControllerOptions},
    types::Tenant,
};
use tokio::{sync::oneshot, task::JoinHandle};

const TENANT_API: &str = "tenancy.platform.dev/v1alpha1";
const VERBS: [&str; 7] = ["get", "list", "watch", "create", "patch", "update", "delete"];
/// Requests the bench itself makes (creating the Tenants, playing the kubelet); not the operator's.
const BENCH_OWN: [(&str, &str); 2] = [("create", "tenancy.platform.dev/tenants"), ("patch", "apps/statefulsets/status")];
/// Kubernetes Events the operator records (reported apart from the children's writes).
const EVENT_RESOURCES: [&str; 2] = ["events", "events.k8s.io/events"];
/// How long nothing must happen before the operator counts as idle.
const QUIET: Duration = Duration::from_secs(3);

struct Options {
    sizes: Vec<usize>,
    concurrency: u16,
    timeout: Duration,
}

fn options() -> Result<Options, String> {
    // `cargo bench` appends `--bench`; everything starting with `-` is ignored.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let sizes_text = if args.is_empty() { std::env::var("BENCH_TENANTS").unwrap_or_else(|_| "100,1000".into()) } else { args.join(",") };
    let sizes = sizes_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| format!("tenant count {s:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if sizes.is_empty() || sizes.contains(&0) {
        return Err("tenant counts must be positive".into());
    }
    let concurrency = env_number("BENCH_CONCURRENCY", 16)?;
    let timeout = Duration::from_secs(env_number("BENCH_TIMEOUT_SECS", 1200)?);
    Ok(Options { sizes, concurrency, timeout })
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

fn example_config() -> Config {
    Config::parse(include_str!("../examples/config.yaml"), "examples/config.yaml").expect("examples/config.yaml")
}

fn tenant(slug: &str) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": TENANT_API,
        "kind": "Tenant",
        "metadata": {"name": slug},
        "spec": {
            "displayName": format!("Bench tenant {slug}"),
            "cluster": "uk",
            "environments": ["dev", "staging", "prod"],
            "applications": ["xconsole", "u-assist"],
            "database": {"provider": "statefulset", "storage": "1Gi"},
            "quota": {"cpu": "8", "memory": "16Gi", "pods": 50},
            "deletionPolicy": "Retain",
        },
    }))
    .expect("bench tenant")
}

/// Objects the operator must write for one tenant: every object of the plan plus one
/// credentials Secret per environment with a database connection.
fn desired_objects(tenant: &Tenant, config: &Config) -> (usize, BTreeMap<String, usize>) {
    let plan = TenantPlan::build(tenant, config).expect("bench tenant builds");
    let mut by_kind = BTreeMap::new();
    for object in plan.objects() {
        *by_kind.entry(object.kind.name().to_string()).or_insert(0) += 1;
    }
    let secrets = plan.environments.iter().filter(|env| env.database.is_some()).count();
    if secrets > 0 {
        *by_kind.entry("Secret (credentials)".to_string()).or_insert(0) += secrets;
    }
    (plan.objects().count() + secrets, by_kind)
}

fn is_ready(tenant: &Value) -> bool {
    tenant.pointer("/status/phase").and_then(Value::as_str) == Some("Ready")
        && tenant.pointer("/status/observedGeneration").is_some()
        && tenant.pointer("/status/observedGeneration") == tenant.pointer("/metadata/generation")
}

/// The operator's requests: `counts` without the bench's own.
fn operator_only(counts: RequestCounts) -> RequestCounts {
    RequestCounts(counts.0.into_iter().filter(|((verb, gr), _)| !BENCH_OWN.contains(&(verb.as_str(), gr.as_str()))).collect())
}

fn event_writes(counts: &RequestCounts) -> usize {
    counts.0.iter().filter(|((verb, gr), _)| is_write(verb) && EVENT_RESOURCES.contains(&gr.as_str())).map(|(_, n)| n).sum()
}

fn is_write(verb: &str) -> bool {
    fake_apiserver::WRITE_VERBS.contains(&verb)
}

/// A sample of the operator's Prometheus text: `tenant_operator_<name>{controller="tenant"}`.
fn metric(metrics: &Metrics, name: &str) -> f64 {
    let prefix = format!("tenant_operator_{name}{{controller=\"tenant\"}} ");
    metrics.encode().lines().find_map(|l| l.strip_prefix(prefix.as_str()).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

fn reconciles(metrics: &Metrics) -> (u64, u64) {
    (metric(metrics, "reconciles_total") as u64, metric(metrics, "reconcile_duration_seconds_count") as u64)
}

fn errors_total(metrics: &Metrics) -> u64 {
    let text = metrics.encode();
    text.lines()
        .filter(|l| l.starts_with("tenant_operator_reconcile_errors_total{") && l.contains("controller=\"tenant\""))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

struct Operator {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    metrics: Metrics,
}

impl Operator {
    fn start(client: Client, config: Arc<Config>, concurrency: u16) -> Self {
        let (stop, stopped) = oneshot::channel();
        let metrics = Metrics::new();
        let options = ControllerOptions { concurrency, metrics: metrics.clone(), ..ControllerOptions::default() };
        let task = tokio::spawn(run_controllers(client, config, options, async move {
            let _ = stopped.await;
        }));
        Self { stop, task, metrics }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(60), self.task).await.is_err() {
            eprintln!("warning: the operator did not stop within 60 s");
        }
    }

    /// Wait until at least `min_completed` tenant reconciles finished, none is running and
    /// none started for [`QUIET`].
    async fn wait_idle(&self, min_completed: u64, deadline: Instant) -> Result<(), String> {
        let mut last = reconciles(&self.metrics);
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = reconciles(&self.metrics);
            if now != last {
                last = now;
                since = Instant::now();
            }
            let (started, completed) = now;
            if completed >= min_completed && started == completed && since.elapsed() >= QUIET {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("operator not idle in time: {started} reconciles started, {completed} completed"));
            }
        }
    }
}

/// Plays the kubelet: every database StatefulSet gets `readyReplicas: 1` once it exists.
fn kubelet(fake: Arc<FakeApiServer>, client: Client) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut done: BTreeSet<(String, String)> = BTreeSet::new();
        loop {
            let pending: Vec<(String, String)> = fake
                .objects("apps/v1", "StatefulSet")
                .iter()
                .filter(|s| s.pointer("/status/readyReplicas").and_then(Value::as_i64).unwrap_or(0) < 1)
                .filter_map(|s| {
                    let ns = s.pointer("/metadata/namespace")?.as_str()?.to_string();
                    let name = s.pointer("/metadata/name")?.as_str()?.to_string();
                    Some((ns, name))
                })
                .filter(|key| !done.contains(key))
                .collect();
            let results: Vec<_> = stream::iter(pending)
                .map(|(ns, name)| {
                    let client = client.clone();
                    async move {
                        let status = json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}});
                        let result = Api::<StatefulSet>::namespaced(client, &ns)
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                            .await;
                        ((ns, name), result)
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            for (key, result) in results {
                match result {
                    Ok(_) => {
                        done.insert(key);
                    }
                    Err(e) => eprintln!("kubelet: marking StatefulSet {}/{} ready failed (will retry): {e}", key.0, key.1),
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// Kinds stored by the fake during the bench (for the object count in progress lines).
const STORED_KINDS: [(&str, &str); 11] = [
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "ResourceQuota"),
    ("apps/v1", "StatefulSet"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("events.k8s.io/v1", "Event"),
    (TENANT_API, "Tenant"),
];

/// Where the time goes inside the fake: how long taking its state lock waits, and how long
/// one pass of its background controllers (GC, namespaces, StatefulSets) takes with this many
/// objects stored. The fake runs such a pass after every change, holding the lock.
fn fake_diagnostics(fake: &FakeApiServer) -> String {
    let objects: usize = STORED_KINDS.iter().map(|(v, k)| fake.objects(v, k).len()).sum();
    let lock = Instant::now();
    let _ = fake.resource_version();
    let lock_wait = lock.elapsed();
    let pass = Instant::now();
    fake.settle();
    format!("fake: {objects} objects, state lock wait {lock_wait:.2?}, one background pass (lock wait + run) {:.2?}", pass.elapsed())
}

fn per_tenant(count: usize, n: usize) -> String {
    format!("{:.2}", count as f64 / n as f64)
}

fn print_verbs(title: &str, counts: &RequestCounts, n: usize) {
    println!("  {title}");
    println!("    {:<8} {:>9} {:>11}", "verb", "total", "per tenant");
    let mut total = 0;
    for verb in VERBS {
        let c = counts.verb(verb);
        total += c;
        println!("    {verb:<8} {c:>9} {:>11}", per_tenant(c, n));
    }
    let other: usize = counts.0.iter().filter(|((v, _), _)| !VERBS.contains(&v.as_str())).map(|(_, c)| c).sum();
    if other > 0 {
        println!("    {:<8} {other:>9} {:>11}", "other", per_tenant(other, n));
    }
    println!("    {:<8} {:>9} {:>11}", "all", total + other, per_tenant(total + other, n));
}

fn print_breakdown(title: &str, counts: &RequestCounts, n: usize, filter: impl Fn(&str) -> bool) {
    let rows: Vec<_> = counts.0.iter().filter(|((v, _), _)| filter(v)).collect();
    if rows.is_empty() {
        return;
    }
    println!("  {title}");
    for ((verb, gr), c) in rows {
        println!("    {verb:<7} {gr:<42} {c:>8} {:>9}/tenant", per_tenant(*c, n));
    }
}

/// Figures of one run, for the summary.
struct Outcome {
    n: usize,
    ready_after: Duration,
    requests_per_tenant: BTreeMap<&'static str, f64>,
    writes_per_tenant: f64,
    writes_without_events_per_tenant: f64,
    minimum: usize,
    resync_writes: usize,
    resync_after: Duration,
}

async fn run(n: usize, opts: &Options, config: Arc<Config>) -> Result<Outcome, String> {
    println!("\n=== N = {n} tenants (3 environments, 2 applications, quota, database statefulset) ===");
    let (desired, by_kind) = desired_objects(&tenant("bench-00000"), &config);
    let minimum = desired + 1;
    println!(
        "desired objects per tenant: {desired} ({}); minimum writes per tenant = {desired} + 1 status = {minimum}",
        by_kind.iter().map(|(k, c)| format!("{c} {k}")).collect::<Vec<_>>().join(", ")
    );

    let fake = Arc::new(FakeApiServer::start().await);
    let client = fake.client();
    let operator = Operator::start(client.clone(), config.clone(), opts.concurrency);
    // Let the operator list and watch the (empty) cluster first: its start-up requests are not
    // part of convergence.
    let deadline = Instant::now() + opts.timeout;
    operator.wait_idle(0, deadline).await?;
    let kubelet = kubelet(fake.clone(), client.clone());
    let before = fake.request_counts();

    let started = Instant::now();
    let slugs: Vec<String> = (0..n).map(|i| format!("bench-{i:05}")).collect();
    let created: Vec<Result<(), String>> =
        stream::iter(slugs.iter())
            .map(|slug| {
                let api = Api::<Tenant>::all(client.clone());
                async move {
                    api.create(&PostParams::default(), &tenant(slug)).await.map(|_| ()).map_err(|e| format!("create Tenant {slug}: {e}"))
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
    created.into_iter().collect::<Result<Vec<()>, String>>()?;
    println!("created {n} Tenants in {:.2?}", started.elapsed());

    let mut last_report = Instant::now();
    let ready_after = loop {
        let tenants = fake.objects(TENANT_API, "Tenant");
        let ready = tenants.iter().filter(|t| is_ready(t)).count();
        if ready == n {
            break started.elapsed();
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let (rs, rc) = reconciles(&operator.metrics);
            let so_far = operator_only(fake.request_counts().since(&before));
            println!(
                "  … {:>6.1?}: {ready}/{n} Ready; reconciles {rs} started / {rc} done, {} errors; {} requests ({} writes) so far; {}",
                started.elapsed(),
                errors_total(&operator.metrics),
                so_far.0.values().sum::<usize>(),
                so_far.writes(),
                fake_diagnostics(&fake),
            );
        }
        if started.elapsed() > opts.timeout {
            let so_far = operator_only(fake.request_counts().since(&before));
            println!("TIMEOUT after {:.2?}: {ready}/{n} Ready. Requests so far:", started.elapsed());
            print_verbs("by verb:", &so_far, n);
            print_breakdown("writes by verb and resource:", &so_far, n, is_write);
            kubelet.abort();
            operator.stop().await;
            return Err(format!("only {ready}/{n} Tenants Ready after {:?}", opts.timeout));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let at_ready = operator_only(fake.request_counts().since(&before));
    let (rs, rc) = reconciles(&operator.metrics);
    println!(
        "1. all {n} Tenants Ready (observedGeneration == generation) after {ready_after:.2?} ({:.1} tenants/s); {rs} reconciles started, {rc} completed, {} failed",
        n as f64 / ready_after.as_secs_f64(),
        errors_total(&operator.metrics)
    );

    println!("2. operator API requests during convergence (Tenant creates and the bench's StatefulSet status patches excluded)");
    print_verbs("by verb:", &at_ready, n);
    print_breakdown("by verb and resource (reads):", &at_ready, n, |v| !is_write(v));

    let writes = at_ready.writes();
    let events = event_writes(&at_ready);
    let without_events = writes - events;
    println!("3. writes per tenant vs the minimum ({minimum} = {desired} desired objects + 1 status write)");
    print_breakdown("writes by verb and resource:", &at_ready, n, is_write);
    println!(
        "  all writes:             {writes:>8} = {} per tenant, excess {:+.2} per tenant",
        per_tenant(writes, n),
        writes as f64 / n as f64 - minimum as f64
    );
    println!(
        "  without Events ({events:>5}): {without_events:>8} = {} per tenant, excess {:+.2} per tenant",
        per_tenant(without_events, n),
        without_events as f64 / n as f64 - minimum as f64
    );

    // Let the trailing reconciles (triggered by the operator's own writes) finish before the
    // restart, and report what they cost.
    operator.wait_idle(rc, Instant::now() + opts.timeout).await?;
    kubelet.abort();
    let settled = operator_only(fake.request_counts().since(&before));
    let trailing = settled.since(&at_ready);
    println!(
        "  after Ready, until idle: {} more requests, {} more writes{}",
        trailing.0.values().sum::<usize>(),
        trailing.writes(),
        if trailing.writes() > 0 {
            format!(" ({:?})", trailing.0.iter().filter(|((v, _), _)| is_write(v)).collect::<Vec<_>>())
        } else {
            String::new()
        }
    );

    // 4. A full resync: a restarted operator re-lists everything and reconciles every tenant.
    operator.stop().await;
    let snapshot = fake.request_counts();
    let resync_started = Instant::now();
    let operator = Operator::start(client.clone(), config.clone(), opts.concurrency);
    operator.wait_idle(n as u64, Instant::now() + opts.timeout).await?;
    let resync_after = resync_started.elapsed() - QUIET;
    let resync = fake.request_counts().since(&snapshot);
    let (rs, rc) = reconciles(&operator.metrics);
    let resync_writes = resync.writes();
    println!(
        "4. full resync (operator restarted): {rc} tenant reconciles completed ({rs} started) in ~{resync_after:.2?}; writes: {resync_writes}{}",
        if resync_writes == 0 { " (OK)" } else { " (MUST BE 0)" }
    );
    print_verbs("resync requests by verb:", &resync, n);
    print_breakdown("resync writes:", &resync, n, is_write);
    let still_ready = fake.objects(TENANT_API, "Tenant").iter().filter(|t| is_ready(t)).count();
    if still_ready != n {
        println!("  WARNING: only {still_ready}/{n} Tenants Ready after the resync");
    }
    operator.stop().await;

    let requests_per_tenant = VERBS.iter().map(|v| (*v, at_ready.verb(v) as f64 / n as f64)).collect();
    Ok(Outcome {
        n,
        ready_after,
        requests_per_tenant,
        writes_per_tenant: writes as f64 / n as f64,
        writes_without_events_per_tenant: without_events as f64 / n as f64,
        minimum,
        resync_writes,
        resync_after,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("scale bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = Arc::new(example_config());
    println!(
        "scale bench: sizes {:?}, operator concurrency {}, {} CPU(s) available",
        opts.sizes,
        opts.concurrency,
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1)
    );
    let mut failed = false;
    let mut outcomes = Vec::new();
    for &n in &opts.sizes {
        match run(n, &opts, config.clone()).await {
            Ok(outcome) => {
                failed |= outcome.resync_writes != 0;
                outcomes.push(outcome);
            }
            Err(e) => {
                println!("N = {n}: FAILED: {e}");
                failed = true;
            }
        }
    }
    println!("\n=== summary ===");
    println!(
        "{:>6} {:>12} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>14} {:>9} {:>8} {:>12}",
        "N",
        "all Ready",
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "update",
        "delete",
        "writes/tenant",
        "(no Evts)",
        "minimum",
        "resync wr."
    );
    for o in &outcomes {
        let r = |v: &str| o.requests_per_tenant.get(v).copied().unwrap_or(0.0);
        println!(
            "{:>6} {:>12} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>14.2} {:>9.2} {:>8} {:>12}",
            o.n,
            format!("{:.2?}", o.ready_after),
            r("get"),
            r("list"),
            r("watch"),
            r("create"),
            r("patch"),
            r("update"),
            r("delete"),
            o.writes_per_tenant,
            o.writes_without_events_per_tenant,
            o.minimum,
            format!("{} ({:.1?})", o.resync_writes, o.resync_after),
        );
    }
    if failed {
        println!("FAILED (a size did not converge, or a resync wrote)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
