//! db_verify: prove a backup by restoring it into a scratch server.

use dbcadence_core::verify::{self, VerifyReport, VerifyRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support, run_main};
use serde_json::{Map, Value};

/// A verification that ran and said no is a failed task that still returns its findings.
#[derive(Debug)]
enum VerifyError {
    Core(dbcadence_core::Error),
    NotVerified(Box<VerifyReport>),
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::Core(e) => e.fmt(f),
            VerifyError::NotVerified(r) => write!(
                f,
                "backup {} is not verified: {}",
                r.backup.display(),
                r.reason
            ),
        }
    }
}

impl std::error::Error for VerifyError {}

struct DbVerify;

impl Module for DbVerify {
    type Args = VerifyRequest;
    type Output = VerifyReport;
    type Error = VerifyError;

    fn doc() -> ModuleDoc {
        ModuleDoc {
            name: "db_verify",
            short_description: "Prove a backup by restoring it: checksums, restore, integrity checks, row counts",
            description: &[
                "Picks a backup (default: the newest unverified one under backup_dir, optionally of one instance_id and database) and checks the sha256 of every file.",
                "Restores it into a throwaway lab server of the same engine, tuned for loading and removed afterwards; or, with engine and connection arguments, into a scratch database of that server, dropped afterwards.",
                "Runs pg_amcheck (heap and indexes) or CHECK TABLE, compares every table's row count with the manifest, and records the outcome (verified, when, why) in the manifest, the ledger and the metrics.",
            ],
            examples: r#"- name: Verify the newest backup of orders
  dbcadence.maintenance.db_verify:
    backup_dir: /srv/backups
    instance_id: db1
    database: orders
"#,
            notes: &[
                "The task fails when the backup is not verified; the result still carries verified, reason, bad_files, integrity_problems and row_mismatches.",
                "Check mode is not supported by a restore: in check mode the module only reports which backup it would verify (the same choice, filters included).",
                "With nothing left to verify (every matching backup is verified, or none exists) the task is ok and unchanged, with nothing_to_verify set: a verify timer does not fail because the work is done.",
            ],
            check_mode: Support::Partial(
                "Reports which backup a real run would verify (the same choice, filters included); restores nothing.",
            ),
            diff_mode: Support::None,
            requirements: &[
                "PostgreSQL: pg_restore and pg_amcheck (postgresql-client, postgresql-contrib); a throwaway server needs initdb and postgres (postgresql); method physical: tar and pg_verifybackup.",
                "MySQL/MariaDB: mariadb (mariadb-client); a throwaway server needs mariadb-install-db and mariadbd (mariadb-server); method physical: mbstream and mariadb-backup (mariadb-backup).",
            ],
            fragments: &[dbcadence_modules::CONNECTION, dbcadence_modules::LEDGER],
        }
    }

    fn run(args: VerifyRequest, ctx: &Context) -> Result<Report<VerifyReport>, VerifyError> {
        let done = verify::run(&args, ctx.check_mode).map_err(VerifyError::Core)?;
        // A verification that ran and said no fails the task, with its findings.
        let report = &done.output;
        if !report.verified && !report.nothing_to_verify && !ctx.check_mode {
            return Err(VerifyError::NotVerified(Box::new(done.output)));
        }
        Ok(dbcadence_modules::report(done))
    }

    fn failure_fields(error: &VerifyError) -> Map<String, Value> {
        match error {
            VerifyError::NotVerified(report) => match serde_json::to_value(report) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            },
            VerifyError::Core(_) => Map::new(),
        }
    }
}

fn main() {
    run_main::<DbVerify>()
}
