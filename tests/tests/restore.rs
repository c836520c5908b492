//! db_restore on real servers: a backup of the shared lab restored into a database on another
//! lab server (with and without its globals), check mode, the refusal to replace a database
//! that holds tables, a replace with its safety backup restored back, a restore as of a time
//! between two backups, a flipped byte that stops everything before the target is touched,
//! hostile names (`--x=y`, `we"ird; db`), and MariaDB DEFINERs rewritten for a target without
//! the source's accounts.

use std::path::Path;

use dbcadence_core::connection::EngineKind;
use dbcadence_core::lab::LabInstance;
use dbcadence_e2e::*;
use serde_json::{Value, json};

/// A target server (pg1 or my1) of the lab the tests of this file restore into.
fn target(name: &str) -> &'static LabInstance {
    targets_lab()
        .instance(name)
        .unwrap_or_else(|| panic!("{name} in the targets lab"))
}

fn fill(instance: &LabInstance, db: &str, rows: u64) {
    let mut engine = connect(instance);
    engine.drop_database(db).unwrap();
    engine.create_database(db).unwrap();
    let sql = match instance.engine {
        EngineKind::Postgresql => format!(
            "CREATE TABLE orders (id integer PRIMARY KEY, note text); \
             INSERT INTO orders SELECT g, 'it''s row ' || g FROM generate_series(1, {rows}) g; \
             CREATE INDEX orders_note ON orders (note);"
        ),
        EngineKind::Mysql => format!(
            "CREATE TABLE orders (id integer PRIMARY KEY, note text, KEY (note(20))); \
             INSERT INTO orders SELECT seq, CONCAT('it''s row ', seq) FROM seq_1_to_{rows};"
        ),
    };
    engine.execute_in(Some(db), &sql).unwrap();
}

fn back_up(instance: &LabInstance, db: &str, dir: &Path, extra: Value) -> String {
    let mut args = backup_args(instance, db, dir);
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    let run = run_module("db_backup", &args);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    run.json["path"].as_str().unwrap().to_string()
}

fn restore_args(target: &LabInstance, dir: &Path, extra: Value) -> Value {
    let mut args = json!({
        "engine": target.engine, "login_host": target.host, "login_port": target.port,
        "login_user": target.user, "login_password": target.password().unwrap(),
        "ssl_mode": "verify-full", "ca_cert": target.ca_cert,
        "backup_dir": dir, "ledger_path": dir.join("ledger.jsonl"),
    });
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    args
}

fn rows(instance: &LabInstance, db: &str) -> Option<String> {
    query(instance, db, "SELECT COUNT(*) FROM orders")[0][0].clone()
}

fn database_exists(instance: &LabInstance, db: &str) -> bool {
    connect(instance)
        .databases()
        .unwrap()
        .iter()
        .any(|d| d.name == db)
}

#[test]
fn a_verified_backup_lands_on_another_server_with_or_without_its_globals() {
    let dir = tempfile::tempdir().unwrap();
    let source = unique("rsrc");
    let role = unique("dbc_reader");
    fill(pg(), &source, 300);
    connect(pg())
        .execute_in(
            None,
            &format!("CREATE ROLE {role} LOGIN PASSWORD 'x''y\"z'"),
        )
        .unwrap();
    back_up(pg(), &source, dir.path(), json!({"globals": true}));
    // The newest verified backup is the default: none yet.
    let target = target("pg1");
    let args = |extra: Value| {
        let mut base = json!({"instance_id": "pg1", "database": source});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        restore_args(target, dir.path(), base)
    };
    let none = run_module("db_restore", &args(json!({})));
    assert_eq!(none.json["failed"], true);
    assert!(
        none.json["msg"]
            .as_str()
            .unwrap()
            .contains("no verified backup"),
        "{}",
        none.json
    );
    let verified = run_module(
        "db_verify",
        &json!({"backup_dir": dir.path(), "ledger_path": dir.path().join("ledger.jsonl")}),
    );
    assert_eq!(verified.json["verified"], true, "{}", verified.json);

    // Check mode: the plan, nothing created.
    let plain = format!("{source}_copy");
    let mut check = args(json!({"target_database": plain}));
    check["_ansible_check_mode"] = json!(true);
    check["_ansible_diff"] = json!(true);
    let planned = run_module("db_restore", &check);
    assert_eq!(planned.json["failed"], false, "{}", planned.json);
    assert_eq!(planned.json["action"], "created");
    assert!(
        planned.json["diff"]["after"]
            .as_str()
            .unwrap()
            .contains(&plain),
        "{}",
        planned.json
    );
    assert!(!database_exists(target, &plain));

    // Without globals: the data, owned by the restoring login; the role is not created.
    let restored = run_module("db_restore", &args(json!({"target_database": plain})));
    assert_eq!(restored.json["failed"], false, "{}", restored.json);
    assert_eq!(restored.json["changed"], true);
    assert_eq!(restored.json["tables_checked"], 1);
    assert_eq!(rows(target, &plain).as_deref(), Some("300"));
    let has_role = |name: &str| {
        !query(
            target,
            "postgres",
            &format!("SELECT 1 FROM pg_roles WHERE rolname = '{name}'"),
        )
        .is_empty()
    };
    assert!(!has_role(&role));

    // With globals: the role exists afterwards, and a second run leaves it as it is.
    let with = format!("{source}_globals");
    let run = run_module(
        "db_restore",
        &args(json!({"target_database": with, "globals": "skip_existing"})),
    );
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert!(has_role(&role), "{}", run.json);
    assert!(
        run.json["globals"]
            .to_string()
            .contains(&format!("role {role}: created")),
        "{}",
        run.json
    );
    let strict = run_module(
        "db_restore",
        &args(json!({"target_database": format!("{source}_strict"), "globals": "fail_existing"})),
    );
    assert_eq!(strict.json["failed"], true);
    assert!(
        strict.json["msg"].as_str().unwrap().contains(&role),
        "{}",
        strict.json
    );

    // The ledger: task restore, ok, with its duration; no password anywhere.
    let ledger = std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap();
    let record: Value = ledger
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["task"] == "restore" && r["outcome"] == "ok" && r["check_mode"] == false)
        .unwrap();
    assert!(record["details"]["restore_seconds"].as_f64().unwrap() > 0.0);
    assert!(!ledger.contains(&target.password().unwrap()) && !ledger.contains("x''y"));
    connect(pg())
        .execute_in(None, &format!("DROP ROLE {role}"))
        .unwrap();
}

#[test]
fn replacing_needs_replace_keeps_a_safety_backup_that_restores_back() {
    for (source, target) in [(pg(), target("pg1")), (my(), target("my1"))] {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("--x={}", unique("y"));
        fill(source, &db, 50);
        back_up(source, &db, dir.path(), json!({}));
        // The target already holds a different "--x=y" (7 rows).
        fill(target, &db, 7);
        let args = |extra: Value| {
            let mut base =
                json!({"instance_id": source.name, "database": db, "allow_unverified": true});
            base.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            restore_args(target, dir.path(), base)
        };
        let refused = run_module("db_restore", &args(json!({})));
        assert_eq!(refused.json["failed"], true);
        assert!(
            refused.json["msg"]
                .as_str()
                .unwrap()
                .contains("replace: true"),
            "{}",
            refused.json
        );
        assert_eq!(rows(target, &db).as_deref(), Some("7"), "untouched");

        // Production's rule: no replace without an approved change.
        let unapproved = run_module(
            "db_restore",
            &args(json!({"replace": true, "require_change": true})),
        );
        assert_eq!(unapproved.json["failed"], true);
        assert!(
            unapproved.json["msg"]
                .as_str()
                .unwrap()
                .contains("approved change record"),
            "{}",
            unapproved.json
        );
        assert_eq!(rows(target, &db).as_deref(), Some("7"), "untouched");
        let replaced = run_module("db_restore", &args(json!({"replace": true})));
        assert_eq!(replaced.json["failed"], false, "{}", replaced.json);
        assert_eq!(replaced.json["action"], "replaced");
        assert_eq!(rows(target, &db).as_deref(), Some("50"));
        let safety = replaced.json["safety_backup"].as_str().unwrap().to_string();
        assert!(replaced.json["msg"].as_str().unwrap().contains(&safety));

        // The safety backup puts the replaced database back.
        let back = run_module(
            "db_restore",
            &restore_args(
                target,
                dir.path(),
                json!({"backup": safety, "replace": true}),
            ),
        );
        assert_eq!(back.json["failed"], false, "{}", back.json);
        assert_eq!(rows(target, &db).as_deref(), Some("7"));
        connect(target).drop_database(&db).unwrap();
    }
}

#[test]
fn as_of_a_time_between_two_backups_the_older_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("we\"ird; {}", unique("db"));
    fill(my(), &db, 10);
    back_up(my(), &db, dir.path(), json!({}));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = jiff::Timestamp::now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fill(my(), &db, 20);
    back_up(my(), &db, dir.path(), json!({}));
    let target = target("my1");
    let older = format!("{db} older");
    let run = run_module(
        "db_restore",
        &restore_args(
            target,
            dir.path(),
            json!({"instance_id": "my1", "database": db, "allow_unverified": true,
                   "target_database": older, "before": between.to_string()}),
        ),
    );
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert_eq!(rows(target, &older).as_deref(), Some("10"));
    // Without a time: the newest, here through the CLI.
    let newer = format!("{db} newer");
    let out = duct::cmd!(
        bin("dbcadence"),
        "restore",
        "--engine",
        "mysql",
        "--host",
        &target.host,
        "--port",
        target.port.to_string(),
        "--user",
        &target.user,
        "--password-file",
        &target.password_file,
        "--ssl-mode",
        "verify-full",
        "--ca-cert",
        &target.ca_cert,
        "--backup-dir",
        dir.path(),
        "--instance-id",
        "my1",
        "--database",
        &db,
        "--allow-unverified",
        "--target-database",
        &newer,
        "--format",
        "json",
        "--ledger",
        dir.path().join("ledger.jsonl"),
    )
    .read()
    .expect("dbcadence restore exits 0");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["action"], "created", "{report}");
    assert_eq!(rows(target, &newer).as_deref(), Some("20"));
    for name in [older, newer] {
        connect(target).drop_database(&name).unwrap();
    }
}

#[test]
fn a_flipped_byte_stops_the_restore_before_the_target_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let db = unique("flip");
    fill(pg(), &db, 100);
    let path = back_up(pg(), &db, dir.path(), json!({}));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(Path::new(&path).join("manifest.json")).unwrap())
            .unwrap();
    let dump = Path::new(&path).join(manifest["files"][0]["path"].as_str().unwrap());
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&dump, bytes).unwrap();
    let target = target("pg1");
    let run = run_module(
        "db_restore",
        &restore_args(
            target,
            dir.path(),
            json!({"backup": path, "target_database": db}),
        ),
    );
    assert_eq!(run.json["failed"], true);
    assert!(
        run.json["msg"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch"),
        "{}",
        run.json
    );
    assert!(!database_exists(target, &db), "the target was not touched");
}

#[test]
fn mariadb_definers_become_the_restoring_login() {
    let dir = tempfile::tempdir().unwrap();
    let db = unique("definer");
    fill(my(), &db, 5);
    let account = unique("owner");
    let mut source = connect(my());
    source
        .execute_in(
            None,
            &format!(
                "CREATE USER '{account}'@'%' IDENTIFIED BY 'pw'; GRANT ALL ON *.* TO '{account}'@'%'"
            ),
        )
        .unwrap();
    source
        .execute_in(
            Some(&db),
            &format!(
                "CREATE DEFINER='{account}'@'%' SQL SECURITY DEFINER VIEW big_orders AS SELECT id FROM orders WHERE id > 2"
            ),
        )
        .unwrap();
    back_up(my(), &db, dir.path(), json!({}));
    source
        .execute_in(None, &format!("DROP USER '{account}'@'%'"))
        .unwrap();
    let target = target("my1");
    let run = run_module(
        "db_restore",
        &restore_args(
            target,
            dir.path(),
            json!({"instance_id": "my1", "database": db, "allow_unverified": true,
                   "rewrite_definers": true}),
        ),
    );
    assert_eq!(run.json["failed"], false, "{}", run.json);
    // The view works on the target: its definer is the restoring login.
    assert_eq!(
        query(target, &db, "SELECT COUNT(*) FROM big_orders")[0][0].as_deref(),
        Some("3")
    );
    let definer = query(
        target,
        "information_schema",
        &format!("SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{db}'"),
    );
    assert!(
        definer[0][0].as_deref().unwrap().starts_with("dbcadence@"),
        "{definer:?}"
    );
    connect(target).drop_database(&db).unwrap();
}

/// Stops a server started on a restored data directory (its pid file says which process).
fn stop_restored(engine: EngineKind, data_dir: &Path) {
    let pid_file = match engine {
        EngineKind::Postgresql => data_dir.join("postmaster.pid"),
        EngineKind::Mysql => Path::new(&format!("{}.run", data_dir.display())).join("mysqld.pid"),
    };
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid = pid.lines().next().unwrap().trim().to_string();
    duct::cmd!("kill", "-TERM", &pid).run().unwrap();
    wait_until(60, "the restored server stops", || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
}

#[test]
fn a_physical_backup_lands_in_a_new_data_directory_and_starts() {
    for name in ["pg1", "my1"] {
        let instance = target(name);
        let db = format!("{} phys\"ical", unique("ph"));
        fill(instance, &db, 40);
        let dir = tempfile::Builder::new()
            .prefix("dbc-rp.")
            .tempdir_in("/tmp")
            .unwrap();
        let path = back_up(instance, "*", dir.path(), json!({"method": "physical"}));
        let data_dir = dir.path().join("restored");
        let args = restore_args(
            instance,
            dir.path(),
            json!({"backup": path, "data_dir": data_dir, "start": true}),
        );
        // Check mode: the plan, nothing unpacked.
        let mut check = args.clone();
        check["_ansible_check_mode"] = json!(true);
        let planned = run_module("db_restore", &check);
        assert_eq!(planned.json["failed"], false, "{}", planned.json);
        assert!(!data_dir.exists());
        let run = run_module("db_restore", &args);
        assert_eq!(run.json["failed"], false, "{name}: {}", run.json);
        assert!(
            run.json["databases"]
                .as_array()
                .unwrap()
                .contains(&json!(db)),
            "{name}: {}",
            run.json
        );
        assert!(
            run.json["msg"]
                .as_str()
                .unwrap()
                .contains("a server runs on it")
        );
        let mode = std::fs::metadata(&data_dir).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        // Never over a directory that holds something (here: the running copy).
        let again = run_module("db_restore", &args);
        assert_eq!(again.json["failed"], true);
        assert!(
            again.json["msg"].as_str().unwrap().contains("not empty"),
            "{}",
            again.json
        );
        stop_restored(instance.engine, &data_dir);
        connect(instance).drop_database(&db).unwrap();
    }
}
