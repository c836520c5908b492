//! Where backups live and how they are found: `<backup_dir>/<instance_id>/<db>/<UTC
//! timestamp>/`, names percent-encoded; the manifest written last; leftovers of crashed runs
//! (`.partial-*`, `.deleting-*`) removed under the lock; listing by complete manifests only.

use std::io::Write;
use std::path::{Path, PathBuf};

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

pub(super) fn default_instance_id(args: &ConnectionArgs) -> String {
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

/// Every complete backup under `backup_dir`, oldest first. Partial directories and directories
/// without a complete manifest are never listed.
pub fn list(backup_dir: &Path) -> Result<Vec<BackupEntry>> {
    let mut entries = Vec::new();
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_type().is_ok_and(|t| t.is_dir())
                    && !e.file_name().to_string_lossy().starts_with('.')
            })
            .map(|e| e.path())
            .collect()
    };
    for instance in dirs(backup_dir) {
        for db in dirs(&instance) {
            for backup in dirs(&db) {
                let Ok(bytes) = std::fs::read(backup.join("manifest.json")) else {
                    continue;
                };
                let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
                    continue;
                };
                if manifest.status != "complete" {
                    continue;
                }
                entries.push(BackupEntry {
                    bytes: manifest.files.iter().map(|f| f.bytes).sum(),
                    verified: manifest
                        .verification
                        .as_ref()
                        .is_some_and(|v| v["verified"] == true),
                    path: backup,
                    instance_id: manifest.instance_id,
                    database: manifest.database,
                    started_at: manifest.started_at,
                });
            }
        }
    }
    entries.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    Ok(entries)
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
