//! Which backup a verification takes: the given one, or the newest unverified that matches
//! and no other verification holds (its lock is taken here); damaged directories named.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;
use crate::backup::lock::{self, BackupLock};
use crate::backup::{self, Manifest};
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

/// What a request asks to verify.
pub(super) enum Choice {
    /// This backup directory, locked for this verification (a prune keeps it, a second
    /// verification skips it).
    Backup(PathBuf, BackupLock),
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
