//! Where and how a backup is restored: a throwaway lab server (or a scratch database of a
//! given server), the dump fed to the engine's restore tool, and the physical path (unpack,
//! prepare, start a private server, check).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::*;
use crate::backup::Manifest;
use crate::connection::ConnectionArgs;
use crate::engine::{self, Engine, RestoreInput};
use crate::lab::{self, LabRequest};
use crate::{Error, Result};

/// Where the restore happens, and how to clean it up.
pub(super) struct Scratch {
    pub(super) connection: ConnectionArgs,
    pub(super) database: String,
    pub(super) lab_dir: Option<tempfile::TempDir>,
    pub(super) kind: &'static str,
}

impl Scratch {
    pub(super) fn open(request: &VerifyRequest, manifest: &Manifest) -> Result<Scratch> {
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
            .unwrap_or_else(|| default_scratch_parent(manifest));
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
    pub(super) fn close(self, engine: Option<&mut Box<dyn Engine>>) -> Option<String> {
        match &self.lab_dir {
            Some(dir) => lab::discard(dir.path()).err().map(|e| {
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

/// Where a throwaway scratch server lives when the request names no place: in memory
/// (/dev/shm) when the restored database fits comfortably (its dump's raw size four times over,
/// plus 2 GiB for the server's logs, in half of what is free there), else /tmp. A scratch server
/// is thrown away after the checks: its data needs no disk.
fn default_scratch_parent(manifest: &Manifest) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let raw: u64 = manifest.files.iter().map(|f| f.raw_bytes).sum();
    let needed = raw.saturating_mul(4).saturating_add(2 << 30);
    match crate::util::available_bytes(shm) {
        Some(free) if needed < free / 2 => shm.to_path_buf(),
        _ => PathBuf::from("/tmp"),
    }
}

/// A physical backup: unpack, prepare and start a private server on the copy, then check every
/// user database and count its rows.
pub(super) fn verify_physical(
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
    let mut restored = Vec::new();
    for database in &databases {
        report.integrity_problems.extend(
            engine
                .check_integrity(database)?
                .into_iter()
                .map(|p| format!("{database}: {p}")),
        );
        restored.extend(
            engine
                .row_counts(database)?
                .into_iter()
                .map(|t| engine::TableRows {
                    database: Some(database.clone()),
                    ..t
                }),
        );
    }
    drop(engine);
    drop(copy);
    let (missing, notes, compared) = compare_with_both_ends(manifest, &restored);
    report.row_mismatches = missing;
    report.row_count_notes = notes;
    report.tables_checked = restored.len();
    report.verified = report.integrity_problems.is_empty() && report.row_mismatches.is_empty();
    let counted = if manifest.tables_at_end.is_empty() {
        "no row counts recorded at backup time".to_string()
    } else {
        format!(
            "all {compared} tables counted at the start and end of the copy are in it, {} with a count outside the two",
            report.row_count_notes.len()
        )
    };
    report.reason = if !report.integrity_problems.is_empty() {
        format!(
            "integrity checks failed: {}",
            report.integrity_problems.join("; ")
        )
    } else if !report.row_mismatches.is_empty() {
        format!(
            "tables counted at the start and end of the backup are missing from the copy: {}",
            mismatched_tables(&report.row_mismatches)
        )
    } else {
        format!(
            "prepared and started in {:.1}s; integrity checks passed on {} tables of {} databases; {counted}",
            report.restore_seconds,
            report.tables_checked,
            databases.len()
        )
    };
    Ok(report)
}

/// A physical copy against the counts taken when it started and when it ended: a table
/// counted at both ends must be in the copy (a missing one is a mismatch); a count outside the
/// two is a note, not a failure, since rows written while the copy ran (a queue emptied and
/// refilled) can put the copy's point anywhere.
fn compare_with_both_ends(
    manifest: &Manifest,
    restored: &[engine::TableRows],
) -> (Vec<RowMismatch>, Vec<String>, usize) {
    let same = |a: &engine::TableRows, b: &engine::TableRows| {
        a.database == b.database && a.schema == b.schema && a.name == b.name
    };
    let mut missing = Vec::new();
    let mut notes = Vec::new();
    let mut compared = 0;
    for start in &manifest.tables {
        let Some(end) = manifest.tables_at_end.iter().find(|e| same(e, start)) else {
            continue; // dropped while the copy ran
        };
        compared += 1;
        let name = format!(
            "{}.{}{}",
            start.database.as_deref().unwrap_or(""),
            start
                .schema
                .as_deref()
                .map(|s| format!("{s}."))
                .unwrap_or_default(),
            start.name
        );
        match restored.iter().find(|r| same(r, start)) {
            None => missing.push(RowMismatch {
                table: name,
                expected: Some(end.rows),
                found: None,
            }),
            Some(found) => {
                let (low, high) = (start.rows.min(end.rows), start.rows.max(end.rows));
                if !(low..=high).contains(&found.rows) {
                    notes.push(format!(
                        "{name}: {} rows restored, {} at the start of the copy and {} at its end (written while it ran)",
                        found.rows, start.rows, end.rows
                    ));
                }
            }
        }
    }
    (missing, notes, compared)
}

/// Loads the dump file (or the copy staged ahead) into the scratch database; returns how.
pub(super) fn restore(
    engine: &mut Box<dyn Engine>,
    scratch: &Scratch,
    backup_dir: &Path,
    manifest: &Manifest,
    jobs: u32,
    staged: Option<StagedDump>,
) -> Result<String> {
    // The bytes the restore reads: the dump decompressed (its size is in the manifest).
    let raw: u64 = manifest.files.iter().map(|f| f.raw_bytes).sum();
    crate::progress::start(&format!("restore {}", manifest.database), Some(raw));
    let restored = (|| {
        // The engine's own faster load where it has one (MariaDB: rows on parallel sessions,
        // secondary keys built afterwards); otherwise the restore tool, as a user would run it.
        if staged.is_none() && dump_name(manifest).ends_with(".zst") {
            let compressed = backup_dir.join(dump_name(manifest));
            let file = File::open(&compressed)
                .map_err(|e| Error::io("read the backup file", &compressed, e))?;
            let decoder = zstd::stream::read::Decoder::new(file)
                .map_err(|e| Error::io("decompress", &compressed, e))?;
            let mut dump =
                std::io::BufReader::with_capacity(1 << 20, crate::progress::Counting(decoder));
            if let Some(load) = engine.load_dump(&scratch.database, &mut dump, jobs)? {
                return Ok(format!(
                    "rows on {jobs} sessions ({} tables as LOAD DATA), secondary keys of {} tables built after their rows",
                    load.tables_as_load_data, load.keys_built_after
                ));
            }
        }
        let plan = engine.restore_plan(&scratch.database, jobs)?;
        let tool = plan.tool().name();
        restore_dump(plan, backup_dir, manifest, false, staged).map(|()| tool)
    })();
    crate::progress::finish();
    restored
}

/// The dump decompressed for a tool that wants a seekable file or directory (parallel
/// pg_restore): prepared ahead, while the scratch server starts, or on the way.
pub(crate) struct StagedDump {
    _temp: tempfile::TempDir,
    /// The file, or the directory of a directory-format dump, the tool is given.
    path: std::path::PathBuf,
}

/// The main dump of a backup: the file (or directory) named in the manifest.
fn dump_name(manifest: &Manifest) -> String {
    if manifest.dump.is_empty() {
        manifest.files[0].path.clone()
    } else {
        manifest.dump.clone()
    }
}

/// Decompresses the dump into a private temp directory.
pub(crate) fn stage_dump(backup_dir: &Path, manifest: &Manifest) -> Result<StagedDump> {
    let dump = dump_name(manifest);
    let temp = tempfile::Builder::new()
        .prefix("dbc-restore.")
        .tempdir()
        .map_err(|e| Error::io("create a temp dir", std::env::temp_dir(), e))?;
    let decompress = |source: &Path, target: &Path| -> Result<()> {
        let f = File::open(source).map_err(|e| Error::io("read the backup file", source, e))?;
        let mut decoder =
            zstd::stream::read::Decoder::new(f).map_err(|e| Error::io("decompress", source, e))?;
        let mut out = File::create(target).map_err(|e| Error::io("write", target, e))?;
        std::io::copy(&mut crate::progress::Counting(&mut decoder), &mut out)
            .map_err(|e| Error::io("decompress", source, e))?;
        Ok(())
    };
    let path = if dump.ends_with(".zst") {
        let raw = temp.path().join("dump");
        decompress(&backup_dir.join(&dump), &raw)?;
        raw
    } else {
        // A directory-format dump: every file of the directory, decompressed beside the others.
        let raw_dir = temp.path().join(&dump);
        std::fs::create_dir_all(&raw_dir).map_err(|e| Error::io("create", &raw_dir, e))?;
        for file in manifest
            .files
            .iter()
            .filter(|f| f.path.starts_with(&format!("{dump}/")))
        {
            let name = Path::new(&file.path)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .trim_end_matches(".zst")
                .to_string();
            decompress(&backup_dir.join(&file.path), &raw_dir.join(name))?;
        }
        raw_dir
    };
    Ok(StagedDump { _temp: temp, path })
}

/// Feeds the dump to the restore tool (on its stdin, or decompressed into a file or directory
/// it reads: `staged` when prepared ahead). `rewrite_definers`: a SQL dump's DEFINER clauses
/// become CURRENT_USER on the way (MariaDB/MySQL dumps fed on stdin).
pub(crate) fn restore_dump(
    plan: crate::engine::RestorePlan,
    backup_dir: &Path,
    manifest: &Manifest,
    rewrite_definers: bool,
    staged: Option<StagedDump>,
) -> Result<()> {
    let compressed = backup_dir.join(dump_name(manifest));
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
    let mut _staged = None;
    let child = match plan.input {
        RestoreInput::File => {
            let staged = match staged {
                Some(staged) => staged,
                None => stage_dump(backup_dir, manifest)?,
            };
            let child = spawn(Some(&staged.path), Stdio::null());
            // Kept until the tool has read it.
            _staged = Some(staged);
            child
        }
        RestoreInput::Stdin => spawn(None, Stdio::piped()),
    };
    let mut child = child?;
    let stderr = crate::process::StderrTail::collect(&mut child);
    let mut feed_error = None;
    if let Some(mut stdin) = child.stdin.take() {
        let decoder = crate::progress::Counting(open()?);
        let fed = if rewrite_definers {
            copy_rewriting_definers(std::io::BufReader::new(decoder), &mut stdin)
        } else {
            std::io::copy(&mut { decoder }, &mut stdin).map(|_| ())
        };
        if let Err(e) = fed.and_then(|_| stdin.flush()) {
            feed_error = Some(e);
        }
    }
    let status = restore_tool.wait(&mut child)?;
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

/// Copies a SQL dump line by line, every `DEFINER=<account>` (views, routines, triggers,
/// events) made `DEFINER=CURRENT_USER`, so that the objects belong to the restoring login on a
/// server where the source's accounts do not exist.
fn copy_rewriting_definers(
    mut input: impl std::io::BufRead,
    output: &mut impl Write,
) -> std::io::Result<()> {
    let definer = regex::bytes::Regex::new(
        r"DEFINER=(`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|[^\s@*/]+)@(`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|[^\s*/]+)",
    )
    .expect("a valid pattern");
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        // Data lines (most of a dump) hold no DEFINER clause: copied as they are.
        if line.windows(8).any(|w| w == b"DEFINER=") {
            output.write_all(&definer.replace_all(&line, &b"DEFINER=CURRENT_USER"[..]))?;
        } else {
            output.write_all(&line)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::copy_rewriting_definers;

    #[test]
    fn definers_become_the_restoring_login_and_data_stays() {
        let dump = "/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */\n\
                    CREATE DEFINER=`we``ird`@`%` PROCEDURE `p`() SELECT 1;\n\
                    /*!50017 DEFINER='app'@'10.0.0.%'*/ /*!50003 TRIGGER t */\n\
                    INSERT INTO t VALUES ('DEFINER is a word');\n";
        let mut out = Vec::new();
        copy_rewriting_definers(dump.as_bytes(), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches("DEFINER=CURRENT_USER").count(), 3, "{out}");
        assert!(!out.contains("root") && !out.contains("we``ird") && !out.contains("10.0.0"));
        assert!(out.contains("SQL SECURITY DEFINER */") && out.contains("'DEFINER is a word'"));
    }
}
