//! Hostile shapes against real lab servers: database names that read like options, scratch
//! directories with spaces and quotes. A name from a database is data, never an option of a
//! child tool and never a shell word.

use std::path::Path;

use dbcadence_e2e::*;
use serde_json::json;

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
        // Physical backups hold every password hash of the server: owner only.
        let instance_dir = backups.join(name);
        assert!(assert_modes(&instance_dir, 0o600, 0o700) >= 3, "{name}");
    }
}

#[test]
fn backups_are_private_unless_a_group_is_named_and_the_ledger_is_not_world_readable() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let work = tempfile::tempdir().unwrap();
    for instance in [pg(), my()] {
        let name = unique("priv");
        let mut engine = connect(instance);
        engine.create_database(&name).unwrap();
        engine
            .execute_in(
                Some(&name),
                "CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t VALUES (1);",
            )
            .unwrap();
        let backups = work.path().join("private");
        let mut args = backup_args(instance, &name, &backups);
        args["globals"] = json!(true); // role password hashes
        args["metrics_dir"] = json!(work.path().join("metrics"));
        let run = run_module("db_backup", &args);
        assert_eq!(run.json["failed"], false, "{}", run.json);
        // dump, globals, manifest and lock
        assert!(assert_modes(&backups.join(&instance.name), 0o600, 0o700) >= 4);
        // Verification rewrites the manifest: it keeps its mode.
        let verify = run_module(
            "db_verify",
            &json!({"backup": run.json["path"], "backup_dir": backups,
                    "ledger_path": backups.join("ledger.jsonl")}),
        );
        assert_eq!(verify.json["verified"], true, "{}", verify.json);
        assert_modes(&backups.join(&instance.name), 0o600, 0o700);

        let shared = work.path().join("shared");
        let mut args = backup_args(instance, &name, &shared);
        args["backup_group"] = json!("backup");
        let run = run_module("db_backup", &args);
        assert_eq!(run.json["failed"], false, "{}", run.json);
        let files = assert_modes(&shared.join(&instance.name), 0o640, 0o750);
        assert!(files >= 3);
        let backup_gid = 34;
        let manifest =
            std::path::Path::new(run.json["path"].as_str().unwrap()).join("manifest.json");
        assert_eq!(std::fs::metadata(&manifest).unwrap().gid(), backup_gid);

        let mut args = backup_args(instance, &name, &shared);
        args["backup_group"] = json!("no-such-group-here");
        let run = run_module("db_backup", &args);
        assert_eq!(run.json["failed"], true);
        assert!(
            run.json["msg"]
                .as_str()
                .unwrap()
                .contains("no local group named"),
            "{}",
            run.json
        );
        engine.drop_database(&name).unwrap();
    }
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(work.path().join("private/ledger.jsonl")), 0o640);
    // node_exporter runs as its own user: the metrics stay readable.
    assert_eq!(mode(work.path().join("metrics/dbcadence.prom")), 0o644);
}

#[test]
fn admin_logins_are_created_without_the_password_in_logged_sql() {
    use dbcadence_core::connection::EngineKind;
    let private = PrivateLab::start(1, 1, 0);
    // Quotes, a backslash, '#', ':' and '$': every shape that breaks naive quoting.
    let password = r#"p'w"\#:$x"#;
    for name in ["pg1", "my1"] {
        let instance = private.instance(name);
        let mut engine = connect(instance);
        // Log every statement, as an auditor's server would.
        let log = match instance.engine {
            EngineKind::Postgresql => {
                engine
                    .execute_in(None, "ALTER SYSTEM SET log_statement = 'all'")
                    .unwrap();
                engine.execute_in(None, "SELECT pg_reload_conf()").unwrap();
                std::thread::sleep(std::time::Duration::from_millis(300));
                instance.log_file.clone()
            }
            EngineKind::Mysql => {
                let file = instance.data_dir.join("general.log");
                engine
                    .execute_in(
                        None,
                        &format!(
                            "SET GLOBAL general_log_file = '{}'; SET GLOBAL general_log = ON",
                            file.display()
                        ),
                    )
                    .unwrap();
                file
            }
        };
        engine.ensure_admin_login("second_admin", password).unwrap();
        // The login works with the password...
        let mut args = instance.connection().unwrap();
        args.login_user = Some("second_admin".into());
        args.login_password = Some(password.to_string().into());
        let mut second = dbcadence_core::engine::connect(&args)
            .unwrap_or_else(|e| panic!("{name}: log in as the new admin: {e}"));
        assert!(!second.databases().unwrap().is_empty());
        // ...and the statements the server logged never held it.
        let logged = std::fs::read(&log).unwrap();
        let logged = String::from_utf8_lossy(&logged);
        assert!(
            logged.contains("second_admin"),
            "{name}: the statements were logged: {logged}"
        );
        assert!(
            !logged.contains(password) && !logged.contains("p''w"),
            "{name}: the password is in the server log"
        );
    }
}

/// A login whose password holds quotes, a backslash, '#', ':' and '$' backs up (logical with
/// globals, and physical), and verifies into its own server: every child tool sees the
/// password only through its environment or a 0600 file, never its command line.
#[test]
fn a_hostile_password_works_everywhere_and_never_reaches_a_command_line() {
    let password = r#"p'w"\#:$x`y"#;
    let work = tempfile::tempdir().unwrap();
    let tools = [
        "pg_dump",
        "pg_dumpall",
        "pg_restore",
        "pg_amcheck",
        "pg_basebackup",
        "mariadb-dump",
        "mariadb-backup",
        "mariadb ",
    ];
    // A lab of its own: a physical backup of the shared lab would race other tests' DDL.
    let private = PrivateLab::start(1, 1, 0);
    let sampler = ArgvSampler::start(&tools);
    for instance in [private.instance("pg1"), private.instance("my1")] {
        let user = unique("hostile");
        connect(instance)
            .ensure_admin_login(&user, password)
            .unwrap();
        let name = unique("hpw");
        let mut engine = connect(instance);
        engine.create_database(&name).unwrap();
        let fill = match instance.engine {
            dbcadence_core::connection::EngineKind::Postgresql => {
                "CREATE TABLE t (id integer PRIMARY KEY, note text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 50000) g;"
            }
            dbcadence_core::connection::EngineKind::Mysql => {
                "CREATE TABLE t (id integer PRIMARY KEY, note text); INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_50000;"
            }
        };
        engine.execute_in(Some(&name), fill).unwrap();
        let backups = work.path().join("backups");
        let mut args = backup_args(instance, &name, &backups);
        args["login_user"] = json!(user);
        args["login_password"] = json!(password);
        args["globals"] = json!(true);
        let run = run_module("db_backup", &args);
        assert_eq!(run.json["failed"], false, "{}: {}", instance.name, run.json);
        // Restore into the same server (a scratch database), as that login.
        let verify = run_module(
            "db_verify",
            &json!({
                "backup": run.json["path"], "backup_dir": backups,
                "engine": instance.engine, "login_host": instance.host,
                "login_port": instance.port, "login_user": user, "login_password": password,
                "ssl_mode": "verify-full", "ca_cert": instance.ca_cert,
                "ledger_path": backups.join("ledger.jsonl"),
            }),
        );
        assert_eq!(
            verify.json["verified"], true,
            "{}: {}",
            instance.name, verify.json
        );
        // db_restore as that login: into a new database with the globals, then a replace
        // (its safety backup dumps as that login too); db_patch reads the server's state.
        let restore = |extra: serde_json::Value| {
            let mut args = json!({
                "backup": run.json["path"], "backup_dir": backups,
                "engine": instance.engine, "login_host": instance.host,
                "login_port": instance.port, "login_user": user, "login_password": password,
                "ssl_mode": "verify-full", "ca_cert": instance.ca_cert,
                "target_database": format!("{name}_r"), "globals": "skip_existing",
                "ledger_path": backups.join("ledger.jsonl"),
            });
            args.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            run_module("db_restore", &args)
        };
        let restored = restore(json!({}));
        assert_eq!(
            restored.json["failed"], false,
            "{}: {}",
            instance.name, restored.json
        );
        let replaced = restore(json!({"replace": true}));
        assert_eq!(
            replaced.json["failed"], false,
            "{}: {}",
            instance.name, replaced.json
        );
        assert!(replaced.json["safety_backup"].is_string());
        let patch = run_module(
            "db_patch",
            &json!({
                "engine": instance.engine, "login_host": instance.host,
                "login_port": instance.port, "login_user": user, "login_password": password,
                "ssl_mode": "verify-full", "ca_cert": instance.ca_cert,
                "ledger_path": backups.join("ledger.jsonl"),
            }),
        );
        assert_eq!(
            patch.json["failed"], false,
            "{}: {}",
            instance.name, patch.json
        );
        for output in [&restored.stdout, &replaced.stdout, &patch.stdout] {
            assert!(!output.contains(password) && !output.contains(r#"p'w"#));
        }
        engine.drop_database(&format!("{name}_r")).unwrap();
        let mut physical = args.clone();
        physical["method"] = json!("physical");
        physical["database"] = json!("*");
        physical["globals"] = json!(false);
        let run = run_module("db_backup", &physical);
        assert_eq!(run.json["failed"], false, "{}: {}", instance.name, run.json);
        for output in [&run.stdout, &verify.stdout] {
            assert!(!output.contains(password));
        }
        engine.drop_database(&name).unwrap();
    }
    let seen = sampler.stop();
    for tool in [
        "pg_dump ",
        "pg_restore",
        "pg_basebackup",
        "mariadb-dump",
        "mariadb-backup",
    ] {
        assert!(
            seen.iter().any(|c| c.contains(tool)),
            "the sampler saw {tool}: {seen:#?}"
        );
    }
    for cmdline in &seen {
        assert!(
            !cmdline.contains(password),
            "password on a command line: {cmdline}"
        );
        assert!(
            !cmdline.contains("p'w"),
            "password on a command line: {cmdline}"
        );
    }
    let ledger = std::fs::read_to_string(work.path().join("backups/ledger.jsonl")).unwrap();
    assert!(!ledger.contains("p'w"));
}
