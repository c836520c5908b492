//! db_tune: find what slows a database down, apply the fixes the policy allows, measure the
//! gain.

use crate::Failed;
use dbcadence_core::tune::{self, TuneReport, TuneRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support};
use serde_json::{Map, Value};

/// The `db_tune` module.
pub struct DbTune;

impl Module for DbTune {
    type Args = TuneRequest;
    type Output = TuneReport;
    type Error = Failed<TuneReport>;

    fn doc() -> ModuleDoc {
        ModuleDoc {
            name: "db_tune",
            short_description: "Find what slows a PostgreSQL or MySQL/MariaDB database down, fix it under timeouts, and measure the gain",
            description: &[
                "Reads the server's statistics and catalog and returns findings, each with an id, severity, object, reason and the evidence it rests on: stale statistics, dead tuples, transaction-ID wraparound age, table and index bloat, unindexed foreign keys, sequential-scan-heavy tables, missing indexes, unused, duplicate, redundant and invalid indexes (PostgreSQL); stale statistics, fragmentation, unused, duplicate and redundant indexes and missing indexes (MariaDB/MySQL).",
                "Missing indexes come from the plans of the heaviest statements (pg_stat_statements on PostgreSQL, performance_schema digests on MariaDB) and of the workload file; on PostgreSQL with hypopg each advice lists the statements it helps with their planned cost now and with a hypothetical index.",
                "Applies the fixes the policy allows: ANALYZE, VACUUM (ANALYZE), REINDEX INDEX CONCURRENTLY and online table rebuilds always; CREATE INDEX CONCURRENTLY (online ADD INDEX on MariaDB) only with apply_index_advice; dropping unused or duplicate indexes only with drop_unused_indexes or drop_duplicate_indexes. Every fix runs under lock_timeout and statement_timeout (MariaDB lock_wait_timeout and max_statement_time), so it gives up instead of queueing writers behind it; a failed CREATE INDEX CONCURRENTLY leaves no invalid index behind.",
                "rehearse: true tries the plan on a non-production copy first: the newest verified backup under backup_dir is restored into a throwaway server (db_verify's machinery), its statistics brought up to date, the workload replayed, the plan applied (with each statement's duration) and the workload replayed again; the real server is not changed. With require_rehearsal: true a real apply refuses unless a rehearsal of the same plan (same statements) showed a gain.",
                "action measure changes nothing: it compares the server's statement statistics now with the snapshot the last apply kept before its fixes (mean time per statement, weighted by calls since, over the statements that ran in both windows) and records it as the task tune_measure.",
                "With a workload file, replays it before and after the fixes (the same statements, parameters drawn from a fixed seed) and reports p50, p95 and mean per statement and overall; the mean times go to the ledger as query_time_before_ms and query_time_after_ms, which the compliance scorecard's query-time reduction reads.",
            ],
            examples: r#"- name: Show what tuning would do, with the DDL
  dbcadence.maintenance.db_tune:
    engine: postgresql
    login_host: db1.example.com
    login_user: dbcadence
    login_password: "{{ vault_db1_password }}"
    database: orders
  check_mode: true
  diff: true

- name: Rehearse the plan on the newest verified backup, restored into a throwaway server
  dbcadence.maintenance.db_tune:
    engine: postgresql
    login_host: db1.example.com
    login_user: dbcadence
    login_password: "{{ vault_db1_password }}"
    database: orders
    instance_id: db1
    apply_index_advice: true
    rehearse: true
    backup_dir: /srv/backups
    workload: /etc/dbcadence/orders-workload.sql

- name: Tune in the maintenance window, creating advised indexes, and measure
  dbcadence.maintenance.db_tune:
    engine: postgresql
    login_host: db1.example.com
    login_user: dbcadence
    login_password: "{{ vault_db1_password }}"
    database: orders
    instance_id: db1
    apply_index_advice: true
    workload: /etc/dbcadence/orders-workload.sql
    require_rehearsal: true
    window: {start: "01:00", end: "05:00", time_zone: Europe/Paris}

- name: A week later, the gain observed on real traffic
  dbcadence.maintenance.db_tune:
    engine: postgresql
    login_host: db1.example.com
    login_user: dbcadence
    login_password: "{{ vault_db1_password }}"
    database: orders
    instance_id: db1
    action: measure
"#,
            notes: &[
                "A workload file holds one statement per line; $[1..1000] draws an integer from a range and $[a|b|c] one of the words. Lines starting with -- are comments.",
                "PostgreSQL: pg_stat_statements must be in shared_preload_libraries and created in the database (CREATE EXTENSION pg_stat_statements) for the heaviest statements to be searched; CREATE EXTENSION hypopg gives hypothetical-index costs. What could not be examined is listed in limits.",
                "MariaDB: performance_schema=ON (a restart) for unused indexes and statement digests; PROCESS for InnoDB's modification counters.",
                "Check mode changes nothing and reports changed when fixes would run; a run with action plan changes nothing and reports changed false. Both are recorded as rehearsals: they do not count as tuning in the compliance report.",
                "A fix that fails (a lock it could not get in lock_timeout) fails the task after the other fixes ran; the result lists every action with its status.",
            ],
            check_mode: Support::Full,
            diff_mode: Support::Partial(
                "The DDL that would run (check mode) or ran, one statement per line; nothing else is compared.",
            ),
            requirements: &[
                "PostgreSQL 13 or newer; for missing-index advice pg_stat_statements, and hypopg for its costs (Debian package postgresql-<version>-hypopg).",
                "MariaDB 10.6 or newer (or MySQL 8) with performance_schema=ON for usage-based findings.",
            ],
            fragments: &[crate::CONNECTION, crate::LEDGER],
        }
    }

    fn run(args: TuneRequest, ctx: &Context) -> Result<Report<TuneReport>, Failed<TuneReport>> {
        let done = tune::run(&args, ctx.check_mode).map_err(Failed::Core)?;
        if let Some(msg) = done.output.failure() {
            return Err(Failed::Said {
                msg,
                output: Box::new(done.output),
            });
        }
        Ok(crate::report(done))
    }

    fn failure_fields(error: &Failed<TuneReport>) -> Map<String, Value> {
        error.fields()
    }
}
