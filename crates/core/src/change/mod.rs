//! db_change: change records for maintenance. A record moves requested → approved →
//! implementing → validated → closed (or failed → rolled_back → closed); every transition is a
//! ledger record (task change) holding the whole record, so the ledger (file or PostgreSQL) is
//! the store and its history is the audit trail. Each transition is announced to Slack or
//! Mattermost incoming webhooks (JSON POST, bounded timeout, retries) and, with `jira`,
//! mirrored into Jira Service Management (`jira`); a notification that fails is a warning and
//! never loses the record. Modifying modules (tune, logs, patch, restore's replace) consult
//! [`gate`] through their `change_id`.
//!
//! - `notify`: the webhooks, the HTTP agent and the retries.
//! - `jira`: the service desk request and its transitions.

pub mod jira;
pub mod notify;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ledger::{Outcome, Store, Target};
use crate::run::{Done, Recorder, RunOptions};
use crate::secret::SecretString;
use crate::task::Task;
use crate::{Error, Result};

/// Where a change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeState {
    Requested,
    Approved,
    Implementing,
    Validated,
    Closed,
    Failed,
    RolledBack,
}

impl ChangeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeState::Requested => "requested",
            ChangeState::Approved => "approved",
            ChangeState::Implementing => "implementing",
            ChangeState::Validated => "validated",
            ChangeState::Closed => "closed",
            ChangeState::Failed => "failed",
            ChangeState::RolledBack => "rolled_back",
        }
    }

    /// The states a change may move to from this one.
    pub fn next(self) -> &'static [ChangeState] {
        use ChangeState::*;
        match self {
            Requested => &[Approved, Closed],
            Approved => &[Implementing, Closed],
            Implementing => &[Validated, Failed],
            Validated => &[Closed],
            Failed => &[RolledBack, Implementing],
            RolledBack => &[Closed],
            Closed => &[],
        }
    }
}

/// How risky a change is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    #[default]
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// One transition of a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Transition {
    /// The state it moved to.
    pub state: ChangeState,
    /// When (RFC 3339).
    pub at: String,
    /// Who moved it.
    pub by: String,
    /// Why, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A change record, as the ledger keeps it after each transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeRecord {
    /// CHG-<date>-<random>, or the id given at creation (e.g. a ticket number).
    pub id: String,
    /// What the change does.
    pub summary: String,
    /// low, medium or high.
    pub risk: Risk,
    /// A standard (pre-approved) change class: approved as soon as it is requested.
    pub standard: bool,
    /// When the change may be implemented (RFC 3339).
    pub window_start: String,
    /// When the window ends (RFC 3339).
    pub window_end: String,
    /// Hosts it affects (inventory names: servers or databases).
    pub hosts: Vec<String>,
    /// Tasks it covers (tune, logs, patch...).
    pub tasks: Vec<Task>,
    /// Who requested it.
    pub requester: String,
    /// Who approved it.
    pub approver: Option<String>,
    /// Where it stands.
    pub state: ChangeState,
    /// Every transition, oldest first.
    pub history: Vec<Transition>,
    /// Post-execution validation results, attached when validated or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<serde_json::Value>,
    /// The Jira Service Management request mirroring it (e.g. DBA-42), when jira is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jira_key: Option<String>,
}

/// What a db_change run returns: the change it created, moved or read, or the export.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeReport {
    /// The change's current record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeRecord>,
    /// Changes written by an export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported: Option<usize>,
}

/// What db_change does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// Request a new change (approved at once when standard).
    #[default]
    Create,
    /// Move a change to another state.
    Transition,
    /// Read a change.
    Show,
    /// Write every change's current record to export_path (JSON or CSV), for a CMDB.
    Export,
}

/// Arguments of db_change and `dbcadence change`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ChangeRequest {
    /// create (default), transition, show or export.
    #[serde(default)]
    pub action: ChangeAction,
    /// The change (transition, show); at creation an id to use instead of a generated one.
    #[serde(default)]
    pub id: Option<String>,
    /// What the change does (create).
    #[serde(default)]
    pub summary: Option<String>,
    /// low (default), medium or high.
    #[serde(default)]
    pub risk: Risk,
    /// A standard pre-approved change class: approved when requested (low risk only).
    #[serde(default)]
    pub standard: bool,
    /// Window start and end, RFC 3339 (create).
    #[serde(default)]
    pub window_start: Option<String>,
    /// See window_start.
    #[serde(default)]
    pub window_end: Option<String>,
    /// Hosts it affects (inventory names).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Tasks it covers.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// Who acts: the requester at creation, the approver or implementer on a transition.
    #[serde(default)]
    pub by: Option<String>,
    /// The state to move to (transition).
    #[serde(default)]
    pub to: Option<ChangeState>,
    /// Why, in a sentence (kept in the history).
    #[serde(default)]
    pub note: Option<String>,
    /// Post-execution validation results to attach (transition to validated or failed).
    #[serde(default)]
    pub validation: Option<serde_json::Value>,
    /// Slack or Mattermost incoming webhook URLs told of every transition (secrets: the URL
    /// holds the token).
    #[serde(default)]
    #[schemars(extend("x-secret" = true), with = "Vec<String>")]
    #[serde(serialize_with = "crate::secret::serialize_masked_list")]
    pub webhooks: Vec<SecretString>,
    /// Seconds one notification may take.
    #[serde(default = "default_notify_timeout")]
    pub notify_timeout: u64,
    /// Mirror the change into Jira Service Management: a request raised at creation, moved
    /// on every transition.
    #[serde(default)]
    pub jira: Option<jira::JiraConfig>,
    /// Export file (export).
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub export_path: Option<PathBuf>,
    #[serde(flatten)]
    pub run: RunOptions,
}

fn default_notify_timeout() -> u64 {
    5
}

/// The current record of every change in the ledger (the last transition of each id).
pub fn records(store: &Store) -> Result<Vec<ChangeRecord>> {
    let mut by_id: std::collections::BTreeMap<String, ChangeRecord> = Default::default();
    store.scan(|record| {
        if record.task != Task::Change || record.check_mode || record.outcome != Outcome::Ok {
            return;
        }
        if let Some(change) = record.details::<ChangeRecord>() {
            by_id.insert(change.id.clone(), change);
        }
    })?;
    Ok(by_id.into_values().collect())
}

fn find(store: &Store, id: &str) -> Result<ChangeRecord> {
    records(store)?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| Error::invalid("id", format!("no change '{id}' in the ledger")))
}

/// The approval gate a modifying task consults: `change_id` must name a change that is
/// approved (or being implemented) and whose window holds `now`. With `required` and no
/// change id, the task is refused.
pub fn gate(
    store: &Store,
    change_id: Option<&str>,
    required: bool,
    now: jiff::Timestamp,
) -> Result<()> {
    let Some(id) = change_id else {
        if required {
            return Err(Error::invalid(
                "change_id",
                "this host needs an approved change record: create one with db_change, have it approved, then pass its id as change_id",
            ));
        }
        return Ok(());
    };
    let change = find(store, id)?;
    if !matches!(
        change.state,
        ChangeState::Approved | ChangeState::Implementing
    ) {
        return Err(Error::invalid(
            "change_id",
            format!(
                "change {id} is {}, not approved; approve it first (db_change action transition, to approved)",
                change.state.as_str()
            ),
        ));
    }
    let inside = |t: &str| t.parse::<jiff::Timestamp>().ok();
    match (inside(&change.window_start), inside(&change.window_end)) {
        (Some(start), Some(end)) if start <= now && now <= end => Ok(()),
        _ => Err(Error::invalid(
            "change_id",
            format!(
                "change {id} may be implemented from {} to {}, not now",
                change.window_start, change.window_end
            ),
        )),
    }
}

fn jira_warning(change: &ChangeRecord, cause: &str) -> String {
    format!(
        "Jira Service Management was not told of change {} ({}): {cause}; the change is recorded in the ledger",
        change.id,
        change.state.as_str()
    )
}

/// Runs db_change: one transition recorded in the ledger, then the notifications.
pub fn run(request: &ChangeRequest, check_mode: bool) -> Result<Done<ChangeReport>> {
    let store = request.run.ledger()?;
    let now = jiff::Timestamp::now();
    let by = request.by.clone().unwrap_or_else(|| "dbcadence".into());
    let (mut record, changed) = match request.action {
        ChangeAction::Show => (find(&store, required(&request.id, "id")?)?, false),
        ChangeAction::Export => return export(request, &store, check_mode),
        ChangeAction::Create => (create(request, &by, now)?, true),
        ChangeAction::Transition => {
            let mut change = find(&store, required(&request.id, "id")?)?;
            let to = request
                .to
                .ok_or_else(|| Error::invalid("to", "name the state to move to"))?;
            if change.state == to {
                // Already there: nothing to do, and a timer never fails for it.
                (change, false)
            } else {
                move_to(&mut change, to, &by, request, now)?;
                (change, true)
            }
        }
    };
    let mut warnings = Vec::new();
    if changed && !check_mode {
        let timeout = std::time::Duration::from_secs(request.notify_timeout);
        // A Jira request is raised before the record is written, so that its key is kept
        // with the record; when that fails the record is written without it (and the next
        // transition tries again).
        let raised_now = match (&request.jira, &record.jira_key) {
            (Some(config), None) => {
                match jira::create(config, &notify::agent(timeout), &record) {
                    Ok(key) => record.jira_key = Some(key),
                    Err(cause) => warnings.push(jira_warning(&record, &cause)),
                }
                true
            }
            _ => false,
        };
        let recorder = Recorder::start(Task::Change, &request.run, false)
            .hiding(request.jira.as_ref().map(|j| &j.token));
        let target = Target {
            instance: "change".into(),
            db: Some(record.id.clone()),
        };
        let details = serde_json::to_value(&record).unwrap_or_default();
        // The record first: a notification that fails never loses it.
        warnings.extend(recorder.finish(target, Outcome::Ok, true, details, vec![]));
        if let (Some(config), Some(key)) = (&request.jira, &record.jira_key) {
            // A request raised just now starts in the workflow's first state.
            let follow = !raised_now || record.state != ChangeState::Requested;
            if follow
                && let Err(cause) = jira::follow(config, &notify::agent(timeout), key, &record)
            {
                warnings.push(jira_warning(&record, &cause));
            }
        }
        warnings.extend(notify::announce(&request.webhooks, &record, timeout));
    }
    Ok(Done {
        changed,
        msg: format!(
            "change {} is {} ({})",
            record.id,
            record.state.as_str(),
            record.summary
        ),
        diff: None,
        warnings,
        output: ChangeReport {
            change: Some(record),
            exported: None,
        },
    })
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str> {
    value
        .as_deref()
        .ok_or_else(|| Error::invalid(name, format!("{name} is required for this action")))
}

fn create(request: &ChangeRequest, by: &str, now: jiff::Timestamp) -> Result<ChangeRecord> {
    let summary = required(&request.summary, "summary")?.to_string();
    let (start, end) = (
        required(&request.window_start, "window_start")?,
        required(&request.window_end, "window_end")?,
    );
    let parse = |what: &str, t: &str| {
        t.parse::<jiff::Timestamp>()
            .map_err(|_| Error::invalid(what, format!("'{t}' is not an RFC 3339 time")))
    };
    if parse("window_start", start)? >= parse("window_end", end)? {
        return Err(Error::invalid(
            "window_end",
            "the window ends before it starts",
        ));
    }
    if request.standard && request.risk != Risk::Low {
        return Err(Error::invalid(
            "standard",
            "only low-risk changes may be standard (pre-approved)",
        ));
    }
    let id = match &request.id {
        Some(id) => id.clone(),
        None => format!(
            "CHG-{}-{}",
            now.strftime("%Y%m%d"),
            crate::util::random_hex(3)?
        ),
    };
    let mut change = ChangeRecord {
        id,
        summary,
        risk: request.risk,
        standard: request.standard,
        window_start: start.into(),
        window_end: end.into(),
        hosts: request.hosts.clone(),
        tasks: request.tasks.clone(),
        requester: by.into(),
        approver: None,
        state: ChangeState::Requested,
        history: vec![Transition {
            state: ChangeState::Requested,
            at: now.to_string(),
            by: by.into(),
            note: request.note.clone(),
        }],
        validation: None,
        jira_key: None,
    };
    if request.standard {
        move_to(
            &mut change,
            ChangeState::Approved,
            "standard change class",
            request,
            now,
        )?;
    }
    Ok(change)
}

fn move_to(
    change: &mut ChangeRecord,
    to: ChangeState,
    by: &str,
    request: &ChangeRequest,
    now: jiff::Timestamp,
) -> Result<()> {
    if !change.state.next().contains(&to) {
        let allowed: Vec<&str> = change.state.next().iter().map(|s| s.as_str()).collect();
        return Err(Error::invalid(
            "to",
            format!(
                "change {} is {}: it may move to {}, not {}",
                change.id,
                change.state.as_str(),
                if allowed.is_empty() {
                    "nothing (closed)".into()
                } else {
                    allowed.join(" or ")
                },
                to.as_str()
            ),
        ));
    }
    if to == ChangeState::Approved {
        if !change.standard && by == change.requester {
            return Err(Error::invalid(
                "by",
                "a change is approved by someone other than its requester",
            ));
        }
        change.approver = Some(by.into());
    }
    if matches!(to, ChangeState::Validated | ChangeState::Failed) {
        change.validation = request.validation.clone().or(change.validation.take());
    }
    change.state = to;
    change.history.push(Transition {
        state: to,
        at: now.to_string(),
        by: by.into(),
        note: request.note.clone(),
    });
    Ok(())
}

/// Every change's current record to a file, JSON or CSV (by the file's extension).
fn export(request: &ChangeRequest, store: &Store, check_mode: bool) -> Result<Done<ChangeReport>> {
    let path = request
        .export_path
        .as_ref()
        .ok_or_else(|| Error::invalid("export_path", "give the file to write (.json or .csv)"))?;
    let all = records(store)?;
    let text = if path.extension().is_some_and(|e| e == "csv") {
        csv(&all)
    } else {
        serde_json::to_string_pretty(&json!({"changes": all})).unwrap_or_default() + "\n"
    };
    let before = std::fs::read_to_string(path).ok();
    let changed = before.as_deref() != Some(text.as_str());
    if changed && !check_mode {
        crate::files::write_atomically(path, text.as_bytes(), 0o640)?;
    }
    Ok(Done {
        changed,
        msg: format!("{} changes exported to {}", all.len(), path.display()),
        diff: None,
        warnings: vec![],
        output: ChangeReport {
            change: None,
            exported: Some(all.len()),
        },
    })
}

/// CSV with the CMDB's usual columns; fields quoted, quotes doubled.
fn csv(all: &[ChangeRecord]) -> String {
    let cell = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
    let mut out = String::from(
        "id,summary,risk,standard,state,window_start,window_end,hosts,tasks,requester,approver,opened_at,last_change_at\n",
    );
    for c in all {
        let tasks: Vec<&str> = c.tasks.iter().map(|t| t.as_str()).collect();
        let row = [
            cell(&c.id),
            cell(&c.summary),
            cell(c.risk.as_str()),
            cell(&c.standard.to_string()),
            cell(c.state.as_str()),
            cell(&c.window_start),
            cell(&c.window_end),
            cell(&c.hosts.join(" ")),
            cell(&tasks.join(" ")),
            cell(&c.requester),
            cell(c.approver.as_deref().unwrap_or("")),
            cell(c.history.first().map_or("", |h| h.at.as_str())),
            cell(c.history.last().map_or("", |h| h.at.as_str())),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_transitions_and_they_are_named() {
        let request = ChangeRequest {
            summary: Some("patch pg1".into()),
            window_start: Some("2026-11-27T01:00:00Z".into()),
            window_end: Some("2026-11-27T05:00:00Z".into()),
            ..ChangeRequest::default()
        };
        let now = jiff::Timestamp::now();
        let mut c = create(&request, "alice", now).unwrap();
        let e = move_to(&mut c, ChangeState::Validated, "bob", &request, now).unwrap_err();
        assert!(e.to_string().contains("approved or closed"), "{e}");
        assert!(
            move_to(&mut c, ChangeState::Approved, "alice", &request, now).is_err(),
            "self-approval"
        );
        move_to(&mut c, ChangeState::Approved, "bob", &request, now).unwrap();
        assert_eq!(c.approver.as_deref(), Some("bob"));
        for s in [
            ChangeState::Implementing,
            ChangeState::Failed,
            ChangeState::RolledBack,
            ChangeState::Closed,
        ] {
            move_to(&mut c, s, "bob", &request, now).unwrap();
        }
        assert_eq!(c.history.len(), 6);
        assert!(
            move_to(&mut c, ChangeState::Approved, "bob", &request, now)
                .unwrap_err()
                .to_string()
                .contains("nothing (closed)")
        );
    }

    #[test]
    fn csv_quotes_every_field() {
        let request = ChangeRequest {
            summary: Some("say \"hi\", then go".into()),
            window_start: Some("2026-11-27T01:00:00Z".into()),
            window_end: Some("2026-11-27T05:00:00Z".into()),
            ..ChangeRequest::default()
        };
        let c = create(&request, "alice", jiff::Timestamp::now()).unwrap();
        let text = csv(&[c]);
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .contains("\"say \"\"hi\"\", then go\""),
            "{text}"
        );
    }
}
