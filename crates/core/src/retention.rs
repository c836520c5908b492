//! Retention of backups: keep_last, keep_daily, keep_weekly, keep_monthly
//! (grandfather-father-son), computed per instance and database.
//!
//! Safety rules beyond the policy: the newest verified backup and the newest backup are always
//! kept (a policy can never delete the only backup). Deletion renames a backup to
//! `.deleting-<name>` before removing it, so a crash mid-way never leaves a half-deleted
//! backup that still looks complete; the next run finishes the job.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backup::{self, BackupEntry};
use crate::{Error, Result};

/// How many backups to keep. Absent counts keep nothing by that rule; with no count at all
/// nothing is deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// The newest N backups.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// The newest backup of each of the last N days that have one (UTC).
    #[serde(default)]
    pub keep_daily: Option<u32>,
    /// The newest backup of each of the last N ISO weeks that have one.
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    /// The newest backup of each of the last N months that have one.
    #[serde(default)]
    pub keep_monthly: Option<u32>,
}

impl RetentionPolicy {
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
    }
}

/// What a prune keeps and removes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PrunePlan {
    /// Backups kept, newest first.
    pub keep: Vec<PathBuf>,
    /// Backups removed (or, in check mode, that would be).
    pub delete: Vec<PathBuf>,
    /// Backups the policy would remove but a verification holds right now: kept this time.
    #[serde(default)]
    pub busy: Vec<PathBuf>,
    /// Backup directories that are not usable backups: never removed, always reported.
    #[serde(default)]
    pub damaged: Vec<backup::Damaged>,
}

impl PrunePlan {
    /// What the user must hear: damaged directories left alone, backups kept because a
    /// verification held them.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.damaged.iter().map(|d| d.warning()).collect();
        out.extend(self.busy.iter().map(|p| {
            format!(
                "'{}' is being verified: kept this time, retention decides again next run",
                p.display()
            )
        }));
        out
    }
}

/// Decides which backups of one database to keep. `entries` may come in any order.
pub fn plan(entries: &[BackupEntry], policy: &RetentionPolicy) -> PrunePlan {
    let mut sorted: Vec<&BackupEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| b.started_at.cmp(&a.started_at)); // newest first
    if policy.is_empty() {
        return PrunePlan {
            keep: sorted.iter().map(|e| e.path.clone()).collect(),
            ..PrunePlan::default()
        };
    }
    let mut kept: BTreeSet<usize> = BTreeSet::new();
    let mut keep_by = |count: Option<u32>, bucket: &dyn Fn(&jiff::Timestamp) -> String| {
        let Some(count) = count else { return };
        let mut seen: Vec<String> = Vec::new();
        for (index, entry) in sorted.iter().enumerate() {
            let Ok(time) = entry.started_at.parse::<jiff::Timestamp>() else {
                kept.insert(index); // unreadable time: keep rather than guess
                continue;
            };
            let key = bucket(&time);
            if !seen.contains(&key) {
                if seen.len() as u32 >= count {
                    break;
                }
                seen.push(key);
                kept.insert(index);
            }
        }
    };
    let utc = |t: &jiff::Timestamp| t.to_zoned(jiff::tz::TimeZone::UTC);
    keep_by(policy.keep_last, &|t| t.to_string());
    keep_by(policy.keep_daily, &|t| utc(t).date().to_string());
    keep_by(policy.keep_weekly, &|t| {
        let week = utc(t).date().iso_week_date();
        format!("{}-W{:02}", week.year(), week.week())
    });
    keep_by(policy.keep_monthly, &|t| {
        let d = utc(t).date();
        format!("{}-{:02}", d.year(), d.month())
    });
    // Never the newest backup, never the newest verified one.
    if !sorted.is_empty() {
        kept.insert(0);
    }
    if let Some(index) = sorted.iter().position(|e| e.verified) {
        kept.insert(index);
    }
    let (mut keep, mut delete) = (Vec::new(), Vec::new());
    for (index, entry) in sorted.iter().enumerate() {
        if kept.contains(&index) {
            &mut keep
        } else {
            &mut delete
        }
        .push(entry.path.clone());
    }
    PrunePlan {
        keep,
        delete,
        ..PrunePlan::default()
    }
}

/// Retention as a task of its own (db_backup action prune, `dbcadence prune`): applies the
/// policy and records one `prune` ledger record, never a `backup` one.
pub fn run(
    backup_dir: &Path,
    instance_id: Option<&str>,
    database: Option<&str>,
    policy: &RetentionPolicy,
    check_mode: bool,
    options: &crate::run::RunOptions,
) -> Result<(PrunePlan, Vec<String>)> {
    let recorder = crate::run::Recorder::start(crate::task::Task::Prune, options, check_mode);
    let target = crate::ledger::Target {
        instance: instance_id.unwrap_or("*").to_string(),
        db: database.map(str::to_string),
    };
    let result = if policy.is_empty() {
        Err(Error::invalid(
            "retention",
            "a prune needs a retention policy (keep_last, keep_daily, keep_weekly, keep_monthly)",
        ))
    } else {
        prune(backup_dir, instance_id, database, policy, check_mode)
    };
    match result {
        Ok(plan) => {
            let changed = !check_mode && !plan.delete.is_empty();
            let mut warnings = plan.warnings();
            let details = serde_json::json!({"removed": plan.delete, "kept": plan.keep.len(), "warnings": warnings});
            warnings.extend(recorder.finish(
                target,
                crate::ledger::Outcome::Ok,
                changed,
                details,
                vec![],
            ));
            Ok((plan, warnings))
        }
        Err(e) => {
            recorder.fail(target, &e);
            Err(e)
        }
    }
}

/// Applies a policy to every database under `backup_dir` (or one instance/database). For real,
/// each database's backups are listed again under its lock (a backup finishing meanwhile is
/// seen), and a backup whose verification is running is kept. In check mode nothing is
/// touched.
pub fn prune(
    backup_dir: &Path,
    instance_id: Option<&str>,
    database: Option<&str>,
    policy: &RetentionPolicy,
    check_mode: bool,
) -> Result<PrunePlan> {
    let listing = backup::scan(backup_dir);
    let wanted = |instance: &str, db: &str| {
        instance_id.is_none_or(|i| i == instance) && database.is_none_or(|d| d == db)
    };
    let mut groups: Vec<(String, String)> = listing
        .backups
        .iter()
        .filter(|b| wanted(&b.instance_id, &b.database))
        .map(|b| (b.instance_id.clone(), b.database.clone()))
        .collect();
    groups.sort();
    groups.dedup();
    let mut total = PrunePlan {
        damaged: listing
            .damaged
            .iter()
            .filter(|d| d.belongs_to(backup_dir, instance_id, database))
            .cloned()
            .collect(),
        ..PrunePlan::default()
    };
    for (instance, db) in groups {
        let db_dir = backup_dir
            .join(backup::encode_name(&instance))
            .join(backup::encode_name(&db));
        if check_mode {
            let entries: Vec<BackupEntry> = listing
                .backups
                .iter()
                .filter(|b| b.instance_id == instance && b.database == db)
                .cloned()
                .collect();
            let plan = plan(&entries, policy);
            total.keep.extend(plan.keep);
            total.delete.extend(plan.delete);
            continue;
        }
        let _lock = backup::lock_database(
            &db_dir,
            std::time::Duration::from_secs(60),
            &format!("'{db}' on '{instance}'"),
            crate::files::Access::PRIVATE,
        )?;
        let entries: Vec<BackupEntry> = backup::scan_database(&db_dir)
            .backups
            .into_iter()
            .filter(|b| b.instance_id == instance && b.database == db)
            .collect();
        let plan = plan(&entries, policy);
        total.keep.extend(plan.keep);
        for path in plan.delete {
            match backup::lock::try_lock_backup(&path)? {
                None => {
                    total.keep.push(path.clone());
                    total.busy.push(path);
                }
                Some(verification_lock) => {
                    remove_backup(&path)?;
                    verification_lock.remove();
                    total.delete.push(path);
                }
            }
        }
    }
    Ok(total)
}

fn remove_backup(path: &Path) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doomed = path.with_file_name(format!(".deleting-{name}"));
    std::fs::rename(path, &doomed).map_err(|e| Error::io("remove the backup (rename)", path, e))?;
    std::fs::remove_dir_all(&doomed).map_err(|e| Error::io("remove the backup", &doomed, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(time: &str, verified: bool) -> BackupEntry {
        BackupEntry {
            path: PathBuf::from(time),
            instance_id: "pg1".into(),
            database: "app".into(),
            started_at: time.into(),
            bytes: 1,
            verified,
        }
    }

    /// Two backups a day for 70 days, from 2026-01-01.
    fn history() -> Vec<BackupEntry> {
        let start: jiff::Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        (0..140)
            .map(|i| {
                let t = start + jiff::SignedDuration::from_hours(12 * i);
                entry(&t.to_string(), false)
            })
            .collect()
    }

    #[test]
    fn no_policy_keeps_everything() {
        let p = plan(&history(), &RetentionPolicy::default());
        assert_eq!((p.keep.len(), p.delete.len()), (140, 0));
    }

    #[test]
    fn grandfather_father_son() {
        let policy = RetentionPolicy {
            keep_last: Some(3),
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(3),
        };
        let p = plan(&history(), &policy);
        let kept: Vec<String> = p.keep.iter().map(|k| k.display().to_string()).collect();
        // The newest is Wednesday 2026-03-11 13:00. last 3: Mar 11 13h, Mar 11 01h, Mar 10 13h.
        // daily 7 (Mar 11..5) adds Mar 9..5. weekly 4 (W11, W10 already kept) adds Sunday
        // Mar 1 (W09) and Feb 22 (W08). monthly 3 (March kept) adds Feb 28 and Jan 31.
        let expected = [
            "2026-03-11T13:00:00Z",
            "2026-03-11T01:00:00Z",
            "2026-03-10T13:00:00Z",
            "2026-03-09T13:00:00Z",
            "2026-03-08T13:00:00Z",
            "2026-03-07T13:00:00Z",
            "2026-03-06T13:00:00Z",
            "2026-03-05T13:00:00Z",
            "2026-03-01T13:00:00Z",
            "2026-02-28T13:00:00Z",
            "2026-02-22T13:00:00Z",
            "2026-01-31T13:00:00Z",
        ];
        assert_eq!(kept, expected);
        assert_eq!(p.delete.len(), 140 - expected.len());
    }

    #[test]
    fn the_newest_verified_and_the_only_backup_survive() {
        let mut h = history();
        h[10].verified = true;
        let p = plan(
            &h,
            &RetentionPolicy {
                keep_last: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(p.keep.len(), 2);
        assert!(p.keep.contains(&h[10].path));
        let only = vec![entry("2026-01-01T00:00:00Z", false)];
        let p = plan(
            &only,
            &RetentionPolicy {
                keep_last: Some(0),
                ..Default::default()
            },
        );
        assert_eq!(p.keep.len(), 1, "a policy never deletes the only backup");
    }
}
