//! The inventory as `ansible-inventory` expects it from an executable inventory: every group,
//! and `_meta.hostvars` so that Ansible never calls `--host` once per host.
//!
//! Two kinds of hosts. Database hosts are user databases (backup and shadow copies included:
//! they need maintenance or a decision too), named `<instance>.<database>` with unsafe
//! characters replaced; the real name is in `dbcadence_db`; groups `databases`, engine,
//! env_<env>, tier_<tier>, instance_<id>, copies. Server hosts are instances, named by the
//! instance id, for the tasks that act on a server once (logs, audit, patch); groups
//! `servers`, `servers_<engine>`, env_<env>, tier_<tier>. dbcadence_unreachable holds endpoints
//! that did not answer. Secrets never appear: only the password reference (env variable name
//! or file path).
//!
//! Where modules run (placement): a server's hosts carry the `ansible` variables its source
//! gives (ansible_host, ansible_user, dbcadence_runner...); without them, Ansible goes over
//! SSH to the server's login_host, or stays on the controller for a server reached through
//! the loopback or a socket. Runners from the sources are hosts of group `runners`.

use std::collections::BTreeMap;

use dbcadence_core::engine::DatabaseKind;
use dbcadence_core::inventory::InventoryReport;
// Group names come from the core, so that schedule assignments by group (`env_production`,
// `tier_gold`...) select exactly the hosts Ansible sees in those groups.
use dbcadence_core::schedule::assign::group_safe as safe;
use serde_json::{Map, Value, json};

/// A name made of safe characters; a short hash of the real name is appended whenever
/// characters were replaced, so that sanitising never merges two names.
fn safe_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == name {
        clean
    } else {
        let hash = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        format!("{clean}-{:06x}", hash & 0xff_ffff)
    }
}

/// A database host: `<instance>.<database>`.
fn host_name(instance: &str, db: &str) -> String {
    format!("{instance}.{}", safe_name(db))
}

/// Whether a server reached at `host` runs on the controller itself.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The Ansible variables that say where modules run for an instance's hosts.
fn placement(instance: &dbcadence_core::inventory::Instance) -> Map<String, Value> {
    let mut vars: Map<String, Value> = instance
        .ansible
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !vars.contains_key("ansible_connection") && !vars.contains_key("ansible_host") {
        let socket = instance.connection.contains_key("login_unix_socket");
        match instance
            .connection
            .get("login_host")
            .and_then(Value::as_str)
        {
            Some(host) if !socket && !is_loopback(host) => {
                vars.insert("ansible_host".into(), json!(host));
            }
            _ => {
                vars.insert("ansible_connection".into(), json!("local"));
            }
        }
    }
    vars
}

pub fn ansible_inventory(
    report: &InventoryReport,
    runners: &[dbcadence_core::inventory::Runner],
) -> Value {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut hostvars = Map::new();
    let mut instance_vars = Map::new();
    for runner in runners {
        hostvars.insert(
            runner.name.clone(),
            Value::Object(runner.ansible.clone().into_iter().collect()),
        );
        groups
            .entry("runners".into())
            .or_default()
            .push(runner.name.clone());
    }
    for instance in &report.instances {
        // Instance groups exist even without user databases (patching is per instance); their
        // vars say how to reach the server.
        groups
            .entry(format!("instance_{}", safe(&instance.id)))
            .or_default();
        let vars: Map<String, Value> = instance
            .connection
            .iter()
            .map(|(k, v)| (format!("dbcadence_{k}"), v.clone()))
            .collect();
        instance_vars.insert(
            format!("instance_{}", safe(&instance.id)),
            Value::Object(vars),
        );
        let user_databases: Vec<_> = instance
            .databases
            .iter()
            .filter(|d| d.kind == DatabaseKind::User)
            .collect();
        let database_hosts: Vec<String> = user_databases
            .iter()
            .map(|db| host_name(&instance.id, &db.name))
            .collect();
        add_server_host(instance, &database_hosts, &mut groups, &mut hostvars);
        for db in user_databases {
            let host = host_name(&instance.id, &db.name);
            let mut vars = placement(instance);
            vars.insert("dbcadence_instance".into(), json!(instance.id));
            vars.insert("dbcadence_db".into(), json!(db.name));
            vars.insert("dbcadence_env".into(), json!(db.env));
            vars.insert("dbcadence_engine".into(), json!(instance.engine));
            vars.insert("dbcadence_flavour".into(), json!(instance.flavour));
            vars.insert("dbcadence_version".into(), json!(instance.version_number));
            if let Some(tier) = instance.labels.get("tier") {
                vars.insert("dbcadence_tier".into(), json!(tier));
                groups
                    .entry(format!("tier_{}", safe(tier)))
                    .or_default()
                    .push(host.clone());
            }
            if let Some(copy) = &db.copy {
                vars.insert("dbcadence_copy_of".into(), json!(copy.original));
                groups
                    .entry("copies".into())
                    .or_default()
                    .push(host.clone());
            }
            for (key, value) in &instance.connection {
                vars.insert(format!("dbcadence_{key}"), value.clone());
            }
            hostvars.insert(host.clone(), Value::Object(vars));
            groups
                .entry("databases".into())
                .or_default()
                .push(host.clone());
            groups
                .entry(instance.engine.as_str().into())
                .or_default()
                .push(host.clone());
            groups
                .entry(format!("env_{}", safe(&db.env)))
                .or_default()
                .push(host.clone());
            groups
                .entry(format!("instance_{}", safe(&instance.id)))
                .or_default()
                .push(host);
        }
    }
    for u in &report.unreachable {
        let host = safe(&u.endpoint);
        hostvars.insert(host.clone(), json!({"ansible_connection": "local", "dbcadence_unreachable_reason": u.reason, "dbcadence_address": u.address}));
        groups
            .entry("dbcadence_unreachable".into())
            .or_default()
            .push(host);
    }
    let mut out = Map::new();
    let children: Vec<&String> = groups.keys().collect();
    out.insert("all".into(), json!({"children": children}));
    for (name, hosts) in &groups {
        let mut group = json!({"hosts": hosts});
        if let Some(vars) = instance_vars.get(name) {
            group["vars"] = vars.clone();
        }
        out.insert(name.clone(), group);
    }
    out.insert("_meta".into(), json!({"hostvars": hostvars}));
    Value::Object(out)
}

/// The server host of an instance: its id, the server's facts, how to reach it, and the
/// inventory names of its database hosts (`dbcadence_database_hosts`: a per-server play such
/// as the maintenance cycle reaches each database's variables through `hostvars`).
fn add_server_host(
    instance: &dbcadence_core::inventory::Instance,
    database_hosts: &[String],
    groups: &mut BTreeMap<String, Vec<String>>,
    hostvars: &mut Map<String, Value>,
) {
    let host = safe_name(&instance.id);
    let mut vars = placement(instance);
    vars.insert("dbcadence_instance".into(), json!(instance.id));
    vars.insert("dbcadence_env".into(), json!(instance.env));
    vars.insert("dbcadence_engine".into(), json!(instance.engine));
    vars.insert("dbcadence_flavour".into(), json!(instance.flavour));
    vars.insert("dbcadence_version".into(), json!(instance.version_number));
    vars.insert("dbcadence_database_hosts".into(), json!(database_hosts));
    for (key, value) in &instance.connection {
        vars.insert(format!("dbcadence_{key}"), value.clone());
    }
    let mut member_of = vec![
        "servers".to_string(),
        format!("servers_{}", instance.engine.as_str()),
        format!("env_{}", safe(&instance.env)),
    ];
    if let Some(tier) = instance.labels.get("tier") {
        vars.insert("dbcadence_tier".into(), json!(tier));
        member_of.push(format!("tier_{}", safe(tier)));
    }
    for group in member_of {
        groups.entry(group).or_default().push(host.clone());
    }
    hostvars.insert(host, Value::Object(vars));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_safe_and_unique() {
        assert_eq!(host_name("pg1", "app"), "pg1.app");
        let weird = host_name("pg1", "we\"ird; db");
        assert!(weird.starts_with("pg1.we_ird__db-"), "{weird}");
        assert_ne!(host_name("pg1", "a b"), host_name("pg1", "a;b"));
    }

    #[test]
    fn servers_on_the_loopback_run_their_modules_on_the_controller() {
        for local in ["127.0.0.1", "127.0.1.1", "localhost", "::1"] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in ["10.213.1.11", "db1.example.org", "0.0.0.0"] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }
}
