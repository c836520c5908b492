//! Logical backups, written once against the engine seam.
//!
//! Layout: `<backup_dir>/<instance_id>/<db>/<UTC timestamp>/{dump.*.zst, manifest.json}`. A
//! backup is written under `.partial-<timestamp>`, fsync'd, and renamed into place only when
//! its manifest is complete: nothing without a complete manifest is ever listed. One backup per
//! instance and database at a time (a lock file); a second one waits (bounded) or fails. The
//! dump streams through this process once: zstd compression (multi-threaded), sha256 of the
//! compressed file and, for text dumps, row counts per table.
//!
//! - `model`: request, manifest, report and listed backup types.
//! - `layout`: directory layout, listing, manifest writing, leftovers.
//! - `stream`: the dump's pass through zstd and sha256.
//! - `lock`: the database lock and the per-backup verification lock.
//! - `remote`: backups into an S3 repository, its retention, and copies of verified local
//!   backups to one (`copy_to`).

mod layout;
pub(crate) mod lock;
mod model;
mod remote;
mod stream;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

pub(crate) use layout::default_instance_id;
use layout::remove_partials;
pub use layout::{Damaged, Listing, encode_name, list, scan, write_manifest};
pub(crate) use layout::{complete_manifest, scan_database};
pub(crate) use lock::lock_database;
pub use model::*;
pub(crate) use remote::verify_scope;
pub(crate) use stream::write_error;
use stream::{Output, compress_directory, run_dump_to_directory, stream_dump, write_compressed};

use crate::engine::{self, DatabaseFacts, DatabaseKind, DumpFormat, DumpOutput, Engine};
use crate::files::{Access, sync_dir};
use crate::ledger::{Outcome, Target};
use crate::metrics::Sample;
use crate::repository::S3Store;
use crate::retention;
use crate::run::{Change, Done, Recorder};
use crate::{Error, Result};

/// Runs one backup (or, with action prune, only retention) and records it.
pub fn run(request: &BackupRequest, check_mode: bool) -> Result<Done<BackupReport>> {
    let (report, warnings) = run_recorded(request, check_mode)?;
    Ok(done(request, report, warnings, check_mode))
}

/// What a backup run says it did: the backup written (or that would be), retention's
/// removals, and the backups kept before and after retention as the diff.
fn done(
    request: &BackupRequest,
    report: BackupReport,
    warnings: Vec<String>,
    check_mode: bool,
) -> Done<BackupReport> {
    let names = |paths: &[PathBuf]| -> String {
        let mut lines: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        lines.sort();
        lines.iter().map(|l| format!("{l}\n")).collect()
    };
    let all: Vec<PathBuf> = report.kept.iter().chain(&report.pruned).cloned().collect();
    let diff = Change::between("backups", Some(names(&all)), Some(names(&report.kept)));
    let pruned = match (report.pruned.len(), check_mode) {
        (0, _) => String::new(),
        (n, true) => format!("; retention would remove {n} backups"),
        (n, false) => format!("; retention removed {n} backups"),
    };
    let msg = match (&report.path, &report.manifest) {
        (Some(path), Some(m)) => format!(
            "backed up '{}' ({} tables, {} bytes) to {}",
            m.database,
            m.tables.len(),
            m.files.iter().map(|f| f.bytes).sum::<u64>(),
            path.display()
        ),
        _ if request.action == BackupAction::Prune => {
            format!("pruned backups of '{}'", request.database)
        }
        _ => format!(
            "would back up '{}' ({} bytes on the server)",
            request.database,
            report.database_bytes.unwrap_or(0)
        ),
    } + &pruned;
    Done {
        changed: report.changed,
        msg,
        diff,
        warnings,
        output: report,
    }
}

fn run_recorded(request: &BackupRequest, check_mode: bool) -> Result<(BackupReport, Vec<String>)> {
    let instance_id = request
        .instance_id
        .clone()
        .unwrap_or_else(|| default_instance_id(&request.connection));
    if request.action == BackupAction::Copy {
        return remote::copy_recorded(request, &instance_id, check_mode);
    }
    if let (BackupAction::Prune, Some(repository)) = (request.action, &request.repository) {
        return remote::prune_recorded(request, repository, &instance_id, check_mode);
    }
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
            pruned: plan.delete,
            kept: plan.keep,
            ..BackupReport::default()
        };
        return Ok((report, warnings));
    }
    let recorder = Recorder::start(crate::task::Task::Backup, &request.run, check_mode)
        .hiding(request.connection.login_password.as_ref());
    let target = Target {
        instance: instance_id.clone(),
        db: Some(request.database.clone()),
    };
    let mut warnings = Vec::new();
    let result = match &request.repository {
        Some(repository) => {
            remote::backup_to_repository(request, repository, &instance_id, check_mode)
        }
        None => run_unrecorded(request, &instance_id, check_mode),
    };
    let result = result.and_then(|mut report| {
        let Some(policy) = request.retention.clone() else {
            return Ok(report);
        };
        if let Some(repository) = &request.repository {
            let plan = remote::prune(
                repository,
                &instance_id,
                &request.database,
                &policy,
                check_mode,
            )?;
            warnings.extend(plan.warnings());
            report.pruned = plan.delete;
            report.kept = plan.keep;
            return Ok(report);
        }
        let plan = retention::prune(
            &request.backup_dir,
            Some(&instance_id),
            Some(&request.database),
            &policy,
            check_mode,
        )?;
        warnings.extend(plan.warnings());
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
            warnings.extend(recorder.finish(target, Outcome::Ok, report.changed, details, samples));
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
    refuse_before_connecting(request)?;
    let mut engine = engine::connect(&request.connection)?;
    let facts = engine.server_facts()?;
    let database_bytes = database_size(request, &engine.databases()?)?;
    let db_dir = request
        .backup_dir
        .join(encode_name(instance_id))
        .join(encode_name(&request.database));
    let mut report = BackupReport {
        database_bytes,
        ..BackupReport::default()
    };
    if check_mode {
        return Ok(report);
    }
    let access = Access::for_group(request.backup_group.as_deref())?;
    access.create_dir_all(&db_dir)?;
    check_free_space(&db_dir, database_bytes)?;
    if request.method == BackupMethod::Logical {
        check_privileges(engine.as_mut(), &request.database)?;
    }
    let what = format!("'{}' on '{instance_id}'", request.database);
    let _lock = lock_database(
        &db_dir,
        Duration::from_secs(request.lock_timeout),
        &what,
        access,
    )?;
    report.removed_partials = remove_partials(&db_dir);

    let started = jiff::Timestamp::now();
    let stamp = started.strftime("%Y%m%dT%H%M%S%.3fZ").to_string();
    let partial = db_dir.join(format!(".partial-{stamp}"));
    access.create_dir(&partial)?;
    // The dump's size is not known before it ends: the database's size on the server is the
    // estimate (a dump is usually somewhat smaller).
    crate::progress::start(&format!("backup {}", request.database), database_bytes);
    let written = write_backup(
        engine.as_mut(),
        request,
        &facts,
        instance_id,
        &Dest::Dir {
            partial: &partial,
            access,
        },
        started,
    );
    crate::progress::finish();
    let manifest = written.map_err(|e| discard_partial(&partial, e))?;
    let final_dir = db_dir.join(&stamp);
    std::fs::rename(&partial, &final_dir).map_err(|e| {
        discard_partial(
            &partial,
            Error::io("complete the backup (rename)", &final_dir, e),
        )
    })?;
    sync_dir(&db_dir)?;
    report.path = Some(final_dir);
    report.manifest = Some(manifest);
    report.changed = true;
    Ok(report)
}

/// What the request or the engine cannot do is refused before connecting.
fn refuse_before_connecting(request: &BackupRequest) -> Result<()> {
    if request.repository.is_none() && request.backup_dir.as_os_str().is_empty() {
        return Err(Error::invalid(
            "backup_dir",
            "set backup_dir (a local directory) or repository (an S3 bucket)",
        ));
    }
    if !(1..=19).contains(&request.compression_level) {
        return Err(Error::invalid(
            "compression_level",
            format!("{} is outside 1..19", request.compression_level),
        ));
    }
    let kind = request.connection.engine()?;
    if request.format == DumpFormat::Directory
        && !engine::supports(kind, engine::Capability::DirectoryFormat)
    {
        return Err(Error::invalid(
            "format",
            format!("directory is a PostgreSQL format; use custom (SQL text) for {kind}"),
        ));
    }
    Ok(())
}

/// Where [`write_backup`] puts a backup's files.
enum Dest<'a> {
    /// The partial directory, renamed into place by the caller (or discarded).
    Dir {
        partial: &'a std::path::Path,
        access: Access,
    },
    /// The backup's key in an S3 repository: every object uploaded first, the manifest last.
    /// `staging` is a private scratch directory for what a dump tool writes itself (the
    /// directory format), uploaded from there file by file.
    Object {
        store: &'a S3Store,
        key: String,
        staging: &'a std::path::Path,
    },
}

impl Dest<'_> {
    /// Where a file of the backup named `name` goes.
    fn output(&self, name: &str) -> Output<'_> {
        match self {
            Dest::Dir { partial, access } => Output::File {
                path: partial.join(name),
                access: *access,
            },
            Dest::Object { store, key, .. } => Output::Object {
                store,
                key: format!("{key}/{name}"),
            },
        }
    }

    /// The directory a dump tool may write into.
    fn work_dir(&self) -> &std::path::Path {
        match self {
            Dest::Dir { partial, .. } => partial,
            Dest::Object { staging, .. } => staging,
        }
    }
}

/// Writes the dump, the globals and the manifest (last) to `dest`; for a directory, the
/// caller renames it into place (or discards it) afterwards.
fn write_backup(
    engine: &mut dyn engine::Engine,
    request: &BackupRequest,
    facts: &engine::ServerFacts,
    instance_id: &str,
    dest: &Dest,
    started: jiff::Timestamp,
) -> Result<Manifest> {
    // The definitions a restore must reproduce, read just before the dump (DDL is rare; one
    // that runs in between shows up as a difference at verification, never as a pass).
    let objects = match request.method {
        BackupMethod::Logical => engine.object_definitions(&request.database)?,
        BackupMethod::Physical => None,
    };
    // A physical copy has no snapshot to count rows in: they are counted in every user
    // database before and after it (the copy is consistent at a point in between).
    let counted_at_start = match request.method {
        BackupMethod::Physical => Some(count_every_database(engine)?),
        BackupMethod::Logical => None,
    };
    let mut dumped = dump_into(engine, request, dest)?;
    let mut tables_at_end = Vec::new();
    if let Some(at_start) = counted_at_start {
        dumped.tables = at_start;
        tables_at_end = count_every_database(engine)?;
    }
    let mut warnings = Vec::new();
    if request.globals {
        let globals = engine.dump_globals()?;
        let name = "globals.sql.zst".to_string();
        let out = write_compressed(
            &mut globals.sql.as_slice(),
            &dest.output(&name),
            request.compression_level,
        )?;
        dumped.files.push(out.into_file(name));
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
        engine: facts.engine,
        flavour: facts.flavour.clone(),
        server_version: facts.version.clone(),
        tool: dumped.tool,
        instance_id: instance_id.to_string(),
        database: request.database.clone(),
        started_at: started.to_string(),
        finished_at: finished.to_string(),
        duration_seconds: (finished - started).get_milliseconds() as f64 / 1000.0,
        snapshot: dumped.snapshot,
        tables: dumped.tables,
        tables_at_end,
        objects,
        dump: dumped.dump,
        method: request.method,
        files: dumped.files,
        compression: json!({"algorithm": "zstd", "level": request.compression_level}),
        verification: None,
        warnings,
    };
    match dest {
        Dest::Dir { partial, access } => {
            write_manifest(partial, &manifest, *access)?;
            // What the dump tools wrote themselves (a directory-format dump) gets the same
            // access.
            access.apply_recursive(partial)?;
            sync_dir(partial)?;
        }
        Dest::Object { store, key, .. } => {
            let bytes = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| Error::invalid("manifest", e.to_string()))?;
            store.put_bytes(&format!("{key}/manifest.json"), bytes)?;
        }
    }
    Ok(manifest)
}

/// Rows per table of every user database, each count naming its database.
fn count_every_database(engine: &mut dyn Engine) -> Result<Vec<crate::engine::TableRows>> {
    let mut counts = Vec::new();
    for database in engine.databases()? {
        if database.kind != DatabaseKind::User {
            continue;
        }
        counts.extend(engine.row_counts(&database.name)?.into_iter().map(|t| {
            crate::engine::TableRows {
                database: Some(database.name.clone()),
                ..t
            }
        }));
    }
    Ok(counts)
}

/// Removes a partial backup after `error`; if even that fails, the error says so (the next
/// run removes it under the lock; it is never listed meanwhile).
fn discard_partial(partial: &std::path::Path, error: Error) -> Error {
    match std::fs::remove_dir_all(partial) {
        Ok(()) => error,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => error,
        Err(e) => Error::invalid(
            "backup",
            format!(
                "{error}; the partial backup '{}' could not be removed either ({e}): the next backup of this database removes it, or delete it by hand",
                partial.display()
            ),
        ),
    }
}

/// Size on the server of what is backed up (the basis of the space check); a database that
/// does not exist is refused, naming some that do.
fn database_size(request: &BackupRequest, databases: &[DatabaseFacts]) -> Result<Option<u64>> {
    let physical = request.method == BackupMethod::Physical;
    if physical && request.database != ALL_DATABASES {
        return Err(Error::invalid(
            "database",
            "method physical backs up the whole instance: set database to '*'",
        ));
    }
    if physical {
        return Ok(databases
            .iter()
            .filter_map(|d| d.size_bytes)
            .reduce(|a, b| a + b));
    }
    if let Some(db) = databases.iter().find(|d| d.name == request.database) {
        return Ok(db.size_bytes);
    }
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
    let more = match names.len().saturating_sub(15) {
        0 => String::new(),
        more => format!(" and {more} more"),
    };
    Err(Error::invalid(
        "database",
        format!(
            "'{}' does not exist on {}; its databases include: {shown}{more}",
            request.database,
            request.connection.describe(),
        ),
    ))
}

/// Refuses to start on a nearly full disk. Logical dumps are usually smaller than the data on
/// disk; half of it compressed is a conservative floor that still catches a nearly full disk
/// before hours of dumping.
fn check_free_space(db_dir: &std::path::Path, database_bytes: Option<u64>) -> Result<()> {
    match (database_bytes, crate::util::available_bytes(db_dir)) {
        (Some(size), Some(available)) if available < size / 2 => Err(Error::invalid(
            "backup",
            format!(
                "not enough free space in '{}': {available} bytes free, about {} needed for a {size}-byte database; free space or point backup_dir elsewhere",
                db_dir.display(),
                size / 2
            ),
        )),
        _ => Ok(()),
    }
}

/// Names the grants the login user lacks before anything is written.
fn check_privileges(engine: &mut dyn Engine, database: &str) -> Result<()> {
    let missing = engine.dump_privilege_problems(database)?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(
        "privileges",
        format!(
            "the login user cannot dump '{database}': it lacks {}; grant them (PostgreSQL: the pg_read_all_data role covers it) and retry",
            missing.join(", ")
        ),
    ))
}

/// What the dump left in the partial directory, with what the manifest says of it.
struct Dumped {
    files: Vec<ManifestFile>,
    tables: Vec<crate::engine::TableRows>,
    snapshot: Value,
    tool: String,
    /// The main dump's name (file or directory).
    dump: String,
}

/// Runs the dump (logical or physical) into `partial`: streamed through zstd and sha256, or a
/// directory-format dump compressed afterwards; row counts from the dump's snapshot or stream.
fn dump_into(engine: &mut dyn Engine, request: &BackupRequest, dest: &Dest) -> Result<Dumped> {
    let mut plan = if request.method == BackupMethod::Physical {
        engine.physical_plan()?
    } else {
        engine.dump_plan(
            &request.database,
            request.format,
            request.jobs,
            dest.work_dir(),
        )?
    };
    let dump = match &plan.output {
        DumpOutput::Stdout => format!("{}.zst", plan.file_name),
        DumpOutput::Directory(_) => plan.file_name.to_string(),
    };
    let counting = plan.counter.take().map(std::thread::spawn);
    let dumped = match &plan.output {
        DumpOutput::Stdout => stream_dump(
            &mut plan,
            &dest.output(&dump),
            request.compression_level,
            request.compression_threads,
        )
        .map(|streamed| vec![streamed.into_file(dump.clone())]),
        DumpOutput::Directory(dir) => {
            let dir = dir.clone();
            run_dump_to_directory(&plan).and_then(|()| match dest {
                Dest::Dir { partial, access } => compress_directory(
                    partial,
                    &dir,
                    request.compression_level,
                    request.compression_threads,
                    *access,
                ),
                // The dump tool writes its files itself: they are compressed in the private
                // staging directory, then uploaded one by one (and removed there).
                Dest::Object {
                    store,
                    key,
                    staging,
                } => {
                    let files = compress_directory(
                        staging,
                        &dir,
                        request.compression_level,
                        request.compression_threads,
                        Access::PRIVATE,
                    )?;
                    for file in &files {
                        let local = staging.join(&file.path);
                        store.upload_file(&local, &format!("{key}/{}", file.path))?;
                        std::fs::remove_file(&local)
                            .map_err(|e| Error::io("remove the staged file", &local, e))?;
                    }
                    Ok(files)
                }
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
    let files = dumped?;
    let mut tables = counted.transpose()?.unwrap_or_default();
    let mut snapshot = plan.snapshot.clone();
    if let Some(observer) = plan.observer.take() {
        let (counted, position) = observer.finish();
        tables = counted;
        if let (Value::Object(s), Value::Object(p)) = (&mut snapshot, position) {
            s.extend(p);
        }
    }
    let tool = plan.tool.trim().to_string();
    drop(plan); // ends the snapshot transaction, deletes the temp credentials
    Ok(Dumped {
        files,
        tables,
        snapshot,
        tool,
        dump,
    })
}
