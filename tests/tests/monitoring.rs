//! monitoring/: the alert rules pass promtool (syntax and unit tests that fire every alert on
//! a simulated failure and keep it silent on healthy series), and every metric the rules and
//! the Grafana dashboard query is one dbcadence writes.

use std::collections::BTreeSet;

use dbcadence_core::metrics::NAMES;
use dbcadence_e2e::workspace_root;

/// Metrics the rules may use before their writer lands: the security audit (db_audit) will
/// write dbcadence_auth_failures_total; until then DbcadenceAuthFailuresBurst stays silent.
const NOT_YET_WRITTEN: &[&str] = &["dbcadence_auth_failures_total"];

/// Every `dbcadence_*` name in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("dbcadence_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn promtool(args: &[&str]) -> std::process::Output {
    std::process::Command::new("promtool")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("promtool runs (Debian package prometheus; .ci/setup installs it)")
}

#[test]
fn the_rules_pass_promtool_check_and_their_unit_tests() {
    let check = promtool(&[
        "check",
        "rules",
        "monitoring/prometheus/dbcadence-rules.yml",
    ]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(out.contains("SUCCESS: 9 rules found"), "{out}");
    let test = promtool(&[
        "test",
        "rules",
        "monitoring/prometheus/tests/dbcadence-rules-test.yml",
    ]);
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

#[test]
fn every_alert_has_a_firing_and_a_silent_case() {
    let rules =
        std::fs::read_to_string(workspace_root().join("monitoring/prometheus/dbcadence-rules.yml"))
            .unwrap();
    let tests: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            workspace_root().join("monitoring/prometheus/tests/dbcadence-rules-test.yml"),
        )
        .unwrap(),
    )
    .unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 9);
    for alert in alerts {
        let (mut fires, mut silent) = (false, false);
        for test in tests["tests"].as_sequence().unwrap() {
            for case in test["alert_rule_test"].as_sequence().unwrap() {
                if case["alertname"].as_str() != Some(alert) {
                    continue;
                }
                match case["exp_alerts"].as_sequence() {
                    Some(list) if !list.is_empty() => fires = true,
                    _ => silent = true,
                }
            }
        }
        assert!(fires && silent, "{alert}: fires {fires}, silent {silent}");
    }
}

#[test]
fn the_dashboard_and_the_rules_query_only_metrics_dbcadence_writes() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            workspace_root().join("monitoring/grafana/dbcadence-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let used = metric_names(&exprs.join("\n"));
    for name in &used {
        assert!(
            NAMES.contains(&name.as_str()),
            "the dashboard queries {name}, which dbcadence never writes"
        );
    }
    // The dashboard shows the compliance ratio and the backup and verification metrics.
    for wanted in [
        "dbcadence_compliance_ratio",
        "dbcadence_backup_verified_timestamp_seconds",
        "dbcadence_task_last_status",
    ] {
        assert!(used.contains(wanted), "{wanted} is not on the dashboard");
    }
    let rules =
        std::fs::read_to_string(workspace_root().join("monitoring/prometheus/dbcadence-rules.yml"))
            .unwrap();
    for name in metric_names(&rules) {
        assert!(
            NAMES.contains(&name.as_str()) || NOT_YET_WRITTEN.contains(&name.as_str()),
            "the rules use {name}, which dbcadence never writes"
        );
    }
}
