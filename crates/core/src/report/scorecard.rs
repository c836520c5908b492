//! The success-criteria scorecard: each criterion with its goal, value and verdict (no data
//! when the ledger holds nothing to measure it with).

use super::*;
use crate::compliance::Tally;

pub(super) fn scorecard(
    g: &Gathered,
    fleet: &Tally,
    period: &Period,
    goals: &Goals,
) -> Vec<Criterion> {
    let days = period.days();
    let mut out = Vec::new();
    let ratio = fleet.ratio();
    out.push(Criterion {
        id: CriterionId::Compliance,
        name: CriterionId::Compliance.name().into(),
        goal: format!(">= {:.0}%", goals.compliance * 100.0),
        target: goals.compliance,
        value: ratio.map(|r| round(r, 4)),
        met: ratio.map(|r| r >= goals.compliance),
        detail: format!(
            "{} of {} due occurrences on time ({} late, {} missed, {} failed, {} out of window)",
            fleet.on_time,
            fleet.due(),
            fleet.late,
            fleet.missed,
            fleet.failed,
            fleet.out_of_window
        ),
    });
    let incidents = g.incidents + g.detected_outages;
    let per_quarter = f64::from(incidents) * 91.0 / days;
    out.push(Criterion {
        id: CriterionId::Incidents,
        name: CriterionId::Incidents.name().into(),
        goal: format!("<= {} per quarter", goals.incidents_per_quarter),
        target: goals.incidents_per_quarter,
        value: Some(round(per_quarter, 2)),
        met: Some(per_quarter <= goals.incidents_per_quarter),
        detail: format!(
            "{} recorded (dbcadence incident record) + {} detected by inventory availability checks in {:.0} days",
            g.incidents, g.detected_outages, days
        ),
    });
    let backups = g.backups_in_period.len();
    let verified = g
        .backups_in_period
        .iter()
        .filter(|p| g.verified_backups.contains(*p))
        .count();
    let share = (backups > 0).then(|| verified as f64 / backups as f64);
    out.push(Criterion {
        id: CriterionId::Verified,
        name: CriterionId::Verified.name().into(),
        goal: format!("{:.0}%", goals.verified_share * 100.0),
        target: goals.verified_share,
        value: share.map(|s| round(s, 4)),
        met: share.map(|s| s >= goals.verified_share),
        detail: if backups == 0 {
            "no successful backup in the period".into()
        } else {
            format!("{verified} of {backups} backups of the period verified by a restore")
        },
    });
    let per_30 = f64::from(g.alert_errors) * 30.0 / days;
    out.push(Criterion {
        id: CriterionId::Alerts,
        name: CriterionId::Alerts.name().into(),
        goal: format!("< {} per 30 days", goals.alert_errors_per_30_days),
        target: goals.alert_errors_per_30_days,
        value: Some(round(per_30, 2)),
        met: Some(per_30 < goals.alert_errors_per_30_days),
        detail: if g.alert_feedback == 0 {
            "no alert feedback recorded in the period (dbcadence alert feedback)".into()
        } else {
            format!(
                "{} wrong of {} alerts with feedback",
                g.alert_errors, g.alert_feedback
            )
        },
    });
    let reduction = (g.tune_before > 0.0).then(|| 1.0 - g.tune_after / g.tune_before);
    out.push(Criterion {
        id: CriterionId::Tuning,
        name: CriterionId::Tuning.name().into(),
        goal: format!(">= {:.0}%", goals.tune_reduction * 100.0),
        target: goals.tune_reduction,
        value: reduction.map(|r| round(r, 4)),
        met: reduction.map(|r| r >= goals.tune_reduction),
        detail: if g.tune_runs == 0 {
            "no tune run with measured query times in the period".into()
        } else {
            format!(
                "{} tune runs: {:.0} ms before, {:.0} ms after",
                g.tune_runs, g.tune_before, g.tune_after
            )
        },
    });
    out
}
