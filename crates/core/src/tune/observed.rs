//! The gain on real traffic: an apply keeps the server's statement statistics as they were
//! before its fixes (in its ledger record); a later `action: measure` reads them back and
//! compares each statement's mean time before with its mean time since, over the statements
//! that ran in both windows, weighted by their calls since.

use serde_json::{Value, json};

use super::model::{ObservedGain, ObservedStatement, StatementStat};
use crate::ledger::{Outcome, Store};
use crate::task::Task;
use crate::{Error, Result};

/// How many of the heaviest statements an apply keeps (the ledger line stays small).
pub const SNAPSHOT_STATEMENTS: u32 = 50;

/// The snapshot as it goes into the apply's ledger details.
pub fn snapshot_details(at: &str, statements: &[StatementStat]) -> Value {
    json!({"at": at, "statements": statements})
}

/// The newest snapshot an apply recorded for this database: (when, statements).
pub fn last_snapshot(
    store: &Store,
    instance: &str,
    database: &str,
) -> Result<Option<(String, Vec<StatementStat>)>> {
    let mut newest: Option<(String, Vec<StatementStat>)> = None;
    store.scan(|record| {
        if record.task != Task::Tune
            || record.check_mode
            || record.outcome == Outcome::Failed
            || record.target.instance != instance
            || record.target.db.as_deref() != Some(database)
        {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Snapshot {
            at: String,
            statements: Vec<StatementStat>,
        }
        #[derive(serde::Deserialize)]
        struct Details {
            observed: Option<Snapshot>,
        }
        if let Some(Details {
            observed: Some(snapshot),
        }) = record.details()
            && newest.as_ref().is_none_or(|(at, _)| *at <= snapshot.at)
        {
            newest = Some((snapshot.at, snapshot.statements));
        }
    })?;
    Ok(newest)
}

/// Compares the snapshot with the statistics now. None when no statement ran in both windows
/// (no data, never a made-up gain).
pub fn compare(
    since: &str,
    before: &[StatementStat],
    now: &[StatementStat],
) -> Option<ObservedGain> {
    let mut statements = Vec::new();
    let mut reset = 0;
    for old in before.iter().filter(|s| s.calls > 0) {
        let Some(new) = now.iter().find(|s| s.id == old.id) else {
            continue;
        };
        if new.calls < old.calls || new.total_ms < old.total_ms {
            reset += 1;
            continue;
        }
        let calls_after = new.calls - old.calls;
        if calls_after == 0 {
            continue;
        }
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        statements.push(ObservedStatement {
            text: old.text.clone(),
            calls_before: old.calls,
            calls_after,
            mean_before_ms: round(old.total_ms / old.calls as f64),
            mean_after_ms: round((new.total_ms - old.total_ms) / calls_after as f64),
        });
    }
    if statements.is_empty() {
        return None;
    }
    let weight: f64 = statements.iter().map(|s| s.calls_after as f64).sum();
    let weighted = |f: fn(&ObservedStatement) -> f64| {
        statements
            .iter()
            .map(|s| f(s) * s.calls_after as f64)
            .sum::<f64>()
            / weight
    };
    let (before_ms, after_ms) = (
        weighted(|s| s.mean_before_ms),
        weighted(|s| s.mean_after_ms),
    );
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    Some(ObservedGain {
        since: since.to_string(),
        statements_compared: statements.len(),
        statements_reset: reset,
        mean_before_ms: round(before_ms),
        mean_after_ms: round(after_ms),
        reduction: (before_ms > 0.0)
            .then(|| ((1.0 - after_ms / before_ms) * 10000.0).round() / 10000.0),
        statements,
    })
}

/// Why there is nothing to measure, with the next step.
pub fn no_snapshot(instance: &str, database: &str) -> Error {
    Error::invalid(
        "measure",
        format!(
            "no apply of db_tune on '{database}' of '{instance}' kept statement statistics in this ledger; run db_tune (apply) first, with pg_stat_statements or performance_schema available, then measure after some traffic"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(id: &str, calls: u64, total_ms: f64) -> StatementStat {
        StatementStat {
            id: id.into(),
            text: format!("q{id}"),
            calls,
            total_ms,
        }
    }

    #[test]
    fn means_before_and_since_weighted_by_calls_since() {
        let before = [
            stat("1", 100, 1000.0),
            stat("2", 10, 10.0),
            stat("3", 5, 50.0),
            stat("4", 9, 9.0),
        ];
        // 1: 100 more calls at 1 ms (was 10 ms); 2: 300 more at 1 ms (unchanged);
        // 3: no call since; 4: counters went down (reset).
        let now = [
            stat("1", 200, 1100.0),
            stat("2", 310, 310.0),
            stat("3", 5, 50.0),
            stat("4", 1, 1.0),
        ];
        let gain = compare("t", &before, &now).unwrap();
        assert_eq!(gain.statements_compared, 2);
        assert_eq!(gain.statements_reset, 1);
        // before: (10*100 + 1*300)/400 = 3.25; after: (1*100 + 1*300)/400 = 1
        assert_eq!((gain.mean_before_ms, gain.mean_after_ms), (3.25, 1.0));
        assert_eq!(gain.reduction, Some(0.6923));
    }

    #[test]
    fn nothing_in_both_windows_is_no_data() {
        assert!(compare("t", &[stat("1", 10, 10.0)], &[stat("1", 10, 10.0)]).is_none());
        assert!(compare("t", &[], &[stat("1", 10, 10.0)]).is_none());
    }
}
