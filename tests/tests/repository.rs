//! S3 repositories against a real object store (the lab's Garage): backups streamed to a
//! bucket, listed by their manifests, verified by download and restore, pruned, copied from a
//! local directory; and the faults: the server stopped mid-upload, a full bucket quota, a
//! flipped byte, wrong credentials, a second writer holding the lock, a killed upload.

use std::path::Path;
use std::time::Duration;

use dbcadence_core::connection::EngineKind;
use dbcadence_core::lab::LabInstance;
use dbcadence_core::repository::{S3Lock, S3Repository, S3Store};
use dbcadence_e2e::*;
use serde_json::{Value, json};

/// A database with an indexed table of `rows` rows whose text holds quotes and non-ASCII;
/// `noise` adds a column of hex digits (poorly compressible: a dump of many upload parts).
fn make_database(instance: &LabInstance, name: &str, rows: u64, noise: bool) {
    let mut engine = connect(instance);
    engine.drop_database(name).unwrap();
    engine.create_database(name).unwrap();
    let fill = match (instance.engine, noise) {
        (EngineKind::Postgresql, false) => format!(
            "CREATE TABLE \"it's\" (id integer PRIMARY KEY, note text) WITH (autovacuum_enabled=false); \
             CREATE INDEX note_idx ON \"it's\" (note); \
             INSERT INTO \"it's\" SELECT g, 'row ' || g || ' it''s ünïcode' FROM generate_series(1, {rows}) g;"
        ),
        (EngineKind::Postgresql, true) => format!(
            "CREATE TABLE noise (id integer PRIMARY KEY, a text, b text) WITH (autovacuum_enabled=false); \
             INSERT INTO noise SELECT g, md5(g::text), md5((g * 7)::text) FROM generate_series(1, {rows}) g;"
        ),
        (EngineKind::Mysql, _) => format!(
            "CREATE TABLE `it's` (id integer PRIMARY KEY, note varchar(100), KEY note_idx (note)); \
             INSERT INTO `it's` SELECT seq, CONCAT('row ', seq, ' it''s ünïcode') FROM seq_1_to_{rows};"
        ),
    };
    engine.execute_in(Some(name), &fill).unwrap();
}

fn open(repository: &Value) -> S3Store {
    let settings: S3Repository = serde_json::from_value(repository.clone()).unwrap();
    S3Store::open(&settings).unwrap()
}

/// db_backup arguments that write to `repository` (no backup_dir); ledger and metrics in
/// `dir`.
fn s3_backup_args(instance: &LabInstance, database: &str, repository: &Value, dir: &Path) -> Value {
    let mut args = backup_args(instance, database, dir);
    args.as_object_mut().unwrap().remove("backup_dir");
    args["repository"] = repository.clone();
    args
}

fn verify_args(repository: &Value, dir: &Path, extra: Value) -> Value {
    let mut args = json!({"repository": repository, "ledger_path": dir.join("ledger.jsonl"), "metrics_dir": dir.join("metrics")});
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    args
}

/// The lab key's secret, which must show up nowhere.
fn lab_secret() -> String {
    let s3 = shared_s3_lab().s3.as_ref().unwrap();
    let text = std::fs::read_to_string(&s3.credentials_file).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
        .unwrap()
        .to_string()
}

fn ledger_tasks(dir: &Path) -> Vec<(String, String, bool)> {
    std::fs::read_to_string(dir.join("ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| {
            (
                r["task"].as_str().unwrap_or_default().to_string(),
                r["outcome"].as_str().unwrap_or_default().to_string(),
                r["changed"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn backups_stream_to_the_bucket_are_listed_by_manifest_verified_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let repository = s3_repository(&unique("roundtrip"));
    let store = open(&repository);
    let secret = lab_secret();
    for instance in [pg(), my()] {
        let name = format!("{}; we\"ird é", unique("s3"));
        make_database(instance, &name, 2000, false);
        let args = s3_backup_args(instance, &name, &repository, dir.path());

        // Check mode talks to the server, writes nothing to the bucket.
        let mut check = args.clone();
        check["_ansible_check_mode"] = json!(true);
        let run = run_module("db_backup", &check);
        assert_eq!(run.json["failed"], false, "{}", run.json);
        assert_eq!(run.json["changed"], false);
        let db_key = S3Store::database_key(&instance.name, &name);
        assert!(store.list(&db_key).unwrap().is_empty(), "nothing written");

        let first = run_module("db_backup", &args);
        assert_eq!(first.json["failed"], false, "{}", first.json);
        assert_eq!(first.json["changed"], true);
        let url = first.json["path"].as_str().unwrap().to_string();
        assert!(
            url.starts_with(&format!(
                "s3://dbcadence-lab/{}/",
                repository["prefix"].as_str().unwrap()
            )),
            "{url}"
        );
        let (listing, incomplete) = store.scan(Some(&instance.name), Some(&name)).unwrap();
        assert_eq!(listing.backups.len(), 1, "{listing:?}");
        assert!(incomplete.is_empty());
        assert!(!listing.backups[0].verified);
        let tables = first.json["manifest"]["tables"].as_array().unwrap();
        assert_eq!(tables[0]["rows"], 2000, "{tables:?}");

        // Check mode of a verification writes nothing to the bucket, not even a lock: with
        // the backup's verification lock held elsewhere it still only says what it would do.
        let stamp = url.trim_end_matches('/').rsplit('/').next().unwrap();
        let held = S3Lock::acquire(
            &store,
            &instance.name,
            &name,
            &format!("verify-{stamp}"),
            Duration::from_secs(5),
            "the test",
        )
        .unwrap();
        let mut check = verify_args(
            &repository,
            dir.path(),
            json!({"instance_id": instance.name, "database": name, "backup": url}),
        );
        check["_ansible_check_mode"] = json!(true);
        let run = run_module("db_verify", &check);
        assert_eq!(run.json["failed"], false, "{}", run.json);
        assert_eq!(run.json["changed"], false);
        assert!(
            run.json["msg"].as_str().unwrap().contains("would verify"),
            "{}",
            run.json
        );
        let locks = |store: &S3Store| {
            store
                .list("")
                .unwrap()
                .iter()
                .filter(|o| o.key.contains("/.locks/"))
                .count()
        };
        assert_eq!(locks(&store), 1, "only the test's own lock");
        drop(held);
        assert_eq!(locks(&store), 0);

        // Verified by download and restore; the outcome lands in the manifest in the bucket.
        let verify = verify_args(
            &repository,
            dir.path(),
            json!({"instance_id": instance.name, "database": name}),
        );
        let run = run_module("db_verify", &verify);
        assert_eq!(run.json["failed"], false, "{}: {}", instance.name, run.json);
        assert_eq!(run.json["verified"], true, "{}", run.json);
        assert_eq!(run.json["backup"], url.as_str());
        let (listing, _) = store.scan(Some(&instance.name), Some(&name)).unwrap();
        assert!(listing.backups[0].verified, "recorded in the bucket");
        let again = run_module("db_verify", &verify);
        assert_eq!(again.json["failed"], false, "{}", again.json);
        assert_eq!(again.json["changed"], false);
        assert_eq!(again.json["nothing_to_verify"], true);

        // Retention: of three backups, the newest and the newest verified stay.
        let second = run_module("db_backup", &args);
        let third = run_module("db_backup", &args);
        assert_eq!(third.json["failed"], false, "{}", third.json);
        let mut prune = args.clone();
        prune["action"] = json!("prune");
        prune["retention"] = json!({"keep_last": 1});
        let pruned = run_module("db_backup", &prune);
        assert_eq!(pruned.json["failed"], false, "{}", pruned.json);
        assert_eq!(pruned.json["changed"], true);
        assert_eq!(pruned.json["pruned"], json!([second.json["path"]]));
        let (listing, _) = store.scan(Some(&instance.name), Some(&name)).unwrap();
        let kept: Vec<String> = listing
            .backups
            .iter()
            .map(|b| b.path.display().to_string())
            .collect();
        assert_eq!(
            kept,
            vec![
                url.clone(),
                third.json["path"].as_str().unwrap().to_string()
            ]
        );
        let again = run_module("db_backup", &prune);
        assert_eq!(again.json["changed"], false, "{}", again.json);
        for run in [&first, &second, &third, &pruned] {
            assert!(!run.stdout.contains(&secret), "the key's secret in output");
            assert!(!run.stdout.contains(&instance.password().unwrap()));
        }
    }
    let tasks = ledger_tasks(dir.path());
    for task in ["backup", "verify", "prune"] {
        assert!(
            tasks.iter().any(|(t, o, _)| t == task && o == "ok"),
            "{task} in {tasks:?}"
        );
    }
    for file in ["ledger.jsonl", "metrics/dbcadence.prom"] {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(!text.contains(&secret), "{file}");
    }
    let prom = std::fs::read_to_string(dir.path().join("metrics/dbcadence.prom")).unwrap();
    assert!(
        prom.contains("dbcadence_backup_verified_timestamp_seconds{"),
        "{prom}"
    );
}

#[test]
fn a_flipped_byte_in_a_stored_object_fails_verification_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let repository = s3_repository(&unique("flip"));
    let store = open(&repository);
    let instance = pg();
    let name = unique("flip");
    make_database(instance, &name, 500, false);
    let backup = run_module(
        "db_backup",
        &s3_backup_args(instance, &name, &repository, dir.path()),
    );
    assert_eq!(backup.json["failed"], false, "{}", backup.json);
    let key = store
        .key_of_url(backup.json["path"].as_str().unwrap())
        .unwrap();
    let dump = backup.json["manifest"]["dump"].as_str().unwrap();
    let object = format!("{key}/{dump}");
    let mut bytes = store.get_bytes(&object).unwrap().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    store.put_bytes(&object, bytes).unwrap();
    let run = run_module(
        "db_verify",
        &verify_args(&repository, dir.path(), json!({"database": name})),
    );
    assert_eq!(run.json["failed"], true, "unverified: {}", run.json);
    assert_eq!(run.json["verified"], false);
    assert!(
        run.json["reason"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch"),
        "{}",
        run.json
    );
    assert_eq!(run.json["bad_files"], json!([dump]));
}

#[test]
fn wrong_or_missing_credentials_fail_with_the_cause_and_echo_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut repository = s3_repository(&unique("creds"));
    let s3 = shared_s3_lab().s3.as_ref().unwrap();
    let wrong = "wr'o\"ng\\#:$x";
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {wrong}\n",
            s3.access_key_id
        ),
    )
    .unwrap();
    repository["credentials_file"] = json!(file);
    let instance = pg();
    let name = unique("creds");
    make_database(instance, &name, 10, false);
    let run = run_module(
        "db_backup",
        &s3_backup_args(instance, &name, &repository, dir.path()),
    );
    assert_eq!(run.json["failed"], true, "{}", run.json);
    let msg = run.json["msg"].as_str().unwrap();
    assert!(msg.contains("credentials"), "{msg}");
    assert!(!run.stdout.contains(wrong) && !run.stderr.contains(wrong));
    let ledger = std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap();
    assert!(!ledger.contains(wrong));
    assert!(ledger.contains("\"failed\""), "{ledger}");

    // credentials env without the variables: said before any request.
    repository["credentials"] = json!("env");
    let mut args = s3_backup_args(instance, &name, &repository, dir.path());
    args["_ansible_check_mode"] = json!(false);
    let run = duct::cmd(
        bin("db_backup"),
        [write_args(dir.path(), &args).to_string_lossy().into_owned()],
    )
    .env_remove("AWS_ACCESS_KEY_ID")
    .env_remove("AWS_SECRET_ACCESS_KEY")
    .stdout_capture()
    .unchecked()
    .run()
    .unwrap();
    let json: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(json["failed"], true);
    assert!(
        json["msg"].as_str().unwrap().contains("AWS_ACCESS_KEY_ID"),
        "{json}"
    );
}

fn write_args(dir: &Path, args: &Value) -> std::path::PathBuf {
    let path = dir.join(format!("{}.json", unique("args")));
    std::fs::write(&path, serde_json::to_vec(args).unwrap()).unwrap();
    path
}

#[test]
fn a_second_writer_waits_for_the_lock_then_fails_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let repository = s3_repository(&unique("lock"));
    let store = open(&repository);
    let instance = my();
    let name = unique("lock");
    make_database(instance, &name, 10, false);
    let held = S3Lock::acquire(
        &store,
        &instance.name,
        &name,
        "write",
        Duration::from_secs(5),
        "the test",
    )
    .unwrap();
    let args = s3_backup_args(instance, &name, &repository, dir.path());
    let run = run_module("db_backup", &args);
    assert_eq!(run.json["failed"], true, "{}", run.json);
    let msg = run.json["msg"].as_str().unwrap();
    assert!(
        msg.contains("is locked") && msg.contains(&format!(":{}", std::process::id())),
        "{msg}"
    );
    assert!(store.scan(None, None).unwrap().0.backups.is_empty());
    drop(held);
    let run = run_module("db_backup", &args);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert!(
        store
            .list("")
            .unwrap()
            .iter()
            .all(|o| !o.key.contains("/.locks/")),
        "the lock is released after the run"
    );
}

#[test]
fn a_full_bucket_quota_fails_the_backup_and_leaves_nothing_listed() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = shared_s3_lab().s3.as_ref().unwrap();
    let bucket = format!("dbcadence-{}", unique("quota").replace('_', "-"));
    s3.admin(&["bucket", "create", &bucket]).unwrap();
    s3.admin(&[
        "bucket",
        "allow",
        "--read",
        "--write",
        "--owner",
        &bucket,
        "--key",
        &s3.access_key_id,
    ])
    .unwrap();
    s3.admin(&["bucket", "set-quotas", &bucket, "--max-size", "1MiB"])
        .unwrap();
    let mut repository = s3_repository("");
    repository["bucket"] = json!(bucket);
    repository["part_size_mib"] = json!(5);
    let store = open(&repository);
    let instance = pg();
    let name = unique("quota");
    make_database(instance, &name, 200_000, true);
    let args = s3_backup_args(instance, &name, &repository, dir.path());
    let run = run_module("db_backup", &args);
    assert_eq!(run.json["failed"], true, "{}", run.json);
    assert!(
        run.json["msg"].as_str().unwrap().contains("quota"),
        "{}",
        run.json
    );
    let (listing, incomplete) = store.scan(None, None).unwrap();
    assert!(
        listing.backups.is_empty() && incomplete.is_empty(),
        "{listing:?} {incomplete:?}"
    );
}

/// A lab of its own holding only Garage (these tests stop and kill it), stopped and removed
/// when dropped, whether the test passed or not.
struct PrivateObjectStore(tempfile::TempDir);

impl Drop for PrivateObjectStore {
    fn drop(&mut self) {
        let _ = dbcadence_core::lab::down(self.0.path(), true);
    }
}

fn private_object_store() -> (PrivateObjectStore, dbcadence_core::lab::Lab) {
    let dir = tempfile::Builder::new()
        .prefix("dbc-s3.")
        .tempdir_in("/tmp")
        .unwrap();
    let lab = object_store_up(dir.path());
    (PrivateObjectStore(dir), lab)
}

fn object_store_up(dir: &Path) -> dbcadence_core::lab::Lab {
    dbcadence_core::lab::up(&dbcadence_core::lab::LabRequest {
        s3: true,
        postgres: 0,
        mysql: 0,
        ..dbcadence_core::lab::LabRequest::scratch(dir, EngineKind::Postgresql)
    })
    .unwrap()
}

fn lock_of(store: &S3Store) -> bool {
    store
        .list("")
        .map(|objects| objects.iter().any(|o| o.key.contains("/.locks/write/")))
        .unwrap_or(false)
}

#[test]
fn the_server_stopped_mid_upload_fails_the_backup_and_the_next_run_cleans_up() {
    let (lab_dir, lab) = private_object_store();
    let s3 = lab.s3.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut repository = serde_json::to_value(s3.repository()).unwrap();
    repository["part_size_mib"] = json!(5);
    repository["lock_ttl_seconds"] = json!(10);
    let store = open(&repository);
    let instance = pg();
    let name = unique("stopped");
    make_database(instance, &name, 300_000, true);
    let mut args = s3_backup_args(instance, &name, &repository, dir.path());
    // zstd's slowest level: the upload is surely still running when the test strikes.
    args["compression_level"] = json!(19);

    // Killed mid-upload (kill -9): an incomplete multipart upload and a lock stay behind.
    let child = start_module("db_backup", &args);
    wait_until(30, "the backup's lock object", || lock_of(&store));
    std::thread::sleep(Duration::from_millis(1500));
    child.kill();
    assert!(store.scan(None, None).unwrap().0.backups.is_empty());

    // The server stopped mid-upload: the run fails with the cause.
    let mut waiting = args.clone();
    waiting["lock_timeout"] = json!(30);
    let child = start_module("db_backup", &waiting);
    std::thread::sleep(Duration::from_millis(200));
    wait_until(40, "the second backup's lock", || {
        store
            .list("")
            .map(|o| {
                o.iter()
                    .filter(|o| o.key.contains("/.locks/write/"))
                    .count()
                    == 1
            })
            .unwrap_or(false)
    });
    std::thread::sleep(Duration::from_millis(1500));
    s3.stop();
    let failed = child.finish();
    assert_eq!(failed["failed"], true, "{failed}");
    assert!(
        failed["msg"].as_str().unwrap().contains("s3://"),
        "names the repository: {failed}"
    );

    // Back up again: leftovers of both are removed under the lock (after the dead
    // holders' locks expire), and the backup completes.
    object_store_up(lab_dir.0.path());
    assert!(store.scan(None, None).unwrap().0.backups.is_empty());
    waiting["compression_level"] = json!(3);
    let next = run_module("db_backup", &waiting);
    assert_eq!(next.json["failed"], false, "{}", next.json);
    let removed = next.json["removed_partials"].as_array().unwrap();
    assert!(
        removed
            .iter()
            .any(|r| r.as_str().unwrap().contains("incomplete upload")),
        "{removed:?}"
    );
    let (listing, incomplete) = store.scan(None, None).unwrap();
    assert_eq!(listing.backups.len(), 1);
    assert!(incomplete.is_empty());
}

#[test]
fn verified_local_backups_are_copied_to_the_bucket_once() {
    let dir = tempfile::tempdir().unwrap();
    let repository = s3_repository(&unique("copy"));
    let store = open(&repository);
    let instance = my();
    let name = format!("{} -h", unique("copy"));
    make_database(instance, &name, 300, false);
    let local = backup_args(instance, &name, dir.path());
    let backup = run_module("db_backup", &local);
    assert_eq!(backup.json["failed"], false, "{}", backup.json);
    let mut copy = local.clone();
    copy["action"] = json!("copy");
    copy["copy_to"] = repository.clone();
    // An unverified backup is not copied.
    let run = run_module("db_backup", &copy);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert_eq!(run.json["changed"], false);
    let verify = run_module(
        "db_verify",
        &json!({"backup_dir": dir.path(), "database": name, "ledger_path": dir.path().join("ledger.jsonl")}),
    );
    assert_eq!(verify.json["verified"], true, "{}", verify.json);
    let mut check = copy.clone();
    check["_ansible_check_mode"] = json!(true);
    let run = run_module("db_backup", &check);
    assert_eq!(
        run.json["copied"].as_array().unwrap().len(),
        1,
        "{}",
        run.json
    );
    assert!(
        store.list("").unwrap().is_empty(),
        "check mode copies nothing"
    );
    let run = run_module("db_backup", &copy);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert_eq!(run.json["changed"], true);
    let url = run.json["copied"][0].as_str().unwrap().to_string();
    let again = run_module("db_backup", &copy);
    assert_eq!(again.json["changed"], false, "{}", again.json);
    // The copy is a backup of its own there: listed, verified again from the bucket.
    let (listing, _) = store.scan(None, None).unwrap();
    assert_eq!(listing.backups.len(), 1);
    assert!(
        listing.backups[0].verified,
        "the local verification travels"
    );
    let run = run_module(
        "db_verify",
        &verify_args(&repository, dir.path(), json!({"backup": url})),
    );
    assert_eq!(run.json["verified"], true, "{}", run.json);
    let tasks = ledger_tasks(dir.path());
    assert!(
        tasks.iter().any(|(t, o, c)| t == "copy" && o == "ok" && *c),
        "{tasks:?}"
    );
    assert_eq!(
        tasks.iter().filter(|(t, _, _)| t == "backup").count(),
        1,
        "a copy is not a backup: {tasks:?}"
    );
}

#[test]
fn the_cli_backs_up_lists_verifies_and_prunes_a_repository_file() {
    let dir = tempfile::tempdir().unwrap();
    let repository = s3_repository(&unique("cli"));
    let file = dir.path().join("repository.yml");
    std::fs::write(&file, serde_yaml_ng::to_string(&repository).unwrap()).unwrap();
    let instance = pg();
    let name = unique("cli");
    make_database(instance, &name, 50, false);
    let ledger = dir.path().join("ledger.jsonl");
    let backup = || {
        duct::cmd!(
            bin("dbcadence"),
            "backup",
            "--engine",
            "postgresql",
            "--host",
            &instance.host,
            "--port",
            instance.port.to_string(),
            "--user",
            &instance.user,
            "--password-file",
            &instance.password_file,
            "--database",
            &name,
            "--repository",
            &file,
            "--instance-id",
            "pg1",
            "--ledger",
            &ledger
        )
        .stderr_null()
        .read()
        .unwrap()
    };
    let first = backup();
    assert!(first.starts_with("s3://dbcadence-lab/"), "{first}");
    let second = backup();
    let listed = duct::cmd!(
        bin("dbcadence"),
        "backups",
        "list",
        "--repository",
        &file,
        "--format",
        "json"
    )
    .read()
    .unwrap();
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let verified = duct::cmd!(
        bin("dbcadence"),
        "verify",
        "--repository",
        &file,
        "--database",
        &name,
        "--ledger",
        &ledger
    )
    .read()
    .unwrap();
    assert!(verified.starts_with("verified:"), "{verified}");
    assert!(verified.contains(second.trim()), "the newest: {verified}");
    let pruned = duct::cmd!(
        bin("dbcadence"),
        "prune",
        "--repository",
        &file,
        "--instance-id",
        "pg1",
        "--database",
        &name,
        "--keep-last",
        "1",
        "--ledger",
        &ledger
    )
    .read()
    .unwrap();
    assert!(
        pruned.contains(&format!("removed {}", first.trim())),
        "{pruned}"
    );
    let tasks = ledger_tasks(dir.path());
    assert!(
        tasks
            .iter()
            .any(|(t, o, c)| t == "prune" && o == "ok" && *c),
        "{tasks:?}"
    );
}

#[test]
fn a_database_is_restored_from_the_bucket_and_a_damaged_object_is_refused_first() {
    let dir = tempfile::tempdir().unwrap();
    let repository = s3_repository(&unique("restore"));
    let store = open(&repository);
    let instance = my();
    let name = unique("rs");
    make_database(instance, &name, 700, false);
    let backup = run_module(
        "db_backup",
        &s3_backup_args(instance, &name, &repository, dir.path()),
    );
    assert_eq!(backup.json["failed"], false, "{}", backup.json);
    let url = backup.json["path"].as_str().unwrap().to_string();
    let verify = run_module(
        "db_verify",
        &verify_args(&repository, dir.path(), json!({"database": name})),
    );
    assert_eq!(verify.json["verified"], true, "{}", verify.json);
    // No backup_dir anywhere: the backup host is gone, the bucket is what is left.
    let target_db = format!("{name}_back \"here\"");
    let args = json!({
        "engine": instance.engine, "login_host": instance.host, "login_port": instance.port,
        "login_user": instance.user, "login_password": instance.password().unwrap(),
        "ssl_mode": "verify-full", "ca_cert": instance.ca_cert,
        "repository": repository, "instance_id": instance.name, "database": name,
        "target_database": target_db, "ledger_path": dir.path().join("ledger.jsonl"),
    });
    let run = run_module("db_restore", &args);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert_eq!(run.json["backup"], url.as_str());
    let counted = query(instance, &target_db, "SELECT COUNT(*) FROM `it's`");
    assert_eq!(counted[0][0].as_deref(), Some("700"));

    // A flipped byte in the bucket: refused before the target is touched.
    let key = store.key_of_url(&url).unwrap();
    let dump = backup.json["manifest"]["dump"].as_str().unwrap();
    let object = format!("{key}/{dump}");
    let mut bytes = store.get_bytes(&object).unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    store.put_bytes(&object, bytes).unwrap();
    let mut again = args.clone();
    again["target_database"] = json!(format!("{name}_never"));
    let run = run_module("db_restore", &again);
    assert_eq!(run.json["failed"], true, "{}", run.json);
    assert!(
        run.json["msg"].as_str().unwrap().contains("checksum"),
        "{}",
        run.json
    );
    let databases: Vec<String> = connect(instance)
        .databases()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert!(
        !databases.contains(&format!("{name}_never")),
        "{databases:?}"
    );
}

#[test]
fn a_directory_format_backup_is_copied_and_verified_from_the_bucket_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let repository = s3_repository(&unique("pgdir"));
    let instance = pg();
    let name = unique("pgdir");
    make_database(instance, &name, 1500, false);
    let mut local = backup_args(instance, &name, dir.path());
    local["format"] = json!("directory");
    let backup = run_module("db_backup", &local);
    assert_eq!(backup.json["failed"], false, "{}", backup.json);
    assert!(
        backup.json["manifest"]["files"].as_array().unwrap().len() > 1,
        "a file per table: {}",
        backup.json
    );
    let verify = run_module(
        "db_verify",
        &json!({"backup_dir": dir.path(), "database": name, "ledger_path": dir.path().join("ledger.jsonl")}),
    );
    assert_eq!(verify.json["verified"], true, "{}", verify.json);
    let mut copy = local.clone();
    copy["action"] = json!("copy");
    copy["copy_to"] = repository.clone();
    let run = run_module("db_backup", &copy);
    assert_eq!(run.json["changed"], true, "{}", run.json);
    let url = run.json["copied"][0].as_str().unwrap().to_string();
    let run = run_module(
        "db_verify",
        &verify_args(&repository, dir.path(), json!({"backup": url})),
    );
    assert_eq!(run.json["verified"], true, "{}", run.json);
    assert_eq!(run.json["tables_checked"], 1, "{}", run.json);
}

#[test]
fn physical_and_directory_format_backups_go_to_the_bucket_and_verify_there() {
    let private = PrivateLab::start(1, 0, 0);
    let instance = private.instance("pg1");
    let dir = tempfile::tempdir().unwrap();
    let repository = s3_repository(&unique("kinds"));
    let name = unique("kinds");
    make_database(instance, &name, 1200, false);
    // Directory format: staged, uploaded file by file.
    let mut args = s3_backup_args(instance, &name, &repository, dir.path());
    args["format"] = json!("directory");
    let run = run_module("db_backup", &args);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    let url = run.json["path"].as_str().unwrap().to_string();
    let verify = run_module(
        "db_verify",
        &verify_args(&repository, dir.path(), json!({"backup": url})),
    );
    assert_eq!(verify.json["verified"], true, "{}", verify.json);
    // Physical: the whole instance, streamed.
    args["format"] = json!("custom");
    args["method"] = json!("physical");
    args["database"] = json!("*");
    let run = run_module("db_backup", &args);
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert_eq!(run.json["manifest"]["method"], "physical");
    let url = run.json["path"].as_str().unwrap().to_string();
    let verify = run_module(
        "db_verify",
        &verify_args(&repository, dir.path(), json!({"backup": url})),
    );
    assert_eq!(verify.json["verified"], true, "{}", verify.json);
}
