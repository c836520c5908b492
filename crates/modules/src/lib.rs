//! dbcadence-modules: the Ansible binary modules of the `dbcadence.maintenance` collection.
//!
//! Each binary in `src/bin/` declares its documentation and makes one call into
//! dbcadence-core; dbcadence-protocol does the rest (arguments, check mode, secrets, JSON).
//! This library holds the little glue they share.

use dbcadence_core::run::Done;
use dbcadence_protocol::docs::options_for;
use dbcadence_protocol::{Diff, Fragment, Report};

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
