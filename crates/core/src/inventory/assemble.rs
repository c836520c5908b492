//! Assembling the inventory from probe results: endpoints reaching the same server merged
//! into one instance by its identity, databases classified, a summary.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::engine::DatabaseKind;

pub(super) fn address_of(args: &Endpoint) -> String {
    match &args.login_unix_socket {
        Some(socket) => format!("unix:{}", socket.display()),
        None => format!(
            "{}:{}",
            args.login_host.as_deref().unwrap_or("localhost"),
            args.login_port
                .unwrap_or_else(|| args.engine.default_port())
        ),
    }
}

/// Connection hostvars of an endpoint without any secret (the password reference is kept).
pub(super) fn public_connection(endpoint: &Endpoint) -> BTreeMap<String, serde_json::Value> {
    let value = json!({
        "engine": endpoint.engine,
        "login_host": endpoint.login_host,
        "login_port": endpoint.login_port.unwrap_or_else(|| endpoint.engine.default_port()),
        "login_user": endpoint.login_user,
        "login_unix_socket": endpoint.login_unix_socket,
        "login_db": endpoint.login_db,
        "ssl_mode": endpoint.ssl_mode,
        "ca_cert": endpoint.ca_cert,
        "login_password_env": endpoint.login_password_env,
        "login_password_file": endpoint.login_password_file,
    });
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Builds the inventory from probe results: merges aliases, classifies databases.
pub(super) fn assemble(
    endpoints: &[Endpoint],
    results: Vec<std::result::Result<Probe, String>>,
    classifier: &Classifier,
) -> (Vec<Instance>, Vec<Unreachable>, Vec<String>) {
    let mut unreachable = Vec::new();
    let mut warnings = Vec::new();
    // Alias key: identity plus start time, so a replica cloned from a primary (same system
    // identifier) stays apart while 127.0.0.1, localhost and the socket merge.
    let mut groups: BTreeMap<String, Vec<(usize, Probe)>> = BTreeMap::new();
    for (index, result) in results.into_iter().enumerate() {
        let endpoint = &endpoints[index];
        match result {
            Ok(probe) => {
                let key = format!(
                    "{}|{}",
                    probe.facts.server_identity,
                    probe.facts.started_at.as_deref().unwrap_or("")
                );
                groups.entry(key).or_default().push((index, probe));
            }
            Err(reason) => unreachable.push(Unreachable {
                endpoint: endpoint.name.clone(),
                engine: endpoint.engine,
                address: address_of(endpoint),
                reason,
            }),
        }
    }
    let mut instances = Vec::new();
    for (_, mut members) in groups {
        members.sort_by(|a, b| endpoints[a.0].name.cmp(&endpoints[b.0].name));
        let (first_index, probe) = members.remove(0);
        let first = &endpoints[first_index];
        let others: Vec<&Endpoint> = members.iter().map(|(i, _)| &endpoints[*i]).collect();
        let labels = merged_labels(first, &others, &mut warnings);
        let aliases: Vec<Alias> = std::iter::once(first_index)
            .chain(members.iter().map(|(i, _)| *i))
            .map(|i| Alias {
                endpoint: endpoints[i].name.clone(),
                address: address_of(&endpoints[i]),
            })
            .collect();
        let label_env = labels.get("env").map(|e| normalize_env(e));
        let name_env = aliases
            .iter()
            .find_map(|a| classifier.env_of_name(&a.endpoint));
        let instance_env = label_env
            .clone()
            .or(name_env.clone())
            .unwrap_or_else(|| "unknown".into());
        let databases = classify_databases(probe.databases, classifier, &label_env, &name_env);
        let facts = probe.facts;
        let size_bytes = databases_size(&databases);
        instances.push(Instance {
            id: labels
                .get("instance_id")
                .cloned()
                .unwrap_or_else(|| first.name.clone()),
            engine: facts.engine,
            flavour: facts.flavour,
            version: facts.version,
            version_number: facts.version_number,
            server_identity: facts.server_identity,
            role: facts.role,
            env: instance_env,
            labels,
            aliases,
            connection: public_connection(first),
            ansible: first.ansible.clone(),
            data_directory: facts.data_directory,
            size_bytes,
            settings: facts.settings,
            tls_in_use: facts.tls_in_use,
            tls_available: facts.tls_available,
            at_rest: facts.at_rest,
            databases,
        });
    }
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    (instances, unreachable, warnings)
}

/// The labels of every endpoint that reaches one server; the first endpoint's value wins a
/// disagreement, which is warned about.
fn merged_labels(
    first: &Endpoint,
    others: &[&Endpoint],
    warnings: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut labels = first.labels.clone();
    for other in others {
        for (k, v) in &other.labels {
            match labels.get(k) {
                Some(existing) if existing != v => warnings.push(format!(
                    "endpoints '{}' and '{}' reach the same server but label {k} differently ('{existing}' vs '{v}'); keeping '{existing}'",
                    first.name, other.name
                )),
                Some(_) => {}
                None => {
                    labels.insert(k.clone(), v.clone());
                }
            }
        }
    }
    labels
}

/// Each database with its environment (label, naming rule, endpoint name, in that order) and,
/// for user databases, whether it is a copy of another.
fn classify_databases(
    databases: Vec<crate::engine::DatabaseFacts>,
    classifier: &Classifier,
    label_env: &Option<String>,
    name_env: &Option<String>,
) -> Vec<Database> {
    let names: Vec<String> = databases.iter().map(|d| d.name.clone()).collect();
    databases
        .into_iter()
        .map(|d| {
            let (env, env_source) = match (label_env, classifier.env_of_name(&d.name), name_env) {
                (Some(env), _, _) => (env.clone(), "label"),
                (None, Some(env), _) => (env, "naming_rule"),
                (None, None, Some(env)) => (env.clone(), "endpoint_name"),
                (None, None, None) => ("unknown".into(), "none"),
            };
            let copy = match d.kind {
                DatabaseKind::User => {
                    classifier.copy_of(&d.name, |original| names.iter().any(|n| n == original))
                }
                _ => None,
            };
            Database {
                name: d.name,
                kind: d.kind,
                env,
                env_source: env_source.into(),
                size_bytes: d.size_bytes,
                owner: d.owner,
                charset: d.charset,
                collation: d.collation,
                copy,
            }
        })
        .collect()
}

/// Sum of the readable database sizes; None when none is readable.
pub(super) fn databases_size(databases: &[Database]) -> Option<u64> {
    databases
        .iter()
        .filter_map(|d| d.size_bytes)
        .reduce(|a, b| a + b)
}

pub(super) fn summarize(
    endpoints: usize,
    instances: &[Instance],
    unreachable: &[Unreachable],
    seconds: f64,
) -> Summary {
    let mut summary = Summary {
        endpoints,
        instances: instances.len(),
        aliases_merged: instances.iter().map(|i| i.aliases.len() - 1).sum(),
        unreachable: unreachable.len(),
        probe_seconds: (seconds * 1000.0).round() / 1000.0,
        ..Summary::default()
    };
    for db in instances.iter().flat_map(|i| &i.databases) {
        summary.databases += 1;
        if db.kind == DatabaseKind::User {
            summary.user_databases += 1;
            *summary.by_env.entry(db.env.clone()).or_default() += 1;
        }
        if db.copy.is_some() {
            summary.copies += 1;
        }
    }
    summary
}
