//! db_inventory and `dbcadence inventory` against real lab servers.

use dbcadence_e2e::*;
use serde_json::{Value, json};

fn databases_of<'a>(result: &'a Value, instance_id: &str) -> Vec<&'a Value> {
    result["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == instance_id)
        .unwrap_or_else(|| panic!("instance {instance_id} in {result}"))["databases"]
        .as_array()
        .unwrap()
        .iter()
        .collect()
}

#[test]
fn aliases_of_one_server_are_counted_once() {
    let (pg, my) = (pg(), my());
    let mut pg_local = endpoint(pg, "pg-localhost");
    pg_local["login_host"] = json!("localhost");
    let mut pg_socket = endpoint(pg, "pg-socket");
    pg_socket["login_unix_socket"] = json!(pg.socket);
    let mut my_socket = endpoint(my, "my-socket");
    my_socket["login_unix_socket"] = json!(my.socket);
    let ledger = tempfile::tempdir().unwrap();
    let run = run_module(
        "db_inventory",
        &json!({
            "endpoints": [endpoint(pg, "pg-ip"), pg_local, pg_socket, endpoint(my, "my-ip"), my_socket],
            "ledger_path": ledger.path().join("ledger.jsonl"),
        }),
    );
    let r = &run.json;
    assert_eq!(r["failed"], false, "{r}");
    assert_eq!(r["summary"]["endpoints"], 5);
    assert_eq!(r["summary"]["instances"], 2, "{}", r["summary"]);
    assert_eq!(r["summary"]["aliases_merged"], 3);
    let pg_instance = r["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["engine"] == "postgresql")
        .unwrap();
    assert_eq!(
        pg_instance["id"], "pg-ip",
        "the id is the first alias name in sort order"
    );
    assert_eq!(pg_instance["aliases"].as_array().unwrap().len(), 3);
    let my_instance = r["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["engine"] == "mysql")
        .unwrap();
    assert_eq!(my_instance["flavour"], "mariadb");
    assert!(
        my_instance["version_number"]
            .as_str()
            .unwrap()
            .starts_with("10."),
        "{my_instance}"
    );
    assert_eq!(
        my_instance["settings"]["log_bin"], "ON",
        "binary log is reported"
    );
}

#[test]
fn copies_weird_and_non_ascii_names_are_listed_and_classified() {
    let base = unique("shop");
    let copy = format!("{base}_bak_20260101");
    for instance in [pg(), my()] {
        let mut engine = connect(instance);
        for name in [base.as_str(), copy.as_str(), "we\"ird; db", "données_é"] {
            engine.create_database(name).unwrap();
        }
    }
    let run = run_module(
        "db_inventory",
        &json!({"endpoints": [endpoint(pg(), "pg"), endpoint(my(), "my")], "ledger_path": "/tmp/dbc-e2e-ledger.jsonl"}),
    );
    for id in ["pg", "my"] {
        let dbs = databases_of(&run.json, id);
        let find = |n: &str| {
            dbs.iter()
                .find(|d| d["name"] == n)
                .unwrap_or_else(|| panic!("{n} listed on {id}: {dbs:?}"))
        };
        assert_eq!(find(&copy)["copy"]["kind"], "backup");
        assert_eq!(find(&copy)["copy"]["original"], base.as_str());
        assert_eq!(find(&copy)["copy"]["original_present"], true);
        assert!(find(&base)["copy"].is_null());
        assert_eq!(find("we\"ird; db")["kind"], "user");
        assert_eq!(find("données_é")["kind"], "user");
        assert_eq!(
            find(&base)["env"],
            "development",
            "env comes from the endpoint label"
        );
        assert_eq!(find(&base)["env_source"], "label");
    }
    let pg_dbs = databases_of(&run.json, "pg");
    assert_eq!(
        pg_dbs.iter().find(|d| d["name"] == "template0").unwrap()["kind"],
        "template"
    );
    let my_dbs = databases_of(&run.json, "my");
    assert_eq!(
        my_dbs.iter().find(|d| d["name"] == "mysql").unwrap()["kind"],
        "system"
    );
}

#[test]
fn an_unreachable_endpoint_is_reported_while_the_others_succeed() {
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dead = endpoint(pg(), "pg-dead");
    dead["login_port"] = json!(free_port);
    let mut wrong_password = endpoint(my(), "my-badpass");
    wrong_password["login_password_file"] = Value::Null;
    wrong_password["login_password_env"] = json!("DBC_E2E_UNSET_VARIABLE");
    let run = run_module(
        "db_inventory",
        &json!({"endpoints": [endpoint(pg(), "pg-ok"), dead, wrong_password, endpoint(my(), "my-ok")], "ledger_path": "/tmp/dbc-e2e-ledger.jsonl"}),
    );
    let r = &run.json;
    assert_eq!(r["failed"], false, "{r}");
    assert_eq!(r["summary"]["instances"], 2);
    let unreachable = r["unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 2, "{unreachable:?}");
    let dead = unreachable
        .iter()
        .find(|u| u["endpoint"] == "pg-dead")
        .unwrap();
    assert!(
        dead["reason"].as_str().unwrap().contains("refused"),
        "{dead}"
    );
    assert_eq!(dead["address"], format!("127.0.0.1:{free_port}"));
    let bad = unreachable
        .iter()
        .find(|u| u["endpoint"] == "my-badpass")
        .unwrap();
    assert!(
        bad["reason"]
            .as_str()
            .unwrap()
            .contains("DBC_E2E_UNSET_VARIABLE"),
        "{bad}"
    );
}

#[test]
fn nothing_reachable_is_a_failure_naming_the_endpoints() {
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = run_module(
        "db_inventory",
        &json!({"engine": "mysql", "login_host": "127.0.0.1", "login_port": free_port, "name": "gone", "connect_timeout": 2, "ledger_path": "/tmp/dbc-e2e-ledger.jsonl"}),
    );
    assert_eq!(run.json["failed"], true);
    let msg = run.json["msg"].as_str().unwrap();
    assert!(
        msg.contains("gone") && msg.contains(&free_port.to_string()),
        "{msg}"
    );
    assert_eq!(run.code, 1);
}

#[test]
fn snapshot_check_mode_diff_and_idempotence() {
    // Other tests add databases to the shared lab: this one needs a fleet that holds still.
    let private = PrivateLab::start(1, 0, 0);
    let pg = private.instance("pg1");
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("fleet.json");
    let ledger = dir.path().join("ledger.jsonl");
    let metrics = dir.path().join("metrics");
    let args = |check: bool| {
        json!({
            "endpoints": [endpoint(pg, "pg")],
            "snapshot_path": snapshot, "ledger_path": ledger, "metrics_dir": metrics,
            "_ansible_check_mode": check, "_ansible_diff": true,
        })
    };
    let check = run_module("db_inventory", &args(true));
    assert_eq!(check.json["changed"], true, "{}", check.json);
    assert!(!snapshot.exists(), "check mode wrote nothing");
    assert!(
        check.json["diff"]["after"]
            .as_str()
            .unwrap()
            .contains("\"pg\"")
    );
    let first = run_module("db_inventory", &args(false));
    assert_eq!(first.json["changed"], true);
    assert!(snapshot.exists());
    let second = run_module("db_inventory", &args(false));
    assert_eq!(
        second.json["changed"], false,
        "a second identical run changes nothing"
    );
    assert!(second.json.get("diff").is_none());
    connect(pg).create_database("new_in_fleet").unwrap();
    let third = run_module("db_inventory", &args(false));
    assert_eq!(third.json["changed"], true, "a new database is a change");
    assert!(
        third.json["diff"]["after"]
            .as_str()
            .unwrap()
            .contains("new_in_fleet")
    );

    let records = dbcadence_core::ledger::Ledger::new(&ledger)
        .read()
        .unwrap()
        .records;
    assert_eq!(records.len(), 4, "one ledger record per run");
    assert!(records[0].check_mode && !records[1].check_mode);
    assert_eq!(records[1].task, dbcadence_core::task::Task::Inventory);
    let prom = std::fs::read_to_string(metrics.join("dbcadence.prom")).unwrap();
    assert!(prom.contains("dbcadence_task_last_success_timestamp_seconds{db=\"\",instance=\"fleet\",task=\"inventory\"}"), "{prom}");
    assert!(prom.contains("dbcadence_inventory_instances 1"), "{prom}");
    assert!(prom.contains("dbcadence_task_runs_total{db=\"\",instance=\"fleet\",outcome=\"ok\",task=\"inventory\"} 3"), "check-mode runs are not counted: {prom}");

    // A snapshot that cannot be read (not UTF-8: a disk error) is named, then rewritten.
    std::fs::write(&snapshot, b"\xff\xfe not text").unwrap();
    let unreadable = run_module("db_inventory", &args(false));
    assert_eq!(unreadable.json["failed"], false, "{}", unreadable.json);
    assert!(
        unreadable.json["warnings"]
            .to_string()
            .contains("could not be read"),
        "{}",
        unreadable.json
    );
    assert!(
        std::fs::read_to_string(&snapshot).is_ok(),
        "rewritten as text"
    );
}

#[test]
fn cli_prints_a_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let sources = dir.path().join("sources.yml");
    let doc = json!({"endpoints": [endpoint(pg(), "pg-cli"), endpoint(my(), "my-cli")]});
    std::fs::write(&sources, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let table = duct::cmd!(
        bin("dbcadence"),
        "inventory",
        "--sources",
        &sources,
        "--ledger",
        &ledger
    )
    .read()
    .unwrap();
    assert!(
        table.contains("INSTANCE") && table.contains("pg-cli") && table.contains("mariadb"),
        "{table}"
    );
    assert!(table.contains("2 instances"), "{table}");
    let text = duct::cmd!(
        bin("dbcadence"),
        "inventory",
        "--sources",
        &sources,
        "--format",
        "json",
        "--ledger",
        &ledger
    )
    .read()
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["summary"]["instances"], 2);
}

#[test]
fn a_streaming_replica_is_its_own_instance_with_the_replica_role() {
    // Same system identifier as its primary (a physical copy), other data directory and start:
    // never merged with the primary.
    let private = PrivateLab::start(1, 0, 1);
    let run = run_module(
        "db_inventory",
        &json!({
            "endpoints": [endpoint(private.instance("pg1"), "primary"), endpoint(private.instance("pg1r"), "replica")],
            "ledger_path": "/tmp/dbc-e2e-ledger.jsonl",
        }),
    );
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert_eq!(
        run.json["summary"]["instances"], 2,
        "{}",
        run.json["summary"]
    );
    let role = |id: &str| {
        let instances = run.json["instances"].as_array().unwrap();
        instances.iter().find(|i| i["id"] == id).unwrap()["role"].clone()
    };
    assert_eq!(role("primary"), "primary");
    assert_eq!(role("replica"), "replica");
    let identity = |id: &str| {
        let instances = run.json["instances"].as_array().unwrap();
        let text = instances.iter().find(|i| i["id"] == id).unwrap()["server_identity"]
            .as_str()
            .unwrap()
            .to_string();
        text.split(':').nth(1).unwrap().to_string()
    };
    assert_eq!(
        identity("primary"),
        identity("replica"),
        "a physical replica shares the system identifier"
    );
}
