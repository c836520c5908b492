//! Logical backups, written once against the engine seam.
//!
//! Layout: `<backup_dir>/<instance_id>/<db>/<UTC timestamp>/{dump.*.zst, manifest.json}`. A
//! backup is written under `.partial-<timestamp>`, fsync'd, and renamed into place only when
//! its manifest is complete: nothing without a complete manifest is ever listed. One backup per
//! instance and database at a time (a lock file); a second one waits (bounded) or fails. The
//! dump streams through this process once: zstd compression (multi-threaded), sha256 of the
//! compressed file and, for text dumps, row counts per table.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::connection::ConnectionArgs;
use crate::engine::{self, DatabaseKind, DumpFormat, DumpOutput, DumpPlan, TableRows};
use crate::ledger::{Outcome, Target};
use crate::metrics::Sample;
use crate::retention::{self, RetentionPolicy};
use crate::run::{Recorder, RunOptions};
use crate::{Error, Result};

/// The `database` value of an instance-wide (physical) backup.
pub const ALL_DATABASES: &str = "*";

/// How a backup is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupMethod {
    /// A dump of one database (pg_dump, mariadb-dump).
    #[default]
    Logical,
    /// A copy of the whole instance (pg_basebackup; mariadb-backup, which must run on the
    /// database host), verified by unpack + start + checks; set database to '*'.
    Physical,
}

/// What db_backup does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupAction {
    /// Take a backup, then apply retention if given.
    #[default]
    Backup,
    /// Only apply retention (and remove leftovers of crashed runs); no dump.
    Prune,
}

/// Arguments of db_backup and `dbcadence backup`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BackupRequest {
    /// backup (default) or prune.
    #[serde(default)]
    pub action: BackupAction,
    /// logical (default) or physical.
    #[serde(default)]
    pub method: BackupMethod,
    #[serde(flatten)]
    pub connection: ConnectionArgs,
    /// Database to back up (or prune).
    pub database: String,
    /// Root directory of the backups.
    pub backup_dir: PathBuf,
    /// Instance id in the layout (use the inventory's id); default: engine, host and port.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// custom (one stream; for MySQL/MariaDB SQL text) or directory (PostgreSQL, parallel jobs).
    #[serde(default)]
    pub format: DumpFormat,
    /// Parallel dump jobs for the directory format.
    #[serde(default = "default_jobs")]
    pub jobs: u32,
    /// zstd compression level, 1 (fast) to 19 (small).
    #[serde(default = "default_level")]
    pub compression_level: i32,
    /// zstd worker threads; 0 uses every core.
    #[serde(default)]
    pub compression_threads: u32,
    /// Seconds to wait while another backup of the same database runs.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: u64,
    /// Also back up what lives outside the database: roles, grants and tablespaces
    /// (pg_dumpall --globals-only) or MariaDB users and grants, as globals.sql.zst.
    #[serde(default)]
    pub globals: bool,
    /// Retention applied to this instance and database after a successful backup (or alone
    /// with action prune).
    #[serde(default)]
    pub retention: Option<RetentionPolicy>,
    /// A local group (backup operators) given read access to the backups: files 0640 and
    /// directories 0750 instead of 0600 and 0700.
    #[serde(default)]
    pub backup_group: Option<String>,
    #[serde(flatten)]
    pub run: RunOptions,
}

/// The same defaults as the module's arguments (a derived Default would give level 0).
impl Default for BackupRequest {
    fn default() -> Self {
        BackupRequest {
            action: BackupAction::default(),
            method: BackupMethod::default(),
            connection: ConnectionArgs::default(),
            database: String::new(),
            backup_dir: PathBuf::new(),
            instance_id: None,
            format: DumpFormat::default(),
            jobs: default_jobs(),
            compression_level: default_level(),
            compression_threads: 0,
            lock_timeout: default_lock_timeout(),
            globals: false,
            retention: None,
            backup_group: None,
            run: RunOptions::default(),
        }
    }
}

fn default_jobs() -> u32 {
    2
}

fn default_level() -> i32 {
    3
}

fn default_lock_timeout() -> u64 {
    60
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ManifestFile {
    /// Path relative to the backup directory.
    pub path: String,
    /// Size on disk (compressed).
    pub bytes: u64,
    /// Size of the dump before compression.
    pub raw_bytes: u64,
    /// sha256 of the file as stored.
    pub sha256: String,
}

/// manifest.json: what a backup holds and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// complete; anything else is not a usable backup.
    pub status: String,
    pub engine: String,
    pub flavour: String,
    pub server_version: String,
    /// Dump tool and version.
    pub tool: String,
    pub instance_id: String,
    pub database: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    /// Snapshot position: PostgreSQL LSN and exported snapshot; MySQL binary log file and position.
    pub snapshot: Value,
    /// Rows per table in the dump's own snapshot.
    pub tables: Vec<TableRows>,
    /// The main dump: a file (dump.pgcustom.zst, dump.sql.zst, physical.mbstream.zst) or a
    /// directory (dump.pgdir).
    #[serde(default)]
    pub dump: String,
    /// logical or physical.
    #[serde(default)]
    pub method: BackupMethod,
    pub files: Vec<ManifestFile>,
    /// Compression algorithm and level.
    pub compression: Value,
    /// Set by db_verify: when and how the backup was proven by a restore.
    #[serde(default)]
    pub verification: Option<Value>,
    /// What the backup could not include, e.g. accounts skipped from the globals.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The result of a backup run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BackupReport {
    /// Whether the run changed anything: a backup was written or a backup was removed (never
    /// in check mode).
    pub changed: bool,
    /// Directory of the new backup (none in check mode).
    pub path: Option<PathBuf>,
    /// Its manifest (none in check mode).
    pub manifest: Option<Manifest>,
    /// Size of the database on the server, the basis of the space check.
    pub database_bytes: Option<u64>,
    /// Leftovers of crashed runs removed before this one.
    pub removed_partials: Vec<String>,
    /// Backups removed by retention (in check mode: that would be removed).
    pub pruned: Vec<PathBuf>,
    /// Backups kept by retention.
    pub kept: Vec<PathBuf>,
}

/// Directory name of a database: unsafe bytes percent-encoded, so that `we"ird; db` and
/// non-ASCII names map to one portable name each.
pub fn encode_name(name: &str) -> String {
    let mut out = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'_' | b'-')
            || (byte == b'.' && !out.is_empty())
        {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn default_instance_id(args: &ConnectionArgs) -> String {
    let engine = args.engine.map_or("db", |e| e.as_str());
    match &args.login_unix_socket {
        Some(socket) => format!("{engine}-socket-{}", encode_name(&socket.to_string_lossy())),
        None => format!(
            "{engine}-{}-{}",
            args.login_host.as_deref().unwrap_or("localhost"),
            args.port()
        ),
    }
}

/// Counts and hashes what passes through to the file.
struct HashingFile {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

struct Streamed {
    raw_bytes: u64,
    bytes: u64,
    sha256: String,
}

use crate::files::{Access, sync_dir};

fn write_error(path: &Path, e: std::io::Error) -> Error {
    let hint = if e.raw_os_error() == Some(28) {
        "; the disk is full: free space or point backup_dir at a larger file system"
    } else {
        ""
    };
    Error::Write {
        path: path.to_path_buf(),
        cause: e.to_string(),
        hint,
    }
}

/// Compresses what `source` yields into `out`, hashed like the main dump (globals, and the
/// files of a directory-format dump, streamed: a table file can be large).
fn write_compressed(
    source: &mut dyn Read,
    out: &Path,
    level: i32,
    access: Access,
) -> Result<Streamed> {
    let file = access.create_file(out).map_err(|e| write_error(out, e))?;
    let sink = HashingFile {
        file,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut encoder =
        zstd::stream::write::Encoder::new(sink, level).map_err(|e| write_error(out, e))?;
    let raw_bytes = std::io::copy(source, &mut encoder).map_err(|e| write_error(out, e))?;
    let sink = encoder.finish().map_err(|e| write_error(out, e))?;
    sink.file.sync_all().map_err(|e| write_error(out, e))?;
    Ok(Streamed {
        raw_bytes,
        bytes: sink.bytes,
        sha256: format!("{:x}", sink.hasher.finalize()),
    })
}

/// Runs a dump tool that writes its own files (directory format) and waits for it.
fn run_dump_to_directory(plan: &DumpPlan) -> Result<()> {
    let tool = crate::util::program_name(&plan.program);
    let output = plan
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::Command {
            command: tool.clone(),
            code: "not started".into(),
            stderr: e.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(crate::process::failed(
        &tool,
        output.status,
        &String::from_utf8_lossy(&output.stderr),
    ))
}

/// Compresses every file of a dump directory in place (`x` becomes `x.zst`), a few files at a
/// time, and returns them as manifest entries relative to `backup_root`.
fn compress_directory(
    backup_root: &Path,
    dir: &Path,
    level: i32,
    threads: u32,
    access: Access,
) -> Result<Vec<ManifestFile>> {
    let mut raw: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("read the dump directory", dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    raw.sort();
    let workers = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads as usize
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Vec<(usize, ManifestFile)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<Vec<(usize, ManifestFile)>> {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = raw.get(index) else {
                            return Ok(done);
                        };
                        let mut source = File::open(path)
                            .map_err(|e| Error::io("read the dump file", path, e))?;
                        let out = PathBuf::from(format!("{}.zst", path.display()));
                        let written = write_compressed(&mut source, &out, level, access)?;
                        std::fs::remove_file(path)
                            .map_err(|e| Error::io("remove the uncompressed dump file", path, e))?;
                        let relative = out
                            .strip_prefix(backup_root)
                            .unwrap_or(&out)
                            .to_string_lossy()
                            .into_owned();
                        done.push((
                            index,
                            ManifestFile {
                                path: relative,
                                bytes: written.bytes,
                                raw_bytes: written.raw_bytes,
                                sha256: written.sha256,
                            },
                        ));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::invalid("backup", "a compression thread crashed"))
                })
            })
            .collect()
    });
    let mut files = Vec::new();
    for result in results {
        files.extend(result?);
    }
    files.sort_by_key(|(index, _)| *index);
    sync_dir(dir)?;
    Ok(files.into_iter().map(|(_, f)| f).collect())
}

/// Runs the dump and streams its output through zstd into `out`.
fn stream_dump(
    plan: &mut DumpPlan,
    out: &Path,
    level: i32,
    threads: u32,
    access: Access,
) -> Result<Streamed> {
    let tool = crate::util::program_name(&plan.program);
    let mut child = plan
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command {
            command: tool.clone(),
            code: "not started".into(),
            stderr: format!("{e}; install the package that provides it"),
        })?;
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_thread = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let stdout = child.stdout.take().expect("piped");
    let result = (|| -> Result<Streamed> {
        let file = access.create_file(out).map_err(|e| write_error(out, e))?;
        let sink = HashingFile {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut encoder =
            zstd::stream::write::Encoder::new(sink, level).map_err(|e| write_error(out, e))?;
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
        } else {
            threads
        };
        encoder
            .multithread(threads)
            .map_err(|e| write_error(out, e))?;
        let mut reader = BufReader::with_capacity(1 << 20, stdout);
        let mut raw_bytes = 0u64;
        let read_error = |e: std::io::Error| Error::Command {
            command: tool.clone(),
            code: "read".into(),
            stderr: e.to_string(),
        };
        match plan.observer.as_mut() {
            Some(observer) => {
                let mut line = Vec::with_capacity(1 << 16);
                loop {
                    line.clear();
                    let n = reader.read_until(b'\n', &mut line).map_err(read_error)?;
                    if n == 0 {
                        break;
                    }
                    observer.line(&line);
                    encoder.write_all(&line).map_err(|e| write_error(out, e))?;
                    raw_bytes += n as u64;
                }
            }
            None => {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = reader.read(&mut buf).map_err(read_error)?;
                    if n == 0 {
                        break;
                    }
                    encoder
                        .write_all(&buf[..n])
                        .map_err(|e| write_error(out, e))?;
                    raw_bytes += n as u64;
                }
            }
        }
        let sink = encoder.finish().map_err(|e| write_error(out, e))?;
        sink.file.sync_all().map_err(|e| write_error(out, e))?;
        Ok(Streamed {
            raw_bytes,
            bytes: sink.bytes,
            sha256: format!("{:x}", sink.hasher.finalize()),
        })
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| Error::Command {
        command: tool.clone(),
        code: "wait".into(),
        stderr: e.to_string(),
    })?;
    let stderr_text = stderr_thread.join().unwrap_or_default();
    let streamed = result?;
    if !status.success() {
        return Err(crate::process::failed(&tool, status, &stderr_text));
    }
    Ok(streamed)
}

/// Holds the per-database lock; released on drop.
pub(crate) struct DbLock(File);

impl Drop for DbLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Takes the lock of one database's backups (shared by backup and prune). A new lock file
/// gets `access`.
pub(crate) fn lock_database(
    db_dir: &Path,
    timeout: Duration,
    what: &str,
    access: Access,
) -> Result<DbLock> {
    let path = db_dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(access.file_mode())
        .open(&path)
        .map_err(|e| Error::io("open the backup lock", &path, e))?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(DbLock(file)),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Invalid {
                    what: "backup".into(),
                    detail: format!(
                        "another backup of {what} is running (lock '{}'), still after {}s; try again later or raise lock_timeout",
                        path.display(),
                        timeout.as_secs()
                    ),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("take the backup lock", &path, e));
            }
        }
    }
}

/// Removes `.partial-*` and `.deleting-*` leftovers of crashed runs. Called with the lock
/// held, so none of them belongs to a running backup or prune.
fn remove_partials(db_dir: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(db_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if (name.starts_with(".partial-") || name.starts_with(".deleting-"))
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            removed.push(name);
        }
    }
    removed
}

/// Runs one backup and records it.
pub fn run(request: &BackupRequest, check_mode: bool) -> Result<(BackupReport, Vec<String>)> {
    let instance_id = request
        .instance_id
        .clone()
        .unwrap_or_else(|| default_instance_id(&request.connection));
    if request.action == BackupAction::Prune {
        // A prune-only run is its own task: it removes backups and must never count as one.
        let policy = request.retention.clone().unwrap_or_default();
        let (plan, warnings) = retention::run(
            &request.backup_dir,
            Some(&instance_id),
            Some(&request.database),
            &policy,
            check_mode,
            &request.run,
        )?;
        let report = BackupReport {
            changed: !check_mode && !plan.delete.is_empty(),
            path: None,
            manifest: None,
            database_bytes: None,
            removed_partials: vec![],
            pruned: plan.delete,
            kept: plan.keep,
        };
        return Ok((report, warnings));
    }
    let recorder = Recorder::start(crate::task::Task::Backup, &request.run, check_mode);
    let target = Target {
        instance: instance_id.clone(),
        db: Some(request.database.clone()),
    };
    let result = run_unrecorded(request, &instance_id, check_mode).and_then(|mut report| {
        let Some(policy) = request.retention.clone() else {
            return Ok(report);
        };
        let plan = retention::prune(
            &request.backup_dir,
            Some(&instance_id),
            Some(&request.database),
            &policy,
            check_mode,
        )?;
        report.pruned = plan.delete;
        report.kept = plan.keep;
        Ok(report)
    });
    match result {
        Ok(mut report) => {
            report.changed = report.path.is_some() || (!check_mode && !report.pruned.is_empty());
            let (details, samples) = match &report.manifest {
                Some(m) => {
                    let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
                    let labels = [
                        ("instance", instance_id.as_str()),
                        ("db", request.database.as_str()),
                    ];
                    (
                        json!({"path": report.path, "bytes": bytes, "tables": m.tables.len(), "duration_seconds": m.duration_seconds}),
                        vec![
                            Sample::gauge(
                                "dbcadence_backup_size_bytes",
                                "Size on disk of the last backup.",
                                &labels,
                                bytes as f64,
                            ),
                            Sample::gauge(
                                "dbcadence_backup_last_success_timestamp_seconds",
                                "Unix time the last backup completed.",
                                &labels,
                                jiff::Timestamp::now().as_second() as f64,
                            ),
                        ],
                    )
                }
                None => (
                    json!({"would_back_up": request.database, "database_bytes": report.database_bytes}),
                    vec![],
                ),
            };
            let warnings = recorder.finish(target, Outcome::Ok, report.changed, details, samples);
            Ok((report, warnings))
        }
        Err(e) => {
            recorder.fail(target, &e);
            Err(e)
        }
    }
}

fn run_unrecorded(
    request: &BackupRequest,
    instance_id: &str,
    check_mode: bool,
) -> Result<BackupReport> {
    if !(1..=19).contains(&request.compression_level) {
        return Err(Error::invalid(
            "compression_level",
            format!("{} is outside 1..19", request.compression_level),
        ));
    }
    let mut engine = engine::connect(&request.connection)?;
    let facts = engine.server_facts()?;
    let databases = engine.databases()?;
    let physical = request.method == BackupMethod::Physical;
    if physical && request.database != ALL_DATABASES {
        return Err(Error::invalid(
            "database",
            "method physical backs up the whole instance: set database to '*'",
        ));
    }
    let found = databases.iter().find(|d| d.name == request.database);
    let Some(database_bytes) = (match found {
        Some(db) => Some(db.size_bytes),
        None if physical => Some(
            databases
                .iter()
                .filter_map(|d| d.size_bytes)
                .reduce(|a, b| a + b),
        ),
        None => None,
    }) else {
        let names: Vec<&str> = databases
            .iter()
            .filter(|d| d.kind == DatabaseKind::User)
            .map(|d| d.name.as_str())
            .collect();
        // Enough names to spot a typo, not a wall of text on a big server.
        let shown = names
            .iter()
            .take(15)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let more = names.len().saturating_sub(15);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return Err(Error::invalid(
            "database",
            format!(
                "'{}' does not exist on {}; its databases include: {shown}{more}",
                request.database,
                request.connection.describe(),
            ),
        ));
    };
    let db_dir = request
        .backup_dir
        .join(encode_name(instance_id))
        .join(encode_name(&request.database));
    if check_mode {
        return Ok(BackupReport {
            path: None,
            manifest: None,
            database_bytes,
            removed_partials: vec![],
            pruned: vec![],
            kept: vec![],
            changed: false,
        });
    }
    let access = Access::for_group(request.backup_group.as_deref())?;
    access.create_dir_all(&db_dir)?;
    // Logical dumps are usually smaller than the data on disk; half of it compressed is a
    // conservative floor that still catches a nearly full disk before hours of dumping.
    if let (Some(size), Some(available)) = (database_bytes, crate::util::available_bytes(&db_dir))
        && available < size / 2
    {
        return Err(Error::invalid(
            "backup",
            format!(
                "not enough free space in '{}': {available} bytes free, about {} needed for a {size}-byte database; free space or point backup_dir elsewhere",
                db_dir.display(),
                size / 2
            ),
        ));
    }
    if !physical {
        let missing = engine.dump_privilege_problems(&request.database)?;
        if !missing.is_empty() {
            return Err(Error::invalid(
                "privileges",
                format!(
                    "the login user cannot dump '{}': it lacks {}; grant them (PostgreSQL: the pg_read_all_data role covers it) and retry",
                    request.database,
                    missing.join(", ")
                ),
            ));
        }
    }
    let what = format!("'{}' on '{instance_id}'", request.database);
    let _lock = lock_database(
        &db_dir,
        Duration::from_secs(request.lock_timeout),
        &what,
        access,
    )?;
    let removed_partials = remove_partials(&db_dir);

    let started = jiff::Timestamp::now();
    let stamp = started.strftime("%Y%m%dT%H%M%S%.3fZ").to_string();
    let partial = db_dir.join(format!(".partial-{stamp}"));
    access.create_dir(&partial)?;
    let result = (|| -> Result<(PathBuf, Manifest)> {
        let mut plan = if physical {
            engine.physical_plan()?
        } else {
            engine.dump_plan(&request.database, request.format, request.jobs, &partial)?
        };
        let dump = match &plan.output {
            DumpOutput::Stdout => format!("{}.zst", plan.file_name),
            DumpOutput::Directory(_) => plan.file_name.to_string(),
        };
        let counting = plan.counter.take().map(std::thread::spawn);
        let dumped = match &plan.output {
            DumpOutput::Stdout => {
                let file_name = format!("{}.zst", plan.file_name);
                stream_dump(
                    &mut plan,
                    &partial.join(&file_name),
                    request.compression_level,
                    request.compression_threads,
                    access,
                )
                .map(|streamed| {
                    vec![ManifestFile {
                        path: file_name,
                        bytes: streamed.bytes,
                        raw_bytes: streamed.raw_bytes,
                        sha256: streamed.sha256,
                    }]
                })
            }
            DumpOutput::Directory(dir) => {
                let dir = dir.clone();
                run_dump_to_directory(&plan).and_then(|()| {
                    compress_directory(
                        &partial,
                        &dir,
                        request.compression_level,
                        request.compression_threads,
                        access,
                    )
                })
            }
        };
        // The counting thread is joined on every path, the failed dump's too: it holds the
        // snapshot transaction, which must end before the partial backup is removed.
        let counted = match counting {
            Some(handle) => {
                let (counts, snapshot_guard) = handle
                    .join()
                    .map_err(|_| Error::invalid("backup", "the row counting thread crashed"))?;
                drop(snapshot_guard); // the dump is done: the exported snapshot may end
                Some(counts)
            }
            None => None,
        };
        let mut files = dumped?;
        let counted = counted.transpose()?.unwrap_or_default();
        let (mut tables, mut snapshot) = (counted, plan.snapshot.clone());
        if let Some(observer) = plan.observer.take() {
            let (counted, position) = observer.finish();
            tables = counted;
            if let (Value::Object(s), Value::Object(p)) = (&mut snapshot, position) {
                s.extend(p);
            }
        }
        let tool = plan.tool.trim().to_string();
        drop(plan); // ends the snapshot transaction, deletes the temp credentials
        let mut warnings = Vec::new();
        if request.globals {
            let globals = engine.dump_globals()?;
            let name = "globals.sql.zst".to_string();
            let out = write_compressed(
                &mut globals.sql.as_slice(),
                &partial.join(&name),
                request.compression_level,
                access,
            )?;
            files.push(ManifestFile {
                path: name,
                bytes: out.bytes,
                raw_bytes: out.raw_bytes,
                sha256: out.sha256,
            });
            warnings.extend(
                globals
                    .skipped
                    .into_iter()
                    .map(|s| format!("globals: skipped {s}")),
            );
        }
        let finished = jiff::Timestamp::now();
        let manifest = Manifest {
            format: 1,
            status: "complete".into(),
            engine: facts.engine.to_string(),
            flavour: facts.flavour.clone(),
            server_version: facts.version.clone(),
            tool,
            instance_id: instance_id.to_string(),
            database: request.database.clone(),
            started_at: started.to_string(),
            finished_at: finished.to_string(),
            duration_seconds: (finished - started).get_milliseconds() as f64 / 1000.0,
            snapshot,
            tables,
            dump,
            method: request.method,
            files,
            compression: json!({"algorithm": "zstd", "level": request.compression_level}),
            verification: None,
            warnings,
        };
        Ok((partial.clone(), manifest))
    })();
    let (partial, manifest) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    let finish = || -> Result<PathBuf> {
        write_manifest(&partial, &manifest, access)?;
        // What the dump tools wrote themselves (a directory-format dump) gets the same access.
        access.apply_recursive(&partial)?;
        sync_dir(&partial)?;
        let final_dir = db_dir.join(&stamp);
        std::fs::rename(&partial, &final_dir)
            .map_err(|e| Error::io("complete the backup (rename)", &final_dir, e))?;
        sync_dir(&db_dir)?;
        Ok(final_dir)
    };
    match finish() {
        Ok(path) => Ok(BackupReport {
            path: Some(path),
            manifest: Some(manifest),
            database_bytes,
            removed_partials,
            pruned: vec![],
            kept: vec![],
            changed: true,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(e)
        }
    }
}

/// Writes manifest.json durably.
pub fn write_manifest(dir: &Path, manifest: &Manifest, access: Access) -> Result<()> {
    let path = dir.join("manifest.json");
    let bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::invalid("manifest", e.to_string()))?;
    let mut f = access
        .create_file(&path)
        .map_err(|e| write_error(&path, e))?;
    f.write_all(&bytes).map_err(|e| write_error(&path, e))?;
    f.sync_all().map_err(|e| write_error(&path, e))
}

/// One complete backup on disk.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BackupEntry {
    pub path: PathBuf,
    pub instance_id: String,
    pub database: String,
    pub started_at: String,
    pub bytes: u64,
    pub verified: bool,
}

/// Every complete backup under `backup_dir`, oldest first. Partial directories and directories
/// without a complete manifest are never listed.
pub fn list(backup_dir: &Path) -> Result<Vec<BackupEntry>> {
    let mut entries = Vec::new();
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_type().is_ok_and(|t| t.is_dir())
                    && !e.file_name().to_string_lossy().starts_with('.')
            })
            .map(|e| e.path())
            .collect()
    };
    for instance in dirs(backup_dir) {
        for db in dirs(&instance) {
            for backup in dirs(&db) {
                let Ok(bytes) = std::fs::read(backup.join("manifest.json")) else {
                    continue;
                };
                let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
                    continue;
                };
                if manifest.status != "complete" {
                    continue;
                }
                entries.push(BackupEntry {
                    bytes: manifest.files.iter().map(|f| f.bytes).sum(),
                    verified: manifest
                        .verification
                        .as_ref()
                        .is_some_and(|v| v["verified"] == true),
                    path: backup,
                    instance_id: manifest.instance_id,
                    database: manifest.database,
                    started_at: manifest.started_at,
                });
            }
        }
    }
    entries.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_portable_directory_names() {
        assert_eq!(encode_name("app"), "app");
        assert_eq!(encode_name("we\"ird; db"), "we%22ird%3B%20db");
        assert_eq!(encode_name("données"), "donn%C3%A9es");
        assert_eq!(encode_name(".hidden"), "%2Ehidden");
        assert_ne!(encode_name("a b"), encode_name("a_b"));
    }
}
