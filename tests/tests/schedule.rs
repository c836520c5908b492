//! `dbcadence schedule`: the shipped templates validate, broken files are refused key by key.

use dbcadence_e2e::*;

#[test]
fn validate_init_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = dir.path().join("schedule.yml");
    let text = duct::cmd!(bin("dbcadence"), "schedule", "init")
        .read()
        .unwrap();
    std::fs::write(&shipped, &text).unwrap();
    let ok = duct::cmd!(bin("dbcadence"), "schedule", "validate", &shipped)
        .read()
        .unwrap();
    assert!(ok.contains("valid (6 templates"), "{ok}");

    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        text.replace("cron: \"0 1 * * *\"", "cron: \"0 25 * * *\"")
            .replace("time_zone: UTC}", "time_zone: Atlantis/Nowhere}"),
    )
    .unwrap();
    let out = duct::cmd!(bin("dbcadence"), "schedule", "validate", &broken)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("templates[0].tasks[0].cron: '0 25 * * *' is not a cron expression"),
        "{text}"
    );
    assert!(
        text.contains(
            "templates[0].tasks[0].window.time_zone: 'Atlantis/Nowhere' is not a known time zone"
        ),
        "{text}"
    );

    let schema: serde_json::Value = serde_json::from_str(
        &duct::cmd!(bin("dbcadence"), "schedule", "schema")
            .read()
            .unwrap(),
    )
    .unwrap();
    assert!(schema["properties"]["templates"].is_object(), "{schema}");
}
