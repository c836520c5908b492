//! db_patch: a server's patch level, the gates a patch must pass, and the patch itself.

use crate::Failed;
use dbcadence_core::patch::{self, PatchReport, PatchRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support};
use serde_json::{Map, Value};

/// The `db_patch` module.
pub struct DbPatch;

impl Module for DbPatch {
    type Args = PatchRequest;
    type Output = PatchReport;
    type Error = Failed<PatchReport>;

    fn doc() -> ModuleDoc {
        ModuleDoc {
            name: "db_patch",
            short_description: "Minor-release patching of a PostgreSQL or MySQL/MariaDB server, behind gates, with post-validation",
            description: &[
                "Facts: the running version, the installed and offered package versions (through installed_command and candidate_command; the platform's defaults: dpkg-query and apt-cache policy on debian, rpm and dnf repoquery on redhat, dbcadence lab packages on lab), the target version (given, or offered), minor releases behind, the end of life of the major version from the project's data file (with its source and date) and a status: current, behind or eol.",
                "Gates, each with its evidence and verdict: a verified backup younger than max_backup_age_hours of every user database (under backup_dir), no transaction open longer than max_transaction_seconds, replication lag under max_replication_lag_seconds, min_free_bytes free on the data directory's file system, inside the window, an approved change record (change_id; required with require_change).",
                "With action apply, when every gate passed (or is named in ignore_gates): the upgrade command (skipped when the target package is installed already and only a restart is pending), the restart command, a bounded wait (restart_timeout_seconds) until the server accepts connections, then the post-validation: the server reports the target version; PostgreSQL updates outdated extensions (ALTER EXTENSION ... UPDATE in every database), MariaDB runs mariadb-upgrade; a smoke query in every user database; the server's log since the restart holds no error (log_path, or the file the server names).",
                "A failure at any step fails the task with the state the server is in (untouched, down, or up on another version) and the way back (state and rollback in the result, and in the ledger). Minor releases only: another major version, or an older one, is refused.",
                "A second run on a patched server reports changed=false (nothing to do); force runs the steps again.",
                "Check mode reads the facts and gates and lists the steps it would take; nothing changes.",
            ],
            examples: r#"- name: Is pg1 behind, and may it be patched now?
  dbcadence.maintenance.db_patch:
    engine: postgresql
    login_unix_socket: /var/run/postgresql
    instance_id: pg1
    backup_dir: /srv/backups
    window: {start: "01:00", end: "05:00", time_zone: Europe/Paris}
    change_id: CHG-20261205-1a2b3c
    require_change: true
  register: patch

- name: Patch it (Debian defaults: apt-get install --only-upgrade postgresql-15, systemctl restart postgresql@15-main)
  dbcadence.maintenance.db_patch:
    engine: postgresql
    login_unix_socket: /var/run/postgresql
    instance_id: pg1
    action: apply
    backup_dir: /srv/backups
    change_id: CHG-20261205-1a2b3c
    require_change: true
    log_path: /var/log/postgresql/postgresql-15-main.log
"#,
            notes: &[
                "Run it on the database server (the inventory script's servers hosts): the package versions and the free disk are read there, and the upgrade and restart run there (become: true for apt-get and systemctl).",
                "Commands are argument lists, never shell text; placeholders {package}, {major}, {instance}, {lab_dir} and, in upgrade and restart, {version} are filled in.",
                "Patch replicas before their primary: the replication_lag gate stops a primary whose replicas lag.",
            ],
            check_mode: Support::Full,
            diff_mode: Support::None,
            requirements: &[
                "dpkg-query, apt-cache, apt-get and systemctl (Debian family); rpm, dnf and systemctl (RHEL family); or the commands given.",
                "mariadb-upgrade for MariaDB servers.",
            ],
            fragments: &[crate::CONNECTION, crate::LEDGER],
        }
    }

    fn run(args: PatchRequest, ctx: &Context) -> Result<Report<PatchReport>, Self::Error> {
        let done = patch::run(&args, ctx.check_mode).map_err(Failed::Core)?;
        if let Some(msg) = done.output.failure.clone() {
            return Err(Failed::Said {
                msg,
                output: Box::new(done.output),
            });
        }
        Ok(crate::report(done))
    }

    fn failure_fields(error: &Failed<PatchReport>) -> Map<String, Value> {
        error.fields()
    }
}
