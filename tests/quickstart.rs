//! The README's quick start, as written, on a real control plane: a README change that breaks it
//! fails this test.
//!
//! The commands are read from `README.md` (the first two `sh` blocks of "Quick start" and the
//! clean-up command of its text) and run in order from the repository root through `sh`, with
//! `KUBECONFIG` naming the local control plane's administrator and the archive's `kubectl` first
//! on the `PATH`. Two replacements, both needed to run it unattended on a shared machine:
//! `cargo run --` is the operator binary cargo built for this test (`CARGO_BIN_EXE_tenant-operator`,
//! the same program without a second build), left running in the background as the README says;
//! and its `--http-addr` port is a free one (another run on the machine may hold 8080). The
//! cluster's missing parts are the stand-ins of the test support: the ingress controller publishes
//! addresses, and the kubelet starts the database pods once the README's first `kubectl get
//! tenants` has been seen. What the README says the user sees is asserted: the `kubectl get
//! tenants` columns and rows (age aside), the `-o wide` reasons of the users, the namespaces, and
//! the retained namespaces after the clean-up.
//!
//! Runs in the real-server pass (`TENANT_OPERATOR_E2E_SERVER=real`, see `scripts/test`); without
//! the control plane's binaries it says SKIPPED (and fails in CI).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::control_plane::{self, ControlPlane};
use support::stand_ins::KubeletStandIn;

const WAIT: Duration = Duration::from_secs(240);

/// The quick start of the README: its shell blocks, expected outputs and the clean-up command.
struct QuickStart {
    /// Commands of the first `sh` block (set up, run the operator, apply the examples).
    setup: Vec<String>,
    /// Commands of the second `sh` block (look at what was created).
    look: Vec<String>,
    /// The tables shown in plain code blocks: provisioning, then ready.
    tables: Vec<Vec<Vec<String>>>,
    /// The command after "Clean up with".
    cleanup: String,
}

fn read_quick_start() -> QuickStart {
    let readme = std::fs::read_to_string(support::repo_path("README.md")).expect("README.md");
    let start = readme.find("## Quick start").expect("README has a \"## Quick start\" section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map(|i| i + 3).unwrap_or(section.len())];
    let mut sh_blocks = Vec::new();
    let mut tables = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else { continue };
        let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        match lang.trim() {
            "sh" => sh_blocks.push(commands(&body)),
            "" => tables.push(body.iter().map(|l| columns(l)).collect()),
            _ => {}
        }
    }
    let cleanup = section
        .split("Clean up with `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("the quick start says \"Clean up with `...`\"")
        .to_string();
    assert!(sh_blocks.len() >= 2, "the quick start has its two sh blocks: {sh_blocks:?}");
    let look = sh_blocks.remove(1);
    QuickStart { setup: sh_blocks.remove(0), look, tables, cleanup }
}

/// The commands of a shell block: its non-empty lines that are not comments.
fn commands(block: &[&str]) -> Vec<String> {
    block.iter().map(|l| l.trim()).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
}

/// The columns of a table line as kubectl prints them (two or more spaces apart).
fn columns(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()
}

/// A `kubectl get` table without its AGE column (which depends on the clock).
fn without_age(table: &[Vec<String>]) -> Vec<Vec<String>> {
    let age = table.first().and_then(|header| header.iter().position(|c| c == "AGE"));
    table.iter().map(|row| row.iter().enumerate().filter(|(i, _)| Some(*i) != age).map(|(_, c)| c.clone()).collect()).collect()
}

struct Shell<'a> {
    plane: &'a ControlPlane,
    path: String,
}

impl<'a> Shell<'a> {
    fn new(plane: &'a ControlPlane) -> Self {
        let path = format!("{}:{}", plane.bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        Shell { plane, path }
    }

    fn command(&self, line: &str) -> Command {
        let mut command = Command::new("sh");
        command
            .args(["-c", line])
            .current_dir(support::repo_path(""))
            .env("KUBECONFIG", &self.plane.kubeconfig)
            .env("PATH", &self.path)
            .env_remove("RUST_LOG");
        command
    }

    /// Run a command to its end; fail the test with its output if it fails.
    fn run(&self, line: &str) -> String {
        let Output { status, stdout, stderr } = self.command(line).output().unwrap_or_else(|e| panic!("{line}: {e}"));
        let (stdout, stderr) = (String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned());
        assert!(status.success(), "the README's command failed: {line}\n{stdout}{stderr}");
        eprintln!("$ {line}\n{stdout}{stderr}");
        stdout
    }

    /// Run a command until its output satisfies `check` (the user looking again a little later).
    fn run_until(&self, line: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self.run(line);
            if check(&out) {
                return out;
            }
            assert!(Instant::now() < deadline, "`{line}` never showed {what}; last:\n{out}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The operator, started as the README's `cargo run -- run ...` line says, from the binary cargo
/// built for this test, on a free `--http-addr` port; killed when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(shell: &Shell, line: &str, dir: &Path) -> (Self, u16) {
        let rest = line.strip_prefix("cargo run -- ").unwrap_or_else(|| panic!("expected `cargo run -- ...`: {line}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port");
        let rest = rest.replace("--http-addr 127.0.0.1:8080", &format!("--http-addr 127.0.0.1:{port}"));
        assert!(rest.contains(&format!("127.0.0.1:{port}")), "the README's operator serves on 127.0.0.1:8080: {line}");
        let binary = env!("CARGO_BIN_EXE_tenant-operator");
        let log = dir.join("operator.log");
        let out = std::fs::File::create(&log).expect("operator log");
        let err = out.try_clone().expect("operator log");
        let child = shell
            .command(&format!("exec {binary} {rest}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the operator");
        (Operator { child, log }, port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_http_ready(port: u16, operator: &Operator) {
    let deadline = Instant::now() + WAIT;
    loop {
        use std::io::{Read, Write};
        let answer = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        });
        if answer.is_ok_and(|a| a.starts_with("HTTP/1.0 200") || a.starts_with("HTTP/1.1 200")) {
            return;
        }
        assert!(Instant::now() < deadline, "the operator never answered /readyz on 127.0.0.1:{port}; its log:\n{}", operator.log());
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_readme_quick_start_works_as_written() {
    if !support::e2e::Target::from_env().is_real() {
        if control_plane::configured() {
            eprintln!("the quick start runs in the real-server pass ({}=real)", support::e2e::SERVER_ENV);
            return;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: the README quick start needs {} (a real control plane)",
            control_plane::BINARIES_ENV
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the README quick start needs a real control plane: set {} (see tests/README.md)",
            control_plane::BINARIES_ENV
        );
        return;
    }
    let plane = control_plane::shared().unwrap_or_else(|e| panic!("no control plane for the quick start: {e}"));
    let quick_start = read_quick_start();
    let shell = Shell::new(plane);
    let dir = tempfile::tempdir().expect("temp dir");

    // The first block, in order; the operator in the background.
    let mut operator = None;
    let mut first_get = None;
    for line in &quick_start.setup {
        if line.starts_with("cargo run") {
            let (started, port) = Operator::start(&shell, line, dir.path());
            wait_http_ready(port, &started);
            operator = Some(started);
        } else if line == "kubectl get tenants" {
            // Right after the apply the status may not be written yet: look again until it is.
            first_get = Some(shell.run_until(line, "a READY column", |out| {
                out.lines().nth(1).is_some_and(|row| columns(row).len() == quick_start.tables[0][0].len())
            }));
        } else {
            shell.run(line);
        }
    }
    let operator = operator.expect("the quick start runs the operator");
    let first_get = first_get.expect("the quick start ends with `kubectl get tenants`");
    let [provisioning, ready] = [&quick_start.tables[0], &quick_start.tables[1]];
    let seen: Vec<Vec<String>> = first_get.lines().map(columns).collect();
    assert_eq!(without_age(&seen), without_age(provisioning), "`kubectl get tenants` right after the apply:\n{first_get}");
    let wide = shell.run("kubectl get tenants -o wide");
    assert!(wide.lines().next().is_some_and(|h| h.contains("REASON") && h.contains("MESSAGE")), "-o wide adds REASON and MESSAGE:\n{wide}");

    // The PostgreSQL pods run (the kubelet stand-in) and Ingresses have an address (the ingress
    // controller stand-in): the README's second table.
    KubeletStandIn::start_every_pod();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let admin = runtime.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&plane.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("kubeconfig");
        kube::Client::try_from(cfg).expect("client")
    });
    for env in ["dev", "staging", "prod"] {
        runtime.block_on(KubeletStandIn::start_pods_in(&admin, &format!("acme-{env}")));
    }
    let want = without_age(ready);
    shell.run_until("kubectl get tenants", "the README's Ready row", |out| {
        without_age(&out.lines().map(columns).collect::<Vec<_>>()) == want
    });

    // The second block; what its comments and the text promise.
    for line in &quick_start.look {
        let out = shell.run(line);
        if line.starts_with("kubectl get tenantusers") {
            let header = columns(out.lines().next().unwrap_or_default());
            assert_eq!(header, ["NAME", "TENANT", "EMAIL", "EFFECTIVE ROLE", "READY", "AGE"], "{out}");
        } else if line.starts_with("kubectl get ns -l") {
            let names: Vec<String> = out.lines().skip(1).filter_map(|l| columns(l).into_iter().next()).collect();
            assert_eq!(names, ["acme-account", "acme-dev", "acme-prod", "acme-staging"], "{out}");
        } else if line.starts_with("kubectl describe tenant") {
            assert!(out.contains("Events:") && out.contains("Ready"), "conditions and Events:\n{out}");
        }
    }
    // `bsmith`'s custom role is refused, and its `-o wide` reason says so.
    let users = shell.run("kubectl get tenantusers -n acme-account -o wide");
    let reason_of = |name: &str| {
        let header = columns(users.lines().next().unwrap_or_default());
        let column = header.iter().position(|c| c == "REASON").expect("-o wide has REASON");
        users.lines().map(columns).find(|row| row.first().map(String::as_str) == Some(name)).and_then(|row| row.get(column).cloned())
    };
    assert_eq!(reason_of("bsmith").as_deref(), Some("CustomRoleRefused"), "{users}");
    assert!(users.contains("custom role flow-billing-editor is not assignable"), "the message names the role:\n{users}");

    // Clean up while the operator runs: the Retain policy keeps the namespaces, labelled.
    shell.run(&quick_start.cleanup);
    shell.run_until("kubectl get tenants -o name", "the Tenant gone", |out| out.trim().is_empty());
    let retained = shell.run("kubectl get ns -l tenancy.platform.dev/retained=true -o name");
    for env in ["dev", "staging", "prod"] {
        assert!(
            retained.contains(&format!("namespace/acme-{env}")),
            "acme-{env} is retained:\n{retained}\noperator log:\n{}",
            operator.log()
        );
    }
    drop(operator);
}
