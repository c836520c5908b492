//! Which backup a restore takes: a given directory, or among the complete backups of the
//! instance's database the newest verified one (any, with allow_unverified), taken before
//! `before` when that is set. And the checks on it before anything is touched.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::RestoreRequest;
use crate::backup::Manifest;
use crate::{Error, Result};

/// A backup's manifest, when the backup is complete.
pub(super) fn read(dir: &Path) -> Result<Manifest> {
    let manifest = crate::verify::read_manifest(dir)?;
    if manifest.status != "complete" {
        return Err(Error::invalid(
            "backup",
            format!(
                "{} is not a complete backup (status {})",
                dir.display(),
                manifest.status
            ),
        ));
    }
    Ok(manifest)
}

/// The backup directory to restore and its manifest.
pub(super) fn backup(request: &RestoreRequest) -> Result<(PathBuf, Manifest)> {
    if let Some(dir) = &request.backup {
        return Ok((dir.clone(), read(dir)?));
    }
    let (Some(instance), Some(database)) = (&request.instance_id, &request.database) else {
        return Err(Error::invalid(
            "instance_id",
            "name the backed-up instance_id and database (or give backup: <dir>)",
        ));
    };
    let before = request
        .before
        .as_deref()
        .map(|t| {
            t.parse::<jiff::Timestamp>().map_err(|e| {
                Error::invalid("before", format!("'{t}' is not an RFC 3339 time: {e}"))
            })
        })
        .transpose()?;
    let taken_before = |started: &str| {
        before.is_none_or(|limit| started.parse::<jiff::Timestamp>().is_ok_and(|t| t < limit))
    };
    let newest = crate::backup::list(&request.backup_dir)?
        .into_iter()
        .filter(|b| &b.instance_id == instance && &b.database == database)
        .filter(|b| b.verified || request.allow_unverified)
        .filter(|b| taken_before(&b.started_at))
        .max_by(|a, b| a.started_at.cmp(&b.started_at))
        .ok_or_else(|| {
            Error::invalid(
                "backup",
                format!(
                    "no {}backup of '{database}' on '{instance}' under '{}'{}; list them with dbcadence backups list{}",
                    if request.allow_unverified { "" } else { "verified " },
                    request.backup_dir.display(),
                    request
                        .before
                        .as_deref()
                        .map(|t| format!(" taken before {t}"))
                        .unwrap_or_default(),
                    if request.allow_unverified {
                        ""
                    } else {
                        " (allow_unverified: true also takes backups no restore has proven)"
                    }
                ),
            )
        })?;
    let manifest = read(&newest.path)?;
    Ok((newest.path, manifest))
}

/// The backup's globals as SQL text.
pub(super) fn globals_sql(dir: &Path, manifest: &Manifest) -> Result<String> {
    let name = "globals.sql.zst";
    if !manifest.files.iter().any(|f| f.path == name) {
        return Err(Error::invalid(
            "globals",
            format!(
                "{} holds no globals: back up with globals: true to restore roles and accounts",
                dir.display()
            ),
        ));
    }
    let path = dir.join(name);
    let file = std::fs::File::open(&path).map_err(|e| Error::io("read the globals", &path, e))?;
    let mut text = String::new();
    zstd::stream::read::Decoder::new(file)
        .and_then(|mut d| d.read_to_string(&mut text))
        .map_err(|e| Error::io("decompress the globals", &path, e))?;
    Ok(text)
}
