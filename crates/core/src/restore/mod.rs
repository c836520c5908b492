//! db_restore: a backup restored into a server under a database name, the day backups are for.
//!
//! Picks the backup (the newest verified of a database; a given one; or the newest taken
//! before a time), checks every file's checksum before the target is touched, creates the
//! target database, refusing a non-empty one unless `replace` (which takes a safety backup of
//! it first and names it), optionally applies the globals (roles, users and grants) with a
//! policy for existing ones, restores with ownership going to the restoring login
//! (PostgreSQL --no-owner --no-privileges; MariaDB DEFINERs rewritten to CURRENT_USER when
//! asked), compares row counts with the manifest, and records task `restore`.
//!
//! A drill (`drill: true`) proves the restore path end to end: the newest verified backup
//! restored under a dated name (into the given server, or a throwaway lab server), a smoke
//! query, the restore time measured, the copy dropped (unless `keep`). It is recorded against
//! the backed-up database, so that schedules and compliance count drills, and the report reads
//! its duration as the database's measured RTO.
//!
//! - `choose`: which backup.
//! - `logical`: a dump into a database, replace and drill included.
//! - `drill`: the throwaway server of a drill.
//! - `physical`: a physical backup into a new data directory, optionally started.

mod choose;
mod drill;
mod logical;
mod physical;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backup::{BackupMethod, BackupRequest, Manifest};
use crate::connection::ConnectionArgs;
use crate::engine::{self, Engine};
use crate::ledger::{Outcome, Target};
use crate::run::{Change, Done, Recorder, RunOptions};
use crate::task::Task;
use crate::verify::RowMismatch;
use crate::{Error, Result};

/// What to do with the accounts a backup's globals hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GlobalsPolicy {
    /// Restore the database only (the default).
    #[default]
    None,
    /// Create the roles or accounts that are missing; leave existing ones as they are.
    SkipExisting,
    /// Stop before anything is restored when one of them exists already.
    FailExisting,
}

/// Arguments of db_restore and `dbcadence restore`. The connection is the target server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct RestoreRequest {
    /// Root directory of the backups (unless repository is set).
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub backup_dir: PathBuf,
    /// Restore a backup of this S3-compatible bucket instead of backup_dir (when the
    /// backup host is gone): the chosen backup (the newest verified, or `backup` as its s3://
    /// URL) is downloaded into a private temporary directory and checked like a local one.
    /// The safety backup of a replaced database goes there too unless safety_backup_dir is
    /// set.
    #[serde(default)]
    pub repository: Option<crate::repository::S3Repository>,
    /// The backed-up instance (the backups' instance id).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The backed-up database.
    #[serde(default)]
    pub database: Option<String>,
    /// A given backup directory (with repository: its s3:// URL) instead of the newest
    /// verified one.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub backup: Option<PathBuf>,
    /// The newest backup taken before this time (RFC 3339): a restore as of then.
    #[serde(default)]
    pub before: Option<String>,
    /// Also consider backups no restore has proven yet.
    #[serde(default)]
    pub allow_unverified: bool,
    /// The database to restore into; default: the backed-up database's name.
    #[serde(default)]
    pub target_database: Option<String>,
    /// The target server's instance id in the ledger; default: host:port.
    #[serde(default)]
    pub target_instance_id: Option<String>,
    /// Replace a target database that holds tables (a safety backup of it is taken first).
    #[serde(default)]
    pub replace: bool,
    /// Where the safety backup goes; default: backup_dir.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub safety_backup_dir: Option<PathBuf>,
    /// none (default), skip_existing or fail_existing: the backup's roles or accounts.
    #[serde(default)]
    pub globals: GlobalsPolicy,
    /// MariaDB/MySQL: DEFINER clauses of views, routines and triggers become CURRENT_USER,
    /// for a target where the source's accounts do not exist.
    #[serde(default)]
    pub rewrite_definers: bool,
    /// Parallel restore jobs where the format allows (PostgreSQL).
    #[serde(default = "default_jobs")]
    pub jobs: u32,
    /// An approved change record is needed to replace a database (production).
    #[serde(default)]
    pub require_change: bool,
    /// A restore drill: into <database>_drill_<date> (or target_database), a smoke query,
    /// then dropped unless keep; without connection arguments, into a throwaway lab server.
    /// Recorded against the backed-up database.
    #[serde(default)]
    pub drill: bool,
    /// A drill keeps the restored copy.
    #[serde(default)]
    pub keep: bool,
    /// A physical backup: the new data directory to restore into (it must not exist, or be
    /// empty; a running server's directory never is).
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub data_dir: Option<PathBuf>,
    /// A physical backup: start a server on the restored directory (no TCP; its socket in
    /// <data_dir>.run) and leave it running.
    #[serde(default)]
    pub start: bool,
    #[serde(flatten)]
    pub target: ConnectionArgs,
    #[serde(flatten)]
    pub run: RunOptions,
}

fn default_jobs() -> u32 {
    2
}

/// What a restore did (or, in check mode, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RestoreReport {
    /// The backup restored.
    pub backup: PathBuf,
    /// Its instance, database and start time.
    pub source_instance: String,
    /// See source_instance.
    pub source_database: String,
    /// See source_instance.
    pub backup_started_at: String,
    /// Whether a restore proved the backup before.
    pub backup_verified: bool,
    /// The database restored into.
    pub target_database: String,
    /// created (it did not exist), filled (it existed, empty) or replaced.
    pub action: String,
    /// The safety backup of the replaced database.
    #[serde(default)]
    pub safety_backup: Option<PathBuf>,
    /// Decompressed size of the dump.
    pub bytes: u64,
    /// Wall time of the restore.
    pub restore_seconds: f64,
    /// The restore time expected from the backup's verification (how long its restore took).
    #[serde(default)]
    pub estimated_seconds: Option<f64>,
    /// What happened to the globals, a line each.
    #[serde(default)]
    pub globals: Vec<String>,
    /// Tables whose row count was compared with the manifest.
    pub tables_checked: usize,
    /// Tables whose restored row count differs from the manifest.
    #[serde(default)]
    pub row_mismatches: Vec<RowMismatch>,
    /// A drill: the smoke query's answer, and whether the copy was dropped.
    #[serde(default)]
    pub drill: Option<DrillOutcome>,
    /// A physical backup: the data directory it was restored into.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// A physical backup started: the directory of its socket (and log), and the user
    /// databases it answered with.
    #[serde(default)]
    pub server_socket_dir: Option<PathBuf>,
    /// See server_socket_dir.
    #[serde(default)]
    pub databases: Vec<String>,
}

/// What a drill did after the restore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DrillOutcome {
    /// Tables the smoke query counted in the restored copy.
    pub tables: u64,
    /// The copy was dropped (false with keep).
    pub dropped: bool,
    /// lab (a throwaway server) or target (the given server).
    pub server: String,
}

/// Restores one backup and records it.
pub fn run(request: &RestoreRequest, check_mode: bool) -> Result<Done<RestoreReport>> {
    let recorder = Recorder::start(Task::Restore, &request.run, check_mode)
        .hiding(request.target.login_password.as_ref());
    let mut target = Target::of(
        request.target_instance_id.as_ref(),
        &request.target,
        request
            .target_database
            .as_deref()
            .or(request.database.as_deref()),
    );
    let mut warnings = Vec::new();
    let result = restore(request, check_mode, &mut target, &mut warnings);
    let (report, diff) = match result {
        Ok(done) => done,
        Err(e) => {
            recorder.fail(target, &e);
            return Err(e);
        }
    };
    let failed = !report.row_mismatches.is_empty();
    let details = json!({
        "backup": report.backup, "source_instance": report.source_instance,
        "source_database": report.source_database, "action": report.action,
        "safety_backup": report.safety_backup, "restore_seconds": report.restore_seconds,
        "bytes": report.bytes, "globals": report.globals,
        "row_mismatches": report.row_mismatches, "drill": request.drill,
        "target_database": report.target_database, "data_dir": report.data_dir,
    });
    let outcome = if failed { Outcome::Failed } else { Outcome::Ok };
    warnings.extend(recorder.finish(target, outcome, true, details, vec![]));
    let msg = if check_mode {
        format!(
            "would restore {} into {} ({}){}",
            report.backup.display(),
            report.target_database,
            report.action,
            report
                .estimated_seconds
                .map(|s| format!(", about {s:.0} s"))
                .unwrap_or_default()
        )
    } else if failed {
        format!(
            "restored {} into {}, but row counts differ from the manifest in {} table(s): {}",
            report.backup.display(),
            report.target_database,
            report.row_mismatches.len(),
            crate::verify::mismatched_tables(&report.row_mismatches)
        )
    } else if let Some(data_dir) = &report.data_dir {
        format!(
            "restored {} into the new data directory {} in {:.1} s{}",
            report.backup.display(),
            data_dir.display(),
            report.restore_seconds,
            report
                .server_socket_dir
                .as_ref()
                .map(|s| format!(
                    "; a server runs on it (socket in {}, no TCP) with {} user database(s)",
                    s.display(),
                    report.databases.len()
                ))
                .unwrap_or_default()
        )
    } else if let Some(drill) = &report.drill {
        format!(
            "drill: {} restored in {:.1} s into {} ({} server), {} tables answered the smoke query; {}",
            report.backup.display(),
            report.restore_seconds,
            report.target_database,
            drill.server,
            drill.tables,
            if drill.dropped { "dropped" } else { "kept" }
        )
    } else {
        format!(
            "restored {} into {} ({}) in {:.1} s; row counts of {} tables match the manifest{}",
            report.backup.display(),
            report.target_database,
            report.action,
            report.restore_seconds,
            report.tables_checked,
            report
                .safety_backup
                .as_ref()
                .map(|p| format!("; the replaced database is saved in {}", p.display()))
                .unwrap_or_default()
        )
    };
    Ok(Done {
        changed: true,
        msg,
        diff,
        warnings,
        output: report,
    })
}

impl RestoreReport {
    /// What is known before restoring: the backup, the target and, from the backup's
    /// verification, how long a restore took (the check-mode estimate).
    fn of(dir: &std::path::Path, manifest: &Manifest, target_database: &str, action: &str) -> Self {
        let verification = manifest.verification.as_ref();
        RestoreReport {
            backup: dir.to_path_buf(),
            source_instance: manifest.instance_id.clone(),
            source_database: manifest.database.clone(),
            backup_started_at: manifest.started_at.clone(),
            backup_verified: verification.is_some_and(|v| v["verified"] == true),
            target_database: target_database.to_string(),
            action: action.into(),
            bytes: manifest.files.iter().map(|f| f.raw_bytes).sum(),
            estimated_seconds: verification.and_then(|v| v["seconds"].as_f64()),
            ..RestoreReport::default()
        }
    }

    /// Why the restore counts as failed, when it does.
    pub fn failure(&self) -> Option<String> {
        (!self.row_mismatches.is_empty()).then(|| {
            format!(
                "row counts differ from the manifest in {} table(s)",
                self.row_mismatches.len()
            )
        })
    }
}

/// Picks the backup and restores it the way its method needs.
fn restore(
    request: &RestoreRequest,
    check_mode: bool,
    target: &mut Target,
    warnings: &mut Vec<String>,
) -> Result<(RestoreReport, Option<Change>)> {
    // A backup in a bucket is restored from a private download (removed when this returns).
    let (_download, dir, manifest, url) = match &request.repository {
        Some(repository) => {
            let (download, url, manifest) = choose::download(request, repository)?;
            let dir = download.path().to_path_buf();
            (Some(download), dir, manifest, Some(url))
        }
        None => {
            let (dir, manifest) = choose::backup(request)?;
            (None, dir, manifest, None)
        }
    };
    let restored = if manifest.method == BackupMethod::Physical {
        physical::restore(request, &dir, &manifest, check_mode, target)
    } else {
        logical::restore(request, &dir, &manifest, check_mode, target, warnings)
    };
    // A backup of a bucket is named by its URL, not by the temporary download.
    restored.map(|(mut report, change)| {
        if let Some(url) = url {
            report.backup = url;
        }
        (report, change)
    })
}

/// A backup of the database about to be replaced; its directory.
fn safety_backup(
    request: &RestoreRequest,
    target: &Target,
    database: &str,
    warnings: &mut Vec<String>,
) -> Result<PathBuf> {
    let backup = BackupRequest {
        connection: request.target.clone(),
        database: database.to_string(),
        backup_dir: request
            .safety_backup_dir
            .clone()
            .unwrap_or_else(|| request.backup_dir.clone()),
        // Beside the restored backup: in its bucket unless a directory is named.
        repository: match &request.safety_backup_dir {
            Some(_) => None,
            None => request.repository.clone(),
        },
        instance_id: Some(target.instance.clone()),
        run: request.run.clone(),
        ..BackupRequest::default()
    };
    let done = crate::backup::run(&backup, false).map_err(|e| {
        Error::invalid(
            "replace",
            format!("the safety backup of '{database}' failed, nothing was replaced: {e}"),
        )
    })?;
    warnings.extend(done.warnings);
    done.output.path.ok_or_else(|| {
        Error::invalid(
            "replace",
            format!("the safety backup of '{database}' wrote nothing; nothing was replaced"),
        )
    })
}
