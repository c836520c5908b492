//! Which backup a verification takes: the given one, or the newest unverified that matches
//! and no other verification holds (its lock is taken here); damaged directories named.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;
use crate::backup::lock::{self, BackupLock};
use crate::backup::{self, Manifest};
use crate::repository::{S3Lock, S3Repository, S3Store};
use crate::{Error, Result};

pub(super) fn sha256_of(path: &Path) -> Result<String> {
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

pub(crate) fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read the manifest", &path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("manifest '{}'", path.display()), e.to_string()))
}

/// The lock a verification holds on its backup until the outcome is recorded.
pub(super) enum Held {
    Local {
        _lock: BackupLock,
    },
    /// A backup in an S3 repository: its lock, its key, and the private directory it is
    /// downloaded into (its manifest first; the other files once the run is not check mode).
    /// No lock in check mode: a run that changes nothing writes no lock object either.
    Remote {
        store: S3Store,
        key: String,
        _lock: Option<S3Lock>,
        _download: tempfile::TempDir,
    },
}

/// What a request asks to verify.
pub(super) enum Choice {
    /// This backup directory, locked for this verification (a prune keeps it, a second
    /// verification skips it).
    Backup(PathBuf, Held),
    /// Nothing: why, in one sentence.
    Nothing(String),
}

/// The backup to verify: the given one, else the newest unverified matching the filters that
/// no other verification holds. The same choice in check mode and for real. Damaged backup
/// directories that match are returned as warnings.
pub(super) fn choose(request: &VerifyRequest) -> Result<(Choice, Vec<String>)> {
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
        return Ok((
            Choice::Backup(path.clone(), Held::Local { _lock: lock }),
            vec![],
        ));
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
                return Ok((
                    Choice::Backup(candidate.path.clone(), Held::Local { _lock: lock }),
                    warnings,
                ));
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

/// The backup to verify in an S3 repository: the given one (`backup` as its s3:// URL), else
/// the newest unverified matching one that no other verification holds. Its manifest is
/// downloaded (into a private temporary directory) under its verification lock.
pub(super) fn choose_remote(
    request: &VerifyRequest,
    repository: &S3Repository,
    check_mode: bool,
) -> Result<(Choice, Vec<String>)> {
    let store = S3Store::open(repository)?;
    let (listing, _) = store.scan(request.instance_id.as_deref(), request.database.as_deref())?;
    let warnings: Vec<String> = listing.damaged.iter().map(|d| d.warning()).collect();
    let given = request
        .backup
        .as_ref()
        .map(|b| b.to_string_lossy().into_owned());
    let candidates: Vec<&backup::BackupEntry> = match &given {
        Some(url) => {
            let found: Vec<_> = listing
                .backups
                .iter()
                .filter(|b| b.path.to_string_lossy() == url.trim_end_matches('/'))
                .collect();
            if found.is_empty() {
                return Err(Error::invalid(
                    "backup",
                    format!("'{url}' is not a complete backup in {}", repository.url()),
                ));
            }
            found
        }
        None => listing
            .backups
            .iter()
            .rev()
            .filter(|b| !b.verified)
            .collect(),
    };
    let mut busy = 0;
    for candidate in candidates {
        let url = candidate.path.to_string_lossy().into_owned();
        let Some(key) = store.key_of_url(&url) else {
            continue;
        };
        let scope = crate::backup::verify_scope(&key);
        // Check mode takes no lock: it writes nothing to the bucket, not even a lock object.
        let lock = if check_mode {
            None
        } else {
            match S3Lock::try_acquire(&store, &candidate.instance_id, &candidate.database, &scope)?
            {
                Some(lock) => Some(lock),
                None if given.is_some() => {
                    return Err(Error::invalid(
                        "backup",
                        format!("'{url}' is being verified by another run; wait for it to finish"),
                    ));
                }
                None => {
                    busy += 1;
                    continue;
                }
            }
        };
        let download = tempfile::Builder::new()
            .prefix("dbcadence-verify-")
            .tempdir()
            .map_err(|e| Error::io("create a download directory", std::env::temp_dir(), e))?;
        // Read again now that it is ours: a prune may have removed it since the listing.
        let manifest_path = download.path().join("manifest.json");
        if store
            .download(
                &format!("{key}/manifest.json"),
                &manifest_path,
                crate::files::Access::PRIVATE,
            )
            .is_err()
        {
            continue;
        }
        let verified = read_manifest(download.path())
            .ok()
            .and_then(|m| m.verification)
            .is_some_and(|v| v["verified"] == true);
        if verified && given.is_none() {
            continue;
        }
        let dir = download.path().to_path_buf();
        let held = Held::Remote {
            store: store.clone(),
            key,
            _lock: lock,
            _download: download,
        };
        return Ok((Choice::Backup(dir, held), warnings));
    }
    let reason = match listing.backups.last() {
        _ if busy > 0 => format!(
            "nothing to verify: {busy} unverified backup(s) are being verified by other runs"
        ),
        Some(newest) => format!(
            "nothing to verify: every matching backup is verified, the newest is {}; give backup: <s3 URL> to re-verify one",
            newest.path.display()
        ),
        None => format!(
            "nothing to verify: no complete backup in {} matches",
            repository.url()
        ),
    };
    Ok((Choice::Nothing(reason), warnings))
}

/// Downloads every file of a chosen remote backup beside its manifest. A file whose bytes
/// differ from the manifest's sha256 is kept as downloaded: the verification's checksum step
/// names it (a verdict, not an error).
pub(super) fn download_files(
    store: &S3Store,
    key: &str,
    dir: &Path,
    manifest: &Manifest,
) -> Result<()> {
    for file in &manifest.files {
        let to = dir.join(&file.path);
        if let Some(parent) = to.parent() {
            crate::files::Access::PRIVATE.create_dir_all(parent)?;
        }
        store.download(
            &format!("{key}/{}", file.path),
            &to,
            crate::files::Access::PRIVATE,
        )?;
    }
    Ok(())
}
