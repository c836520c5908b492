//! Inventory: every instance and database of the fleet, complete and without duplicates.
//!
//! Endpoints come from a sources file (YAML), from inline endpoints, or from the connection
//! arguments. All are probed concurrently, each with its own deadline; an endpoint that does
//! not answer is reported with its reason and never holds up the others. Endpoints that reach
//! the same server (127.0.0.1, localhost, the unix socket...) are merged into one instance by
//! the server's own identity. Databases are classified: environment (labels first, then naming
//! rules), system/template, and backup or shadow copies (`app_bak_20260101`, `shadow_app`).
//!
//! - `sources`: endpoints, naming rules, connections.
//! - `probe`: concurrent probes with deadlines.
//! - `classify`: environments and copies.
//! - `assemble`: alias merging, the instances, the summary.

mod assemble;
mod classify;
mod probe;
mod sources;

pub use classify::{Classifier, normalize_env};
pub use sources::*;

use assemble::*;
use probe::*;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::connection::{ConnectionArgs, EngineKind};
use crate::engine::{AtRestEncryption, DatabaseKind, Role};
use crate::ledger::{Outcome, Target};
use crate::metrics::Sample;
use crate::run::{Change, Done, Recorder, RunOptions};
use crate::{Error, Result};

/// What to inventory (arguments of db_inventory and `dbcadence inventory`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct InventoryRequest {
    /// YAML file listing endpoints (see the module notes for its format).
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub sources: Option<PathBuf>,
    /// Endpoints given inline, in the same form as in the sources file.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Name of the endpoint given by the connection arguments (when engine is set).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub connection: ConnectionArgs,
    /// Naming rules; they replace those of the sources file.
    #[serde(default)]
    pub naming_rules: Option<NamingRules>,
    /// Seconds one endpoint may take in all (connect and queries) before it is reported unreachable.
    #[serde(default = "default_probe_timeout")]
    pub probe_timeout: u64,
    /// Endpoints probed at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// File keeping the last inventory; the run reports changed (and a diff) when the fleet
    /// differs from it. Sizes are left out so that growth alone is no change.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub snapshot_path: Option<PathBuf>,
    /// Fail when any endpoint is unreachable (by default only when none answers).
    #[serde(default)]
    pub fail_on_unreachable: bool,
    #[serde(flatten)]
    pub run: RunOptions,
}

fn default_probe_timeout() -> u64 {
    30
}

fn default_concurrency() -> usize {
    16
}

/// How one endpoint reached an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alias {
    /// Name of the endpoint in the sources.
    pub endpoint: String,
    /// host:port or unix:<socket> the endpoint connects to.
    pub address: String,
}

/// A copy of another database, by its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CopyFlag {
    /// backup, shadow or dated.
    pub kind: String,
    /// The name it appears to copy.
    pub original: String,
    /// Whether a database of that name exists on the same instance.
    pub original_present: bool,
}

/// One database with its classification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Database {
    /// Database name, exactly as the server has it.
    pub name: String,
    /// user, system or template.
    pub kind: DatabaseKind,
    /// Environment: the endpoint's env label, else naming rules on the name, else the endpoint name's.
    pub env: String,
    /// Where env came from: label, naming_rule, endpoint_name or none.
    pub env_source: String,
    /// Size in bytes, where the login user may read it.
    pub size_bytes: Option<u64>,
    /// Owner (PostgreSQL only).
    pub owner: Option<String>,
    /// Encoding (PostgreSQL) or default character set (MySQL/MariaDB).
    pub charset: Option<String>,
    /// Default collation.
    pub collation: Option<String>,
    /// Set when the name marks a backup, shadow or dated copy.
    pub copy: Option<CopyFlag>,
}

/// One server, whatever the number of endpoints that reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Instance {
    /// Stable id: the instance_id label, else the first endpoint name in sort order.
    pub id: String,
    /// postgresql or mysql.
    pub engine: EngineKind,
    /// postgresql, mariadb or mysql.
    pub flavour: String,
    /// Full version string.
    pub version: String,
    /// Version number, e.g. 15.20 or 10.11.19.
    pub version_number: String,
    /// Identity used to merge aliases (system identifier, server_uuid, or host and data directory).
    pub server_identity: String,
    /// primary, replica or unknown.
    pub role: Role,
    /// Environment of the instance: label env, else naming rules on endpoint names, else unknown.
    pub env: String,
    /// Labels of the endpoints (the first alias wins on conflicts).
    pub labels: BTreeMap<String, String>,
    /// Every endpoint that reached this server.
    pub aliases: Vec<Alias>,
    /// Connection arguments of the first alias, without secrets (the password reference stays).
    pub connection: BTreeMap<String, serde_json::Value>,
    /// Where modules run for this server: the first alias's `ansible` variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ansible: BTreeMap<String, serde_json::Value>,
    /// Data directory, where the login user may read it.
    pub data_directory: Option<String>,
    /// Sum of the database sizes in bytes.
    pub size_bytes: Option<u64>,
    /// Maintenance-relevant settings: WAL archiving or binary log, log locations, TLS, encryption.
    pub settings: BTreeMap<String, String>,
    /// Whether the inventory's own connection used TLS.
    pub tls_in_use: bool,
    /// Whether the server offers TLS.
    pub tls_available: bool,
    /// Data-at-rest encryption, as far as SQL can tell.
    pub at_rest: AtRestEncryption,
    /// Every database of the instance, system ones included.
    pub databases: Vec<Database>,
}

/// An endpoint that could not be inventoried, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Unreachable {
    /// Endpoint name.
    pub endpoint: String,
    /// Engine of the endpoint.
    pub engine: EngineKind,
    /// Address tried.
    pub address: String,
    /// Why it could not be inventoried.
    pub reason: String,
}

/// Counts over the whole inventory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Endpoints probed.
    pub endpoints: usize,
    /// Distinct servers found.
    pub instances: usize,
    /// Endpoints that turned out to be another name of an instance already found.
    pub aliases_merged: usize,
    /// Databases found, system ones included.
    pub databases: usize,
    /// Databases holding user data.
    pub user_databases: usize,
    /// Databases flagged as backup, shadow or dated copies.
    pub copies: usize,
    /// Endpoints that did not answer.
    pub unreachable: usize,
    /// User databases per environment.
    pub by_env: BTreeMap<String, usize>,
    /// Wall time of the probes, in seconds.
    pub probe_seconds: f64,
}

/// The result of an inventory run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InventoryReport {
    /// One entry per distinct server.
    pub instances: Vec<Instance>,
    /// Endpoints that could not be inventoried.
    pub unreachable: Vec<Unreachable>,
    /// Counts over the whole inventory.
    pub summary: Summary,
}

/// The ledger details of an inventory run: written by the inventory, read by the compliance
/// report (which databases exist, since when, and which endpoints were down). One type for
/// both sides, so that they cannot drift apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InventoryDetails {
    #[serde(default)]
    pub instances: usize,
    #[serde(default)]
    pub databases: usize,
    #[serde(default)]
    pub copies: usize,
    /// Endpoints that did not answer.
    #[serde(default)]
    pub unreachable: Vec<String>,
    #[serde(default)]
    pub fleet: Vec<FleetInstance>,
}

/// One instance as an inventory record carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetInstance {
    pub instance: String,
    pub engine: EngineKind,
    #[serde(default)]
    pub env: String,
    #[serde(default = "unknown_role")]
    pub role: Role,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// User databases only.
    #[serde(default)]
    pub databases: Vec<FleetDatabase>,
}

fn unknown_role() -> Role {
    Role::Unknown
}

/// One user database as an inventory record carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetDatabase {
    pub name: String,
    pub env: String,
    /// The original, when the database is a backup or shadow copy.
    #[serde(default)]
    pub copy_of: Option<String>,
}

impl InventoryDetails {
    pub fn of(report: &InventoryReport) -> InventoryDetails {
        let s = &report.summary;
        InventoryDetails {
            instances: s.instances,
            databases: s.databases,
            copies: s.copies,
            unreachable: report
                .unreachable
                .iter()
                .map(|u| u.endpoint.clone())
                .collect(),
            fleet: report
                .instances
                .iter()
                .map(|i| FleetInstance {
                    instance: i.id.clone(),
                    engine: i.engine,
                    env: i.env.clone(),
                    role: i.role,
                    labels: i.labels.clone(),
                    databases: i
                        .databases
                        .iter()
                        .filter(|d| d.kind == DatabaseKind::User)
                        .map(|d| FleetDatabase {
                            name: d.name.clone(),
                            env: d.env.clone(),
                            copy_of: d.copy.as_ref().map(|c| c.original.clone()),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// The inventory plus what the run means for the caller.
#[derive(Debug, Clone)]
pub struct InventoryOutcome {
    pub report: InventoryReport,
    pub changed: bool,
    pub before: Option<String>,
    pub after: Option<String>,
    pub warnings: Vec<String>,
}

/// The part of an inventory that defines "the fleet" for change detection: no sizes, no
/// timings, nothing that moves on its own.
pub fn snapshot_text(report: &InventoryReport) -> String {
    let instances: Vec<serde_json::Value> = report
        .instances
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "engine": i.engine,
                "flavour": i.flavour,
                "version": i.version_number,
                "role": i.role,
                "env": i.env,
                "aliases": i.aliases.iter().map(|a| &a.endpoint).collect::<Vec<_>>(),
                "databases": i.databases.iter().map(|d| json!({
                    "name": d.name, "kind": d.kind, "env": d.env,
                    "copy_of": d.copy.as_ref().map(|c| &c.original),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let unreachable: Vec<&String> = report.unreachable.iter().map(|u| &u.endpoint).collect();
    let mut text =
        serde_json::to_string_pretty(&json!({"instances": instances, "unreachable": unreachable}))
            .unwrap_or_default();
    text.push('\n');
    text
}

/// Runs an inventory and records it. `check_mode` only affects the snapshot file (never written).
pub fn run(request: &InventoryRequest, check_mode: bool) -> Result<Done<InventoryReport>> {
    let recorder = Recorder::start(crate::task::Task::Inventory, &request.run, check_mode)
        .hiding(request.connection.login_password.as_ref());
    let target = Target {
        instance: "fleet".into(),
        db: None,
    };
    let result = run_unrecorded(request, check_mode);
    match result {
        Ok(mut outcome) => {
            let s = &outcome.report.summary;
            let failed = (request.fail_on_unreachable && s.unreachable > 0) || s.instances == 0;
            // The fleet as seen now: the compliance report learns from these records which
            // databases exist and since when (a database added mid-period owes nothing before).
            let details =
                serde_json::to_value(InventoryDetails::of(&outcome.report)).unwrap_or_default();
            let mut samples = vec![
                Sample::gauge(
                    "dbcadence_inventory_instances",
                    "Instances found by the last inventory.",
                    &[],
                    s.instances as f64,
                ),
                Sample::gauge(
                    "dbcadence_inventory_unreachable_endpoints",
                    "Endpoints the last inventory could not reach.",
                    &[],
                    s.unreachable as f64,
                ),
                Sample::gauge(
                    "dbcadence_inventory_copies",
                    "Databases flagged as backup or shadow copies.",
                    &[],
                    s.copies as f64,
                ),
            ];
            for (env, count) in &s.by_env {
                samples.push(Sample::gauge(
                    "dbcadence_inventory_databases",
                    "User databases per environment.",
                    &[("env", env.as_str())],
                    *count as f64,
                ));
            }
            let outcome_kind = if failed { Outcome::Failed } else { Outcome::Ok };
            outcome.warnings.extend(recorder.finish(
                target,
                outcome_kind,
                outcome.changed,
                details,
                samples,
            ));
            if failed {
                let reasons: Vec<String> = outcome
                    .report
                    .unreachable
                    .iter()
                    .map(|u| format!("{} ({}): {}", u.endpoint, u.address, u.reason))
                    .collect();
                let what = if s.instances == 0 {
                    "any endpoint"
                } else {
                    "every endpoint"
                };
                return Err(Error::Unreachable {
                    what: what.into(),
                    detail: reasons.join("; "),
                });
            }
            Ok(Done {
                changed: outcome.changed,
                msg: format!(
                    "{} instances ({} aliases merged), {} databases ({} copies), {} unreachable",
                    s.instances, s.aliases_merged, s.databases, s.copies, s.unreachable
                ),
                diff: Change::between("inventory", outcome.before, outcome.after),
                warnings: outcome.warnings,
                output: outcome.report,
            })
        }
        Err(e) => {
            recorder.fail(target, &e);
            Err(e)
        }
    }
}

fn run_unrecorded(request: &InventoryRequest, check_mode: bool) -> Result<InventoryOutcome> {
    let (endpoints, rules) = endpoints_of(request)?;
    let classifier = Classifier::new(&rules)?;
    let started = Instant::now();
    let results = probe_all(
        &endpoints,
        crate::secret::expose(&request.connection.login_password),
        request,
    );
    let seconds = started.elapsed().as_secs_f64();
    let (instances, unreachable, mut warnings) = assemble(&endpoints, results, &classifier);
    let summary = summarize(endpoints.len(), &instances, &unreachable, seconds);
    let report = InventoryReport {
        instances,
        unreachable,
        summary,
    };
    let (mut changed, mut before, mut after) = (false, None, None);
    if let Some(path) = &request.snapshot_path {
        let new_text = snapshot_text(&report);
        let old_text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                warnings.push(format!(
                    "the previous inventory snapshot '{}' could not be read ({e}); changed and diff compare against nothing, and the file is rewritten",
                    path.display()
                ));
                String::new()
            }
        };
        if old_text != new_text {
            changed = true;
            if !check_mode {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io("create the snapshot directory", parent, e))?;
                }
                crate::files::write_atomically(
                    path,
                    new_text.as_bytes(),
                    crate::files::PUBLIC_FILE,
                )?;
            }
            before = Some(old_text);
            after = Some(new_text);
        }
    }
    Ok(InventoryOutcome {
        report,
        changed,
        before,
        after,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_flagged_with_their_original() {
        let c = Classifier::new(&NamingRules::default()).unwrap();
        let present = |n: &str| n == "app";
        let flag = c.copy_of("app_bak_20260101", present).unwrap();
        assert_eq!(
            (
                flag.kind.as_str(),
                flag.original.as_str(),
                flag.original_present
            ),
            ("backup", "app", true)
        );
        assert_eq!(c.copy_of("shop_20240131", present).unwrap().kind, "dated");
        assert_eq!(
            c.copy_of("shop_20240131", present).unwrap().original,
            "shop"
        );
        assert_eq!(c.copy_of("shadow_app", present).unwrap().original, "app");
        assert_eq!(c.copy_of("billing_old", present).unwrap().kind, "backup");
        assert!(c.copy_of("app", present).is_none());
        assert_eq!(c.copy_of("old_app", present).unwrap().original, "app");
        assert!(
            c.copy_of("orders2024", present).is_none(),
            "a year glued to a name is not a copy"
        );
    }

    #[test]
    fn environments_come_from_names_and_are_normalized() {
        let c = Classifier::new(&NamingRules::default()).unwrap();
        assert_eq!(c.env_of_name("crm_prod").as_deref(), Some("production"));
        assert_eq!(c.env_of_name("stg-billing").as_deref(), Some("staging"));
        assert_eq!(c.env_of_name("app_dev").as_deref(), Some("development"));
        assert_eq!(
            c.env_of_name("products"),
            None,
            "prod inside a word does not count"
        );
        assert_eq!(normalize_env("PRD"), "production");
    }

    #[test]
    fn a_copy_rule_without_original_group_is_refused() {
        let rules = NamingRules {
            environments: vec![],
            copies: vec![CopyRule {
                pattern: "_bak$".into(),
                kind: "backup".into(),
            }],
        };
        assert!(Classifier::new(&rules).is_err());
    }

    #[test]
    fn inline_passwords_in_sources_are_refused() {
        let e = serde_yaml_ng::from_str::<Sources>(
            "endpoints:\n  - {name: a, engine: mysql, login_password: x}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("login_password"), "{e}");
    }
}
