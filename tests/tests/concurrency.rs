//! Backup, verify and prune of one database at the same time, on a real lab server: a backup
//! being verified is never pruned, two verifications never take the same backup, and a
//! damaged backup directory is reported everywhere instead of being hidden or deleted.

use std::path::{Path, PathBuf};

use dbcadence_e2e::*;
use serde_json::{Value, json};

fn verify_args(dir: &Path, extra: Value) -> Value {
    let mut args = json!({"backup_dir": dir, "ledger_path": dir.join("ledger.jsonl")});
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    args
}

/// Holds a backup's verification lock from outside, as a verification in another process
/// would (flock locks of two open files conflict even within one process).
fn hold_verification_lock(backup: &Path) -> std::fs::File {
    let name = backup.file_name().unwrap().to_string_lossy().into_owned();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(backup.with_file_name(format!(".verifying-{name}")))
        .unwrap();
    file.try_lock().expect("nobody else holds it");
    file
}

#[test]
fn verification_locks_are_respected_by_prune_and_by_other_verifications() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("conc");
    let mut engine = connect(pg());
    engine.create_database(&name).unwrap();
    engine
        .execute_in(
            Some(&name),
            "CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
        )
        .unwrap();
    let backups: Vec<PathBuf> = (0..4)
        .map(|_| {
            let run = run_module("db_backup", &backup_args(pg(), &name, dir.path()));
            assert_eq!(run.json["failed"], false, "{}", run.json);
            PathBuf::from(run.json["path"].as_str().unwrap())
        })
        .collect();

    // The oldest backup is being verified elsewhere: a prune that would remove it keeps it.
    let held = hold_verification_lock(&backups[0]);
    let mut prune = backup_args(pg(), &name, dir.path());
    prune["action"] = json!("prune");
    prune["retention"] = json!({"keep_last": 2});
    let pruned = run_module("db_backup", &prune);
    assert_eq!(pruned.json["failed"], false, "{}", pruned.json);
    assert!(
        backups[0].exists(),
        "a backup being verified is never pruned"
    );
    assert!(
        !backups[1].exists(),
        "the policy still applies to the others"
    );
    assert!(
        pruned.json["warnings"]
            .to_string()
            .contains("is being verified"),
        "{}",
        pruned.json
    );
    // Asking for it explicitly meanwhile is refused, saying why.
    let explicit = run_module(
        "db_verify",
        &verify_args(dir.path(), json!({"backup": backups[0]})),
    );
    assert_eq!(explicit.json["failed"], true);
    assert!(
        explicit.json["msg"]
            .as_str()
            .unwrap()
            .contains("being verified by another run"),
        "{}",
        explicit.json
    );
    drop(held);

    // Two verifications at once take two different backups.
    let runs: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let args = verify_args(dir.path(), json!({"database": name}));
                scope.spawn(move || run_module("db_verify", &args).json)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        assert_eq!(run["failed"], false, "{run}");
    }
    let verified: Vec<&Value> = runs
        .iter()
        .filter(|r| r["verified"] == true)
        .map(|r| &r["backup"])
        .collect();
    assert!(!verified.is_empty(), "{runs:?}");
    if verified.len() == 2 {
        assert_ne!(verified[0], verified[1], "never the same backup twice");
    } else {
        // The second found the only free candidate taken and nothing else to do.
        assert!(
            runs.iter().any(|r| r["nothing_to_verify"] == true),
            "{runs:?}"
        );
    }
    engine.drop_database(&name).unwrap();
}

#[test]
fn a_damaged_backup_directory_is_reported_not_hidden_nor_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("dmg");
    let mut engine = connect(my());
    engine.create_database(&name).unwrap();
    engine
        .execute_in(Some(&name), "CREATE TABLE t (id integer PRIMARY KEY);")
        .unwrap();
    let run = run_module("db_backup", &backup_args(my(), &name, dir.path()));
    assert_eq!(run.json["failed"], false, "{}", run.json);
    let good = PathBuf::from(run.json["path"].as_str().unwrap());
    // An old backup whose manifest was truncated (a disk error, a careless edit).
    let damaged = good.with_file_name("20200101T000000.000Z");
    std::fs::create_dir(&damaged).unwrap();
    std::fs::write(damaged.join("manifest.json"), "{\"format\": 1, \"sta").unwrap();

    let mut prune = backup_args(my(), &name, dir.path());
    prune["action"] = json!("prune");
    prune["retention"] = json!({"keep_last": 1});
    let pruned = run_module("db_backup", &prune);
    assert_eq!(pruned.json["failed"], false, "{}", pruned.json);
    assert!(
        damaged.exists(),
        "retention never removes what it cannot read"
    );
    assert!(
        pruned.json["warnings"]
            .to_string()
            .contains("is not a usable backup"),
        "{}",
        pruned.json
    );
    let verify = run_module(
        "db_verify",
        &verify_args(dir.path(), json!({"database": name})),
    );
    assert_eq!(verify.json["verified"], true, "{}", verify.json);
    assert!(
        verify.json["warnings"]
            .to_string()
            .contains("20200101T000000.000Z"),
        "{}",
        verify.json
    );
    let listed = duct::cmd!(
        bin("dbcadence"),
        "backups",
        "list",
        "--backup-dir",
        dir.path()
    )
    .stdout_capture()
    .stderr_capture()
    .unchecked()
    .run()
    .unwrap();
    assert!(listed.status.success());
    assert!(
        String::from_utf8_lossy(&listed.stderr).contains("is not a usable backup"),
        "{listed:?}"
    );
    engine.drop_database(&name).unwrap();
}
