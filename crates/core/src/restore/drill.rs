//! The throwaway server of a drill without a target: a lab server of the backup's engine, in a
//! private directory under /tmp, stopped and deleted when the drill ends.

use crate::connection::{ConnectionArgs, EngineKind};
use crate::lab::{self, LabRequest};
use crate::{Error, Result};

pub(super) struct Scratch {
    pub(super) connection: ConnectionArgs,
    /// Taken by `stop`; a drill that fails half-way stops the server on drop.
    dir: Option<tempfile::TempDir>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = lab::down(dir.path(), true);
        }
    }
}

impl Scratch {
    pub(super) fn start(engine: EngineKind) -> Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("dbc-drill.")
            .tempdir_in("/tmp")
            .map_err(|e| Error::io("create the drill directory", "/tmp", e))?;
        let lab = match lab::up(&LabRequest::scratch(dir.path(), engine)) {
            Ok(lab) => lab,
            Err(e) => {
                let _ = lab::down(dir.path(), true);
                return Err(e);
            }
        };
        Ok(Scratch {
            connection: lab.instances[0].connection()?,
            dir: Some(dir),
        })
    }

    /// Stops and deletes the server; a warning naming what is left when that fails.
    pub(super) fn stop(mut self) -> Option<String> {
        let dir = self.dir.take()?;
        lab::down(dir.path(), true).err().map(|e| {
            format!(
                "the drill's server in '{}' could not be removed ({e}); stop it with: dbcadence lab down --dir '{}' --purge",
                dir.path().display(),
                dir.path().display()
            )
        })
    }
}
