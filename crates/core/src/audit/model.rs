//! What a security audit is made of: the request (module arguments), a finding with its
//! evidence, remediation and tags, a suppression for an accepted risk, and the failed logins
//! read from a server's log.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::ConnectionArgs;
use crate::run::RunOptions;

/// What db_audit does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditMode {
    /// The configuration checks (accounts, authentication, TLS, logging, versions).
    #[default]
    Checks,
    /// Failed logins in the server's log since the last read.
    AuthFailures,
}

/// An accepted risk: a finding that is reported as suppressed until the expiry date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// The check id, e.g. `pg_hba_trust`.
    pub check: String,
    /// The object it concerns, as the finding names it; `*` for every object of the check.
    #[serde(default = "any_object")]
    pub object: String,
    /// Why the risk is accepted (who, ticket).
    pub reason: String,
    /// Last day the suppression holds (YYYY-MM-DD); after it the finding counts again.
    pub expires: String,
}

fn any_object() -> String {
    "*".into()
}

/// Arguments of db_audit and `dbcadence audit`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditRequest {
    #[serde(flatten)]
    pub connection: ConnectionArgs,
    /// Instance id for the ledger and the state (use the inventory's id); default: engine,
    /// host and port.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// checks (default) or auth_failures.
    #[serde(default)]
    pub mode: AuditMode,
    /// Accounts allowed to be superusers (PostgreSQL role names; MariaDB `user@host`).
    #[serde(default = "default_allowed_superusers")]
    pub allowed_superusers: Vec<String>,
    /// Accepted risks.
    #[serde(default)]
    pub suppressions: Vec<Suppression>,
    /// The server's log (auth_failures). Default: the file the server says it writes
    /// (PostgreSQL's current log file with logging_collector; MariaDB's log_error).
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub log_path: Option<PathBuf>,
    /// Where the read position in the log is kept between runs. Default: beside the ledger.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub state_dir: Option<PathBuf>,
    /// Failed logins from one user and source in one read that raise a finding.
    #[serde(default = "default_threshold")]
    pub failure_threshold: u64,
    #[serde(flatten)]
    pub run: RunOptions,
}

impl AuditRequest {
    /// A request with every default (what the timers run).
    pub fn defaults(connection: ConnectionArgs) -> AuditRequest {
        AuditRequest {
            connection,
            instance_id: None,
            mode: AuditMode::Checks,
            allowed_superusers: default_allowed_superusers(),
            suppressions: vec![],
            log_path: None,
            state_dir: None,
            failure_threshold: default_threshold(),
            run: RunOptions::default(),
        }
    }
}

fn default_allowed_superusers() -> Vec<String> {
    vec![
        "postgres".into(),
        "root@localhost".into(),
        "mariadb.sys@localhost".into(),
    ]
}

fn default_threshold() -> u64 {
    10
}

/// How much a finding matters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One check that failed on one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditFinding {
    /// The check's stable id, e.g. `pg_hba_trust`.
    pub check: String,
    /// The account, rule, setting or database concerned.
    pub object: String,
    /// low, medium, high or critical.
    pub severity: Severity,
    /// What is wrong, in one sentence.
    pub title: String,
    /// The facts it rests on.
    pub evidence: Value,
    /// How to fix it.
    pub remediation: String,
    /// Frameworks it maps to: a CIS benchmark section where one exists, GDPR, HIPAA.
    pub tags: Vec<String>,
    /// Set when an unexpired suppression accepts this risk: the reason and expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
}

impl AuditFinding {
    /// `check:object`, the finding's identity across runs.
    pub fn key(&self) -> String {
        format!("{}:{}", self.check, self.object)
    }
}

/// Failed logins of one user from one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuthFailures {
    /// The user name the client gave.
    pub user: String,
    /// Client address, `local` for the Unix socket.
    pub source: String,
    /// Failed logins in this read.
    pub count: u64,
}

/// What one read of the server log found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuthReport {
    /// The log read.
    pub log_path: PathBuf,
    /// Bytes read this time.
    pub bytes_read: u64,
    /// Whether the log was rotated or truncated since the last read (read from its start).
    pub restarted: bool,
    /// Failed logins this time, by user and source.
    pub failures: Vec<AuthFailures>,
    /// Their sum.
    pub total: u64,
}

/// What a db_audit run found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditReport {
    /// Instance id in the ledger.
    pub instance_id: String,
    /// Findings, suppressed ones included (marked), worst first.
    pub findings: Vec<AuditFinding>,
    /// Unsuppressed findings by severity.
    pub counts: BTreeMap<String, usize>,
    /// Findings that appeared since the last audit of this instance.
    pub new: Vec<String>,
    /// Findings of the last audit that are gone.
    pub resolved: Vec<String>,
    /// The failed-login read (mode auth_failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthReport>,
    /// What could not be checked, and why.
    pub limits: Vec<String>,
}
