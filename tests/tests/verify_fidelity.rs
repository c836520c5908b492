//! MariaDB verification loads a dump faster than a plain restore (rows on parallel sessions,
//! secondary keys built afterwards), so it proves what it restored: SHOW CREATE of every
//! table, view, routine, trigger and event is recorded at backup time and compared with the
//! restore. A dump tampered with (its checksum rewritten to match) fails on what it lacks.

use std::path::Path;

use dbcadence_e2e::*;
use serde_json::{Value, json};

/// A database with what a plain restore has to get right: secondary, unique and composite
/// keys, an AUTO_INCREMENT key, a foreign key, a view, routines, a trigger and an event, with
/// names that need quoting.
fn make_rich_database(name: &str) {
    let mut engine = connect(my());
    engine.drop_database(name).unwrap();
    engine.create_database(name).unwrap();
    let sql = "CREATE TABLE `order``s -h` (id bigint NOT NULL AUTO_INCREMENT, status tinyint, at datetime, amount decimal(12,2), email varchar(80), \
                 PRIMARY KEY (id), UNIQUE KEY `u email` (email), KEY by_status (status), KEY at_amount (at, amount), KEY by_amount (amount)) ENGINE=InnoDB; \
               INSERT INTO `order``s -h` (status, at, amount, email) SELECT seq % 5, '2026-01-01' + INTERVAL seq MINUTE, seq * 1.5, CONCAT('u', seq, '@example.org') FROM seq_1_to_3000; \
               CREATE TABLE audit_log (n int NOT NULL AUTO_INCREMENT, order_id bigint, KEY (n), KEY by_order (order_id)) ENGINE=InnoDB; \
               CREATE TABLE line (id int PRIMARY KEY, order_id bigint, KEY by_order (order_id), CONSTRAINT line_order FOREIGN KEY (order_id) REFERENCES `order``s -h` (id)) ENGINE=InnoDB; \
               INSERT INTO line SELECT seq, seq FROM seq_1_to_500; \
               CREATE VIEW `big; orders` AS SELECT id, amount FROM `order``s -h` WHERE amount > 1000; \
               CREATE PROCEDURE `close \"day\"`(IN d date) SELECT COUNT(*) FROM `order``s -h` WHERE at < d; \
               CREATE FUNCTION doubled(x int) RETURNS int DETERMINISTIC RETURN x * 2; \
               CREATE TRIGGER log_order AFTER INSERT ON `order``s -h` FOR EACH ROW INSERT INTO audit_log (order_id) VALUES (NEW.id); \
               CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 03:00:00' DISABLE DO DELETE FROM audit_log WHERE n < 0;";
    engine.execute_in(Some(name), sql).unwrap();
}

fn verify(dir: &Path, backup: &Path, extra: Value) -> Value {
    let mut args =
        json!({"backup_dir": dir, "backup": backup, "ledger_path": dir.join("ledger.jsonl")});
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    run_module("db_verify", &args).json
}

#[test]
fn a_fast_restore_matches_every_definition_of_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{} we`ird; db", unique("rich"));
    make_rich_database(&name);
    let path = backed_up(my(), &name, dir.path());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(path.join("manifest.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = manifest["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for kind in ["table", "view", "procedure", "function", "trigger", "event"] {
        assert!(kinds.contains(&kind), "{kind} recorded: {kinds:?}");
    }
    assert_eq!(kinds.len(), 8, "{}", manifest["objects"]);
    // Into a throwaway server, and into a scratch database of a given server (another name).
    let run = verify(dir.path(), &path, json!({}));
    assert_eq!(run["verified"], true, "{run}");
    assert_eq!(run["definitions_checked"], 8, "{run}");
    // Two tables had their secondary keys built after the rows; the one with a foreign key
    // was loaded as it is. The rows of both tables that have any went as LOAD DATA.
    assert_eq!(
        run["restore_method"],
        "rows on 2 sessions (2 tables as LOAD DATA), secondary keys of 2 tables built after their rows"
    );
    assert!(
        run["msg"]
            .as_str()
            .unwrap()
            .contains("definitions of 8 objects match"),
        "{run}"
    );
    let target = my();
    let run = verify(
        dir.path(),
        &path,
        json!({"engine": "mysql", "login_host": target.host, "login_port": target.port, "login_user": target.user,
               "login_password": target.password().unwrap(), "ssl_mode": "verify-full", "ca_cert": target.ca_cert}),
    );
    assert_eq!(run["verified"], true, "{run}");
    assert_eq!(run["scratch"], "target");
    connect(my()).drop_database(&name).unwrap();
}

#[test]
fn events_of_a_database_with_a_double_quote_in_its_name_are_refused_before_dumping() {
    // mariadb-dump 10.11 cannot select such a database to dump its events.
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{} we\"ird; db", unique("quote"));
    let mut engine = connect(my());
    engine.create_database(&name).unwrap();
    engine
        .execute_in(Some(&name), "CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    let plain = run_module("db_backup", &backup_args(my(), &name, dir.path()));
    assert_eq!(plain.json["failed"], false, "{}", plain.json);
    engine
        .execute_in(
            Some(&name),
            "CREATE EVENT e ON SCHEDULE EVERY 1 DAY DISABLE DO SELECT 1",
        )
        .unwrap();
    let run = run_module("db_backup", &backup_args(my(), &name, dir.path()));
    assert_eq!(run.json["failed"], true, "{}", run.json);
    assert!(
        run.json["msg"]
            .as_str()
            .unwrap()
            .contains("move its events to another database"),
        "{}",
        run.json
    );
    assert_eq!(dbcadence_core::backup::list(dir.path()).unwrap().len(), 1);
    engine.drop_database(&name).unwrap();
}

/// Rewrites the dump of the backup at `path` with `edit`, and the manifest's checksum and
/// sizes to match: only the content can tell.
fn tamper(path: &Path, edit: impl Fn(String) -> String) {
    let file = path.join("dump.sql.zst");
    let dump =
        String::from_utf8(zstd::decode_all(std::fs::File::open(&file).unwrap()).unwrap()).unwrap();
    let edited = edit(dump.clone());
    assert_ne!(edited, dump, "the edit changed the dump");
    std::fs::write(&file, zstd::encode_all(edited.as_bytes(), 3).unwrap()).unwrap();
    let sha = duct::cmd!("sha256sum", &file).read().unwrap();
    let manifest_path = path.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let entry = manifest["files"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["path"] == "dump.sql.zst")
        .unwrap();
    entry["sha256"] = json!(sha.split_whitespace().next().unwrap());
    entry["bytes"] = json!(std::fs::metadata(&file).unwrap().len());
    entry["raw_bytes"] = json!(edited.len());
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

/// Removes the lines from the first one containing `start` to the first one after it
/// containing `end`.
fn cut(dump: String, start: &str, end: &str) -> String {
    let lines: Vec<&str> = dump.split_inclusive('\n').collect();
    let from = lines.iter().position(|l| l.contains(start)).unwrap();
    let to = from + lines[from..].iter().position(|l| l.contains(end)).unwrap();
    lines[..from].concat() + &lines[to + 1..].concat()
}

#[test]
fn a_dump_without_an_index_a_trigger_or_a_routine_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("tamper");
    make_rich_database(&name);
    type Case = (&'static str, fn(String) -> String, &'static str);
    let cases: [Case; 3] = [
        (
            "index",
            |d| {
                d.replace("  KEY `by_amount` (`amount`)\n", "")
                    .replace("`at`,`amount`),\n", "`at`,`amount`)\n")
            },
            "table `order`s -h` differs from its definition at backup time: the restore lacks 'KEY `by_amount` (`amount`)'",
        ),
        (
            "trigger",
            |d| cut(d, "TRIGGER log_order AFTER", "*/;;"),
            "trigger `log_order` is missing from the restore",
        ),
        (
            "routine",
            |d| cut(d, "FUNCTION `doubled`(x", ";;"),
            "function `doubled` is missing from the restore",
        ),
    ];
    for (what, edit, expected) in cases {
        let path = backed_up(my(), &name, dir.path());
        tamper(&path, edit);
        let run = verify(dir.path(), &path, json!({}));
        assert_eq!(run["verified"], false, "{what}: {run}");
        assert_eq!(run["failed"], true, "{what}: {run}");
        let problems = run["definition_problems"].to_string();
        assert!(problems.contains(expected), "{what}: {problems}");
        // Rows and checksums alone would have passed it.
        assert_eq!(run["row_mismatches"], json!([]), "{what}: {run}");
        assert_eq!(run["bad_files"], json!([]), "{what}: {run}");
    }
    connect(my()).drop_database(&name).unwrap();
}
