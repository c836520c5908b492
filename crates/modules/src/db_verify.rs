//! db_verify: prove a backup by restoring it into a scratch server.

use crate::Failed;
use dbcadence_core::verify::{self, VerifyReport, VerifyRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support};
use serde_json::{Map, Value};

/// The `db_verify` module.
pub struct DbVerify;

impl Module for DbVerify {
    type Args = VerifyRequest;
    type Output = VerifyReport;
    type Error = Failed<VerifyReport>;

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
                "The task fails when the backup is not verified; the result still carries verified, reason, bad_files, integrity_problems, row_mismatches and definition_problems.",
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
            fragments: &[crate::CONNECTION, crate::LEDGER],
        }
    }

    fn run(
        args: VerifyRequest,
        ctx: &Context,
    ) -> Result<Report<VerifyReport>, Failed<VerifyReport>> {
        let done = verify::run(&args, ctx.check_mode).map_err(Failed::Core)?;
        // A verification that ran and said no fails the task, with its findings.
        let report = &done.output;
        if !report.verified && !report.nothing_to_verify && !ctx.check_mode {
            return Err(Failed::Said {
                msg: format!(
                    "backup {} is not verified: {}",
                    report.backup.display(),
                    report.reason
                ),
                output: Box::new(done.output),
            });
        }
        Ok(crate::report(done))
    }

    fn failure_fields(error: &Failed<VerifyReport>) -> Map<String, Value> {
        error.fields()
    }
}
