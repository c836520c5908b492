//! Verification by restore: a backup nobody restored is a hope, not a backup.
//!
//! Picks a backup (default: the newest unverified), checks every file's sha256, restores it
//! into a scratch server (default: a throwaway lab server of the same engine, tuned for
//! loading, removed afterwards; or a given server, into a scratch database dropped afterwards),
//! runs the engine's integrity checks, compares row counts with the manifest, and records the
//! outcome in the manifest, the ledger and the metrics.
//!
//! - `choose`: the backup to verify, under its lock.
//! - `restore`: the scratch server or database, the restore, the physical path.

mod choose;
mod copy;
mod restore;

use choose::*;
use restore::*;

pub use copy::{RestoredCopy, restore_newest_verified};

/// For db_restore: a manifest, the files whose checksum is wrong, the dump fed to a restore
/// plan.
pub(crate) use choose::read_manifest;
pub(crate) use restore::restore_dump;

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backup::{self, Manifest};
use crate::connection::ConnectionArgs;
use crate::engine;
use crate::ledger::{Outcome, Target};
use crate::metrics::Sample;
use crate::run::{Done, Recorder, RunOptions};
use crate::{Error, Result};

/// Arguments of db_verify and `dbcadence verify`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct VerifyRequest {
    /// Root directory of the backups (unless repository is set).
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub backup_dir: PathBuf,
    /// Only backups of this instance id.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Only backups of this database.
    #[serde(default)]
    pub database: Option<String>,
    /// A given backup directory (with repository: its s3:// URL) instead of the newest
    /// unverified one.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub backup: Option<PathBuf>,
    /// Verify backups of this S3-compatible bucket instead of backup_dir: the chosen backup
    /// is downloaded into a private temporary directory (re-hashed against its manifest),
    /// restored and checked as on disk, and the outcome written into its manifest there.
    #[serde(default)]
    pub repository: Option<crate::repository::S3Repository>,
    /// Where the throwaway scratch server lives (short path: unix sockets); default: in memory
    /// (/dev/shm) when the restore fits comfortably there, else /tmp.
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
    /// True only when checksums, restore, integrity checks, row counts and (where recorded)
    /// object definitions all passed.
    pub verified: bool,
    /// Why, in one sentence.
    pub reason: String,
    /// Files whose checksum did not match.
    pub bad_files: Vec<String>,
    /// Wall time of the restore (or unpack, prepare and start).
    pub restore_seconds: f64,
    /// How the dump was loaded: the restore tool (pg_restore, mariadb), or MariaDB/MySQL's
    /// faster load (rows on parallel sessions, as LOAD DATA where every column of the table
    /// reads a field as it reads a literal, secondary keys built after the rows).
    pub restore_method: String,
    /// What pg_amcheck or CHECK TABLE reported.
    pub integrity_problems: Vec<String>,
    /// Tables whose row count differs from the manifest.
    pub row_mismatches: Vec<RowMismatch>,
    /// Tables whose row counts were compared.
    pub tables_checked: usize,
    /// Physical backups: restored counts outside those taken at the start and the end of the
    /// copy (rows written while it ran); noted, not a failure.
    pub row_count_notes: Vec<String>,
    /// Objects whose restored definition (SHOW CREATE) differs from the one recorded at
    /// backup time, or that the restore lacks (MariaDB/MySQL logical backups).
    pub definition_problems: Vec<String>,
    /// Objects whose definitions were compared (0: none recorded in the manifest).
    pub definitions_checked: usize,
    /// lab (a throwaway server) or target (a scratch database on a given server).
    pub scratch: String,
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
    let chosen = match &request.repository {
        Some(repository) => choose_remote(request, repository, check_mode),
        None if request.backup_dir.as_os_str().is_empty() && request.backup.is_none() => {
            Err(Error::invalid(
                "backup_dir",
                "set backup_dir (a local directory) or repository (an S3 bucket)",
            ))
        }
        None => choose(request),
    };
    let (choice, mut warnings) = match chosen {
        Ok(chosen) => chosen,
        Err(e) => return failed(e),
    };
    // The backup's lock is held until the verification is recorded.
    let (dir, held) = match choice {
        Choice::Backup(dir, held) => (dir, held),
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
    // How the backup is named in the report and the ledger: its directory, or its URL.
    let shown = match &held {
        Held::Local { .. } => dir.clone(),
        Held::Remote { store, key, .. } => PathBuf::from(store.url(key)),
    };
    if check_mode {
        let reason = format!("check mode: would verify {}", shown.display());
        warnings.extend(recorder.finish(
            target,
            Outcome::Ok,
            false,
            json!({"backup": shown, "would_verify": true}),
            vec![],
        ));
        let report = VerifyReport {
            backup: shown,
            instance_id: manifest.instance_id,
            database: manifest.database,
            reason,
            ..VerifyReport::default()
        };
        return Ok((report, warnings));
    }
    let started = std::time::Instant::now();
    if let Held::Remote { store, key, .. } = &held
        && let Err(e) = download_files(store, key, &dir, &manifest)
    {
        return failed(e);
    }
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
    let recorded = record_in_manifest(&dir, &manifest, &report, verified_at, started.elapsed())
        .and_then(|()| match &held {
            Held::Local { .. } => Ok(()),
            Held::Remote { store, key, .. } => {
                let bytes = std::fs::read(dir.join("manifest.json"))
                    .map_err(|e| Error::io("read the manifest", dir.join("manifest.json"), e))?;
                store.put_bytes(&format!("{key}/manifest.json"), bytes)
            }
        });
    if let Err(e) = recorded {
        warnings.push(format!(
            "the verification could not be written into the manifest: {e}"
        ));
    }
    report.backup = shown.clone();
    report.restore_seconds = (report.restore_seconds * 1000.0).round() / 1000.0;
    let samples = verify_samples(&manifest, &report, verified_at);
    let outcome = if report.verified {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    let details = json!({"backup": shown, "verified": report.verified, "reason": report.reason, "restore_seconds": report.restore_seconds});
    warnings.extend(recorder.finish(target, outcome, true, details, samples));
    Ok((report, warnings))
}

/// The tables of `mismatches`, for a message.
pub(crate) fn mismatched_tables(mismatches: &[RowMismatch]) -> String {
    mismatches
        .iter()
        .map(|m| m.table.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tables whose restored row count differs from the manifest's, or that only one side has.
pub(crate) fn row_mismatches(
    expected: &[engine::TableRows],
    restored: &[engine::TableRows],
) -> Vec<RowMismatch> {
    let key =
        |schema: &Option<String>, name: &str| format!("{}.{name}", schema.as_deref().unwrap_or(""));
    let mut mismatches = Vec::new();
    for wanted in expected {
        let found = restored
            .iter()
            .find(|r| r.schema == wanted.schema && r.name == wanted.name)
            .map(|r| r.rows);
        if found != Some(wanted.rows) {
            mismatches.push(RowMismatch {
                table: key(&wanted.schema, &wanted.name),
                expected: Some(wanted.rows),
                found,
            });
        }
    }
    for extra in restored.iter().filter(|r| {
        !expected
            .iter()
            .any(|e| e.schema == r.schema && e.name == r.name)
    }) {
        mismatches.push(RowMismatch {
            table: key(&extra.schema, &extra.name),
            expected: None,
            found: Some(extra.rows),
        });
    }
    mismatches
}

/// What differs between the definitions recorded at backup time and the restore's: objects
/// missing, and for a table the lines (columns, keys, options) one side lacks. The restore's
/// database name (a scratch name on a given server) reads as the source's.
pub(crate) fn definition_problems(
    recorded: &[engine::ObjectDefinition],
    restored: &[engine::ObjectDefinition],
    source_database: &str,
    restored_database: &str,
) -> Vec<String> {
    let rename = |text: &str| {
        if source_database == restored_database {
            return text.to_string();
        }
        let quoted = |name: &str| format!("`{}`.", name.replace('`', "``"));
        text.replace(&quoted(restored_database), &quoted(source_database))
    };
    let mut problems = Vec::new();
    for wanted in recorded {
        let found = restored
            .iter()
            .find(|r| r.kind == wanted.kind && r.name == wanted.name);
        let Some(found) = found else {
            problems.push(format!(
                "{} `{}` is missing from the restore",
                wanted.kind, wanted.name
            ));
            continue;
        };
        let found = rename(&found.definition);
        if found == wanted.definition {
            continue;
        }
        let lines = |text: &str| -> Vec<String> {
            text.lines()
                .map(|l| l.trim().trim_end_matches(',').to_string())
                .collect()
        };
        let (before, after) = (lines(&wanted.definition), lines(&found));
        let lacking: Vec<&String> = before.iter().filter(|l| !after.contains(l)).collect();
        let added: Vec<&String> = after.iter().filter(|l| !before.contains(l)).collect();
        let mut what = Vec::new();
        if !lacking.is_empty() {
            what.push(format!(
                "lacks {}",
                lacking
                    .iter()
                    .map(|l| format!("'{l}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !added.is_empty() {
            what.push(format!(
                "has {} instead",
                added
                    .iter()
                    .map(|l| format!("'{l}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if what.is_empty() {
            what.push("differs in order".into());
        }
        problems.push(format!(
            "{} `{}` differs from its definition at backup time: the restore {}",
            wanted.kind,
            wanted.name,
            what.join("; ")
        ));
    }
    problems
}

/// The files whose sha256 differs from the manifest's (a file that cannot be read is an
/// error: nothing can be said of it).
pub(crate) fn damaged_files(dir: &Path, manifest: &Manifest) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    for file in &manifest.files {
        if sha256_of(&dir.join(&file.path))? != file.sha256 {
            bad.push(file.path.clone());
        }
    }
    Ok(bad)
}

fn damaged(bad: &[String]) -> String {
    format!(
        "checksum mismatch in {}: the backup is damaged; take a new backup",
        bad.join(", ")
    )
}

/// Writes the verification's outcome into the backup's manifest.
fn record_in_manifest(
    dir: &Path,
    manifest: &Manifest,
    report: &VerifyReport,
    verified_at: jiff::Timestamp,
    took: std::time::Duration,
) -> Result<()> {
    let mut updated = manifest.clone();
    updated.verification = Some(json!({
        "verified": report.verified,
        "verified_at": verified_at.to_string(),
        "reason": report.reason,
        "method": "restore",
        "scratch": report.scratch,
        "seconds": (took.as_secs_f64() * 1000.0).round() / 1000.0,
    }));
    rewrite_manifest(dir, &updated)
}

/// The verification's metrics: its status, and the time of the last success.
fn verify_samples(
    manifest: &Manifest,
    report: &VerifyReport,
    verified_at: jiff::Timestamp,
) -> Vec<Sample> {
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
    samples
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
    if manifest.method == backup::BackupMethod::Physical {
        report.bad_files = damaged_files(dir, manifest)?;
        if !report.bad_files.is_empty() {
            report.reason = damaged(&report.bad_files);
            return Ok(report);
        }
        return verify_physical(request, dir, manifest, report);
    }
    // The scratch server starts while the checksums are computed and, for a tool that reads a
    // file, the dump is decompressed: each takes seconds, and they do not wait for one another.
    let (scratch, bad_files, staged) = std::thread::scope(|s| {
        let server = s.spawn(|| Scratch::open(request, manifest));
        let bad_files = damaged_files(dir, manifest);
        let staged = match &bad_files {
            Ok(bad) if bad.is_empty() && engine::restores_from_file(manifest.engine) => {
                Some(stage_dump(dir, manifest))
            }
            _ => None,
        };
        let scratch = server
            .join()
            .unwrap_or_else(|_| Err(Error::lab("start the scratch server", "its thread crashed")));
        (scratch, bad_files, staged)
    });
    // A damaged backup is a verdict (unverified), not an error: said first.
    if let Ok(bad) = &bad_files
        && !bad.is_empty()
    {
        if let Ok(scratch) = scratch {
            warnings.extend(scratch.close(None));
        }
        report.bad_files = bad.clone();
        report.reason = damaged(bad);
        return Ok(report);
    }
    let scratch = scratch?;
    let staged = match bad_files.and_then(|_| staged.transpose()) {
        Ok(staged) => staged,
        Err(e) => {
            warnings.extend(scratch.close(None));
            return Err(e);
        }
    };
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
        report.restore_method =
            restore(&mut engine, &scratch, dir, manifest, request.jobs, staged)?;
        report.restore_seconds = started.elapsed().as_secs_f64();
        report.integrity_problems = engine.check_integrity(&scratch.database)?;
        let restored = engine.row_counts(&scratch.database)?;
        report.row_mismatches = row_mismatches(&manifest.tables, &restored);
        report.tables_checked = manifest.tables.len();
        if let Some(recorded) = &manifest.objects {
            let restored = engine
                .object_definitions(&scratch.database)?
                .unwrap_or_default();
            report.definition_problems =
                definition_problems(recorded, &restored, &manifest.database, &scratch.database);
            report.definitions_checked = recorded.len();
        }
        Ok(())
    })();
    warnings.extend(scratch.close(Some(&mut engine)));
    result?;
    report.verified = report.integrity_problems.is_empty()
        && report.row_mismatches.is_empty()
        && report.definition_problems.is_empty();
    report.reason = if report.verified {
        let definitions = match manifest.objects {
            Some(_) => format!(
                "; definitions of {} objects match the source's",
                report.definitions_checked
            ),
            None => String::new(),
        };
        format!(
            "restored in {:.1}s; integrity checks passed; row counts of {} tables match the manifest{definitions}",
            report.restore_seconds, report.tables_checked
        )
    } else if !report.integrity_problems.is_empty() {
        format!(
            "integrity checks failed: {}",
            report.integrity_problems.join("; ")
        )
    } else if !report.definition_problems.is_empty() {
        format!(
            "the restore differs from the source: {}",
            report.definition_problems.join("; ")
        )
    } else {
        format!(
            "row counts differ from the manifest in {} tables: {}",
            report.row_mismatches.len(),
            mismatched_tables(&report.row_mismatches)
        )
    };
    Ok(report)
}
