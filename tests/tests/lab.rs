//! The lab itself: a server that cannot start yields an error quoting its own log; status and
//! down are idempotent.

use dbcadence_core::lab::{self, LabRequest};

#[test]
fn a_server_that_cannot_start_quotes_its_log_and_down_is_idempotent() {
    let dir = tempfile::Builder::new()
        .prefix("dbc-labt.")
        .tempdir_in("/tmp")
        .unwrap();
    let request = LabRequest {
        dir: dir.path().to_path_buf(),
        postgres: 1,
        mysql: 0,
        pg_replicas: 0,
        seed: false,
        tuned_for_loading: false,
        pg_bin_dir: None,
        hosts: 0,
        runner: false,
        monitoring: false,
        s3: false,
    };
    let lab = lab::up(&request).unwrap();
    let pg = lab.instance("pg1").unwrap().clone();
    assert!(pg.running());
    assert!(dir.path().join("inventory.yml").exists() && dir.path().join("sources.yml").exists());
    // The lab's inventory uses the group names of the inventory script and of schedule
    // assignments (env_development, not development).
    let inventory: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(dir.path().join("inventory.yml")).unwrap(),
    )
    .unwrap();
    let children = &inventory["all"]["children"];
    for group in [
        "postgresql",
        "env_development",
        "instance_pg1",
        "tier_bronze",
    ] {
        assert!(
            children[group]["hosts"]["pg1"].is_null() && children.get(group).is_some(),
            "{group} in {children:?}"
        );
    }
    assert!(children.get("development").is_none(), "{children:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&pg.password_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "password files are private");

    let lines = lab::down(dir.path(), false).unwrap();
    assert!(
        lines.iter().any(|l| l.contains("pg1: stopped")),
        "{lines:?}"
    );
    assert!(!pg.running());
    let again = lab::down(dir.path(), false).unwrap();
    assert!(
        again.iter().any(|l| l.contains("pg1: not running")),
        "{again:?}"
    );

    // Occupy its port: the restart must fail and say why, in the server's own words.
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", pg.port)).unwrap();
    let error = lab::up(&request).unwrap_err().to_string();
    assert!(error.contains("server.log"), "{error}");
    assert!(
        error.contains("could not bind") || error.contains("Address already in use"),
        "{error}"
    );
    assert!(!lab::status(dir.path()).unwrap()[0].running);
    lab::down(dir.path(), true).unwrap();
    assert!(!dir.path().exists());
}
