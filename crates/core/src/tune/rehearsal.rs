//! Rehearsal on a non-production copy: the newest verified backup restored into a throwaway
//! server (db_verify's machinery), its statistics brought up to date as production's are, the
//! workload replayed, the plan applied, the workload replayed again. Nothing touches the real
//! server. A plan is known by its fingerprint (its statements), so that `require_rehearsal`
//! can refuse a real apply that no rehearsal of the same plan justified.

use std::time::Duration;

use super::model::{Action, ActionStatus, FixKind, Rehearsal, TuneRequest};
use super::{apply, workload};
use crate::engine::{self, TuneLimits, TuneScope};
use crate::ledger::Store;
use crate::task::Task;
use crate::{Error, Result};

/// The plan's identity: a digest of the statements it would run.
pub fn fingerprint(actions: &[Action]) -> String {
    use sha2::{Digest, Sha256};
    let mut statements: Vec<&str> = actions
        .iter()
        .filter(|a| a.status == ActionStatus::Planned)
        .map(|a| a.sql.as_str())
        .collect();
    statements.sort_unstable();
    let digest = Sha256::digest(statements.join("\n").as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Restores, prepares, measures, applies and measures again on the copy.
pub fn rehearse(
    request: &TuneRequest,
    instance: &str,
    actions: &[Action],
    findings: &[super::Finding],
    statements: Option<&Vec<workload::Statement>>,
) -> Result<Rehearsal> {
    let (Some(statements), Some(path)) = (statements, request.workload.as_ref()) else {
        return Err(Error::invalid(
            "rehearse",
            "a rehearsal measures a workload: give workload (a SQL file, one statement per line)",
        ));
    };
    let backup_dir = request.backup_dir.as_deref().ok_or_else(|| {
        Error::invalid(
            "rehearse",
            "a rehearsal restores the newest verified backup: give backup_dir",
        )
    })?;
    let copy = crate::verify::restore_newest_verified(backup_dir, instance, &request.database)?;
    let mut engine = engine::connect(&copy.connection)?;
    let limits = TuneLimits {
        lock_timeout: Duration::from_secs(request.lock_timeout),
        statement_timeout: Duration::from_secs(request.statement_timeout),
    };
    // A restored database has no statistics yet; production has: analyze the copy first, so
    // that the "before" is production's and the gain is the plan's alone.
    let (copy_findings, _) = engine.tune_findings(&TuneScope::default())?;
    let mut preparation: Vec<Action> = copy_findings
        .iter()
        .filter_map(|f| f.fix.as_ref().map(|fix| (f, fix)))
        .filter(|(_, fix)| matches!(fix.kind, FixKind::Analyze | FixKind::Vacuum))
        .map(|(f, fix)| Action {
            finding: f.id.clone(),
            kind: fix.kind,
            sql: fix.sql.clone(),
            status: ActionStatus::Planned,
            seconds: None,
            note: None,
        })
        .collect();
    apply(engine.as_mut(), &mut preparation, &copy_findings, &limits);
    let before = workload::replay(engine.as_mut(), statements, request.workload_runs)?;
    let mut rehearsed: Vec<Action> = actions
        .iter()
        .filter(|a| a.status == ActionStatus::Planned)
        .cloned()
        .collect();
    apply(engine.as_mut(), &mut rehearsed, findings, &limits);
    if let Some(failed) = rehearsed.iter().find(|a| a.status == ActionStatus::Failed) {
        return Err(Error::invalid(
            "rehearsal",
            format!(
                "'{}' failed on the restored copy: {}",
                failed.sql,
                failed.note.as_deref().unwrap_or("no reason given")
            ),
        ));
    }
    let after = workload::replay(engine.as_mut(), statements, request.workload_runs)?;
    let measurement = workload::measurement(path, statements, &before, &after);
    Ok(Rehearsal {
        backup: copy.backup.clone(),
        restore_seconds: copy.restore_seconds,
        fingerprint: fingerprint(actions),
        actions: rehearsed,
        gain: measurement.after.mean_ms < measurement.before.mean_ms,
        measurement,
    })
}

/// Refuses a real apply unless the ledger holds a rehearsal of this plan that showed a gain.
pub fn require_rehearsed(store: &Store, instance: &str, database: &str, plan: &str) -> Result<()> {
    let mut found = false;
    store.scan(|record| {
        if record.task != Task::Tune
            || record.target.instance != instance
            || record.target.db.as_deref() != Some(database)
        {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Rehearsed {
            fingerprint: String,
            gain: bool,
        }
        #[derive(serde::Deserialize)]
        struct Details {
            rehearsal: Option<Rehearsed>,
        }
        if let Some(Details { rehearsal: Some(r) }) = record.details()
            && r.fingerprint == plan
            && r.gain
        {
            found = true;
        }
    })?;
    if found {
        return Ok(());
    }
    Err(Error::invalid(
        "require_rehearsal",
        format!(
            "no rehearsal of this plan (fingerprint {plan}) showed a gain in the ledger; run db_tune with rehearse: true (a workload and backup_dir) first, then apply the same plan"
        ),
    ))
}
