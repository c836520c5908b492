//! AWX content: the execution environment (ansible-builder), the project's collection
//! requirements and the controller configuration (job templates, surveys, workflow, schedules).

use std::collections::BTreeSet;

use dbcadence_e2e::*;
use serde_yaml_ng::Value;

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn names(doc: &Value, key: &str) -> BTreeSet<String> {
    doc[key]
        .as_sequence()
        .unwrap_or_else(|| panic!("{key} missing"))
        .iter()
        .map(|item| item["name"].as_str().unwrap().to_string())
        .collect()
}

/// Every variable a playbook or a role reads, as text to search (playbooks, their task files,
/// role defaults and argument specs).
fn ansible_text() -> String {
    let mut text = String::new();
    for dir in ["playbooks", "playbooks/tasks"] {
        for entry in std::fs::read_dir(workspace_root().join(dir))
            .unwrap()
            .flatten()
        {
            if entry.path().extension().is_some_and(|e| e == "yml") {
                text += &std::fs::read_to_string(entry.path()).unwrap();
            }
        }
    }
    for role in std::fs::read_dir(workspace_root().join("ansible/roles"))
        .unwrap()
        .flatten()
    {
        for file in ["defaults/main.yml", "meta/argument_specs.yml"] {
            text += &std::fs::read_to_string(role.path().join(file)).unwrap_or_default();
        }
    }
    text
}

#[test]
fn the_controller_configuration_refers_only_to_what_exists() {
    let doc = yaml("awx/controller.yml");
    let templates = names(&doc, "controller_templates");
    let workflows = names(&doc, "controller_workflows");
    let environments = names(&doc, "controller_execution_environments");
    let projects = names(&doc, "controller_projects");
    let inventories = names(&doc, "controller_inventories");
    assert!(templates.len() >= 9, "{templates:?}");
    let text = ansible_text();
    for template in doc["controller_templates"].as_sequence().unwrap() {
        let name = template["name"].as_str().unwrap();
        let playbook = template["playbook"].as_str().unwrap();
        assert!(
            workspace_root().join(playbook).is_file(),
            "{name}: {playbook}"
        );
        assert!(environments.contains(template["execution_environment"].as_str().unwrap()));
        assert!(
            projects.contains(template["project"].as_str().unwrap()),
            "{name}"
        );
        assert!(
            inventories.contains(template["inventory"].as_str().unwrap()),
            "{name}"
        );
        // A survey asks only for variables the playbooks or roles read.
        for question in template["survey_spec"]["spec"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            let variable = question["variable"].as_str().unwrap();
            assert!(
                text.contains(variable),
                "{name}: survey variable {variable} is read nowhere"
            );
        }
    }
    for playbook in [
        "playbooks/maintenance_cycle.yml",
        "playbooks/backup.yml",
        "playbooks/patch.yml",
    ] {
        assert!(
            doc["controller_templates"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|t| t["playbook"].as_str() == Some(playbook)),
            "no template runs {playbook}"
        );
    }
    for workflow in doc["controller_workflows"].as_sequence().unwrap() {
        let nodes = workflow["simplified_workflow_nodes"].as_sequence().unwrap();
        let ids: BTreeSet<&str> = nodes
            .iter()
            .map(|n| n["identifier"].as_str().unwrap())
            .collect();
        for node in nodes {
            if let Some(template) = node["unified_job_template"].as_str() {
                assert!(templates.contains(template), "workflow node {template}");
            }
            for edge in ["success_nodes", "failure_nodes", "always_nodes"] {
                for next in node[edge].as_sequence().into_iter().flatten() {
                    assert!(ids.contains(next.as_str().unwrap()), "{edge}: {next:?}");
                }
            }
        }
    }
    for schedule in doc["controller_schedules"].as_sequence().unwrap() {
        let target = schedule["unified_job_template"].as_str().unwrap();
        assert!(
            templates.contains(target) || workflows.contains(target),
            "{target}"
        );
        assert!(schedule["rrule"].as_str().unwrap().contains("RRULE:FREQ="));
    }
    for source in doc["controller_inventory_sources"].as_sequence().unwrap() {
        let path = source["source_path"].as_str().unwrap();
        assert!(workspace_root().join(path).is_file(), "{path}");
    }
    let requirements = yaml("collections/requirements.yml");
    assert_eq!(
        requirements["collections"][0]["name"].as_str(),
        Some("dbcadence.maintenance")
    );
}

#[test]
fn ansible_builder_creates_a_context_with_the_collection_the_command_and_the_client_tools() {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context");
    let out = duct::cmd!(
        venv_bin("ansible-builder"),
        "create",
        "-f",
        "execution-environment.yml",
        "-c",
        &context
    )
    .dir(workspace_root())
    .stderr_to_stdout()
    .unchecked()
    .run()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let build = context.join("_build");
    assert!(
        build
            .join("collections/dbcadence-maintenance-0.1.0.tar.gz")
            .is_file()
    );
    assert!(build.join("bin/dbcadence").is_file());
    let containerfile = ["Containerfile", "Dockerfile"]
        .iter()
        .map(|f| context.join(f))
        .find(|p| p.exists())
        .expect("a Containerfile");
    let containerfile = std::fs::read_to_string(containerfile).unwrap();
    for expected in [
        "ansible-core==2.19.14",
        "ansible-galaxy collection install",
        "COPY _build/bin/dbcadence /usr/local/bin/dbcadence",
    ] {
        assert!(
            containerfile.contains(expected),
            "{expected}:\n{containerfile}"
        );
    }
    assert!(
        std::fs::read_to_string(build.join("requirements.yml"))
            .unwrap()
            .contains("collections/dbcadence-maintenance-0.1.0.tar.gz")
    );
    // The build's introspection of the installed collection adds the client tools its
    // meta/bindep.txt names (as in the image's builder stage).
    let installed = install_dist_collection(&dir.path().join("collections"));
    let bindep = dir.path().join("bindep.txt");
    let out = duct::cmd!(
        "python3",
        build.join("scripts/introspect.py"),
        "introspect",
        &installed,
        "--user-bindep",
        build.join("bindep.txt"),
        "--write-bindep",
        &bindep
    )
    .stderr_to_stdout()
    .unchecked()
    .run()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let bindep = std::fs::read_to_string(&bindep).unwrap();
    for tool in ["postgresql-client", "mariadb-client", "zstd"] {
        assert!(bindep.contains(tool), "{tool}:\n{bindep}");
    }
}
