//! db_restore: restore a backup into a server under a database name.

use crate::Failed;
use dbcadence_core::restore::{self, RestoreReport, RestoreRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support};
use serde_json::{Map, Value};

/// The `db_restore` module.
pub struct DbRestore;

impl Module for DbRestore {
    type Args = RestoreRequest;
    type Output = RestoreReport;
    type Error = Failed<RestoreReport>;

    fn doc() -> ModuleDoc {
        ModuleDoc {
            name: "db_restore",
            short_description: "Restore a backup into a PostgreSQL or MySQL/MariaDB server under a database name",
            description: &[
                "Picks the backup under backup_dir: the newest verified one of instance_id and database (allow_unverified also takes backups no restore has proven), the newest taken before a time (before, RFC 3339: a restore as of then), or a given directory (backup).",
                "Checks the sha256 of every file of the backup before the target is touched: a damaged backup restores nothing.",
                "Restores into target_database (default: the backed-up name) on the server of the connection arguments, which must run the same engine. A missing target database is created; an existing empty one is filled; one holding tables is refused unless replace is true, in which case a safety backup of it is taken first (under safety_backup_dir, default backup_dir), named in the result, and the database replaced. With require_change, replacing needs an approved change record (change_id) whose window is now.",
                "Objects belong to the restoring login: PostgreSQL restores with --no-owner --no-privileges; on MariaDB/MySQL rewrite_definers makes the DEFINER of views, routines and triggers CURRENT_USER, so that a production copy lands on a staging server whose accounts differ.",
                "globals skip_existing applies the backup's roles (PostgreSQL) or users and grants (MariaDB) before the data, leaving existing ones as they are; fail_existing stops before anything is restored when one exists. The server's own superuser and the restoring login are never changed.",
                "After the restore every table's row count is compared with the manifest; a difference fails the task (the restored database stays for inspection). Recorded in the ledger as task restore, with its duration.",
                "A drill (drill: true) restores the newest verified backup under <database>_drill_<YYYYMMDD> (into the server of the connection arguments, or without them into a throwaway lab server), runs a smoke query, measures the restore and drops the copy (keep: true keeps it on a given server). It is recorded against the backed-up database, so that schedules (task restore) and compliance count drills, and the report reads its duration as the database's RTO.",
                "A physical backup is restored into data_dir, a new (or empty) directory: never over an existing data directory. PostgreSQL's is checked with pg_verifybackup, MariaDB's prepared with mariadb-backup; owned by the service user, mode 0700. With start: true a server is started on it (no TCP, its socket in <data_dir>.run; PostgreSQL with local trust through an hba file of its own, the backup's pg_hba.conf untouched) and left running.",
            ],
            examples: r#"- name: Last night's orders from production, into staging under a dated name
  dbcadence.maintenance.db_restore:
    engine: postgresql
    login_host: staging-db1
    login_user: dbcadence
    login_password: "{{ vault_staging_password }}"
    backup_dir: /srv/backups
    instance_id: prod-db1
    database: orders
    target_database: orders_20261127

- name: Put orders back as it was at 02:00 (the current one is saved first)
  dbcadence.maintenance.db_restore:
    engine: postgresql
    login_unix_socket: /var/run/postgresql
    backup_dir: /srv/backups
    instance_id: prod-db1
    database: orders
    before: "2026-11-27T02:00:00+01:00"
    replace: true
    change_id: "{{ change.change.id }}"
    require_change: true
"#,
            notes: &[
                "Physical backups are not restored by this module: db_verify proves them by starting a server on a copy.",
                "A restore that fails half-way leaves the target database incomplete and says so; with replace, the replaced database is in the safety backup named in the message.",
            ],
            check_mode: Support::Full,
            diff_mode: Support::Full,
            requirements: &[
                "PostgreSQL: pg_restore (postgresql-client); physical: tar, pg_verifybackup and postgres. MySQL/MariaDB: mariadb (mariadb-client), mariadb-dump for the safety backup; physical: mbstream and mariadb-backup (mariadb-backup), mariadbd.",
                "A drill without a target server, and a started physical restore, run as root (the servers run as postgres or mysql).",
            ],
            fragments: &[crate::CONNECTION, crate::LEDGER],
        }
    }

    fn run(
        args: RestoreRequest,
        ctx: &Context,
    ) -> Result<Report<RestoreReport>, Failed<RestoreReport>> {
        let done = restore::run(&args, ctx.check_mode).map_err(Failed::Core)?;
        if let Some(msg) = done.output.failure() {
            return Err(Failed::Said {
                msg: format!("{msg}: {}", done.msg),
                output: Box::new(done.output),
            });
        }
        Ok(crate::report(done))
    }

    fn failure_fields(error: &Failed<RestoreReport>) -> Map<String, Value> {
        error.fields()
    }
}
