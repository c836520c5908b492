//! Inventory: every instance and database of the fleet, complete and without duplicates.
//!
//! Endpoints come from a sources file (YAML), from inline endpoints, or from the connection
//! arguments. All are probed concurrently, each with its own deadline; an endpoint that does
//! not answer is reported with its reason and never holds up the others. Endpoints that reach
//! the same server (127.0.0.1, localhost, the unix socket...) are merged into one instance by
//! the server's own identity. Databases are classified: environment (labels first, then naming
//! rules), system/template, and backup or shadow copies (`app_bak_20260101`, `shadow_app`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::connection::{ConnectionArgs, EngineKind, SslMode};
use crate::engine::{self, AtRestEncryption, DatabaseFacts, DatabaseKind, Role, ServerFacts};
use crate::ledger::{Outcome, Target};
use crate::metrics::Sample;
use crate::run::{Recorder, RunOptions};
use crate::{Error, Result};

/// One endpoint to probe. Credentials are references, never inline values.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Unique name of the endpoint (used in reports and as the default instance id).
    pub name: String,
    /// postgresql or mysql (MariaDB included).
    pub engine: EngineKind,
    /// Host name or IP address.
    #[serde(default)]
    pub login_host: Option<String>,
    /// TCP port; the engine's default when absent.
    #[serde(default)]
    pub login_port: Option<u16>,
    /// Login user.
    #[serde(default)]
    pub login_user: Option<String>,
    /// Name of an environment variable holding the password.
    #[serde(default)]
    pub login_password_env: Option<String>,
    /// Path of a file holding the password (first line; keep it 0600).
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub login_password_file: Option<PathBuf>,
    /// Unix socket (directory for postgresql, file for mysql).
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub login_unix_socket: Option<PathBuf>,
    /// Database to connect to.
    #[serde(default)]
    pub login_db: Option<String>,
    /// TLS policy.
    #[serde(default)]
    pub ssl_mode: Option<SslMode>,
    /// CA certificate for verify-ca / verify-full.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub ca_cert: Option<PathBuf>,
    /// Seconds to wait for the connection.
    #[serde(default)]
    pub connect_timeout: Option<u64>,
    /// Free labels: env (development/staging/production), tier, owner, instance_id...
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A rule that gives an environment to names matching a regular expression.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentRule {
    /// Regular expression matched against database (then endpoint) names.
    pub pattern: String,
    /// Environment given to matching names.
    pub env: String,
}

/// A rule that flags copies; the pattern's named group `original` captures the copied name.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyRule {
    /// Regular expression with a named group `original`.
    pub pattern: String,
    /// backup, shadow or dated.
    pub kind: String,
}

/// How names are classified. Defaults cover the common conventions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamingRules {
    /// Environment rules, first match wins.
    #[serde(default = "default_environment_rules")]
    pub environments: Vec<EnvironmentRule>,
    /// Copy rules, first match wins.
    #[serde(default = "default_copy_rules")]
    pub copies: Vec<CopyRule>,
}

impl Default for NamingRules {
    fn default() -> Self {
        NamingRules {
            environments: default_environment_rules(),
            copies: default_copy_rules(),
        }
    }
}

pub fn default_environment_rules() -> Vec<EnvironmentRule> {
    [
        (
            r"(?i)(^|[_.-])(prod|production|prd|live)($|[_.-])",
            "production",
        ),
        (
            r"(?i)(^|[_.-])(stag|staging|stg|stage|preprod|uat)($|[_.-])",
            "staging",
        ),
        (
            r"(?i)(^|[_.-])(dev|development|test|qa|sandbox)($|[_.-])",
            "development",
        ),
    ]
    .into_iter()
    .map(|(pattern, env)| EnvironmentRule {
        pattern: pattern.into(),
        env: env.into(),
    })
    .collect()
}

pub fn default_copy_rules() -> Vec<CopyRule> {
    [
        (r"(?i)^(?P<original>.+?)[_-](bak|backup|bkp|old|orig|save|saved|archive|copy)([_-]?\d+)*$", "backup"),
        (r"(?i)^(?P<original>.+?)[_-](shadow|clone|mirror|snapshot|tmp|temp)([_-]?\d+)*$", "shadow"),
        (r"^(?P<original>.+?)[_-](19|20)\d{2}[_-]?\d{2}[_-]?\d{2}([_-]?\d{2,6})?$", "dated"),
        (r"(?i)^(bak|backup|old|copy)[_-](?P<original>.+)$", "backup"),
        (r"(?i)^(shadow|clone|tmp)[_-](?P<original>.+)$", "shadow"),
    ]
    .into_iter()
    .map(|(pattern, kind)| CopyRule { pattern: pattern.into(), kind: kind.into() })
    .collect()
}

/// The sources file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// Endpoints to probe.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Naming rules; defaults apply when absent.
    #[serde(default)]
    pub naming_rules: Option<NamingRules>,
}

impl Sources {
    pub fn load(path: &Path) -> Result<Sources> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("read the inventory sources", path, e))?;
        serde_yaml_ng::from_str(&text).map_err(|e| {
            Error::invalid(
                format!("inventory sources '{}'", path.display()),
                e.to_string(),
            )
        })
    }
}

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

/// The inventory plus what the run means for the caller.
#[derive(Debug, Clone)]
pub struct InventoryOutcome {
    pub report: InventoryReport,
    pub changed: bool,
    pub before: Option<String>,
    pub after: Option<String>,
    pub warnings: Vec<String>,
}

/// Collects the endpoints of a request: sources file, inline endpoints, connection arguments.
pub fn endpoints_of(request: &InventoryRequest) -> Result<(Vec<Endpoint>, NamingRules)> {
    let mut endpoints = Vec::new();
    let mut rules = None;
    if let Some(path) = &request.sources {
        let sources = Sources::load(path)?;
        endpoints.extend(sources.endpoints);
        rules = sources.naming_rules;
    }
    endpoints.extend(request.endpoints.iter().cloned());
    if let Some(engine) = request.connection.engine {
        let c = &request.connection;
        endpoints.push(Endpoint {
            name: request.name.clone().unwrap_or_else(|| c.describe()),
            engine,
            login_host: c.login_host.clone(),
            login_port: c.login_port,
            login_user: c.login_user.clone(),
            login_password_env: None,
            login_password_file: None,
            login_unix_socket: c.login_unix_socket.clone(),
            login_db: c.login_db.clone(),
            ssl_mode: Some(c.ssl_mode),
            ca_cert: c.ca_cert.clone(),
            connect_timeout: Some(c.connect_timeout),
            labels: BTreeMap::new(),
        });
    }
    if endpoints.is_empty() {
        return Err(Error::invalid(
            "inventory request",
            "nothing to inventory: give sources (a YAML file), endpoints, or engine with the connection arguments",
        ));
    }
    let mut names: Vec<&str> = endpoints.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::invalid(
            "inventory request",
            format!(
                "endpoint name '{}' is used twice; names must be unique",
                w[0]
            ),
        ));
    }
    Ok((
        endpoints,
        request.naming_rules.clone().or(rules).unwrap_or_default(),
    ))
}

/// Connection arguments of an endpoint, with the password read from its reference.
pub fn connection_of(
    endpoint: &Endpoint,
    inline_password: Option<&str>,
    default_timeout: u64,
) -> Result<ConnectionArgs> {
    let password = match (&endpoint.login_password_env, &endpoint.login_password_file) {
        (Some(var), _) => Some(std::env::var(var).map_err(|_| Error::Credentials {
            endpoint: endpoint.name.clone(),
            cause: format!("environment variable '{var}' is not set"),
        })?),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| Error::Credentials {
                    endpoint: endpoint.name.clone(),
                    cause: format!("cannot read '{}': {e}", path.display()),
                })?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        (None, None) => inline_password.map(str::to_string),
    };
    Ok(ConnectionArgs {
        engine: Some(endpoint.engine),
        login_host: endpoint.login_host.clone(),
        login_port: endpoint.login_port,
        login_user: endpoint.login_user.clone(),
        login_password: password.map(Into::into),
        login_unix_socket: endpoint.login_unix_socket.clone(),
        login_db: endpoint.login_db.clone(),
        ssl_mode: endpoint.ssl_mode.unwrap_or_default(),
        ca_cert: endpoint.ca_cert.clone(),
        connect_timeout: endpoint.connect_timeout.unwrap_or(default_timeout),
    })
}

/// What one probe found.
struct Probe {
    facts: ServerFacts,
    databases: Vec<DatabaseFacts>,
}

fn probe(args: &ConnectionArgs) -> Result<Probe> {
    let mut engine = engine::connect(args)?;
    let facts = engine.server_facts()?;
    let databases = engine.databases()?;
    Ok(Probe { facts, databases })
}

/// Probes every endpoint, at most `concurrency` at once, each with its own deadline.
/// A probe past its deadline is reported and abandoned; its thread ends on its own.
fn probe_all(
    endpoints: &[Endpoint],
    inline_password: Option<&str>,
    request: &InventoryRequest,
) -> Vec<std::result::Result<Probe, String>> {
    let limit = request.concurrency.max(1);
    let timeout = Duration::from_secs(request.probe_timeout.max(1));
    let (sender, receiver) = mpsc::channel::<(usize, std::result::Result<Probe, String>)>();
    let mut results: Vec<Option<std::result::Result<Probe, String>>> =
        endpoints.iter().map(|_| None).collect();
    let mut in_flight: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut next = 0;
    while next < endpoints.len() || !in_flight.is_empty() {
        while next < endpoints.len() && in_flight.len() < limit {
            let index = next;
            next += 1;
            match connection_of(
                &endpoints[index],
                inline_password,
                request.connection.connect_timeout,
            ) {
                Ok(args) => {
                    let sender = sender.clone();
                    in_flight.insert(index, Instant::now() + timeout);
                    std::thread::spawn(move || {
                        let _ = sender.send((index, probe(&args).map_err(|e| e.to_string())));
                    });
                }
                Err(e) => results[index] = Some(Err(e.to_string())),
            }
        }
        let Some(earliest) = in_flight.values().min().copied() else {
            continue;
        };
        match receiver.recv_timeout(earliest.saturating_duration_since(Instant::now())) {
            Ok((index, result)) => {
                if in_flight.remove(&index).is_some() {
                    results[index] = Some(result);
                }
            }
            Err(_) => {
                let now = Instant::now();
                let expired: Vec<usize> = in_flight
                    .iter()
                    .filter(|(_, d)| **d <= now)
                    .map(|(i, _)| *i)
                    .collect();
                for index in expired {
                    in_flight.remove(&index);
                    results[index] = Some(Err(format!(
                        "no answer within probe_timeout ({}s); the server may be hung or the network slow",
                        timeout.as_secs()
                    )));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not probed".into())))
        .collect()
}

/// Normalises environment spellings (prod, PRD, live → production...).
pub fn normalize_env(value: &str) -> String {
    let lower = value.trim().to_ascii_lowercase();
    match lower.as_str() {
        "prod" | "prd" | "live" | "production" => "production".into(),
        "stag" | "stage" | "stg" | "staging" | "preprod" | "uat" => "staging".into(),
        "dev" | "development" | "test" | "testing" | "qa" | "sandbox" => "development".into(),
        _ => lower,
    }
}

/// Compiled naming rules.
pub struct Classifier {
    environments: Vec<(Regex, String)>,
    copies: Vec<(Regex, String)>,
}

impl Classifier {
    pub fn new(rules: &NamingRules) -> Result<Self> {
        let compile = |p: &str| {
            Regex::new(p).map_err(|e| Error::invalid("naming rule", format!("'{p}': {e}")))
        };
        let environments = rules
            .environments
            .iter()
            .map(|r| Ok((compile(&r.pattern)?, normalize_env(&r.env))))
            .collect::<Result<Vec<_>>>()?;
        let copies = rules
            .copies
            .iter()
            .map(|r| {
                let re = compile(&r.pattern)?;
                if !re.capture_names().any(|n| n == Some("original")) {
                    return Err(Error::invalid(
                        "naming rule",
                        format!(
                            "copy pattern '{}' has no (?P<original>...) group",
                            r.pattern
                        ),
                    ));
                }
                Ok((re, r.kind.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Classifier {
            environments,
            copies,
        })
    }

    pub fn env_of_name(&self, name: &str) -> Option<String> {
        self.environments
            .iter()
            .find(|(re, _)| re.is_match(name))
            .map(|(_, env)| env.clone())
    }

    /// The copy flag of `name`, if a rule matches; `present` tells whether the original exists.
    pub fn copy_of(&self, name: &str, present: impl Fn(&str) -> bool) -> Option<CopyFlag> {
        self.copies.iter().find_map(|(re, kind)| {
            let original = re.captures(name)?.name("original")?.as_str().to_string();
            Some(CopyFlag {
                kind: kind.clone(),
                original_present: present(&original),
                original,
            })
        })
    }
}

fn address_of(args: &Endpoint) -> String {
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
fn public_connection(endpoint: &Endpoint) -> BTreeMap<String, serde_json::Value> {
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
fn assemble(
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
        let mut labels = first.labels.clone();
        for (index, _) in &members {
            for (k, v) in &endpoints[*index].labels {
                match labels.get(k) {
                    Some(existing) if existing != v => warnings.push(format!(
                        "endpoints '{}' and '{}' reach the same server but label {k} differently ('{existing}' vs '{v}'); keeping '{existing}'",
                        first.name, endpoints[*index].name
                    )),
                    Some(_) => {}
                    None => {
                        labels.insert(k.clone(), v.clone());
                    }
                }
            }
        }
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
        let names: Vec<String> = probe.databases.iter().map(|d| d.name.clone()).collect();
        let databases: Vec<Database> = probe
            .databases
            .into_iter()
            .map(|d| {
                let (env, env_source) =
                    match (&label_env, classifier.env_of_name(&d.name), &name_env) {
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
            .collect();
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

/// Sum of the readable database sizes; None when none is readable.
fn databases_size(databases: &[Database]) -> Option<u64> {
    databases
        .iter()
        .filter_map(|d| d.size_bytes)
        .reduce(|a, b| a + b)
}

fn summarize(
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
pub fn run(request: &InventoryRequest, check_mode: bool) -> Result<InventoryOutcome> {
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
            let fleet: Vec<serde_json::Value> = outcome
                .report
                .instances
                .iter()
                .map(|i| {
                    json!({
                        "instance": i.id, "engine": i.engine, "env": i.env, "role": i.role,
                        "labels": i.labels,
                        "databases": i.databases.iter()
                            .filter(|d| d.kind == DatabaseKind::User)
                            .map(|d| json!({"name": d.name, "env": d.env, "copy_of": d.copy.as_ref().map(|c| &c.original)}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
            let details = json!({
                "instances": s.instances, "databases": s.databases, "copies": s.copies,
                "unreachable": outcome.report.unreachable.iter().map(|u| &u.endpoint).collect::<Vec<_>>(),
                "fleet": fleet,
            });
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
            Ok(outcome)
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
