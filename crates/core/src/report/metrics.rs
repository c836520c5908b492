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

/// The metric families a report owns: replaced whole on every write, so that a database
/// that left the fleet leaves the metrics too.
pub const REPORT_METRICS: &[&str] = &[
    "dbcadence_compliance_ratio",
    "dbcadence_schedule_max_age_seconds",
    "dbcadence_scorecard_met",
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
