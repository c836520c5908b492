//! One file per group of commands: flags as clap structs and a function that calls the core
//! operation and prints its outcome for people.

mod audit;
mod backup;
mod change;
mod inventory;
mod lab;
mod logs;
mod patch;
mod restore;
mod schedule;
mod tune;

pub(crate) use audit::{AuditArgs, audit};
pub(crate) use backup::{
    BackupArgs, BackupsAction, PruneArgs, VerifyArgs, backup, backups, prune, verify,
};
pub(crate) use change::{ChangeCommand, change};
pub(crate) use inventory::{InventoryArgs, inventory};
pub(crate) use lab::{LabAction, lab};
pub(crate) use logs::{LogsArgs, logs};
pub(crate) use patch::{PatchArgs, patch};
pub(crate) use restore::{RestoreArgs, restore};
pub(crate) use schedule::{ScheduleAction, schedule};
pub(crate) use tune::{TuneArgs, tune};
