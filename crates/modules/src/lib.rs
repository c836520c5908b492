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
