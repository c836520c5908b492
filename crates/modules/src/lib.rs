//! dbcadence-modules: the Ansible binary modules of the `dbcadence.maintenance` collection.
//!
//! Each binary in `src/bin/` declares its documentation and makes one call into
//! dbcadence-core; dbcadence-protocol does the rest (arguments, check mode, secrets, JSON).
//! This library holds the little glue they share.

use dbcadence_protocol::docs::options_for;
use dbcadence_protocol::{Diff, Fragment};

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

/// A diff for Ansible when both sides are known and differ.
pub fn diff(before: Option<String>, after: Option<String>, header: &str) -> Option<Diff> {
    match (before, after) {
        (Some(before), Some(after)) if before != after => Some(Diff {
            before,
            after,
            before_header: format!("{header} (before)"),
            after_header: format!("{header} (after)"),
        }),
        _ => None,
    }
}
