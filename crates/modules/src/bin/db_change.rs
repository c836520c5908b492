//! db_change: change records for maintenance, with their approval gate and notifications.

use dbcadence_core::change::{self, ChangeReport, ChangeRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support, run_main};

struct DbChange;

impl Module for DbChange {
    type Args = ChangeRequest;
    type Output = ChangeReport;
    type Error = dbcadence_core::Error;

    fn doc() -> ModuleDoc {
        ModuleDoc {
            name: "db_change",
            short_description: "Change records for database maintenance: request, approve, implement, validate, close",
            description: &[
                "A change moves requested → approved → implementing → validated → closed, or implementing → failed → rolled_back → closed (failed may also go back to implementing); requested and approved changes may be closed unimplemented. Any other transition is refused, naming the allowed ones. A change is approved by someone other than its requester; a standard (pre-approved) low-risk change is approved when requested.",
                "Every transition is one ledger record (task change) holding the whole record: id, summary, risk, window, hosts, tasks, requester, approver, every transition with its time and author, and the post-execution validation results; the ledger (file or PostgreSQL) is the store.",
                "The approval gate: db_tune (apply) and db_logs refuse to change anything when run with a change_id that is not approved, or whose window is not now; with require_change they refuse without one (set it for production hosts).",
                "Each transition is posted to the Slack or Mattermost incoming webhooks given (JSON, three tries, notify_timeout seconds each); a notification that fails is a warning and the record stays in the ledger. Webhook URLs are secrets: never echoed, never in the ledger.",
                "action export writes every change's current record to export_path, as JSON or CSV (by the extension), for a CMDB.",
            ],
            examples: r#"- name: Request the patch of the production servers
  dbcadence.maintenance.db_change:
    summary: PostgreSQL 15.20 on the production servers
    risk: medium
    window_start: "2026-12-05T01:00:00Z"
    window_end: "2026-12-05T05:00:00Z"
    hosts: [pg1, pg2]
    tasks: [patch]
    by: alice
    webhooks: ["{{ vault_mattermost_hook }}"]
  register: change

- name: Approve it
  dbcadence.maintenance.db_change:
    action: transition
    id: "{{ change.change.id }}"
    to: approved
    by: bob

- name: Tune under that change
  dbcadence.maintenance.db_tune:
    database: orders
    change_id: "{{ change.change.id }}"
    require_change: true
"#,
            notes: &[
                "Jira Service Management is not supported yet: use its incoming webhook automation on the Slack-style payload, or the CMDB export.",
            ],
            check_mode: Support::Full,
            diff_mode: Support::None,
            requirements: &["Network access from where the module runs to the webhooks."],
            fragments: &[dbcadence_modules::LEDGER],
        }
    }

    fn run(args: ChangeRequest, ctx: &Context) -> Result<Report<ChangeReport>, Self::Error> {
        Ok(dbcadence_modules::report(change::run(
            &args,
            ctx.check_mode,
        )?))
    }
}

fn main() {
    run_main::<DbChange>()
}
