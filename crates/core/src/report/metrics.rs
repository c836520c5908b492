//! The report's Prometheus metrics: compliance ratios per scope and each binding's longest
//! allowed gap, replaced whole on every write.

use jiff::Timestamp;

use super::*;
use crate::Result;
use crate::compliance::{self};
use crate::metrics::Sample;
use crate::schedule::ScheduleFile;

/// Metrics from a report: compliance ratios per scope (fleet, env, task, database) and, per
/// binding, the longest a task may go without success (for DbcadenceMaintenanceOverdue).
pub fn samples(report: &Report, schedule: &ScheduleFile, now: Timestamp) -> Vec<Sample> {
    const RATIO: &str = "dbcadence_compliance_ratio";
    const HELP: &str = "Share of due maintenance done on time in the report's period.";
    // A scope with nothing due has no ratio: its series is left out (absent = no data), never
    // written as a green 1.0.
    let mut out = Vec::new();
    let mut ratio = |labels: &[(&str, &str)], share: &Share| {
        if let Some(value) = share.ratio {
            out.push(Sample::gauge(RATIO, HELP, labels, value));
        }
    };
    ratio(&[("scope", "fleet")], &report.fleet);
    for (env, share) in &report.by_env {
        ratio(&[("scope", "env"), ("env", env)], share);
    }
    for (task, share) in &report.by_task {
        ratio(&[("scope", "task"), ("task", task)], share);
    }
    for row in &report.databases {
        let db = row.db.as_deref().unwrap_or("");
        ratio(
            &[
                ("scope", "database"),
                ("instance", &row.instance),
                ("db", db),
            ],
            &row.share,
        );
    }
    for row in &report.databases {
        let Some(template) = schedule.templates.iter().find(|t| t.name == row.template) else {
            continue;
        };
        let db = row.db.as_deref().unwrap_or("");
        for task in &row.tasks {
            let Some(ts) = template.tasks.iter().find(|t| t.task == task.task) else {
                continue;
            };
            if let Ok(max_age) = compliance::max_age_seconds(ts, now) {
                out.push(Sample::gauge(
                    "dbcadence_schedule_max_age_seconds",
                    "Longest a task may go without success and stay on schedule (widest gap between due times plus grace).",
                    &[("task", task.task.as_str()), ("instance", &row.instance), ("db", db)],
                    max_age as f64,
                ));
            }
        }
    }
    recovery_samples(report, &mut out);
    for criterion in &report.scorecard {
        if let Some(met) = criterion.met {
            out.push(Sample::gauge(
                "dbcadence_scorecard_met",
                "Success criterion of the scorecard met (1) or not (0).",
                &[("criterion", criterion.id.as_str())],
                if met { 1.0 } else { 0.0 },
            ));
        }
    }
    out
}

/// RPO and RTO per database, and their targets (DbcadenceRpoBreached compares them). A
/// database without a proven backup has a target and no RPO series: the alert catches that
/// too.
fn recovery_samples(report: &Report, out: &mut Vec<Sample>) {
    for row in &report.databases {
        let (Some(db), Some(r)) = (row.db.as_deref(), &row.recovery) else {
            continue;
        };
        let labels = [("instance", row.instance.as_str()), ("db", db)];
        let series = [
            (
                "dbcadence_rpo_seconds",
                "Age of the newest backup a restore has proven, when the report was written.",
                r.rpo_seconds,
            ),
            (
                "dbcadence_rpo_target_seconds",
                "The schedule template's recovery point objective.",
                r.rpo_target_seconds,
            ),
            (
                "dbcadence_rto_seconds",
                "Duration of the latest measured restore (a drill or a verification).",
                r.rto_seconds,
            ),
            (
                "dbcadence_rto_target_seconds",
                "The schedule template's recovery time objective.",
                r.rto_target_seconds,
            ),
        ];
        for (name, help, value) in series {
            if let Some(value) = value {
                out.push(Sample::gauge(name, help, &labels, value));
            }
        }
        // The alert ages this one itself (time() - it), between two reports.
        if let Some(t) = r
            .newest_proven_backup
            .as_deref()
            .and_then(|t| parse_time(t).ok())
        {
            out.push(Sample::gauge(
                "dbcadence_recovery_point_timestamp_seconds",
                "Unix time the newest backup a restore has proven started: the point a restore gets back to.",
                &labels,
                t.as_second() as f64,
            ));
        }
    }
}

/// The metric families a report owns: replaced whole on every write, so that a database
/// that left the fleet leaves the metrics too.
pub const REPORT_METRICS: &[&str] = &[
    "dbcadence_compliance_ratio",
    "dbcadence_schedule_max_age_seconds",
    "dbcadence_scorecard_met",
    "dbcadence_recovery_point_timestamp_seconds",
    "dbcadence_rpo_seconds",
    "dbcadence_rpo_target_seconds",
    "dbcadence_rto_seconds",
    "dbcadence_rto_target_seconds",
];

/// Replaces the report's metric families with this report's samples.
pub fn write_metrics(
    metrics: &crate::metrics::Metrics,
    report: &Report,
    schedule: &ScheduleFile,
) -> Result<Vec<String>> {
    let now = parse_time(&report.generated_at).unwrap_or_else(|_| Timestamp::now());
    metrics.update_replacing(REPORT_METRICS, &samples(report, schedule, now))
}
