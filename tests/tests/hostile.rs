//! Hostile shapes against real lab servers: database names that read like options, scratch
//! directories with spaces and quotes. A name from a database is data, never an option of a
//! child tool and never a shell word.

use std::path::Path;

use dbcadence_core::lab::LabInstance;
use dbcadence_e2e::*;
use serde_json::{Value, json};

fn backup_args(instance: &LabInstance, database: &str, backup_dir: &Path) -> Value {
    json!({
        "engine": instance.engine, "login_host": instance.host, "login_port": instance.port,
        "login_user": instance.user, "login_password": instance.password().unwrap(),
        "ssl_mode": "verify-full", "ca_cert": instance.ca_cert,
        "database": database, "backup_dir": backup_dir, "instance_id": instance.name,
        "ledger_path": backup_dir.join("ledger.jsonl"), "lock_timeout": 5,
    })
}

/// A directory whose name holds a space, a single and a double quote and a `$`: it would
/// break (or be run by) a shell if one ever saw it.
fn awkward_dir(parent: &Path) -> std::path::PathBuf {
    let dir = parent.join("sp 'q\"$x");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn option_like_database_names_are_backed_up_and_verified_as_names() {
    let work = tempfile::Builder::new()
        .prefix("dbc-host.")
        .tempdir_in("/tmp")
        .unwrap();
    // A file outside the backups that a name read as `--result-file=` or `--file=` would
    // truncate: it must keep its content.
    let canary = work.path().join("canary.txt");
    std::fs::write(&canary, "precious").unwrap();
    let backups = work.path().join("backups");
    let scratch = awkward_dir(work.path());
    for instance in [pg(), my()] {
        let names = [
            format!("--result-file={}", canary.display()),
            format!("--file={}", canary.display()),
            "-h".to_string(),
            "-".to_string(),
        ];
        for name in &names {
            let mut engine = connect(instance);
            engine.drop_database(name).unwrap();
            engine.create_database(name).unwrap();
            engine
                .execute_in(
                    Some(name),
                    "CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);",
                )
                .unwrap();
            let run = run_module("db_backup", &backup_args(instance, name, &backups));
            assert_eq!(
                run.json["failed"], false,
                "{} {name}: {}",
                instance.name, run.json
            );
            assert_eq!(run.json["manifest"]["database"], name.as_str());
            let verify = run_module(
                "db_verify",
                &json!({
                    "backup": run.json["path"], "backup_dir": backups,
                    "scratch_dir": scratch,
                    "ledger_path": backups.join("ledger.jsonl"),
                }),
            );
            assert_eq!(
                verify.json["verified"], true,
                "{} {name}: {}",
                instance.name, verify.json
            );
            assert_eq!(verify.json["tables_checked"], 1, "{}", verify.json);
            engine.drop_database(name).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&canary).unwrap(),
            "precious",
            "no child tool read a name as an option ({})",
            instance.name
        );
    }
}

#[test]
fn physical_verification_works_in_a_scratch_dir_with_spaces_and_quotes() {
    let private = PrivateLab::start(1, 1, 0);
    let work = tempfile::Builder::new()
        .prefix("dbc-phq.")
        .tempdir_in("/tmp")
        .unwrap();
    let scratch = awkward_dir(work.path());
    for name in ["pg1", "my1"] {
        let instance = private.instance(name);
        let backups = work.path().join("backups");
        let mut args = backup_args(instance, "*", &backups);
        args["method"] = json!("physical");
        let run = run_module("db_backup", &args);
        assert_eq!(run.json["failed"], false, "{name}: {}", run.json);
        let verify = run_module(
            "db_verify",
            &json!({
                "backup": run.json["path"], "backup_dir": backups, "scratch_dir": scratch,
                "ledger_path": backups.join("ledger.jsonl"),
            }),
        );
        assert_eq!(verify.json["verified"], true, "{name}: {}", verify.json);
        assert_eq!(verify.json["scratch"], "physical copy");
    }
}
