//! A real Kubernetes control plane for the scenarios: etcd, `kube-apiserver` and
//! `kube-controller-manager` (what controller-runtime projects call *envtest*), started once per
//! test binary and shared by its scenarios (they isolate themselves by random slugs).
//!
//! - `TENANT_OPERATOR_K8S_BINARIES` names a directory holding either the archive
//!   `k8s-<version>.tar.xz` with its `SHA256SUMS` (checked, then unpacked once into
//!   `target/k8s/<archive digest>/`), or the unpacked `kube-apiserver`,
//!   `kube-controller-manager` and `kubectl`. etcd is Debian's `etcd` on the `PATH` (or
//!   `TENANT_OPERATOR_ETCD`).
//! - Every process listens on a free port the kernel picked (never a fixed one: other runs share
//!   the machine) and keeps its data in a fresh directory in memory (`/dev/shm`, else the temporary directory).
//! - The processes die with the test binary, also when it is killed: they are started from a
//!   thread that lives as long as the process, with `PR_SET_PDEATHSIG` (the kernel kills them
//!   when that thread ends), and an `atexit` hook stops them and removes their data when the
//!   binary exits normally. Data directories of runs that were killed are removed by the next
//!   start.
//! - The [stand-ins](super::stand_ins) for what a control plane lacks (kubelet, ingress
//!   controller) run on that same thread for the life of the binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where the control plane's binaries (or their archive) are.
pub const BINARIES_ENV: &str = "TENANT_OPERATOR_K8S_BINARIES";
/// Another etcd than the `etcd` on the `PATH`.
pub const ETCD_ENV: &str = "TENANT_OPERATOR_ETCD";
/// The binaries the control plane needs, each listed in `SHA256SUMS`.
const BINARIES: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kubectl"];
/// Prefix of the data directories (`<prefix><pid>`), so that a later run can remove the ones of
/// runs that were killed.
const DATA_DIR_PREFIX: &str = "tenant-operator-k8s.";
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running control plane: its administrator's kubeconfig and `kubectl`.
#[derive(Debug)]
pub struct ControlPlane {
    /// A kubeconfig of the administrator (`system:masters`).
    pub kubeconfig: PathBuf,
    /// The directory of `kubectl` and the server binaries.
    pub bin_dir: PathBuf,
    /// The API server's `gitVersion`, e.g. `v1.36.0`.
    pub version: String,
    /// Where the processes keep their data and logs.
    pub dir: PathBuf,
}

impl ControlPlane {
    /// The `kubectl` of the archive.
    pub fn kubectl(&self) -> PathBuf {
        self.bin_dir.join("kubectl")
    }
}

/// Whether `TENANT_OPERATOR_K8S_BINARIES` is set.
pub fn configured() -> bool {
    std::env::var_os(BINARIES_ENV).is_some_and(|v| !v.is_empty())
}

/// The control plane of this test binary, started on first use. `Err` says why there is none
/// (binaries not configured, a checksum mismatch, a process that would not start).
pub fn shared() -> Result<&'static ControlPlane, String> {
    static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let started = start_on_keeper_thread();
            if let Ok(plane) = &started {
                // Past the harness's capture: the log says which server the scenarios ran on.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "real API server {} (kubeconfig {})", plane.version, plane.kubeconfig.display());
            }
            started
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Start the control plane from a thread that never ends: `PR_SET_PDEATHSIG` fires when the
/// *thread* that started a child ends, so a test's thread would take the servers with it.
fn start_on_keeper_thread() -> Result<ControlPlane, String> {
    let (started, result) = mpsc::channel();
    std::thread::Builder::new()
        .name("control-plane".into())
        .spawn(move || {
            let mut last_error = String::new();
            // A port picked free can be taken by someone else before the server binds it: try
            // again with new ports.
            for _ in 0..3 {
                match start() {
                    Ok(plane) => {
                        let kubeconfig = plane.kubeconfig.clone();
                        let _ = started.send(Ok(plane));
                        super::stand_ins::run_forever(&kubeconfig);
                        loop {
                            std::thread::park();
                        }
                    }
                    Err(e) => {
                        // Nothing of a failed start may stay around for the next one.
                        stop_children();
                        last_error = e;
                    }
                }
            }
            let _ = started.send(Err(last_error));
        })
        .map_err(|e| format!("cannot start the control plane's thread: {e}"))?;
    result.recv().map_err(|_| "the control plane's thread ended without an answer".to_string())?
}

fn start() -> Result<ControlPlane, String> {
    let source =
        std::env::var_os(BINARIES_ENV).filter(|v| !v.is_empty()).map(PathBuf::from).ok_or_else(|| format!("{BINARIES_ENV} is not set"))?;
    let bin_dir = binaries(&source)?;
    let etcd = std::env::var_os(ETCD_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("etcd"));

    remove_stale_data_dirs();
    let dir = data_root().join(format!("{DATA_DIR_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    register_exit_hook(&dir);

    let [etcd_client, etcd_peer, api_port, kcm_port] = free_ports::<4>()?;
    let token = random_token();
    run(Command::new("openssl").args(["genrsa", "-out"]).arg(dir.join("sa.key")).arg("2048"))?;
    write(&dir.join("tokens.csv"), &format!("{token},admin,admin,\"system:masters\"\n"))?;
    let kubeconfig = dir.join("kubeconfig");
    write(&kubeconfig, &admin_kubeconfig(api_port, &token))?;

    let etcd_url = format!("http://127.0.0.1:{etcd_client}");
    let peer_url = format!("http://127.0.0.1:{etcd_peer}");
    spawn(
        &dir,
        "etcd",
        Command::new(&etcd)
            .arg("--data-dir")
            .arg(dir.join("etcd"))
            .args(["--name", "default", "--listen-client-urls", &etcd_url, "--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}"), "--log-level", "warn"]),
    )?;
    let sa_key = dir.join("sa.key");
    spawn(
        &dir,
        "kube-apiserver",
        Command::new(bin_dir.join("kube-apiserver"))
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg(format!("--secure-port={api_port}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--authorization-mode=RBAC"])
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg(format!("--token-auth-file={}", dir.join("tokens.csv").display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!("--service-account-key-file={}", sa_key.display()))
            .arg(format!("--service-account-signing-key-file={}", sa_key.display()))
            .args(["--service-cluster-ip-range=10.96.0.0/24", "--disable-admission-plugins=ServiceAccount"]),
    )?;
    wait_ready(&bin_dir, &kubeconfig, &dir)?;
    spawn(
        &dir,
        "kube-controller-manager",
        Command::new(bin_dir.join("kube-controller-manager"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--service-account-private-key-file={}", sa_key.display()))
            .args(["--leader-elect=false", "--bind-address=127.0.0.1"])
            // A quota made before the quota controller counts a freshly installed CRD (each test
            // binary installs the CRDs, then at once makes account quotas that count
            // TenantUsers) is counted at the controller's next full resync: five minutes by
            // default, which on a real cluster only its first tenants wait for.
            .arg("--resource-quota-sync-period=20s")
            .arg(format!("--secure-port={kcm_port}"))
            .arg(
                "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,-attachdetach,\
                 -persistentvolume-binder,-persistentvolume-expander,-ttl",
            ),
    )?;
    let version = server_version(&bin_dir, &kubeconfig)?;
    Ok(ControlPlane { kubeconfig, bin_dir, version, dir })
}

/// The directory with the three binaries: `source` itself, or the archive in it unpacked into
/// `target/k8s/<digest>/` after both the archive and the binaries matched `SHA256SUMS`.
fn binaries(source: &Path) -> Result<PathBuf, String> {
    if BINARIES.iter().all(|b| source.join(b).is_file()) {
        return Ok(source.to_path_buf());
    }
    let sums_file = source.join("SHA256SUMS");
    let sums = std::fs::read_to_string(&sums_file).map_err(|e| format!("{}: {e}", sums_file.display()))?;
    let (digest, archive) = sums
        .lines()
        .filter_map(|l| l.split_once("  "))
        .find(|(_, name)| name.ends_with(".tar.xz"))
        .ok_or_else(|| format!("{} lists no .tar.xz archive", sums_file.display()))?;
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("k8s").join(digest);
    if BINARIES.iter().all(|b| cache.join(b).is_file()) && cache.join(".verified").is_file() {
        return Ok(cache);
    }
    // Several test binaries may unpack at once: each into its own directory, then one rename.
    run(Command::new("sha256sum").args(["--check", "--ignore-missing", "--quiet", "SHA256SUMS"]).current_dir(source))
        .map_err(|e| format!("{}: the archive does not match SHA256SUMS: {e}", source.join(archive).display()))?;
    let unpacking = cache.with_extension(format!("unpacking.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&unpacking);
    std::fs::create_dir_all(&unpacking).map_err(|e| format!("{}: {e}", unpacking.display()))?;
    run(Command::new("tar").arg("-xJf").arg(source.join(archive)).arg("-C").arg(&unpacking))?;
    std::fs::copy(&sums_file, unpacking.join("SHA256SUMS")).map_err(|e| format!("copy SHA256SUMS: {e}"))?;
    run(Command::new("sha256sum").args(["--check", "--ignore-missing", "--quiet", "SHA256SUMS"]).current_dir(&unpacking))
        .map_err(|e| format!("the unpacked binaries do not match SHA256SUMS: {e}"))?;
    write(&unpacking.join(".verified"), "")?;
    if std::fs::rename(&unpacking, &cache).is_err() {
        // Another binary got there first with the same verified content.
        let _ = std::fs::remove_dir_all(&unpacking);
    }
    Ok(cache)
}

/// The processes started, for the exit hook.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

fn register_exit_hook(dir: &Path) {
    extern "C" fn stop_control_plane() {
        stop_children();
        if let Some(dir) = DATA_DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    if DATA_DIR.set(dir.to_path_buf()).is_ok() {
        // SAFETY: registers a plain function with no captured state.
        unsafe {
            libc::atexit(stop_control_plane);
        }
    }
}

/// Where the data directories go: memory (`/dev/shm`) where there is one, since etcd waits for
/// the disk on every write and test data need not survive; the temporary directory otherwise.
fn data_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Kill and reap the processes started so far, newest first.
fn stop_children() {
    let pids: Vec<u32> = CHILDREN.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default();
    for pid in pids.iter().rev() {
        // SAFETY: signalling and reaping our own children, by pid.
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            libc::waitpid(*pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
    }
}

/// Remove the data directories of earlier runs whose process is gone (killed before its exit hook).
fn remove_stale_data_dirs() {
    let Ok(entries) = std::fs::read_dir(data_root()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(DATA_DIR_PREFIX).and_then(|p| p.parse::<u32>().ok()) {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Start a server process whose output goes to `<dir>/<name>.log`, killed by the kernel when the
/// thread that started it ends.
fn spawn(dir: &Path, name: &str, command: &mut Command) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| format!("{name}.log: {e}"))?;
    let err = log.try_clone().map_err(|e| format!("{name}.log: {e}"))?;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child: Child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {name} ({:?}): {e}", command.get_program()))?;
    if let Ok(mut children) = CHILDREN.lock() {
        children.push(child.id());
    }
    // The exit hook reaps it; the handle is not needed.
    std::mem::forget(child);
    Ok(())
}

/// Wait until the API server answers `/readyz` (or say what its log says).
fn wait_ready(bin_dir: &Path, kubeconfig: &Path, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let ready = Command::new(bin_dir.join("kubectl"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["get", "--raw", "/readyz"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("kube-apiserver.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let etcd = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
            let etcd_tail: Vec<&str> = etcd.lines().rev().take(10).collect();
            return Err(format!(
                "kube-apiserver was not ready within {READY_TIMEOUT:?}; its log ends:\n{}\netcd's log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                etcd_tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The server's `gitVersion`.
fn server_version(bin_dir: &Path, kubeconfig: &Path) -> Result<String, String> {
    let out = Command::new(bin_dir.join("kubectl"))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["get", "--raw", "/version"])
        .output()
        .map_err(|e| format!("kubectl: {e}"))?;
    let version: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("/version: {e}"))?;
    version["gitVersion"].as_str().map(str::to_string).ok_or_else(|| format!("/version has no gitVersion: {version}"))
}

/// `N` distinct ports that were free a moment ago (all held until every one is picked).
fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    let listeners: Vec<std::net::TcpListener> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>().map_err(|e| format!("free port: {e}"))?;
    let ports: Vec<u16> = listeners.iter().filter_map(|l| l.local_addr().ok().map(|a| a.port())).collect();
    ports.try_into().map_err(|_| "free port: no local address".to_string())
}

fn random_token() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

fn admin_kubeconfig(port: u16, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:{port}\n    \
         insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: local\n  \
         context:\n    cluster: local\n    user: admin\ncurrent-context: local\n"
    )
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Run a short command; `Err` carries its output.
fn run(command: &mut Command) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{:?}: {e}", command.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed: {}{}", command.get_program(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}
