//! Writing files durably and with the right owner and mode.
//!
//! - [`write_atomically`]: temp file, fsync, rename, then fsync of the directory, so that a
//!   crash leaves the old file or the new one, never a torn or vanished one.
//! - [`Access`]: who may read what a backup writes. Private to its owner (0600/0700) unless
//!   the user names an operators' group, which then gets read access (0640/0750).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{Error, Result};

/// Modes of files that others may read: metrics for node_exporter, unit files, reports.
pub const PUBLIC_FILE: u32 = 0o644;
/// The ledger: the owner writes, an operators' group may read.
pub const LEDGER_FILE: u32 = 0o640;

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync the directory", dir, e))
}

/// The directory a path lives in ("." for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces `path` with `bytes` atomically and durably, with `mode`.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let io = |e| Error::io("write", path, e);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given at creation is masked by the umask; set it as asked.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    sync_dir(parent_of(path))
}

/// Who may read what a backup writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Group given read access, if any.
    group: Option<u32>,
}

impl Access {
    /// Owner only.
    pub const PRIVATE: Access = Access { group: None };

    /// Owner only, or owner plus read access for the named group.
    pub fn for_group(group: Option<&str>) -> Result<Access> {
        let Some(name) = group else {
            return Ok(Access::PRIVATE);
        };
        let gid = group_id(name).ok_or_else(|| {
            Error::invalid(
                "backup_group",
                format!("no local group named '{name}'; create it (groupadd) or leave backup_group unset"),
            )
        })?;
        Ok(Access { group: Some(gid) })
    }

    pub fn file_mode(&self) -> u32 {
        if self.group.is_some() { 0o640 } else { 0o600 }
    }

    pub fn dir_mode(&self) -> u32 {
        if self.group.is_some() { 0o750 } else { 0o700 }
    }

    /// Gives an existing file or directory this access (mode and group).
    pub fn apply(&self, path: &Path) -> Result<()> {
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io("read", path, e))?;
        let mode = if meta.is_dir() {
            self.dir_mode()
        } else {
            self.file_mode()
        };
        if let Some(gid) = self.group {
            rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|e| Error::io("set the group of", path, e.into()))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("set permissions on", path, e))
    }

    /// Applies this access to `path` and everything below it (files a child tool wrote).
    pub fn apply_recursive(&self, path: &Path) -> Result<()> {
        self.apply(path)?;
        if path.is_dir() {
            for entry in std::fs::read_dir(path).map_err(|e| Error::io("read", path, e))? {
                let entry = entry.map_err(|e| Error::io("read", path, e))?;
                self.apply_recursive(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Creates a directory (and missing parents) with this access.
    pub fn create_dir_all(&self, path: &Path) -> Result<()> {
        if path.is_dir() {
            return Ok(());
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new()
            .mode(self.dir_mode())
            .create(path)
        {
            Ok(()) => self.apply(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io("create the directory", path, e)),
        }
    }

    /// Creates one directory (its parent must exist) with this access.
    pub fn create_dir(&self, path: &Path) -> Result<()> {
        std::fs::DirBuilder::new()
            .mode(self.dir_mode())
            .create(path)
            .map_err(|e| Error::io("create the directory", path, e))?;
        self.apply(path)
    }

    /// Creates (or truncates) a file for writing with this access.
    pub fn create_file(&self, path: &Path) -> std::io::Result<File> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(self.file_mode())
            .open(path)?;
        if let Some(gid) = self.group {
            rustix::fs::fchown(&file, None, Some(rustix::fs::Gid::from_raw(gid)))?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(self.file_mode()))?;
        Ok(file)
    }
}

/// A local group's id, from /etc/group.
fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_set_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomically(&path, b"one", 0o600).unwrap();
        write_atomically(&path, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn private_access_is_owner_only_and_a_group_reads() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        Access::PRIVATE.create_dir_all(&nested).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        let file = nested.join("f");
        Access::PRIVATE.create_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert!(Access::for_group(Some("no-such-group-here")).is_err());
        let root_group = Access::for_group(Some("root")).unwrap();
        root_group.apply(&file).unwrap();
        assert_eq!(mode(&file), 0o640);
    }
}
