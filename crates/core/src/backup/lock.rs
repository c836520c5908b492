//! Locks of one database's backups. Backup and prune take the database lock (`.lock` in the
//! database directory); a verification holds the lock of the one backup it verifies, which a
//! prune never deletes while it is held.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::files::Access;
use crate::{Error, Result};

/// Holds the per-database lock; released on drop.
pub(crate) struct DbLock(File);

impl Drop for DbLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Takes the lock of one database's backups (shared by backup and prune). A new lock file
/// gets `access`.
pub(crate) fn lock_database(
    db_dir: &Path,
    timeout: Duration,
    what: &str,
    access: Access,
) -> Result<DbLock> {
    let path = db_dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(access.file_mode())
        .open(&path)
        .map_err(|e| Error::io("open the backup lock", &path, e))?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(DbLock(file)),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Invalid {
                    what: "backup".into(),
                    detail: format!(
                        "another backup of {what} is running (lock '{}'), still after {}s; try again later or raise lock_timeout",
                        path.display(),
                        timeout.as_secs()
                    ),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("take the backup lock", &path, e));
            }
        }
    }
}

/// Held while one backup is verified: a second verification skips it and a prune keeps it.
/// The lock file sits beside the backup (`.verifying-<name>`), not inside it.
pub(crate) struct BackupLock {
    file: File,
    path: PathBuf,
}

impl BackupLock {
    /// Removes the lock file while still holding it (a prune that deleted the backup).
    pub(crate) fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for BackupLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn backup_lock_path(backup: &Path) -> PathBuf {
    let name = backup
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    backup.with_file_name(format!(".verifying-{name}"))
}

/// Takes the lock of one backup if nobody holds it; None when another run does.
pub(crate) fn try_lock_backup(backup: &Path) -> Result<Option<BackupLock>> {
    let path = backup_lock_path(backup);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("open the verification lock", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(BackupLock { file, path })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::io("take the verification lock", &path, e))
        }
    }
}
