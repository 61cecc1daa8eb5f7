//! The operator as a separate process: `tenant-operator run` against the fake's kubeconfig,
//! as its ServiceAccount, with its `/metrics` and `/readyz` on a local port; its memory and
//! CPU time from `/proc`.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long nothing must happen before the operator counts as idle.
pub const QUIET: Duration = Duration::from_secs(3);

pub struct OperatorProcess {
    child: Child,
    port: u16,
    pub log: PathBuf,
}

/// Reconciles of both controllers, from `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reconciles {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
}

/// `/proc/<pid>/status` memory figures, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl OperatorProcess {
    /// Start `tenant-operator run` with `kubeconfig` (the fake's URL and the ServiceAccount's
    /// token) and the example configuration; its log goes to `<dir>/<name>.log`.
    pub fn start(dir: &Path, name: &str, kubeconfig: &Path, config: &Path, concurrency: u16) -> Result<Self, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(env!("CARGO_BIN_EXE_tenant-operator"))
            .args(["run", "--no-leader-election", "--concurrency", &concurrency.to_string(), "--http-addr", &format!("127.0.0.1:{port}")])
            .arg("--config")
            .arg(config)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start the operator: {e}"))?;
        Ok(Self { child, port, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn http_get(&self, path: &str) -> Result<(u16, String), String> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.map_err(|e| e.to_string())?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.map_err(|e| e.to_string())?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response.as_str(), ""));
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        Ok((code, body.to_string()))
    }

    /// Wait until `/readyz` answers 200 (caches synced, controllers running).
    pub async fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("the operator exited ({status}) before it was ready; see {}", self.log.display()));
            }
            if let Ok((200, _)) = self.http_get("/readyz").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("the operator was not ready in time; see {}", self.log.display()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn reconciles(&self) -> Result<Reconciles, String> {
        let (code, text) = self.http_get("/metrics").await?;
        if code != 200 {
            return Err(format!("/metrics answered {code}"));
        }
        let sum = |prefix: &str| -> u64 {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
                .sum::<f64>() as u64
        };
        Ok(Reconciles {
            started: sum("tenant_operator_reconciles_total{"),
            completed: sum("tenant_operator_reconcile_duration_seconds_count{"),
            failed: sum("tenant_operator_reconcile_errors_total{"),
        })
    }

    /// Wait until at least `min_completed` reconciles finished, none is running and none
    /// started for [`QUIET`]; returns when the last one finished.
    pub async fn wait_idle(&self, min_completed: u64, deadline: Instant) -> Result<Instant, String> {
        let mut last = self.reconciles().await?;
        let mut since = Instant::now();
        let (started, mut report) = (Instant::now(), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.reconciles().await?;
            if report.elapsed() >= Duration::from_secs(10) {
                report = Instant::now();
                println!(
                    "    … {:>6.1} s: reconciles {} started / {} done / {} failed; operator CPU {:.1} s, RSS {:.1} MiB",
                    started.elapsed().as_secs_f64(),
                    now.started,
                    now.completed,
                    now.failed,
                    self.cpu().as_secs_f64(),
                    self.memory().rss as f64 / (1024.0 * 1024.0)
                );
            }
            if now != last {
                last = now;
                since = Instant::now();
            }
            if now.completed >= min_completed && now.started == now.completed && since.elapsed() >= QUIET {
                return Ok(since);
            }
            if Instant::now() > deadline {
                return Err(format!("operator not idle in time: {} reconciles started, {} completed", now.started, now.completed));
            }
        }
    }

    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Memory { rss: kib("VmRSS:"), hwm: kib("VmHWM:") }
    }

    /// CPU time (user + system) the process has used.
    pub fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.pid()))
    }

    /// SIGTERM (the operator finishes in-flight reconciles and exits), then SIGKILL if it is
    /// still running after 60 s.
    pub async fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("warning: the operator did not stop within 60 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User + system CPU time of a `/proc/<pid>/stat` (`/proc/self/stat` for the bench itself,
/// which is the fake API server and the bench's clients).
pub fn cpu_of(stat_path: &str) -> Duration {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let total = ticks(11) + ticks(12);
    Duration::from_secs_f64(total as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
