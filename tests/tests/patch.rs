//! db_patch, facts and gates on real servers: the installed and running versions, behind and
//! end of life, and gates that pass and fail on real state (no verified backup, a long
//! transaction held open, outside the window, no approved change). Applying is refused: not
//! implemented yet.

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
    args["action"] = json!("apply");
    let refused = run_module("db_patch", &args);
    assert_eq!(refused.json["failed"], true);
    assert!(
        refused.json["msg"]
            .as_str()
            .unwrap()
            .contains("not implemented yet")
    );
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
