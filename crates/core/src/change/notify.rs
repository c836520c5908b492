//! Telling people about a change: every transition is posted to Slack or Mattermost incoming
//! webhooks (the same JSON, `{"text": ...}`, with the record attached for bots), with a bounded
//! timeout and three tries. A failure is a warning that names the webhook by host only: the URL
//! holds the token.

use std::time::Duration;

use serde_json::json;

use super::ChangeRecord;
use crate::secret::{ExposeSecret, SecretString};

pub(super) const TRIES: u32 = 3;

/// Posts the record to every webhook; returns the warnings for those that failed.
pub fn announce(
    webhooks: &[SecretString],
    change: &ChangeRecord,
    timeout: Duration,
) -> Vec<String> {
    if webhooks.is_empty() {
        return vec![];
    }
    let agent = agent(timeout);
    let last = change.history.last();
    let text = format!(
        "Change {} is now *{}*: {} (risk {}, window {} to {}, hosts {}){}",
        change.id,
        change.state.as_str(),
        change.summary,
        change.risk.as_str(),
        change.window_start,
        change.window_end,
        if change.hosts.is_empty() {
            "-".into()
        } else {
            change.hosts.join(", ")
        },
        last.map(|t| format!(" by {}", t.by)).unwrap_or_default()
    );
    let body =
        json!({"text": text, "username": "dbcadence", "dbcadence_change": change}).to_string();
    let mut warnings = Vec::new();
    for hook in webhooks {
        let url = hook.expose_secret();
        if let Err(cause) = with_retries(|| post(&agent, url, &body)) {
            warnings.push(format!(
                "the notification to the webhook on {} failed after {TRIES} tries ({cause}); the change is recorded in the ledger",
                host_of(url)
            ));
        }
    }
    warnings
}

/// Tries `call` up to TRIES times, a little longer apart each time; the last error.
pub(super) fn with_retries<T>(mut call: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let mut outcome = call();
    for attempt in 1..TRIES {
        if outcome.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
        outcome = call();
    }
    outcome
}

pub(super) fn agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::config::Config::builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                // The system's trusted CAs: an internal Jira or chat server's CA counts.
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build();
    ureq::Agent::new_with_config(config)
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> Result<(), String> {
    match agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
    {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
        // The error text may quote the URL: only its kind is kept.
        Err(e) => Err(error_kind(&e)),
    }
}

pub(super) fn error_kind(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::Io(io) => format!("{:?}", io.kind()),
        ureq::Error::HostNotFound => "host not found".into(),
        _ => "request failed".into(),
    }
}

/// The webhook's host, for messages: never the path, which holds the token.
pub(super) fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("?")
        .to_string()
}
