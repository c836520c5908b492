//! Where the fleet is described: endpoints (inline, from a sources file, or the connection
//! arguments), naming rules for environments and copies, and the connection of an endpoint
//! (passwords by reference only: environment variable or file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::connection::{ConnectionArgs, EngineKind, SslMode};
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
    /// Where modules run for this server, as Ansible variables of its hosts in the inventory
    /// script: `ansible_host`, `ansible_user`, `ansible_connection` (`local`: the controller),
    /// `dbcadence_runner` (the runner host that backs up and verifies its databases). Default:
    /// over SSH on `login_host`; on the controller when the server is reached through
    /// 127.0.0.1, localhost or a socket (it runs there).
    #[serde(default)]
    pub ansible: BTreeMap<String, serde_json::Value>,
}

/// A runner: a host that keeps backups and runs verification for the servers that name it
/// (`dbcadence_runner`), like a Barman server. The inventory script lists it in `runners`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Runner {
    /// Its inventory host name.
    pub name: String,
    /// How to reach it: ansible_host, ansible_user...
    #[serde(default)]
    pub ansible: BTreeMap<String, serde_json::Value>,
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
        (r"(?i)^(?P<original>.+?)[_-](shadow|clone|mirror|snapshot|tmp|temp|rehearsal)([_-]?\d+)*$", "shadow"),
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
    /// Runner hosts (backups and verification), named by servers' `dbcadence_runner`.
    #[serde(default)]
    pub runners: Vec<Runner>,
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
            ansible: BTreeMap::new(),
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
