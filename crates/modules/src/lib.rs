//! dbcadence-modules: the Ansible binary modules of the `dbcadence.maintenance` collection.
//!
//! Each module (`src/db_*.rs`) declares its documentation and makes one call into
//! dbcadence-core; dbcadence-protocol does the rest (arguments, check mode, secrets, JSON).
//! Two ways to build them: one binary per module (`src/bin/db_*.rs`, the development build
//! and the docs), and one multi-call binary for all of them (`dbcadence-modules`, what the
//! shipped collection holds: 10 modules share one copy of the core, and Ansible's module
//! cache copies it to a host once). This library also holds the little glue they share.

pub mod db_audit;
pub mod db_backup;
pub mod db_change;
pub mod db_compliance;
pub mod db_inventory;
pub mod db_logs;
pub mod db_patch;
pub mod db_restore;
pub mod db_tune;
pub mod db_verify;

use dbcadence_core::run::Done;
use dbcadence_protocol::docs::options_for;
use dbcadence_protocol::{Diff, Entry, Fragment, Report, entry};

/// Every module, for the multi-call binary.
pub const ALL: &[Entry] = &[
    entry::<db_audit::DbAudit>(),
    entry::<db_backup::DbBackup>(),
    entry::<db_change::DbChange>(),
    entry::<db_compliance::DbCompliance>(),
    entry::<db_inventory::DbInventory>(),
    entry::<db_logs::DbLogs>(),
    entry::<db_patch::DbPatch>(),
    entry::<db_restore::DbRestore>(),
    entry::<db_tune::DbTune>(),
    entry::<db_verify::DbVerify>(),
];

/// The connection options every module that reaches a server takes (doc fragment).
pub const CONNECTION: Fragment = Fragment {
    name: "dbcadence.maintenance.connection",
    options: || options_for::<dbcadence_core::connection::ConnectionArgs>(),
};

/// Where a run is recorded: ledger and metrics options every module takes (doc fragment).
pub const LEDGER: Fragment = Fragment {
    name: "dbcadence.maintenance.ledger",
    options: || options_for::<dbcadence_core::run::RunOptions>(),
};

/// Ansible's result for what a core operation did: the one conversion every module uses.
pub fn report<T>(done: Done<T>) -> Report<T> {
    Report {
        changed: done.changed,
        msg: done.msg,
        diff: done.diff.map(|change| Diff {
            before: change.before,
            after: change.after,
            before_header: format!("{} (before)", change.what),
            after_header: format!("{} (after)", change.what),
        }),
        warnings: done.warnings,
        output: done.output,
    }
}

/// The error of an operation that ran and said no (a fix failed, a backup is not verified):
/// the task fails, and its result still carries what the operation found.
#[derive(Debug)]
pub enum Failed<T> {
    /// The operation could not run.
    Core(dbcadence_core::Error),
    /// It ran; `msg` says why the task fails, `output` what it found and did.
    Said { msg: String, output: Box<T> },
}

impl<T: std::fmt::Debug> std::fmt::Display for Failed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Core(e) => e.fmt(f),
            Failed::Said { msg, .. } => f.write_str(msg),
        }
    }
}

impl<T: std::fmt::Debug> std::error::Error for Failed<T> {}

impl<T: serde::Serialize> Failed<T> {
    /// The result fields kept with the failure: the operation's output, when it ran.
    pub fn fields(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            Failed::Said { output, .. } => match serde_json::to_value(output) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            },
            Failed::Core(_) => serde_json::Map::new(),
        }
    }
}
