//! db_change: a whole lifecycle whose webhook posts a local receiver checks field by field, an
//! illegal transition refused, a receiver that is down losing nothing, the token never shown,
//! the approval gate of db_tune, and the CMDB export.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use dbcadence_e2e::*;
use serde_json::{Value, json};

/// An HTTP receiver on 127.0.0.1 that answers 200 and hands each request's path and JSON
/// body over.
fn receiver() -> (u16, mpsc::Receiver<(String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut stream = stream;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .unwrap();
            let _ = tx.send((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
        }
    });
    (port, rx)
}

fn change(args: Value) -> ModuleRun {
    run_module("db_change", &args)
}

#[test]
fn a_lifecycle_is_recorded_and_announced_and_the_token_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let (port, posts) = receiver();
    let hook = format!("http://127.0.0.1:{port}/hooks/T0KEN-s3cret");
    let now = jiff::Timestamp::now();
    let base = json!({"ledger_path": ledger, "webhooks": [hook]});
    let with = |extra: Value| {
        let mut v = base.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let created = change(with(json!({
        "summary": "Tune \"orders\"; then check", "risk": "medium", "by": "alice",
        "window_start": (now - jiff::SignedDuration::from_hours(1)).to_string(),
        "window_end": (now + jiff::SignedDuration::from_hours(2)).to_string(),
        "hosts": ["pg1.orders"], "tasks": ["tune"],
    })));
    assert_eq!(created.json["failed"], false, "{}", created.json);
    let id = created.json["change"]["id"].as_str().unwrap().to_string();
    assert_eq!(created.json["change"]["state"], "requested");
    let (path, body) = posts
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(path, "/hooks/T0KEN-s3cret");
    assert_eq!(body["dbcadence_change"]["id"], id.as_str());
    assert_eq!(body["dbcadence_change"]["state"], "requested");
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("Tune \"orders\"; then check"),
        "{body}"
    );

    // The requester cannot approve; an illegal move names the allowed ones.
    let refused = change(with(
        json!({"action": "transition", "id": id, "to": "validated", "by": "bob"}),
    ));
    assert_eq!(refused.json["failed"], true);
    assert!(
        refused.json["msg"]
            .as_str()
            .unwrap()
            .contains("approved or closed"),
        "{}",
        refused.json
    );
    let self_approved = change(with(
        json!({"action": "transition", "id": id, "to": "approved", "by": "alice"}),
    ));
    assert_eq!(self_approved.json["failed"], true);

    for (to, by) in [
        ("approved", "bob"),
        ("implementing", "carol"),
        ("validated", "carol"),
        ("closed", "bob"),
    ] {
        let mut args = with(json!({"action": "transition", "id": id, "to": to, "by": by}));
        if to == "validated" {
            args["validation"] = json!({"smoke_query": "ok", "p50_ms": 0.2});
        }
        let moved = change(args);
        assert_eq!(moved.json["failed"], false, "{}", moved.json);
        assert_eq!(moved.json["changed"], true);
        let (_, body) = posts
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        assert_eq!(body["dbcadence_change"]["state"], to, "{body}");
        assert_eq!(
            body["dbcadence_change"]["history"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()["by"],
            by
        );
        assert!(!moved.stdout.contains("T0KEN"), "{}", moved.stdout);
    }
    // Again: already closed, nothing to do, not a failure.
    let again = change(with(
        json!({"action": "transition", "id": id, "to": "closed", "by": "bob"}),
    ));
    assert_eq!(
        (again.json["failed"].clone(), again.json["changed"].clone()),
        (json!(false), json!(false))
    );
    let shown = change(json!({"action": "show", "id": id, "ledger_path": ledger}));
    let record = &shown.json["change"];
    assert_eq!(record["approver"], "bob");
    assert_eq!(record["validation"]["smoke_query"], "ok");
    assert_eq!(record["history"].as_array().unwrap().len(), 5);
    let text = std::fs::read_to_string(&ledger).unwrap();
    assert!(
        !text.contains("T0KEN"),
        "the webhook's token is not in the ledger"
    );

    // The CMDB export.
    let csv = dir.path().join("changes.csv");
    let exported = change(json!({"action": "export", "export_path": csv, "ledger_path": ledger}));
    assert_eq!(exported.json["exported"], 1, "{}", exported.json);
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(
        rows.lines()
            .nth(1)
            .unwrap()
            .contains("\"Tune \"\"orders\"\"; then check\""),
        "{rows}"
    );
    assert!(rows.contains("\"closed\""));
}

#[test]
fn a_receiver_that_is_down_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let created = change(json!({
        "ledger_path": ledger, "webhooks": [format!("http://127.0.0.1:{port}/hooks/T0KEN")],
        "summary": "x", "window_start": "2026-01-01T00:00:00Z", "window_end": "2026-01-02T00:00:00Z",
        "notify_timeout": 1,
    }));
    assert_eq!(created.json["failed"], false, "{}", created.json);
    let warnings = created.json["warnings"].to_string();
    assert!(
        warnings.contains(&format!("127.0.0.1:{port}")) && warnings.contains("recorded"),
        "{warnings}"
    );
    assert!(!created.stdout.contains("T0KEN"));
    let id = created.json["change"]["id"].as_str().unwrap();
    let shown = change(json!({"action": "show", "id": id, "ledger_path": ledger}));
    assert_eq!(shown.json["change"]["state"], "requested");
}

#[test]
fn tuning_a_production_host_needs_an_approved_change_whose_window_is_now() {
    let instance = pg();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let db = unique("gated");
    let mut engine = connect(instance);
    engine.create_database(&db).unwrap();
    engine
        .execute_in(
            Some(&db),
            "CREATE TABLE t (id int PRIMARY KEY) WITH (autovacuum_enabled = false); INSERT INTO t SELECT generate_series(1, 100)",
        )
        .unwrap();
    drop(engine);
    // Never analyzed: db_tune has an ANALYZE to apply, so the gate is reached.
    let modified = |n: &str| {
        wait_until(10, "the statistics to count the rows", || {
            query(
                instance,
                &db,
                "SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 't'",
            )[0][0]
                .as_deref()
                == Some(n)
        })
    };
    modified("100");
    let mut tune = json!({
        "engine": "postgresql", "login_host": instance.host, "login_port": instance.port,
        "login_user": instance.user, "login_password": instance.password().unwrap(),
        "ssl_mode": "verify-full", "ca_cert": instance.ca_cert, "database": db,
        "instance_id": "pg1", "ledger_path": ledger, "require_change": true,
    });
    let none = run_module("db_tune", &tune);
    assert_eq!(none.json["failed"], true, "{}", none.json);
    assert!(
        none.json["msg"]
            .as_str()
            .unwrap()
            .contains("approved change record"),
        "{}",
        none.json
    );
    let now = jiff::Timestamp::now();
    let window = |from: i64, to: i64| {
        json!({
            "ledger_path": ledger, "summary": "tune", "by": "alice",
            "window_start": (now + jiff::SignedDuration::from_hours(from)).to_string(),
            "window_end": (now + jiff::SignedDuration::from_hours(to)).to_string(),
        })
    };
    let requested = change(window(-1, 1));
    let id = requested.json["change"]["id"].as_str().unwrap().to_string();
    tune["change_id"] = json!(id);
    let unapproved = run_module("db_tune", &tune);
    assert!(
        unapproved.json["msg"]
            .as_str()
            .unwrap()
            .contains("not approved"),
        "{}",
        unapproved.json
    );
    change(
        json!({"ledger_path": ledger, "action": "transition", "id": id, "to": "approved", "by": "bob"}),
    );
    let approved = run_module("db_tune", &tune);
    assert_eq!(approved.json["failed"], false, "{}", approved.json);
    // Approved, but for tomorrow.
    let later = change(window(20, 22));
    let later_id = later.json["change"]["id"].as_str().unwrap().to_string();
    change(
        json!({"ledger_path": ledger, "action": "transition", "id": later_id, "to": "approved", "by": "bob"}),
    );
    tune["change_id"] = json!(later_id);
    // Something to apply again, so that the gate is reached.
    connect(instance)
        .execute_in(Some(&db), "INSERT INTO t SELECT generate_series(101, 2000)")
        .unwrap();
    modified("1900");
    let outside = run_module("db_tune", &tune);
    assert_eq!(outside.json["failed"], true, "{}", outside.json);
    assert!(
        outside.json["msg"].as_str().unwrap().contains("not now"),
        "{}",
        outside.json
    );
    connect(instance).drop_database(&db).unwrap();
}

#[test]
fn the_cli_moves_a_change_and_refuses_an_illegal_move() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let cli = |args: &[&str]| {
        let out = duct::cmd(bin("dbcadence"), args)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ledger_arg = ledger.display().to_string();
    let (ok, out, err) = cli(&[
        "change",
        "create",
        "--summary",
        "rotate logs",
        "--window-start",
        "2026-01-01T00:00:00Z",
        "--window-end",
        "2026-01-02T00:00:00Z",
        "--by",
        "alice",
        "--task",
        "logs",
        "--host",
        "my1",
        "--id",
        "CHG-42",
        "--ledger",
        &ledger_arg,
    ]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = cli(&[
        "change",
        "move",
        "--id",
        "CHG-42",
        "--to",
        "closed",
        "--by",
        "bob",
        "--ledger",
        &ledger_arg,
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&[
        "change",
        "move",
        "--id",
        "CHG-42",
        "--to",
        "approved",
        "--by",
        "bob",
        "--ledger",
        &ledger_arg,
    ]);
    assert!(!ok && err.contains("nothing (closed)"), "{err}");
    let (ok, out, _) = cli(&["change", "show", "--id", "CHG-42", "--ledger", &ledger_arg]);
    assert!(ok);
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(record["change"]["state"], "closed");
    assert_eq!(record["change"]["tasks"], json!(["logs"]));
}
