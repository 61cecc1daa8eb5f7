//! The noisy-tenant case (issue 21): one tenant holds `BENCH_NOISY_CONFIGMAPS` (1,000)
//! ConfigMaps labelled with its slug, each with `BENCH_NOISY_ANNOTATION_KB` (200) KB of
//! annotations under the operator's prefix, plus `BENCH_NOISY_USERS` (5,000) TenantUsers,
//! while N other Tenants converge. Two runs back to back, each on a fresh fake and a fresh
//! operator process: N Tenants alone, then N Tenants beside the noisy one (its noise in place
//! and the operator restarted over it, so that its initial lists carry the noise). Reported:
//! the N Tenants' convergence time in each run, the operator's RSS and peak (VmHWM) in each,
//! and the time the operator took to serve the noisy tenant's users.
//!
//! ```sh
//! cargo bench --bench scale -- noisy          # N = 1000
//! cargo bench --bench scale -- noisy 200      # another N
//! ```

use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use serde_json::{json, Value};
use tenant_operator::types::Tenant;

use super::{env_number, fake_for_operator, fleet, mib, secs, start_operator, wait_all_ready, Options, MIB};

const NOISY: &str = "noisy";
/// Objects per `insert_objects` call (keeps the bench's own peak down).
const INSERT_BATCH: usize = 100;

struct Noise {
    config_maps: usize,
    annotation_bytes: usize,
    users: usize,
}

/// What one run measured.
struct Run {
    convergence: Duration,
    rss_after: u64,
    hwm: u64,
    operator_cpu: Duration,
}

fn noisy_tenant() -> Result<Tenant, String> {
    serde_json::from_value(json!({
        "apiVersion": fleet::TENANT_API, "kind": "Tenant", "metadata": {"name": NOISY},
        "spec": {"displayName": "Noisy", "cluster": "uk", "environments": ["dev"], "database": {"provider": "none"}}
    }))
    .map_err(|e| e.to_string())
}

fn config_map(i: usize, annotation_bytes: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": format!("noise-{i:05}"), "namespace": format!("{NOISY}-dev"),
                        "labels": {"tenancy.platform.dev/tenant": NOISY},
                        "annotations": {"tenancy.platform.dev/note": "n".repeat(annotation_bytes)}},
           "data": {"k": "v"}})
}

fn user(i: usize) -> Value {
    json!({"apiVersion": fleet::TENANT_API, "kind": "TenantUser",
           "metadata": {"name": format!("user-{i:05}"), "namespace": format!("{NOISY}-account")},
           "spec": {"email": format!("user-{i:05}@noisy.example"), "username": format!("user-{i:05}"),
                    "firstName": "N", "lastName": "U", "roles": ["Designer"]}})
}

fn users_ready(fake: &FakeApiServer) -> usize {
    fake.count_objects(fleet::TENANT_API, "TenantUser", |user| {
        user.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    })
}

fn insert(fake: &FakeApiServer, objects: impl Iterator<Item = Value>) -> Result<(), String> {
    let objects: Vec<Value> = objects.collect();
    for batch in objects.chunks(INSERT_BATCH) {
        fake.insert_objects(batch, "tenant-admin")?;
    }
    Ok(())
}

/// N Tenants converge on a fresh fake; with `noise`, beside the noisy tenant.
async fn run(opts: &Options, tenants: &[Tenant], noise: Option<&Noise>) -> Result<Run, String> {
    let name = if noise.is_some() { "noisy" } else { "quiet" };
    let (fake, kubeconfig) = fake_for_operator(opts, Duration::ZERO, name).await?;
    let mut op = start_operator(opts, &format!("{name}-1"), &kubeconfig).await?;
    op.wait_idle(0, Instant::now() + opts.timeout).await?;
    let mut expected = tenants.len();
    if let Some(noise) = noise {
        expected += 1;
        fleet::create_tenants(&fake.client(), &[noisy_tenant()?]).await?;
        wait_all_ready(&fake, &op, 1, Instant::now(), opts.timeout).await?;
        let started = Instant::now();
        insert(&fake, (0..noise.config_maps).map(|i| config_map(i, noise.annotation_bytes)))?;
        insert(&fake, (0..noise.users).map(user))?;
        println!(
            "  noise inserted in {}: {} ConfigMaps of {} KB annotations, {} TenantUsers",
            secs(started.elapsed()),
            noise.config_maps,
            noise.annotation_bytes / 1000,
            noise.users
        );
        while users_ready(&fake) < noise.users {
            if started.elapsed() > opts.timeout {
                return Err(format!("only {}/{} noisy users Ready", users_ready(&fake), noise.users));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let reconciles = op.reconciles().await?.completed;
        op.wait_idle(reconciles, Instant::now() + opts.timeout).await?;
        let memory = op.memory();
        println!(
            "  the noisy tenant's {} users Ready after {}; operator RSS {} (VmHWM {}), CPU {}",
            noise.users,
            secs(started.elapsed()),
            mib(memory.rss),
            mib(memory.hwm),
            secs(op.cpu())
        );
        // A restart lists everything again, the noise included.
        op.stop().await;
        let restarted = Instant::now();
        op = start_operator(opts, &format!("{name}-2"), &kubeconfig).await?;
        let reconciles = op.wait_idle(0, Instant::now() + opts.timeout).await;
        let memory = op.memory();
        println!(
            "  restarted over the noise: idle after {} ({}); RSS {} (VmHWM {})",
            secs(restarted.elapsed()),
            if reconciles.is_ok() { "ok" } else { "not idle in time" },
            mib(memory.rss),
            mib(memory.hwm)
        );
    }
    let cpu = op.cpu();
    let started = Instant::now();
    fleet::create_tenants(&fake.client(), tenants).await?;
    let convergence = wait_all_ready(&fake, &op, expected, started, opts.timeout).await?;
    let memory = op.memory();
    let run = Run { convergence, rss_after: memory.rss, hwm: memory.hwm, operator_cpu: op.cpu() - cpu };
    println!(
        "  {name}: {} Tenants Ready after {}; operator CPU {}; RSS {} (VmHWM since its start {})",
        tenants.len(),
        secs(run.convergence),
        secs(run.operator_cpu),
        mib(run.rss_after),
        mib(run.hwm)
    );
    op.stop().await;
    Ok(run)
}

/// `opts` with the configuration's account quota raised to `users` TenantUsers (a copy of the
/// configuration in the work directory).
fn with_user_quota(opts: &Options, users: usize) -> Result<Options, String> {
    let mut config = opts.config.clone();
    config.namespaces.account_quota.insert(
        tenant_operator::config::ACCOUNT_USERS_QUOTA.to_string(),
        k8s_openapi::apimachinery::pkg::api::resource::Quantity((users + 100).to_string()),
    );
    let config_path = opts.workdir.join("config-noisy.yaml");
    let yaml = serde_yaml::to_string(&config).map_err(|e| e.to_string())?;
    std::fs::write(&config_path, yaml).map_err(|e| format!("{}: {e}", config_path.display()))?;
    Ok(Options {
        sizes: opts.sizes.clone(),
        concurrency: opts.concurrency,
        timeout: opts.timeout,
        latency: opts.latency,
        prepopulate_from: opts.prepopulate_from,
        workdir: opts.workdir.clone(),
        config_path,
        config,
    })
}

/// Both runs, back to back; `Err` when a run fails, `Ok(false)` when a budget is missed.
pub async fn bench(opts: &Options, n: usize) -> Result<bool, String> {
    let noise = Noise {
        config_maps: env_number("BENCH_NOISY_CONFIGMAPS", 1000)?,
        annotation_bytes: env_number("BENCH_NOISY_ANNOTATION_KB", 200usize)? * 1000,
        users: env_number("BENCH_NOISY_USERS", 5000)?,
    };
    let tenants = fleet::tenants(n)?;
    // The account quota (500 TenantUsers by default) would stop the noisy tenant's users: the
    // case measured is a platform that lets one tenant have this many. Both runs use it.
    let opts = &with_user_quota(opts, noise.users)?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("noisy tenant, N = {n}; load average before: {}", load.trim());
    let quiet = run(opts, &tenants, None).await?;
    let noisy = run(opts, &tenants, Some(&noise)).await?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let ratio = noisy.convergence.as_secs_f64() / quiet.convergence.as_secs_f64();
    let budget_rss = 64.0 * MIB;
    let within = noisy.hwm as f64 <= budget_rss && ratio <= 1.10;
    println!("| run | convergence of {n} Tenants | operator CPU | RSS after | VmHWM |");
    println!("|---|---|---|---|---|");
    for (label, run) in [("alone", &quiet), ("beside the noisy tenant", &noisy)] {
        println!("| {label} | {} | {} | {} | {} |", secs(run.convergence), secs(run.operator_cpu), mib(run.rss_after), mib(run.hwm));
    }
    println!(
        "noisy / alone convergence: {ratio:.2} (budget 1.10); VmHWM beside the noisy tenant {} (budget 64 MiB); load average after: {}",
        mib(noisy.hwm),
        load.trim()
    );
    Ok(within)
}
