//! The shared connection arguments against real servers: ssl_mode and ca_cert, and a server
//! that accepts TCP connections but never answers (connect_timeout, probe_timeout).

use std::time::{Duration, Instant};

use dbcadence_core::connection::SslMode;
use dbcadence_core::engine;
use dbcadence_e2e::*;
use serde_json::json;

#[test]
fn tls_modes_are_honoured_on_both_engines() {
    for instance in [pg(), my()] {
        // The lab's own connection: verify-full against the lab CA.
        let mut verified = connect(instance);
        assert!(
            verified.server_facts().unwrap().tls_in_use,
            "{}: verify-full uses TLS",
            instance.name
        );
        assert!(verified.server_facts().unwrap().tls_available);

        let mut args = instance.connection().unwrap();
        args.ssl_mode = SslMode::Prefer;
        args.ca_cert = None;
        assert!(
            engine::connect(&args)
                .unwrap()
                .server_facts()
                .unwrap()
                .tls_in_use,
            "{}: prefer picks TLS when offered",
            instance.name
        );

        args.ssl_mode = SslMode::Disable;
        assert!(
            !engine::connect(&args)
                .unwrap()
                .server_facts()
                .unwrap()
                .tls_in_use,
            "{}: disable means clear text",
            instance.name
        );

        args.ssl_mode = SslMode::VerifyCa;
        let e = engine::connect(&args)
            .err()
            .expect("verify-ca without a CA is refused")
            .to_string();
        assert!(e.contains("needs ca_cert"), "{e}");
    }
}

#[test]
fn a_certificate_from_another_ca_is_refused_in_verify_modes() {
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other.pem");
    let key = dir.path().join("other.key");
    duct::cmd!(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=not the lab",
        "-keyout",
        &key,
        "-out",
        &other_ca
    )
    .stderr_null()
    .run()
    .unwrap();
    for instance in [pg(), my()] {
        let mut args = instance.connection().unwrap();
        args.ca_cert = Some(other_ca.clone());
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            args.ssl_mode = mode;
            let e = engine::connect(&args)
                .err()
                .unwrap_or_else(|| panic!("{}: {mode:?} accepted a foreign CA", instance.name))
                .to_string();
            assert!(
                e.to_lowercase().contains("certificate") || e.contains("TLS") || e.contains("ssl"),
                "{}: {e}",
                instance.name
            );
            assert!(
                e.contains("check ssl_mode and ca_cert"),
                "the hint says what to do: {e}"
            );
        }
        // require without a CA does not verify (libpq's meaning).
        args.ssl_mode = SslMode::Require;
        args.ca_cert = None;
        assert!(
            engine::connect(&args)
                .unwrap()
                .server_facts()
                .unwrap()
                .tls_in_use
        );
    }
}

#[test]
fn a_silent_server_is_cut_off_by_the_timeouts() {
    // Accepts connections (the kernel completes the handshake) but never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let run = run_module(
        "db_inventory",
        &json!({
            "endpoints": [
                {"name": "silent-pg", "engine": "postgresql", "login_host": "127.0.0.1", "login_port": port, "connect_timeout": 2},
                {"name": "silent-my", "engine": "mysql", "login_host": "127.0.0.1", "login_port": port, "connect_timeout": 2},
                endpoint(pg(), "pg-ok"),
            ],
            "probe_timeout": 3,
            "ledger_path": "/tmp/dbc-e2e-ledger.jsonl",
        }),
    );
    let elapsed = started.elapsed();
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert_eq!(run.json["summary"]["instances"], 1);
    let unreachable = run.json["unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 2, "{unreachable:?}");
    for u in unreachable {
        let reason = u["reason"].as_str().unwrap();
        assert!(
            reason.contains("timed out") || reason.contains("no answer within probe_timeout"),
            "{reason}"
        );
    }
    assert!(
        elapsed < Duration::from_secs(15),
        "the deadlines hold: {elapsed:?}"
    );
    drop(silent);
}
