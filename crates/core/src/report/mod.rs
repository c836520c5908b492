//! The compliance report and the success-criteria scorecard, read from the ledger.
//!
//! One pass over the ledger (streamed: a million records fit in a few tens of megabytes)
//! gathers, per (task, instance, database), the finish times and outcomes of real runs, the
//! fleet as the inventory runs saw it (which databases exist, since when: nothing is owed
//! before the first inventory that saw a database; with which engine,
//! environment and labels), run durations, backups and their verifications, incidents, alert
//! feedback and tuning gains. Schedules are then bound to databases (assignments by inventory
//! group or labels; without assignments, each template applies to the databases of its engine
//! and environment) and every binding is judged by [`compliance::judge`].
//!
//! Task scopes: backup, verify and tune are per database; logs, audit and patch per instance
//! (their runs carry no database); inventory is fleet-wide (target `fleet`). Replicas owe
//! nothing (their primary does), nor do databases flagged as copies unless an assignment
//! names them (group `copies`).

mod build;
mod gather;
mod metrics;
mod model;
mod recovery;
mod render;
mod run;
mod scorecard;

pub use build::build;
pub use metrics::{REPORT_METRICS, samples, write_metrics};
pub use model::*;
pub use render::{html, markdown};
pub use run::*;

use build::round;
use gather::*;
use scorecard::scorecard;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;

    use super::*;
    use crate::ledger::{Ledger, Store};
    use crate::schedule;

    fn line(
        task: &str,
        db: Option<&str>,
        finished: &str,
        outcome: &str,
        check: bool,
        details: &str,
    ) -> String {
        let target = match db {
            Some(db) => format!(r#"{{"instance":"pg1","db":"{db}"}}"#),
            None => r#"{"instance":"fleet"}"#.to_string(),
        };
        format!(
            r#"{{"id":"x","task":"{task}","target":{target},"started_at":"{finished}","finished_at":"{finished}","outcome":"{outcome}","changed":true,"check_mode":{check},"details":{details}}}"#
        )
    }

    fn inventory(at: &str, dbs: &[&str], unreachable: &[&str]) -> String {
        let dbs: Vec<String> = dbs
            .iter()
            .map(|d| {
                let copy = if d.contains("_bak_") {
                    r#""app""#
                } else {
                    "null"
                };
                format!(r#"{{"name":"{d}","env":"production","copy_of":{copy}}}"#)
            })
            .collect();
        let unreachable: Vec<String> = unreachable.iter().map(|u| format!("\"{u}\"")).collect();
        let details = format!(
            r#"{{"fleet":[{{"instance":"pg1","engine":"postgresql","env":"production","role":"primary","labels":{{"tier":"gold"}},"databases":[{}]}},{{"instance":"pg1r","engine":"postgresql","env":"production","role":"replica","labels":{{}},"databases":[{{"name":"app","env":"production"}}]}}],"unreachable":[{}]}}"#,
            dbs.join(","),
            unreachable.join(",")
        );
        line("inventory", None, at, "ok", false, &details)
    }

    const SCHEDULE: &str = "templates:\n  - name: pg-prod\n    engine: postgresql\n    env: production\n    tasks:\n      - {task: backup, cron: '0 1 * * *', grace: 2h}\n";

    fn ledger(lines: &[String]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        (dir, Store::File(Ledger::new(path)))
    }

    fn period() -> Period {
        Period {
            from: "2026-11-01T00:00:00Z".parse().unwrap(),
            to: "2026-11-08T00:00:00Z".parse().unwrap(),
            now: "2026-11-08T12:00:00Z".parse().unwrap(),
        }
    }

    fn fixture() -> Vec<String> {
        let ok = r#"{"path":"/b/x"}"#;
        let mut lines = vec![inventory(
            "2026-10-31T00:00:00Z",
            &["app", "app_bak_20261001"],
            &[],
        )];
        for day in [1, 2, 6, 7] {
            lines.push(line(
                "backup",
                Some("app"),
                &format!("2026-11-0{day}T01:30:00Z"),
                "ok",
                false,
                ok,
            ));
        }
        // Nov 3: only a rehearsal (check mode) -> missed; a torn line from a crash.
        lines.push(line(
            "backup",
            Some("app"),
            "2026-11-03T01:30:00Z",
            "ok",
            true,
            "{}",
        ));
        lines.push(r#"{"id":"torn","task":"back"#.to_string());
        // Nov 4: failed, retried inside the grace -> on time.
        lines.push(line(
            "backup",
            Some("app"),
            "2026-11-04T01:10:00Z",
            "failed",
            false,
            "{}",
        ));
        lines.push(inventory(
            "2026-11-04T00:00:00Z",
            &["app", "app_bak_20261001", "new"],
            &["pg2"],
        ));
        lines.push(line(
            "backup",
            Some("app"),
            "2026-11-04T02:30:00Z",
            "ok",
            false,
            r#"{"path":"/b/verified"}"#,
        ));
        lines.push(line(
            "verify",
            Some("app"),
            "2026-11-04T05:00:00Z",
            "ok",
            false,
            r#"{"backup":"/b/verified"}"#,
        ));
        // Nov 5: after the grace -> late.
        lines.push(line(
            "backup",
            Some("app"),
            "2026-11-05T05:00:00Z",
            "ok",
            false,
            ok,
        ));
        lines.push(inventory(
            "2026-11-05T00:00:00Z",
            &["app", "app_bak_20261001", "new"],
            &["pg2"],
        ));
        lines.push(inventory(
            "2026-11-06T00:00:00Z",
            &["app", "app_bak_20261001", "new"],
            &[],
        ));
        lines
    }

    #[test]
    fn compliance_from_a_synthetic_ledger() {
        let (_dir, store) = ledger(&fixture());
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        assert_eq!(report.unreadable_lines, vec![7], "{report:#?}");
        assert!(report.warnings[0].contains("torn"));
        let app = report
            .databases
            .iter()
            .find(|d| d.db.as_deref() == Some("app"))
            .unwrap();
        let t = &app.share.tally;
        assert_eq!(
            (t.on_time, t.late, t.missed, t.failed),
            (5, 1, 1, 0),
            "{app:#?}"
        );
        // Added on Nov 4: owes Nov 4..7 only, and did nothing.
        let new = report
            .databases
            .iter()
            .find(|d| d.db.as_deref() == Some("new"))
            .unwrap();
        assert_eq!((new.share.tally.missed, new.share.due), (4, 4));
        assert!(new.since.as_deref().unwrap().starts_with("2026-11-04"));
        // Worst first; the replica and the backup copy owe nothing.
        assert_eq!(report.databases[0].db.as_deref(), Some("new"));
        assert_eq!(report.databases.len(), 2);
        assert!(report.unscheduled.is_empty());
        assert_eq!((report.fleet.tally.on_time, report.fleet.due), (5, 11));
        assert_eq!(report.by_env["production"].due, 11);
        assert_eq!(report.daily.len(), 7);
        assert_eq!(
            report.daily[2].share.tally.missed,
            2 - 1,
            "Nov 3: app missed, new not yet owed"
        );
        // Scorecard: one outage of pg2 (seen twice, counted once); 1 of 5 backups verified.
        let card: BTreeMap<&str, &Criterion> = report
            .scorecard
            .iter()
            .map(|c| (c.name.as_str(), c))
            .collect();
        assert_eq!(card["maintenance on schedule"].met, Some(false));
        assert!(
            card["unplanned downtime incidents"]
                .detail
                .starts_with("0 recorded (dbcadence incident record) + 1 detected"),
            "{:?}",
            card["unplanned downtime incidents"]
        );
        assert_eq!(
            card["backups verified by restore"].value,
            Some(0.1667),
            "1 of 6"
        );
        assert_eq!(card["query-time reduction after tuning"].met, None);
        // Markdown and HTML carry the same numbers.
        assert!(markdown(&report).contains("**Fleet: 45.5% on time** (5 of 11"));
        assert!(html(&report).contains("45.5%"));
    }

    #[test]
    fn the_last_audit_of_each_server_is_on_the_page() {
        let audit = |at: &str, findings: &str, critical: usize| {
            line(
                "audit",
                None,
                at,
                "ok",
                false,
                &format!(
                    r#"{{"mode":"checks","findings":[{findings}],"by_severity":{{"critical":{critical},"high":0,"medium":0,"low":0}}}}"#
                ),
            )
        };
        let lines = vec![
            audit(
                "2026-11-02T04:00:00Z",
                r#""pg_hba_trust:host all all <evil>""#,
                1,
            ),
            audit("2026-11-03T04:00:00Z", "", 0),
            // A rehearsal proves nothing and changes nothing on the page.
            line(
                "audit",
                None,
                "2026-11-04T04:00:00Z",
                "ok",
                true,
                r#"{"mode":"checks","findings":["x:y"],"by_severity":{"critical":9}}"#,
            ),
        ];
        let (_dir, store) = ledger(&lines);
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        assert_eq!(report.audits.len(), 1, "{:?}", report.audits);
        assert_eq!(report.audits[0].at, "2026-11-03T04:00:00Z");
        assert!(report.audits[0].findings.is_empty(), "the last audit wins");
        let page = html(&report);
        assert!(page.contains("<h2>Security audit</h2>"), "{page}");
        assert!(markdown(&report).contains("## Security audit"));
    }

    #[test]
    fn changes_of_the_period_are_listed_as_they_stand_at_its_end() {
        let change = |at: &str, state: &str| {
            line(
                "change",
                None,
                at,
                "ok",
                false,
                &format!(
                    r#"{{"id":"CHG-1","summary":"tune <orders>","risk":"low","standard":false,"window_start":"2026-11-02T01:00:00Z","window_end":"2026-11-02T05:00:00Z","hosts":["pg1"],"tasks":["tune"],"requester":"alice","approver":"bob","state":"{state}","history":[]}}"#
                ),
            )
        };
        let lines = vec![
            change("2026-11-01T10:00:00Z", "requested"),
            change("2026-11-02T06:00:00Z", "closed"),
        ];
        let (_dir, store) = ledger(&lines);
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        assert_eq!(report.changes.len(), 1);
        assert_eq!(report.changes[0].state, "closed");
        let page = html(&report);
        assert!(
            page.contains("<h2>Changes</h2>") && page.contains("tune &lt;orders&gt;"),
            "{page}"
        );
        assert!(markdown(&report).contains("| CHG-1 | tune <orders> | closed |"));
    }

    #[test]
    fn nothing_due_is_no_data_never_a_green_hundred_percent() {
        // The first inventory saw the fleet after the period's last due time: nothing is owed.
        let lines = vec![inventory("2026-11-07T23:00:00Z", &["app"], &[])];
        let (_dir, store) = ledger(&lines);
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        assert_eq!((report.fleet.due, report.fleet.ratio), (0, None));
        assert!(report.fleet.headline().starts_with("no data"));
        let on_schedule = report
            .scorecard
            .iter()
            .find(|c| c.id == CriterionId::Compliance)
            .unwrap();
        assert_eq!((on_schedule.value, on_schedule.met), (None, None));
        let md = markdown(&report);
        assert!(md.contains("no data") && !md.contains("100.0%"), "{md}");
        let page = html(&report);
        assert!(page.contains("no data") && !page.contains("100.0%"));
        let samples = samples(&report, &schedule, period().now);
        assert!(
            !samples
                .iter()
                .any(|s| s.name == "dbcadence_compliance_ratio"),
            "no ratio series when nothing was due"
        );
        assert!(
            check_goal(&report, Some(0.95)).is_ok(),
            "no data is not a failure"
        );
        // A new user sees when the first proof will arrive: the next due time per task.
        assert_eq!(report.next_due.len(), 1);
        assert_eq!(
            report.next_due[0].at.as_deref(),
            Some("2026-11-09T01:00:00Z"),
            "the next 01:00 UTC after now (2026-11-08T12:00)"
        );
        assert!(
            md.contains("## Next due") && md.contains("2026-11-09T01:00:00Z"),
            "{md}"
        );
        assert!(page.contains("Next due"));
    }

    #[test]
    fn the_page_draws_the_goal_it_is_given() {
        let (_dir, store) = ledger(&fixture());
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let goals = Goals {
            compliance: 0.9,
            ..Goals::default()
        };
        let report = build(&store, &schedule, period(), &goals).unwrap();
        let on_schedule = report
            .scorecard
            .iter()
            .find(|c| c.id == CriterionId::Compliance)
            .unwrap();
        assert_eq!(on_schedule.target, 0.9);
        assert!(html(&report).contains(r#""goal":0.9"#));
    }

    #[test]
    fn a_prune_is_never_a_backup() {
        // Every night a prune-only job runs where the backup should have: nothing is on time.
        let mut lines = vec![inventory("2026-10-31T00:00:00Z", &["app"], &[])];
        for day in 1..=7 {
            lines.push(line(
                "prune",
                Some("app"),
                &format!("2026-11-0{day}T01:30:00Z"),
                "ok",
                false,
                r#"{"pruned":[]}"#,
            ));
        }
        let (_dir, store) = ledger(&lines);
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        let t = &report.fleet.tally;
        assert_eq!((t.on_time, t.missed), (0, 7), "{report:#?}");
    }

    #[test]
    fn assignments_pick_databases_by_group_and_labels() {
        let (_dir, store) = ledger(&fixture());
        let text = format!(
            "{SCHEDULE}  - name: copies\n    tasks:\n      - {{task: backup, every: 1w}}\nassignments:\n  - {{template: pg-prod, group: env_production, labels: {{tier: silver}}}}\n  - {{template: copies, group: copies}}\n"
        );
        let schedule = schedule::parse(&text).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        // tier is gold: nothing matches pg-prod; the copy follows the copies template.
        assert_eq!(report.unscheduled, vec!["pg1/app", "pg1/new"]);
        assert_eq!(report.databases.len(), 1);
        assert_eq!(report.databases[0].template, "copies");
        let schedule = schedule::parse(&text.replace("silver", "gold")).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        assert!(report.unscheduled.is_empty());
        assert_eq!(report.databases.len(), 3);
    }

    #[test]
    fn the_fast_timestamp_parser_agrees_with_jiff() {
        for text in [
            "2026-11-24T10:00:00Z",
            "2026-02-28T23:59:59.5Z",
            "2024-02-29T12:00:00.123456789Z",
            "1999-12-31T00:00:00.000001Z",
            "2026-11-24T10:00:00+01:00",
        ] {
            assert_eq!(parse_timestamp(text), text.parse().ok(), "{text}");
        }
        assert_eq!(parse_timestamp("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn a_dropped_database_owes_nothing_after_it_left() {
        let mut lines = fixture();
        lines.push(inventory(
            "2026-11-07T00:00:00Z",
            &["app", "app_bak_20261001"],
            &[],
        ));
        let (_dir, store) = ledger(&lines);
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        let new = report
            .databases
            .iter()
            .find(|d| d.db.as_deref() == Some("new"))
            .unwrap();
        assert_eq!(new.share.due, 2, "Nov 4 and 5 only (last seen Nov 6 00:00)");
    }

    #[test]
    fn metrics_cover_every_scope() {
        let (_dir, store) = ledger(&fixture());
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        let samples = samples(&report, &schedule, period().now);
        let scopes: Vec<&str> = samples
            .iter()
            .filter(|s| s.name == "dbcadence_compliance_ratio")
            .map(|s| s.labels["scope"].as_str())
            .collect();
        assert_eq!(scopes, ["fleet", "env", "task", "database", "database"]);
        let max_age = samples
            .iter()
            .find(|s| s.name == "dbcadence_schedule_max_age_seconds")
            .unwrap();
        assert_eq!(max_age.value, 86_400.0 + 7_200.0, "daily cron + 2h grace");
    }
}
