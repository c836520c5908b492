//! The connection arguments shared by every module (contract, ARCHITECTURE.md), named as in
//! community.postgresql and community.mysql so that DBAs feel at home.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which database engine an endpoint speaks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// PostgreSQL.
    Postgresql,
    /// MySQL or MariaDB (MariaDB is a flavour of mysql).
    Mysql,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Postgresql => "postgresql",
            EngineKind::Mysql => "mysql",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            EngineKind::Postgresql => 5432,
            EngineKind::Mysql => 3306,
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TLS policy, with libpq's names for both engines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it, without verifying the certificate (libpq's default).
    #[default]
    Prefer,
    /// Require TLS; verify the certificate only when ca_cert is given.
    Require,
    /// Require TLS and a certificate signed by ca_cert (host name not checked).
    VerifyCa,
    /// Require TLS, a certificate signed by ca_cert (or the system roots) and a matching host name.
    VerifyFull,
}

/// How to reach one server. Every module takes these arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ConnectionArgs {
    /// Database engine of the target server.
    #[serde(default)]
    pub engine: Option<EngineKind>,
    /// Host name or IP address of the server. Ignored when login_unix_socket is set.
    #[serde(default)]
    pub login_host: Option<String>,
    /// TCP port; defaults to 5432 for postgresql and 3306 for mysql.
    #[serde(default)]
    pub login_port: Option<u16>,
    /// User to log in as; defaults to postgres for postgresql and root for mysql.
    #[serde(default)]
    pub login_user: Option<String>,
    /// Password of login_user.
    #[serde(default, serialize_with = "crate::secret::serialize_masked")]
    #[schemars(extend("x-secret" = true), with = "Option<String>")]
    pub login_password: Option<crate::secret::SecretString>,
    /// Unix socket: the socket directory for postgresql, the socket file for mysql.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub login_unix_socket: Option<PathBuf>,
    /// Database to connect to; defaults to postgres for postgresql and none for mysql.
    #[serde(default)]
    pub login_db: Option<String>,
    /// TLS policy.
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// CA certificate (PEM) used to verify the server in verify-ca and verify-full modes.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub ca_cert: Option<PathBuf>,
    /// Seconds to wait for the connection to be established.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: u64,
}

pub fn default_connect_timeout() -> u64 {
    10
}

impl ConnectionArgs {
    /// A login over a local Unix socket without TLS: how dbcadence reaches the private servers
    /// it starts itself (lab bootstrap, physical verification).
    pub fn local_socket(engine: EngineKind, user: &str, socket: PathBuf, timeout: u64) -> Self {
        ConnectionArgs {
            engine: Some(engine),
            login_user: Some(user.to_string()),
            login_unix_socket: Some(socket),
            ssl_mode: SslMode::Disable,
            connect_timeout: timeout,
            ..ConnectionArgs::default()
        }
    }

    pub fn engine(&self) -> crate::Result<EngineKind> {
        self.engine.ok_or_else(|| {
            crate::Error::invalid("connection", "engine is required: postgresql or mysql")
        })
    }

    pub fn port(&self) -> u16 {
        self.login_port
            .unwrap_or_else(|| self.engine.map_or(5432, EngineKind::default_port))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout.max(1))
    }

    /// Where we connect, for messages: never includes the password.
    pub fn describe(&self) -> String {
        let user = self.login_user.as_deref().unwrap_or("(default user)");
        match &self.login_unix_socket {
            Some(socket) => format!("{user}@unix:{}", socket.display()),
            None => format!(
                "{user}@{}:{}",
                self.login_host.as_deref().unwrap_or("localhost"),
                self.port()
            ),
        }
    }
}
