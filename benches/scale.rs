//! Fleet-scale benchmark (issue 13): N Tenants against the in-process fake API server, the
//! operator running as a separate process (`tenant-operator run`, as its ServiceAccount under
//! `deploy/`'s RBAC), compared with one client server-side applying the same rendered objects.
//!
//! ```sh
//! cargo bench --bench scale                    # N = 100, 1000, 5000
//! cargo bench --bench scale -- 100 1000        # chosen sizes (also BENCH_TENANTS=100,1000)
//! ```
//!
//! Knobs: `BENCH_COMMIT_LATENCY_MS` (simulated etcd commit latency of the second set of timed
//! runs, default 2; 0 skips them), `BENCH_PREPOPULATE_FROM` (sizes from this one on start from
//! a pre-populated store and measure only resync and memory, default 5000; 0: never),
//! `BENCH_CONCURRENCY` (`run --concurrency`, default 16), `BENCH_TIMEOUT_SECS` (per phase,
//! default 900), `BENCH_OPERATOR_LOG` (the operator's `RUST_LOG`, default `warn`; its logs go
//! to a temporary directory named in the output), `RUST_LOG` (the bench's own).
//!
//! What each figure means is in BENCHMARKS.md. The process exits non-zero when a phase does
//! not converge in time or a resync writes anything.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "scale/fleet.rs"]
mod fleet;
#[path = "scale/noisy.rs"]
mod noisy;
#[path = "scale/process.rs"]
mod process;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use fake_apiserver::{FakeApiServer, RequestCounts, UserInfo, WRITE_VERBS};
use tenant_operator::{config::Config, desired::DesiredObject, types::Tenant};

use fleet::ready_count;
use process::{cpu_of, Memory, OperatorProcess};
use support::e2e::{deploy_manifests, operator_user, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT};

const VERBS: [&str; 7] = ["get", "list", "watch", "create", "patch", "update", "delete"];
/// Kubernetes Events the operator records (`core/v1` or `events.k8s.io/v1`).
const EVENT_RESOURCES: [&str; 2] = ["events", "events.k8s.io/events"];
const MIB: f64 = 1024.0 * 1024.0;

struct Options {
    sizes: Vec<usize>,
    concurrency: u16,
    timeout: Duration,
    latency: Duration,
    prepopulate_from: usize,
    workdir: PathBuf,
    config_path: PathBuf,
    config: Config,
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// `noisy` among the arguments: the noisy-tenant case (`scale/noisy.rs`) instead of the fleet sizes.
fn noisy_case() -> bool {
    std::env::args().skip(1).any(|a| a == "noisy")
}

fn options(workdir: PathBuf) -> Result<Options, String> {
    // `cargo bench` appends `--bench`; everything starting with `-` is ignored.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-') && a != "noisy").collect();
    let default = if noisy_case() { "1000" } else { "100,1000,5000" };
    let text = if args.is_empty() { std::env::var("BENCH_TENANTS").unwrap_or_else(|_| default.into()) } else { args.join(",") };
    let sizes = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| format!("tenant count {s:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if sizes.is_empty() || sizes.contains(&0) {
        return Err("tenant counts must be positive".into());
    }
    let config_path = support::repo_path("examples/config.yaml");
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    Ok(Options {
        sizes,
        concurrency: env_number("BENCH_CONCURRENCY", 16)?,
        timeout: Duration::from_secs(env_number("BENCH_TIMEOUT_SECS", 900)?),
        latency: Duration::from_micros((env_number("BENCH_COMMIT_LATENCY_MS", 2.0f64)? * 1000.0) as u64),
        prepopulate_from: env_number("BENCH_PREPOPULATE_FROM", 5000)?,
        workdir,
        config_path,
        config,
    })
}

// ------------------------------------------------------------------------------------------
// Figures

/// One timed run of the direct-apply baseline.
#[derive(Clone, Copy)]
struct Direct {
    time: Duration,
}

/// One convergence of the operator.
#[derive(Clone, Default)]
struct Convergence {
    time: Duration,
    requests: RequestCounts,
    reconciles: u64,
    failed: u64,
    operator_cpu: Duration,
    fake_cpu: Duration,
    trailing_writes: usize,
    /// The operator process's peak RSS (VmHWM) from its start to the end of convergence: all
    /// N Tenants reconciled at once, with every child to create.
    peak: u64,
}

struct Resync {
    time: Duration,
    reconciles: u64,
    requests: RequestCounts,
    /// `false` when the operator was still reconciling at the timeout: the figures are what
    /// it had done by then.
    idle: bool,
}

struct MemoryFigures {
    empty: Memory,
    after_resync: Memory,
    cached_objects: usize,
}

impl MemoryFigures {
    fn bytes_per_object(&self) -> f64 {
        (self.after_resync.rss as f64 - self.empty.rss as f64) / self.cached_objects.max(1) as f64
    }
}

struct Outcome {
    n: usize,
    prepopulated: bool,
    minimum: f64,
    direct: Option<Direct>,
    operator: Option<Convergence>,
    direct_latency: Option<Direct>,
    operator_latency: Option<Convergence>,
    resync: Resync,
    memory: MemoryFigures,
}

fn writes(c: &RequestCounts) -> usize {
    c.writes()
}

fn event_writes(c: &RequestCounts) -> usize {
    c.0.iter()
        .filter(|((verb, gr), _)| WRITE_VERBS.contains(&verb.as_str()) && EVENT_RESOURCES.contains(&gr.as_str()))
        .map(|(_, n)| n)
        .sum()
}

fn total(c: &RequestCounts) -> usize {
    c.0.values().sum()
}

fn per(count: usize, n: usize) -> f64 {
    count as f64 / n as f64
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

fn print_requests(title: &str, counts: &RequestCounts, n: usize) {
    println!("    {title}");
    let line: Vec<String> = VERBS.iter().map(|v| format!("{v} {:.2}", per(counts.verb(v), n))).collect();
    println!("      per tenant by verb: {} (all {:.2})", line.join(", "), per(total(counts), n));
    let rows: Vec<_> = counts.0.iter().filter(|((verb, _), _)| WRITE_VERBS.contains(&verb.as_str())).collect();
    if !rows.is_empty() {
        let text: Vec<String> = rows.iter().map(|((verb, gr), c)| format!("{verb} {gr} {:.2}", per(**c, n))).collect();
        println!("      writes per tenant: {}", text.join(", "));
    }
}

// ------------------------------------------------------------------------------------------
// Phases

fn seconds_since(since: Instant) -> String {
    format!("{:>6.1} s", since.elapsed().as_secs_f64())
}

/// A fresh fake with the operator's namespace, ServiceAccount and RBAC of `deploy/`, and a
/// kubeconfig with that ServiceAccount's token.
async fn fake_for_operator(opts: &Options, latency: Duration, name: &str) -> Result<(FakeApiServer, PathBuf), String> {
    let fake = FakeApiServer::builder().commit_latency(latency).start().await;
    for (file, yaml) in deploy_manifests() {
        fake.apply_manifests(&yaml).map_err(|e| format!("{file}: {e}"))?;
    }
    let token = fake.token_for(UserInfo::service_account(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT));
    let kubeconfig = opts.workdir.join(format!("{name}.kubeconfig"));
    std::fs::write(&kubeconfig, fake.kubeconfig_yaml_with_token(&token)).map_err(|e| e.to_string())?;
    Ok((fake, kubeconfig))
}

async fn start_operator(opts: &Options, name: &str, kubeconfig: &Path) -> Result<OperatorProcess, String> {
    let mut op = OperatorProcess::start(&opts.workdir, name, kubeconfig, &opts.config_path, opts.concurrency)?;
    op.wait_ready(Instant::now() + opts.timeout).await?;
    Ok(op)
}

async fn run_direct(n: usize, objects: &[DesiredObject], latency: Duration) -> Result<Direct, String> {
    let fake = FakeApiServer::builder().commit_latency(latency).start().await;
    let before = fake.request_counts();
    let cpu = cpu_of("/proc/self/stat");
    let time = fleet::direct_apply(&fake.client(), objects).await?;
    let cpu = cpu_of("/proc/self/stat") - cpu;
    let requests = total(&fake.request_counts().since(&before));
    println!(
        "  direct apply{}: {} objects in {} ({:.0} objects/s), {requests} requests ({:.2} per tenant); CPU of the client and the fake {} ({:.0} µs per request)",
        latency_label(latency),
        objects.len(),
        secs(time),
        objects.len() as f64 / time.as_secs_f64(),
        per(requests, n),
        secs(cpu),
        cpu.as_secs_f64() * 1e6 / requests.max(1) as f64
    );
    Ok(Direct { time })
}

fn latency_label(latency: Duration) -> String {
    if latency.is_zero() {
        " (no commit latency)".into()
    } else {
        format!(" (commit latency {:.1} ms)", latency.as_secs_f64() * 1000.0)
    }
}

/// Wait until all `n` Tenants are Ready for their generation; progress every 10 s.
async fn wait_all_ready(
    fake: &FakeApiServer,
    op: &OperatorProcess,
    n: usize,
    started: Instant,
    timeout: Duration,
) -> Result<Duration, String> {
    let user = operator_user();
    let before = fake.request_counts_of(&user);
    let (op_cpu, fake_cpu) = (op.cpu(), cpu_of("/proc/self/stat"));
    let mut last_report = Instant::now();
    loop {
        let ready = ready_count(fake);
        if ready == n {
            return Ok(started.elapsed());
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let r = op.reconciles().await.unwrap_or_default();
            let so_far = fake.request_counts_of(&user).since(&before);
            println!(
                "    … {}: {ready}/{n} Ready; reconciles {} started / {} done / {} failed; operator: {} requests ({} writes), CPU {}; bench (fake) CPU {}",
                seconds_since(started),
                r.started,
                r.completed,
                r.failed,
                total(&so_far),
                writes(&so_far),
                secs(op.cpu() - op_cpu),
                secs(cpu_of("/proc/self/stat") - fake_cpu),
            );
        }
        if started.elapsed() > timeout {
            return Err(format!("only {ready}/{n} Tenants Ready after {}", secs(timeout)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator converges `tenants` on a fresh fake. Returns the convergence figures, and the
/// fake and operator (idle) for the resync that follows.
async fn run_operator(
    opts: &Options,
    tenants: &[Tenant],
    latency: Duration,
    name: &str,
) -> Result<(Convergence, FakeApiServer, PathBuf, OperatorProcess, Memory), String> {
    let n = tenants.len();
    let user = operator_user();
    let (fake, kubeconfig) = fake_for_operator(opts, latency, name).await?;
    let op = start_operator(opts, name, &kubeconfig).await?;
    // Its start on an empty cluster is not part of convergence.
    op.wait_idle(0, Instant::now() + opts.timeout).await?;
    let empty = op.memory();
    let before = fake.request_counts_of(&user);
    let (op_cpu, fake_cpu) = (op.cpu(), cpu_of("/proc/self/stat"));

    let started = Instant::now();
    fleet::create_tenants(&fake.client(), tenants).await?;
    let created = started.elapsed();
    let time = wait_all_ready(&fake, &op, n, started, opts.timeout).await?;
    let requests = fake.request_counts_of(&user).since(&before);
    let reconciles = op.reconciles().await?;
    let conv = Convergence {
        time,
        reconciles: reconciles.completed,
        failed: reconciles.failed,
        operator_cpu: op.cpu() - op_cpu,
        fake_cpu: cpu_of("/proc/self/stat") - fake_cpu,
        trailing_writes: 0,
        peak: 0,
        requests,
    };
    println!(
        "  operator{}: all {n} Ready (observedGeneration == generation) after {} ({:.1} tenants/s; Tenants created in {}); {} reconciles, {} failed; CPU: operator {}, bench+fake {}",
        latency_label(latency),
        secs(time),
        n as f64 / time.as_secs_f64(),
        secs(created),
        conv.reconciles,
        conv.failed,
        secs(conv.operator_cpu),
        secs(conv.fake_cpu),
    );
    // What its own writes trigger after the last Tenant became Ready.
    op.wait_idle(reconciles.completed, Instant::now() + opts.timeout).await?;
    let trailing = fake.request_counts_of(&user).since(&before).since(&conv.requests);
    let peak = op.memory().hwm;
    println!("    operator's peak RSS (VmHWM) while converging: {:.1} MiB", peak as f64 / MIB);
    let conv = Convergence { trailing_writes: writes(&trailing), peak, ..conv };
    Ok((conv, fake, kubeconfig, op, empty))
}

/// Restart the operator with everything in place: it must write nothing.
async fn run_resync(opts: &Options, n: usize, fake: &FakeApiServer, kubeconfig: &Path, name: &str) -> Result<(Resync, Memory), String> {
    let user = operator_user();
    let before = fake.request_counts_of(&user);
    let started = Instant::now();
    let op = start_operator(opts, name, kubeconfig).await?;
    let (time, idle) = match op.wait_idle(n as u64, Instant::now() + opts.timeout).await {
        Ok(last) => (last.duration_since(started), true),
        Err(e) => {
            println!("  resync: {e} (figures below are as of the timeout)");
            (started.elapsed(), false)
        }
    };
    let reconciles = op.reconciles().await?;
    let memory = op.memory();
    let requests = fake.request_counts_of(&user).since(&before);
    op.stop().await;
    Ok((Resync { time, reconciles: reconciles.completed, requests, idle }, memory))
}

fn print_convergence(conv: &Convergence, n: usize, minimum: f64) {
    let w = writes(&conv.requests);
    let e = event_writes(&conv.requests);
    println!(
        "    writes per tenant: {:.2} including {:.2} Events (minimum {minimum:.0}: {:+.2}); {} writes after the last Ready",
        per(w, n),
        per(e, n),
        per(w, n) - minimum,
        conv.trailing_writes
    );
    print_requests("operator requests during convergence:", &conv.requests, n);
}

async fn run_size(opts: &Options, n: usize) -> Result<Outcome, String> {
    let tenants = fleet::tenants(n)?;
    let objects = fleet::rendered(&tenants, &opts.config)?;
    let kinds: Vec<String> = fleet::per_kind(&objects, n).iter().map(|(k, c)| format!("{c:.0} {k}")).collect();
    let minimum = objects.len() as f64 / n as f64 + 2.0;
    let prepopulated = opts.prepopulate_from > 0 && n >= opts.prepopulate_from;
    println!(
        "\n=== N = {n} Tenants (3 environments, 2 applications, quota, database provider none){} ===",
        if prepopulated { ", store pre-populated: resync and memory only" } else { "" }
    );
    println!(
        "  rendered objects per tenant: {:.0} ({}); minimum writes per tenant = {:.0} + 1 finalizer + 1 status = {minimum:.0}",
        objects.len() as f64 / n as f64,
        kinds.join(", "),
        minimum - 2.0
    );
    if prepopulated {
        return run_prepopulated(opts, &tenants, minimum).await;
    }

    let direct = run_direct(n, &objects, Duration::ZERO).await?;
    let (conv, fake, kubeconfig, op, empty) = run_operator(opts, &tenants, Duration::ZERO, &format!("n{n}-converge")).await?;
    println!("    ratio operator / direct apply: {:.2}", conv.time.as_secs_f64() / direct.time.as_secs_f64());
    print_convergence(&conv, n, minimum);
    let (matching, checked) = fleet::stored_as_applied(&fake, &tenants, &opts.config)?;
    println!("    rendered objects stored as the operator applies them (its applied form, its field manager): {matching}/{checked}");
    op.stop().await;

    let (resync, memory) = run_resync(opts, n, &fake, &kubeconfig, &format!("n{n}-resync")).await?;
    let cached_objects = fleet::cached_objects(&fake);
    drop(fake);
    let memory = MemoryFigures { empty, after_resync: memory, cached_objects };
    print_resync(&resync, &memory, n);

    let (direct_latency, operator_latency) = if opts.latency.is_zero() {
        (None, None)
    } else {
        let d = run_direct(n, &objects, opts.latency).await?;
        println!(
            "    measured: {:.2} ms more per request than without the commit latency",
            (d.time.as_secs_f64() - direct.time.as_secs_f64()) * 1000.0 / objects.len() as f64
        );
        let (c, fake, _, op, _) = run_operator(opts, &tenants, opts.latency, &format!("n{n}-converge-latency")).await?;
        op.stop().await;
        drop(fake);
        println!("    ratio operator / direct apply: {:.2}", c.time.as_secs_f64() / d.time.as_secs_f64());
        print_convergence(&c, n, minimum);
        (Some(d), Some(c))
    };
    Ok(Outcome {
        n,
        prepopulated: false,
        minimum,
        direct: Some(direct),
        operator: Some(conv),
        direct_latency,
        operator_latency,
        resync,
        memory,
    })
}

fn print_resync(resync: &Resync, memory: &MemoryFigures, n: usize) {
    let w = writes(&resync.requests);
    println!(
        "  resync (operator restarted with everything in place): {} reconciles in {}{}; writes: {w}{}",
        resync.reconciles,
        secs(resync.time),
        if resync.idle { "" } else { " (NOT IDLE at the timeout)" },
        if w == 0 { " (OK)" } else { " (MUST BE 0)" }
    );
    print_requests("operator requests during the resync:", &resync.requests, n);
    println!(
        "  memory of the operator process: RSS {} after the resync (VmHWM {}), {} with an empty cluster; {} cached objects → {:.0} bytes per cached object",
        mib(memory.after_resync.rss),
        mib(memory.after_resync.hwm),
        mib(memory.empty.rss),
        memory.cached_objects,
        memory.bytes_per_object()
    );
}

/// A size too large to converge in the time budget: the store is filled as the operator would
/// have left it (every rendered object with the operator's stamps and field manager, every
/// Tenant with its finalizer and Ready status), then the measured restart.
async fn run_prepopulated(opts: &Options, tenants: &[Tenant], minimum: f64) -> Result<Outcome, String> {
    let n = tenants.len();
    // A small convergence to check what the bench will store against: the objects as the
    // operator applies them, and the finalizers and status it writes (learnt from one tenant,
    // checked on the others).
    let sample = fleet::tenants(3)?;
    let (conv, fake, _, op, _) = run_operator(opts, &sample, Duration::ZERO, "sample").await?;
    op.stop().await;
    let (matching, checked) = fleet::stored_as_applied(&fake, &sample, &opts.config)?;
    let template = fleet::TenantTemplate::learn(&fake, &fleet::slug(0))?;
    let others: Vec<String> = (1..sample.len()).map(fleet::slug).collect();
    let statuses_ok = template.check(&fake, &others);
    drop(fake);
    println!(
        "  sample of {} tenants converged in {}: {matching}/{checked} objects stored as the operator applies them, {statuses_ok}/{} statuses as the template predicts",
        sample.len(),
        secs(conv.time),
        others.len()
    );
    if matching != checked || statuses_ok != others.len() {
        return Err(
            "the bench cannot predict what the operator writes (see benches/scale/fleet.rs); pre-populating would make the resync write"
                .into(),
        );
    }

    let (fake, kubeconfig) = fake_for_operator(opts, Duration::ZERO, &format!("n{n}-prepopulated")).await?;
    let op = start_operator(opts, &format!("n{n}-empty"), &kubeconfig).await?;
    op.wait_idle(0, Instant::now() + opts.timeout).await?;
    let empty = op.memory();
    op.stop().await;

    let started = Instant::now();
    let with_finalizers = tenants.iter().map(|t| template.with_finalizers(t)).collect::<Result<Vec<_>, _>>()?;
    fleet::create_tenants(&fake.client(), &with_finalizers).await?;
    let stored = fleet::prepopulate(&fake, tenants, &opts.config)?;
    fake.insert_status(&template.statuses(tenants), fleet::OPERATOR_MANAGER)?;
    fake.settle();
    let ready = ready_count(&fake);
    println!(
        "  pre-populated in {}: {n} Tenants with the operator's finalizer and status ({ready} Ready), {stored} objects as the operator applies them",
        secs(started.elapsed())
    );

    let (resync, memory) = run_resync(opts, n, &fake, &kubeconfig, &format!("n{n}-resync")).await?;
    let cached_objects = fleet::cached_objects(&fake);
    let memory = MemoryFigures { empty, after_resync: memory, cached_objects };
    print_resync(&resync, &memory, n);
    Ok(Outcome {
        n,
        prepopulated: true,
        minimum,
        direct: None,
        operator: None,
        direct_latency: None,
        operator_latency: None,
        resync,
        memory,
    })
}

// ------------------------------------------------------------------------------------------
// Summary

fn summary(outcomes: &[Outcome], opts: &Options) {
    println!("\n=== summary (operator: separate process, concurrency {}) ===", opts.concurrency);
    let l = format!("{:.0}ms", opts.latency.as_secs_f64() * 1000.0);
    println!(
        "{:>6} {:>10} {:>10} {:>6} {:>10} {:>10} {:>6} {:>9} {:>7} {:>7} {:>9} {:>9} {:>8} {:>10} {:>10} {:>9} {:>10}",
        "N",
        "direct",
        "operator",
        "ratio",
        format!("direct@{l}"),
        format!("oper.@{l}"),
        "ratio",
        "writes/t",
        "min",
        "events/t",
        "reqs/t",
        "resync",
        "resync w",
        "RSS",
        "VmHWM",
        "bytes/obj",
        "conv. HWM"
    );
    let time = |d: Option<Duration>| d.map(|d| format!("{:.2}s", d.as_secs_f64())).unwrap_or_else(|| "-".into());
    let ratio = |o: Option<&Convergence>, d: Option<&Direct>| match (o, d) {
        (Some(o), Some(d)) => format!("{:.2}", o.time.as_secs_f64() / d.time.as_secs_f64()),
        _ => "-".into(),
    };
    for o in outcomes {
        let conv = o.operator.as_ref();
        println!(
            "{:>6} {:>10} {:>10} {:>6} {:>10} {:>10} {:>6} {:>9} {:>7.0} {:>7} {:>9} {:>9} {:>8} {:>10} {:>10} {:>9.0} {:>10}",
            format!("{}{}", o.n, if o.prepopulated { "*" } else { "" }),
            time(o.direct.map(|d| d.time)),
            time(conv.map(|c| c.time)),
            ratio(conv, o.direct.as_ref()),
            time(o.direct_latency.map(|d| d.time)),
            time(o.operator_latency.as_ref().map(|c| c.time)),
            ratio(o.operator_latency.as_ref(), o.direct_latency.as_ref()),
            conv.map(|c| format!("{:.2}", per(writes(&c.requests), o.n))).unwrap_or_else(|| "-".into()),
            o.minimum,
            conv.map(|c| format!("{:.2}", per(event_writes(&c.requests), o.n))).unwrap_or_else(|| "-".into()),
            conv.map(|c| format!("{:.2}", per(total(&c.requests), o.n))).unwrap_or_else(|| "-".into()),
            format!("{}{:.2}s", if o.resync.idle { "" } else { ">" }, o.resync.time.as_secs_f64()),
            writes(&o.resync.requests),
            format!("{:.1}MiB", o.memory.after_resync.rss as f64 / MIB),
            format!("{:.1}MiB", o.memory.after_resync.hwm as f64 / MIB),
            o.memory.bytes_per_object(),
            conv.map(|c| format!("{:.1}MiB", c.peak as f64 / MIB)).unwrap_or_else(|| "-".into()),
        );
    }
    if outcomes.iter().any(|o| o.prepopulated) {
        println!("  * store pre-populated (BENCH_PREPOPULATE_FROM): no convergence timed, resync and memory only");
    }
    if let [first, .., last] = outcomes {
        let growth = |a: f64, b: f64| if a > 0.0 { format!("×{:.1}", b / a) } else { "-".into() };
        let k = last.n as f64 / first.n as f64;
        println!(
            "  growth from N = {} to N = {} (×{k:.0} tenants): resync time {}, RSS {}, RSS above the empty cluster {}{}",
            first.n,
            last.n,
            growth(first.resync.time.as_secs_f64(), last.resync.time.as_secs_f64()),
            growth(first.memory.after_resync.rss as f64, last.memory.after_resync.rss as f64),
            growth(
                first.memory.after_resync.rss as f64 - first.memory.empty.rss as f64,
                last.memory.after_resync.rss as f64 - last.memory.empty.rss as f64
            ),
            match (first.operator.as_ref(), outcomes.iter().rev().find_map(|o| o.operator.as_ref().map(|c| (o.n, c)))) {
                (Some(a), Some((n, b))) if n != first.n =>
                    format!(", convergence time to N = {n} {}", growth(a.time.as_secs_f64(), b.time.as_secs_f64())),
                _ => String::new(),
            }
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let workdir = match tempfile::Builder::new().prefix("scale-bench-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("scale bench: no temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = match options(workdir.path().to_path_buf()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("scale bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "scale bench: sizes {:?}; operator `{} run --concurrency {}`; commit latency runs: {}; {} CPU(s); operator logs in {}",
        opts.sizes,
        env!("CARGO_BIN_EXE_tenant-operator"),
        opts.concurrency,
        if opts.latency.is_zero() { "off".to_string() } else { format!("{:.1} ms", opts.latency.as_secs_f64() * 1000.0) },
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1),
        opts.workdir.display(),
    );
    if noisy_case() {
        let mut failed = false;
        for &n in &opts.sizes {
            match noisy::bench(&opts, n).await {
                Ok(within) => failed |= !within,
                Err(e) => {
                    println!("noisy tenant, N = {n}: FAILED: {e}");
                    failed = true;
                }
            }
        }
        if failed {
            println!("noisy tenant: a run failed or a budget was missed; operator logs kept in {}", opts.workdir.display());
            let _ = workdir.keep();
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    let mut failed = false;
    let mut outcomes = Vec::new();
    for &n in &opts.sizes {
        match run_size(&opts, n).await {
            Ok(outcome) => {
                failed |= writes(&outcome.resync.requests) != 0 || !outcome.resync.idle;
                outcomes.push(outcome);
            }
            Err(e) => {
                println!("N = {n}: FAILED: {e}");
                failed = true;
            }
        }
    }
    summary(&outcomes, &opts);
    let by_n: BTreeMap<usize, usize> = outcomes.iter().map(|o| (o.n, writes(&o.resync.requests))).collect();
    if failed {
        println!(
            "FAILED (a size did not converge in time, or a resync wrote or was not idle in time; resync writes by N: {by_n:?}); operator logs kept in {}",
            opts.workdir.display()
        );
        // Keep the logs for a look.
        let _ = workdir.keep();
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
