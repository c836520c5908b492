//! db_tune: find what slows a database down, with evidence; apply the fixes the policy allows,
//! each bounded by lock and statement timeouts; measure a workload before and after; record
//! it all in the ledger (the scorecard's query-time reduction reads `query_time_before_ms` and
//! `query_time_after_ms`).
//!
//! The engine finds and fixes (engine/<engine>/tune.rs, with the index advice both share in
//! advice.rs); this file decides what runs: the plan, the policy, the order, the measurement.

pub mod advice;
pub mod model;
pub mod observed;
pub mod rehearsal;
pub mod workload;

use std::time::{Duration, Instant};

use serde_json::json;

pub use model::*;

use crate::engine::{self, Engine, TuneLimits, TuneScope};
use crate::ledger::{Outcome, Target};
use crate::metrics::Sample;
use crate::run::{Change, Done, Recorder};
use crate::task::Task;
use crate::{Error, Result};

/// Runs db_tune. A plan (check mode or `action: plan`) changes nothing and is recorded as a
/// rehearsal; an apply records which fixes ran, failed or were not allowed, and the measured
/// gain. A fix that fails fails the run (after the others ran), with the report.
pub fn run(request: &TuneRequest, check_mode: bool) -> Result<Done<TuneReport>> {
    // A rehearsal changes only a restored copy: for the real server it is a plan.
    let planning = check_mode || request.action == TuneAction::Plan || request.rehearse;
    let target = Target::of(
        request.instance_id.as_ref(),
        &request.connection,
        Some(&request.database),
    );
    let instance = target.instance.clone();
    if request.action == TuneAction::Measure {
        return measure(request, &instance, target, check_mode);
    }
    let recorder = Recorder::start(Task::Tune, &request.run, planning)
        .hiding(request.connection.login_password.as_ref());
    let (report, snapshot) = match tune(request, &instance, planning) {
        Ok(done) => done,
        Err(e) => {
            recorder.fail(target, &e);
            return Err(e);
        }
    };
    let failed = report.count(ActionStatus::Failed);
    // Check mode says whether it would change something (Ansible's convention); a plan run is
    // a report and changes nothing.
    let changed = if check_mode {
        report.count(ActionStatus::Planned) > 0
    } else {
        report.count(ActionStatus::Applied) > 0
    };
    let outcome = if failed > 0 {
        Outcome::Failed
    } else {
        Outcome::Ok
    };
    let mut details = ledger_details(&report, planning);
    if let Some(snapshot) = snapshot {
        details["observed"] = snapshot;
    }
    let warnings = recorder.finish(target, outcome, changed, details, samples(&report));
    Ok(Done {
        changed,
        msg: message(&report, planning),
        diff: Change::between("DDL", Some(String::new()), Some(ddl(&report, planning))),
        warnings,
        output: report,
    })
}

/// The gain observed on real traffic since the last apply, recorded as its own task (a
/// measurement is never a tuning run for compliance).
fn measure(
    request: &TuneRequest,
    instance: &str,
    target: Target,
    check_mode: bool,
) -> Result<Done<TuneReport>> {
    let recorder = Recorder::start(Task::TuneMeasure, &request.run, check_mode)
        .hiding(request.connection.login_password.as_ref());
    let measured = (|| {
        let (since, before) =
            observed::last_snapshot(&request.run.ledger()?, instance, &request.database)?
                .ok_or_else(|| observed::no_snapshot(instance, &request.database))?;
        let mut connection = request.connection.clone();
        connection.login_db = Some(request.database.clone());
        let now = engine::connect(&connection)?
            .statement_stats(10_000)?
            .ok_or_else(|| {
                Error::invalid(
                    "measure",
                    "the server keeps no statement statistics now (pg_stat_statements missing, performance_schema off)",
                )
            })?;
        Ok(observed::compare(&since, &before, &now))
    })();
    let gain = match measured {
        Ok(gain) => gain,
        Err(e) => {
            recorder.fail(target, &e);
            return Err(e);
        }
    };
    let mut details = json!({"action": "measure"});
    let msg = match &gain {
        Some(g) => {
            details["since"] = json!(g.since);
            details["statements_compared"] = json!(g.statements_compared);
            details["query_time_before_ms"] = json!(g.mean_before_ms);
            details["query_time_after_ms"] = json!(g.mean_after_ms);
            format!(
                "observed on {} statements since {}: mean {} ms -> {} ms",
                g.statements_compared, g.since, g.mean_before_ms, g.mean_after_ms
            )
        }
        None => "no data: no statement of the snapshot ran again since the apply".to_string(),
    };
    let outcome = if gain.is_some() {
        Outcome::Ok
    } else {
        Outcome::Skipped
    };
    let warnings = recorder.finish(target, outcome, false, details, vec![]);
    Ok(Done {
        changed: false,
        msg,
        diff: None,
        warnings,
        output: TuneReport {
            instance_id: instance.to_string(),
            database: request.database.clone(),
            observed: gain,
            ..TuneReport::default()
        },
    })
}

/// Finds, plans and (unless planning) applies; returns the report and the statement
/// statistics kept for a later measure.
fn tune(
    request: &TuneRequest,
    instance: &str,
    planning: bool,
) -> Result<(TuneReport, Option<serde_json::Value>)> {
    if request.database.is_empty() {
        return Err(Error::invalid("database", "name the database to tune"));
    }
    if !planning && let Some(window) = &request.window {
        window.gate(jiff::Timestamp::now(), request.force)?;
    }
    let statements = request
        .workload
        .as_deref()
        .map(workload::read)
        .transpose()?;
    let mut connection = request.connection.clone();
    connection.login_db = Some(request.database.clone());
    let mut engine = engine::connect(&connection)?;
    let scope = TuneScope {
        min_table_rows: request.min_table_rows,
        top_statements: request.top_statements,
        statements: statements
            .iter()
            .flatten()
            .map(workload::Statement::sample)
            .collect(),
    };
    let (findings, limits) = engine.tune_findings(&scope)?;
    let mut report = TuneReport {
        instance_id: instance.to_string(),
        database: request.database.clone(),
        actions: plan(&findings, request),
        findings,
        measurement: None,
        observed: None,
        rehearsal: None,
        snapshot_statements: 0,
        limits,
    };
    if request.rehearse && report.count(ActionStatus::Planned) > 0 {
        report.rehearsal = Some(rehearsal::rehearse(
            request,
            instance,
            &report.actions,
            &report.findings,
            statements.as_ref(),
        )?);
    }
    if planning || report.count(ActionStatus::Planned) == 0 {
        return Ok((report, None));
    }
    crate::change::gate(
        &request.run.ledger()?,
        request.run.change_id.as_deref(),
        request.require_change,
        jiff::Timestamp::now(),
    )?;
    if request.require_rehearsal {
        rehearsal::require_rehearsed(
            &request.run.ledger()?,
            instance,
            &request.database,
            &rehearsal::fingerprint(&report.actions),
        )?;
    }
    let measured = statements
        .as_ref()
        .zip(request.workload.as_ref())
        .map(|(statements, path)| {
            workload::replay(engine.as_mut(), statements, request.workload_runs)
                .map(|before| (statements, path, before))
        })
        .transpose()?;
    // The traffic as it was before the fixes, for a later `action: measure`.
    let snapshot = engine
        .statement_stats(observed::SNAPSHOT_STATEMENTS)?
        .map(|stats| {
            report.snapshot_statements = stats.len();
            observed::snapshot_details(&jiff::Timestamp::now().to_string(), &stats)
        });
    let limits = TuneLimits {
        lock_timeout: Duration::from_secs(request.lock_timeout),
        statement_timeout: Duration::from_secs(request.statement_timeout),
    };
    apply(
        engine.as_mut(),
        &mut report.actions,
        &report.findings,
        &limits,
    );
    if let Some((statements, path, before)) = measured {
        let after = workload::replay(engine.as_mut(), statements, request.workload_runs)?;
        report.measurement = Some(workload::measurement(path, statements, &before, &after));
    }
    Ok((report, snapshot))
}

/// Whether the request allows fixes of this kind (index changes are opt-in).
fn allowed(request: &TuneRequest, kind: FixKind) -> std::result::Result<(), &'static str> {
    match kind {
        FixKind::Analyze | FixKind::Vacuum | FixKind::Reindex | FixKind::Rebuild => Ok(()),
        FixKind::CreateIndex if request.apply_index_advice => Ok(()),
        FixKind::CreateIndex => Err("index advice: set apply_index_advice: true to create it"),
        FixKind::DropUnusedIndex if request.drop_unused_indexes => Ok(()),
        FixKind::DropUnusedIndex => Err("set drop_unused_indexes: true to drop unused indexes"),
        FixKind::DropDuplicateIndex if request.drop_duplicate_indexes => Ok(()),
        FixKind::DropDuplicateIndex => {
            Err("set drop_duplicate_indexes: true to drop duplicate and redundant indexes")
        }
    }
}

/// One action per distinct statement (a VACUUM (ANALYZE) can resolve two findings), in a
/// safe order: statistics and vacuum first, then rebuilds, new indexes, and drops last.
fn plan(findings: &[Finding], request: &TuneRequest) -> Vec<Action> {
    let mut actions: Vec<Action> = Vec::new();
    for finding in findings {
        let Some(fix) = &finding.fix else { continue };
        if let Some(action) = actions.iter_mut().find(|a| a.sql == fix.sql) {
            action.finding.push_str(&format!(", {}", finding.id));
            continue;
        }
        let verdict = allowed(request, fix.kind);
        actions.push(Action {
            finding: finding.id.clone(),
            kind: fix.kind,
            sql: fix.sql.clone(),
            status: if verdict.is_ok() {
                ActionStatus::Planned
            } else {
                ActionStatus::NotAllowed
            },
            seconds: None,
            note: verdict.err().map(str::to_string),
        });
    }
    actions.sort_by_key(|a| a.kind);
    actions
}

/// Runs every planned fix; a failure is recorded on its action and the others still run.
pub(crate) fn apply(
    engine: &mut dyn Engine,
    actions: &mut [Action],
    findings: &[Finding],
    limits: &TuneLimits,
) {
    for action in actions
        .iter_mut()
        .filter(|a| a.status == ActionStatus::Planned)
    {
        let Some(fix) = findings
            .iter()
            .filter_map(|f| f.fix.as_ref())
            .find(|f| f.sql == action.sql)
        else {
            continue;
        };
        let started = Instant::now();
        let result = engine.run_fix(fix, limits);
        action.seconds = Some((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
        match result {
            Ok(()) => action.status = ActionStatus::Applied,
            Err(e) => {
                action.status = ActionStatus::Failed;
                action.note = Some(format!(
                    "{e}; raise lock_timeout or run again when the table is quiet"
                ));
            }
        }
    }
}

impl TuneReport {
    /// How many actions have this status.
    pub fn count(&self, status: ActionStatus) -> usize {
        self.actions.iter().filter(|a| a.status == status).count()
    }

    /// Why the run failed, when a fix failed.
    pub fn failure(&self) -> Option<String> {
        let failed: Vec<String> = self
            .actions
            .iter()
            .filter(|a| a.status == ActionStatus::Failed)
            .map(|a| a.note.clone().unwrap_or_else(|| a.sql.clone()))
            .collect();
        (!failed.is_empty())
            .then(|| format!("{} fix(es) failed: {}", failed.len(), failed.join("; ")))
    }
}

fn message(report: &TuneReport, planning: bool) -> String {
    let findings = report.findings.len();
    let not_allowed = report.count(ActionStatus::NotAllowed);
    let others = if not_allowed > 0 {
        format!(" ({not_allowed} more need an opt-in)")
    } else {
        String::new()
    };
    let mut msg = if planning {
        format!(
            "{findings} findings in '{}'; would apply {} fixes{others}",
            report.database,
            report.count(ActionStatus::Planned)
        )
    } else if report.count(ActionStatus::Applied) + report.count(ActionStatus::Failed) == 0 {
        format!(
            "{findings} findings in '{}'; nothing to apply{others}",
            report.database
        )
    } else {
        format!(
            "{findings} findings in '{}'; applied {} fixes, {} failed{others}",
            report.database,
            report.count(ActionStatus::Applied),
            report.count(ActionStatus::Failed)
        )
    };
    if let Some(r) = &report.rehearsal {
        msg.push_str(&format!(
            "; rehearsed on a copy restored from {} (plan {}): workload mean {} ms -> {} ms{}",
            r.backup.display(),
            r.fingerprint,
            r.measurement.before.mean_ms,
            r.measurement.after.mean_ms,
            if r.gain { "" } else { ", no gain" }
        ));
    }
    if let Some(m) = &report.measurement {
        msg.push_str(&format!(
            "; workload mean {} ms -> {} ms, p95 {} ms -> {} ms",
            m.before.mean_ms, m.after.mean_ms, m.before.p95_ms, m.after.p95_ms
        ));
    }
    msg
}

/// The statements that ran (or would), one per line, for diff mode.
fn ddl(report: &TuneReport, planning: bool) -> String {
    let wanted = if planning {
        ActionStatus::Planned
    } else {
        ActionStatus::Applied
    };
    report
        .actions
        .iter()
        .filter(|a| a.status == wanted)
        .map(|a| format!("{};\n", a.sql))
        .collect()
}

fn ledger_details(report: &TuneReport, planning: bool) -> serde_json::Value {
    let mut by_kind = std::collections::BTreeMap::<&str, usize>::new();
    for f in &report.findings {
        *by_kind.entry(f.kind.as_str()).or_default() += 1;
    }
    let list = |status: ActionStatus| -> Vec<&str> {
        report
            .actions
            .iter()
            .filter(|a| a.status == status)
            .map(|a| a.sql.as_str())
            .collect()
    };
    let mut details = json!({
        "action": if planning { "plan" } else { "apply" },
        "findings": report.findings.len(),
        "by_kind": by_kind,
        "applied": list(ActionStatus::Applied),
        "failed": list(ActionStatus::Failed),
        "planned": list(ActionStatus::Planned),
        "not_allowed": list(ActionStatus::NotAllowed),
    });
    if let Some(r) = &report.rehearsal {
        details["rehearsal"] = json!({
            "fingerprint": r.fingerprint,
            "gain": r.gain,
            "backup": r.backup,
            "before_ms": r.measurement.before.mean_ms,
            "after_ms": r.measurement.after.mean_ms,
        });
    }
    if let Some(m) = &report.measurement {
        details["workload"] = json!(m.workload);
        details["query_time_before_ms"] = json!(m.before.mean_ms);
        details["query_time_after_ms"] = json!(m.after.mean_ms);
        details["p95_before_ms"] = json!(m.before.p95_ms);
        details["p95_after_ms"] = json!(m.after.p95_ms);
    }
    details
}

fn samples(report: &TuneReport) -> Vec<Sample> {
    let labels = |severity: &'static str| {
        [
            ("instance", report.instance_id.clone()),
            ("db", report.database.clone()),
            ("severity", severity.to_string()),
        ]
    };
    [
        (Severity::Info, "info"),
        (Severity::Warning, "warning"),
        (Severity::Critical, "critical"),
    ]
    .into_iter()
    .map(|(severity, name)| {
        let labels = labels(name);
        let refs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Sample::gauge(
            "dbcadence_tune_findings",
            "Findings of the last db_tune run, by severity.",
            &refs,
            report
                .findings
                .iter()
                .filter(|f| f.severity == severity)
                .count() as f64,
        )
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, kind: FixKind, sql: &str) -> Finding {
        Finding {
            id: id.into(),
            kind: FindingKind::StaleStatistics,
            severity: Severity::Warning,
            object: id.into(),
            reason: String::new(),
            evidence: json!({}),
            fix: Some(Fix {
                kind,
                sql: sql.into(),
                cleanup: None,
                outside_transaction: false,
            }),
        }
    }

    #[test]
    fn the_plan_merges_same_statements_orders_them_and_follows_the_policy() {
        let request: TuneRequest = serde_json::from_value(json!({"database": "d"})).unwrap();
        let findings = vec![
            finding("drop", FixKind::DropDuplicateIndex, "DROP INDEX x"),
            finding("stale:t", FixKind::Vacuum, "VACUUM (ANALYZE) t"),
            finding("dead:t", FixKind::Vacuum, "VACUUM (ANALYZE) t"),
            finding("fk", FixKind::CreateIndex, "CREATE INDEX y"),
        ];
        let actions = plan(&findings, &request);
        let summary: Vec<(&str, ActionStatus)> =
            actions.iter().map(|a| (a.sql.as_str(), a.status)).collect();
        assert_eq!(
            summary,
            vec![
                ("VACUUM (ANALYZE) t", ActionStatus::Planned),
                ("CREATE INDEX y", ActionStatus::NotAllowed),
                ("DROP INDEX x", ActionStatus::NotAllowed),
            ]
        );
        assert_eq!(actions[0].finding, "stale:t, dead:t");
        assert!(
            actions[1]
                .note
                .as_deref()
                .unwrap()
                .contains("apply_index_advice")
        );
        let opted: TuneRequest = serde_json::from_value(
            json!({"database": "d", "apply_index_advice": true, "drop_duplicate_indexes": true}),
        )
        .unwrap();
        assert!(
            plan(&findings, &opted)
                .iter()
                .all(|a| a.status == ActionStatus::Planned)
        );
    }
}
