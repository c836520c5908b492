//! dbcadence-modules: the Ansible binary modules of the `dbcadence.maintenance` collection.
//!
//! Each binary in `src/bin/` declares its documentation and makes one call into
//! dbcadence-core; dbcadence-protocol does the rest (arguments, check mode, secrets, JSON).
//! This library holds the little glue they share.

use dbcadence_protocol::Diff;

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
