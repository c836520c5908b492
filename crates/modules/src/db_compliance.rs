//! db_compliance: schedule compliance and the success-criteria scorecard, from the ledger.

use dbcadence_core::report::{self, ComplianceOutcome, ComplianceRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support};

/// The `db_compliance` module.
pub struct DbCompliance;

impl Module for DbCompliance {
    type Args = ComplianceRequest;
    type Output = ComplianceOutcome;
    type Error = dbcadence_core::Error;

    fn doc() -> ModuleDoc {
        ModuleDoc {
            name: "db_compliance",
            short_description: "Schedule compliance and the success-criteria scorecard from the ledger",
            description: &[
                "For a period, every (database, task) bound to a schedule: the occurrences due (cron in the window's time zone, or intervals) against the runs in the ledger within grace, as on_time, late, missed or failed; compliance per database, task, environment and fleet.",
                "The fleet comes from the inventory runs in the ledger: a database added mid-period owes nothing before it appeared, one that was dropped nothing after; replicas and backup copies owe nothing unless an assignment names them.",
                "The scorecard: compliance against its goal, unplanned downtime incidents per quarter (recorded with `dbcadence incident record` or detected by inventory availability checks), share of backups verified by a restore, alert false positives and negatives per 30 days (`dbcadence alert feedback`), query-time reduction after tuning.",
                "Writes dbcadence_compliance_ratio{scope} and dbcadence_schedule_max_age_seconds into the metrics, and the report as JSON, Markdown or a self-contained HTML page with charts to output_path (rewritten only when its content changed).",
            ],
            examples: r#"- name: Weekly compliance report for the DBA team
  dbcadence.maintenance.db_compliance:
    schedule_file: /etc/dbcadence/schedule.yml
    period_days: 30
    output_path: /var/www/dbcadence/compliance.html
    output_format: html
    fail_under: 0.95
    metrics_dir: /var/lib/prometheus/node-exporter

- name: Compliance of a schedule given as role variables
  dbcadence.maintenance.db_compliance:
    schedule: "{{ dbcadence_schedule }}"
    ledger_url: postgresql://dbcadence@ledger.example:5432/dbcadence?sslmode=verify-full
    ledger_password: "{{ vault_ledger_password }}"
  register: compliance
"#,
            notes: &[
                "Check mode builds the report and writes neither the file nor the metrics.",
                "Without a schedule or schedule_file, the shipped templates apply (`dbcadence schedule init` prints them).",
            ],
            check_mode: Support::Full,
            diff_mode: Support::Partial(
                "Shows the report file before and after for JSON and Markdown; an HTML page is reported changed without a diff.",
            ),
            requirements: &["Read access to the ledger (file or PostgreSQL table)."],
            fragments: &[crate::LEDGER],
        }
    }

    fn run(
        args: ComplianceRequest,
        ctx: &Context,
    ) -> Result<Report<ComplianceOutcome>, dbcadence_core::Error> {
        Ok(crate::report(report::run(&args, ctx.check_mode)?))
    }
}
