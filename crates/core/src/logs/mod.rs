//! db_logs: log retention that keeps point-in-time recovery possible.
//!
//! Text logs (PostgreSQL's log directory, MariaDB's error, slow and general logs): the file
//! being written is never touched; MariaDB's are rotated (renamed, then reopened by the server)
//! when they pass `rotate_bytes`; older files are compressed with zstd, removed after
//! `keep_days`, and the oldest removed beyond `max_total_bytes`.
//!
//! Binary logs (MariaDB/MySQL) are purged with PURGE BINARY LOGS TO, never past the position
//! recorded by the newest verified backup of any database of the server (recovery from it to
//! a point in time needs every binary log from there on), nor past what a replica has not
//! executed yet, nor past `binlog_keep_days`. Without a backup directory nothing is purged.
//! PostgreSQL's WAL is never removed by hand: archiving failures and slots holding WAL back
//! are reported.

pub mod model;

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::json;

pub use model::*;

use crate::engine::{self, Engine};
use crate::ledger::{Outcome, Target};
use crate::metrics::Sample;
use crate::run::{Change, Done, Recorder};
use crate::task::Task;
use crate::{Error, Result};

/// Binary log names in the order the server wrote them (`binlog.000009` < `binlog.000010`).
pub fn binlog_order(a: &str, b: &str) -> Ordering {
    let number = |s: &str| {
        s.rsplit('.')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    number(a).cmp(&number(b)).then_with(|| a.cmp(b))
}

/// Runs db_logs and records it (task logs, target the instance).
pub fn run(request: &LogsRequest, check_mode: bool) -> Result<Done<LogsReport>> {
    let target = Target::of(request.instance_id.as_ref(), &request.connection, None);
    let instance = target.instance.clone();
    let recorder = Recorder::start(Task::Logs, &request.run, check_mode)
        .hiding(request.connection.login_password.as_ref());
    let (report, before, after) = match retain(request, &instance, check_mode) {
        Ok(done) => done,
        Err(e) => {
            recorder.fail(target, &e);
            return Err(e);
        }
    };
    let changed = !report.files.is_empty() || !report.purged_binary_logs.is_empty();
    let details = json!({
        "files": report.files, "purged_binary_logs": report.purged_binary_logs,
        "binlog_floor": report.binlog_floor, "freed_bytes": report.freed_bytes,
        "text_log_bytes": report.text_log_bytes, "warnings": report.warnings,
    });
    let samples = vec![
        Sample::gauge(
            "dbcadence_logs_freed_bytes",
            "Bytes the last log retention run freed (removed, compressed, purged).",
            &[("instance", instance.as_str())],
            report.freed_bytes as f64,
        ),
        Sample::gauge(
            "dbcadence_logs_directory_bytes",
            "Bytes the server's text logs take after the last log retention run.",
            &[("instance", instance.as_str())],
            report.text_log_bytes as f64,
        ),
    ];
    let warnings = recorder.finish(target, Outcome::Ok, changed, details, samples);
    let verb = if check_mode { "would free" } else { "freed" };
    Ok(Done {
        changed,
        msg: format!(
            "{verb} {} bytes: {} log files, {} binary logs{}",
            report.freed_bytes,
            report.files.len(),
            report.purged_binary_logs.len(),
            report
                .binlog_floor
                .as_deref()
                .map(|f| format!("; binary logs kept from {f}"))
                .unwrap_or_default()
        ),
        diff: Change::between("logs", Some(before), Some(after)),
        warnings: warnings
            .into_iter()
            .chain(report.warnings.clone())
            .collect(),
        output: report,
    })
}

fn retain(
    request: &LogsRequest,
    instance: &str,
    check_mode: bool,
) -> Result<(LogsReport, String, String)> {
    if !check_mode {
        crate::change::gate(
            &request.run.ledger()?,
            request.run.change_id.as_deref(),
            request.require_change,
            jiff::Timestamp::now(),
        )?;
    }
    let mut engine = engine::connect(&request.connection)?;
    let mut logs = engine.server_logs()?;
    if let Some(dir) = &request.log_dir
        && !logs.text.iter().any(|t| t.dir == *dir)
    {
        // Written to by a server without logging_collector: the newest file is the current.
        logs.text.push(TextLog {
            kind: TextLogKind::Server,
            current: newest_file(dir),
            dir: dir.clone(),
            stem: None,
        });
    }
    let mut report = LogsReport {
        instance_id: instance.to_string(),
        limits: logs.limits.clone(),
        wal: logs.wal.clone(),
        ..LogsReport::default()
    };
    let mut before = Vec::new();
    let mut after = Vec::new();
    for log in &logs.text {
        before.extend(names(&log_files(log)));
        text_log(engine.as_mut(), request, log, check_mode, &mut report)?;
        let files = log_files(log);
        after.extend(names(&files));
        report.text_log_bytes += files.iter().map(|f| f.bytes).sum::<u64>()
            + log
                .current
                .as_ref()
                .and_then(|c| c.metadata().ok())
                .map_or(0, |m| m.len());
    }
    if check_mode {
        // Nothing moved: "after" is what would be left.
        let gone: Vec<String> = report
            .files
            .iter()
            .filter(|f| f.action == "removed")
            .map(|f| f.path.display().to_string())
            .collect();
        after = before
            .iter()
            .filter(|n| !gone.contains(n))
            .cloned()
            .collect();
    }
    if let Some(binary) = &logs.binary {
        let names: Vec<String> = binary.iter().map(|b| b.name.clone()).collect();
        before.extend(names.iter().cloned());
        binary_logs(
            engine.as_mut(),
            request,
            instance,
            binary,
            logs.binary_dir.as_deref(),
            check_mode,
            &mut report,
        )?;
        after.extend(
            names
                .into_iter()
                .filter(|n| !report.purged_binary_logs.contains(n)),
        );
    }
    if let Some(wal) = &logs.wal {
        report.warnings.extend(wal_warnings(wal));
    }
    let list = |mut v: Vec<String>| {
        v.sort();
        v.iter().map(|n| format!("{n}\n")).collect::<String>()
    };
    Ok((report, list(before), list(after)))
}

/// A file of a text log (rotated or closed), never the one being written.
#[derive(Debug, Clone)]
struct LogFile {
    path: PathBuf,
    bytes: u64,
    modified: SystemTime,
}

fn names(files: &[LogFile]) -> Vec<String> {
    files.iter().map(|f| f.path.display().to_string()).collect()
}

fn newest_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// The log's files other than the current one, oldest first.
fn log_files(log: &TextLog) -> Vec<LogFile> {
    let mut files: Vec<LogFile> = std::fs::read_dir(&log.dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| Some(e.path()) != log.current)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match &log.stem {
                // MariaDB: rotated copies of this log only (`error.log.20261127...`).
                Some(stem) => name.starts_with(&format!("{stem}.")),
                None => !name.starts_with('.'),
            }
        })
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some(LogFile {
                path: e.path(),
                bytes: meta.len(),
                modified: meta.modified().ok()?,
            })
        })
        .collect();
    files.sort_by_key(|f| f.modified);
    files
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// Rotation (MariaDB), compression, age and budget for one text log.
fn text_log(
    engine: &mut dyn Engine,
    request: &LogsRequest,
    log: &TextLog,
    check_mode: bool,
    report: &mut LogsReport,
) -> Result<()> {
    let now = SystemTime::now();
    if let (Some(current), Some(_)) = (&log.current, &log.stem) {
        let size = current.metadata().map_or(0, |m| m.len());
        if size > request.rotate_bytes {
            let stamp = jiff::Timestamp::now()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string();
            let rotated = PathBuf::from(format!("{}.{stamp}", current.display()));
            if !check_mode {
                std::fs::rename(current, &rotated)
                    .map_err(|e| Error::io("rotate the log", current, e))?;
                engine.reopen_log(log.kind)?;
            }
            report.files.push(FileAction {
                action: "rotated".into(),
                path: current.clone(),
                freed_bytes: 0,
                reason: format!("{size} bytes, above rotate_bytes {}", request.rotate_bytes),
            });
        }
    }
    let mut kept: Vec<LogFile> = Vec::new();
    for file in log_files(log) {
        let age = now.duration_since(file.modified).unwrap_or_default();
        if age > days(request.keep_days) {
            remove(&file, "older than keep_days", check_mode, report)?;
        } else {
            kept.push(file);
        }
    }
    let mut compressed_files = Vec::new();
    for file in kept {
        let age = now.duration_since(file.modified).unwrap_or_default();
        let already = file
            .path
            .extension()
            .is_some_and(|e| e == "zst" || e == "gz");
        if already || age < days(request.compress_after_days) {
            compressed_files.push(file);
            continue;
        }
        compressed_files.push(compress(&file, check_mode, report)?);
    }
    if let Some(budget) = request.max_total_bytes {
        let mut total: u64 = compressed_files.iter().map(|f| f.bytes).sum::<u64>()
            + log
                .current
                .as_ref()
                .and_then(|c| c.metadata().ok())
                .map_or(0, |m| m.len());
        for file in &compressed_files {
            if total <= budget {
                break;
            }
            remove(
                file,
                "beyond max_total_bytes (oldest first)",
                check_mode,
                report,
            )?;
            total = total.saturating_sub(file.bytes);
        }
    }
    Ok(())
}

fn remove(file: &LogFile, reason: &str, check_mode: bool, report: &mut LogsReport) -> Result<()> {
    if !check_mode {
        std::fs::remove_file(&file.path)
            .map_err(|e| Error::io("remove the log file", &file.path, e))?;
    }
    report.freed_bytes += file.bytes;
    report.files.push(FileAction {
        action: "removed".into(),
        path: file.path.clone(),
        freed_bytes: file.bytes,
        reason: reason.into(),
    });
    Ok(())
}

/// Compresses a file beside itself (`.zst`, written in full and synced before the original
/// goes), keeping its modification time so that its age still counts.
fn compress(file: &LogFile, check_mode: bool, report: &mut LogsReport) -> Result<LogFile> {
    let target = PathBuf::from(format!("{}.zst", file.path.display()));
    let (bytes, freed) = if check_mode {
        (file.bytes, 0)
    } else {
        let input =
            std::fs::read(&file.path).map_err(|e| Error::io("read the log file", &file.path, e))?;
        let packed = zstd::encode_all(input.as_slice(), 9)
            .map_err(|e| Error::io("compress the log file", &file.path, e))?;
        crate::files::write_atomically(&target, &packed, 0o640)?;
        if let Ok(f) = std::fs::File::options().write(true).open(&target) {
            let _ = f.set_modified(file.modified);
        }
        std::fs::remove_file(&file.path)
            .map_err(|e| Error::io("remove the log file", &file.path, e))?;
        let size = packed.len() as u64;
        (size, file.bytes.saturating_sub(size))
    };
    report.freed_bytes += freed;
    report.files.push(FileAction {
        action: "compressed".into(),
        path: file.path.clone(),
        freed_bytes: freed,
        reason: "older than compress_after_days".into(),
    });
    Ok(LogFile {
        path: target,
        bytes,
        modified: file.modified,
    })
}

/// The binary logs that may go: everything before the oldest one still needed.
fn binary_logs(
    engine: &mut dyn Engine,
    request: &LogsRequest,
    instance: &str,
    binary: &[BinaryLog],
    binary_dir: Option<&Path>,
    check_mode: bool,
    report: &mut LogsReport,
) -> Result<()> {
    let Some(current) = binary.last() else {
        return Ok(());
    };
    let Some(backup_dir) = &request.backup_dir else {
        report.limits.push("no backup_dir: binary logs are kept (point-in-time recovery from the newest backups could not be checked)".into());
        return Ok(());
    };
    let mut floors: Vec<(String, String)> = vec![(current.name.clone(), "being written".into())];
    match backup_floor(backup_dir, instance)? {
        Some((file, why)) => floors.push((file, why)),
        None => {
            report.limits.push(format!(
                "no verified backup of '{instance}' under '{}' records a binary log position: binary logs are kept",
                backup_dir.display()
            ));
            return Ok(());
        }
    }
    for (i, replica) in request.replicas.iter().enumerate() {
        let position = engine::connect(replica).and_then(|mut r| r.replica_source_file());
        match position {
            Ok(Some(file)) => floors.push((
                file,
                format!("replica {} has executed up to it", replica.describe()),
            )),
            Ok(None) => report.warnings.push(format!(
                "replicas[{i}] ({}) replicates from nothing",
                replica.describe()
            )),
            Err(e) => {
                report.limits.push(format!(
                    "replicas[{i}] ({}) is unreachable ({e}): binary logs are kept",
                    replica.describe()
                ));
                return Ok(());
            }
        }
    }
    if let Some(keep) = request.binlog_keep_days {
        match binary_dir.and_then(|dir| age_floor(dir, binary, keep)) {
            Some(file) => floors.push((file, format!("younger than {keep} days"))),
            None => {
                report.limits.push("the binary logs' ages are not readable on this host: binary logs are kept (run db_logs on the database server, or drop binlog_keep_days)".into());
                return Ok(());
            }
        }
    }
    let (floor, why) = floors
        .into_iter()
        .min_by(|a, b| binlog_order(&a.0, &b.0))
        .expect("the current binary log is a floor");
    report.binlog_floor = Some(format!("{floor} ({why})"));
    let purged: Vec<&BinaryLog> = binary
        .iter()
        .filter(|b| binlog_order(&b.name, &floor) == Ordering::Less)
        .collect();
    if purged.is_empty() {
        return Ok(());
    }
    if !check_mode {
        engine.purge_binary_logs_to(&floor)?;
    }
    report.freed_bytes += purged.iter().map(|b| b.bytes).sum::<u64>();
    report.purged_binary_logs = purged.iter().map(|b| b.name.clone()).collect();
    Ok(())
}

/// The oldest binary log that the newest verified backup of some database still needs.
fn backup_floor(backup_dir: &Path, instance: &str) -> Result<Option<(String, String)>> {
    let mut newest: std::collections::BTreeMap<String, crate::backup::BackupEntry> =
        Default::default();
    for entry in crate::backup::list(backup_dir)?
        .into_iter()
        .filter(|b| b.verified && b.instance_id == instance)
    {
        let keep = newest
            .get(&entry.database)
            .is_none_or(|n| n.started_at < entry.started_at);
        if keep {
            newest.insert(entry.database.clone(), entry);
        }
    }
    let mut floor: Option<(String, String)> = None;
    for entry in newest.values() {
        let manifest = std::fs::read(entry.path.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let Some(file) = manifest
            .as_ref()
            .and_then(|m| m["snapshot"]["binlog_file"].as_str())
            .map(str::to_string)
        else {
            continue;
        };
        if floor
            .as_ref()
            .is_none_or(|(f, _)| binlog_order(&file, f) == Ordering::Less)
        {
            floor = Some((
                file,
                format!(
                    "the newest verified backup of '{}' starts there",
                    entry.database
                ),
            ));
        }
    }
    Ok(floor)
}

/// The oldest binary log younger than `keep` days, from the files' ages; None when the files
/// are not readable here.
fn age_floor(dir: &Path, binary: &[BinaryLog], keep: u32) -> Option<String> {
    let now = SystemTime::now();
    for log in binary {
        let modified = std::fs::metadata(dir.join(&log.name))
            .ok()?
            .modified()
            .ok()?;
        if now.duration_since(modified).unwrap_or_default() < days(keep) {
            return Some(log.name.clone());
        }
    }
    binary.last().map(|b| b.name.clone())
}

fn wal_warnings(wal: &WalStatus) -> Vec<String> {
    let mut warnings = Vec::new();
    let failing =
        wal.failed_count > 0 && wal.last_failed_time.as_deref() > wal.last_archived_time.as_deref();
    if failing {
        warnings.push(format!(
            "WAL archiving is failing: {} failures, the last on {} at {}; pg_wal grows until archive_command works again",
            wal.failed_count,
            wal.last_failed_wal.as_deref().unwrap_or("?"),
            wal.last_failed_time.as_deref().unwrap_or("?")
        ));
    }
    for slot in wal.slots.iter().filter(|s| !s.active) {
        warnings.push(format!(
            "replication slot '{}' is inactive and holds {} bytes of WAL; drop it (pg_drop_replication_slot) if its consumer is gone",
            slot.name,
            slot.retained_bytes.map_or("?".into(), |b| b.to_string())
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_logs_sort_by_their_number() {
        assert_eq!(
            binlog_order("binlog.000009", "binlog.000010"),
            Ordering::Less
        );
        assert_eq!(
            binlog_order("binlog.000010", "binlog.000010"),
            Ordering::Equal
        );
        let mut v = vec!["b.000100", "b.000002", "b.000010"];
        v.sort_by(|a, b| binlog_order(a, b));
        assert_eq!(v, ["b.000002", "b.000010", "b.000100"]);
    }

    #[test]
    fn archiving_failures_and_inactive_slots_are_warned_about() {
        let wal = WalStatus {
            failed_count: 3,
            last_failed_time: Some("2026-11-27 10:00".into()),
            last_archived_time: Some("2026-11-27 09:00".into()),
            slots: vec![Slot {
                name: "old".into(),
                active: false,
                retained_bytes: Some(5),
            }],
            ..WalStatus::default()
        };
        let w = wal_warnings(&wal);
        assert_eq!(w.len(), 2, "{w:?}");
        let healed = WalStatus {
            last_archived_time: Some("2026-11-27 11:00".into()),
            slots: vec![],
            ..wal
        };
        assert!(wal_warnings(&healed).is_empty());
    }
}
