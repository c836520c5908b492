//! The module protocol through a real module binary: what Ansible sees for bad input, check
//! mode and secrets. (A forced panic is tested in dbcadence-protocol with a panicking module.)

use dbcadence_e2e::*;
use serde_json::json;

const SECRET: &str = "Sup3r-Secret-Pw-e2e";

#[test]
fn bad_json_missing_file_and_invalid_utf8_each_give_one_failure_object() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"sources\": ").unwrap();
    let run = run_module_file("db_inventory", &bad);
    assert_eq!(run.json["failed"], true);
    assert!(
        run.json["msg"].as_str().unwrap().contains("not valid JSON"),
        "{}",
        run.json
    );
    assert!(run.stderr.is_empty(), "nothing on stderr: {}", run.stderr);

    let run = run_module_file("db_inventory", &dir.path().join("missing.json"));
    assert_eq!(run.json["failed"], true);
    assert!(
        run.json["msg"].as_str().unwrap().contains("missing.json"),
        "{}",
        run.json
    );

    let latin1 = dir.path().join("latin1.json");
    std::fs::write(&latin1, b"{\"name\": \"caf\xe9\"}").unwrap();
    let run = run_module_file("db_inventory", &latin1);
    assert!(
        run.json["msg"].as_str().unwrap().contains("UTF-8"),
        "{}",
        run.json
    );
}

#[test]
fn unknown_wrong_type_and_missing_required_arguments_are_named() {
    let run = run_module("db_inventory", &json!({"sorces": "/x.yml"}));
    let msg = run.json["msg"].as_str().unwrap();
    assert!(msg.contains("unsupported parameters: sorces"), "{msg}");
    assert!(
        msg.contains("sources") && msg.contains("login_password"),
        "accepted ones are listed: {msg}"
    );

    let run = run_module(
        "db_inventory",
        &json!({"engine": "postgresql", "login_port": "five"}),
    );
    assert!(
        run.json["msg"]
            .as_str()
            .unwrap()
            .contains("argument 'login_port' must be an integer"),
        "{}",
        run.json
    );

    let run = run_module("db_inventory", &json!({"engine": "oracle"}));
    assert!(
        run.json["msg"]
            .as_str()
            .unwrap()
            .contains("must be one of: postgresql, mysql"),
        "{}",
        run.json
    );

    let run = run_module("db_inventory", &json!({"endpoints": [{"name": "x"}]}));
    assert!(
        run.json["msg"]
            .as_str()
            .unwrap()
            .contains("missing required arguments: endpoints[0].engine"),
        "{}",
        run.json
    );
    assert_eq!(run.code, 1);
}

#[test]
fn ansible_string_forms_are_accepted() {
    let instance = pg();
    let run = run_module(
        "db_inventory",
        &json!({
            "engine": "postgresql", "login_host": "127.0.0.1", "login_port": instance.port.to_string(),
            "login_user": instance.user, "login_password": instance.password().unwrap(),
            "concurrency": "2", "fail_on_unreachable": "no", "ledger_path": "/tmp/dbc-e2e-ledger.jsonl",
        }),
    );
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert_eq!(run.json["summary"]["instances"], 1);
}

#[test]
fn a_wrong_password_is_never_echoed_and_the_right_one_neither() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let metrics = dir.path().join("metrics");
    let instance = my();
    // Wrong password: the failure message must not carry it.
    let run = run_module(
        "db_inventory",
        &json!({"engine": "mysql", "login_host": "127.0.0.1", "login_port": instance.port, "login_user": instance.user,
                "login_password": SECRET, "ledger_path": ledger, "metrics_dir": metrics, "_ansible_inject_invocation": true}),
    );
    assert_eq!(run.json["failed"], true);
    assert!(
        run.json["msg"].as_str().unwrap().contains("Access denied"),
        "{}",
        run.json
    );
    assert!(!run.stdout.contains(SECRET), "{}", run.stdout);
    // Right password, with invocation requested: masked.
    let password = instance.password().unwrap();
    let run = run_module(
        "db_inventory",
        &json!({"engine": "mysql", "login_host": "127.0.0.1", "login_port": instance.port, "login_user": instance.user,
                "login_password": password, "ledger_path": ledger, "metrics_dir": metrics, "_ansible_inject_invocation": true,
                "_ansible_verbosity": 4}),
    );
    assert_eq!(run.json["failed"], false, "{}", run.json);
    assert_eq!(
        run.json["invocation"]["module_args"]["login_password"],
        "********"
    );
    for (what, text) in [
        ("stdout", run.stdout.clone()),
        ("stderr", run.stderr.clone()),
        ("ledger", std::fs::read_to_string(&ledger).unwrap()),
        (
            "metrics",
            std::fs::read_to_string(metrics.join("dbcadence.prom")).unwrap(),
        ),
    ] {
        assert!(
            !text.contains(&password) && !text.contains(SECRET),
            "secret found in {what}: {text}"
        );
    }
}

#[test]
fn every_module_documents_itself_and_the_sidecars_are_current() {
    let dir = workspace_root().join("crates/modules/src/bin");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if !name.starts_with("db_") {
            continue; // dbcadence-modules: every module in one binary, run as each below
        }
        // The multi-call binary holds this module too.
        let args = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            args.path(),
            format!(
                r#"{{"_ansible_module_name": "dbcadence.maintenance.{name}", "no_such_option": 1}}"#
            ),
        )
        .unwrap();
        let answer = duct::cmd!(bin("dbcadence-modules"), args.path())
            .unchecked()
            .read()
            .unwrap();
        assert!(
            answer.contains("unsupported parameters: no_such_option")
                && !answer.contains("holds the modules"),
            "dbcadence-modules does not run {name}: {answer}"
        );
        let generated = duct::cmd!(bin(&name), "--doc").read().unwrap() + "\n";
        let sidecar = workspace_root()
            .join("ansible/plugins/modules")
            .join(format!("{name}.yml"));
        let committed = std::fs::read_to_string(&sidecar).unwrap_or_default();
        assert!(
            generated == committed,
            "{} is stale: run `cargo xtask docs`",
            sidecar.display()
        );
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&generated).unwrap();
        assert_eq!(doc["DOCUMENTATION"]["module"].as_str(), Some(name.as_str()));
        // The docs tell the truth: every option and return value described, support stated
        // per module, requirements named, paths typed as paths.
        assert!(
            !generated.contains("Undocumented."),
            "{name}: an option or return value has no doc comment"
        );
        for attribute in ["check_mode", "diff_mode"] {
            let support = doc["DOCUMENTATION"]["attributes"][attribute]["support"]
                .as_str()
                .unwrap_or_default();
            assert!(
                ["full", "partial", "none"].contains(&support),
                "{name}: {attribute} support '{support}'"
            );
            if support == "partial" {
                assert!(
                    doc["DOCUMENTATION"]["attributes"][attribute]["details"].is_string(),
                    "{name}: a partial {attribute} says what is and is not supported"
                );
            }
        }
        assert!(
            doc["DOCUMENTATION"]["requirements"]
                .as_sequence()
                .is_some_and(|r| !r.is_empty()),
            "{name}: requirements"
        );
        for (option, spec) in doc["DOCUMENTATION"]["options"].as_mapping().unwrap() {
            let option = option.as_str().unwrap();
            if option.ends_with("_dir") || option.ends_with("_path") || option.ends_with("_file") {
                assert_eq!(spec["type"].as_str(), Some("path"), "{name}: {option}");
            }
        }
        // The fragments it extends exist and are current.
        let fragments: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&duct::cmd!(bin(&name), "--doc-fragments").read().unwrap())
                .unwrap();
        for (file, text) in fragments {
            let path = workspace_root()
                .join("ansible/plugins/doc_fragments")
                .join(&file);
            assert_eq!(
                std::fs::read_to_string(&path).unwrap_or_default(),
                text,
                "{} is stale: run `cargo xtask docs`",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} modules checked");
}
