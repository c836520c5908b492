//! A restored copy of a database for other tasks to work on (db_tune's rehearsal): the newest
//! verified logical backup restored into a throwaway lab server, removed when dropped.

use std::path::Path;

use super::choose::read_manifest;
use super::restore::{Scratch, restore};
use super::*;
use crate::backup::BackupMethod;
use crate::connection::ConnectionArgs;
use crate::engine::{self, Engine};
use crate::{Error, Result};

/// A database restored from a backup into a throwaway server; the server goes away on drop.
pub struct RestoredCopy {
    /// Reaches the copy (login_db is the restored database).
    pub connection: ConnectionArgs,
    /// The backup it was restored from.
    pub backup: std::path::PathBuf,
    /// Seconds the restore took.
    pub restore_seconds: f64,
    scratch: Option<Scratch>,
}

impl Drop for RestoredCopy {
    fn drop(&mut self) {
        if let Some(scratch) = self.scratch.take() {
            let _ = scratch.close(None);
        }
    }
}

/// Restores the newest verified logical backup of `database` on `instance_id` into a
/// throwaway server of its engine.
pub fn restore_newest_verified(
    backup_dir: &Path,
    instance_id: &str,
    database: &str,
) -> Result<RestoredCopy> {
    let newest = crate::backup::list(backup_dir)?
        .into_iter()
        .filter(|b| b.verified && b.instance_id == instance_id && b.database == database)
        .max_by(|a, b| a.started_at.cmp(&b.started_at))
        .ok_or_else(|| {
            Error::invalid(
                "rehearsal",
                format!(
                    "no verified backup of '{database}' on '{instance_id}' under '{}'; back it up and verify it first (db_backup, db_verify)",
                    backup_dir.display()
                ),
            )
        })?;
    let manifest = read_manifest(&newest.path)?;
    if manifest.method != BackupMethod::Logical {
        return Err(Error::invalid(
            "rehearsal",
            "the newest verified backup is physical; a rehearsal restores a logical backup",
        ));
    }
    let request = VerifyRequest {
        backup_dir: backup_dir.to_path_buf(),
        ..VerifyRequest::default()
    };
    let scratch = Scratch::open(&request, &manifest)?;
    let mut copy = RestoredCopy {
        connection: scratch.connection.clone(),
        backup: newest.path.clone(),
        restore_seconds: 0.0,
        scratch: None,
    };
    copy.connection.login_db = Some(scratch.database.clone());
    let database_name = scratch.database.clone();
    copy.scratch = Some(scratch);
    let started = std::time::Instant::now();
    let mut engine: Box<dyn Engine> = engine::connect(&ConnectionArgs {
        login_db: None,
        ..copy.connection.clone()
    })?;
    engine.create_database(&database_name)?;
    let scratch = copy.scratch.as_ref().expect("set above");
    restore(&mut engine, scratch, &newest.path, &manifest, 2, None)?;
    copy.restore_seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    Ok(copy)
}
