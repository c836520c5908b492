//! Connecting to PostgreSQL: TLS policy, the driver's client, the full error chain, and the
//! libpq environment the command-line tools get instead of arguments.

use super::*;

pub struct PostgresEngine {
    pub(super) client: Client,
    pub(super) args: ConnectionArgs,
    pub(super) target: String,
}

/// The full chain of a driver error: postgres::Error's Display alone hides the server's words.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

pub(super) fn tls_connector(args: &ConnectionArgs) -> Result<MakeRustlsConnect> {
    if args.ca_cert.is_none() && args.ssl_mode == SslMode::VerifyCa {
        return Err(Error::invalid(
            "ca_cert",
            "ssl_mode verify-ca needs ca_cert (the CA's PEM file)",
        ));
    }
    let config = crate::tls::client_config(args)?;
    Ok(MakeRustlsConnect::new(config))
}

impl PostgresEngine {
    pub fn connect(args: &ConnectionArgs) -> Result<Self> {
        let mut config = Config::new();
        match &args.login_unix_socket {
            Some(dir) => config.host_path(dir),
            None => config.host(args.login_host.as_deref().unwrap_or("localhost")),
        };
        config
            .port(args.port())
            .user(args.login_user.as_deref().unwrap_or("postgres"))
            .dbname(args.login_db.as_deref().unwrap_or("postgres"))
            .application_name("dbcadence")
            .connect_timeout(args.timeout());
        if let Some(password) = &args.login_password {
            config.password(password.expose_secret());
        }
        let target = args.describe();
        let fail = |cause: String| Error::Connect {
            engine: "postgresql",
            target: target.clone(),
            hint: connect_hint(&cause),
            cause,
        };
        // As libpq: a unix socket never carries TLS, whatever ssl_mode says.
        let ssl_mode = if args.login_unix_socket.is_some() {
            SslMode::Disable
        } else {
            args.ssl_mode
        };
        let client = match ssl_mode {
            SslMode::Disable => {
                config.ssl_mode(PgSslMode::Disable);
                config.connect(postgres::NoTls)
            }
            mode => {
                config.ssl_mode(if mode == SslMode::Prefer {
                    PgSslMode::Prefer
                } else {
                    PgSslMode::Require
                });
                config.connect(tls_connector(args)?)
            }
        }
        .map_err(|e| fail(chain(&e)))?;
        Ok(PostgresEngine {
            client,
            args: args.clone(),
            target,
        })
    }

    pub(super) fn query_err(&self, what: &str, e: &postgres::Error) -> Error {
        Error::Query {
            what: what.to_string(),
            target: self.target.clone(),
            cause: chain(e),
        }
    }

    /// A second connection to another database of the same server.
    pub(super) fn connect_to(&self, database: &str) -> Result<PostgresEngine> {
        let mut args = self.args.clone();
        args.login_db = Some(database.to_string());
        PostgresEngine::connect(&args)
    }
}

/// libpq's environment for a connection: the dump tools read host, port, user, database,
/// password and TLS settings from there, so that none of them is on a command line.
pub(super) fn libpq_env(args: &ConnectionArgs, database: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("PGPORT".to_string(), args.port().to_string()),
        (
            "PGUSER".into(),
            args.login_user.clone().unwrap_or_else(|| "postgres".into()),
        ),
        ("PGDATABASE".into(), database.to_string()),
        ("PGAPPNAME".into(), "dbcadence".into()),
        (
            "PGCONNECT_TIMEOUT".into(),
            args.connect_timeout.max(1).to_string(),
        ),
    ];
    env.push((
        "PGHOST".into(),
        match &args.login_unix_socket {
            Some(dir) => dir.to_string_lossy().into_owned(),
            None => args
                .login_host
                .clone()
                .unwrap_or_else(|| "localhost".into()),
        },
    ));
    let mode = match args.ssl_mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    };
    env.push(("PGSSLMODE".into(), mode.into()));
    if let Some(ca) = &args.ca_cert {
        env.push(("PGSSLROOTCERT".into(), ca.to_string_lossy().into_owned()));
    }
    if let Some(password) = &args.login_password {
        env.push(("PGPASSWORD".into(), password.expose_secret().to_string()));
    }
    env
}

/// A value for a libpq connection string: single-quoted, with quotes and backslashes escaped.
pub(super) fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}
