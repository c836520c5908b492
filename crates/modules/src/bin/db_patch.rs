//! db_patch: a server's patch level and the gates a patch must pass (applying: not yet).

use dbcadence_core::patch::{self, PatchReport, PatchRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support, run_main};

struct DbPatch;

impl Module for DbPatch {
    type Args = PatchRequest;
    type Output = PatchReport;
    type Error = dbcadence_core::Error;

    fn doc() -> ModuleDoc {
        ModuleDoc {
            name: "db_patch",
            short_description: "Patch level of a PostgreSQL or MySQL/MariaDB server and the gates a patch must pass",
            description: &[
                "Facts: the running version, the installed and offered package versions (through installed_command and candidate_command: dpkg-query and apt-cache policy by default; override them for other package managers), the target version (given, or offered), minor releases behind, the end of life of the major version from the project's data file (with its source and date) and a status: current, behind or eol.",
                "Gates, each with its evidence and verdict: a verified backup younger than max_backup_age_hours of every user database (under backup_dir), no transaction open longer than max_transaction_seconds, replication lag under max_replication_lag_seconds, min_free_bytes free on the data directory's file system, inside the window, an approved change record (change_id; required with require_change).",
                "Applying a patch (upgrade, restart, post-validation) is not implemented yet: action apply is refused and changes nothing.",
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
"#,
            notes: &[
                "Run it on the database server (the inventory script's servers hosts): the package versions and the free disk are read there.",
            ],
            check_mode: Support::Full,
            diff_mode: Support::None,
            requirements: &[
                "dpkg-query and apt-cache (Debian family), or installed_command and candidate_command.",
            ],
            fragments: &[dbcadence_modules::CONNECTION, dbcadence_modules::LEDGER],
        }
    }

    fn run(args: PatchRequest, ctx: &Context) -> Result<Report<PatchReport>, Self::Error> {
        Ok(dbcadence_modules::report(patch::run(
            &args,
            ctx.check_mode,
        )?))
    }
}

fn main() {
    run_main::<DbPatch>()
}
