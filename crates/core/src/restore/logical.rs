//! A logical backup restored into a database: the target's name and the checks made before
//! anything is touched, what happens to an existing database (filled, refused, or replaced
//! after a safety backup), the load itself (globals first, then the dump), the row counts,
//! and a drill's smoke query and cleanup.

use std::path::Path;

use super::*;

pub(super) fn restore(
    request: &RestoreRequest,
    dir: &Path,
    manifest: &Manifest,
    check_mode: bool,
    target: &mut Target,
    warnings: &mut Vec<String>,
) -> Result<(RestoreReport, Option<Change>)> {
    let target_database = checked_target(request, dir, manifest, target)?;
    // A drill without a target server restores into a throwaway one (not in check mode).
    let throwaway = request.drill && request.target.engine.is_none();
    if throwaway && check_mode {
        let report = RestoreReport::of(dir, manifest, &target_database, "created");
        return Ok((report, None));
    }
    let scratch = if throwaway {
        Some(drill::Scratch::start(manifest.engine)?)
    } else {
        None
    };
    let connection = scratch
        .as_ref()
        .map_or_else(|| request.target.clone(), |s| s.connection.clone());
    let mut engine = engine::connect(&connection)?;
    if engine.kind() != manifest.engine {
        return Err(Error::invalid(
            "login_host",
            format!(
                "the target is a {} server and the backup is of {}: restore into a server of the same engine",
                engine.kind(),
                manifest.engine
            ),
        ));
    }
    let before = user_databases(engine.as_mut())?;
    let tables = if before.contains(&target_database) {
        Some(engine.count_tables(&target_database)?)
    } else {
        None
    };
    let action = action_on(request, &target_database, tables)?;
    let mut report = RestoreReport::of(dir, manifest, &target_database, action);
    let diff = databases_diff(&before, &target_database, tables, dir);
    if check_mode {
        return Ok((report, diff));
    }
    if action == "replaced" {
        let store = request.run.ledger()?;
        crate::change::gate(
            &store,
            request.run.change_id.as_deref(),
            request.require_change,
            jiff::Timestamp::now(),
        )?;
        report.safety_backup = Some(safety_backup(request, target, &target_database, warnings)?);
        engine.drop_database(&target_database)?;
    }
    if action != "filled" {
        engine.create_database(&target_database)?;
    }
    load(request, engine.as_mut(), dir, manifest, &mut report)?;
    if request.drill {
        let tables = engine.count_tables(&target_database)?;
        if !request.keep && scratch.is_none() {
            engine.drop_database(&target_database)?;
        }
        report.drill = Some(DrillOutcome {
            tables,
            dropped: !request.keep,
            server: if scratch.is_some() { "lab" } else { "target" }.into(),
        });
        drop(engine);
        // The throwaway server goes, with the copy in it.
        warnings.extend(scratch.and_then(drill::Scratch::stop));
    }
    Ok((report, diff))
}

/// The target database's name, once the request's combinations and every checksum of the
/// backup are found sound; a drill's record is the backed-up database's.
fn checked_target(
    request: &RestoreRequest,
    dir: &Path,
    manifest: &Manifest,
    target: &mut Target,
) -> Result<String> {
    if request.drill && request.replace {
        return Err(Error::invalid(
            "replace",
            "a drill never replaces a database: leave replace out, or name another target_database",
        ));
    }
    if request.keep && request.target.engine.is_none() {
        return Err(Error::invalid(
            "keep",
            "keep needs a target server (connection arguments): a drill's throwaway server is deleted afterwards",
        ));
    }
    let name = request.target_database.clone().unwrap_or_else(|| {
        if request.drill {
            let today = jiff::Zoned::now().strftime("%Y%m%d");
            format!("{}_drill_{today}", manifest.database)
        } else {
            manifest.database.clone()
        }
    });
    *target = if request.drill {
        Target {
            instance: manifest.instance_id.clone(),
            db: Some(manifest.database.clone()),
        }
    } else {
        Target {
            db: Some(name.clone()),
            ..target.clone()
        }
    };
    // Every byte checked before the target is touched.
    let bad = crate::verify::damaged_files(dir, manifest)?;
    if !bad.is_empty() {
        return Err(Error::invalid(
            "backup",
            format!(
                "checksum mismatch in {} of {}: the backup is damaged, nothing was restored; pick another (backup, or before)",
                bad.join(", "),
                dir.display()
            ),
        ));
    }
    Ok(name)
}

/// What the restore does to the target database: created (absent), filled (empty) or
/// replaced (holding tables: only with replace, never by a drill).
fn action_on(request: &RestoreRequest, name: &str, tables: Option<u64>) -> Result<&'static str> {
    match tables {
        None => Ok("created"),
        Some(_) if request.drill => Err(Error::invalid(
            "target_database",
            format!(
                "'{name}' exists on the target already: a drill restores into a new database; drop it or name another target_database"
            ),
        )),
        Some(0) => Ok("filled"),
        Some(n) if !request.replace => Err(Error::invalid(
            "target_database",
            format!(
                "'{name}' holds {n} table(s) on the target: nothing was restored; set replace: true to replace it (a safety backup of it is taken first), or pick another target_database"
            ),
        )),
        Some(_) => Ok("replaced"),
    }
}

/// The target's databases before and after (diff mode); a replaced one by its content.
fn databases_diff(
    before: &[String],
    name: &str,
    tables: Option<u64>,
    dir: &Path,
) -> Option<Change> {
    match tables {
        None => {
            let mut after = before.to_vec();
            after.push(name.to_string());
            after.sort();
            Change::between(
                "databases",
                Some(before.join("\n") + "\n"),
                Some(after.join("\n") + "\n"),
            )
        }
        Some(n) => Some(Change {
            what: "databases",
            before: format!("{name}: {n} table(s)\n"),
            after: format!("{name}: restored from {}\n", dir.display()),
        }),
    }
}

/// The globals (when asked), the dump, and the row counts compared with the manifest.
fn load(
    request: &RestoreRequest,
    engine: &mut dyn Engine,
    dir: &Path,
    manifest: &Manifest,
    report: &mut RestoreReport,
) -> Result<()> {
    if request.globals != GlobalsPolicy::None {
        let sql = choose::globals_sql(dir, manifest)?;
        report.globals =
            engine.restore_globals(&sql, request.globals == GlobalsPolicy::SkipExisting)?;
    }
    let name = report.target_database.clone();
    let started = std::time::Instant::now();
    let plan = engine.restore_plan(&name, request.jobs)?;
    crate::progress::start(&format!("restore {name}"), Some(report.bytes));
    let restored = crate::verify::restore_dump(plan, dir, manifest, request.rewrite_definers, None);
    crate::progress::finish();
    restored.map_err(|e| {
        Error::invalid(
            "restore",
            format!(
                "{e}; '{name}' on the target is incomplete: drop it, or run again with replace: true{}",
                report
                    .safety_backup
                    .as_ref()
                    .map(|p| format!(" (the database it replaced is saved in {})", p.display()))
                    .unwrap_or_default()
            ),
        )
    })?;
    report.restore_seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let restored = engine.row_counts(&name)?;
    report.row_mismatches = crate::verify::row_mismatches(&manifest.tables, &restored);
    report.tables_checked = manifest.tables.len();
    Ok(())
}

fn user_databases(engine: &mut dyn Engine) -> Result<Vec<String>> {
    let mut names: Vec<String> = engine
        .databases()?
        .into_iter()
        .filter(|d| d.kind == engine::DatabaseKind::User)
        .map(|d| d.name)
        .collect();
    names.sort();
    Ok(names)
}
