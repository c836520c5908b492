//! The lab: throwaway PostgreSQL and MariaDB servers on free 127.0.0.1 ports, for tests,
//! Molecule, the demo and backup verification. No container engine runs on these machines, so
//! the lab starts real server processes (initdb/postgres, mariadb-install-db/mariadbd); starting
//! and stopping them lives in engine/<engine>/server.rs, shared with verification.
//!
//! Layout of a lab directory:
//!
//! ```text
//! DIR/lab.json         what runs where (no secrets)
//! DIR/inventory.yml    Ansible inventory: the inventory script's groups (engine, env_*, tier_*...)
//! DIR/sources.yml      the same servers as `dbcadence inventory` sources
//! DIR/secrets/NAME.password   0600, one per instance
//! DIR/pgN/{data,sock,server.log,port}   DIR/myN/{data,mysqld.sock,mysqld.pid,error.log,port}
//! ```
//!
//! Pitfalls handled here (reference notes): initdb and postgres refuse to run as root, so they
//! run as the `postgres` user through runuser; mariadbd exits silently when it cannot write its
//! paths, so they live in a directory it owns; unix socket paths must stay short; a killed
//! server lingers as a zombie for a moment, so "alive" reads the process state.
//!
//! - `servers`: start (per engine), bootstrap the login user, seed, stop.
//! - `tls`: the lab CA and server certificates.
//! - `files`: lab.json, inventory.yml (the inventory script's group names), sources.yml.
//! - `monitoring`: node_exporter and Prometheus with the project's alert rules (`--monitoring`).
//! - `s3`: Garage, an S3-compatible object store with a bucket and a key (`--s3`).

mod daemon;
mod files;
pub mod hosts;
pub mod monitoring;
pub mod s3;
mod servers;
mod tls;

use files::write_files;
use servers::{start_instance, stop_instance};
use tls::{install_tls, make_tls};

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::connection::{ConnectionArgs, EngineKind, SslMode};
use crate::engine::lab::ServerFiles;
use crate::process::Tool;
use crate::util::{effective_uid, process_alive, random_hex, tail_file};
use crate::{Error, Result};

/// The login user every lab instance gets, with a generated password.
pub const LAB_USER: &str = "dbcadence";
/// Environments handed out round-robin, so that a lab of three per engine has one of each.
pub const LAB_ENVS: [&str; 3] = ["development", "staging", "production"];

/// What `lab up` should start.
#[derive(Debug, Clone)]
pub struct LabRequest {
    pub dir: PathBuf,
    pub postgres: usize,
    pub mysql: usize,
    /// PostgreSQL streaming replicas: replica i (named pg<i>r) follows pg<i>.
    pub pg_replicas: usize,
    /// Create sample databases (an application database and a dated backup copy of it).
    pub seed: bool,
    /// Scratch servers for restores: durability off, large buffers, no binary log.
    pub tuned_for_loading: bool,
    /// PostgreSQL server binaries for new primaries (an older release, for db_patch's
    /// upgrade); None: the system's.
    pub pg_bin_dir: Option<PathBuf>,
    /// Test hosts in network namespaces (host1..hostN), each with `postgres` PostgreSQL and
    /// `mysql` MariaDB servers of its own on its address; 0: the servers run on 127.0.0.1.
    pub hosts: usize,
    /// One more test host, `runner`, without servers: where backups are kept and verified.
    pub runner: bool,
    /// node_exporter (textfile collector on DIR/metrics) and Prometheus with the project's
    /// alert rules, on free 127.0.0.1 ports.
    pub monitoring: bool,
    /// Garage (an S3-compatible object store) with a bucket and a key, on free 127.0.0.1
    /// ports: a repository for backups off the host.
    pub s3: bool,
}

impl LabRequest {
    /// One throwaway server of `engine`, tuned for loading: verification restores into it.
    pub fn scratch(dir: &Path, engine: EngineKind) -> LabRequest {
        let postgres = usize::from(engine == EngineKind::Postgresql);
        let mysql = usize::from(engine == EngineKind::Mysql);
        LabRequest {
            dir: dir.to_path_buf(),
            postgres,
            mysql,
            pg_replicas: 0,
            seed: false,
            tuned_for_loading: true,
            pg_bin_dir: None,
            hosts: 0,
            runner: false,
            monitoring: false,
            s3: false,
        }
    }
}

/// One lab server (lab.json). No secret in here: the password is in `password_file`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct LabInstance {
    pub name: String,
    pub engine: EngineKind,
    pub env: String,
    pub host: String,
    pub port: u16,
    /// Socket directory (postgresql) or socket file (mysql).
    pub socket: PathBuf,
    pub user: String,
    pub password_file: PathBuf,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    /// The lab CA's certificate: every lab server offers TLS with a certificate it signed for
    /// 127.0.0.1 and localhost, so that verify-full works against the lab.
    pub ca_cert: PathBuf,
    /// Name of the instance this one replicates, for streaming replicas.
    #[serde(default)]
    pub replica_of: Option<String>,
    /// A throwaway restore target: durability traded for loading speed.
    #[serde(default)]
    pub tuned_for_loading: bool,
    /// The server binaries it starts with (PostgreSQL); None: the system's. `lab upgrade`
    /// switches them, as a package upgrade would: the running server keeps the old ones
    /// until `lab restart`.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// The lab test host the server runs on (`lab up --hosts`); None: this machine.
    #[serde(default)]
    pub lab_host: Option<String>,
    /// That host's network namespace.
    #[serde(default)]
    pub netns: Option<String>,
}

/// The whole lab (lab.json).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Default)]
pub struct Lab {
    pub dir: PathBuf,
    pub instances: Vec<LabInstance>,
    /// Test hosts in network namespaces, reached over SSH (`lab up --hosts N`).
    #[serde(default)]
    pub hosts: Vec<hosts::LabHost>,
    /// Their network: a bridge on this machine and a /24 of the project's test range.
    #[serde(default)]
    pub network: Option<hosts::LabNetwork>,
    /// node_exporter and Prometheus (`lab up --monitoring`).
    #[serde(default)]
    pub monitoring: Option<monitoring::LabMonitoring>,
    /// Garage with the lab bucket (`lab up --s3`).
    #[serde(default)]
    pub s3: Option<s3::LabS3>,
}

/// Whether an instance runs, for `lab status`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InstanceStatus {
    pub name: String,
    pub engine: EngineKind,
    pub port: u16,
    pub running: bool,
    pub pid: Option<u32>,
}

impl LabInstance {
    pub fn password(&self) -> Result<String> {
        std::fs::read_to_string(&self.password_file)
            .map(|s| s.trim().to_string())
            .map_err(|e| Error::io("read the lab password", &self.password_file, e))
    }

    /// TCP connection arguments for the lab login user.
    pub fn connection(&self) -> Result<ConnectionArgs> {
        Ok(ConnectionArgs {
            engine: Some(self.engine),
            login_host: Some(self.host.clone()),
            login_port: Some(self.port),
            login_user: Some(self.user.clone()),
            login_password: Some(self.password()?.into()),
            ssl_mode: SslMode::VerifyFull,
            ca_cert: Some(self.ca_cert.clone()),
            connect_timeout: 10,
            ..ConnectionArgs::default()
        })
    }

    /// Unix-socket connection arguments for the lab login user.
    pub fn socket_connection(&self) -> Result<ConnectionArgs> {
        let mut args = self.connection()?;
        args.login_unix_socket = Some(self.socket.clone());
        args.login_host = None;
        args.ssl_mode = SslMode::Disable;
        args.ca_cert = None;
        Ok(args)
    }

    fn instance_dir(&self) -> PathBuf {
        self.data_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The server's files, in the engine's layout.
    fn files(&self) -> ServerFiles {
        ServerFiles {
            data_dir: self.data_dir.clone(),
            socket: self.socket.clone(),
            log_file: self.log_file.clone(),
            ..ServerFiles::in_dir(self.engine, &self.instance_dir())
        }
    }

    fn pid(&self) -> Option<u32> {
        crate::engine::lab::pid(self.engine, &self.files())
    }

    /// An error for a server that failed, quoting the end of its own log: the server's words
    /// are the best hint at the cause.
    fn failure_with_log(&self, what: &str, detail: String) -> Error {
        Error::lab(
            format!("{} {what}", self.name),
            format!(
                "{detail}\n--- last lines of {} ---\n{}",
                self.log_file.display(),
                tail_file(&self.log_file, 20)
            ),
        )
    }

    pub fn running(&self) -> bool {
        self.pid().is_some_and(process_alive)
    }
}

impl Lab {
    pub fn load(dir: &Path) -> Result<Lab> {
        let path = dir.join("lab.json");
        let bytes =
            std::fs::read(&path).map_err(|e| Error::io("read the lab description", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::invalid("lab.json", e.to_string()))
    }

    pub fn instance(&self, name: &str) -> Option<&LabInstance> {
        self.instances.iter().find(|i| i.name == name)
    }
}

/// Runs a closure while holding the lab directory's lock, so that concurrent `lab up` calls
/// (parallel test processes) do not start the same server twice.
fn with_lock<T>(dir: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let path = dir.join(".lab.lock");
    let io = |e| Error::io("lock the lab directory", &path, e);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    file.lock().map_err(io)?;
    let result = f();
    let _ = file.unlock();
    result
}

/// Starts (or reuses) the requested servers and writes lab.json, inventory.yml and sources.yml.
/// Idempotent: running servers are left alone, stopped ones are started on their old port.
pub fn up(request: &LabRequest) -> Result<Lab> {
    let dir = prepare_dir(&request.dir)?;
    with_lock(&dir, || {
        let mut lab = Lab::load(&dir).unwrap_or_else(|_| Lab {
            dir: dir.clone(),
            ..Lab::default()
        });
        lab.dir = dir.clone();
        if request.hosts > 0 || request.runner || !lab.hosts.is_empty() {
            plan_hosts(&mut lab, request)?;
        }
        let addresses: Vec<String> = lab.hosts.iter().map(|h| h.address.clone()).collect();
        make_tls(&dir, &addresses)?;
        // Without hosts: pg1, my1... on 127.0.0.1. With hosts: host1-pg1, host1-my1... on
        // each host's address, on the engines' usual ports.
        let placements: Vec<Option<hosts::LabHost>> = if lab.hosts.is_empty() {
            vec![None]
        } else {
            lab.hosts
                .iter()
                .filter(|h| !h.runner)
                .cloned()
                .map(Some)
                .collect()
        };
        for (number, placement) in placements.iter().enumerate() {
            let wanted = (1..=request.postgres)
                .map(|i| (EngineKind::Postgresql, "pg", i))
                .chain((1..=request.mysql).map(|i| (EngineKind::Mysql, "my", i)));
            for (engine, prefix, index) in wanted {
                let name = match placement {
                    Some(host) => format!("{}-{prefix}{index}", host.name),
                    None => format!("{prefix}{index}"),
                };
                if lab.instance(&name).is_some() {
                    continue;
                }
                // Environments round-robin over the instances of an engine, host by host.
                let env_index = number * request.postgres.max(request.mysql) + index;
                let mut instance = plan_instance(&dir, engine, &name, env_index, &lab)?;
                instance.tuned_for_loading = request.tuned_for_loading;
                if engine == EngineKind::Postgresql {
                    instance.bin_dir = request.pg_bin_dir.clone();
                }
                if let Some(host) = placement {
                    instance.host = host.address.clone();
                    instance.port = engine.default_port() + (index - 1) as u16;
                    instance.lab_host = Some(host.name.clone());
                    instance.netns = Some(host.netns.clone());
                }
                lab.instances.push(instance);
            }
        }
        for index in 1..=request.pg_replicas.min(request.postgres) {
            let name = format!("pg{index}r");
            if lab.instance(&name).is_none() {
                let primary = lab
                    .instance(&format!("pg{index}"))
                    .cloned()
                    .expect("planned above");
                let mut replica = plan_instance(&dir, EngineKind::Postgresql, &name, index, &lab)?;
                let _ = std::fs::remove_file(&replica.password_file);
                // A physical copy has the primary's roles, so the primary's password.
                replica.password_file = primary.password_file.clone();
                replica.replica_of = Some(primary.name);
                lab.instances.push(replica);
            }
        }
        // Primaries first, all at once; then the replicas, which copy a running primary.
        let mut errors = start_all(
            &lab,
            lab.instances
                .iter()
                .filter(|i| i.replica_of.is_none())
                .collect(),
            request.seed,
        );
        if errors.is_empty() {
            errors = start_all(
                &lab,
                lab.instances
                    .iter()
                    .filter(|i| i.replica_of.is_some())
                    .collect(),
                false,
            );
        }
        if request.monitoring || lab.monitoring.is_some() {
            match monitoring::ensure(&lab, lab.monitoring.clone()) {
                Ok(m) => lab.monitoring = Some(m),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if request.s3 || lab.s3.is_some() {
            match s3::ensure(&lab, lab.s3.clone()) {
                Ok(s) => lab.s3 = Some(s),
                Err(e) => errors.push(e.to_string()),
            }
        }
        write_files(&lab)?;
        if errors.is_empty() {
            Ok(lab)
        } else {
            Err(Error::lab("start the lab", errors.join("\n\n")))
        }
    })
}

fn start_all(lab: &Lab, instances: Vec<&LabInstance>, seed: bool) -> Vec<String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = instances
            .into_iter()
            .map(|instance| {
                let primary = instance.replica_of.as_deref().and_then(|p| lab.instance(p));
                scope.spawn(move || start_instance(instance, primary, seed))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("a lab start thread crashed".to_string()),
            })
            .collect()
    })
}

/// The lab's package upgrade: instance `name` starts with the binaries in `bin_dir` (None:
/// the system's) from its next start. Like a package upgrade, it leaves the running server
/// alone; `restart` brings the new binaries in.
pub fn upgrade(dir: &Path, name: &str, bin_dir: Option<PathBuf>) -> Result<LabInstance> {
    with_lock(dir, || {
        let mut lab = Lab::load(dir)?;
        let instance = lab
            .instances
            .iter_mut()
            .find(|i| i.name == name)
            .ok_or_else(|| unknown_instance(dir, name))?;
        if instance.engine == EngineKind::Mysql && bin_dir.is_some() {
            return Err(Error::lab(
                format!("upgrade {name}"),
                "only PostgreSQL lab servers can switch binaries (one MariaDB release is installed)",
            ));
        }
        instance.bin_dir = bin_dir;
        let instance = instance.clone();
        files::write_lab_json(&lab)?;
        Ok(instance)
    })
}

/// Stops instance `name` and starts it again with its recorded binaries.
pub fn restart(dir: &Path, name: &str) -> Result<()> {
    with_lock(dir, || {
        let lab = Lab::load(dir)?;
        let instance = lab
            .instance(name)
            .ok_or_else(|| unknown_instance(dir, name))?;
        stop_instance(instance);
        let primary = instance.replica_of.as_deref().and_then(|p| lab.instance(p));
        start_instance(instance, primary, false)
    })
}

/// What the lab says of an instance's "package", shaped like `apt-cache policy`: the release
/// of the binaries it starts with (installed) and of the system's newest (candidate).
pub fn packages(dir: &Path, name: &str) -> Result<String> {
    let lab = Lab::load(dir)?;
    let instance = lab
        .instance(name)
        .ok_or_else(|| unknown_instance(dir, name))?;
    let installed =
        crate::engine::lab::binaries_version(instance.engine, instance.bin_dir.as_deref())?;
    let candidate = crate::engine::lab::binaries_version(instance.engine, None)?;
    Ok(format!(
        "{name}:\n  Installed: {installed}\n  Candidate: {candidate}\n"
    ))
}

fn unknown_instance(dir: &Path, name: &str) -> Error {
    Error::lab(
        format!("find lab instance {name}"),
        format!(
            "no instance {name} in {}; `dbcadence lab status --dir {}` lists them",
            dir.join("lab.json").display(),
            dir.display()
        ),
    )
}

/// Which servers run.
pub fn status(dir: &Path) -> Result<Vec<InstanceStatus>> {
    let lab = Lab::load(dir)?;
    Ok(lab
        .instances
        .iter()
        .map(|i| InstanceStatus {
            name: i.name.clone(),
            engine: i.engine,
            port: i.port,
            running: i.running(),
            pid: i.pid().filter(|p| process_alive(*p)),
        })
        .collect())
}

/// Plans the test hosts `request` asks for, and brings the network, the namespaces and every
/// host's sshd up.
fn plan_hosts(lab: &mut Lab, request: &LabRequest) -> Result<()> {
    let network = hosts::ensure_network(lab.network.clone())?;
    for number in 1..=request.hosts {
        let name = format!("host{number}");
        if !lab.hosts.iter().any(|h| h.name == name) {
            let number = u8::try_from(number)
                .ok()
                .filter(|n| *n <= 100)
                .ok_or_else(|| Error::lab("plan the test hosts", "at most 100 hosts"))?;
            lab.hosts
                .push(hosts::plan_host(&lab.dir, &network, &name, number, false));
        }
    }
    if request.runner && !lab.hosts.iter().any(|h| h.runner) {
        lab.hosts
            .push(hosts::plan_host(&lab.dir, &network, "runner", 200, true));
    }
    lab.network = Some(network.clone());
    // Written before anything can fail, so that `lab down` finds what to remove.
    files::write_lab_json(lab)?;
    for host in &lab.hosts {
        hosts::start_host(&lab.dir, &network, host)?;
    }
    hosts::write_known_hosts(&lab.dir, &lab.hosts)
}

/// Stops every server of the lab (idempotent); `purge` also deletes the directory.
/// Returns one line per instance saying what happened.
pub fn down(dir: &Path, purge: bool) -> Result<Vec<String>> {
    if !dir.exists() {
        return Ok(vec![format!("{}: nothing to stop", dir.display())]);
    }
    let lab = match Lab::load(dir) {
        Ok(lab) => lab,
        Err(_) if purge => Lab::default(),
        Err(e) => return Err(e),
    };
    let lines = with_lock(dir, || {
        Ok(std::thread::scope(|scope| {
            let handles: Vec<_> = lab
                .instances
                .iter()
                .map(|i| scope.spawn(move || stop_instance(i)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| "a stop thread crashed".into()))
                .collect::<Vec<_>>()
        }))
    })?;
    let mut lines = lines;
    if let Some(m) = &lab.monitoring {
        lines.extend(monitoring::stop(m));
    }
    if let Some(s) = &lab.s3 {
        lines.extend(s3::stop(s));
    }
    // The hosts after their servers: a server in a namespace that is gone cannot be reached.
    lines.extend(hosts::remove(&lab.hosts, lab.network.as_ref()));
    if purge {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io("delete the lab directory", dir, e))?;
    }
    Ok(lines)
}

/// Removes a throwaway lab (verification's scratch server): its servers stopped the fastest
/// clean way, the directory deleted.
pub fn discard(dir: &Path) -> Result<()> {
    if let Ok(lab) = Lab::load(dir) {
        with_lock(dir, || {
            for instance in &lab.instances {
                servers::discard_instance(instance);
            }
            Ok(())
        })?;
    }
    std::fs::remove_dir_all(dir).map_err(|e| Error::io("delete the lab directory", dir, e))
}

fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create the lab directory", dir, e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| Error::io("resolve the lab directory", dir, e))?;
    // Spaces and quotes are fine: no path goes through a shell.
    let text = dir.to_string_lossy();
    // A unix socket path is limited to 107 bytes; ours append up to ~25 to the directory.
    if text.len() > 80 {
        return Err(Error::lab(
            "use the lab directory",
            format!(
                "'{text}' is longer than 80 bytes; unix socket paths would not fit, pick a shorter one"
            ),
        ));
    }
    set_mode(&dir, 0o755)?;
    if running_as_root() {
        let probe = Tool::find("test")?
            .arg("-x")
            .arg(&dir)
            .as_user("postgres")
            .run();
        if probe.is_err() {
            return Err(Error::lab(
                "use the lab directory",
                format!(
                    "the postgres user cannot reach '{text}'; make its parent directories traversable (chmod o+x) or pick a directory under /tmp"
                ),
            ));
        }
    }
    Ok(dir)
}

fn running_as_root() -> bool {
    effective_uid() == Some(0)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("set permissions on", path, e))
}

fn chown(path: &Path, owner: &str) -> Result<()> {
    crate::util::chown_recursive(path, owner)
}

/// A free port for a new lab server or daemon: none of the lab's, none of `also_taken`.
fn free_port(lab: &Lab, also_taken: &[u16]) -> Result<u16> {
    let mut taken: Vec<u16> = lab.instances.iter().map(|i| i.port).collect();
    taken.extend(also_taken);
    if let Some(m) = &lab.monitoring {
        taken.extend([m.node_exporter_port, m.prometheus_port]);
    }
    if let Some(s) = &lab.s3 {
        taken.extend([s.s3_port, s.rpc_port, s.admin_port]);
    }
    // Random ports in a quiet range: two labs planned at the same moment (parallel tests)
    // rarely pick the same one, and a bind check skips ports in use.
    for _ in 0..200 {
        let r = u16::from_str_radix(&random_hex(2)?, 16).unwrap_or(0);
        let port = 21000 + r % 9000;
        if !taken.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::lab(
        "find a free port",
        "no free port in 21000-29999 on 127.0.0.1",
    ))
}

fn plan_instance(
    dir: &Path,
    engine: EngineKind,
    name: &str,
    index: usize,
    lab: &Lab,
) -> Result<LabInstance> {
    let instance_dir = dir.join(name);
    std::fs::create_dir_all(&instance_dir)
        .map_err(|e| Error::io("create the instance directory", &instance_dir, e))?;
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets)
        .map_err(|e| Error::io("create the secrets directory", &secrets, e))?;
    set_mode(&secrets, 0o700)?;
    let password_file = secrets.join(format!("{name}.password"));
    if !password_file.exists() {
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode_0600()
            .open(&password_file)
            .map_err(|e| Error::io("create the password file", &password_file, e))?;
        writeln!(f, "{}", random_hex(16)?)
            .map_err(|e| Error::io("write the password file", &password_file, e))?;
    }
    let port = free_port(lab, &[])?;
    let files = ServerFiles::in_dir(engine, &instance_dir);
    Ok(LabInstance {
        name: name.into(),
        engine,
        env: LAB_ENVS[(index - 1) % LAB_ENVS.len()].into(),
        host: "127.0.0.1".into(),
        port,
        socket: files.socket,
        user: LAB_USER.into(),
        password_file,
        data_dir: files.data_dir,
        log_file: files.log_file,
        ca_cert: dir.join("tls/ca.pem"),
        replica_of: None,
        tuned_for_loading: false,
        bin_dir: None,
        lab_host: None,
        netns: None,
    })
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}
