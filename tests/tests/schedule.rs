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
        text.contains("templates[0].tasks[0].cron: '25' is outside the hour field (0-23)"),
        "{text}"
    );
    assert!(
        text.contains(
            "templates[0].tasks[0].window.time_zone: 'Atlantis/Nowhere' is not a known time zone"
        ),
        "{text}"
    );

    // One calendar: what cron and systemd read differently is refused here, with the reason,
    // instead of being validated and then run (or counted) another way.
    let ambiguous = dir.path().join("ambiguous.yml");
    std::fs::write(
        &ambiguous,
        "templates:\n  - name: a\n    tasks:\n      - {task: backup, cron: '0 2 1 * 1', grace: 1h}\n      - {task: verify, cron: '0 3 * * MON', grace: 1h}\n      - {task: inventory, every: 90m, grace: 1h}\n      - {task: tune, cron: '0 4 30 2 *', grace: 1h}\n",
    )
    .unwrap();
    let out = duct::cmd!(bin("dbcadence"), "schedule", "validate", &ambiguous)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "templates[0].tasks[0].cron: '0 2 1 * 1' restricts both day-of-month and day-of-week",
        "templates[0].tasks[1].cron: 'MON' in the day-of-week field is a name",
        "templates[0].tasks[2].every: '90m': no calendar can fire on it",
        "templates[0].tasks[3].cron: '0 4 30 2 *' never fires",
    ] {
        assert!(text.contains(expected), "missing '{expected}' in:\n{text}");
    }

    let schema: serde_json::Value = serde_json::from_str(
        &duct::cmd!(bin("dbcadence"), "schedule", "schema")
            .read()
            .unwrap(),
    )
    .unwrap();
    assert!(schema["properties"]["templates"].is_object(), "{schema}");
}
