//! The collection through Ansible itself: ansible-playbook, ansible-inventory, ansible-doc.

use dbcadence_e2e::*;
use serde_json::json;

fn sources_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("sources.yml");
    let doc = json!({"endpoints": [endpoint(pg(), "pg1"), endpoint(my(), "my1")]});
    std::fs::write(&path, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    path
}

#[test]
fn ansible_playbook_runs_db_inventory_from_the_collection() {
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path());
    let ledger = dir.path().join("ledger.jsonl");
    let (ok, out) = ansible(
        "ansible-playbook",
        vec![
            "-i".into(),
            "localhost,".into(),
            "playbooks/inventory.yml".into(),
            "-e".into(),
            format!("dbcadence_sources={}", sources.display()),
            "-e".into(),
            "ansible_python_interpreter={{ ansible_playbook_python }}".into(),
        ],
        &[("DBCADENCE_LEDGER", ledger.display().to_string())],
    );
    assert!(ok, "{out}");
    assert!(out.contains("2 instances (0 aliases merged)"), "{out}");
    assert!(out.contains("failed=0"), "{out}");
    assert_eq!(
        dbcadence_core::ledger::Ledger::new(&ledger)
            .read()
            .unwrap()
            .records
            .len(),
        1
    );
}

#[test]
fn ansible_inventory_uses_dbcadence_as_inventory_script() {
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path());
    let db = unique("graph");
    connect(pg()).create_database(&db).unwrap();
    connect(my()).create_database(&db).unwrap();
    let env = [
        ("DBCADENCE_SOURCES", sources.display().to_string()),
        (
            "DBCADENCE_LEDGER",
            dir.path().join("l.jsonl").display().to_string(),
        ),
    ];
    let script = "ansible/inventory/dbcadence_inventory.sh".to_string();
    let (ok, graph) = ansible(
        "ansible-inventory",
        vec!["-i".into(), script.clone(), "--graph".into()],
        &env,
    );
    assert!(ok, "{graph}");
    assert!(
        graph.contains("@postgresql:")
            && graph.contains("@mysql:")
            && graph.contains("@env_development:"),
        "{graph}"
    );
    assert!(
        graph.contains("@instance_pg1:") && graph.contains(&format!("pg1.{db}")),
        "{graph}"
    );
    // Server hosts, once per instance, for the tasks that act on a server.
    assert!(
        graph.contains("@servers:")
            && graph.contains("@servers_postgresql:")
            && graph.contains("@servers_mysql:")
            && graph.contains("@databases:"),
        "{graph}"
    );
    let (ok, list) = ansible(
        "ansible-inventory",
        vec!["-i".into(), script, "--list".into()],
        &env,
    );
    assert!(ok, "{list}");
    let v: serde_json::Value = serde_json::from_str(&list[list.find('{').unwrap()..]).unwrap();
    let vars = &v["_meta"]["hostvars"][format!("pg1.{db}")];
    assert_eq!(vars["dbcadence_db"], db.as_str());
    assert_eq!(vars["dbcadence_login_port"], pg().port);
    assert!(vars["dbcadence_login_password_file"].is_string());
    let servers = v["servers"]["hosts"].as_array().unwrap();
    assert!(
        servers.contains(&serde_json::json!("pg1")) && servers.contains(&serde_json::json!("my1")),
        "{servers:?}"
    );
    let databases = v["databases"]["hosts"].as_array().unwrap();
    assert!(
        !databases.contains(&serde_json::json!("pg1")),
        "servers are not databases"
    );
    let server = &v["_meta"]["hostvars"]["pg1"];
    assert_eq!(server["dbcadence_engine"], "postgresql");
    assert_eq!(server["dbcadence_login_port"], pg().port);
    assert!(server.get("dbcadence_db").is_none(), "{server}");
    // A server names its database hosts (for per-server plays such as the maintenance cycle).
    let database_hosts = server["dbcadence_database_hosts"].as_array().unwrap();
    assert!(
        database_hosts.contains(&serde_json::json!(format!("pg1.{db}")))
            && database_hosts
                .iter()
                .all(|h| h.as_str().unwrap().starts_with("pg1.")),
        "{server}"
    );
    assert!(
        !list.contains(&pg().password().unwrap()),
        "no secret in the inventory"
    );
}

#[test]
fn the_fleet_inventory_plugin_adds_constructed_groups_and_answers_from_its_cache() {
    let dir = tempfile::tempdir().unwrap();
    sources_file(dir.path());
    let config = dir.path().join("fleet.dbcadence.yml");
    std::fs::write(
        &config,
        format!(
            "plugin: dbcadence.maintenance.fleet\n\
             sources: sources.yml\n\
             keyed_groups:\n  - key: dbcadence_engine\n    prefix: engine\n\
             groups:\n  mariadb_servers: dbcadence_flavour == 'mariadb' and dbcadence_db is not defined\n\
             compose:\n  engine_upper: dbcadence_engine | upper\n\
             cache: true\n\
             cache_plugin: ansible.builtin.jsonfile\n\
             cache_connection: {}\n",
            dir.path().join("cache").display()
        ),
    )
    .unwrap();
    let graph = || {
        ansible(
            "ansible-inventory",
            vec!["-i".into(), config.display().to_string(), "--graph".into()],
            &[],
        )
    };
    let (ok, out) = graph();
    assert!(ok, "{out}");
    assert!(
        out.contains("@engine_postgresql:")
            && out.contains("@engine_mysql:")
            && out.contains("@servers:")
            && out.contains("@databases:"),
        "{out}"
    );
    let mariadb_servers = out.split("@mariadb_servers:").nth(1).unwrap_or_default();
    assert!(
        mariadb_servers
            .lines()
            .nth(1)
            .is_some_and(|l| l.ends_with("my1")),
        "{out}"
    );
    let (ok, host) = ansible(
        "ansible-inventory",
        vec![
            "-i".into(),
            config.display().to_string(),
            "--host".into(),
            "pg1".into(),
        ],
        &[],
    );
    assert!(
        ok && host.contains("\"engine_upper\": \"POSTGRESQL\""),
        "{host}"
    );
    assert!(!host.contains(&pg().password().unwrap()));
    // The cache answers: with the sources gone, the same groups come back.
    std::fs::remove_file(dir.path().join("sources.yml")).unwrap();
    let (ok, cached) = graph();
    assert!(ok && cached.contains("@engine_mysql:"), "{cached}");
    let cache_text: String = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(!cache_text.is_empty() && !cache_text.contains(&pg().password().unwrap()));
}

#[test]
fn ansible_doc_shows_options_types_defaults_choices_and_secrets() {
    let (ok, out) = ansible(
        "ansible-doc",
        vec!["dbcadence.maintenance.db_inventory".into()],
        &[],
    );
    assert!(ok, "{out}");
    // login_* come from the connection doc fragment, ledger_* from the ledger one.
    for expected in [
        "ledger_path",
        "type: path",
        "REQUIREMENTS",
        "login_password",
        "secret",
        "ssl_mode",
        "verify-full",
        "default: prefer",
        "type: int",
        "RETURN VALUES",
    ] {
        assert!(
            out.contains(expected),
            "ansible-doc lacks '{expected}':\n{out}"
        );
    }
}

/// playbooks/backup.yml over the inventory script, limited to the database `db` of the shared
/// lab's two servers, with `inventory_vars` as a second inventory source.
fn backup_playbook(
    dir: &std::path::Path,
    sources: &std::path::Path,
    inventory_vars: &std::path::Path,
    db: &str,
) -> (bool, String) {
    let env = [
        ("DBCADENCE_SOURCES", sources.display().to_string()),
        (
            "DBCADENCE_LEDGER",
            dir.join("ledger.jsonl").display().to_string(),
        ),
    ];
    ansible(
        "ansible-playbook",
        vec![
            "-i".into(),
            "ansible/inventory/dbcadence_inventory.sh".into(),
            "-i".into(),
            inventory_vars.display().to_string(),
            "playbooks/backup.yml".into(),
            "--limit".into(),
            format!("pg1.{db},my1.{db}"),
            "-e".into(),
            "ansible_python_interpreter={{ ansible_playbook_python }}".into(),
        ],
        &env,
    )
}

#[test]
fn the_backup_playbook_backs_up_and_verifies_hosts_of_the_inventory_script() {
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path());
    let db = unique("awx");
    for instance in [pg(), my()] {
        let mut engine = connect(instance);
        engine.create_database(&db).unwrap();
        engine
            .execute_in(
                Some(&db),
                "CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);",
            )
            .unwrap();
    }
    let backups = dir.path().join("backups");
    // Settings in the inventory (as group_vars would be) must win over the playbook's own
    // defaults: play vars would silently outrank them.
    let inventory_vars = dir.path().join("vars.yml");
    std::fs::write(
        &inventory_vars,
        format!(
            "all:\n  vars:\n    dbcadence_backup_dir: {}\n    dbcadence_retention: {{keep_last: 5}}\n",
            backups.display()
        ),
    )
    .unwrap();
    let (ok, out) = backup_playbook(dir.path(), &sources, &inventory_vars, &db);
    assert!(ok, "{out}");
    assert!(out.contains("failed=0"), "{out}");
    let listed = dbcadence_core::backup::list(&backups).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed.iter().all(|b| b.verified && b.database == db),
        "{listed:?}"
    );
    assert!(!out.contains(&pg().password().unwrap()) && !out.contains(&my().password().unwrap()));
}

#[test]
fn the_backup_playbook_backs_up_to_and_verifies_in_an_s3_repository_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path());
    let db = unique("awxs3");
    for instance in [pg(), my()] {
        let mut engine = connect(instance);
        engine.create_database(&db).unwrap();
        engine
            .execute_in(
                Some(&db),
                "CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t VALUES (1);",
            )
            .unwrap();
    }
    let repository = s3_repository(&unique("play"));
    let inventory_vars = dir.path().join("vars.yml");
    let vars = json!({"all": {"vars": {"dbcadence_repository": repository}}});
    std::fs::write(&inventory_vars, serde_yaml_ng::to_string(&vars).unwrap()).unwrap();
    let (ok, out) = backup_playbook(dir.path(), &sources, &inventory_vars, &db);
    assert!(ok, "{out}");
    assert!(out.contains("failed=0"), "{out}");
    let settings: dbcadence_core::repository::S3Repository =
        serde_json::from_value(repository).unwrap();
    let store = dbcadence_core::repository::S3Store::open(&settings).unwrap();
    let (listing, _) = store.scan(None, None).unwrap();
    assert_eq!(listing.backups.len(), 2, "{listing:?}");
    assert!(
        listing
            .backups
            .iter()
            .all(|b| b.verified && b.database == db),
        "{listing:?}"
    );
}

#[test]
fn the_tune_playbook_plans_in_check_mode_then_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path());
    let db = unique("awxtune");
    for instance in [pg(), my()] {
        let mut engine = connect(instance);
        engine.create_database(&db).unwrap();
        // Never analyzed: the first apply has something to do, the second nothing.
        engine
            .execute_in(
                Some(&db),
                "CREATE TABLE t (id integer PRIMARY KEY, v integer); INSERT INTO t VALUES (1, 1), (2, 2), (3, 3);",
            )
            .unwrap();
    }
    let ledger = dir.path().join("ledger.jsonl");
    let env = [
        ("DBCADENCE_SOURCES", sources.display().to_string()),
        ("DBCADENCE_LEDGER", ledger.display().to_string()),
    ];
    let run = |extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "-i".into(),
            "ansible/inventory/dbcadence_inventory.sh".into(),
            "playbooks/tune.yml".into(),
            "--limit".into(),
            format!("pg1.{db}"),
            "-e".into(),
            "ansible_python_interpreter={{ ansible_playbook_python }}".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        ansible("ansible-playbook", args, &env)
    };
    let (ok, out) = run(&["--check", "--diff"]);
    assert!(ok && out.contains("failed=0"), "{out}");
    assert!(out.contains("ANALYZE"), "the diff shows the DDL: {out}");
    assert!(
        out.contains("changed=1"),
        "check mode says it would change: {out}"
    );
    let (ok, out) = run(&[]);
    assert!(
        ok && out.contains("failed=0") && out.contains("changed=1"),
        "{out}"
    );
    let (ok, out) = run(&[]);
    assert!(ok && out.contains("changed=0"), "second apply: {out}");
    assert!(!out.contains(&pg().password().unwrap()));
    let records = std::fs::read_to_string(&ledger).unwrap();
    assert_eq!(
        records
            .lines()
            .filter(|l| l.contains("\"task\":\"tune\""))
            .count(),
        3
    );
}

#[test]
fn the_audit_playbook_audits_each_server_host_once() {
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path());
    let env = [
        ("DBCADENCE_SOURCES", sources.display().to_string()),
        (
            "DBCADENCE_LEDGER",
            dir.path().join("ledger.jsonl").display().to_string(),
        ),
    ];
    let (ok, out) = ansible(
        "ansible-playbook",
        vec![
            "-i".into(),
            "ansible/inventory/dbcadence_inventory.sh".into(),
            "playbooks/audit.yml".into(),
            "--limit".into(),
            "pg1,my1".into(),
            "-e".into(),
            "ansible_python_interpreter={{ ansible_playbook_python }}".into(),
        ],
        &env,
    );
    assert!(ok && out.contains("failed=0"), "{out}");
    assert!(
        out.contains("findings on pg1") && out.contains("findings on my1"),
        "{out}"
    );
    assert!(!out.contains(&pg().password().unwrap()) && !out.contains(&my().password().unwrap()));
    let ledger = std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap();
    assert_eq!(
        ledger
            .lines()
            .filter(|l| l.contains("\"task\":\"audit\""))
            .count(),
        2
    );
}

#[test]
fn the_patch_playbook_checks_then_patches_a_lab_server_once() {
    let lab = PrivateLab::start_on(1, 0, 0, Some(old_postgres_bin()));
    let pg1 = lab.instance("pg1");
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "DBCADENCE_LEDGER",
        dir.path().join("ledger.jsonl").display().to_string(),
    )];
    let inventory = lab.lab.dir.join("inventory.yml").display().to_string();
    let run = |action: &str| {
        ansible(
            "ansible-playbook",
            vec![
                "-i".into(),
                inventory.clone(),
                "playbooks/patch.yml".into(),
                "-e".into(),
                json!({"dbcadence_patch_action": action, "dbcadence_patch_platform": "lab",
                       "dbcadence_patch_ignore_gates": ["verified_backup"]})
                .to_string(),
            ],
            &env,
        )
    };
    let version = || {
        query(
            pg1,
            "postgres",
            "SELECT split_part(current_setting('server_version'), ' ', 1)",
        )[0][0]
            .clone()
            .unwrap()
    };
    let (ok, out) = run("check");
    assert!(
        ok && out.contains("changed=0") && out.contains("behind"),
        "{out}"
    );
    assert_eq!(version(), "15.8");
    let (ok, out) = run("apply");
    assert!(
        ok && out.contains("changed=1") && out.contains("patched postgresql 15.8"),
        "{out}"
    );
    assert_ne!(version(), "15.8");
    let (ok, out) = run("apply");
    assert!(
        ok && out.contains("changed=0") && out.contains("nothing to do"),
        "{out}"
    );
    assert!(!out.contains(&pg1.password().unwrap()));
}

#[test]
fn the_restore_drill_playbook_restores_queries_and_drops_and_refuses_the_source_server() {
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path());
    let db = unique("drill");
    let mut engine = connect(pg());
    engine.create_database(&db).unwrap();
    engine
        .execute_in(
            Some(&db),
            "CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);",
        )
        .unwrap();
    let backups = dir.path().join("backups");
    let ledger = dir.path().join("ledger.jsonl");
    let mut args = backup_args(pg(), &db, &backups);
    args["ledger_path"] = json!(ledger);
    assert_eq!(run_module("db_backup", &args).json["failed"], false);
    let verify = run_module(
        "db_verify",
        &json!({"backup_dir": backups, "ledger_path": ledger}),
    );
    assert_eq!(verify.json["verified"], true, "{}", verify.json);
    let env = [
        ("DBCADENCE_SOURCES", sources.display().to_string()),
        ("DBCADENCE_LEDGER", ledger.display().to_string()),
    ];
    let run = |extra: serde_json::Value| {
        let mut vars = json!({"dbcadence_drill_hosts": "all", "dbcadence_backup_dir": backups,
                              "ansible_python_interpreter": "{{ ansible_playbook_python }}"});
        vars.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ansible(
            "ansible-playbook",
            vec![
                "-i".into(),
                "ansible/inventory/dbcadence_inventory.sh".into(),
                "playbooks/restore_drill.yml".into(),
                "--limit".into(),
                format!("pg1.{db}"),
                "-e".into(),
                vars.to_string(),
            ],
            &env,
        )
    };
    // Into a throwaway server on the control node.
    let (ok, out) = run(json!({}));
    assert!(
        ok && out.contains("failed=0") && out.contains("drill:"),
        "{out}"
    );
    let records = dbcadence_core::ledger::Ledger::new(&ledger)
        .read()
        .unwrap()
        .records;
    let drill = records
        .iter()
        .find(|r| r.task == dbcadence_core::task::Task::Restore)
        .expect("a restore record");
    assert_eq!(drill.target.instance, "pg1");
    assert_eq!(drill.target.db.as_deref(), Some(db.as_str()));
    assert_eq!(drill.details["drill"], true);
    assert!(drill.details["restore_seconds"].as_f64().unwrap() > 0.0);
    // The drilled database's own server is refused as the target.
    let (ok, out) = run(json!({"dbcadence_drill_server": {
        "engine": "postgresql", "login_host": pg().host, "login_port": pg().port,
        "login_user": pg().user, "login_password": pg().password().unwrap()}}));
    assert!(!ok && out.contains("own server"), "{out}");
    assert!(
        !connect(pg())
            .databases()
            .unwrap()
            .iter()
            .any(|d| d.name.contains("_drill_")),
        "no drill copy left on the source"
    );
    assert!(!out.contains(&pg().password().unwrap()));
}

/// What `-vvv` shows of how a module reached the host: `PUT` lines (copies) and `EXEC` lines.
fn copies_and_commands(out: &str) -> (usize, Vec<&str>) {
    let puts = out.lines().filter(|l| l.contains("> PUT ")).count();
    let execs = out.lines().filter(|l| l.contains("> EXEC ")).collect();
    (puts, execs)
}

/// The action plugin behind every module (plugins/plugin_utils/binary_module.py) keeps each binary
/// in a private cache on the host: copied once, then run with its arguments on stdin (so a
/// password is on no command line); a new binary replaces the old one; with the cache off or
/// unwritable, Ansible's own copy per task still runs the module.
#[test]
fn modules_run_from_a_private_cache_copied_once_with_arguments_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let password = pg().password().unwrap();
    let task = json!({
        "dbcadence.maintenance.db_inventory": {
            "engine": "postgresql",
            "login_host": pg().host,
            "login_port": pg().port,
            "login_user": pg().user,
            "login_password": "{{ pw }}",
            "ledger_path": dir.path().join("ledger.jsonl"),
        },
        "loop": [1, 2, 3],
    });
    let playbook = dir.path().join("play.yml");
    std::fs::write(
        &playbook,
        serde_yaml_ng::to_string(&json!([{
            "hosts": "localhost",
            "gather_facts": false,
            "vars": {"pw": password},
            "tasks": [task],
        }]))
        .unwrap(),
    )
    .unwrap();
    let run = |cache_setting: &str| {
        let (ok, out) = ansible(
            "ansible-playbook",
            vec![
                "-i".into(),
                "localhost,".into(),
                "-c".into(),
                "local".into(),
                "-vvv".into(),
                playbook.display().to_string(),
                "-e".into(),
                format!("dbcadence_module_cache={cache_setting}"),
                "-e".into(),
                "ansible_python_interpreter={{ ansible_playbook_python }}".into(),
            ],
            &[],
        );
        assert!(ok && out.contains("failed=0"), "{out}");
        out
    };
    let binary = workspace_root().join("ansible/plugins/modules/db_inventory");
    let sha256 = duct::cmd!("sha256sum", &binary).read().unwrap();
    let cached_name = format!("db_inventory-{}", &sha256[..64]);

    // First run: one copy for three tasks, into a private directory, named by its content.
    let stale = cache.join(format!("db_inventory-{}", "0".repeat(64)));
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(&stale, b"an older version").unwrap();
    let out = run(&cache.display().to_string());
    let (puts, execs) = copies_and_commands(&out);
    assert_eq!(puts, 1, "{out}");
    let mut files: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, vec![cached_name.clone()], "the old version is gone");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache.join(&cached_name)), 0o700);
    assert!(execs.iter().all(|l| !l.contains(&password)), "{out}");
    assert!(!out.contains(&password), "{out}");

    // Second run: nothing copied, one command per task.
    let out = run(&cache.display().to_string());
    let (puts, execs) = copies_and_commands(&out);
    assert_eq!(puts, 0, "{out}");
    assert_eq!(execs.len(), 3, "{execs:#?}");

    // Cache off: Ansible copies the binary (and an args file) for every task.
    let out = run("false");
    let (puts, _) = copies_and_commands(&out);
    assert_eq!(puts, 6, "{out}");

    // Unwritable cache: a warning that names the way out, and the tasks still run.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"").unwrap();
    let out = run(&blocker.join("cache").display().to_string());
    assert!(out.contains("could not keep its module binaries"), "{out}");
    assert!(out.contains("dbcadence_module_cache"), "{out}");
    // A relative directory would land wherever the task starts: refused by name, still runs.
    let out = run("relative/cache");
    assert!(
        out.contains("must be an absolute path or start with ~/"),
        "{out}"
    );
}

/// The roles document their variables for `ansible-doc -t role`, and a variable of the wrong
/// type stops the play at the role's argument check, before any of its tasks runs.
#[test]
fn roles_document_their_variables_and_refuse_a_wrong_type_before_any_task() {
    for (role, variables) in [
        (
            "backup",
            &["backup_dir", "backup_retention", "backup_runner"][..],
        ),
        ("verify", &["verify_backup", "verify_jobs", "verify_runner"]),
        ("tune", &["tune_apply_index_advice", "tune_window"]),
        ("audit", &["audit_allowed_superusers", "audit_log_path"]),
        ("logs", &["logs_keep_days", "logs_max_total_bytes"]),
        ("patch", &["patch_action", "patch_require_change"]),
        ("schedule", &["schedule_sources"]),
        (
            "inventory",
            &["inventory_sources", "inventory_snapshot_path"],
        ),
        ("change", &["change_summary", "change_to", "transition"]),
        (
            "monitoring",
            &["monitoring_textfile_dir", "monitoring_scrape_targets"],
        ),
    ] {
        let (ok, out) = ansible(
            "ansible-doc",
            vec![
                "-t".into(),
                "role".into(),
                format!("dbcadence.maintenance.{role}"),
            ],
            &[],
        );
        assert!(ok, "{role}: {out}");
        for variable in variables {
            assert!(out.contains(variable), "{role} lacks {variable}:\n{out}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let sources = sources_file(dir.path());
    let backups = dir.path().join("backups");
    let db = unique("roles");
    connect(pg()).create_database(&db).unwrap();
    let (ok, out) = ansible(
        "ansible-playbook",
        vec![
            "-i".into(),
            "ansible/inventory/dbcadence_inventory.sh".into(),
            "playbooks/backup.yml".into(),
            "--limit".into(),
            format!("pg1.{db}"),
            "-e".into(),
            format!("backup_dir={}", backups.display()),
            "-e".into(),
            "backup_retention=weekly".into(),
            "-e".into(),
            "ansible_python_interpreter={{ ansible_playbook_python }}".into(),
        ],
        &[("DBCADENCE_SOURCES", sources.display().to_string())],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("backup_retention"), "{out}");
    assert!(
        out.contains("Validating arguments against arg spec"),
        "{out}"
    );
    assert!(!out.contains("Back up the database"), "a task ran: {out}");
    assert!(!backups.exists(), "{out}");
}

/// The change role requests one record for the hosts of the play and moves it through its
/// states; the record holds every host, the validation and the whole history.
#[test]
fn the_change_role_requests_one_record_for_the_play_and_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let playbook = dir.path().join("change.yml");
    std::fs::write(
        &playbook,
        r#"- hosts: all
  gather_facts: false
  roles:
    - role: dbcadence.maintenance.change
      vars:
        change_summary: Nightly maintenance
        change_standard: true
        change_tasks: [backup, tune]
  tasks:
    - name: Implement, validate and close it
      ansible.builtin.include_role:
        name: dbcadence.maintenance.change
        tasks_from: transition
      vars:
        change_to: "{{ item.to }}"
        change_validation: "{{ item.validation }}"
      loop:
        - {to: implementing, validation: {}}
        - {to: validated, validation: {post_checks: passed}}
        - {to: closed, validation: {}}
    - name: The record is closed and covers both hosts
      ansible.builtin.assert:
        that:
          - change_record.change.state == 'closed'
          - change_record.change.hosts | sort == ['db-a', 'db-b']
          - change_record.change.history | length == 5
          - change_record.change.id == change_current_id
"#,
    )
    .unwrap();
    let (ok, out) = ansible(
        "ansible-playbook",
        vec![
            "-i".into(),
            "db-a,db-b,".into(),
            "-c".into(),
            "local".into(),
            playbook.display().to_string(),
            "-e".into(),
            "ansible_python_interpreter={{ ansible_playbook_python }}".into(),
        ],
        &[("DBCADENCE_LEDGER", ledger.display().to_string())],
    );
    assert!(ok && out.contains("failed=0"), "{out}");
    // One record per transition (create, then implementing, validated, closed): four.
    let records = dbcadence_core::ledger::Ledger::new(&ledger)
        .read()
        .unwrap()
        .records;
    assert_eq!(records.len(), 4, "{records:?}");
}

/// The monitoring role writes a textfile directory, node_exporter's options, the rules and a
/// Prometheus configuration that promtool accepts; check mode writes nothing, a second run
/// changes nothing, and a real Prometheus started on that configuration loads every rule.
#[test]
fn the_monitoring_role_sets_up_a_prometheus_that_loads_the_project_rules() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let playbook = root.join("monitoring.yml");
    std::fs::write(
        &playbook,
        format!(
            r#"- hosts: localhost
  gather_facts: false
  roles:
    - role: dbcadence.maintenance.monitoring
      vars:
        monitoring_textfile_dir: {root}/textfile
        monitoring_node_exporter_defaults_file: {root}/default/prometheus-node-exporter
        monitoring_prometheus_config_file: {root}/prometheus.yml
        monitoring_rules_dir: {root}/rules
        monitoring_scrape_targets: ["127.0.0.1:9"]
        monitoring_scrape_interval: 1s
        monitoring_install_packages: false
        monitoring_manage_services: false
"#,
            root = root.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("default")).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "-i".to_string(),
            "localhost,".into(),
            "-c".into(),
            "local".into(),
            "-e".into(),
            "ansible_python_interpreter={{ ansible_playbook_python }}".into(),
            playbook.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        ansible("ansible-playbook", args, &[])
    };
    let (ok, out) = run(&["--check"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("changed=") && !root.join("prometheus.yml").exists(),
        "{out}"
    );
    assert!(!root.join("rules").exists(), "{out}");

    let (ok, out) = run(&[]);
    assert!(ok && out.contains("failed=0"), "{out}");
    let defaults = std::fs::read_to_string(root.join("default/prometheus-node-exporter")).unwrap();
    assert!(
        defaults.contains(&format!(
            "ARGS=\"--collector.textfile.directory={}/textfile\"",
            root.display()
        )),
        "{defaults}"
    );
    assert!(root.join("textfile").is_dir());
    let (ok, out) = run(&[]);
    assert!(ok && out.contains("changed=0"), "second run: {out}");

    // A real Prometheus on that configuration loads the project's alert rules.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = duct::cmd!(
        "prometheus",
        format!("--config.file={}", root.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", root.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}")
    )
    .stderr_to_stdout()
    .stdout_null()
    .start()
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/rules?type=alert");
    let mut names = Vec::new();
    wait_until(60, "Prometheus serves its rules", || {
        let Ok(body) = duct::cmd!("curl", "-sSf", &url).stderr_null().read() else {
            return false;
        };
        let rules: serde_json::Value = serde_json::from_str(&body).unwrap();
        names = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| r["name"].as_str().unwrap_or_default().to_string())
            .collect();
        !names.is_empty()
    });
    let _ = server.kill();
    assert_eq!(names.len(), 9, "{names:?}");
    assert!(
        names.contains(&"DbcadenceBackupFailed".to_string()),
        "{names:?}"
    );
}
