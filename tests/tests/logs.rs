//! db_logs against real servers of private labs: binary logs are never purged past what the
//! newest verified backup or a replica needs; PostgreSQL's log files honour age and budget and
//! the current file stays; MariaDB's error log is rotated, compressed, and the second run is
//! quiet.

use std::path::Path;
use std::time::{Duration, SystemTime};

use dbcadence_core::lab::LabInstance;
use dbcadence_e2e::*;
use serde_json::{Value, json};

fn logs_args(instance: &LabInstance, dir: &Path) -> Value {
    json!({
        "engine": instance.engine, "login_host": instance.host, "login_port": instance.port,
        "login_user": instance.user, "login_password": instance.password().unwrap(),
        "ssl_mode": "verify-full", "ca_cert": instance.ca_cert, "instance_id": instance.name,
        "ledger_path": dir.join("ledger.jsonl"), "metrics_dir": dir.join("metrics"),
    })
}

fn binary_logs(instance: &LabInstance) -> Vec<String> {
    query(instance, "mysql", "SHOW BINARY LOGS")
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect()
}

fn run(args: &Value) -> ModuleRun {
    let run = run_module("db_logs", args);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    run
}

#[test]
fn binary_logs_stay_from_the_newest_verified_backup_and_for_a_lagging_replica() {
    let lab = PrivateLab::start(0, 2, 0);
    let (primary, replica) = (lab.instance("my1"), lab.instance("my2"));
    let dir = tempfile::tempdir().unwrap();
    let mut engine = connect(primary);
    engine.create_database("shop").unwrap();
    engine
        .execute_in(
            Some("shop"),
            "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)",
        )
        .unwrap();
    engine
        .execute_in(None, "FLUSH BINARY LOGS; FLUSH BINARY LOGS")
        .unwrap();
    // The backup records the binary log being written when it was taken.
    let backups = dir.path().join("backups");
    let backup = run_module("db_backup", &backup_args(primary, "shop", &backups));
    assert_eq!(backup.json["failed"], false, "{}", backup.json);
    let at_backup = backup.json["manifest"]["snapshot"]["binlog_file"]
        .as_str()
        .unwrap()
        .to_string();
    let verified = run_module(
        "db_verify",
        &json!({"backup_dir": backups, "instance_id": "my1", "database": "shop",
                "ledger_path": dir.path().join("ledger.jsonl")}),
    );
    assert_eq!(verified.json["verified"], true, "{}", verified.json);
    engine
        .execute_in(
            None,
            "FLUSH BINARY LOGS; FLUSH BINARY LOGS; FLUSH BINARY LOGS",
        )
        .unwrap();
    let all = binary_logs(primary);
    assert!(all.len() >= 6, "{all:?}");

    // Without backup_dir nothing goes.
    let unsure = run(&logs_args(primary, dir.path()));
    assert_eq!(unsure.json["purged_binary_logs"], json!([]));
    assert!(
        unsure.json["limits"].to_string().contains("backup_dir"),
        "{}",
        unsure.json
    );

    // A replica that has executed only up to the second binary log (its SQL thread stopped).
    let second = all[1].clone();
    connect(replica)
        .execute_in(
            None,
            &format!(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{}', MASTER_PASSWORD='{}', \
                 MASTER_LOG_FILE='{second}', MASTER_LOG_POS=4, MASTER_USE_GTID=no; START SLAVE IO_THREAD",
                primary.port,
                primary.user,
                primary.password().unwrap()
            ),
        )
        .unwrap();
    let mut args = logs_args(primary, dir.path());
    args["backup_dir"] = json!(backups);
    args["replicas"] = json!([{
        "engine": "mysql", "login_host": replica.host, "login_port": replica.port,
        "login_user": replica.user, "login_password": replica.password().unwrap(),
        "ssl_mode": "verify-full", "ca_cert": replica.ca_cert,
    }]);
    let mut check = args.clone();
    check["_ansible_check_mode"] = json!(true);
    let planned = run(&check);
    assert_eq!(
        planned.json["purged_binary_logs"],
        json!([all[0]]),
        "{}",
        planned.json
    );
    assert_eq!(binary_logs(primary), all, "check mode purged nothing");
    let purged = run(&args);
    assert_eq!(purged.json["purged_binary_logs"], json!([all[0]]));
    assert!(
        purged.json["binlog_floor"]
            .as_str()
            .unwrap()
            .starts_with(&second)
    );
    assert_eq!(binary_logs(primary)[0], second, "the replica's file stays");

    // Without the replica, the backup's file is the floor: it and everything after stay.
    args.as_object_mut().unwrap().remove("replicas");
    let purged = run(&args);
    assert!(
        purged.json["binlog_floor"]
            .as_str()
            .unwrap()
            .starts_with(&at_backup),
        "{}",
        purged.json
    );
    let left = binary_logs(primary);
    assert_eq!(left[0], at_backup, "{left:?}");
    assert_eq!(run(&args).json["changed"], false, "nothing left to purge");
    let ledger = std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap();
    assert!(!ledger.contains(&replica.password().unwrap()));
}

fn age(path: &Path, days: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
        .unwrap();
}

#[test]
fn postgres_log_files_honour_age_and_budget_and_the_current_file_stays() {
    // The lab's servers log to stderr (no logging_collector): log_dir names a directory of
    // log files, the newest of which is the one being written.
    let pg = pg();
    let logs_dir = tempfile::tempdir().unwrap();
    let logs = logs_dir.path();
    let write = |name: &str, bytes: usize, days: u64| {
        let path = logs.join(name);
        std::fs::write(&path, "x".repeat(bytes)).unwrap();
        age(&path, days);
        path
    };
    let ancient = write("postgresql-2026-01-01.log", 1000, 60);
    let old = write("postgresql-2026-11-01.log", 200_000, 10);
    let older = write("postgresql-2026-10-30.log", 200_000, 12);
    let recent = write("postgresql-recent.log", 1000, 1);
    let current = write("postgresql-now.log", 5000, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut args = logs_args(pg, dir.path());
    args["log_dir"] = json!(logs);
    args["keep_days"] = json!(30);
    args["compress_after_days"] = json!(5);
    let mut check = args.clone();
    check["_ansible_check_mode"] = json!(true);
    let planned = run(&check);
    assert_eq!(planned.json["changed"], true);
    assert!(
        ancient.exists() && old.exists(),
        "check mode touched nothing"
    );
    let first = run(&args);
    let actions: Vec<(String, String)> = first.json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["action"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let did = |action: &str, path: &Path| {
        actions.contains(&(action.to_string(), path.display().to_string()))
    };
    assert!(did("removed", &ancient), "{actions:?}");
    assert!(
        did("compressed", &old) && did("compressed", &older),
        "{actions:?}"
    );
    assert_eq!(
        actions.len(),
        3,
        "the recent and the current file stay: {actions:?}"
    );
    assert!(!ancient.exists() && !old.exists() && recent.exists() && current.exists());
    let packed = logs.join("postgresql-2026-11-01.log.zst");
    assert_eq!(
        zstd::decode_all(std::fs::File::open(&packed).unwrap())
            .unwrap()
            .len(),
        200_000
    );
    assert!(first.json["freed_bytes"].as_u64().unwrap() > 390_000);
    assert_eq!(
        run(&args).json["changed"],
        false,
        "second run: nothing to do"
    );
    // A budget one byte short of what the logs take: the oldest goes first, the current never.
    let total: u64 = std::fs::read_dir(logs)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    args["max_total_bytes"] = json!(total - 1);
    let budget = run(&args);
    assert!(
        !logs.join("postgresql-2026-10-30.log.zst").exists(),
        "{}",
        budget.json
    );
    assert!(
        packed.exists() && recent.exists() && current.exists(),
        "{}",
        budget.json
    );
    // The WAL is reported, never touched.
    assert!(
        budget.json["wal"]["archive_mode"].is_string(),
        "{}",
        budget.json
    );
}

#[test]
fn mariadb_error_log_is_rotated_compressed_and_then_left_alone() {
    let lab = PrivateLab::start(0, 1, 0);
    let my = lab.instance("my1");
    let dir = tempfile::tempdir().unwrap();
    let mut args = logs_args(my, dir.path());
    let size = my.log_file.metadata().unwrap().len();
    args["rotate_bytes"] = json!(size - 1);
    args["compress_after_days"] = json!(0);
    let first = run(&args);
    assert_eq!(first.json["changed"], true);
    let rotated: Vec<_> = std::fs::read_dir(my.log_file.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("error.log."))
        .collect();
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert!(rotated[0].ends_with(".zst"), "{rotated:?}");
    // The server reopened its log: new lines land in a new error.log.
    fail_login(my);
    assert!(
        std::fs::read_to_string(&my.log_file)
            .unwrap()
            .contains("Access denied")
    );
    let second = run(&args);
    assert_eq!(second.json["changed"], false, "{}", second.json);
}

fn fail_login(instance: &LabInstance) {
    let mut args = instance.connection().unwrap();
    args.login_password = Some("wrong".to_string().into());
    assert!(dbcadence_core::engine::connect(&args).is_err());
}
