//! Modules where they belong: lab test hosts in network namespaces, reached over SSH. A backup
//! and a verification run on the runner host (delegate_to), a server task runs on each
//! database host; the servers' own logs say where each connection came from. `lab down`
//! leaves no namespace, link, sshd or server behind.

use std::path::Path;

use dbcadence_core::lab::{self, LabRequest};
use dbcadence_e2e::*;

fn ansible_playbook(inventory: &Path, playbook: &Path) -> (bool, String) {
    ansible_playbook_with(inventory, playbook, &[], &[])
}

fn ansible_playbook_with(
    inventory: &Path,
    playbook: &Path,
    extra: &[String],
    env: &[(&str, String)],
) -> (bool, String) {
    let mut args = vec![
        "-i".to_string(),
        inventory.display().to_string(),
        playbook.display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    ansible("ansible-playbook", args, env)
}

/// Live processes whose command line mentions `needle` (zombies do not count).
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (text.contains(needle) && !status.contains("State:\tZ")).then_some(text)
        })
        .collect()
}

const PLAY: &str = r#"
- name: Backups on the runner, server tasks on the servers
  hosts: servers
  gather_facts: false
  vars:
    connection_args: &connection
      engine: "{{ dbcadence_engine }}"
      login_host: "{{ dbcadence_login_host }}"
      login_port: "{{ dbcadence_login_port }}"
      login_user: "{{ dbcadence_login_user }}"
      login_password: "{{ dbcadence_login_password }}"
      ssl_mode: verify-full
      ca_cert: "{{ dbcadence_ca_cert }}"
  tasks:
    - name: Back up from the runner into its backup directory
      dbcadence.maintenance.db_backup:
        <<: *connection
        database: app
        instance_id: "{{ inventory_hostname }}"
        backup_dir: "{{ runner_backups }}"
        ledger_path: "{{ runner_backups }}/ledger.jsonl"
      delegate_to: "{{ dbcadence_runner }}"
      register: backup

    - name: Verify on the runner
      dbcadence.maintenance.db_verify:
        backup_dir: "{{ runner_backups }}"
        backup: "{{ backup.path }}"
        ledger_path: "{{ runner_backups }}/ledger.jsonl"
      delegate_to: "{{ dbcadence_runner }}"
      register: verify

    - name: A server task on the server itself
      dbcadence.maintenance.db_audit:
        <<: *connection
        instance_id: "{{ inventory_hostname }}"
        ledger_path: "{{ runner_backups }}/server-tasks.jsonl"
      register: audit

    - name: Check the outcomes
      ansible.builtin.assert:
        that:
          - verify.verified
          - audit is not failed
"#;

#[test]
fn backups_run_on_the_runner_and_server_tasks_on_their_hosts_over_ssh() {
    let dir = tempfile::Builder::new()
        .prefix("dbc-hosts.")
        .tempdir_in("/tmp")
        .unwrap();
    let request = LabRequest {
        dir: dir.path().to_path_buf(),
        postgres: 1,
        mysql: 1,
        pg_replicas: 0,
        seed: true,
        tuned_for_loading: false,
        pg_bin_dir: None,
        hosts: 2,
        runner: true,
        monitoring: false,
        s3: false,
    };
    let lab = lab::up(&request).unwrap_or_else(|e| panic!("lab with hosts: {e}"));
    let result = std::panic::catch_unwind(|| {
        assert_eq!(lab.hosts.len(), 3);
        assert_eq!(lab.instances.len(), 4);
        let runner = lab.hosts.iter().find(|h| h.runner).unwrap();
        let backups = dir.path().join("runner-backups");
        let playbook = dir.path().join("placement.yml");
        std::fs::write(&playbook, PLAY).unwrap();
        let inventory = dir.path().join("inventory.yml");
        // The playbook's one extra variable goes through the inventory's group vars.
        let mut doc: serde_json::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&inventory).unwrap()).unwrap();
        doc["all"]["vars"]["runner_backups"] = backups.display().to_string().into();
        let module_cache = dir.path().join("module-cache");
        doc["all"]["vars"]["dbcadence_module_cache"] = module_cache.display().to_string().into();
        std::fs::write(&inventory, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
        let (ok, out) = ansible_playbook(&inventory, &playbook);
        assert!(ok && out.contains("failed=0"), "{out}");
        // Over SSH every module ran from the per-host module cache (the test hosts share this
        // machine's file system, so it is one directory): one binary per module, owner only.
        let mut cached: Vec<String> = std::fs::read_dir(&module_cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .map(|name| name.split('-').next().unwrap().to_string())
            .collect();
        cached.sort();
        assert_eq!(cached, ["db_audit", "db_backup", "db_verify"], "{out}");
        for instance in &lab.instances {
            // Delegated tasks name the runner they ran on.
            assert!(
                out.contains(&format!("[{} -> runner(", instance.name)),
                "{}: {out}",
                instance.name
            );
            assert!(!out.contains(&instance.password().unwrap()));
        }
        // Four backups, each verified, in the runner's backup directory.
        let listed = dbcadence_core::backup::list(&backups).unwrap();
        assert_eq!(listed.len(), 4, "{listed:?}");
        assert!(listed.iter().all(|b| b.verified), "{listed:?}");
        // PostgreSQL logs every connection with its client address: the dump came from the
        // runner, the audit from the server's own host.
        for instance in lab
            .instances
            .iter()
            .filter(|i| i.engine == dbcadence_core::connection::EngineKind::Postgresql)
        {
            let log = std::fs::read_to_string(&instance.log_file).unwrap();
            let from = |address: &str| {
                log.lines()
                    .filter(|l| l.contains(&format!("connection received: host={address}")))
                    .count()
            };
            assert!(from(&runner.address) >= 1, "{}: {log}", instance.name);
            assert!(from(&instance.host) >= 1, "{}: {log}", instance.name);
        }
        // The shipped collection (one multi-call binary, glibc 2.17 baseline, libc only),
        // installed by ansible-galaxy, runs on a test host over SSH: two modules, each
        // answering as itself, from one copy of the binary in the module cache.
        let shipped = install_dist_collection(&dir.path().join("dist"));
        let shipped_cache = dir.path().join("shipped-cache");
        let play = dir.path().join("shipped.yml");
        std::fs::write(
            &play,
            format!(
                r#"- hosts: {host}
  gather_facts: false
  tasks:
    - dbcadence.maintenance.db_change: {{no_such_option: 1}}
      register: change
      failed_when: false
    - dbcadence.maintenance.db_backup: {{no_such_option: 1}}
      register: backup
      failed_when: false
    - ansible.builtin.assert:
        that:
          - "change.msg is search('unsupported parameters. no_such_option')"
          - "change.msg is search('jira')"
          - "backup.msg is search('backup_dir')"
"#,
                host = lab.instances[0].name
            ),
        )
        .unwrap();
        let (ok, out) = ansible_playbook_with(
            &inventory,
            &play,
            &[
                "-e".into(),
                format!("dbcadence_module_cache={}", shipped_cache.display()),
            ],
            &[("ANSIBLE_COLLECTIONS_PATH", shipped.display().to_string())],
        );
        assert!(ok && out.contains("failed=0"), "{out}");
        let cached: Vec<String> = std::fs::read_dir(&shipped_cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            cached.len() == 1 && cached[0].starts_with("dbcadence-modules-"),
            "{cached:?}"
        );
        // The shipped backup playbook through the inventory script: the lab's sources say
        // where each server is (its host over SSH) and name the runner, which keeps and
        // verifies every database's backup.
        let shipped = dir.path().join("shipped-backups");
        let ledger = shipped.join("ledger.jsonl");
        let (ok, out) = ansible_playbook_with(
            &workspace_root().join("ansible/inventory/dbcadence_inventory.sh"),
            &workspace_root().join("playbooks/backup.yml"),
            &[
                "-e".into(),
                serde_json::json!({
                    "dbcadence_backup_dir": shipped,
                    "dbcadence_environment": {"DBCADENCE_LEDGER": ledger},
                })
                .to_string(),
            ],
            &[(
                "DBCADENCE_SOURCES",
                dir.path().join("sources.yml").display().to_string(),
            )],
        );
        assert!(ok && out.contains("failed=0"), "{out}");
        assert!(out.contains("[host1-pg1.app -> runner("), "{out}");
        // app and its dated copy on each of the four servers.
        let listed = dbcadence_core::backup::list(&shipped).unwrap();
        assert_eq!(listed.len(), 8, "{listed:?}");
        assert!(listed.iter().all(|b| b.verified), "{listed:?}");
        let records = std::fs::read_to_string(&ledger).unwrap();
        for task in ["backup", "verify"] {
            let count = records
                .lines()
                .filter(|l| l.contains(&format!("\"task\":\"{task}\"")))
                .count();
            assert_eq!(count, 8, "{task}: {records}");
        }
    });
    let lines = lab::down(dir.path(), false).unwrap();
    assert!(
        lines.iter().any(|l| l.contains("runner: removed")),
        "{lines:?}"
    );
    // Nothing is left: namespaces, links, sshd, servers.
    let left = lab::hosts::leftovers(&lab.hosts, lab.network.as_ref());
    assert!(left.is_empty(), "{left:?}");
    let running = processes_mentioning(&dir.path().display().to_string());
    assert!(running.is_empty(), "{running:?}");
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
