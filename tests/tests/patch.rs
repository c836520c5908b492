//! db_patch, facts and gates on real servers: the installed and running versions, behind and
//! end of life, and gates that pass and fail on real state (no verified backup, a long
//! transaction held open, a replica that stopped replaying, outside the window, no approved
//! change), and an apply that the gates refuse. The real upgrade is in patch_apply.rs.

use std::time::Duration;

use dbcadence_core::lab::LabInstance;
use dbcadence_e2e::*;
use serde_json::{Value, json};

fn patch_args(instance: &LabInstance, dir: &std::path::Path) -> Value {
    json!({
        "engine": instance.engine, "login_host": instance.host, "login_port": instance.port,
        "login_user": instance.user, "login_password": instance.password().unwrap(),
        "ssl_mode": "verify-full", "ca_cert": instance.ca_cert, "instance_id": instance.name,
        "ledger_path": dir.join("ledger.jsonl"), "max_transaction_seconds": 3600,
    })
}

fn gate<'a>(run: &'a ModuleRun, id: &str) -> &'a Value {
    run.json["gates"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", run.json))
        .iter()
        .find(|g| g["id"] == id)
        .unwrap()
}

#[test]
fn facts_of_both_engines_and_behind_against_a_newer_target() {
    let dir = tempfile::tempdir().unwrap();
    for instance in [pg(), my()] {
        let run = run_module("db_patch", &patch_args(instance, dir.path()));
        assert_eq!(run.json["failed"], false, "{}", run.json);
        assert_eq!(run.json["changed"], false);
        let facts = &run.json["facts"];
        let running = facts["running_version"].as_str().unwrap();
        // The lab runs this machine's packaged servers: installed = running.
        assert_eq!(facts["installed_version"], running, "{facts}");
        assert!(facts["end_of_life"].is_string(), "{facts}");
        assert_ne!(facts["status"], "eol", "{facts}");
    }
    let mut args = patch_args(pg(), dir.path());
    args["target_version"] = json!("15.99");
    let behind = run_module("db_patch", &args);
    let facts = &behind.json["facts"];
    assert_eq!(facts["status"], "behind", "{facts}");
    let running_minor: u32 = facts["running_version"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(facts["minor_behind"], 99 - running_minor);
    // Apply with gates not passed (no backup_dir): refused, nothing changed, and said why.
    args["action"] = json!("apply");
    let refused = run_module("db_patch", &args);
    assert_eq!(refused.json["failed"], true, "{}", refused.json);
    assert_eq!(refused.json["changed"], false);
    let msg = refused.json["msg"].as_str().unwrap();
    assert!(
        msg.contains("refused")
            && msg.contains("verified_backup")
            && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert_eq!(
        refused.json["state"],
        format!(
            "untouched: runs {}",
            facts["running_version"].as_str().unwrap()
        )
    );
    // A major version is not a patch; an unknown gate name is an error, not a silent pass.
    args["target_version"] = json!("16.1");
    args["ignore_gates"] = json!(["verified_backup"]);
    let major = run_module("db_patch", &args);
    assert!(
        major.json["msg"]
            .as_str()
            .unwrap()
            .contains("not a minor release"),
        "{}",
        major.json
    );
    args["ignore_gates"] = json!(["backups"]);
    let unknown = run_module("db_patch", &args);
    assert_eq!(unknown.json["failed"], true);
    assert!(
        unknown.json["msg"]
            .as_str()
            .unwrap()
            .contains("no gate named 'backups'"),
        "{}",
        unknown.json
    );
}

#[test]
fn a_replica_that_stopped_replaying_fails_the_lag_gate() {
    let lab = PrivateLab::start(1, 0, 1);
    let (primary, replica) = (lab.instance("pg1"), lab.instance("pg1r"));
    let dir = tempfile::tempdir().unwrap();
    let mut args = patch_args(replica, dir.path());
    args["max_replication_lag_seconds"] = json!(1);
    // Caught up (and the primary idle): not behind, however long ago the last commit was.
    std::thread::sleep(Duration::from_secs(2));
    let run = run_module("db_patch", &args);
    assert_eq!(
        gate(&run, "replication_lag")["passed"],
        true,
        "{}",
        run.json
    );

    query(replica, "postgres", "SELECT pg_wal_replay_pause()");
    connect(primary)
        .execute_in(
            None,
            "CREATE TABLE lag_probe (id int); INSERT INTO lag_probe VALUES (1)",
        )
        .unwrap();
    wait_until(30, "the replica receives WAL it does not replay", || {
        query(
            replica,
            "postgres",
            "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()",
        )[0][0]
            .as_deref()
            == Some("t")
    });
    std::thread::sleep(Duration::from_secs(2));
    let run = run_module("db_patch", &args);
    let lag = gate(&run, "replication_lag");
    assert_eq!(lag["passed"], false, "{}", run.json);
    assert!(lag["evidence"]["seconds"].as_f64().unwrap() >= 1.0, "{lag}");
    assert!(
        lag["reason"]
            .as_str()
            .unwrap()
            .contains("patch the replicas first")
    );

    query(replica, "postgres", "SELECT pg_wal_replay_resume()");
    wait_until(30, "the replica catches up", || {
        let run = run_module("db_patch", &args);
        gate(&run, "replication_lag")["passed"] == true
    });
}

#[test]
fn gates_pass_and_fail_on_real_state() {
    let instance = pg();
    let dir = tempfile::tempdir().unwrap();
    let db = unique("patchgate");
    connect(instance).create_database(&db).unwrap();
    let mut args = patch_args(instance, dir.path());
    // No backup_dir, then one without a backup of this database.
    let run = run_module("db_patch", &args);
    assert_eq!(gate(&run, "verified_backup")["passed"], false);
    assert_eq!(run.json["ready"], false);
    let backups = dir.path().join("backups");
    args["backup_dir"] = json!(backups);
    std::fs::create_dir_all(&backups).unwrap();
    let run = run_module("db_patch", &args);
    let verified = gate(&run, "verified_backup");
    assert_eq!(verified["passed"], false);
    assert!(
        verified["evidence"]["missing"]
            .as_array()
            .unwrap()
            .contains(&json!(db)),
        "{verified}"
    );
    assert_eq!(gate(&run, "free_disk")["passed"], true, "{}", run.json);
    assert_eq!(gate(&run, "window")["passed"], true);
    assert_eq!(gate(&run, "change")["passed"], true);

    // A transaction held open: the gate sees it.
    let blocker = {
        let (instance, db) = (instance.clone(), db.clone());
        std::thread::spawn(move || {
            let mut client = pg_session(&instance, &db);
            client
                .batch_execute("BEGIN; SELECT 1; SELECT pg_sleep(5); COMMIT")
                .unwrap();
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let mut held = args.clone();
    held["max_transaction_seconds"] = json!(1);
    let run = run_module("db_patch", &held);
    assert_eq!(
        gate(&run, "open_transactions")["passed"],
        false,
        "{}",
        run.json
    );
    blocker.join().unwrap();

    // Outside the window; no approved change where one is required.
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let start = now
        .checked_add(jiff::SignedDuration::from_hours(3))
        .unwrap();
    let end = now
        .checked_add(jiff::SignedDuration::from_hours(4))
        .unwrap();
    args["window"] = json!({"start": start.strftime("%H:%M").to_string(), "end": end.strftime("%H:%M").to_string(), "time_zone": "UTC"});
    args["require_change"] = json!(true);
    let run = run_module("db_patch", &args);
    assert_eq!(gate(&run, "window")["passed"], false, "{}", run.json);
    let change = gate(&run, "change");
    assert_eq!(change["passed"], false);
    assert!(
        change["reason"]
            .as_str()
            .unwrap()
            .contains("approved change record"),
        "{change}"
    );
    connect(instance).drop_database(&db).unwrap();
}
