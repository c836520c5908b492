//! Running without a person, against real servers: the commands the timers call (`dbcadence
//! run` for inventory, backup, verify, tune, audit and logs, then `dbcadence report`) on a private lab; the units
//! `dbcadence schedule install` writes (systemd-analyze verify); the report's charts drawn by
//! headless Chromium; db_compliance's check mode and idempotence; the ledger in PostgreSQL.

use std::path::Path;

use dbcadence_core::metrics::NAMES;
use dbcadence_e2e::{PrivateLab, bin, connect, run_module, shared_lab, unique, workspace_root};
use serde_json::{Value, json};

const SCHEDULE: &str = "templates:
  - name: lab
    rpo: 1d
    rto: 10m
    tasks:
      - {task: inventory, every: 6h, grace: 1h}
      - {task: backup, cron: '0 1 * * *', grace: 2h, window: {start: '00:30', end: '04:00', time_zone: Europe/Paris}, retention: {keep_last: 3}}
      - {task: verify, cron: '0 5 * * *', grace: 3h}
      - {task: restore, cron: '0 6 * * 0', grace: 4h}
      - {task: tune, cron: '0 3 * * 0', grace: 4h}
      - {task: audit, cron: '0 4 * * *', grace: 4h}
      - {task: logs, cron: '30 4 * * *', grace: 4h}
assignments:
  - {template: lab, group: 'all:!copies'}
";

fn dbcadence(args: &[&str], env: &[(&str, &Path)]) -> (bool, String, String) {
    let mut command = std::process::Command::new(bin("dbcadence"));
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dashboard_metric_names() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            workspace_root().join("monitoring/grafana/dbcadence-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let text = dashboard.to_string();
    NAMES
        .iter()
        .filter(|n| text.contains(*n))
        .map(|n| n.to_string())
        .collect()
}

/// `--dump-dom` prints the DOM after the page's scripts ran.
fn chromium_dom(page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("chromium runs (Debian package chromium; .ci/setup installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn one_cycle_of_the_timer_commands_then_the_report_metrics_and_charts() {
    let lab = PrivateLab::start(1, 1, 0);
    for name in ["pg1", "my1"] {
        let mut engine = connect(lab.instance(name));
        engine.create_database("shop").unwrap();
        engine
            .execute_in(
                Some("shop"),
                "CREATE TABLE orders (id int PRIMARY KEY, note text)",
            )
            .unwrap();
        engine
            .execute_in(
                Some("shop"),
                "INSERT INTO orders VALUES (1, 'a'), (2, 'b'), (3, 'c')",
            )
            .unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(dir.join("schedule.yml"), SCHEDULE).unwrap();
    let ledger = dir.join("ledger.jsonl");
    let metrics = dir.join("metrics");
    let env = [
        ("DBCADENCE_LEDGER", ledger.as_path()),
        ("DBCADENCE_METRICS_DIR", metrics.as_path()),
    ];
    let sources = lab.lab.dir.join("sources.yml");
    let common = |task: &'static str| {
        vec![
            "run".to_string(),
            "--task".into(),
            task.into(),
            "--template".into(),
            "lab".into(),
            "--schedule".into(),
            dir.join("schedule.yml").display().to_string(),
            "--sources".into(),
            sources.display().to_string(),
            "--backup-dir".into(),
            dir.join("backups").display().to_string(),
        ]
    };
    for task in [
        "inventory",
        "backup",
        "verify",
        "restore",
        "tune",
        "audit",
        "logs",
    ] {
        let args = common(task);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = dbcadence(&args, &env);
        assert!(ok, "{task}: {out}{err}");
        if task == "audit" || task == "logs" {
            // A server task: once per instance.
            assert_eq!(out.matches("ok     pg1").count(), 1, "{out}");
            assert_eq!(out.matches("ok     my1").count(), 1, "{out}");
        } else if task != "inventory" {
            assert!(
                out.contains("ok     pg1/shop") && out.contains("ok     my1/shop"),
                "{task}: {out}"
            );
        }
    }
    // The report over what just ran: two verified backups, compliance metrics written.
    let (ok, out, err) = dbcadence(
        &[
            "report",
            "--schedule",
            &dir.join("schedule.yml").display().to_string(),
            "--days",
            "2",
            "--format",
            "json",
        ],
        &env,
    );
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    // The CLI report is the same operation as db_compliance: it leaves the same record.
    let records = dbcadence_core::ledger::Ledger::new(&ledger)
        .read()
        .unwrap()
        .records;
    assert_eq!(
        records.last().map(|r| r.task),
        Some(dbcadence_core::task::Task::Compliance),
        "{records:?}"
    );
    let verified = report["scorecard"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backups verified by restore")
        .unwrap();
    assert_eq!(verified["value"], json!(1.0), "{verified}");
    assert_eq!(
        verified["detail"],
        "2 of 2 backups of the period verified by a restore"
    );
    let databases: Vec<&str> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["db"].as_str())
        .collect();
    assert!(databases.contains(&"shop"), "{databases:?}");
    // RPO and RTO from the real runs: both backups proven minutes ago (RPO within 1d), and a
    // drill measured each restore (RTO within 10m).
    for row in report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["db"] == "shop")
    {
        let r = &row["recovery"];
        assert_eq!(r["rpo_target_seconds"], 86400.0, "{row}");
        assert_eq!(r["rpo_met"], true, "{row}");
        assert!(r["rpo_seconds"].as_f64().unwrap() < 3600.0, "{row}");
        assert!(r["rto_seconds"].as_f64().unwrap() > 0.0, "{row}");
        assert_eq!(r["rto_met"], true, "{row}");
    }
    let drills = records
        .iter()
        .filter(|r| r.task == dbcadence_core::task::Task::Restore && r.details["drill"] == true)
        .count();
    assert_eq!(drills, 2, "a drill of each database, recorded against it");
    // Every metric on the dashboard was written by these real runs, except the compliance
    // ratios: the fleet was first seen minutes ago, nothing was due yet, and 0 of 0 is
    // "no data" (null in the report, no series), never a green 100%.
    assert!(report["fleet"]["ratio"].is_null(), "{}", report["fleet"]);
    let prom = std::fs::read_to_string(metrics.join("dbcadence.prom")).unwrap();
    for name in dashboard_metric_names() {
        if name == "dbcadence_compliance_ratio" {
            assert!(!prom.contains(&format!("\n{name}{{")), "{prom}");
            continue;
        }
        assert!(
            prom.contains(&format!("\n{name}")),
            "{name} missing from:\n{prom}"
        );
    }

    // The HTML report: headless Chromium runs its script and the three charts are drawn.
    let page = dir.join("report.html");
    let (ok, _, err) = dbcadence(
        &[
            "report",
            "--schedule",
            &dir.join("schedule.yml").display().to_string(),
            "--days",
            "7",
            "--format",
            "html",
            "--output",
            &page.display().to_string(),
        ],
        &env,
    );
    assert!(ok, "{err}");
    let dom = chromium_dom(&page);
    assert!(
        dom.contains(r#"data-charts-drawn="3""#),
        "charts not drawn:\n{}",
        &dom[..dom.len().min(2000)]
    );
    let marks = dom.matches(r#"class="mark""#).count();
    assert!(marks >= 10, "only {marks} chart marks drawn");
    assert!(dom.contains("<svg"), "no SVG in the page");
}

#[test]
fn schedule_install_writes_units_systemd_accepts_and_is_idempotent() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(dir.join("schedule.yml"), SCHEDULE).unwrap();
    std::fs::write(dir.join("sources.yml"), "endpoints: []\n").unwrap();
    let units = dir.join("units");
    let schedule = dir.join("schedule.yml").display().to_string();
    let args = [
        "schedule",
        "install",
        &schedule,
        "--sources",
        &dir.join("sources.yml").display().to_string(),
        "--backup-dir",
        // '%' and '$' mean something to systemd (specifiers, variables): escaped, they stay data.
        "/srv/dbc 100% $HOME",
        "--unit-dir",
        &units.display().to_string(),
        "--format",
        "json",
    ];
    // Check mode writes nothing.
    let mut check = args.to_vec();
    check.push("--check");
    let (ok, out, err) = dbcadence(&check, &[]);
    assert!(ok, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["changed"], true);
    assert!(!units.exists(), "check mode wrote units");
    // Install, then again: nothing changes.
    let (ok, out, err) = dbcadence(&args, &[]);
    assert!(ok, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    // inventory, backup, verify, restore (a drill), tune, audit, logs and the report.
    assert_eq!(plan["timers"].as_array().unwrap().len(), 8, "{plan}");
    assert_eq!(plan["skipped"], json!([]), "{plan}");
    let (_, out, _) = dbcadence(&args, &[]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["changed"],
        false,
        "{out}"
    );
    let timer = std::fs::read_to_string(units.join("dbcadence-lab-backup.timer")).unwrap();
    assert!(
        timer.contains("OnCalendar=*-*-* 01:00:00 Europe/Paris"),
        "{timer}"
    );
    let service = std::fs::read_to_string(units.join("dbcadence-lab-backup.service")).unwrap();
    assert!(
        service.contains(r#"--backup-dir "/srv/dbc 100%% $$HOME""#),
        "{service}"
    );
    // systemd itself accepts the units; a broken one is refused (the check can fail).
    let verify = |files: Vec<std::path::PathBuf>| {
        std::process::Command::new("systemd-analyze")
            .arg("verify")
            .args(files)
            .output()
            .unwrap()
    };
    let all: Vec<_> = std::fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = verify(all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        units.join("dbcadence-lab-backup.timer"),
        timer.replace(
            "OnCalendar=*-*-* 01:00:00 Europe/Paris",
            "OnCalendar=every tuesday-ish",
        ),
    )
    .unwrap();
    let out = verify(vec![
        units.join("dbcadence-lab-backup.timer"),
        units.join("dbcadence-lab-backup.service"),
    ]);
    assert!(
        !out.status.success() || !out.stderr.is_empty(),
        "a broken OnCalendar passed systemd-analyze verify"
    );
    // A template removed from the schedule takes its units with it.
    std::fs::write(
        dir.join("schedule.yml"),
        SCHEDULE.replace("      - {task: verify, cron: '0 5 * * *', grace: 3h}\n", ""),
    )
    .unwrap();
    let (ok, out, err) = dbcadence(&args, &[]);
    assert!(ok, "{err}");
    assert!(out.contains("dbcadence-lab-verify.timer"), "{out}");
    assert!(!units.join("dbcadence-lab-verify.timer").exists());

    // The cron fallback: a schedule in Europe/Paris cannot be a cron file (no per-line zone,
    // other daylight saving rules): refused with the reason, nothing written.
    let cron_file = dir.join("dbcadence.cron");
    let with_cron = |schedule: &str| {
        let mut a = args.to_vec();
        a.truncate(a.len() - 4); // drop --unit-dir DIR --format json
        a.extend(["--cron-file", schedule]);
        a.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let cron_path = cron_file.display().to_string();
    let refused = with_cron(&cron_path);
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let (ok, _, err) = dbcadence(&refused, &[]);
    assert!(!ok && err.contains("no per-line time zone"), "{err}");
    assert!(!cron_file.exists());
    // In UTC it is written, each time field explicit and '%' escaped for cron.
    std::fs::write(
        dir.join("schedule.yml"),
        "templates:\n  - name: lab\n    tasks:\n      - {task: backup, cron: '0 1 * * *', grace: 2h}\n      - {task: inventory, every: 6h, grace: 1h}\n",
    )
    .unwrap();
    let (ok, _, err) = dbcadence(&refused, &[]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&cron_file).unwrap();
    assert!(text.contains("\n0 1 * * * root "), "{text}");
    assert!(text.contains("\n0 0,6,12,18 * * * root "), "{text}");
    assert!(text.contains(r"'/srv/dbc 100\% $HOME'"), "{text}");
}

#[test]
fn db_compliance_check_mode_diff_and_idempotence() {
    let work = tempfile::tempdir().unwrap();
    let ledger = work.path().join("ledger.jsonl");
    // A tiny ledger: one inventory seeing pg1/app, one backup.
    let now = jiff::Timestamp::now();
    let earlier = (now - jiff::SignedDuration::from_hours(30)).to_string();
    std::fs::write(
        &ledger,
        format!(
            "{}\n{}\n",
            json!({"id": "1", "task": "inventory", "target": {"instance": "fleet"}, "started_at": earlier, "finished_at": earlier, "outcome": "ok", "changed": false, "check_mode": false,
                   "details": {"fleet": [{"instance": "pg1", "engine": "postgresql", "role": "primary", "labels": {}, "databases": [{"name": "app", "env": "production"}]}], "unreachable": []}}),
            json!({"id": "2", "task": "backup", "target": {"instance": "pg1", "db": "app"}, "started_at": now.to_string(), "finished_at": now.to_string(), "outcome": "ok", "changed": true, "check_mode": false, "details": {"path": "/b/1"}}),
        ),
    )
    .unwrap();
    let out = work.path().join("report.md");
    let args = json!({"ledger_path": ledger, "period_days": "3", "output_path": out, "output_format": "markdown",
                      "metrics_dir": work.path().join("metrics"), "_ansible_check_mode": true, "_ansible_diff": true});
    let run = run_module("db_compliance", &args);
    assert_eq!(run.json["changed"], true, "{}", run.stdout);
    assert!(!out.exists(), "check mode wrote the report");
    assert!(
        !work.path().join("metrics").exists(),
        "check mode wrote metrics"
    );
    let mut args = args;
    args["_ansible_check_mode"] = json!(false);
    let first = run_module("db_compliance", &args);
    assert_eq!(first.json["changed"], true, "{}", first.stdout);
    assert!(
        first.json["diff"]["after"]
            .as_str()
            .unwrap()
            .contains("# Maintenance compliance")
    );
    assert!(out.exists());
    let second = run_module("db_compliance", &args);
    assert_eq!(second.json["changed"], false, "{}", second.stdout);
    assert!(
        second.json["msg"]
            .as_str()
            .unwrap()
            .contains("is up to date")
    );
    // Every compliance run is in the ledger (the rehearsal too), and the report ignores them.
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert_eq!(text.matches("\"task\":\"compliance\"").count(), 3, "{text}");
    // fail_under turns low compliance into a failed task with the cause and the next step.
    args["fail_under"] = json!(1.0);
    args["period_days"] = json!(30);
    let failed = run_module("db_compliance", &args);
    assert_eq!(failed.json["failed"], true, "{}", failed.stdout);
    assert!(
        failed.json["msg"]
            .as_str()
            .unwrap()
            .contains("is below 100.0%"),
        "{}",
        failed.stdout
    );
}

#[test]
fn the_ledger_in_postgresql_holds_the_same_records_as_the_file() {
    let pg = dbcadence_e2e::pg();
    let _ = shared_lab();
    let table = unique("ledger");
    let url = format!(
        "postgresql://{}@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}&table={table}",
        pg.user,
        pg.port,
        pg.ca_cert.display()
    );
    let password = std::fs::read_to_string(&pg.password_file).unwrap();
    let password = password.trim().to_string();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("ledger.jsonl");
    // A module writes straight into the table (created on first use).
    let run = run_module(
        "db_compliance",
        &json!({"ledger_url": url, "ledger_password": password, "period_days": 1, "_ansible_inject_invocation": true}),
    );
    assert_eq!(run.json["failed"], false, "{}", run.stdout);
    assert!(
        !run.stdout.contains(&password),
        "the password leaked: {}",
        run.stdout
    );
    // Records from a file, imported twice: the second import adds nothing.
    std::fs::write(
        &file,
        [
            json!({"id": "a1", "task": "backup", "target": {"instance": "pg1", "db": "we\"ird; db"}, "started_at": "2026-11-20T01:00:00Z", "finished_at": "2026-11-20T01:05:00.123456Z", "outcome": "ok", "changed": true, "check_mode": false, "details": {"path": "/b/x", "bytes": 5}}),
            json!({"id": "a2", "task": "verify", "target": {"instance": "pg1", "db": "we\"ird; db"}, "started_at": "2026-11-20T05:00:00Z", "finished_at": "2026-11-20T05:01:00Z", "outcome": "failed", "changed": true, "check_mode": false, "details": {}, "change_id": "CHG-1"}),
        ]
        .map(|v| v.to_string())
        .join("\n")
            + "\n",
    )
    .unwrap();
    let password_file = work.path().join("pw");
    std::fs::write(&password_file, &password).unwrap();
    let pw = password_file.display().to_string();
    let import = [
        "ledger",
        "import",
        &file.display().to_string(),
        "--ledger-url",
        &url,
        "--ledger-password-file",
        &pw,
    ];
    let (ok, out, err) = dbcadence(&import, &[]);
    assert!(ok && out.contains("imported 2 of 2"), "{out}{err}");
    let (ok, out, err) = dbcadence(&import, &[]);
    assert!(ok && out.contains("imported 0 of 2"), "{out}{err}");
    let (ok, out, err) = dbcadence(
        &[
            "ledger",
            "export",
            "--ledger-url",
            &url,
            "--ledger-password-file",
            &pw,
            "--since",
            "2026-11-19",
            "--until",
            "2026-11-21",
        ],
        &[],
    );
    assert!(ok, "{err}");
    let exported: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let original: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported.len(), 2, "{out}");
    for (a, b) in exported.iter().zip(&original) {
        for key in ["id", "task", "target", "outcome", "details", "check_mode"] {
            assert_eq!(a[key], b[key], "{key}");
        }
        let (ta, tb): (jiff::Timestamp, jiff::Timestamp) = (
            a["finished_at"].as_str().unwrap().parse().unwrap(),
            b["finished_at"].as_str().unwrap().parse().unwrap(),
        );
        assert_eq!(ta, tb);
    }
    assert_eq!(exported[1]["change_id"], "CHG-1");
    let (ok, out, _) = dbcadence(
        &[
            "ledger",
            "tail",
            "-n",
            "1",
            "--task",
            "verify",
            "--ledger-url",
            &url,
            "--ledger-password-file",
            &pw,
        ],
        &[],
    );
    assert!(
        ok && out.contains("FAILED") && out.contains("we\"ird; db"),
        "{out}"
    );
    // A password in the URL is refused with the next step, and not echoed.
    let bad = url.replace(
        &format!("{}@", pg.user),
        &format!("{}:{password}@", pg.user),
    );
    let (ok, out, err) = dbcadence(&["ledger", "tail", "--ledger-url", &bad], &[]);
    assert!(!ok && err.contains("DBCADENCE_LEDGER_PASSWORD"), "{err}");
    assert!(!out.contains(&password) && !err.contains(&password));
    // The same mistake in a module's arguments: refused, and masked in the echoed invocation.
    let run = run_module(
        "db_compliance",
        &json!({"ledger_url": bad, "_ansible_inject_invocation": true}),
    );
    assert_eq!(run.json["failed"], true, "{}", run.stdout);
    assert!(
        !run.stdout.contains(&password),
        "the password leaked: {}",
        run.stdout
    );
    let mut engine = connect(pg);
    engine
        .execute_in(None, &format!("DROP TABLE \"{table}\""))
        .unwrap();
}
