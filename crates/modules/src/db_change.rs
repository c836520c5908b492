//! db_change: change records for maintenance, with their approval gate and notifications.

use dbcadence_core::change::{self, ChangeReport, ChangeRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support};

/// The `db_change` module.
pub struct DbChange;

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
                "The approval gate: db_tune (apply), db_logs and db_patch refuse to change anything when run with a change_id that is not approved, or whose window is not now; with require_change they refuse without one (set it for production hosts).",
                "Each transition is posted to the Slack or Mattermost incoming webhooks given (JSON, three tries, notify_timeout seconds each); a notification that fails is a warning and the record stays in the ledger. Webhook URLs are secrets: never echoed, never in the ledger.",
                "With jira, the change is mirrored into Jira Service Management: a request is raised in the service desk when the change is created (its key, e.g. DBA-42, is kept in the record as jira_key), and every later transition takes the workflow transition named for the new state in jira.transitions (looked up by name among those the request offers) with the note as a comment, or adds an internal comment when none is named. Basic authentication with jira.user and an API token (Jira Cloud), or a Bearer personal access token without user (Data Center). When Jira cannot be reached the record is written without the key and the next transition raises the request. The token is a secret.",
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
    jira:
      url: https://example.atlassian.net
      service_desk_id: "4"
      request_type_id: "52"
      user: dba-bot@example.com
      token: "{{ vault_jira_token }}"
      transitions: {approved: Approve, implementing: Implement, closed: Close}
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
                "Pass the same webhooks and jira on every transition: the module keeps no configuration between runs.",
            ],
            check_mode: Support::Full,
            diff_mode: Support::None,
            requirements: &["Network access from where the module runs to the webhooks and Jira."],
            fragments: &[crate::LEDGER],
        }
    }

    fn run(args: ChangeRequest, ctx: &Context) -> Result<Report<ChangeReport>, Self::Error> {
        Ok(crate::report(change::run(&args, ctx.check_mode)?))
    }
}
