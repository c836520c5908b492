//! db_audit: the security checks of one server, or the failed logins in its log.

use dbcadence_core::audit::{self, AuditReport, AuditRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support};

/// The `db_audit` module.
pub struct DbAudit;

impl Module for DbAudit {
    type Args = AuditRequest;
    type Output = AuditReport;
    type Error = dbcadence_core::Error;

    fn doc() -> ModuleDoc {
        ModuleDoc {
            name: "db_audit",
            short_description: "Security audit of a PostgreSQL or MySQL/MariaDB server, and failed logins from its log",
            description: &[
                "mode checks (the default) runs the server's security checks; each finding has a stable check id, the object it concerns, a severity, evidence, remediation text and tags (the CIS benchmark section, GDPR and HIPAA articles).",
                "PostgreSQL: superusers beyond allowed_superusers, trust, password (clear text) and md5 lines in pg_hba.conf (read through pg_hba_file_rules), password_encryption, TLS not offered or not required for remote hosts, log_connections and log_disconnections off, CREATE on the public schema for PUBLIC in each database, login roles without a password, a test database, a version past its end of support.",
                "MySQL/MariaDB: accounts with SUPER (or ALL PRIVILEGES) beyond allowed_superusers, anonymous accounts, root reachable from another host, accounts without a password or other authentication, wildcard hosts, a test database, TLS not offered or not required, failed logins not logged (log_warnings below 2), a version past its end of support.",
                "suppressions accept a risk for a check and object until a date; a suppressed finding is still listed, marked, and counts again after its expiry.",
                "mode auth_failures reads the server's log from where the last read stopped (a state file per instance; a rotated or truncated log is read from its start) and counts failed logins per user and source; the total goes to the counter dbcadence_auth_failures_total{instance}, the detail to the ledger, and a user and source at or above failure_threshold in one read is a finding.",
                "The task reports changed only when the findings differ from the last audit of the same server in the ledger (new or resolved ones are listed).",
            ],
            examples: r#"- name: Audit every server
  dbcadence.maintenance.db_audit:
    engine: postgresql
    login_host: db1.example.com
    login_user: dbcadence
    login_password: "{{ vault_db1_password }}"
    instance_id: db1
    allowed_superusers: [postgres, dbcadence]
    suppressions:
      - {check: pg_hba_trust, object: "local all all", reason: "CHG-1234: local admin access", expires: "2027-03-31"}

- name: Count failed logins since the last run
  dbcadence.maintenance.db_audit:
    engine: mysql
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: dbcadence
    login_password: "{{ vault_my1_password }}"
    instance_id: my1
    mode: auth_failures
    log_path: /var/log/mysql/error.log
"#,
            notes: &[
                "The audit acts on a server, not a database: run it on the server hosts of the inventory script (group servers), once per instance.",
                "auth_failures needs the log on the host where the module runs (the database server itself, or log_path on a shared file system). PostgreSQL: log_connections = on gives the source of a password failure.",
                "Check mode runs the checks and reads the log without saving the read position.",
            ],
            check_mode: Support::Full,
            diff_mode: Support::Partial(
                "The active findings (check:object) before and after this run.",
            ),
            requirements: &[
                "PostgreSQL: a superuser (or pg_read_all_settings and SELECT on pg_authid) to read pg_hba_file_rules and pg_authid.",
                "MySQL/MariaDB: SELECT on mysql.user and mysql.global_priv.",
            ],
            fragments: &[crate::CONNECTION, crate::LEDGER],
        }
    }

    fn run(args: AuditRequest, ctx: &Context) -> Result<Report<AuditReport>, Self::Error> {
        Ok(crate::report(audit::run(&args, ctx.check_mode)?))
    }
}
