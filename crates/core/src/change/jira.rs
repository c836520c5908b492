//! Jira Service Management: a change becomes a request in a service desk
//! (`POST /rest/servicedeskapi/request`), and each later state moves it through the workflow
//! transition the configuration names for that state (`POST .../request/{key}/transition`,
//! with the note as a comment); a state with no transition named adds an internal comment
//! instead. Authentication: Basic with the account's e-mail and API token (Jira Cloud), or a
//! personal access token as Bearer (Data Center). The token is a secret: never echoed, never
//! in the ledger; an error names the site's host only.

use std::collections::BTreeMap;

use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ChangeRecord;
use super::notify::{error_kind, host_of, with_retries};
use crate::secret::{ExposeSecret, SecretString};

/// Where and how changes are mirrored into Jira Service Management.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JiraConfig {
    /// The site, e.g. https://example.atlassian.net.
    pub url: String,
    /// The service desk the requests are raised in.
    pub service_desk_id: String,
    /// The request type (a change request type).
    pub request_type_id: String,
    /// The account's e-mail for Basic authentication with an API token (Jira Cloud); none:
    /// the token is sent as a Bearer personal access token (Data Center).
    #[serde(default)]
    pub user: Option<String>,
    /// API token or personal access token (a secret).
    #[schemars(extend("x-secret" = true), with = "String")]
    #[serde(serialize_with = "crate::secret::serialize_masked_one")]
    pub token: SecretString,
    /// The workflow transition to take per change state, e.g. {approved: Approve,
    /// implementing: Implement, closed: Close}; a state not named adds a comment instead.
    #[serde(default)]
    pub transitions: BTreeMap<String, String>,
}

/// Raises the change's request; returns its issue key (e.g. DBA-42).
pub(super) fn create(
    config: &JiraConfig,
    agent: &ureq::Agent,
    change: &ChangeRecord,
) -> Result<String, String> {
    let description = format!(
        "dbcadence change {}\nRisk: {}\nWindow: {} to {}\nHosts: {}\nTasks: {}\nRequested by: {}",
        change.id,
        change.risk.as_str(),
        change.window_start,
        change.window_end,
        change.hosts.join(", "),
        change
            .tasks
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        change.requester,
    );
    let body = json!({
        "serviceDeskId": config.service_desk_id,
        "requestTypeId": config.request_type_id,
        "requestFieldValues": {
            "summary": format!("[{}] {}", change.id, change.summary),
            "description": description,
        },
    });
    let answer = with_retries(|| {
        send(
            config,
            agent,
            "POST",
            "/rest/servicedeskapi/request",
            Some(&body),
        )
    })?;
    answer["issueKey"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "the answer has no issueKey".to_string())
}

/// Moves request `key` to the change's current state: the transition the configuration
/// names for it (looked up by name among those the request offers now), or a comment.
pub(super) fn follow(
    config: &JiraConfig,
    agent: &ureq::Agent,
    key: &str,
    change: &ChangeRecord,
) -> Result<(), String> {
    let state = change.state.as_str();
    let last = change.history.last();
    let comment = format!(
        "dbcadence: change {} is now {state}{}{}",
        change.id,
        last.map(|t| format!(" (by {})", t.by)).unwrap_or_default(),
        last.and_then(|t| t.note.as_deref())
            .map(|n| format!(": {n}"))
            .unwrap_or_default()
    );
    let base = format!("/rest/servicedeskapi/request/{key}");
    let Some(name) = config.transitions.get(state) else {
        let body = json!({"body": comment, "public": false});
        return with_retries(|| {
            send(
                config,
                agent,
                "POST",
                &format!("{base}/comment"),
                Some(&body),
            )
        })
        .map(|_| ());
    };
    let offered = with_retries(|| send(config, agent, "GET", &format!("{base}/transition"), None))?;
    let id = offered["values"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .and_then(|t| t["id"].as_str().map(str::to_string))
        .ok_or_else(|| format!("{key} offers no transition named '{name}' now"))?;
    let body = json!({"id": id, "additionalComment": {"body": comment}});
    with_retries(|| {
        send(
            config,
            agent,
            "POST",
            &format!("{base}/transition"),
            Some(&body),
        )
    })
    .map(|_| ())
}

/// One REST call; the JSON answer (null when there is none).
fn send(
    config: &JiraConfig,
    agent: &ureq::Agent,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let url = format!("{}{path}", config.url.trim_end_matches('/'));
    let token = config.token.expose_secret();
    let authorization = match &config.user {
        Some(user) => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
        ),
        None => format!("Bearer {token}"),
    };
    let response = if method == "GET" {
        agent
            .get(&url)
            .header("Authorization", &authorization)
            .header("Accept", "application/json")
            .call()
    } else {
        agent
            .post(&url)
            .header("Authorization", &authorization)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .send(body.map(Value::to_string).unwrap_or_default())
    };
    match response {
        Ok(mut r) if r.status().is_success() => {
            let text = r.body_mut().read_to_string().unwrap_or_default();
            Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
        }
        Ok(r) => Err(format!(
            "{method} {path} on {}: HTTP {}",
            host_of(&url),
            r.status().as_u16()
        )),
        Err(e) => Err(format!(
            "{method} {path} on {}: {}",
            host_of(&url),
            error_kind(&e)
        )),
    }
}
