//! db_tune against real lab servers: the fixture's problems are found with evidence, check
//! mode changes nothing, apply fixes them and measures the gain, the second run is unchanged,
//! a lock makes a fix give up cleanly, and hostile names just work.

use std::time::{Duration, Instant};

use dbcadence_core::lab::LabInstance;
use dbcadence_e2e::*;
use serde_json::{Value, json};

fn fixture(instance: &LabInstance) -> (&'static str, &'static str) {
    match instance.engine {
        dbcadence_core::connection::EngineKind::Postgresql => {
            ("postgres.sql", "postgres-workload.sql")
        }
        dbcadence_core::connection::EngineKind::Mysql => ("mariadb.sql", "mariadb-workload.sql"),
    }
}

fn data(name: &str) -> std::path::PathBuf {
    workspace_root().join("tests/data/tune").join(name)
}

/// A new database holding the fixture.
fn load_fixture(instance: &LabInstance, name: &str) {
    let mut engine = connect(instance);
    engine.drop_database(name).unwrap();
    engine.create_database(name).unwrap();
    let sql = std::fs::read_to_string(data(fixture(instance).0)).unwrap();
    engine.execute_in(Some(name), &sql).unwrap();
    drop(engine);
    if instance.engine == dbcadence_core::connection::EngineKind::Postgresql {
        // The loading session reports its row counts to the statistics views as it ends.
        wait_until(10, "the statistics to count the loaded rows", || {
            query(
                instance,
                name,
                "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'orders'",
            )[0][0]
                .as_deref()
                == Some("200000")
        });
    }
}

fn tune_args(instance: &LabInstance, database: &str, dir: &std::path::Path) -> Value {
    json!({
        "engine": instance.engine, "login_host": instance.host, "login_port": instance.port,
        "login_user": instance.user, "login_password": instance.password().unwrap(),
        "ssl_mode": "verify-full", "ca_cert": instance.ca_cert,
        "database": database, "instance_id": instance.name,
        "workload": data(fixture(instance).1), "workload_runs": 10,
        "ledger_path": dir.join("ledger.jsonl"), "metrics_dir": dir.join("metrics"),
    })
}

/// What check mode must leave alone: the indexes and when each table was last analyzed.
fn catalogue(instance: &LabInstance, database: &str) -> Vec<Vec<Option<String>>> {
    let sql = match instance.engine {
        dbcadence_core::connection::EngineKind::Postgresql => {
            "SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public' \
             UNION ALL SELECT relname || ' ' || coalesce(last_analyze::text, 'never') || ' ' || coalesce(last_vacuum::text, 'never') \
             FROM pg_stat_user_tables ORDER BY 1"
        }
        dbcadence_core::connection::EngineKind::Mysql => {
            "SELECT CONCAT(TABLE_NAME, ' ', INDEX_NAME, ' ', COLUMN_NAME) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() UNION ALL \
             SELECT CONCAT(table_name, ' ', last_update) FROM mysql.innodb_table_stats WHERE database_name = DATABASE() ORDER BY 1"
        }
    };
    query(instance, database, sql)
}

fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no finding {id} in {:#}", report["findings"]))
}

fn kinds(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn postgres_findings_apply_measured_gain_and_a_quiet_second_run() {
    let instance = pg();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{} we\"ird; db", unique("tune"));
    load_fixture(instance, &name);
    let mut args = tune_args(instance, &name, dir.path());
    args["apply_index_advice"] = json!(true);

    // Check mode: the plan with evidence and the DDL; nothing changes.
    let before = catalogue(instance, &name);
    let mut check = args.clone();
    check["_ansible_check_mode"] = json!(true);
    check["_ansible_diff"] = json!(true);
    let plan = run_module("db_tune", &check);
    assert_eq!(plan.json["failed"], false, "{}", plan.json);
    assert_eq!(
        plan.json["changed"], true,
        "check mode says it would change"
    );
    assert_eq!(
        catalogue(instance, &name),
        before,
        "check mode changed the catalogue"
    );
    let report = &plan.json;
    let stale = finding(report, "stale_statistics:public.orders");
    assert!(
        stale["reason"].as_str().unwrap().contains("never analyzed"),
        "{stale}"
    );
    let fk = finding(report, "unindexed_foreign_key:public.orders(customer_id)");
    assert_eq!(fk["evidence"]["references"], "customers");
    let missing = finding(report, "missing_index:public.orders(reference)");
    let helped = missing["evidence"]["statements"].as_array().unwrap();
    assert!(!helped.is_empty(), "{missing}");
    for s in helped {
        let (cost, with) = (
            s["cost_before"].as_f64().unwrap(),
            s["cost_with_index"]
                .as_f64()
                .expect("hypopg gives a cost with the index"),
        );
        // Before ANALYZE the planner guesses the rows a value matches; the index still halves
        // the cost at least.
        assert!(with < cost / 2.0, "a hypothetical index helps: {s}");
    }
    let duplicates: Vec<String> = kinds(report)
        .into_iter()
        .filter(|k| k.starts_with("duplicate_index:"))
        .collect();
    assert_eq!(
        duplicates.len(),
        1,
        "one of the two status indexes: {duplicates:?}"
    );
    finding(report, "unused_index:public.orders_note_idx");
    let diff = plan.json["diff"]["after"].as_str().unwrap();
    assert!(
        diff.contains("CREATE INDEX CONCURRENTLY \"orders_reference_dbc_idx\""),
        "{diff}"
    );
    assert!(
        diff.contains("ANALYZE") && !diff.contains("DROP INDEX"),
        "{diff}"
    );

    // Apply: the allowed fixes run, the drops wait for their opt-in, the workload is faster.
    let applied = run_module("db_tune", &args);
    assert_eq!(applied.json["failed"], false, "{}", applied.json);
    assert_eq!(applied.json["changed"], true);
    let actions = applied.json["actions"].as_array().unwrap();
    let status = |needle: &str| {
        actions
            .iter()
            .find(|a| a["sql"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no action with {needle}: {actions:#?}"))["status"]
            .clone()
    };
    assert_eq!(status("orders_reference_dbc_idx"), "applied");
    assert_eq!(status("orders_customer_id_dbc_idx"), "applied");
    assert_eq!(status("DROP INDEX"), "not_allowed");
    let indexes = query(
        instance,
        &name,
        "SELECT indexrelid::regclass::text, indisvalid::text FROM pg_index WHERE indrelid = 'orders'::regclass ORDER BY 1",
    );
    assert!(
        indexes
            .iter()
            .any(|r| r[0].as_deref() == Some("orders_reference_dbc_idx")
                && r[1].as_deref() == Some("true")),
        "{indexes:?}"
    );
    let m = &applied.json["measurement"];
    let (p50_before, p50_after) = (
        m["before"]["p50_ms"].as_f64().unwrap(),
        m["after"]["p50_ms"].as_f64().unwrap(),
    );
    assert!(
        p50_after * 5.0 < p50_before,
        "p50 {p50_before} ms -> {p50_after} ms: {m:#}"
    );
    let ledger = std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap();
    let last: Value = serde_json::from_str(ledger.lines().last().unwrap()).unwrap();
    assert_eq!(last["task"], "tune");
    assert_eq!(last["outcome"], "ok");
    assert!(
        last["details"]["query_time_before_ms"].as_f64().unwrap()
            > last["details"]["query_time_after_ms"].as_f64().unwrap()
    );
    assert!(!ledger.contains(&instance.password().unwrap()));

    // Right after: nothing left to do.
    let again = run_module("db_tune", &args);
    assert_eq!(again.json["failed"], false, "{}", again.json);
    assert_eq!(again.json["changed"], false, "{:#}", again.json["actions"]);
    let ids = kinds(&again.json);
    assert!(
        !ids.iter().any(|k| k.starts_with("stale_statistics")
            || k.starts_with("missing_index")
            || k.starts_with("unindexed_foreign_key")),
        "{ids:?}"
    );

    // A plan run is a report: it changes nothing and says so, even with work to do.
    let mut plan_args = args.clone();
    plan_args["action"] = json!("plan");
    plan_args["drop_unused_indexes"] = json!(true);
    let planned = run_module("db_tune", &plan_args);
    assert_eq!(planned.json["changed"], false, "{}", planned.json);
    assert!(
        planned.json["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["status"] == "planned")
    );

    // The gain on real traffic since the apply (here, the workload's runs after the fixes),
    // from the statement statistics the apply kept: its own task, never a tuning run.
    let mut measure_args = args.clone();
    measure_args["action"] = json!("measure");
    let measured = run_module("db_tune", &measure_args);
    assert_eq!(measured.json["failed"], false, "{}", measured.json);
    assert_eq!(measured.json["changed"], false);
    let observed = &measured.json["observed"];
    assert!(
        observed["statements_compared"].as_u64().unwrap() >= 2,
        "{observed:#}"
    );
    assert!(
        observed["reduction"].as_f64().unwrap() > 0.5,
        "{observed:#}"
    );
    let ledger = std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap();
    let last: Value = serde_json::from_str(ledger.lines().last().unwrap()).unwrap();
    assert_eq!(last["task"], "tune_measure");

    // The scorecard's query-time row has data now.
    let report = run_module(
        "db_compliance",
        &json!({"ledger_path": dir.path().join("ledger.jsonl"), "period_days": 1}),
    );
    let card = report.json["report"]["scorecard"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "tuning")
        .unwrap()
        .clone();
    assert!(card["value"].as_f64().unwrap() > 0.2, "{card}");
    connect(instance).drop_database(&name).unwrap();
}

#[test]
fn mariadb_findings_apply_and_a_quiet_second_run() {
    let instance = my();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{} we\"ird; db", unique("tune"));
    load_fixture(instance, &name);
    let mut args = tune_args(instance, &name, dir.path());
    args["apply_index_advice"] = json!(true);
    args["drop_duplicate_indexes"] = json!(true);

    let before = catalogue(instance, &name);
    let mut check = args.clone();
    check["_ansible_check_mode"] = json!(true);
    let plan = run_module("db_tune", &check);
    assert_eq!(plan.json["failed"], false, "{}", plan.json);
    assert_eq!(
        plan.json["changed"], true,
        "check mode says it would change"
    );
    assert_eq!(
        catalogue(instance, &name),
        before,
        "check mode changed the catalogue"
    );
    let report = &plan.json;
    finding(report, "stale_statistics:orders");
    let missing = finding(report, "missing_index:orders(reference)");
    assert!(
        missing["evidence"]["statements"][0]["cost_before"]
            .as_f64()
            .unwrap()
            > 1000.0,
        "{missing}"
    );
    let duplicates: Vec<String> = kinds(report)
        .into_iter()
        .filter(|k| k.starts_with("duplicate_index:"))
        .collect();
    assert_eq!(duplicates.len(), 1, "{duplicates:?}");

    let applied = run_module("db_tune", &args);
    assert_eq!(applied.json["failed"], false, "{}", applied.json);
    assert_eq!(applied.json["changed"], true);
    let m = &applied.json["measurement"];
    let (p50_before, p50_after) = (
        m["before"]["p50_ms"].as_f64().unwrap(),
        m["after"]["p50_ms"].as_f64().unwrap(),
    );
    assert!(
        p50_after * 5.0 < p50_before,
        "p50 {p50_before} ms -> {p50_after} ms: {m:#}"
    );
    let indexes = query(
        instance,
        &name,
        "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'orders' ORDER BY 1",
    );
    let names: Vec<&str> = indexes.iter().filter_map(|r| r[0].as_deref()).collect();
    assert!(names.contains(&"orders_reference_dbc_idx"), "{names:?}");
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("orders_status"))
            .count(),
        1,
        "one status index dropped: {names:?}"
    );

    let again = run_module("db_tune", &args);
    assert_eq!(again.json["failed"], false, "{}", again.json);
    assert_eq!(again.json["changed"], false, "{:#}", again.json["actions"]);
    let mut measure_args = args.clone();
    measure_args["action"] = json!("measure");
    let measured = run_module("db_tune", &measure_args);
    assert_eq!(measured.json["failed"], false, "{}", measured.json);
    let observed = &measured.json["observed"];
    assert!(
        observed["reduction"].as_f64().unwrap() > 0.5,
        "{observed:#}"
    );
    connect(instance).drop_database(&name).unwrap();
}

#[test]
fn a_lock_makes_the_index_build_give_up_and_leaves_no_invalid_index() {
    let instance = pg();
    let dir = tempfile::tempdir().unwrap();
    let name = unique("tune_lock");
    load_fixture(instance, &name);
    // Another session reads orders in an open transaction: CREATE INDEX CONCURRENTLY creates
    // its (invalid) index, then waits for that transaction and gives up after lock_timeout.
    let blocker = {
        let (instance, name) = (instance.clone(), name.clone());
        std::thread::spawn(move || {
            let mut client = pg_session(&instance, &name);
            client
                .batch_execute("BEGIN; SELECT count(*) FROM orders; SELECT pg_sleep(6); COMMIT")
                .unwrap();
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut args = tune_args(instance, &name, dir.path());
    args["apply_index_advice"] = json!(true);
    args["lock_timeout"] = json!(1);
    args.as_object_mut().unwrap().remove("workload");
    let started = Instant::now();
    let run = run_module("db_tune", &args);
    blocker.join().unwrap();
    assert_eq!(run.json["failed"], true, "{}", run.json);
    let msg = run.json["msg"].as_str().unwrap();
    assert!(
        msg.contains("lock timeout") && msg.contains("nothing was left behind"),
        "{msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    // The other fixes still ran; the report says which failed.
    let actions = run.json["actions"].as_array().unwrap();
    assert!(
        actions.iter().any(|a| a["status"] == "failed"),
        "{actions:#?}"
    );
    assert!(
        actions.iter().any(|a| a["status"] == "applied"),
        "{actions:#?}"
    );
    let invalid = query(
        instance,
        &name,
        "SELECT count(*) FROM pg_index WHERE NOT indisvalid",
    );
    assert_eq!(
        invalid[0][0].as_deref(),
        Some("0"),
        "no invalid index left behind"
    );
    let ledger = std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap();
    let last: Value = serde_json::from_str(ledger.lines().last().unwrap()).unwrap();
    assert_eq!(last["outcome"], "failed");
    connect(instance).drop_database(&name).unwrap();
}

#[test]
fn bad_input_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = tune_args(pg(), "postgres", dir.path());
    args["lock_timeout"] = json!("soon");
    let run = run_module("db_tune", &args);
    assert_eq!(run.json["failed"], true);
    assert!(
        run.json["msg"].as_str().unwrap().contains("lock_timeout"),
        "{}",
        run.json
    );
    let mut args = tune_args(pg(), "postgres", dir.path());
    let workload = dir.path().join("bad.sql");
    std::fs::write(&workload, "SELECT $[9..1]\n").unwrap();
    args["workload"] = json!(workload);
    let run = run_module("db_tune", &args);
    assert_eq!(run.json["failed"], true);
    assert!(
        run.json["msg"].as_str().unwrap().contains("line 1"),
        "{}",
        run.json
    );
}

#[test]
fn a_rehearsal_on_a_restored_copy_justifies_the_real_apply() {
    let instance = pg();
    let dir = tempfile::tempdir().unwrap();
    let name = unique("tune_rehearse");
    load_fixture(instance, &name);
    let backups = dir.path().join("backups");
    let backup = run_module("db_backup", &backup_args(instance, &name, &backups));
    assert_eq!(backup.json["failed"], false, "{}", backup.json);
    let verified = run_module(
        "db_verify",
        &json!({"backup_dir": backups, "instance_id": instance.name, "database": name,
                "ledger_path": dir.path().join("ledger.jsonl")}),
    );
    assert_eq!(verified.json["verified"], true, "{}", verified.json);
    let mut args = tune_args(instance, &name, dir.path());
    args["apply_index_advice"] = json!(true);
    args["require_rehearsal"] = json!(true);
    args["backup_dir"] = json!(backups);

    // No rehearsal yet: the apply refuses and changes nothing.
    let before = catalogue(instance, &name);
    let refused = run_module("db_tune", &args);
    assert_eq!(refused.json["failed"], true, "{}", refused.json);
    assert!(
        refused.json["msg"]
            .as_str()
            .unwrap()
            .contains("rehearse: true"),
        "{}",
        refused.json
    );
    assert_eq!(catalogue(instance, &name), before);

    // The rehearsal: the plan on a restored copy, measured; the real server untouched.
    let mut rehearse = args.clone();
    rehearse["rehearse"] = json!(true);
    let rehearsed = run_module("db_tune", &rehearse);
    assert_eq!(rehearsed.json["failed"], false, "{}", rehearsed.json);
    assert_eq!(rehearsed.json["changed"], false);
    let r = &rehearsed.json["rehearsal"];
    assert_eq!(r["gain"], true, "{r:#}");
    let (p50_before, p50_after) = (
        r["measurement"]["before"]["p50_ms"].as_f64().unwrap(),
        r["measurement"]["after"]["p50_ms"].as_f64().unwrap(),
    );
    assert!(p50_after * 5.0 < p50_before, "{r:#}");
    let created = r["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["sql"]
                .as_str()
                .unwrap()
                .contains("orders_reference_dbc_idx")
        })
        .unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!(created["status"], "applied");
    assert!(created["seconds"].as_f64().is_some());
    assert_eq!(
        catalogue(instance, &name),
        before,
        "a rehearsal changed the real server"
    );

    // The same plan, rehearsed with a gain: the real apply goes ahead.
    let applied = run_module("db_tune", &args);
    assert_eq!(applied.json["failed"], false, "{}", applied.json);
    assert_eq!(applied.json["changed"], true);
    connect(instance).drop_database(&name).unwrap();
}

#[test]
fn mariadb_online_ddl_gives_up_on_a_metadata_lock_and_leaves_nothing() {
    let instance = my();
    let dir = tempfile::tempdir().unwrap();
    let name = unique("tune_lock");
    load_fixture(instance, &name);
    // Another session read orders in an open transaction: it holds a metadata lock that the
    // online ADD INDEX must wait for, and gives up after lock_wait_timeout.
    let blocker = {
        let (instance, name) = (instance.clone(), name.clone());
        std::thread::spawn(move || {
            use mysql_async::prelude::Queryable;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let opts = mysql_async::OptsBuilder::default()
                    .socket(Some(instance.socket.to_string_lossy().into_owned()))
                    .user(Some(instance.user.clone()))
                    .pass(Some(instance.password().unwrap()))
                    .db_name(Some(name));
                let mut conn = mysql_async::Conn::new(opts).await.unwrap();
                for sql in [
                    "START TRANSACTION",
                    "SELECT count(*) FROM orders",
                    "SELECT SLEEP(6)",
                    "COMMIT",
                ] {
                    conn.query_drop(sql).await.unwrap();
                }
                conn.disconnect().await.unwrap();
            })
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut args = tune_args(instance, &name, dir.path());
    args["apply_index_advice"] = json!(true);
    args["lock_timeout"] = json!(1);
    // The workload names the filter that wants an index (and its replay only reads).
    args["workload_runs"] = json!(1);
    let run = run_module("db_tune", &args);
    blocker.join().unwrap();
    assert_eq!(run.json["failed"], true, "{}", run.json);
    let msg = run.json["msg"].as_str().unwrap();
    assert!(msg.to_lowercase().contains("lock wait timeout"), "{msg}");
    let indexes = query(
        instance,
        &name,
        "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME LIKE '%dbc_idx'",
    );
    assert_eq!(indexes[0][0].as_deref(), Some("0"), "no index half-built");
    connect(instance).drop_database(&name).unwrap();
}

#[test]
fn postgres_dead_tuples_and_an_invalid_index_are_fixed_and_stay_fixed() {
    let instance = pg();
    let dir = tempfile::tempdir().unwrap();
    let name = unique("tune_vacuum");
    load_fixture(instance, &name);
    // Every order rewritten once (autovacuum is off on the fixture's tables): as many dead
    // rows as live ones. And an index marked invalid, as a failed concurrent build leaves it.
    let mut engine = connect(instance);
    engine
        .execute_in(
            Some(&name),
            "ANALYZE; UPDATE orders SET total = total + 1; \
             UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'orders_note_idx'::regclass;",
        )
        .unwrap();
    drop(engine);
    wait_until(10, "the statistics to count the dead rows", || {
        query(
            instance,
            &name,
            "SELECT n_dead_tup >= 200000 FROM pg_stat_user_tables WHERE relname = 'orders'",
        )[0][0]
            .as_deref()
            == Some("t")
    });
    let mut args = tune_args(instance, &name, dir.path());
    args.as_object_mut().unwrap().remove("workload");
    let first = run_module("db_tune", &args);
    assert_eq!(first.json["failed"], false, "{}", first.json);
    let dead = finding(&first.json, "dead_tuples:public.orders");
    assert!(
        dead["evidence"]["n_dead_tup"].as_i64().unwrap() >= 200000,
        "{dead}"
    );
    let invalid = finding(&first.json, "invalid_index:public.orders_note_idx");
    assert_eq!(invalid["severity"], "critical");
    let sqls: Vec<&str> = first.json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "applied")
        .map(|a| a["sql"].as_str().unwrap())
        .collect();
    assert!(
        sqls.contains(&"VACUUM (ANALYZE) \"public\".\"orders\""),
        "{sqls:?}"
    );
    assert!(
        sqls.contains(&"REINDEX INDEX CONCURRENTLY \"public\".\"orders_note_idx\""),
        "{sqls:?}"
    );
    let left = query(
        instance,
        &name,
        "SELECT (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'orders'), \
         (SELECT count(*) FROM pg_index WHERE NOT indisvalid)",
    );
    assert_eq!(left[0][0].as_deref(), Some("0"), "vacuumed");
    assert_eq!(left[0][1].as_deref(), Some("0"), "rebuilt");
    let again = run_module("db_tune", &args);
    assert_eq!(again.json["changed"], false, "{:#}", again.json["actions"]);
    connect(instance).drop_database(&name).unwrap();
}
