//! Verification by restore: a backup nobody restored is a hope, not a backup.
//!
//! Picks a backup (default: the newest unverified), checks every file's sha256, restores it
//! into a scratch server (default: a throwaway lab server of the same engine, tuned for
//! loading, removed afterwards; or a given server, into a scratch database dropped afterwards),
//! runs the engine's integrity checks, compares row counts with the manifest, and records the
//! outcome in the manifest, the ledger and the metrics.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::backup::lock::{self, BackupLock};
use crate::backup::{self, Manifest};
use crate::connection::ConnectionArgs;
use crate::engine::{self, Engine, RestoreInput};
use crate::lab::{self, LabRequest};
use crate::ledger::{Outcome, Target};
use crate::metrics::Sample;
use crate::run::{Done, Recorder, RunOptions};
use crate::{Error, Result};

/// Arguments of db_verify and `dbcadence verify`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct VerifyRequest {
    /// Root directory of the backups.
    #[schemars(extend("x-path" = true))]
    pub backup_dir: PathBuf,
    /// Only backups of this instance id.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Only backups of this database.
    #[serde(default)]
    pub database: Option<String>,
    /// A given backup directory instead of the newest unverified one.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub backup: Option<PathBuf>,
    /// Where the throwaway scratch server lives (short path: unix sockets); default under /tmp.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub scratch_dir: Option<PathBuf>,
    /// Restore into this server instead of a throwaway one (into a scratch database).
    #[serde(flatten)]
    pub target: ConnectionArgs,
    /// Parallel restore jobs where the format allows (PostgreSQL).
    #[serde(default = "default_jobs")]
    pub jobs: u32,
    #[serde(flatten)]
    pub run: RunOptions,
}

fn default_jobs() -> u32 {
    2
}

/// Rows that differ between the manifest and the restored database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RowMismatch {
    /// schema.table (MySQL: .table).
    pub table: String,
    /// Rows in the manifest (none: not in the backup).
    pub expected: Option<u64>,
    /// Rows restored (none: table missing).
    pub found: Option<u64>,
}

/// The result of a verification.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct VerifyReport {
    /// Whether a verification ran and was recorded in the manifest (false in check mode and
    /// when there was nothing to verify).
    pub changed: bool,
    /// Nothing to do: every matching backup is already verified (or none exists). Not a
    /// failure: a verify timer that finds the work done must not page anyone.
    pub nothing_to_verify: bool,
    /// The backup directory verified.
    pub backup: PathBuf,
    /// Instance id of the backup.
    pub instance_id: String,
    /// Database of the backup.
    pub database: String,
    /// True only when checksums, restore, integrity checks and row counts all passed.
    pub verified: bool,
    /// Why, in one sentence.
    pub reason: String,
    /// Files whose checksum did not match.
    pub bad_files: Vec<String>,
    /// Wall time of the restore (or unpack, prepare and start).
    pub restore_seconds: f64,
    /// What pg_amcheck or CHECK TABLE reported.
    pub integrity_problems: Vec<String>,
    /// Tables whose row count differs from the manifest.
    pub row_mismatches: Vec<RowMismatch>,
    /// Tables whose row counts were compared.
    pub tables_checked: usize,
    /// lab (a throwaway server) or target (a scratch database on a given server).
    pub scratch: String,
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io("read the backup file", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("read the backup file", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read the manifest", &path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("manifest '{}'", path.display()), e.to_string()))
}

/// What a request asks to verify.
enum Choice {
    /// This backup directory, locked for this verification (a prune keeps it, a second
    /// verification skips it).
    Backup(PathBuf, BackupLock),
    /// Nothing: why, in one sentence.
    Nothing(String),
}

/// The backup to verify: the given one, else the newest unverified matching the filters that
/// no other verification holds. The same choice in check mode and for real. Damaged backup
/// directories that match are returned as warnings.
fn choose(request: &VerifyRequest) -> Result<(Choice, Vec<String>)> {
    if let Some(path) = &request.backup {
        let lock = lock::try_lock_backup(path)?.ok_or_else(|| {
            Error::invalid(
                "backup",
                format!(
                    "'{}' is being verified by another run; wait for it to finish",
                    path.display()
                ),
            )
        })?;
        return Ok((Choice::Backup(path.clone(), lock), vec![]));
    }
    let listing = backup::scan(&request.backup_dir);
    let wanted = |instance: &str, database: &str| {
        request.instance_id.as_deref().is_none_or(|i| i == instance)
            && request.database.as_deref().is_none_or(|d| d == database)
    };
    let matching: Vec<&backup::BackupEntry> = listing
        .backups
        .iter()
        .filter(|b| wanted(&b.instance_id, &b.database))
        .collect();
    let warnings: Vec<String> = listing
        .damaged
        .iter()
        .filter(|d| {
            d.belongs_to(
                &request.backup_dir,
                request.instance_id.as_deref(),
                request.database.as_deref(),
            )
        })
        .map(|d| d.warning())
        .collect();
    let mut busy = 0;
    for candidate in matching.iter().rev().filter(|b| !b.verified) {
        let Some(lock) = lock::try_lock_backup(&candidate.path)? else {
            busy += 1;
            continue;
        };
        // Read again now that it is ours: a prune may have removed it, or another
        // verification may have finished it, since the listing.
        match read_manifest(&candidate.path) {
            Ok(m)
                if !m
                    .verification
                    .as_ref()
                    .is_some_and(|v| v["verified"] == true) =>
            {
                return Ok((Choice::Backup(candidate.path.clone(), lock), warnings));
            }
            _ => continue,
        }
    }
    let reason = match matching.last() {
        _ if busy > 0 => format!(
            "nothing to verify: {busy} unverified backup(s) are being verified by other runs"
        ),
        Some(newest) => format!(
            "nothing to verify: every matching backup is verified, the newest is {}; give backup: <dir> to re-verify one",
            newest.path.display()
        ),
        None => format!(
            "nothing to verify: no complete backup under '{}' matches",
            request.backup_dir.display()
        ),
    };
    Ok((Choice::Nothing(reason), warnings))
}

/// Where the restore happens, and how to clean it up.
struct Scratch {
    connection: ConnectionArgs,
    database: String,
    lab_dir: Option<tempfile::TempDir>,
    kind: &'static str,
}

impl Scratch {
    fn open(request: &VerifyRequest, manifest: &Manifest) -> Result<Scratch> {
        if request.target.engine.is_some() {
            // Never restore over a real database: a scratch name, dropped afterwards.
            let database = format!("dbcadence_verify_{}", crate::util::random_hex(4)?);
            return Ok(Scratch {
                connection: request.target.clone(),
                database,
                lab_dir: None,
                kind: "target",
            });
        }
        let parent = request
            .scratch_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        std::fs::create_dir_all(&parent)
            .map_err(|e| Error::io("create the scratch directory", &parent, e))?;
        let dir = tempfile::Builder::new()
            .prefix("dbc-verify.")
            .tempdir_in(&parent)
            .map_err(|e| Error::io("create the scratch directory", &parent, e))?;
        let lab = lab::up(&LabRequest::scratch(dir.path(), manifest.engine));
        let lab = match lab {
            Ok(lab) => lab,
            Err(e) => {
                let _ = lab::down(dir.path(), true);
                return Err(e);
            }
        };
        let connection = lab.instances[0].connection()?;
        Ok(Scratch {
            connection,
            database: manifest.database.clone(),
            lab_dir: Some(dir),
            kind: "lab",
        })
    }

    /// Removes the scratch server or database. A cleanup that fails is a warning (the proof
    /// stands) that names what is left behind and how to remove it.
    fn close(self, engine: Option<&mut Box<dyn Engine>>) -> Option<String> {
        match &self.lab_dir {
            Some(dir) => lab::down(dir.path(), true).err().map(|e| {
                format!(
                    "the scratch server in '{}' could not be removed ({e}); stop it with: dbcadence lab down --dir '{}' --purge",
                    dir.path().display(),
                    dir.path().display()
                )
            }),
            None => engine.and_then(|engine| engine.drop_database(&self.database).err()).map(|e| {
                format!(
                    "the scratch database '{}' could not be dropped ({e}); drop it by hand",
                    self.database
                )
            }),
        }
    }
}

/// A physical backup: unpack, prepare and start a private server on the copy, then check every
/// user database and count its rows.
fn verify_physical(
    request: &VerifyRequest,
    dir: &Path,
    manifest: &Manifest,
    mut report: VerifyReport,
) -> Result<VerifyReport> {
    let kind = manifest.engine;
    let work = request
        .scratch_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let file = dir.join(&manifest.dump);
    let source = File::open(&file).map_err(|e| Error::io("read the backup file", &file, e))?;
    let mut decoder =
        zstd::stream::read::Decoder::new(source).map_err(|e| Error::io("decompress", &file, e))?;
    let started = std::time::Instant::now();
    let user = manifest
        .snapshot
        .get("user")
        .and_then(|u| u.as_str())
        .unwrap_or("postgres");
    let copy = engine::start_physical_copy(kind, &mut decoder, &work, user)?;
    report.restore_seconds = started.elapsed().as_secs_f64();
    report.scratch = "physical copy".into();
    let mut engine = engine::connect(copy.connection())?;
    let databases: Vec<String> = engine
        .databases()?
        .into_iter()
        .filter(|d| d.kind == crate::engine::DatabaseKind::User)
        .map(|d| d.name)
        .collect();
    for database in &databases {
        report.integrity_problems.extend(
            engine
                .check_integrity(database)?
                .into_iter()
                .map(|p| format!("{database}: {p}")),
        );
        report.tables_checked += engine.row_counts(database)?.len();
    }
    drop(engine);
    drop(copy);
    report.verified = report.integrity_problems.is_empty();
    report.reason = if report.verified {
        format!(
            "prepared and started in {:.1}s; integrity checks passed on {} tables of {} databases",
            report.restore_seconds,
            report.tables_checked,
            databases.len()
        )
    } else {
        format!(
            "integrity checks failed: {}",
            report.integrity_problems.join("; ")
        )
    };
    Ok(report)
}

/// Loads the dump file into the scratch database.
fn restore(
    engine: &mut Box<dyn Engine>,
    scratch: &Scratch,
    backup_dir: &Path,
    manifest: &Manifest,
    jobs: u32,
) -> Result<()> {
    let plan = engine.restore_plan(&scratch.database, jobs)?;
    // The bytes the restore reads: the dump decompressed (its size is in the manifest).
    let raw: u64 = manifest.files.iter().map(|f| f.raw_bytes).sum();
    crate::progress::start(&format!("restore {}", manifest.database), Some(raw));
    let restored = restore_with(plan, backup_dir, manifest);
    crate::progress::finish();
    restored
}

/// Feeds the dump to the restore tool (on its stdin, or decompressed into a file or directory
/// it reads).
fn restore_with(
    plan: crate::engine::RestorePlan,
    backup_dir: &Path,
    manifest: &Manifest,
) -> Result<()> {
    let dump = if manifest.dump.is_empty() {
        manifest.files[0].path.clone()
    } else {
        manifest.dump.clone()
    };
    let compressed = backup_dir.join(&dump);
    let open = || -> Result<zstd::stream::read::Decoder<'static, std::io::BufReader<File>>> {
        let f = File::open(&compressed)
            .map_err(|e| Error::io("read the backup file", &compressed, e))?;
        zstd::stream::read::Decoder::new(f).map_err(|e| Error::io("decompress", &compressed, e))
    };
    let restore_tool = plan.tool();
    let tool = restore_tool.name();
    let spawn = |extra: Option<&Path>, stdin: Stdio| {
        restore_tool
            .clone()
            .args(extra)
            .spawn(stdin, Stdio::null(), Stdio::piped())
    };
    // A decompressed copy for tools that want a seekable file (parallel pg_restore); it lives
    // beside the scratch server, or in a temp dir for a target server.
    let temp = tempfile::Builder::new()
        .prefix("dbc-restore.")
        .tempdir()
        .map_err(|e| Error::io("create a temp dir", std::env::temp_dir(), e))?;
    let child = match plan.input {
        // A directory-format dump: every file of the directory, decompressed beside the others.
        RestoreInput::File if !dump.ends_with(".zst") => {
            let raw_dir = temp.path().join(&dump);
            std::fs::create_dir_all(&raw_dir).map_err(|e| Error::io("create", &raw_dir, e))?;
            for file in manifest
                .files
                .iter()
                .filter(|f| f.path.starts_with(&format!("{dump}/")))
            {
                let source = backup_dir.join(&file.path);
                let name = Path::new(&file.path)
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy();
                let target = raw_dir.join(name.trim_end_matches(".zst"));
                let f = File::open(&source)
                    .map_err(|e| Error::io("read the backup file", &source, e))?;
                let mut decoder = zstd::stream::read::Decoder::new(f)
                    .map_err(|e| Error::io("decompress", &source, e))?;
                let mut out = File::create(&target).map_err(|e| Error::io("write", &target, e))?;
                std::io::copy(&mut crate::progress::Counting(&mut decoder), &mut out)
                    .map_err(|e| Error::io("decompress", &source, e))?;
            }
            spawn(Some(&raw_dir), Stdio::null())
        }
        RestoreInput::File => {
            let raw = temp.path().join("dump");
            let mut out = File::create(&raw).map_err(|e| Error::io("write", &raw, e))?;
            std::io::copy(&mut crate::progress::Counting(open()?), &mut out)
                .map_err(|e| Error::io("decompress", &compressed, e))?;
            spawn(Some(&raw), Stdio::null())
        }
        RestoreInput::Stdin => spawn(None, Stdio::piped()),
    };
    let mut child = child?;
    let stderr = crate::process::StderrTail::collect(&mut child);
    let mut feed_error = None;
    if let Some(mut stdin) = child.stdin.take() {
        let mut decoder = crate::progress::Counting(open()?);
        if let Err(e) = std::io::copy(&mut decoder, &mut stdin).and_then(|_| stdin.flush()) {
            feed_error = Some(e);
        }
    }
    let status = child.wait().map_err(|e| Error::Command {
        command: tool.clone(),
        code: "wait".into(),
        stderr: e.to_string(),
    })?;
    let stderr_text = stderr.text();
    drop(plan);
    if !status.success() || feed_error.is_some() {
        let mut error = crate::process::failed(&tool, status, &stderr_text);
        if let (Error::Command { stderr, .. }, Some(e)) = (&mut error, feed_error) {
            stderr.push_str(&format!(" (feeding the dump: {e})"));
        }
        return Err(error);
    }
    Ok(())
}

/// Verifies one backup and records the outcome. An unverified backup is an `Ok` report with
/// `verified: false`; errors are reserved for not being able to try.
pub fn run(request: &VerifyRequest, check_mode: bool) -> Result<Done<VerifyReport>> {
    let (report, warnings) = run_recorded(request, check_mode)?;
    let msg = if report.verified {
        format!("verified {}: {}", report.backup.display(), report.reason)
    } else {
        report.reason.clone()
    };
    Ok(Done {
        changed: report.changed,
        msg,
        diff: None,
        warnings,
        output: report,
    })
}

fn run_recorded(request: &VerifyRequest, check_mode: bool) -> Result<(VerifyReport, Vec<String>)> {
    let recorder = Recorder::start(crate::task::Task::Verify, &request.run, check_mode)
        .hiding(request.target.login_password.as_ref());
    let filters = Target {
        instance: request.instance_id.clone().unwrap_or_else(|| "*".into()),
        db: request.database.clone(),
    };
    let failed = |e: Error| {
        recorder.fail(filters.clone(), &e);
        Err(e)
    };
    let (choice, mut warnings) = match choose(request) {
        Ok(chosen) => chosen,
        Err(e) => return failed(e),
    };
    // The backup's lock is held until the verification is recorded.
    let (dir, _backup_lock) = match choice {
        Choice::Backup(dir, lock) => (dir, lock),
        Choice::Nothing(reason) => {
            // Skipped, not failed: the work is done (or there is none); it proves nothing new
            // either, so compliance does not count it as a verification.
            warnings.extend(recorder.finish(
                filters.clone(),
                Outcome::Skipped,
                false,
                json!({"nothing_to_verify": true, "reason": reason}),
                vec![],
            ));
            let report = VerifyReport {
                nothing_to_verify: true,
                reason,
                ..VerifyReport::default()
            };
            return Ok((report, warnings));
        }
    };
    let manifest = match read_manifest(&dir) {
        Ok(manifest) => manifest,
        Err(e) => return failed(e),
    };
    let target = Target {
        instance: manifest.instance_id.clone(),
        db: Some(manifest.database.clone()),
    };
    if check_mode {
        let reason = format!("check mode: would verify {}", dir.display());
        warnings.extend(recorder.finish(
            target,
            Outcome::Ok,
            false,
            json!({"backup": dir, "would_verify": true}),
            vec![],
        ));
        let report = VerifyReport {
            backup: dir,
            instance_id: manifest.instance_id,
            database: manifest.database,
            reason,
            ..VerifyReport::default()
        };
        return Ok((report, warnings));
    }
    let started = std::time::Instant::now();
    let report = verify_one(request, &dir, &manifest, &mut warnings);
    let mut report = match report {
        Ok(report) => report,
        Err(e) => VerifyReport {
            backup: dir.clone(),
            instance_id: manifest.instance_id.clone(),
            database: manifest.database.clone(),
            reason: format!("the restore could not be completed: {e}"),
            ..VerifyReport::default()
        },
    };
    // The manifest records the outcome either way: the run changed it.
    report.changed = true;
    let verified_at = jiff::Timestamp::now();
    let mut updated = manifest.clone();
    updated.verification = Some(json!({
        "verified": report.verified,
        "verified_at": verified_at.to_string(),
        "reason": report.reason,
        "method": "restore",
        "scratch": report.scratch,
        "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    }));
    if let Err(e) = rewrite_manifest(&dir, &updated) {
        warnings.push(format!(
            "the verification could not be written into the manifest: {e}"
        ));
    }
    report.restore_seconds = (report.restore_seconds * 1000.0).round() / 1000.0;
    let labels = [
        ("instance", manifest.instance_id.as_str()),
        ("db", manifest.database.as_str()),
    ];
    let mut samples = vec![Sample::gauge(
        "dbcadence_backup_verify_last_status",
        "Outcome of the last verification by restore: 1 verified, 0 not.",
        &labels,
        if report.verified { 1.0 } else { 0.0 },
    )];
    if report.verified {
        samples.push(Sample::gauge(
            "dbcadence_backup_verified_timestamp_seconds",
            "Unix time a backup of this database was last verified by a restore.",
            &labels,
            verified_at.as_second() as f64,
        ));
    }
    let outcome = if report.verified {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    let details = json!({"backup": dir, "verified": report.verified, "reason": report.reason});
    warnings.extend(recorder.finish(target, outcome, true, details, samples));
    Ok((report, warnings))
}

/// Replaces manifest.json atomically (temp file, fsync, rename).
fn rewrite_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::invalid("manifest", e.to_string()))?;
    // The manifest keeps the access its backup was given (private, or an operators' group).
    let path = dir.join("manifest.json");
    let mode = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap_or(0o600);
    crate::files::write_atomically(&path, &bytes, mode)
}

fn verify_one(
    request: &VerifyRequest,
    dir: &Path,
    manifest: &Manifest,
    warnings: &mut Vec<String>,
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        backup: dir.to_path_buf(),
        instance_id: manifest.instance_id.clone(),
        database: manifest.database.clone(),
        ..VerifyReport::default()
    };
    for file in &manifest.files {
        let found = sha256_of(&dir.join(&file.path))?;
        if found != file.sha256 {
            report.bad_files.push(file.path.clone());
        }
    }
    if !report.bad_files.is_empty() {
        report.reason = format!(
            "checksum mismatch in {}: the backup is damaged; take a new backup",
            report.bad_files.join(", ")
        );
        return Ok(report);
    }
    if manifest.method == backup::BackupMethod::Physical {
        return verify_physical(request, dir, manifest, report);
    }
    let scratch = Scratch::open(request, manifest)?;
    report.scratch = scratch.kind.into();
    let mut engine = match engine::connect(&scratch.connection) {
        Ok(engine) => engine,
        Err(e) => {
            warnings.extend(scratch.close(None));
            return Err(e);
        }
    };
    let result = (|| -> Result<()> {
        engine.create_database(&scratch.database)?;
        let started = std::time::Instant::now();
        restore(&mut engine, &scratch, dir, manifest, request.jobs)?;
        report.restore_seconds = started.elapsed().as_secs_f64();
        report.integrity_problems = engine.check_integrity(&scratch.database)?;
        let restored = engine.row_counts(&scratch.database)?;
        let key = |schema: &Option<String>, name: &str| {
            format!("{}.{name}", schema.as_deref().unwrap_or(""))
        };
        for expected in &manifest.tables {
            let found = restored
                .iter()
                .find(|r| r.schema == expected.schema && r.name == expected.name)
                .map(|r| r.rows);
            if found != Some(expected.rows) {
                report.row_mismatches.push(RowMismatch {
                    table: key(&expected.schema, &expected.name),
                    expected: Some(expected.rows),
                    found,
                });
            }
        }
        for extra in restored.iter().filter(|r| {
            !manifest
                .tables
                .iter()
                .any(|e| e.schema == r.schema && e.name == r.name)
        }) {
            report.row_mismatches.push(RowMismatch {
                table: key(&extra.schema, &extra.name),
                expected: None,
                found: Some(extra.rows),
            });
        }
        report.tables_checked = manifest.tables.len();
        Ok(())
    })();
    warnings.extend(scratch.close(Some(&mut engine)));
    result?;
    report.verified = report.integrity_problems.is_empty() && report.row_mismatches.is_empty();
    report.reason = if report.verified {
        format!(
            "restored in {:.1}s; integrity checks passed; row counts of {} tables match the manifest",
            report.restore_seconds, report.tables_checked
        )
    } else if !report.integrity_problems.is_empty() {
        format!(
            "integrity checks failed: {}",
            report.integrity_problems.join("; ")
        )
    } else {
        format!(
            "row counts differ from the manifest in {} tables: {}",
            report.row_mismatches.len(),
            report
                .row_mismatches
                .iter()
                .map(|m| m.table.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok(report)
}
