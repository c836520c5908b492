//! db_patch applies a real minor release: a lab server started on PostgreSQL 15.8 (binaries
//! that .ci/setup fetches) is patched to this machine's 15.x through the lab platform's
//! upgrade and restart commands, post-validated, and recorded; its data survives. A broken
//! configuration makes the restart fail: the result says the server is down and the way
//! back, and following that way back brings the data up again on 15.8. MariaDB's apply path
//! runs with a restart-based upgrade (one MariaDB release is installed here).

use dbcadence_core::lab::{self, LabInstance};
use dbcadence_e2e::*;
use serde_json::{Value, json};

fn apply_args(lab: &PrivateLab, instance: &LabInstance, work: &std::path::Path) -> Value {
    json!({
        "engine": instance.engine, "login_host": instance.host, "login_port": instance.port,
        "login_user": instance.user, "login_password": instance.password().unwrap(),
        "ssl_mode": "verify-full", "ca_cert": instance.ca_cert, "instance_id": instance.name,
        "ledger_path": work.join("ledger.jsonl"),
        "action": "apply", "platform": "lab", "lab_dir": lab.lab.dir,
        "backup_dir": work.join("backups"), "restart_timeout_seconds": 60,
    })
}

fn version(instance: &LabInstance) -> String {
    query(
        instance,
        "postgres",
        "SELECT split_part(current_setting('server_version'), ' ', 1)",
    )[0][0]
        .clone()
        .unwrap()
}

fn step<'a>(run: &'a ModuleRun, id: &str) -> &'a Value {
    run.json["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", run.json))
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id}: {}", run.json))
}

fn ledger(work: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(work.join("ledger.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A database with a hostile name, rows and an extension; backed up and verified (the
/// verified_backup gate wants every database proven by a restore).
fn seed_and_back_up(instance: &LabInstance, work: &std::path::Path) -> String {
    let db = "we\"ird; db".to_string();
    let mut engine = connect(instance);
    engine.create_database(&db).unwrap();
    engine
        .execute_in(
            Some(&db),
            "CREATE EXTENSION IF NOT EXISTS pg_trgm; \
             CREATE TABLE orders (id integer PRIMARY KEY, item text); \
             INSERT INTO orders SELECT g, 'item ' || g FROM generate_series(1, 500) g;",
        )
        .unwrap();
    let backups = work.join("backups");
    let backup = run_module("db_backup", &backup_args(instance, &db, &backups));
    assert_eq!(backup.json["failed"], false, "{}", backup.json);
    let verify = run_module(
        "db_verify",
        &json!({"backup_dir": backups, "ledger_path": work.join("verify-ledger.jsonl")}),
    );
    assert_eq!(verify.json["failed"], false, "{}", verify.json);
    db
}

#[test]
fn a_real_minor_upgrade_from_15_8_is_validated_recorded_and_keeps_the_data() {
    let lab = PrivateLab::start_on(1, 0, 0, Some(old_postgres_bin()));
    let pg1 = lab.instance("pg1");
    assert_eq!(version(pg1), "15.8");
    let work = tempfile::tempdir().unwrap();
    let db = seed_and_back_up(pg1, work.path());
    let args = apply_args(&lab, pg1, work.path());

    // Check mode: the facts, the gates and the steps it would take; nothing changes.
    let mut check = args.clone();
    check["_ansible_check_mode"] = json!(true);
    let planned = run_module("db_patch", &check);
    assert_eq!(planned.json["failed"], false, "{}", planned.json);
    assert_eq!(planned.json["changed"], true);
    assert_eq!(planned.json["facts"]["running_version"], "15.8");
    assert_eq!(planned.json["facts"]["installed_version"], "15.8");
    assert_eq!(planned.json["facts"]["status"], "behind");
    let target = planned.json["facts"]["target_version"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(target.starts_with("15.") && target != "15.8", "{target}");
    assert_eq!(planned.json["ready"], true, "{}", planned.json);
    assert_eq!(step(&planned, "upgrade")["status"], "planned");
    assert_eq!(
        step(&planned, "restart")["command"],
        json!([
            "dbcadence",
            "lab",
            "restart",
            "--dir",
            lab.lab.dir,
            "--instance",
            "pg1"
        ])
    );
    assert_eq!(version(pg1), "15.8", "check mode changed nothing");

    // The patch.
    let patched = run_module("db_patch", &args);
    assert_eq!(patched.json["failed"], false, "{}", patched.json);
    assert_eq!(patched.json["changed"], true);
    for id in [
        "upgrade",
        "restart",
        "wait",
        "version",
        "post_upgrade",
        "smoke",
        "log_scan",
    ] {
        assert_eq!(
            step(&patched, id)["status"],
            "done",
            "{id}: {}",
            patched.json
        );
    }
    assert!(
        step(&patched, "smoke")["detail"]
            .as_str()
            .unwrap()
            .contains("we\"ird; db: 1 tables"),
        "{}",
        patched.json
    );
    assert_eq!(version(pg1), target);
    let rows = query(pg1, &db, "SELECT count(*), sum(id) FROM orders");
    assert_eq!(rows[0], [Some("500".into()), Some("125250".into())]);
    let trgm = query(pg1, &db, "SELECT similarity('disk', 'disks') > 0.5");
    assert_eq!(
        trgm[0][0].as_deref(),
        Some("t"),
        "the extension works on the new release"
    );

    // The ledger: one patch record, ok and changed, with its steps; no password anywhere.
    let records = ledger(work.path());
    let record = records
        .iter()
        .rev()
        .find(|r| r["task"] == "patch" && r["check_mode"] == false)
        .unwrap();
    assert_eq!(record["outcome"], "ok", "{record}");
    assert_eq!(record["changed"], true);
    assert_eq!(record["details"]["steps"].as_array().unwrap().len(), 7);
    let password = pg1.password().unwrap();
    let ledger_text = std::fs::read_to_string(work.path().join("ledger.jsonl")).unwrap();
    assert!(!ledger_text.contains(&password) && !patched.stdout.contains(&password));

    // Again: nothing to do, not a failure.
    let again = run_module("db_patch", &args);
    assert_eq!(again.json["failed"], false, "{}", again.json);
    assert_eq!(again.json["changed"], false);
    assert!(
        again.json["msg"]
            .as_str()
            .unwrap()
            .contains("nothing to do"),
        "{}",
        again.json
    );
}

#[test]
fn a_failed_restart_says_the_server_is_down_and_the_way_back_works() {
    let old = old_postgres_bin();
    let lab = PrivateLab::start_on(1, 0, 0, Some(old.clone()));
    let pg1 = lab.instance("pg1");
    let work = tempfile::tempdir().unwrap();
    let db = seed_and_back_up(pg1, work.path());
    // A configuration error that only a restart reads.
    let conf = pg1.data_dir.join("postgresql.conf");
    let good = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{good}\nshared_buffers = 'lots'\n")).unwrap();

    let failed = run_module("db_patch", &apply_args(&lab, pg1, work.path()));
    assert_eq!(failed.json["failed"], true, "{}", failed.json);
    assert_eq!(step(&failed, "upgrade")["status"], "done");
    assert_eq!(step(&failed, "restart")["status"], "failed");
    assert_eq!(step(&failed, "smoke")["status"], "skipped");
    let msg = failed.json["msg"].as_str().unwrap();
    assert!(msg.contains("DOWN"), "{msg}");
    assert!(
        msg.contains("shared_buffers"),
        "the server's own words: {msg}"
    );
    let rollback: Vec<&str> = failed.json["rollback"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        rollback
            .iter()
            .any(|s| s.contains(&format!("--bin-dir {}", old.display()))),
        "{rollback:?}"
    );
    let record = ledger(work.path())
        .into_iter()
        .rev()
        .find(|r| r["task"] == "patch")
        .unwrap();
    assert_eq!(record["outcome"], "failed");
    assert!(
        record["details"]["state"]
            .as_str()
            .unwrap()
            .contains("DOWN")
    );
    assert_eq!(
        record["details"]["rollback"].as_array().unwrap().len(),
        rollback.len()
    );
    assert!(!pg1.running());

    // The way back: fix the configuration, go back to the old binaries, start: 15.8 again,
    // with the data.
    std::fs::write(&conf, good).unwrap();
    lab::upgrade(&lab.lab.dir, "pg1", Some(old)).unwrap();
    lab::restart(&lab.lab.dir, "pg1").unwrap();
    assert_eq!(version(pg1), "15.8");
    assert_eq!(
        query(pg1, &db, "SELECT count(*) FROM orders")[0][0].as_deref(),
        Some("500")
    );
}

#[test]
fn mariadb_apply_runs_a_restart_based_upgrade_and_mariadb_upgrade() {
    let lab = PrivateLab::start(0, 1, 0);
    let my1 = lab.instance("my1");
    let work = tempfile::tempdir().unwrap();
    let db = "we\"ird; db";
    let mut engine = connect(my1);
    engine.create_database(db).unwrap();
    engine
        .execute_in(
            Some(db),
            "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)",
        )
        .unwrap();
    drop(engine);
    let mut args = apply_args(&lab, my1, work.path());
    // One MariaDB release here: a reinstall of it (force), gates on a fresh lab without
    // backups overridden by name.
    args["force"] = json!(true);
    args["ignore_gates"] = json!(["verified_backup"]);
    let run = run_module("db_patch", &args);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert_eq!(run.json["changed"], true);
    let gate = run.json["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "verified_backup")
        .unwrap();
    assert_eq!(
        (gate["passed"].clone(), gate["overridden"].clone()),
        (json!(false), json!(true))
    );
    for id in [
        "upgrade",
        "restart",
        "wait",
        "version",
        "post_upgrade",
        "smoke",
        "log_scan",
    ] {
        assert_eq!(step(&run, id)["status"], "done", "{id}: {}", run.json);
    }
    assert!(
        step(&run, "post_upgrade")["detail"]
            .as_str()
            .unwrap()
            .starts_with("mariadb-upgrade"),
        "{}",
        run.json
    );
    assert_eq!(
        query(my1, db, "SELECT COUNT(*) FROM t")[0][0].as_deref(),
        Some("2")
    );
    // Without force, the same server is at its target: nothing to do, a success (here
    // through the CLI).
    let again = duct::cmd!(
        bin("dbcadence"),
        "patch",
        "--apply",
        "--format",
        "json",
        "--engine",
        "mysql",
        "--host",
        &my1.host,
        "--port",
        my1.port.to_string(),
        "--user",
        &my1.user,
        "--password-file",
        &my1.password_file,
        "--ssl-mode",
        "verify-full",
        "--ca-cert",
        &my1.ca_cert,
        "--instance-id",
        "my1",
        "--platform",
        "lab",
        "--lab-dir",
        &lab.lab.dir,
        "--ignore-gate",
        "verified_backup",
        "--ledger",
        work.path().join("ledger.jsonl"),
    )
    .env("PATH", path_with_our_binaries())
    .read()
    .expect("dbcadence patch exits 0 when there is nothing to do");
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        again["state"],
        format!(
            "runs {}: nothing to do",
            again["facts"]["running_version"].as_str().unwrap()
        )
    );
    assert!(again["steps"].as_array().unwrap().is_empty());
}

/// PATH with the built `dbcadence` first: the lab platform's commands call it.
fn path_with_our_binaries() -> String {
    format!(
        "{}:{}",
        bin("dbcadence").parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}
