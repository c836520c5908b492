//! db_change mirrored into Jira Service Management: a local receiver on 127.0.0.1 plays the
//! servicedeskapi and checks every call field by field (the request raised at creation, the
//! transitions looked up by name and taken, a comment where no transition is named, the
//! authentication header); the token never shows; a Jira that is down loses nothing, and the
//! next transition raises the request it could not.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use dbcadence_e2e::*;
use serde_json::{Value, json};

/// One call the receiver saw.
#[derive(Debug)]
struct Call {
    method: String,
    path: String,
    authorization: String,
    body: Value,
}

/// A servicedeskapi stand-in: raises DBA-7, offers three transitions, accepts the rest.
fn jira_receiver(listener: TcpListener) -> mpsc::Receiver<Call> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut words = request_line.split_whitespace();
            let method = words.next().unwrap_or("").to_string();
            let path = words.next().unwrap_or("").to_string();
            let (mut length, mut authorization) = (0, String::new());
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if lower.starts_with("authorization:") {
                    authorization = line["authorization:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer = match (method.as_str(), path.as_str()) {
                ("POST", "/rest/servicedeskapi/request") => json!({"issueKey": "DBA-7"}),
                ("GET", p) if p.ends_with("/transition") => json!({"values": [
                    {"id": "11", "name": "Approve"}, {"id": "21", "name": "Implement"},
                    {"id": "31", "name": "Close"}]}),
                _ => json!({}),
            }
            .to_string();
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let _ = tx.send(Call {
                method,
                path,
                authorization,
                body,
            });
        }
    });
    rx
}

const TOKEN: &str = "J1RA-t0k'en\"$#:\\x";

fn jira_config(port: u16) -> Value {
    json!({
        "url": format!("http://127.0.0.1:{port}/"), "service_desk_id": "4", "request_type_id": "52",
        "user": "alice@example.com", "token": TOKEN,
        "transitions": {"approved": "approve", "implementing": "Implement", "closed": "Close"},
    })
}

fn next(calls: &mpsc::Receiver<Call>) -> Call {
    calls
        .recv_timeout(Duration::from_secs(10))
        .expect("a call to Jira")
}

#[test]
fn a_change_lifecycle_is_mirrored_into_jira_service_management() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls = jira_receiver(listener);
    let now = jiff::Timestamp::now();
    let created = run_module(
        "db_change",
        &json!({
            "ledger_path": ledger, "jira": jira_config(port),
            "summary": "Patch pg1 to 15.20", "risk": "medium", "by": "alice",
            "window_start": (now - jiff::SignedDuration::from_hours(1)).to_string(),
            "window_end": (now + jiff::SignedDuration::from_hours(2)).to_string(),
            "hosts": ["pg1"], "tasks": ["patch"],
        }),
    );
    assert_eq!(created.json["failed"], false, "{}", created.json);
    assert_eq!(created.json["change"]["jira_key"], "DBA-7");
    let id = created.json["change"]["id"].as_str().unwrap().to_string();
    let raise = next(&calls);
    assert_eq!(
        (raise.method.as_str(), raise.path.as_str()),
        ("POST", "/rest/servicedeskapi/request")
    );
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("alice@example.com:{TOKEN}"));
    assert_eq!(raise.authorization, format!("Basic {basic}"));
    assert_eq!(raise.body["serviceDeskId"], "4");
    assert_eq!(raise.body["requestTypeId"], "52");
    assert_eq!(
        raise.body["requestFieldValues"]["summary"],
        format!("[{id}] Patch pg1 to 15.20")
    );
    let description = raise.body["requestFieldValues"]["description"]
        .as_str()
        .unwrap();
    for part in [
        "Risk: medium",
        "Hosts: pg1",
        "Tasks: patch",
        "Requested by: alice",
    ] {
        assert!(description.contains(part), "{description}");
    }
    assert!(
        calls.try_recv().is_err(),
        "a new request is not transitioned"
    );

    let transition = |to: &str, by: &str| {
        let moved = run_module(
            "db_change",
            &json!({"ledger_path": ledger, "jira": jira_config(port), "action": "transition",
                    "id": id, "to": to, "by": by, "note": format!("{to} it")}),
        );
        assert_eq!(moved.json["failed"], false, "{}", moved.json);
        assert_eq!(moved.json["warnings"], Value::Null, "{}", moved.json);
        assert!(!moved.stdout.contains("t0k"), "{}", moved.stdout);
    };
    // Mapped states: the transitions offered are read, the one named (any case) is taken.
    for (to, by, transition_id) in [("approved", "bob", "11"), ("implementing", "carol", "21")] {
        transition(to, by);
        let offered = next(&calls);
        assert_eq!(
            (offered.method.as_str(), offered.path.as_str()),
            ("GET", "/rest/servicedeskapi/request/DBA-7/transition")
        );
        let taken = next(&calls);
        assert_eq!(taken.path, "/rest/servicedeskapi/request/DBA-7/transition");
        assert_eq!(taken.body["id"], transition_id, "{:?}", taken.body);
        let comment = taken.body["additionalComment"]["body"].as_str().unwrap();
        assert!(
            comment.contains(&format!("is now {to} (by {by}): {to} it")),
            "{comment}"
        );
    }
    // A state with no transition named: an internal comment.
    transition("validated", "carol");
    let comment = next(&calls);
    assert_eq!(comment.path, "/rest/servicedeskapi/request/DBA-7/comment");
    assert_eq!(comment.body["public"], false);
    assert!(
        comment.body["body"]
            .as_str()
            .unwrap()
            .contains("is now validated")
    );

    let ledger_text = std::fs::read_to_string(&ledger).unwrap();
    assert!(ledger_text.contains("\"jira_key\":\"DBA-7\""));
    assert!(
        !ledger_text.contains("t0k"),
        "the token is not in the ledger"
    );
}

#[test]
fn a_jira_that_is_down_loses_nothing_and_the_next_transition_raises_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    // Reserve a port, let it go: nobody listens there until the receiver starts.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let now = jiff::Timestamp::now();
    let created = run_module(
        "db_change",
        &json!({
            "ledger_path": ledger, "jira": jira_config(port), "notify_timeout": 1,
            "summary": "x", "by": "alice",
            "window_start": (now - jiff::SignedDuration::from_hours(1)).to_string(),
            "window_end": (now + jiff::SignedDuration::from_hours(1)).to_string(),
        }),
    );
    assert_eq!(created.json["failed"], false, "{}", created.json);
    let warnings = created.json["warnings"].to_string();
    assert!(
        warnings.contains("Jira Service Management was not told"),
        "{warnings}"
    );
    assert!(warnings.contains(&format!("127.0.0.1:{port}")) && !warnings.contains("t0k"));
    assert_eq!(created.json["change"]["jira_key"], Value::Null);
    let id = created.json["change"]["id"].as_str().unwrap().to_string();

    // Jira is back: approving raises the request, then takes the transition.
    let calls = jira_receiver(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let approved = run_module(
        "db_change",
        &json!({"ledger_path": ledger, "jira": jira_config(port), "action": "transition",
                "id": id, "to": "approved", "by": "bob"}),
    );
    assert_eq!(approved.json["failed"], false, "{}", approved.json);
    assert_eq!(approved.json["change"]["jira_key"], "DBA-7");
    assert_eq!(next(&calls).path, "/rest/servicedeskapi/request");
    assert_eq!(next(&calls).method, "GET");
    assert_eq!(next(&calls).body["id"], "11");
}
