//! db_backup: a logical backup with zstd, checksums, a manifest and atomic completion.

use dbcadence_core::backup::{self, BackupReport, BackupRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support};

/// The `db_backup` module.
pub struct DbBackup;

impl Module for DbBackup {
    type Args = BackupRequest;
    type Output = BackupReport;
    type Error = dbcadence_core::Error;

    fn doc() -> ModuleDoc {
        ModuleDoc {
            name: "db_backup",
            short_description: "Logical backup of one PostgreSQL or MySQL/MariaDB database, proven complete by its manifest",
            description: &[
                "PostgreSQL: pg_dump custom format inside an exported repeatable-read snapshot; row counts per table are taken in that same snapshot.",
                "MySQL/MariaDB: mariadb-dump (or mysqldump) --single-transaction with routines, events and triggers; row counts are read from the dump itself and the binary log position from its header.",
                "The dump streams through zstd (multi-threaded) and sha256 in one pass into <backup_dir>/<instance_id>/<db>/<UTC timestamp>/, written under a .partial name, fsync'd and renamed only once manifest.json is complete.",
                "One backup per instance and database at a time; leftovers of crashed runs are removed by the next run.",
                "Retention (keep_last, keep_daily, keep_weekly, keep_monthly) runs after a successful backup, or alone with action prune; it never deletes the newest backup nor the newest verified one.",
            ],
            examples: r#"- name: Back up the orders database
  dbcadence.maintenance.db_backup:
    engine: postgresql
    login_host: db1.example.com
    login_user: dbcadence
    login_password: "{{ vault_db1_password }}"
    database: orders
    backup_dir: /srv/backups
    instance_id: db1
    retention:
      keep_daily: 7
      keep_weekly: 4
      keep_monthly: 6

- name: Show what retention would remove
  dbcadence.maintenance.db_backup:
    action: prune
    database: orders
    backup_dir: /srv/backups
    instance_id: db1
    retention: {keep_last: 3}
  check_mode: true
  diff: true
"#,
            notes: &[
                "Credentials reach the dump tool through its environment (PGPASSWORD) or a 0600 option file (--defaults-file), never its command line.",
                "Check mode connects, checks that the database exists and reports its size; it writes nothing.",
            ],
            check_mode: Support::Partial(
                "Connects, checks that the database exists and reports its size, or with action prune lists what would be removed; writes nothing.",
            ),
            diff_mode: Support::Partial(
                "Shows the backups kept before and after retention; a new backup itself is not diffed.",
            ),
            requirements: &[
                "PostgreSQL: pg_dump and pg_dumpall (package postgresql-client, at least as new as the server); method physical: pg_basebackup.",
                "MySQL/MariaDB: mariadb-dump or mysqldump (package mariadb-client); method physical: mariadb-backup (package mariadb-backup), run on the database host.",
            ],
            fragments: &[crate::CONNECTION, crate::LEDGER],
        }
    }

    fn run(args: BackupRequest, ctx: &Context) -> Result<Report<BackupReport>, Self::Error> {
        Ok(crate::report(backup::run(&args, ctx.check_mode)?))
    }
}
