//! `dbcadence change`: change records for people (create, move, show, export). Webhook URLs
//! hold tokens: they come from $DBCADENCE_CHANGE_WEBHOOKS (comma-separated), never a flag.
//! Jira Service Management: $DBCADENCE_JIRA_CONFIG names a YAML or JSON file (url,
//! service_desk_id, request_type_id, user, transitions) and $DBCADENCE_JIRA_TOKEN holds the
//! token.

use std::path::PathBuf;

use clap::Subcommand;
use dbcadence_core::Result;
use dbcadence_core::change::{self, ChangeAction, ChangeRequest, ChangeState, Risk};
use dbcadence_core::task::Task;

use crate::{RunArgs, print_json};

#[derive(Subcommand)]
pub(crate) enum ChangeCommand {
    /// Request a change (a standard low-risk one is approved at once).
    Create {
        #[arg(long)]
        summary: String,
        /// RFC 3339.
        #[arg(long)]
        window_start: String,
        #[arg(long)]
        window_end: String,
        #[arg(long, value_parser = parse_risk, default_value = "low")]
        risk: Risk,
        #[arg(long)]
        standard: bool,
        #[arg(long = "host")]
        hosts: Vec<String>,
        #[arg(long = "task", value_parser = parse_task)]
        tasks: Vec<Task>,
        /// The requester.
        #[arg(long)]
        by: String,
        /// An id to use (a ticket number) instead of a generated one.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Move a change to another state.
    Move {
        #[arg(long)]
        id: String,
        #[arg(long, value_parser = parse_state)]
        to: ChangeState,
        #[arg(long)]
        by: String,
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Print a change's record.
    Show {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Write every change's current record to a file (.json or .csv), for a CMDB.
    Export {
        #[arg(long)]
        path: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
}

fn parse_risk(text: &str) -> std::result::Result<Risk, String> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| "use low, medium or high".into())
}

fn parse_state(text: &str) -> std::result::Result<ChangeState, String> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| "use approved, implementing, validated, closed, failed or rolled_back".into())
}

fn parse_task(text: &str) -> std::result::Result<Task, String> {
    Task::parse(text).ok_or_else(|| format!("unknown task '{text}'"))
}

/// The Jira configuration from $DBCADENCE_JIRA_CONFIG (a file) and $DBCADENCE_JIRA_TOKEN.
fn jira_from_environment() -> Result<Option<change::jira::JiraConfig>> {
    let Some(path) = std::env::var_os("DBCADENCE_JIRA_CONFIG").map(PathBuf::from) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| dbcadence_core::Error::io("read the Jira configuration", &path, e))?;
    let mut value: serde_json::Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| dbcadence_core::Error::invalid("DBCADENCE_JIRA_CONFIG", e.to_string()))?;
    let token = std::env::var("DBCADENCE_JIRA_TOKEN").map_err(|_| {
        dbcadence_core::Error::invalid(
            "DBCADENCE_JIRA_TOKEN",
            "set it to the Jira API token (or personal access token) when DBCADENCE_JIRA_CONFIG is set",
        )
    })?;
    value["token"] = serde_json::Value::String(token);
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| dbcadence_core::Error::invalid("DBCADENCE_JIRA_CONFIG", e.to_string()))
}

/// Runs one change command and prints the record (or the export's count).
pub(crate) fn change(command: ChangeCommand) -> Result<()> {
    let webhooks = std::env::var("DBCADENCE_CHANGE_WEBHOOKS")
        .unwrap_or_default()
        .split(',')
        .filter(|u| !u.trim().is_empty())
        .map(|u| u.trim().to_string().into())
        .collect();
    let (request, run) = match command {
        ChangeCommand::Create {
            summary,
            window_start,
            window_end,
            risk,
            standard,
            hosts,
            tasks,
            by,
            id,
            run,
        } => (
            ChangeRequest {
                action: ChangeAction::Create,
                id,
                summary: Some(summary),
                risk,
                standard,
                window_start: Some(window_start),
                window_end: Some(window_end),
                hosts,
                tasks,
                by: Some(by),
                ..ChangeRequest::default()
            },
            run,
        ),
        ChangeCommand::Move {
            id,
            to,
            by,
            note,
            run,
        } => (
            ChangeRequest {
                action: ChangeAction::Transition,
                id: Some(id),
                to: Some(to),
                by: Some(by),
                note,
                ..ChangeRequest::default()
            },
            run,
        ),
        ChangeCommand::Show { id, run } => (
            ChangeRequest {
                action: ChangeAction::Show,
                id: Some(id),
                ..ChangeRequest::default()
            },
            run,
        ),
        ChangeCommand::Export { path, run } => (
            ChangeRequest {
                action: ChangeAction::Export,
                export_path: Some(path),
                ..ChangeRequest::default()
            },
            run,
        ),
    };
    let request = ChangeRequest {
        webhooks,
        jira: jira_from_environment()?,
        notify_timeout: 5,
        run: run.options()?,
        ..request
    };
    let done = change::run(&request, false)?;
    for w in &done.warnings {
        eprintln!("dbcadence: warning: {w}");
    }
    eprintln!("dbcadence: {}", done.msg);
    print_json(&done.output)
}
