//! A physical backup restored: unpacked (PostgreSQL: checked with pg_verifybackup; MariaDB:
//! prepared with mariadb-backup) into a new data directory the user names, never over an
//! existing one, then optionally started (socket only) and left running.

use std::path::Path;

use super::{RestoreReport, RestoreRequest};
use crate::backup::Manifest;
use crate::ledger::Target;
use crate::run::Change;
use crate::{Error, Result, engine};

pub(super) fn restore(
    request: &RestoreRequest,
    dir: &Path,
    manifest: &Manifest,
    check_mode: bool,
    target: &mut Target,
) -> Result<(RestoreReport, Option<Change>)> {
    let data_dir = request.data_dir.clone().ok_or_else(|| {
        Error::invalid(
            "data_dir",
            format!(
                "{} is a physical backup: name the new data directory to restore it into (data_dir)",
                dir.display()
            ),
        )
    })?;
    if request.drill || request.replace {
        return Err(Error::invalid(
            "data_dir",
            "a physical backup is restored into a new data directory: drill and replace do not apply",
        ));
    }
    let occupied = std::fs::read_dir(&data_dir).is_ok_and(|mut d| d.next().is_some());
    if occupied {
        return Err(Error::invalid(
            "data_dir",
            format!(
                "'{}' is not empty: a physical restore never writes over a data directory; name a new one",
                data_dir.display()
            ),
        ));
    }
    let bad = crate::verify::damaged_files(dir, manifest)?;
    if !bad.is_empty() {
        return Err(Error::invalid(
            "backup",
            format!(
                "checksum mismatch in {} of {}: the backup is damaged, nothing was restored",
                bad.join(", "),
                dir.display()
            ),
        ));
    }
    *target = Target {
        instance: manifest.instance_id.clone(),
        db: None,
    };
    let mut report = RestoreReport {
        data_dir: Some(data_dir.clone()),
        ..RestoreReport::of(dir, manifest, "*", "created")
    };
    let diff = Some(Change {
        what: "data directory",
        before: format!("{}: absent or empty\n", data_dir.display()),
        after: format!("{}: restored from {}\n", data_dir.display(), dir.display()),
    });
    if check_mode {
        return Ok((report, diff));
    }
    let started = std::time::Instant::now();
    let file = dir.join(&manifest.dump);
    let source =
        std::fs::File::open(&file).map_err(|e| Error::io("read the backup file", &file, e))?;
    let mut decoder =
        zstd::stream::read::Decoder::new(source).map_err(|e| Error::io("decompress", &file, e))?;
    crate::progress::start(
        &format!("restore into {}", data_dir.display()),
        Some(report.bytes),
    );
    let unpacked = engine::unpack_physical(
        manifest.engine,
        &mut crate::progress::Counting(&mut decoder),
        &data_dir,
    );
    crate::progress::finish();
    unpacked.map_err(|e| {
        Error::invalid(
            "restore",
            format!(
                "{e}; '{}' is incomplete: delete it before trying again",
                data_dir.display()
            ),
        )
    })?;
    report.restore_seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    if request.start {
        let run_dir = std::path::PathBuf::from(format!("{}.run", data_dir.display()));
        let user = manifest
            .snapshot
            .get("user")
            .and_then(|u| u.as_str())
            .unwrap_or("postgres");
        let server = engine::start_restored(manifest.engine, &data_dir, &run_dir, user)?;
        let mut engine = engine::connect(&server.connection)?;
        report.databases = engine
            .databases()?
            .into_iter()
            .filter(|d| d.kind == engine::DatabaseKind::User)
            .map(|d| d.name)
            .collect();
        report.server_socket_dir = Some(server.run_dir);
    }
    Ok((report, diff))
}
