//! db_backup against real lab servers: content and manifest, secrets, locks, crashes, down servers.

use std::path::Path;
use std::time::{Duration, Instant};

use dbcadence_core::lab::LabInstance;
use dbcadence_e2e::*;
use serde_json::{Value, json};

/// A database with a table of `rows` rows whose text holds quotes, parentheses and non-ASCII.
fn make_database(instance: &LabInstance, name: &str, rows: u64) {
    let mut engine = connect(instance);
    engine.drop_database(name).unwrap();
    engine.create_database(name).unwrap();
    let fill = match instance.engine {
        dbcadence_core::connection::EngineKind::Postgresql => format!(
            "CREATE TABLE \"it's (odd)\" (id integer PRIMARY KEY, note text); \
             INSERT INTO \"it's (odd)\" SELECT g, 'row ' || g || ' it''s (fine), ünïcode' FROM generate_series(1, {rows}) g; \
             CREATE TABLE empty_one (id integer);"
        ),
        dbcadence_core::connection::EngineKind::Mysql => format!(
            "CREATE TABLE `it's (odd)` (id integer PRIMARY KEY, note text); \
             INSERT INTO `it's (odd)` SELECT seq, CONCAT('row ', seq, ' it''s (fine), ünïcode') FROM seq_1_to_{rows}; \
             CREATE TABLE empty_one (id integer);"
        ),
    };
    engine.execute_in(Some(name), &fill).unwrap();
}

fn complete_backups(dir: &Path) -> Vec<dbcadence_core::backup::BackupEntry> {
    dbcadence_core::backup::list(dir).unwrap()
}

#[test]
fn a_backup_holds_the_data_its_manifest_and_checksum_describe() {
    let dir = tempfile::tempdir().unwrap();
    for instance in [pg(), my()] {
        let name = format!("{}; we\"ird é", unique("bk"));
        make_database(instance, &name, 1000);
        let run = run_module("db_backup", &backup_args(instance, &name, dir.path()));
        assert_eq!(run.json["failed"], false, "{}", run.json);
        assert_eq!(run.json["changed"], true);
        let manifest = &run.json["manifest"];
        assert_eq!(manifest["status"], "complete");
        assert_eq!(manifest["database"], name.as_str());
        let tables = manifest["tables"].as_array().unwrap();
        let rows = |t: &str| {
            tables
                .iter()
                .find(|x| x["name"] == t)
                .unwrap_or_else(|| panic!("{t} in {tables:?}"))["rows"]
                .clone()
        };
        assert_eq!(rows("it's (odd)"), 1000, "{}", instance.name);
        assert_eq!(rows("empty_one"), 0);
        let snapshot = &manifest["snapshot"];
        assert!(
            snapshot["lsn"].is_string() || snapshot["binlog_position"].is_u64(),
            "{snapshot}"
        );
        // The stored file is what the manifest says, and decompresses to the data.
        let path = Path::new(run.json["path"].as_str().unwrap());
        let file = &manifest["files"][0];
        let stored = path.join(file["path"].as_str().unwrap());
        let sha = duct::cmd!("sha256sum", &stored).read().unwrap();
        assert!(
            sha.starts_with(file["sha256"].as_str().unwrap()),
            "{sha} vs {file}"
        );
        let raw = duct::cmd!("zstd", "-dc", &stored)
            .stdout_capture()
            .run()
            .unwrap()
            .stdout;
        assert_eq!(raw.len() as u64, file["raw_bytes"].as_u64().unwrap());
        assert!(
            String::from_utf8_lossy(&raw).contains("ünïcode"),
            "the rows are in the dump"
        );
    }
    let listed = complete_backups(dir.path());
    assert_eq!(listed.len(), 2);
    let prom = std::fs::read_to_string(dir.path().join("metrics/dbcadence.prom")).unwrap();
    assert!(prom.contains("dbcadence_backup_size_bytes{"), "{prom}");
    assert!(prom.contains("task=\"backup\""), "{prom}");
}

#[test]
fn the_password_never_reaches_a_command_line_output_ledger_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    for instance in [pg(), my()] {
        let name = unique("secretcheck");
        make_database(instance, &name, 300_000);
        let password = instance.password().unwrap();
        // Sample every process's command line while the backup runs.
        let sampler = ArgvSampler::start(&["pg_dump", "mariadb-dump"]);
        let run = run_module("db_backup", &backup_args(instance, &name, dir.path()));
        let seen = sampler.stop();
        assert_eq!(run.json["failed"], false, "{}", run.json);
        assert!(
            !seen.is_empty(),
            "{}: the sampler saw the dump process",
            instance.name
        );
        for cmdline in &seen {
            assert!(
                !cmdline.contains(&password),
                "password on a command line: {cmdline}"
            );
        }
        assert!(!run.stdout.contains(&password));
        for file in ["ledger.jsonl", "metrics/dbcadence.prom"] {
            assert!(
                !std::fs::read_to_string(dir.path().join(file))
                    .unwrap()
                    .contains(&password),
                "{file}"
            );
        }
        let manifest = std::fs::read_to_string(
            Path::new(run.json["path"].as_str().unwrap()).join("manifest.json"),
        )
        .unwrap();
        assert!(!manifest.contains(&password));
    }
}

#[test]
fn a_second_backup_of_the_same_database_waits_then_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let instance = pg();
    let name = unique("locked");
    make_database(instance, &name, 10);
    let first = run_module("db_backup", &backup_args(instance, &name, dir.path()));
    assert_eq!(first.json["failed"], false, "{}", first.json);
    // Hold the lock as a running backup does.
    let db_dir = Path::new(first.json["path"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(db_dir.join(".lock"))
        .unwrap();
    lock.lock().unwrap();
    let started = Instant::now();
    let second = run_module("db_backup", &backup_args(instance, &name, dir.path()));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited lock_timeout"
    );
    assert_eq!(second.json["failed"], true);
    assert!(
        second.json["msg"]
            .as_str()
            .unwrap()
            .contains("another backup of"),
        "{}",
        second.json
    );
    lock.unlock().unwrap();
    assert_eq!(complete_backups(dir.path()).len(), 1);
    let third = run_module("db_backup", &backup_args(instance, &name, dir.path()));
    assert_eq!(
        third.json["failed"], false,
        "after the lock is released: {}",
        third.json
    );
}

#[test]
fn a_killed_backup_leaves_nothing_listed_and_the_next_run_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let instance = my();
    let name = unique("killed");
    make_database(instance, &name, 400_000);
    let child = start_module("db_backup", &backup_args(instance, &name, dir.path()));
    // Wait for the partial directory to show up, then kill -9 the module mid-dump.
    let db_dir = dir
        .path()
        .join(instance.name.as_str())
        .join(dbcadence_core::backup::encode_name(&name));
    let partial_of = |db_dir: &Path| {
        std::fs::read_dir(db_dir)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(".partial-"))
            .map(|e| e.path())
    };
    wait_until(30, "a partial directory", || partial_of(&db_dir).is_some());
    let partial = partial_of(&db_dir).unwrap();
    child.kill();
    assert!(partial.exists(), "the crash left its partial directory");
    assert!(
        complete_backups(dir.path()).is_empty(),
        "nothing incomplete is listed"
    );
    let next = run_module("db_backup", &backup_args(instance, &name, dir.path()));
    assert_eq!(next.json["failed"], false, "{}", next.json);
    assert_eq!(
        next.json["removed_partials"].as_array().unwrap().len(),
        1,
        "{}",
        next.json
    );
    assert!(!partial.exists());
    assert_eq!(complete_backups(dir.path()).len(), 1);
}

#[test]
fn a_down_server_or_missing_database_fails_with_the_cause_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = backup_args(my(), "anything", dir.path());
    args["login_port"] = json!(free_port);
    let run = run_module("db_backup", &args);
    assert_eq!(run.json["failed"], true);
    assert!(
        run.json["msg"].as_str().unwrap().contains("refused"),
        "{}",
        run.json
    );

    let run = run_module(
        "db_backup",
        &backup_args(pg(), "no_such_db_here", dir.path()),
    );
    assert_eq!(run.json["failed"], true);
    assert!(
        run.json["msg"]
            .as_str()
            .unwrap()
            .contains("'no_such_db_here' does not exist"),
        "{}",
        run.json
    );
    assert!(complete_backups(dir.path()).is_empty());
    let records = dbcadence_core::ledger::Ledger::new(dir.path().join("ledger.jsonl"))
        .read()
        .unwrap()
        .records;
    assert_eq!(records.len(), 2, "failures are in the ledger too");
    assert!(
        records
            .iter()
            .all(|r| r.outcome == dbcadence_core::ledger::Outcome::Failed)
    );
}

#[test]
fn check_mode_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("checkonly");
    make_database(pg(), &name, 10);
    let mut args = backup_args(pg(), &name, dir.path());
    args["_ansible_check_mode"] = json!(true);
    let run = run_module("db_backup", &args);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert_eq!(run.json["changed"], false);
    assert!(run.json["database_bytes"].as_u64().unwrap() > 0);
    assert!(
        !dir.path().join("pg1").exists(),
        "no backup directory in check mode"
    );
}

fn verify_args(dir: &Path, extra: Value) -> Value {
    let mut args = json!({"backup_dir": dir, "ledger_path": dir.join("ledger.jsonl"), "metrics_dir": dir.join("metrics")});
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    args
}

#[test]
fn verification_restores_checks_and_records_the_proof() {
    let dir = tempfile::tempdir().unwrap();
    for instance in [pg(), my()] {
        let name = format!("{} vérif\"y", unique("v"));
        make_database(instance, &name, 2000);
        let backup = run_module("db_backup", &backup_args(instance, &name, dir.path()));
        assert_eq!(backup.json["failed"], false, "{}", backup.json);
        let run = run_module(
            "db_verify",
            &verify_args(
                dir.path(),
                json!({"instance_id": instance.name, "database": name}),
            ),
        );
        assert_eq!(run.json["failed"], false, "{}: {}", instance.name, run.json);
        assert_eq!(run.json["verified"], true);
        assert_eq!(run.json["scratch"], "lab");
        assert_eq!(run.json["tables_checked"], 2, "{}", run.json);
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(Path::new(backup.json["path"].as_str().unwrap()).join("manifest.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["verification"]["verified"], true);
        assert!(manifest["verification"]["verified_at"].is_string());
    }
    assert!(complete_backups(dir.path()).iter().all(|b| b.verified));
    let prom = std::fs::read_to_string(dir.path().join("metrics/dbcadence.prom")).unwrap();
    assert!(
        prom.contains("dbcadence_backup_verified_timestamp_seconds{"),
        "{prom}"
    );
    // Nothing left to verify: the next run says so, ok and unchanged (a verify timer must not
    // fail and page someone because the work is done), and records a skip, not a proof.
    let again = run_module("db_verify", &verify_args(dir.path(), json!({})));
    assert_eq!(again.json["failed"], false, "{}", again.json);
    assert_eq!(again.json["changed"], false);
    assert_eq!(again.json["nothing_to_verify"], true);
    assert!(
        again.json["msg"]
            .as_str()
            .unwrap()
            .contains("every matching backup is verified"),
        "{}",
        again.json
    );
    let last = dbcadence_core::ledger::Ledger::new(dir.path().join("ledger.jsonl"))
        .read()
        .unwrap()
        .records
        .pop()
        .unwrap();
    assert_eq!(last.outcome, dbcadence_core::ledger::Outcome::Skipped);
    // Check mode makes the same choice as a real run, filters included.
    let other = unique("other");
    make_database(pg(), &other, 5);
    let fresh = run_module("db_backup", &backup_args(pg(), &other, dir.path()));
    let check = run_module(
        "db_verify",
        &verify_args(
            dir.path(),
            json!({"database": other, "_ansible_check_mode": true}),
        ),
    );
    assert_eq!(check.json["failed"], false, "{}", check.json);
    assert_eq!(check.json["changed"], false);
    assert_eq!(check.json["backup"], fresh.json["path"], "{}", check.json);
    let none = run_module(
        "db_verify",
        &verify_args(
            dir.path(),
            json!({"database": "no-such-db", "_ansible_check_mode": true}),
        ),
    );
    assert_eq!(none.json["nothing_to_verify"], true, "{}", none.json);
}

#[test]
fn one_flipped_byte_fails_verification_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("flip");
    make_database(pg(), &name, 500);
    let backup = run_module("db_backup", &backup_args(pg(), &name, dir.path()));
    let path = Path::new(backup.json["path"].as_str().unwrap()).to_path_buf();
    let file = path.join("dump.pgcustom.zst");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let run = run_module(
        "db_verify",
        &verify_args(dir.path(), json!({"backup": path})),
    );
    assert_eq!(run.json["failed"], true);
    assert_eq!(run.json["verified"], false);
    assert!(
        run.json["msg"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch in dump.pgcustom.zst"),
        "{}",
        run.json
    );
    assert_eq!(run.json["bad_files"], json!(["dump.pgcustom.zst"]));
    assert!(!complete_backups(dir.path())[0].verified);
}

#[test]
fn a_manifest_that_disagrees_with_the_restore_is_not_verified() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("rows");
    make_database(my(), &name, 50);
    let backup = run_module("db_backup", &backup_args(my(), &name, dir.path()));
    let path = Path::new(backup.json["path"].as_str().unwrap()).to_path_buf();
    let manifest_path = path.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let tables = manifest["tables"].as_array_mut().unwrap();
    let odd = tables
        .iter_mut()
        .find(|t| t["name"] == "it's (odd)")
        .unwrap();
    odd["rows"] = json!(51);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let run = run_module(
        "db_verify",
        &verify_args(dir.path(), json!({"backup": path})),
    );
    assert_eq!(run.json["verified"], false, "{}", run.json);
    assert_eq!(run.json["row_mismatches"][0]["table"], ".it's (odd)");
    assert_eq!(run.json["row_mismatches"][0]["expected"], 51);
    assert_eq!(run.json["row_mismatches"][0]["found"], 50);
}

#[test]
fn verification_into_a_given_server_uses_a_scratch_database_and_drops_it() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("target");
    make_database(pg(), &name, 100);
    run_module("db_backup", &backup_args(pg(), &name, dir.path()));
    let target = pg();
    let run = run_module(
        "db_verify",
        &verify_args(
            dir.path(),
            json!({"engine": "postgresql", "login_host": target.host, "login_port": target.port, "login_user": target.user,
                   "login_password": target.password().unwrap(), "ssl_mode": "verify-full", "ca_cert": target.ca_cert}),
        ),
    );
    assert_eq!(run.json["verified"], true, "{}", run.json);
    assert_eq!(run.json["scratch"], "target");
    let leftovers: Vec<String> = connect(target)
        .databases()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .filter(|n| n.starts_with("dbcadence_verify_"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "scratch databases dropped: {leftovers:?}"
    );
    assert!(!run.stdout.contains(&target.password().unwrap()));
}

#[test]
fn retention_keeps_the_newest_and_the_verified_lists_in_check_mode_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("keep");
    make_database(pg(), &name, 10);
    let mut paths = Vec::new();
    for _ in 0..4 {
        let run = run_module("db_backup", &backup_args(pg(), &name, dir.path()));
        assert_eq!(run.json["failed"], false, "{}", run.json);
        paths.push(run.json["path"].as_str().unwrap().to_string());
    }
    let verified = run_module(
        "db_verify",
        &verify_args(dir.path(), json!({"backup": paths[1]})),
    );
    assert_eq!(verified.json["verified"], true, "{}", verified.json);
    let prune = |check: bool| {
        let mut args = backup_args(pg(), &name, dir.path());
        args["action"] = json!("prune");
        args["retention"] = json!({"keep_last": 1});
        args["_ansible_check_mode"] = json!(check);
        args["_ansible_diff"] = json!(true);
        run_module("db_backup", &args)
    };
    let check = prune(true);
    assert_eq!(check.json["failed"], false, "{}", check.json);
    assert_eq!(check.json["changed"], false);
    assert_eq!(
        check.json["pruned"].as_array().unwrap().len(),
        2,
        "{}",
        check.json
    );
    assert!(
        check.json["diff"]["before"]
            .as_str()
            .unwrap()
            .contains(&paths[0])
    );
    assert!(
        !check.json["diff"]["after"]
            .as_str()
            .unwrap()
            .contains(&paths[0])
    );
    assert_eq!(
        complete_backups(dir.path()).len(),
        4,
        "check mode removed nothing"
    );

    let real = prune(false);
    assert_eq!(real.json["changed"], true);
    let left: Vec<String> = complete_backups(dir.path())
        .iter()
        .map(|b| b.path.display().to_string())
        .collect();
    assert_eq!(
        left,
        vec![paths[1].clone(), paths[3].clone()],
        "the verified and the newest survive"
    );
    let again = prune(false);
    assert_eq!(
        again.json["changed"], false,
        "a second identical prune changes nothing"
    );
    // A prune is its own task in the ledger, never a backup, and the ledger's `changed`
    // agrees with the module's.
    let ledger = dbcadence_core::ledger::Ledger::new(dir.path().join("ledger.jsonl"))
        .read()
        .unwrap()
        .records;
    let prunes: Vec<(bool, bool)> = ledger
        .iter()
        .filter(|r| r.task == dbcadence_core::task::Task::Prune)
        .map(|r| (r.check_mode, r.changed))
        .collect();
    assert_eq!(prunes, [(true, false), (false, true), (false, false)]);
    let backups = ledger
        .iter()
        .filter(|r| r.task == dbcadence_core::task::Task::Backup)
        .count();
    assert_eq!(backups, 4, "only the four real backups are backups");
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop (the tests run as root,
/// like the lab).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("dbc-disk.")
            .tempdir_in("/tmp")
            .unwrap();
        duct::cmd!(
            "mount",
            "-t",
            "tmpfs",
            "-o",
            format!("size={size}"),
            "tmpfs",
            dir.path()
        )
        .run()
        .expect("mount a tmpfs (needs root)");
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = duct::cmd!("umount", self.dir.path()).run();
    }
}

fn nothing_left(dir: &Path) {
    assert!(complete_backups(dir).is_empty(), "no backup listed");
    let leftovers: Vec<String> = walk(dir)
        .into_iter()
        .filter(|p| p.contains(".partial-") || p.ends_with(".zst"))
        .collect();
    assert!(leftovers.is_empty(), "no partial files left: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(entry.path().display().to_string());
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&entry.path()));
        }
    }
    out
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_no_partial_backup() {
    // Random blobs: about 4 MB in the database, over 4 MB compressed (hex-encoded in the dump).
    let name = unique("fulldisk");
    let mut engine = connect(my());
    engine.create_database(&name).unwrap();
    engine
        .execute_in(
            Some(&name),
            // ANALYZE: InnoDB's size statistics lag behind a bulk load, and the pre-flight reads them.
            "CREATE TABLE blobs (id integer PRIMARY KEY, b blob); INSERT INTO blobs SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_4000; ANALYZE TABLE blobs;",
        )
        .unwrap();
    // Too small for even the pre-flight estimate: refused before dumping.
    let tiny = SmallDisk::mount("1m");
    let run = run_module("db_backup", &backup_args(my(), &name, tiny.dir.path()));
    assert_eq!(run.json["failed"], true);
    assert!(
        run.json["msg"]
            .as_str()
            .unwrap()
            .contains("not enough free space"),
        "{}",
        run.json
    );
    nothing_left(tiny.dir.path());
    // Passes the estimate, fills up while writing.
    let small = SmallDisk::mount("3m");
    let mut args = backup_args(my(), &name, small.dir.path());
    args["ledger_path"] = json!("/tmp/dbc-e2e-ledger.jsonl");
    args["metrics_dir"] = json!(null);
    let run = run_module("db_backup", &args);
    assert_eq!(run.json["failed"], true, "{}", run.json);
    let msg = run.json["msg"].as_str().unwrap();
    assert!(
        msg.contains("No space left on device") && msg.contains("disk is full"),
        "{msg}"
    );
    nothing_left(small.dir.path());
}

#[test]
fn a_server_that_stops_mid_dump_fails_the_backup_and_leaves_nothing() {
    let private = PrivateLab::start(1, 0, 0);
    let instance = private.instance("pg1");
    let name = unique("stopping");
    make_database(instance, &name, 1_500_000);
    let dir = tempfile::tempdir().unwrap();
    let handle = start_module("db_backup", &backup_args(instance, &name, dir.path()));
    // Stop the server once pg_dump itself runs (after the row counts), not before.
    let pg_dump = dbcadence_core::engine::postgres::bin_dir()
        .unwrap()
        .join("pg_dump")
        .display()
        .to_string();
    let marker = format!("PGDATABASE={name}\0");
    let dump_running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let is_pg_dump = std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).starts_with(&pg_dump));
            // Other tests dump too: this one's pg_dump has our database in its environment.
            is_pg_dump
                && std::fs::read(e.path().join("environ"))
                    .is_ok_and(|env| String::from_utf8_lossy(&env).contains(&marker))
        })
    };
    wait_until(60, "the dump started", dump_running);
    dbcadence_core::lab::down(&private.lab.dir, false).unwrap();
    let result = handle.finish();
    assert_eq!(result["failed"], true, "{result}");
    let msg = result["msg"].as_str().unwrap();
    assert!(msg.contains("pg_dump"), "the failing tool is named: {msg}");
    nothing_left(dir.path());
}

#[test]
fn cli_backup_verify_and_backups_list() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("cli");
    make_database(my(), &name, 20);
    let instance = my();
    let ledger = dir.path().join("ledger.jsonl");
    let backup_dir = dir.path().join("b");
    let path = duct::cmd!(
        bin("dbcadence"),
        "backup",
        "--engine",
        "mysql",
        "--host",
        &instance.host,
        "--port",
        instance.port.to_string(),
        "--user",
        &instance.user,
        "--password-file",
        &instance.password_file,
        "--ssl-mode",
        "verify-full",
        "--ca-cert",
        &instance.ca_cert,
        "--database",
        &name,
        "--backup-dir",
        &backup_dir,
        "--instance-id",
        "my1",
        "--ledger",
        &ledger
    )
    // Not a terminal: progress comes as plain lines on stderr (every 0 s here), never on
    // stdout, which holds the backup's path alone.
    .env("DBCADENCE_PROGRESS_SECONDS", "0")
    .stderr_path(dir.path().join("progress.txt"))
    .read()
    .unwrap();
    assert!(
        Path::new(path.trim()).join("manifest.json").exists(),
        "{path}"
    );
    let progress = std::fs::read_to_string(dir.path().join("progress.txt")).unwrap();
    assert!(
        progress.contains(&format!("dbcadence: backup {name}: ")) && progress.contains("(done)"),
        "{progress}"
    );
    // On a terminal (a pseudo-terminal from `script`): a bar with bytes, rate and ETA.
    let command = format!(
        "{} backup --engine mysql --host {} --port {} --user {} --password-file {} --database {name} --backup-dir {} --instance-id my1 --ledger {}",
        bin("dbcadence").display(),
        instance.host,
        instance.port,
        instance.user,
        instance.password_file.display(),
        dir.path().join("on-a-terminal").display(),
        dir.path().join("terminal-ledger.jsonl").display()
    );
    let screen = duct::cmd!("script", "-qec", &command, "/dev/null")
        .stderr_to_stdout()
        .read()
        .unwrap();
    assert!(
        screen.contains(&format!("backup {name} [")) && screen.contains("eta"),
        "{screen}"
    );
    let verify = duct::cmd!(
        bin("dbcadence"),
        "verify",
        "--backup-dir",
        &backup_dir,
        "--ledger",
        &ledger
    )
    .read()
    .unwrap();
    assert!(verify.starts_with("verified:"), "{verify}");
    let table = duct::cmd!(
        bin("dbcadence"),
        "backups",
        "list",
        "--backup-dir",
        &backup_dir
    )
    .read()
    .unwrap();
    assert!(
        table.contains("VERIFIED") && table.contains(&name) && table.contains("yes"),
        "{table}"
    );
    let json: Value = serde_json::from_str(
        &duct::cmd!(
            bin("dbcadence"),
            "backups",
            "list",
            "--backup-dir",
            &backup_dir,
            "--format",
            "json"
        )
        .read()
        .unwrap(),
    )
    .unwrap();
    assert_eq!(json[0]["database"], name.as_str());
    assert_eq!(json[0]["verified"], true);
    let records = dbcadence_core::ledger::Ledger::new(&ledger)
        .read()
        .unwrap()
        .records;
    let tasks: Vec<&str> = records.iter().map(|r| r.task.as_str()).collect();
    assert_eq!(
        tasks,
        ["backup", "verify"],
        "CLI runs are recorded like module runs"
    );
}

#[test]
fn globals_are_backed_up_beside_the_dump_and_checked_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    for (instance, marker) in [
        (pg(), "CREATE ROLE dbcadence"),
        (my(), "CREATE USER `dbcadence`@`%`"),
    ] {
        let name = unique("globals");
        make_database(instance, &name, 5);
        let mut args = backup_args(instance, &name, dir.path());
        args["globals"] = json!(true);
        let run = run_module("db_backup", &args);
        assert_eq!(run.json["failed"], false, "{}", run.json);
        let files = run.json["manifest"]["files"].as_array().unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        let globals = Path::new(run.json["path"].as_str().unwrap()).join("globals.sql.zst");
        let sql = duct::cmd!("zstd", "-dc", &globals).read().unwrap();
        assert!(sql.contains(marker), "{}: {sql}", instance.name);
        assert!(
            !sql.contains(&instance.password().unwrap()),
            "hashes only, never the password"
        );
        let verify = run_module(
            "db_verify",
            &verify_args(dir.path(), json!({"backup": run.json["path"]})),
        );
        assert_eq!(verify.json["verified"], true, "{}", verify.json);
        // Damage the globals file: verification names it.
        let mut bytes = std::fs::read(&globals).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&globals, bytes).unwrap();
        let verify = run_module(
            "db_verify",
            &verify_args(dir.path(), json!({"backup": run.json["path"]})),
        );
        assert_eq!(
            verify.json["bad_files"],
            json!(["globals.sql.zst"]),
            "{}",
            verify.json
        );
    }
}

#[test]
fn directory_format_dumps_in_parallel_and_verifies_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{} dir\"ectory", unique("pgdir"));
    make_database(pg(), &name, 3000);
    let mut args = backup_args(pg(), &name, dir.path());
    args["format"] = json!("directory");
    args["jobs"] = json!(2);
    let run = run_module("db_backup", &args);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    let manifest = &run.json["manifest"];
    assert_eq!(manifest["dump"], "dump.pgdir");
    let files: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        files.contains(&"dump.pgdir/toc.dat.zst") && files.len() >= 3,
        "{files:?}"
    );
    let path = Path::new(run.json["path"].as_str().unwrap()).to_path_buf();
    let verify = run_module(
        "db_verify",
        &verify_args(dir.path(), json!({"backup": path})),
    );
    assert_eq!(verify.json["verified"], true, "{}", verify.json);
    // A flipped byte in one table's file is named.
    let victim = files
        .iter()
        .find(|f| f.ends_with(".dat.zst") && !f.contains("toc"))
        .unwrap();
    let mut bytes = std::fs::read(path.join(victim)).unwrap();
    bytes[0] ^= 0x10;
    std::fs::write(path.join(victim), bytes).unwrap();
    let verify = run_module(
        "db_verify",
        &verify_args(dir.path(), json!({"backup": path})),
    );
    assert_eq!(verify.json["bad_files"], json!([victim]), "{}", verify.json);

    // What MySQL/MariaDB cannot do is refused before connecting: a server that does not
    // even listen gets the same answer.
    let mut args = backup_args(my(), "mysql", dir.path());
    args["format"] = json!("directory");
    args["login_port"] = json!(1);
    let run = run_module("db_backup", &args);
    assert!(
        run.json["msg"]
            .as_str()
            .unwrap()
            .contains("directory is a PostgreSQL format"),
        "{}",
        run.json
    );
}

#[test]
fn physical_backups_are_verified_by_unpack_start_and_checks_on_both_engines() {
    let private = PrivateLab::start(1, 1, 0);
    for instance_name in ["my1", "pg1"] {
        let instance = private.instance(instance_name);
        let name = format!("{} phys\"ical", unique("ph"));
        make_database(instance, &name, 1000);
        let dir = tempfile::tempdir().unwrap();
        let mut args = backup_args(instance, &name, dir.path());
        args["method"] = json!("physical");
        let run = run_module("db_backup", &args);
        assert!(
            run.json["msg"]
                .as_str()
                .unwrap()
                .contains("set database to '*'"),
            "{}",
            run.json
        );
        args["database"] = json!("*");
        let run = run_module("db_backup", &args);
        assert_eq!(run.json["failed"], false, "{instance_name}: {}", run.json);
        assert_eq!(run.json["manifest"]["method"], "physical");
        let path = run.json["path"].as_str().unwrap().to_string();
        let verify = run_module(
            "db_verify",
            &verify_args(dir.path(), json!({"backup": path})),
        );
        assert_eq!(
            verify.json["verified"], true,
            "{instance_name}: {}",
            verify.json
        );
        assert_eq!(verify.json["scratch"], "physical copy");
        assert!(
            verify.json["tables_checked"].as_u64().unwrap() >= 2,
            "{}",
            verify.json
        );
        // Rows were counted in every user database at both ends of the copy, and compared.
        let manifest_path = Path::new(&path).join("manifest.json");
        let mut manifest: Value =
            serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        for list in ["tables", "tables_at_end"] {
            let odd = manifest[list]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["database"] == name.as_str() && t["name"] == "it's (odd)")
                .unwrap_or_else(|| panic!("{list}: {}", manifest[list]));
            assert_eq!(odd["rows"], 1000, "{list}");
        }
        assert!(
            verify.json["msg"].as_str().unwrap().contains(
                "counted at the start and end of the copy are in it, 0 with a count outside"
            ),
            "{}",
            verify.json
        );
        // A table the source had at both ends that the copy lacks fails the verification.
        for list in ["tables", "tables_at_end"] {
            manifest[list]
                .as_array_mut()
                .unwrap()
                .push(json!({"database": name, "schema": null, "name": "vanished", "rows": 5}));
        }
        manifest["verification"] = Value::Null;
        std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
        let verify = run_module(
            "db_verify",
            &verify_args(dir.path(), json!({"backup": path})),
        );
        assert_eq!(verify.json["verified"], false, "{}", verify.json);
        assert!(
            verify.json["msg"].as_str().unwrap().contains("vanished"),
            "{}",
            verify.json
        );
    }
    // No server process is left behind by the verifications.
    let leftover = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("dbc-phys."))
    });
    assert!(!leftover, "the scratch servers were stopped");
}

#[test]
fn missing_privileges_are_named_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("privs");
    let user = unique("limited");
    let password = "Limited-pw-1";
    make_database(pg(), &name, 5);
    connect(pg())
        .execute_in(None, &format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'; GRANT CONNECT ON DATABASE {name} TO {user};"))
        .unwrap();
    make_database(my(), &name, 5);
    connect(my())
        .execute_in(None, &format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; GRANT SELECT ON `{name}`.* TO '{user}'@'%';"))
        .unwrap();
    for (instance, expected) in [(pg(), "SELECT on public.empty_one"), (my(), "EVENT on `")] {
        let mut args = backup_args(instance, &name, dir.path());
        args["login_user"] = json!(user);
        args["login_password"] = json!(password);
        let run = run_module("db_backup", &args);
        assert_eq!(run.json["failed"], true, "{}", run.json);
        let msg = run.json["msg"].as_str().unwrap();
        assert!(
            msg.contains("cannot dump") && msg.contains(expected),
            "{}: {msg}",
            instance.name
        );
        assert!(!msg.contains(password));
    }
    assert!(complete_backups(dir.path()).is_empty());
}

#[test]
fn row_counts_match_the_dump_while_writers_keep_inserting() {
    let dir = tempfile::tempdir().unwrap();
    for instance in [pg(), my()] {
        let name = unique("busy");
        make_database(instance, &name, 200_000);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            let (instance, name) = (instance.clone(), name.clone());
            std::thread::spawn(move || {
                let mut args = instance.connection().unwrap();
                args.login_db = Some(name.clone());
                let mut engine = dbcadence_core::engine::connect_lab(&args).unwrap();
                let mut id = 1_000_000;
                let mut inserted = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    id += 1;
                    let table =
                        if instance.engine == dbcadence_core::connection::EngineKind::Postgresql {
                            "\"it's (odd)\""
                        } else {
                            "`it's (odd)`"
                        };
                    engine
                        .execute_in(None, &format!("INSERT INTO {table} VALUES ({id}, 'late')"))
                        .unwrap();
                    inserted += 1;
                }
                inserted
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let run = run_module("db_backup", &backup_args(instance, &name, dir.path()));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let inserted = writer.join().unwrap();
        assert_eq!(run.json["failed"], false, "{}", run.json);
        assert!(
            inserted > 10,
            "the writer kept writing during the backup ({inserted} rows)"
        );
        let verify = run_module(
            "db_verify",
            &verify_args(dir.path(), json!({"backup": run.json["path"]})),
        );
        assert_eq!(
            verify.json["verified"], true,
            "{}: counts and dump from one snapshot: {}",
            instance.name, verify.json
        );
    }
}
