//! The tasks dbcadence runs and records: one enum, one string form each, shared by whoever
//! writes a ledger record (modules, CLI, timers), whoever reads one (report, compliance,
//! metrics) and schedules. A prune is its own task: it never counts as a backup.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A task, as schedules name it and ledger records carry it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Discover instances and databases.
    Inventory,
    /// Take a backup.
    Backup,
    /// Apply retention to backups (removes, never adds: not a backup).
    Prune,
    /// Prove a backup by restoring it.
    Verify,
    /// Copy verified backups to a second repository (db_backup action copy): not a backup.
    Copy,
    Tune,
    /// The gain observed on real traffic since a tune (db_tune action measure): evidence for
    /// the scorecard, never a tuning run.
    TuneMeasure,
    Logs,
    Audit,
    Patch,
    Restore,
    Change,
    /// A compliance report (db_compliance, dbcadence report --output).
    Compliance,
    /// An incident recorded by a person.
    Incident,
    /// Feedback on an alert recorded by a person.
    AlertFeedback,
}

/// What a task is run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One database of an instance.
    Database,
    /// One instance (server) as a whole.
    Instance,
    /// The whole fleet at once.
    Fleet,
}

impl Task {
    pub const ALL: [Task; 15] = [
        Task::Inventory,
        Task::Backup,
        Task::Prune,
        Task::Verify,
        Task::Copy,
        Task::Tune,
        Task::TuneMeasure,
        Task::Logs,
        Task::Audit,
        Task::Patch,
        Task::Restore,
        Task::Change,
        Task::Compliance,
        Task::Incident,
        Task::AlertFeedback,
    ];

    /// The one string form (ledger, metrics labels, schedules, reports).
    pub const fn as_str(self) -> &'static str {
        match self {
            Task::Inventory => "inventory",
            Task::Backup => "backup",
            Task::Prune => "prune",
            Task::Verify => "verify",
            Task::Copy => "copy",
            Task::Tune => "tune",
            Task::TuneMeasure => "tune_measure",
            Task::Logs => "logs",
            Task::Audit => "audit",
            Task::Patch => "patch",
            Task::Restore => "restore",
            Task::Change => "change",
            Task::Compliance => "compliance",
            Task::Incident => "incident",
            Task::AlertFeedback => "alert_feedback",
        }
    }

    pub fn parse(text: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.as_str() == text)
    }

    pub const fn scope(self) -> Scope {
        match self {
            Task::Backup
            | Task::Prune
            | Task::Verify
            | Task::Copy
            | Task::Tune
            | Task::TuneMeasure
            | Task::Restore => Scope::Database,
            Task::Logs | Task::Audit | Task::Patch | Task::Change => Scope::Instance,
            Task::Inventory | Task::Compliance | Task::Incident | Task::AlertFeedback => {
                Scope::Fleet
            }
        }
    }

    /// Whether a schedule may ask for it: records people make (incidents, feedback, change
    /// records), and measurements of another task's effect, are not scheduled.
    pub const fn schedulable(self) -> bool {
        !matches!(
            self,
            Task::Incident | Task::AlertFeedback | Task::TuneMeasure | Task::Change
        )
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_string_form_for_serde_display_and_parse() {
        for task in Task::ALL {
            let json = serde_json::to_string(&task).unwrap();
            assert_eq!(json, format!("\"{}\"", task.as_str()));
            assert_eq!(Task::parse(task.as_str()), Some(task));
            assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), task);
        }
        assert_eq!(Task::parse("backups"), None);
    }
}
