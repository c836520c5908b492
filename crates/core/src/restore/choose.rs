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

/// Whether a backup started at a time (RFC 3339) is one `before` allows (any, when unset).
fn taken_before(request: &RestoreRequest) -> Result<impl Fn(&str) -> bool> {
    let before = request
        .before
        .as_deref()
        .map(|t| {
            t.parse::<jiff::Timestamp>().map_err(|e| {
                Error::invalid("before", format!("'{t}' is not an RFC 3339 time: {e}"))
            })
        })
        .transpose()?;
    Ok(move |started: &str| {
        before.is_none_or(|limit| started.parse::<jiff::Timestamp>().is_ok_and(|t| t < limit))
    })
}

/// The newest of `backups` a restore may use: of the instance and database, verified (unless
/// allow_unverified) and taken before `before`. None is an error naming what was looked for,
/// where (`place`) and what to do about it (`next`).
fn newest_restorable(
    request: &RestoreRequest,
    backups: Vec<crate::backup::BackupEntry>,
    (instance, database): (&str, &str),
    place: &str,
    next: &str,
) -> Result<crate::backup::BackupEntry> {
    let taken_before = taken_before(request)?;
    backups
        .into_iter()
        .filter(|b| b.instance_id == instance && b.database == database)
        .filter(|b| b.verified || request.allow_unverified)
        .filter(|b| taken_before(&b.started_at))
        .max_by(|a, b| a.started_at.cmp(&b.started_at))
        .ok_or_else(|| {
            let before = request
                .before
                .as_deref()
                .map(|t| format!(" taken before {t}"))
                .unwrap_or_default();
            let (verified, unverified_hint) = if request.allow_unverified {
                ("", "")
            } else {
                (
                    "verified ",
                    " (allow_unverified: true also takes backups no restore has proven)",
                )
            };
            Error::invalid(
                "backup",
                format!(
                    "no {verified}backup of '{database}' on '{instance}' {place}{before}{next}{unverified_hint}"
                ),
            )
        })
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
    let newest = newest_restorable(
        request,
        crate::backup::list(&request.backup_dir)?,
        (instance, database),
        &format!("under '{}'", request.backup_dir.display()),
        "; list them with dbcadence backups list",
    )?;
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

/// A backup of an S3 repository, downloaded into a private temporary directory: the given one
/// (`backup` as its s3:// URL) or the newest (verified, unless allow_unverified) of the
/// instance's database, taken before `before` when set. Returns the directory (removed when
/// dropped), the backup's URL and its manifest.
pub(super) fn download(
    request: &RestoreRequest,
    repository: &crate::repository::S3Repository,
) -> Result<(tempfile::TempDir, PathBuf, Manifest)> {
    let store = crate::repository::S3Store::open(repository)?;
    let (listing, _) = store.scan(request.instance_id.as_deref(), request.database.as_deref())?;
    let chosen = match &request.backup {
        Some(url) => {
            let url = url.to_string_lossy();
            listing
                .backups
                .into_iter()
                .find(|b| b.path.to_string_lossy() == url.trim_end_matches('/'))
                .ok_or_else(|| {
                    Error::invalid(
                        "backup",
                        format!("'{url}' is not a complete backup in {}", repository.url()),
                    )
                })?
        }
        None => {
            let (Some(instance), Some(database)) = (&request.instance_id, &request.database) else {
                return Err(Error::invalid(
                    "instance_id",
                    "name the backed-up instance_id and database (or give backup: <s3 URL>)",
                ));
            };
            newest_restorable(
                request,
                listing.backups,
                (instance, database),
                &format!("in {}", repository.url()),
                "",
            )?
        }
    };
    let url = chosen.path.to_string_lossy().into_owned();
    let key = store.key_of_url(&url).ok_or_else(|| {
        Error::invalid("backup", format!("'{url}' is not in {}", repository.url()))
    })?;
    let download = tempfile::Builder::new()
        .prefix("dbcadence-restore-")
        .tempdir()
        .map_err(|e| Error::io("create a download directory", std::env::temp_dir(), e))?;
    let dir = download.path();
    store.download(
        &format!("{key}/manifest.json"),
        &dir.join("manifest.json"),
        crate::files::Access::PRIVATE,
    )?;
    let manifest = read(dir)?;
    for file in &manifest.files {
        let to = dir.join(&file.path);
        if let Some(parent) = to.parent() {
            crate::files::Access::PRIVATE.create_dir_all(parent)?;
        }
        let (_, sha256) = store.download(
            &format!("{key}/{}", file.path),
            &to,
            crate::files::Access::PRIVATE,
        )?;
        if sha256 != file.sha256 {
            return Err(Error::invalid(
                "backup",
                format!(
                    "{url}/{} does not match its checksum in the manifest: the backup is damaged; restore another one (backup or before)",
                    file.path
                ),
            ));
        }
    }
    Ok((download, chosen.path, manifest))
}
