//! What the lab writes for its users: lab.json, an Ansible inventory with the inventory
//! script's group names, and a sources file for `dbcadence inventory`.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::{Error, Result};

pub(super) fn write_files(lab: &Lab) -> Result<()> {
    let dir = &lab.dir;
    write_lab_json(lab)?;
    let yaml = |v: &serde_json::Value| {
        serde_yaml_ng::to_string(v).map_err(|e| Error::invalid("lab YAML", e.to_string()))
    };
    crate::files::write_atomically(
        &dir.join("inventory.yml"),
        yaml(&ansible_inventory(lab))?.as_bytes(),
        crate::files::PUBLIC_FILE,
    )?;
    crate::files::write_atomically(
        &dir.join("sources.yml"),
        yaml(&sources(lab))?.as_bytes(),
        crate::files::PUBLIC_FILE,
    )?;
    Ok(())
}

pub(super) fn write_lab_json(lab: &Lab) -> Result<()> {
    let json =
        serde_json::to_vec_pretty(lab).map_err(|e| Error::invalid("lab.json", e.to_string()))?;
    crate::files::write_atomically(&lab.dir.join("lab.json"), &json, crate::files::PUBLIC_FILE)
}

/// How Ansible reaches a test host: SSH as root with the lab key, its host key checked
/// against the lab's known_hosts.
fn ssh_vars(lab: &Lab, host: &hosts::LabHost) -> serde_json::Value {
    let ssh = lab.dir.join("ssh");
    json!({
        "ansible_connection": "ssh",
        "ansible_host": host.address,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": ssh.join("lab_key"),
        "ansible_ssh_common_args": format!(
            "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
            ssh.join("known_hosts").display()
        ),
        "ansible_python_interpreter": "/usr/bin/python3",
    })
}

/// An Ansible inventory of the lab: one host per server, groups per engine and environment.
/// A server on a test host is reached over SSH (its `ansible_host`), with `dbcadence_runner`
/// naming the lab's runner when there is one; the test hosts themselves are in `lab_hosts`
/// and the runner in `runners`. The password is a file lookup, never the value.
pub(super) fn ansible_inventory(lab: &Lab) -> serde_json::Value {
    let mut hosts = serde_json::Map::new();
    let mut groups: BTreeMap<String, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    let runner = lab.hosts.iter().find(|h| h.runner);
    for host in &lab.hosts {
        hosts.insert(host.name.clone(), ssh_vars(lab, host));
        let group = if host.runner { "runners" } else { "lab_hosts" };
        groups
            .entry(group.to_string())
            .or_default()
            .insert(host.name.clone(), serde_json::Value::Null);
    }
    for i in &lab.instances {
        let mut vars = json!({
                "dbcadence_engine": i.engine,
                "dbcadence_env": i.env,
                "dbcadence_login_host": i.host,
                "dbcadence_login_port": i.port,
                "dbcadence_login_user": i.user,
                "dbcadence_login_unix_socket": i.socket,
                "dbcadence_ssl_mode": "verify-full",
                "dbcadence_ca_cert": i.ca_cert,
                "dbcadence_login_password": format!("{{{{ lookup('ansible.builtin.file', '{}') }}}}", i.password_file.display()),
        });
        let placed = i
            .lab_host
            .as_deref()
            .and_then(|name| lab.hosts.iter().find(|h| h.name == name));
        if let (Some(host), serde_json::Value::Object(vars)) = (placed, &mut vars) {
            if let serde_json::Value::Object(ssh) = ssh_vars(lab, host) {
                vars.extend(ssh);
            }
            if let Some(runner) = runner {
                vars.insert("dbcadence_runner".into(), json!(runner.name));
            }
        }
        hosts.insert(i.name.clone(), vars);
        // The same group names as the inventory script and schedule assignments.
        let member_of = crate::schedule::assign::groups_of(
            &i.name,
            i.engine.as_str(),
            &i.env,
            &labels(i),
            false,
        );
        // Every lab instance is a server host too, as in the inventory script's servers groups.
        let servers = [
            "servers".to_string(),
            format!("servers_{}", i.engine.as_str()),
        ];
        for group in member_of.iter().filter(|g| *g != "all").chain(&servers) {
            groups
                .entry(group.to_string())
                .or_default()
                .insert(i.name.clone(), serde_json::Value::Null);
        }
    }
    let children: serde_json::Map<String, serde_json::Value> = groups
        .into_iter()
        .map(|(name, members)| (name, json!({"hosts": members})))
        .collect();
    let mut vars = json!({
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "dbcadence_lab_dir": lab.dir,
    });
    // Where the metrics go and which Prometheus the health gates ask.
    if let Some(m) = &lab.monitoring {
        vars["dbcadence_metrics_dir"] = json!(m.textfile_dir);
        vars["dbcadence_prometheus_url"] = json!(m.prometheus_url());
    }
    json!({
        "all": {
            "vars": vars,
            "hosts": hosts,
            "children": children,
        }
    })
}

/// The labels of a lab server: its environment, a tier (gold in production) and an owner.
pub(super) fn labels(instance: &LabInstance) -> BTreeMap<String, String> {
    let tier = if instance.env == "production" {
        "gold"
    } else {
        "bronze"
    };
    BTreeMap::from([
        ("env".to_string(), instance.env.clone()),
        ("tier".to_string(), tier.to_string()),
        ("owner".to_string(), "dba-team".to_string()),
    ])
}

/// The lab's servers as `dbcadence inventory` sources (credentials by file reference); a
/// server on a test host says how to reach the host (its `ansible` variables), and the runner
/// is listed.
pub(super) fn sources(lab: &Lab) -> serde_json::Value {
    let runner = lab.hosts.iter().find(|h| h.runner);
    let endpoints: Vec<serde_json::Value> = lab
        .instances
        .iter()
        .map(|i| {
            let mut endpoint = json!({
                "name": i.name,
                "engine": i.engine,
                "login_host": i.host,
                "login_port": i.port,
                "login_user": i.user,
                "login_password_file": i.password_file,
                "ssl_mode": "verify-full",
                "ca_cert": i.ca_cert,
                "labels": labels(i),
            });
            let placed = i
                .lab_host
                .as_deref()
                .and_then(|name| lab.hosts.iter().find(|h| h.name == name));
            if let Some(host) = placed {
                let mut vars = ssh_vars(lab, host);
                if let Some(runner) = runner {
                    vars["dbcadence_runner"] = json!(runner.name);
                }
                endpoint["ansible"] = vars;
            }
            endpoint
        })
        .collect();
    let runners: Vec<serde_json::Value> = runner
        .map(|r| json!({"name": r.name, "ansible": ssh_vars(lab, r)}))
        .into_iter()
        .collect();
    if runners.is_empty() {
        json!({"endpoints": endpoints})
    } else {
        json!({"endpoints": endpoints, "runners": runners})
    }
}
