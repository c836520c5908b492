//! db_audit: the security checks of one server, each finding with a stable id, severity,
//! evidence, remediation and tags; accepted risks suppressed until they expire; and the failed
//! logins in the server's log since the last read (auth.rs). A run reports changed only when
//! its findings differ from the last audit of the same server in the ledger.
//!
//! The checks themselves are engine SQL (engine/<engine>/audit.rs); this file applies
//! suppressions, compares with the last run, records and counts.

pub mod auth;
pub mod model;

use std::path::PathBuf;

use serde_json::{Value, json};

pub use model::*;

use crate::engine;
use crate::ledger::{Outcome, Store, Target};
use crate::metrics::Sample;
use crate::run::{Change, Done, Recorder};
use crate::task::Task;
use crate::{Error, Result};

/// A finding of one check on one object.
pub(crate) fn finding(
    check: &str,
    object: &str,
    severity: Severity,
    title: &str,
    evidence: Value,
    remediation: &str,
    tags: &[&str],
) -> AuditFinding {
    AuditFinding {
        check: check.into(),
        object: object.into(),
        severity,
        title: title.into(),
        evidence,
        remediation: remediation.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        suppressed: None,
    }
}

/// A server version past its end of support: the hand-off to patching.
pub(crate) fn old_version(version: &str, oldest: &str) -> AuditFinding {
    finding(
        "old_server_version",
        "server",
        Severity::High,
        "the server version is past its end of support: security fixes no longer come",
        json!({"version": version, "oldest_supported": oldest}),
        &format!(
            "upgrade to {oldest} or newer (db_patch plans and applies upgrades group by group)"
        ),
        &[
            "CIS: patching",
            "GDPR Art. 32",
            "HIPAA 164.308(a)(5)(ii)(B)",
        ],
    )
}

/// A database named test: sample data and lax rights that nobody watches.
pub(crate) fn test_database() -> AuditFinding {
    finding(
        "test_database",
        "test",
        Severity::Low,
        "a test database exists on the server: sample data and lax rights that nobody watches",
        json!({}),
        "drop it, or move it to a development server",
        &["CIS: general", "GDPR Art. 25"],
    )
}

/// A suppressions file (YAML): a list of {check, object, reason, expires}.
pub fn parse_suppressions(text: &str) -> Result<Vec<Suppression>> {
    serde_yaml_ng::from_str(text).map_err(|e| Error::invalid("suppressions", e.to_string()))
}

/// Runs db_audit and records it (task audit, target the instance).
pub fn run(request: &AuditRequest, check_mode: bool) -> Result<Done<AuditReport>> {
    let target = Target::of(request.instance_id.as_ref(), &request.connection, None);
    let instance = target.instance.clone();
    let recorder = Recorder::start(Task::Audit, &request.run, check_mode)
        .hiding(request.connection.login_password.as_ref());
    let (report, mut warnings) = match audit(request, &instance, check_mode) {
        Ok(done) => done,
        Err(e) => {
            recorder.fail(target, &e);
            return Err(e);
        }
    };
    let changed = !report.new.is_empty() || !report.resolved.is_empty();
    warnings.extend(recorder.finish(
        target,
        Outcome::Ok,
        changed,
        ledger_details(request.mode, &report),
        samples(request.mode, &report),
    ));
    let listing = |keys: &[String]| keys.iter().map(|k| format!("{k}\n")).collect::<String>();
    let after: Vec<String> = active_keys(&report);
    let before: Vec<String> = after
        .iter()
        .filter(|k| !report.new.contains(k))
        .chain(report.resolved.iter())
        .cloned()
        .collect();
    Ok(Done {
        changed,
        msg: message(request.mode, &report),
        diff: Change::between(
            "findings",
            Some(listing(&sorted(before))),
            Some(listing(&after)),
        ),
        warnings,
        output: report,
    })
}

fn sorted(mut keys: Vec<String>) -> Vec<String> {
    keys.sort();
    keys
}

/// The keys of the findings that count (not suppressed), sorted.
fn active_keys(report: &AuditReport) -> Vec<String> {
    sorted(
        report
            .findings
            .iter()
            .filter(|f| f.suppressed.is_none())
            .map(AuditFinding::key)
            .collect(),
    )
}

fn audit(
    request: &AuditRequest,
    instance: &str,
    check_mode: bool,
) -> Result<(AuditReport, Vec<String>)> {
    let today = jiff::Zoned::now().date();
    let mut warnings = Vec::new();
    for s in &request.suppressions {
        let expires: jiff::civil::Date = s.expires.parse().map_err(|_| {
            Error::invalid(
                "suppressions",
                format!(
                    "expires '{}' of {}:{} is not a date (YYYY-MM-DD)",
                    s.expires, s.check, s.object
                ),
            )
        })?;
        if expires < today {
            warnings.push(format!(
                "the suppression of {}:{} expired on {}: the finding counts again",
                s.check, s.object, s.expires
            ));
        }
    }
    let mut engine = engine::connect(&request.connection)?;
    let kind = request.connection.engine()?;
    let mut report = AuditReport {
        instance_id: instance.to_string(),
        ..AuditReport::default()
    };
    match request.mode {
        AuditMode::Checks => {
            let (findings, limits) = engine.audit_checks(&request.allowed_superusers)?;
            report.findings = findings;
            report.limits = limits;
        }
        AuditMode::AuthFailures => {
            let log = match &request.log_path {
                Some(path) => path.clone(),
                None => engine.server_log()?.ok_or_else(|| {
                    Error::invalid(
                        "log_path",
                        "the server does not say where its log is (PostgreSQL without logging_collector, MariaDB logging to stderr); give log_path",
                    )
                })?,
            };
            let state_dir = request
                .state_dir
                .clone()
                .unwrap_or_else(|| default_state_dir(request));
            let auth = auth::read_failures(kind, &log, &state_dir, instance, !check_mode)?;
            report.findings = burst_findings(&auth, request.failure_threshold);
            report.auth = Some(auth);
        }
    }
    for f in &mut report.findings {
        f.suppressed = request
            .suppressions
            .iter()
            .filter(|s| s.check == f.check && (s.object == "*" || s.object == f.object))
            .find(|s| {
                s.expires
                    .parse::<jiff::civil::Date>()
                    .is_ok_and(|d| d >= today)
            })
            .map(|s| format!("{} (until {})", s.reason, s.expires));
    }
    report.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.key().cmp(&b.key()))
    });
    for severity in Severity::ALL {
        let n = report
            .findings
            .iter()
            .filter(|f| f.suppressed.is_none() && f.severity == severity)
            .count();
        report.counts.insert(severity.as_str().into(), n);
    }
    let previous = last_keys(&request.run.ledger()?, instance, request.mode)?;
    let now = active_keys(&report);
    report.new = now
        .iter()
        .filter(|k| !previous.contains(k))
        .cloned()
        .collect();
    report.resolved = previous
        .iter()
        .filter(|k| !now.contains(k))
        .cloned()
        .collect();
    Ok((report, warnings))
}

/// Where the log positions are kept: beside the ledger file.
fn default_state_dir(request: &AuditRequest) -> PathBuf {
    request
        .run
        .ledger_path
        .clone()
        .unwrap_or_else(crate::run::default_ledger_path)
        .parent()
        .map(|p| p.join("state"))
        .unwrap_or_else(|| PathBuf::from("state"))
}

/// A user and source with more failed logins in one read than the threshold.
fn burst_findings(auth: &AuthReport, threshold: u64) -> Vec<AuditFinding> {
    auth.failures
        .iter()
        .filter(|f| f.count >= threshold)
        .map(|f| {
            finding(
                "auth_failures_burst",
                &format!("{} from {}", f.user, f.source),
                Severity::High,
                "many failed logins for one user from one source: guessing, or a client with an old password",
                json!({"user": f.user, "source": f.source, "count": f.count, "log": auth.log_path}),
                "find the client: block the source if it is not yours, or fix its password; consider fail2ban or pg_hba/host rules",
                &["GDPR Art. 33", "HIPAA 164.308(a)(1)(ii)(D)", "HIPAA 164.312(b)"],
            )
        })
        .collect()
}

/// The active findings of the last audit of this instance in the same mode.
fn last_keys(store: &Store, instance: &str, mode: AuditMode) -> Result<Vec<String>> {
    let mode = mode_name(mode);
    let mut keys = Vec::new();
    store.scan(|record| {
        if record.task != Task::Audit
            || record.check_mode
            || record.outcome == Outcome::Failed
            || record.target.instance != instance
        {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Details {
            mode: String,
            findings: Vec<String>,
        }
        if let Some(details) = record.details::<Details>()
            && details.mode == mode
        {
            keys = details.findings;
        }
    })?;
    Ok(keys)
}

fn mode_name(mode: AuditMode) -> &'static str {
    match mode {
        AuditMode::Checks => "checks",
        AuditMode::AuthFailures => "auth_failures",
    }
}

fn ledger_details(mode: AuditMode, report: &AuditReport) -> Value {
    let mut details = json!({
        "mode": mode_name(mode),
        "findings": active_keys(report),
        "by_severity": report.counts,
        "suppressed": report.findings.iter().filter(|f| f.suppressed.is_some()).map(AuditFinding::key).collect::<Vec<_>>(),
        "new": report.new,
        "resolved": report.resolved,
    });
    if let Some(auth) = &report.auth {
        details["auth_failures"] = json!(auth.failures);
        details["auth_failures_total"] = json!(auth.total);
        details["log"] = json!(auth.log_path);
    }
    details
}

fn samples(mode: AuditMode, report: &AuditReport) -> Vec<Sample> {
    let instance = report.instance_id.as_str();
    match mode {
        AuditMode::Checks => Severity::ALL
            .into_iter()
            .map(|severity| {
                Sample::gauge(
                    "dbcadence_audit_findings",
                    "Unsuppressed findings of the last security audit, by severity.",
                    &[("instance", instance), ("severity", severity.as_str())],
                    report.counts.get(severity.as_str()).copied().unwrap_or(0) as f64,
                )
            })
            .collect(),
        // Per-user detail stays in the ledger: user names in labels would explode the series.
        AuditMode::AuthFailures => vec![Sample::counter(
            "dbcadence_auth_failures_total",
            "Failed logins read from the server's log.",
            &[("instance", instance)],
            report.auth.as_ref().map_or(0, |a| a.total) as f64,
        )],
    }
}

fn message(mode: AuditMode, report: &AuditReport) -> String {
    let active = report
        .findings
        .iter()
        .filter(|f| f.suppressed.is_none())
        .count();
    let suppressed = report.findings.len() - active;
    let change = match (report.new.len(), report.resolved.len()) {
        (0, 0) => "no change since the last audit".to_string(),
        (n, r) => format!("{n} new, {r} resolved since the last audit"),
    };
    match (mode, &report.auth) {
        (AuditMode::AuthFailures, Some(auth)) => format!(
            "{} failed logins in {} new bytes of {}; {active} findings; {change}",
            auth.total,
            auth.bytes_read,
            auth.log_path.display()
        ),
        _ => format!(
            "{active} findings on {} ({}), {suppressed} suppressed; {change}",
            report.instance_id,
            Severity::ALL
                .iter()
                .rev()
                .map(|s| format!(
                    "{} {}",
                    report.counts.get(s.as_str()).copied().unwrap_or(0),
                    s.as_str()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The findings as Markdown, for tickets and audits.
pub fn markdown(report: &AuditReport) -> String {
    let mut out = format!(
        "# Security audit of {}\n\n| severity | check | object | finding | remediation | tags |\n|---|---|---|---|---|---|\n",
        report.instance_id
    );
    let cell = |t: &str| t.replace('|', "\\|").replace('\n', " ");
    for f in &report.findings {
        out.push_str(&format!(
            "| {}{} | {} | {} | {} | {} | {} |\n",
            f.severity.as_str(),
            if f.suppressed.is_some() {
                " (suppressed)"
            } else {
                ""
            },
            f.check,
            cell(&f.object),
            cell(&f.title),
            cell(&f.remediation),
            cell(&f.tags.join(", "))
        ));
    }
    for limit in &report.limits {
        out.push_str(&format!("\nNot checked: {limit}\n"));
    }
    out
}
