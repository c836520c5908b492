//! Helpers for the end-to-end tests: the shared lab of real servers, the built binaries, and
//! running a module the way Ansible does (an args file, one JSON object back).
//!
//! `.ci/test` starts a lab and exports DBCADENCE_TEST_LAB. Run alone (`cargo test`), the
//! helpers start one in /tmp/dbcadence-test-lab and leave it running for the next run
//! (`dbcadence lab down --dir /tmp/dbcadence-test-lab --purge` stops it).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dbcadence_core::engine::{self, LabEngine};
use dbcadence_core::lab::{self, Lab, LabInstance, LabRequest};
use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A binary built by `cargo build --workspace` (module, CLI).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = dir.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is not built: run .ci/setup (or cargo build --workspace)",
        path.display()
    );
    path
}

/// A tool of the project's Python venv (ansible-playbook, ansible-lint...).
pub fn venv_bin(name: &str) -> PathBuf {
    let path = workspace_root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run .ci/setup",
        path.display()
    );
    path
}

/// The shared lab (DBCADENCE_TEST_LAB, else /tmp/dbcadence-test-lab): one PostgreSQL and one
/// MariaDB server, and with `s3` its object store.
fn shared_lab_request(s3: bool) -> LabRequest {
    let dir = std::env::var_os("DBCADENCE_TEST_LAB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/dbcadence-test-lab"));
    LabRequest {
        dir,
        postgres: 1,
        mysql: 1,
        pg_replicas: 0,
        seed: false,
        tuned_for_loading: false,
        pg_bin_dir: None,
        hosts: 0,
        runner: false,
        monitoring: false,
        s3,
    }
}

/// The shared lab: one PostgreSQL and one MariaDB server.
pub fn shared_lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        lab::up(&shared_lab_request(false)).unwrap_or_else(|e| panic!("lab up: {e}"))
    })
}

/// The shared lab with its object store (Garage, started on first use): S3 repository tests.
pub fn shared_s3_lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        shared_lab();
        lab::up(&shared_lab_request(true)).unwrap_or_else(|e| panic!("lab up --s3: {e}"))
    })
}

/// A second pair of servers (one PostgreSQL, one MariaDB), for tests that restore into another
/// server than the shared lab's (DBCADENCE_TEST_TARGETS, else /tmp/dbcadence-test-targets). A
/// fixed directory like the shared lab's rather than a [`PrivateLab`]: a static is never
/// dropped, so a private lab held in one left its servers running after the tests. `.ci/test`
/// stops both labs on exit.
pub fn targets_lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let dir = std::env::var_os("DBCADENCE_TEST_TARGETS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/dbcadence-test-targets"));
        let request = LabRequest {
            dir,
            ..shared_lab_request(false)
        };
        lab::up(&request).unwrap_or_else(|e| panic!("lab up (targets): {e}"))
    })
}

/// The shared lab bucket as a repository argument, under a key prefix of the test's own.
pub fn s3_repository(prefix: &str) -> Value {
    let s3 = shared_s3_lab().s3.as_ref().expect("the lab's object store");
    let mut repository = serde_json::to_value(s3.repository()).unwrap();
    repository["prefix"] = prefix.into();
    repository
}

pub fn pg() -> &'static LabInstance {
    shared_lab().instance("pg1").expect("pg1 in the lab")
}

pub fn my() -> &'static LabInstance {
    shared_lab().instance("my1").expect("my1 in the lab")
}

/// A lab connection with the lab-only operations (execute_in, ensure_admin_login).
pub fn connect(instance: &LabInstance) -> Box<dyn LabEngine> {
    engine::connect_lab(&instance.connection().unwrap())
        .unwrap_or_else(|e| panic!("connect {}: {e}", instance.name))
}

/// A name no other test uses, so that tests can share servers.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", dbcadence_core::util::random_hex(3).unwrap())
}

/// db_backup arguments for a lab instance over verify-full TLS, with the ledger and metrics
/// beside the backups.
pub fn backup_args(instance: &LabInstance, database: &str, backup_dir: &Path) -> Value {
    serde_json::json!({
        "engine": instance.engine, "login_host": instance.host, "login_port": instance.port,
        "login_user": instance.user, "login_password": instance.password().unwrap(),
        "ssl_mode": "verify-full", "ca_cert": instance.ca_cert,
        "database": database, "backup_dir": backup_dir, "instance_id": instance.name,
        "ledger_path": backup_dir.join("ledger.jsonl"), "metrics_dir": backup_dir.join("metrics"),
        "lock_timeout": 1,
    })
}

/// Backs up `database` of `instance` into `backup_dir` with db_backup (which must succeed);
/// returns the new backup's directory.
pub fn backed_up(instance: &LabInstance, database: &str, backup_dir: &Path) -> PathBuf {
    let run = run_module("db_backup", &backup_args(instance, database, backup_dir));
    assert_eq!(run.json["failed"], false, "{}", run.json);
    PathBuf::from(run.json["path"].as_str().unwrap())
}

/// A module started the way Ansible starts it (an args file, one JSON object back), in the
/// background, for tests that act while it runs (kill it, stop its server).
pub struct BackgroundModule {
    handle: duct::Handle,
    _dir: tempfile::TempDir,
}

pub fn start_module(name: &str, args: &Value) -> BackgroundModule {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("args.json");
    std::fs::write(&path, serde_json::to_vec(args).unwrap()).unwrap();
    let handle = duct::cmd(bin(name), [&path])
        .stdout_capture()
        .stderr_null()
        .unchecked()
        .start()
        .unwrap();
    BackgroundModule { handle, _dir: dir }
}

impl BackgroundModule {
    /// kill -9, as a crash would.
    pub fn kill(&self) {
        self.handle.kill().unwrap();
    }

    /// Waits for it and returns its one JSON object.
    pub fn finish(self) -> Value {
        let output = self.handle.wait().unwrap();
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {:?}", output.stdout))
    }
}

/// Polls `condition` every 5 ms until it holds; fails the test naming `what` after `seconds`.
pub fn wait_until(seconds: u64, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not after {seconds}s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Samples the command line of every process on the machine while it runs, keeping those that
/// mention one of `tools`: to prove a secret never reaches a child's argv (which any local user
/// can read in /proc).
pub struct ArgvSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl ArgvSampler {
    pub fn start(tools: &[&str]) -> ArgvSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tools: Vec<String> = tools.iter().map(|t| t.to_string()).collect();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                        if tools.iter().any(|t| text.contains(t.as_str())) && !seen.contains(&text)
                        {
                            seen.push(text);
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            seen
        });
        ArgvSampler { stop, thread }
    }

    /// Stops sampling; the command lines seen.
    pub fn stop(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Asserts that every file below `dir` has `file_mode` and every directory `dir_mode`
/// (permission bits only), naming the first that does not. Returns how many files it checked.
pub fn assert_modes(dir: &Path, file_mode: u32, dir_mode: u32) -> usize {
    use std::os::unix::fs::PermissionsExt;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, dir_mode, "{} is {mode:o}", path.display());
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode, file_mode, "{} is {mode:o}", path.display());
            files += 1;
        }
    }
    files
}

/// What a module printed: the parsed JSON object and the raw stdout.
pub struct ModuleRun {
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Runs a module binary like Ansible does: arguments in a JSON file, path as argv[1].
pub fn run_module(name: &str, args: &Value) -> ModuleRun {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("args.json");
    std::fs::write(&path, serde_json::to_vec(args).unwrap()).unwrap();
    run_module_file(name, &path)
}

pub fn run_module_file(name: &str, path: &Path) -> ModuleRun {
    let output = duct::cmd(bin(name), [path])
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "a module prints exactly one JSON line, got: {stdout}"
    );
    let json =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    ModuleRun {
        json,
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code().unwrap_or(-1),
    }
}

/// Endpoint entries for a lab instance, in the sources format (password by file reference).
pub fn endpoint(instance: &LabInstance, name: &str) -> Value {
    serde_json::json!({
        "name": name,
        "engine": instance.engine,
        "login_host": instance.host,
        "login_port": instance.port,
        "login_user": instance.user,
        "login_password_file": instance.password_file,
        "labels": {"env": instance.env},
    })
}

/// A lab of its own for a test whose servers must not change under it; stopped and deleted
/// when dropped.
pub struct PrivateLab {
    pub lab: Lab,
    _dir: tempfile::TempDir,
}

impl PrivateLab {
    pub fn start(postgres: usize, mysql: usize, pg_replicas: usize) -> PrivateLab {
        PrivateLab::start_on(postgres, mysql, pg_replicas, None)
    }

    /// A private lab whose PostgreSQL primaries run the binaries in `pg_bin_dir`.
    pub fn start_on(
        postgres: usize,
        mysql: usize,
        pg_replicas: usize,
        pg_bin_dir: Option<PathBuf>,
    ) -> PrivateLab {
        PrivateLab::start_with(postgres, mysql, pg_replicas, pg_bin_dir, false)
    }

    /// A private lab with node_exporter and Prometheus (the project's rules) of its own.
    pub fn start_monitored(postgres: usize, mysql: usize) -> PrivateLab {
        PrivateLab::start_with(postgres, mysql, 0, None, true)
    }

    fn start_with(
        postgres: usize,
        mysql: usize,
        pg_replicas: usize,
        pg_bin_dir: Option<PathBuf>,
        monitoring: bool,
    ) -> PrivateLab {
        let dir = tempfile::Builder::new()
            .prefix("dbc-priv.")
            .tempdir_in("/tmp")
            .unwrap();
        let lab = lab::up(&LabRequest {
            dir: dir.path().to_path_buf(),
            postgres,
            mysql,
            pg_replicas,
            seed: false,
            tuned_for_loading: false,
            pg_bin_dir,
            hosts: 0,
            runner: false,
            monitoring,
            s3: false,
        })
        .unwrap_or_else(|e| panic!("private lab: {e}"));
        PrivateLab { lab, _dir: dir }
    }

    pub fn instance(&self, name: &str) -> &LabInstance {
        self.lab.instance(name).unwrap()
    }
}

impl Drop for PrivateLab {
    fn drop(&mut self) {
        let _ = lab::down(&self.lab.dir, true);
    }
}

/// The PostgreSQL 15.8 server binaries that .ci/setup fetches (db_patch's real upgrade).
pub fn old_postgres_bin() -> PathBuf {
    let dir = std::env::var_os("DBCADENCE_TEST_OLD_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/dbcadence/postgresql-15.8/native/bin"));
    assert!(
        dir.join("postgres").exists(),
        "{} has no postgres: run .ci/setup (it fetches PostgreSQL 15.8)",
        dir.display()
    );
    dir
}

/// A PostgreSQL session of the lab user over the instance's socket, in `database` (for tests
/// that hold a transaction open or read the catalogue).
pub fn pg_session(instance: &LabInstance, database: &str) -> postgres::Client {
    postgres::Config::new()
        .host_path(&instance.socket)
        .port(instance.port)
        .user(&instance.user)
        .password(instance.password().unwrap())
        .dbname(database)
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| panic!("connect to {database}: {e}"))
}

/// Rows of a query as text, for tests that read what the server holds (catalogue, counts).
/// Over the instance's socket as the lab user, in `database`.
pub fn query(instance: &LabInstance, database: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    match instance.engine {
        dbcadence_core::connection::EngineKind::Postgresql => {
            let mut client = pg_session(instance, database);
            client
                .simple_query(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .into_iter()
                .filter_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        }
        dbcadence_core::connection::EngineKind::Mysql => {
            use mysql_async::prelude::Queryable;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let opts = mysql_async::OptsBuilder::default()
                    .socket(Some(instance.socket.to_string_lossy().into_owned()))
                    .user(Some(instance.user.clone()))
                    .pass(Some(instance.password().unwrap()))
                    .db_name(Some(database.to_string()));
                let mut conn = mysql_async::Conn::new(opts)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {database}: {e}"));
                let rows: Vec<mysql_async::Row> = conn
                    .query(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = conn.disconnect().await;
                rows.iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| {
                                row.get_opt::<Option<String>, usize>(i)
                                    .and_then(|r| r.ok())
                                    .flatten()
                            })
                            .collect()
                    })
                    .collect()
            })
        }
    }
}

/// The collection as .ci/build-dist ships it, installed by `ansible-galaxy collection install`
/// under `into`; returns the collections path to give Ansible (the collection itself is
/// `ansible_collections/dbcadence/maintenance` in it).
pub fn install_dist_collection(into: &Path) -> PathBuf {
    let dir = workspace_root().join("target/dist-collection");
    let tarball = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run .ci/build-dist first", dir.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .unwrap_or_else(|| panic!("no collection in {}; run .ci/build-dist", dir.display()));
    std::fs::create_dir_all(into).unwrap();
    let (ok, out) = ansible(
        "ansible-galaxy",
        vec![
            "collection".into(),
            "install".into(),
            tarball.display().to_string(),
            "-p".into(),
            into.display().to_string(),
        ],
        // Installing where Ansible looks, so that it does not find the development build.
        &[("ANSIBLE_COLLECTIONS_PATH", into.display().to_string())],
    );
    assert!(ok && out.contains("installed successfully"), "{out}");
    into.to_path_buf()
}

/// Runs an Ansible tool of the venv (ansible-playbook, ansible-inventory...) from the workspace
/// with the built collection and `dbcadence` on PATH; its success and its output (stderr
/// included).
pub fn ansible(tool: &str, args: Vec<String>, env: &[(&str, String)]) -> (bool, String) {
    // duct lets the first (innermost) setting of a variable win: `env` comes first.
    let mut cmd = duct::cmd(venv_bin(tool), args);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let collections = workspace_root().join("target/collections");
    cmd = cmd
        .dir(workspace_root())
        .env("ANSIBLE_COLLECTIONS_PATH", &collections)
        .env("ANSIBLE_NOCOLOR", "1")
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin("dbcadence").parent().unwrap().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked();
    let out = cmd.run().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
