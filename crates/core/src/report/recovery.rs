//! Recovery points and times per database. RPO: how much would be lost, the age of the
//! newest backup a restore has proven (a verification or a drill) — at the end of the period,
//! and at the worst moment of it. RTO: how long a restore takes, the latest measured one (a
//! drill, or a verification's restore). Each is held to the template's `rpo` and `rto`.
//!
//! A backup counts once a restore has proven it, whenever that happened before the report. A
//! database without a proven backup for part of the period counts that part from the start
//! of the period (or from when it appeared): a missing recovery point is a long one, never a
//! green zero. Without a measured restore there is no RTO ("no data"), not a met target.

use std::borrow::Cow;

use jiff::Timestamp;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;

use super::gather::{parse_timestamp, path_hash};
use super::model::Recovery;
use crate::ledger::{Outcome, RecordView};
use crate::schedule::Template;
use crate::task::Task;

/// What the ledger says about recoverability, up to the end of the period.
#[derive(Default)]
pub(super) struct RecoveryEvidence {
    /// instance \x1f db -> (backup start, path hash) of every successful backup.
    backups: FxHashMap<String, Vec<(Timestamp, u64)>>,
    /// Backups a restore proved.
    proven: FxHashSet<u64>,
    /// instance \x1f db -> the latest measured restore (when, seconds).
    restores: FxHashMap<String, (Timestamp, f64)>,
}

#[derive(Deserialize, Default)]
struct Fields<'a> {
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    backup: Option<Cow<'a, str>>,
    #[serde(default)]
    restore_seconds: Option<f64>,
    #[serde(default)]
    drill: bool,
}

fn key(instance: &str, db: &str) -> String {
    format!("{instance}\u{1f}{db}")
}

impl RecoveryEvidence {
    /// One real run that finished by the end of the period.
    pub(super) fn visit(&mut self, record: &RecordView, finished: Timestamp) {
        if record.outcome != Outcome::Ok
            || !matches!(record.task, Task::Backup | Task::Verify | Task::Restore)
        {
            return;
        }
        let Some(db) = record.target.db.as_deref() else {
            return;
        };
        let Some(fields) = record
            .details
            .and_then(|d| serde_json::from_str::<Fields>(d.get()).ok())
        else {
            return;
        };
        let key = key(&record.target.instance, db);
        match record.task {
            Task::Backup => {
                if let (Some(path), Some(started)) =
                    (fields.path, parse_timestamp(&record.started_at))
                {
                    self.backups
                        .entry(key)
                        .or_default()
                        .push((started, path_hash(&path)));
                }
            }
            // A verification, or a drill (a restore recorded against the backed-up database).
            Task::Verify | Task::Restore if record.task == Task::Verify || fields.drill => {
                if let Some(path) = fields.backup {
                    self.proven.insert(path_hash(&path));
                }
                if let Some(seconds) = fields.restore_seconds.filter(|s| *s > 0.0) {
                    let latest = self.restores.entry(key).or_insert((finished, seconds));
                    if finished >= latest.0 {
                        *latest = (finished, seconds);
                    }
                }
            }
            _ => {}
        }
    }

    /// Folds a later chunk of the ledger into this one.
    pub(super) fn absorb(&mut self, later: RecoveryEvidence) {
        for (key, backups) in later.backups {
            self.backups.entry(key).or_default().extend(backups);
        }
        self.proven.extend(later.proven);
        for (key, (at, seconds)) in later.restores {
            let latest = self.restores.entry(key).or_insert((at, seconds));
            if at >= latest.0 {
                *latest = (at, seconds);
            }
        }
    }

    /// RPO and RTO of one database over [start, end], against its template's targets.
    pub(super) fn of(
        &self,
        instance: &str,
        db: &str,
        template: Option<&Template>,
        start: Timestamp,
        end: Timestamp,
    ) -> Recovery {
        let key = key(instance, db);
        let mut proven: Vec<Timestamp> = self
            .backups
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|(t, hash)| *t <= end && self.proven.contains(hash))
            .map(|(t, _)| *t)
            .collect();
        proven.sort_unstable();
        let seconds = |from: Timestamp, to: Timestamp| to.duration_since(from).as_secs_f64();
        let newest = proven.last().copied();
        let rpo = newest.map(|t| seconds(t, end));
        // The worst moment: just before each proven backup of the period, and the end.
        let mut worst: Option<f64> = rpo;
        let mut previous = proven.iter().copied().rfind(|t| *t <= start);
        for t in proven.iter().copied().filter(|t| *t > start) {
            let gap = seconds(previous.unwrap_or(start), t);
            worst = Some(worst.map_or(gap, |w| w.max(gap)));
            previous = Some(t);
        }
        if newest.is_none() {
            worst = None;
        }
        let restore = self.restores.get(&key).filter(|(at, _)| *at <= end);
        let rpo_target = template.and_then(Template::rpo_seconds).map(|s| s as f64);
        let rto_target = template.and_then(Template::rto_seconds).map(|s| s as f64);
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        Recovery {
            rpo_seconds: rpo.map(round),
            worst_rpo_seconds: worst.map(round),
            newest_proven_backup: newest.map(|t| t.to_string()),
            rto_seconds: restore.map(|(_, s)| round(*s)),
            rto_measured_at: restore.map(|(at, _)| at.to_string()),
            rpo_target_seconds: rpo_target,
            rto_target_seconds: rto_target,
            // No proven backup at all breaches an RPO: nothing could be restored.
            rpo_met: rpo_target.map(|target| worst.is_some_and(|w| w <= target)),
            rto_met: rto_target.and_then(|target| restore.map(|(_, seconds)| *seconds <= target)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn evidence(backups: &[(&str, u64, bool)], restore: Option<(&str, f64)>) -> RecoveryEvidence {
        let mut e = RecoveryEvidence::default();
        for (t, hash, proven) in backups {
            e.backups
                .entry(key("pg1", "app"))
                .or_default()
                .push((at(t), *hash));
            if *proven {
                e.proven.insert(*hash);
            }
        }
        if let Some((t, s)) = restore {
            e.restores.insert(key("pg1", "app"), (at(t), s));
        }
        e
    }

    fn template() -> Template {
        serde_yaml_ng::from_str(
            "{name: t, rpo: 12h, rto: 30m, tasks: [{task: backup, cron: '0 2 * * *'}]}",
        )
        .unwrap()
    }

    #[test]
    fn rpo_is_the_age_of_the_newest_proven_backup_and_the_worst_gap() {
        let e = evidence(
            &[
                ("2026-11-01T02:00:00Z", 1, true),
                ("2026-11-02T02:00:00Z", 2, false), // never proven: does not count
                ("2026-11-03T02:00:00Z", 3, true),
            ],
            Some(("2026-11-03T03:00:00Z", 600.0)),
        );
        let t = template();
        let r = e.of(
            "pg1",
            "app",
            Some(&t),
            at("2026-11-01T00:00:00Z"),
            at("2026-11-03T08:00:00Z"),
        );
        assert_eq!(r.rpo_seconds, Some(6.0 * 3600.0));
        // Before the first backup: 2 h from the period's start; between the proven ones: 48 h.
        assert_eq!(r.worst_rpo_seconds, Some(48.0 * 3600.0));
        assert_eq!(r.rpo_met, Some(false));
        assert_eq!(r.rto_seconds, Some(600.0));
        assert_eq!(r.rto_met, Some(true));
    }

    #[test]
    fn nothing_proven_breaches_the_rpo_and_no_restore_is_no_data() {
        let e = evidence(&[("2026-11-01T02:00:00Z", 1, false)], None);
        let t = template();
        let r = e.of(
            "pg1",
            "app",
            Some(&t),
            at("2026-11-01T00:00:00Z"),
            at("2026-11-02T00:00:00Z"),
        );
        assert_eq!((r.rpo_seconds, r.rpo_met), (None, Some(false)));
        assert_eq!((r.rto_seconds, r.rto_met), (None, None));
        let untargeted = e.of(
            "pg1",
            "app",
            None,
            at("2026-11-01T00:00:00Z"),
            at("2026-11-02T00:00:00Z"),
        );
        assert_eq!((untargeted.rpo_met, untargeted.rto_met), (None, None));
    }
}
