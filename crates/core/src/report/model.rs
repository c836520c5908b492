//! The report's types: goals, period, shares, rows per database and task, days, durations,
//! heat map, scorecard criteria, next due times, and the report itself.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::compliance::{self, Tally};
use crate::task::Task;
use crate::{Error, Result};

/// The goals of the success-criteria scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Goals {
    /// Share of due maintenance done on time.
    #[serde(default = "default_compliance")]
    pub compliance: f64,
    /// Unplanned downtime incidents per quarter, at most.
    #[serde(default = "default_incidents")]
    pub incidents_per_quarter: f64,
    /// Share of backups verified by a restore.
    #[serde(default = "default_verified")]
    pub verified_share: f64,
    /// Alert false positives plus false negatives per 30 days, fewer than.
    #[serde(default = "default_alert_errors")]
    pub alert_errors_per_30_days: f64,
    /// Query-time reduction after tuning, at least.
    #[serde(default = "default_tune_reduction")]
    pub tune_reduction: f64,
}

pub(super) fn default_compliance() -> f64 {
    0.95
}
pub(super) fn default_incidents() -> f64 {
    5.0
}
pub(super) fn default_verified() -> f64 {
    1.0
}
pub(super) fn default_alert_errors() -> f64 {
    10.0
}
pub(super) fn default_tune_reduction() -> f64 {
    0.20
}

impl Default for Goals {
    fn default() -> Self {
        Goals {
            compliance: default_compliance(),
            incidents_per_quarter: default_incidents(),
            verified_share: default_verified(),
            alert_errors_per_30_days: default_alert_errors(),
            tune_reduction: default_tune_reduction(),
        }
    }
}

/// The period a report covers.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Occurrences whose deadline is after `now` are pending, not missed.
    pub now: Timestamp,
}

impl Period {
    /// The period asked for: from `from` (else `days` before `to`) to `to` (else `now`),
    /// both as dates or RFC 3339 times.
    pub fn resolve(
        days: u32,
        from: Option<&str>,
        to: Option<&str>,
        now: Timestamp,
    ) -> Result<Self> {
        let to = to.map(parse_time).transpose()?.unwrap_or(now);
        let from = match from.map(parse_time).transpose()? {
            Some(from) => from,
            None => to - SignedDuration::from_hours(24 * i64::from(days.max(1))),
        };
        if from >= to {
            return Err(Error::invalid(
                "period",
                "from must be before to; give a later to or an earlier from",
            ));
        }
        Ok(Period { from, to, now })
    }

    pub(super) fn days(&self) -> f64 {
        (self.to.duration_since(self.from).as_secs_f64() / 86_400.0).max(1.0 / 24.0)
    }
}

/// Parses `2026-11-01`, `2026-11-01T06:00:00Z` or `2026-11-01T06:00:00+01:00`.
pub fn parse_time(text: &str) -> Result<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| {
            Error::invalid(
                "time",
                format!("'{text}' is neither a date (2026-11-01) nor an RFC 3339 time"),
            )
        })
}

/// Counts and the share on time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Share {
    #[serde(flatten)]
    pub tally: Tally,
    /// Occurrences due in the period (on time + late + missed + failed + out of window).
    pub due: u32,
    /// on_time / due; null ("no data") when nothing was due.
    pub ratio: Option<f64>,
}

impl Share {
    pub(super) fn of(tally: &Tally) -> Self {
        Share {
            tally: tally.clone(),
            due: tally.due(),
            ratio: tally.ratio().map(|r| round(r, 4)),
        }
    }

    /// "45.5% (5 of 11 due occurrences on time)", or "no data" when nothing was due.
    pub fn headline(&self) -> String {
        match self.ratio {
            Some(ratio) => format!(
                "{:.1}% ({} of {} due occurrences on time)",
                ratio * 100.0,
                self.tally.on_time,
                self.due
            ),
            None => "no data (nothing was due in the period)".into(),
        }
    }

    /// For sorting worst first: no data sorts after every real ratio.
    pub(super) fn sort_key(&self) -> f64 {
        self.ratio.unwrap_or(f64::INFINITY)
    }
}

/// One task of one database (or instance, or the fleet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskCompliance {
    /// The task.
    pub task: Task,
    /// Its schedule: cron expression or interval.
    pub schedule: String,
    #[serde(flatten)]
    pub share: Share,
    /// Last successful run, if any.
    pub last_success: Option<String>,
    /// The occurrences that were not on time (newest first, at most 10).
    pub problems: Vec<compliance::Occurrence>,
}

/// One database (or instance for per-instance tasks, `fleet` for the inventory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatabaseCompliance {
    /// Instance id.
    pub instance: String,
    /// Database (none for per-instance and fleet-wide tasks).
    pub db: Option<String>,
    /// Environment.
    pub env: String,
    /// The schedule template it follows.
    pub template: String,
    /// Owes maintenance from this moment (first seen by an inventory inside the period).
    pub since: Option<String>,
    #[serde(flatten)]
    pub share: Share,
    /// Per task.
    pub tasks: Vec<TaskCompliance>,
    /// RPO and RTO (databases only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// How much a database would lose and how long getting it back takes (see report/recovery.rs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Recovery {
    /// Age of the newest backup a restore has proven, at the end of the period (seconds).
    pub rpo_seconds: Option<f64>,
    /// The worst RPO during the period.
    pub worst_rpo_seconds: Option<f64>,
    /// When the newest proven backup started.
    pub newest_proven_backup: Option<String>,
    /// The latest measured restore (a drill, or a verification's restore), in seconds.
    pub rto_seconds: Option<f64>,
    /// When it was measured.
    pub rto_measured_at: Option<String>,
    /// The template's rpo.
    pub rpo_target_seconds: Option<f64>,
    /// The template's rto.
    pub rto_target_seconds: Option<f64>,
    /// The worst RPO of the period within the target (none without a target; false without
    /// any proven backup).
    pub rpo_met: Option<bool>,
    /// The measured restore within the target (none without a target or a measurement).
    pub rto_met: Option<bool>,
}

/// One day of the period (by due time, UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Day {
    /// The day (YYYY-MM-DD, UTC).
    pub date: String,
    #[serde(flatten)]
    pub share: Share,
}

/// Durations of the real runs of one task in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Durations {
    /// The task.
    pub task: String,
    /// Real runs in the period.
    pub runs: usize,
    /// Median wall time.
    pub median_seconds: f64,
    /// 95th percentile wall time.
    pub p95_seconds: f64,
    /// Longest run.
    pub max_seconds: f64,
}

/// A heat-map row: one database's ratio per column of `heatmap_days` days (None when nothing
/// was due in it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeatRow {
    /// instance/db.
    pub name: String,
    /// Its ratio over the whole period; null when nothing was due.
    pub ratio: Option<f64>,
    /// Ratio per column; null when nothing was due in it.
    pub days: Vec<Option<f64>>,
}

/// Heat-map columns stay readable: at most this many, each covering several days when the
/// period is long.
pub(super) const HEATMAP_COLUMNS: usize = 120;

/// One success criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Criterion {
    /// Which criterion: its one machine name (also the metric label).
    pub id: CriterionId,
    /// The criterion, for people.
    pub name: String,
    /// Its goal, e.g. ">= 95%".
    pub goal: String,
    /// The goal as a number: a share (0.95) for percentages, a count otherwise.
    pub target: f64,
    /// The measured value; None when the ledger holds nothing to measure it with.
    pub value: Option<f64>,
    /// Met, not met, or unknown (no data).
    pub met: Option<bool>,
    /// How the value was measured, in one sentence.
    pub detail: String,
}

/// The success criteria of the scorecard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CriterionId {
    /// Maintenance done on schedule.
    Compliance,
    /// Unplanned downtime incidents per quarter.
    Incidents,
    /// Backups verified by a restore.
    Verified,
    /// Alert false positives and negatives.
    Alerts,
    /// Query-time reduction after tuning.
    Tuning,
}

impl CriterionId {
    pub const ALL: [CriterionId; 5] = [
        CriterionId::Compliance,
        CriterionId::Incidents,
        CriterionId::Verified,
        CriterionId::Alerts,
        CriterionId::Tuning,
    ];

    /// Whether the criterion measures a share (shown as a percentage) rather than a count.
    pub fn is_share(self) -> bool {
        matches!(
            self,
            CriterionId::Compliance | CriterionId::Verified | CriterionId::Tuning
        )
    }

    /// The one machine name (ledger, JSON, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            CriterionId::Compliance => "compliance",
            CriterionId::Incidents => "incidents",
            CriterionId::Verified => "verified",
            CriterionId::Alerts => "alerts",
            CriterionId::Tuning => "tuning",
        }
    }

    /// The name people read.
    pub fn name(self) -> &'static str {
        match self {
            CriterionId::Compliance => "maintenance on schedule",
            CriterionId::Incidents => "unplanned downtime incidents",
            CriterionId::Verified => "backups verified by restore",
            CriterionId::Alerts => "alert false positives + negatives",
            CriterionId::Tuning => "query-time reduction after tuning",
        }
    }
}

/// The next due time of one task of one template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NextDue {
    /// The template.
    pub template: String,
    /// The task.
    pub task: Task,
    /// Its schedule: cron expression (and zone) or interval.
    pub schedule: String,
    /// The next due time after the report was made (RFC 3339); null if never again.
    pub at: Option<String>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// Start of the period (RFC 3339).
    pub from: String,
    /// End of the period (RFC 3339).
    pub to: String,
    /// When the report was made.
    pub generated_at: String,
    /// The ledger read (file path or table).
    pub ledger: String,
    /// Ledger records read.
    pub records: usize,
    /// Ledger lines that could not be read (a torn last line after a crash).
    pub unreadable_lines: Vec<usize>,
    /// The whole fleet.
    pub fleet: Share,
    /// Per environment.
    pub by_env: BTreeMap<String, Share>,
    /// Per task.
    pub by_task: BTreeMap<String, Share>,
    /// Worst first.
    pub databases: Vec<DatabaseCompliance>,
    /// Databases in the inventory that no template applies to.
    pub unscheduled: Vec<String>,
    /// Per day of the period.
    pub daily: Vec<Day>,
    /// Run durations per task in the period.
    pub durations: Vec<Durations>,
    /// The worst databases (at most 40), by columns of `heatmap_days` days.
    pub heatmap: Vec<HeatRow>,
    /// Days per heat-map column.
    pub heatmap_days: usize,
    /// The success criteria with their goals, values and verdicts.
    pub scorecard: Vec<Criterion>,
    /// When each template task is next due: when the next proof will arrive.
    #[serde(default)]
    pub next_due: Vec<NextDue>,
    /// The last security audit of each server in the period.
    #[serde(default)]
    pub audits: Vec<AuditSummary>,
    /// The change records that moved in the period, as they stand at its end.
    #[serde(default)]
    pub changes: Vec<ChangeSummary>,
    /// What the reader should know (unreadable lines, unknown tasks...).
    pub warnings: Vec<String>,
}

/// A change record as the report lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeSummary {
    /// The change's id.
    pub id: String,
    /// What it does.
    pub summary: String,
    /// Where it stood at the end of the period.
    pub state: String,
    /// Its window, RFC 3339.
    pub window_start: String,
    /// See window_start.
    pub window_end: String,
    /// Hosts it affects.
    pub hosts: Vec<String>,
    /// Who requested it.
    pub requester: String,
    /// Who approved it.
    pub approver: Option<String>,
}

/// The last security audit of one server (db_audit, mode checks) in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditSummary {
    /// The server (instance id).
    pub instance: String,
    /// When it ran.
    pub at: String,
    /// Unsuppressed findings by severity.
    pub by_severity: BTreeMap<String, usize>,
    /// The unsuppressed findings, `check:object`.
    pub findings: Vec<String>,
}
