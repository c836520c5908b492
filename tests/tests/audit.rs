//! db_audit against real servers of a private lab (the checks look at the whole server, so no
//! other test may change it meanwhile): each check turned on and off, suppressions with
//! expiry, changed only when findings change, hostile names; real failed logins counted
//! exactly, only new lines read, a rotated log followed, and the counter the alert reads.

use std::path::Path;

use dbcadence_core::lab::LabInstance;
use dbcadence_e2e::*;
use serde_json::{Value, json};

fn audit_args(instance: &LabInstance, dir: &Path) -> Value {
    json!({
        "engine": instance.engine, "login_host": instance.host, "login_port": instance.port,
        "login_user": instance.user, "login_password": instance.password().unwrap(),
        "ssl_mode": "verify-full", "ca_cert": instance.ca_cert, "instance_id": instance.name,
        "allowed_superusers": ["postgres", "dbcadence", "dbcadence@%", "dbcadence@localhost"],
        "ledger_path": dir.join("ledger.jsonl"), "metrics_dir": dir.join("metrics"),
        "state_dir": dir.join("state"),
    })
}

fn keys(run: &ModuleRun) -> Vec<String> {
    run.json["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", run.json))
        .iter()
        .filter(|f| f.get("suppressed").is_none())
        .map(|f| {
            format!(
                "{}:{}",
                f["check"].as_str().unwrap(),
                f["object"].as_str().unwrap()
            )
        })
        .collect()
}

fn audit(args: &Value) -> ModuleRun {
    let run = run_module("db_audit", args);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    run
}

#[test]
fn postgres_checks_appear_and_disappear_with_the_configuration() {
    let lab = PrivateLab::start(1, 0, 0);
    let pg = lab.instance("pg1");
    let dir = tempfile::tempdir().unwrap();
    let args = audit_args(pg, dir.path());
    let first = audit(&args);
    assert_eq!(
        first.json["changed"], true,
        "the first audit finds what there is"
    );
    let base = keys(&first);
    // The lab's own configuration: initdb's trust on the socket.
    assert!(
        base.contains(&"pg_hba_trust:local all all".to_string()),
        "{base:?}"
    );
    let again = audit(&args);
    assert_eq!(
        again.json["changed"], false,
        "nothing changed: {}",
        again.json["msg"]
    );

    // A trust line for a remote address, a superuser named a'b, CREATE on public in a
    // database named we"ird; db.
    let hba = pg.data_dir.join("pg_hba.conf");
    let original = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("{original}\nhost all all 10.99.0.1/32 trust\n"),
    )
    .unwrap();
    let mut engine = connect(pg);
    engine
        .execute_in(
            None,
            "SELECT pg_reload_conf(); CREATE ROLE \"a'b\" LOGIN SUPERUSER PASSWORD 'x'",
        )
        .unwrap();
    let weird = "we\"ird; db";
    engine.create_database(weird).unwrap();
    engine
        .execute_in(Some(weird), "GRANT CREATE ON SCHEMA public TO PUBLIC")
        .unwrap();
    let changed = audit(&args);
    assert_eq!(changed.json["changed"], true);
    let now = keys(&changed);
    for expected in [
        "pg_hba_trust:host all all 10.99.0.1/255.255.255.255",
        "tls_not_required:host all all 10.99.0.1/255.255.255.255",
        "superuser_account:a'b",
        "public_schema_create:we\"ird; db",
    ] {
        assert!(now.contains(&expected.to_string()), "{expected} in {now:?}");
        assert!(
            changed.json["new"]
                .as_array()
                .unwrap()
                .contains(&json!(expected)),
            "{}",
            changed.json["new"]
        );
    }
    let trust = changed.json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "pg_hba_trust" && f["object"].as_str().unwrap().starts_with("host"))
        .unwrap();
    assert_eq!(trust["severity"], "critical");
    assert!(
        trust["remediation"]
            .as_str()
            .unwrap()
            .contains("scram-sha-256")
    );
    assert!(!trust["tags"].as_array().unwrap().is_empty());

    // Accepted risk, until tomorrow: listed, marked, not counted; an expired one counts.
    let tomorrow = jiff::Zoned::now().date().tomorrow().unwrap().to_string();
    let yesterday = jiff::Zoned::now().date().yesterday().unwrap().to_string();
    let mut suppressed = args.clone();
    suppressed["suppressions"] = json!([
        {"check": "superuser_account", "object": "a'b", "reason": "CHG-1: break-glass account", "expires": tomorrow},
        {"check": "public_schema_create", "object": "*", "reason": "old ticket", "expires": yesterday},
    ]);
    let with = audit(&suppressed);
    let active = keys(&with);
    assert!(
        !active.contains(&"superuser_account:a'b".to_string()),
        "{active:?}"
    );
    assert!(active.contains(&"public_schema_create:we\"ird; db".to_string()));
    assert!(
        with.json["warnings"].to_string().contains("expired"),
        "{}",
        with.json
    );

    // Put everything back: the findings go away.
    std::fs::write(&hba, original).unwrap();
    engine
        .execute_in(None, "SELECT pg_reload_conf(); DROP ROLE \"a'b\"")
        .unwrap();
    engine.drop_database(weird).unwrap();
    let back = audit(&args);
    assert_eq!(keys(&back), base, "back to the lab's own findings");
    let metrics = std::fs::read_to_string(dir.path().join("metrics/dbcadence.prom")).unwrap();
    assert!(
        metrics.contains("dbcadence_audit_findings{instance=\"pg1\",severity=\"critical\"}"),
        "{metrics}"
    );
}

#[test]
fn mariadb_checks_appear_and_disappear_with_the_configuration() {
    let lab = PrivateLab::start(0, 1, 0);
    let my = lab.instance("my1");
    let dir = tempfile::tempdir().unwrap();
    let args = audit_args(my, dir.path());
    let base = keys(&audit(&args));
    let mut engine = connect(my);
    engine
        .execute_in(
            None,
            "CREATE USER ''@'localhost'; CREATE USER 'a''b'@'%'; CREATE USER 'root'@'10.99.0.1' IDENTIFIED BY 'x'; CREATE DATABASE test",
        )
        .unwrap();
    let changed = audit(&args);
    assert_eq!(changed.json["changed"], true);
    let now = keys(&changed);
    for expected in [
        "anonymous_account:@localhost",
        "account_without_password:a'b@%",
        "wildcard_host:a'b@%",
        "root_remote:root@10.99.0.1",
        "test_database:test",
    ] {
        assert!(now.contains(&expected.to_string()), "{expected} in {now:?}");
    }
    engine
        .execute_in(
            None,
            "DROP USER ''@'localhost'; DROP USER 'a''b'@'%'; DROP USER 'root'@'10.99.0.1'; DROP DATABASE test",
        )
        .unwrap();
    let back = audit(&args);
    assert_eq!(keys(&back), base);
    assert_eq!(back.json["changed"], true, "findings resolved is a change");
    assert_eq!(audit(&args).json["changed"], false);
}

/// Logins that fail, as clients would make them.
fn fail_logins(instance: &LabInstance, user: &str, over_socket: bool, times: usize) {
    for _ in 0..times {
        let mut args = instance.connection().unwrap();
        args.login_user = Some(user.to_string());
        args.login_password = Some("wrong password".to_string().into());
        if over_socket {
            args = dbcadence_core::connection::ConnectionArgs {
                login_unix_socket: Some(instance.socket.clone()),
                login_host: None,
                ssl_mode: dbcadence_core::connection::SslMode::Disable,
                ca_cert: None,
                ..args
            };
        }
        assert!(
            dbcadence_core::engine::connect(&args).is_err(),
            "{user} got in"
        );
    }
}

fn count_of(run: &ModuleRun, user: &str, source: &str) -> u64 {
    run.json["auth"]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["user"] == user && f["source"] == source)
        .map_or(0, |f| f["count"].as_u64().unwrap())
}

#[test]
fn failed_logins_are_counted_exactly_once_and_a_rotated_log_is_followed() {
    let lab = PrivateLab::start(1, 1, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut before_start = 0;
    for name in ["pg1", "my1"] {
        let instance = lab.instance(name);
        let mut args = audit_args(instance, dir.path());
        args["mode"] = json!("auth_failures");
        args["log_path"] = json!(instance.log_file);
        args["failure_threshold"] = json!(5);
        // Start from now: what the lab's start-up logged (its bootstrap's own attempts) is not
        // counted below, but it is in the counter.
        before_start = audit(&args).json["auth"]["total"].as_u64().unwrap();
        fail_logins(instance, &instance.user, false, 3);
        fail_logins(instance, "nobody", false, 2);
        // The socket: PostgreSQL trusts it (lab initdb), so only an unknown user fails there.
        let socket_user = if name == "pg1" {
            "ghost"
        } else {
            &instance.user
        };
        fail_logins(instance, socket_user, true, 6);
        let run = audit(&args);
        assert_eq!(
            count_of(&run, &instance.user, "127.0.0.1"),
            3,
            "{name}: {}",
            run.json
        );
        assert_eq!(count_of(&run, "nobody", "127.0.0.1"), 2, "{name}");
        assert_eq!(
            count_of(&run, socket_user, "local"),
            6,
            "{name}: {}",
            run.json
        );
        assert_eq!(run.json["auth"]["total"], 11);
        assert_eq!(run.json["changed"], true);
        assert!(
            keys(&run).contains(&format!("auth_failures_burst:{socket_user} from local")),
            "6 >= threshold 5: {:?}",
            keys(&run)
        );
        // Read again: nothing new.
        let quiet = audit(&args);
        assert_eq!(quiet.json["auth"]["total"], 0, "{name}");
        assert!(!run.stdout.contains(&instance.password().unwrap()));
    }
    // MariaDB rotates its error log on FLUSH ERROR LOGS after a rename: the new file is read.
    let my = lab.instance("my1");
    let mut args = audit_args(my, dir.path());
    args["mode"] = json!("auth_failures");
    args["log_path"] = json!(my.log_file);
    std::fs::rename(&my.log_file, my.log_file.with_extension("log.1")).unwrap();
    connect(my).execute_in(None, "FLUSH ERROR LOGS").unwrap();
    fail_logins(my, "nobody", false, 25);
    let rotated = audit(&args);
    assert_eq!(rotated.json["auth"]["restarted"], true, "{}", rotated.json);
    assert_eq!(count_of(&rotated, "nobody", "127.0.0.1"), 25);

    // The counter the alert reads, as written after these real failures, fires the alert.
    let prom = std::fs::read_to_string(dir.path().join("metrics/dbcadence.prom")).unwrap();
    let total: f64 = prom
        .lines()
        .find(|l| l.starts_with("dbcadence_auth_failures_total{instance=\"my1\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{prom}"));
    assert_eq!(
        total,
        (before_start + 36) as f64,
        "the lab's start-up, then 11, then 25 failures on my1"
    );
    // The step the code wrote between two reads (25), repeated every 5 minutes, as promtool
    // input: over 15 minutes the alert sees three steps.
    let step = 25.0;
    assert_eq!(count_of(&rotated, "nobody", "127.0.0.1") as f64, step);
    let rules = workspace_root().join("monitoring/prometheus/dbcadence-rules.yml");
    let test = dir.path().join("auth-test.yml");
    std::fs::write(
        &test,
        format!(
            "rule_files: ['{}']\nevaluation_interval: 1m\ntests:\n  - interval: 5m\n    input_series:\n      - series: 'dbcadence_auth_failures_total{{instance=\"my1\"}}'\n        values: '11+{step}x12'\n    alert_rule_test:\n      - eval_time: 20m\n        alertname: DbcadenceAuthFailuresBurst\n        exp_alerts:\n          - exp_labels: {{severity: critical, instance: my1}}\n            exp_annotations:\n              summary: {} failed logins on my1 in 15 minutes\n              description: More than 20 failed logins in 15 minutes looks like guessing, not typos; the users and sources are in the ledger (dbcadence ledger tail --task audit).\n",
            rules.display(),
            step * 3.0
        ),
    )
    .unwrap();
    let out = duct::cmd!("promtool", "test", "rules", &test)
        .stderr_to_stdout()
        .unchecked()
        .run()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
