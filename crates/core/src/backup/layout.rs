//! Where backups live and how they are found: `<backup_dir>/<instance_id>/<db>/<UTC
//! timestamp>/`, names percent-encoded; the manifest written last; leftovers of crashed runs
//! (`.partial-*`, `.deleting-*`) removed under the lock; listing by complete manifests only.

use std::io::Write;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::{BackupEntry, Manifest};
use super::stream::write_error;
use crate::connection::ConnectionArgs;
use crate::files::Access;
use crate::{Error, Result};

/// Directory name of a database: unsafe bytes percent-encoded, so that `we"ird; db` and
/// non-ASCII names map to one portable name each.
pub fn encode_name(name: &str) -> String {
    let mut out = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'_' | b'-')
            || (byte == b'.' && !out.is_empty())
        {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub(crate) fn default_instance_id(args: &ConnectionArgs) -> String {
    let engine = args.engine.map_or("db", |e| e.as_str());
    match &args.login_unix_socket {
        Some(socket) => format!("{engine}-socket-{}", encode_name(&socket.to_string_lossy())),
        None => format!(
            "{engine}-{}-{}",
            args.login_host.as_deref().unwrap_or("localhost"),
            args.port()
        ),
    }
}

/// Removes `.partial-*` and `.deleting-*` leftovers of crashed runs. Called with the lock
/// held, so none of them belongs to a running backup or prune.
pub(super) fn remove_partials(db_dir: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(db_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if (name.starts_with(".partial-") || name.starts_with(".deleting-"))
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            removed.push(name);
        }
    }
    removed
}

/// Writes manifest.json durably.
pub fn write_manifest(dir: &Path, manifest: &Manifest, access: Access) -> Result<()> {
    let path = dir.join("manifest.json");
    let bytes = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::invalid("manifest", e.to_string()))?;
    let mut f = access
        .create_file(&path)
        .map_err(|e| write_error(&path, e))?;
    f.write_all(&bytes).map_err(|e| write_error(&path, e))?;
    f.sync_all().map_err(|e| write_error(&path, e))
}

/// A directory in a database's backup folder that is not a usable backup: its manifest is
/// missing, unreadable or not complete. Never used as a backup, never deleted by retention,
/// always reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Damaged {
    pub path: PathBuf,
    pub reason: String,
}

/// What a scan of backup directories found.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Complete backups, oldest first.
    pub backups: Vec<BackupEntry>,
    pub damaged: Vec<Damaged>,
}

impl Damaged {
    /// Whether it lies in the directories of the given instance and database (any when None):
    /// a damaged backup has no readable manifest, so its place is all that names it.
    pub fn belongs_to(
        &self,
        backup_dir: &Path,
        instance_id: Option<&str>,
        database: Option<&str>,
    ) -> bool {
        let Ok(relative) = self.path.strip_prefix(backup_dir) else {
            return false;
        };
        let mut parts = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let (instance, db) = (parts.next(), parts.next());
        instance_id.is_none_or(|i| instance == Some(encode_name(i)))
            && database.is_none_or(|d| db == Some(encode_name(d)))
    }

    /// The warning shown for it in module results, the CLI and the ledger.
    pub fn warning(&self) -> String {
        format!(
            "'{}' is not a usable backup ({}); it is neither verified nor pruned: repair or remove it",
            self.path.display(),
            self.reason
        )
    }
}

/// Sub-directories of `dir` that are not hidden (partials, deletions and locks start with '.').
fn visible_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_type().is_ok_and(|t| t.is_dir())
                && !e.file_name().to_string_lossy().starts_with('.')
        })
        .map(|e| e.path())
        .collect()
}

/// Every backup directory under `backup_dir`: complete backups oldest first, and the damaged.
/// Partial directories are never listed.
pub fn scan(backup_dir: &Path) -> Listing {
    let mut listing = Listing::default();
    for instance in visible_dirs(backup_dir) {
        for db in visible_dirs(&instance) {
            let one = scan_database(&db);
            listing.backups.extend(one.backups);
            listing.damaged.extend(one.damaged);
        }
    }
    listing
        .backups
        .sort_by(|a, b| a.started_at.cmp(&b.started_at));
    listing
}

/// A complete manifest from its bytes, or why it is not one (a damaged backup's reason).
pub(crate) fn complete_manifest(bytes: &[u8]) -> std::result::Result<Manifest, String> {
    let manifest = serde_json::from_slice::<Manifest>(bytes)
        .map_err(|e| format!("manifest.json is not a manifest: {e}"))?;
    if manifest.status == "complete" {
        Ok(manifest)
    } else {
        Err(format!("manifest status is '{}'", manifest.status))
    }
}

impl BackupEntry {
    /// The listing entry of a complete backup at `path` (a directory or an s3:// URL).
    pub(crate) fn of(path: PathBuf, manifest: Manifest) -> BackupEntry {
        BackupEntry {
            bytes: manifest.files.iter().map(|f| f.bytes).sum(),
            verified: manifest
                .verification
                .as_ref()
                .is_some_and(|v| v["verified"] == true),
            path,
            instance_id: manifest.instance_id,
            database: manifest.database,
            started_at: manifest.started_at,
        }
    }
}

/// The backups of one database directory (retention reads them under the database lock).
pub(crate) fn scan_database(db_dir: &Path) -> Listing {
    let mut listing = Listing::default();
    for backup in visible_dirs(db_dir) {
        let manifest = std::fs::read(backup.join("manifest.json"))
            .map_err(|e| format!("manifest.json: {e}"))
            .and_then(|bytes| complete_manifest(&bytes));
        match manifest {
            Ok(manifest) => listing.backups.push(BackupEntry::of(backup, manifest)),
            Err(reason) => listing.damaged.push(Damaged {
                path: backup,
                reason,
            }),
        }
    }
    listing
        .backups
        .sort_by(|a, b| a.started_at.cmp(&b.started_at));
    listing
}

/// Every complete backup under `backup_dir`, oldest first. Partial directories and directories
/// without a complete manifest are never listed ([`scan`] names those).
pub fn list(backup_dir: &Path) -> Result<Vec<BackupEntry>> {
    Ok(scan(backup_dir).backups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_portable_directory_names() {
        assert_eq!(encode_name("app"), "app");
        assert_eq!(encode_name("we\"ird; db"), "we%22ird%3B%20db");
        assert_eq!(encode_name("données"), "donn%C3%A9es");
        assert_eq!(encode_name(".hidden"), "%2Ehidden");
        assert_ne!(encode_name("a b"), encode_name("a_b"));
    }
}
