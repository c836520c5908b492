//! PostgreSQL: every SQL statement dbcadence sends to a PostgreSQL server.
//!
//! The blocking `postgres::Client` runs its own small runtime; callers keep it off tokio
//! runtime threads (reference pitfall 9), which the core guarantees by using plain threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use postgres::config::SslMode as PgSslMode;
use postgres::{Client, Config};
use postgres_native_tls::MakeTlsConnector;

use crate::connection::{ConnectionArgs, EngineKind, SslMode};
use crate::engine::{
    AtRestEncryption, DatabaseFacts, DatabaseKind, DumpFormat, DumpOutput, DumpPlan, Engine,
    GlobalsDump, LabEngine, RestoreInput, RestorePlan, Role, ServerFacts, TableRows, connect_hint,
};
use crate::secret::ExposeSecret;
use crate::{Error, Result};

pub(crate) mod lab;
pub mod ledger;
mod physical;
pub mod server;

pub use physical::start_physical_copy;

/// Settings reported in the inventory: WAL archiving, logging, TLS and the basics.
const SETTINGS: &[&str] = &[
    "archive_command",
    "archive_mode",
    "data_checksums",
    "data_directory",
    "log_destination",
    "log_directory",
    "logging_collector",
    "max_connections",
    "port",
    "server_encoding",
    "shared_buffers",
    "ssl",
    "wal_level",
];

/// The newest PostgreSQL binaries (Debian keeps them off PATH, reference pitfall 1), or
/// $DBCADENCE_PG_BIN. pg_dump must be at least as new as the server, so the newest wins.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DBCADENCE_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let missing = || {
        Error::invalid(
            "PostgreSQL tools",
            "no version under /usr/lib/postgresql; install the postgresql-client package (and postgresql for the lab)",
        )
    };
    let mut versions: Vec<u32> = std::fs::read_dir(root)
        .map_err(|_| missing())?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    versions
        .last()
        .map(|v| root.join(v.to_string()).join("bin"))
        .ok_or_else(missing)
}

/// Quotes an identifier: `we"ird; db` becomes `"we""ird; db"`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal (standard_conforming_strings is on in every supported version).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

pub struct PostgresEngine {
    client: Client,
    args: ConnectionArgs,
    target: String,
}

/// The full chain of a driver error: postgres::Error's Display alone hides the server's words.
fn chain(e: &dyn std::error::Error) -> String {
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

fn tls_connector(args: &ConnectionArgs) -> Result<MakeTlsConnector> {
    let mut builder = native_tls::TlsConnector::builder();
    let verify = matches!(args.ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull)
        || (args.ssl_mode == SslMode::Require && args.ca_cert.is_some());
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path).map_err(|e| Error::io("read the CA certificate", path, e))?;
        let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            Error::invalid(
                "ca_cert",
                format!("'{}' is not a PEM certificate: {e}", path.display()),
            )
        })?;
        builder.add_root_certificate(cert);
    } else if args.ssl_mode == SslMode::VerifyCa {
        return Err(Error::invalid(
            "ca_cert",
            "ssl_mode verify-ca needs ca_cert (the CA's PEM file)",
        ));
    }
    if !verify {
        builder.danger_accept_invalid_certs(true);
    }
    if args.ssl_mode != SslMode::VerifyFull {
        builder.danger_accept_invalid_hostnames(true);
    }
    let connector = builder
        .build()
        .map_err(|e| Error::invalid("TLS set-up", e.to_string()))?;
    Ok(MakeTlsConnector::new(connector))
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
        let client = match args.ssl_mode {
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

    fn query_err(&self, what: &str, e: &postgres::Error) -> Error {
        Error::Query {
            what: what.to_string(),
            target: self.target.clone(),
            cause: chain(e),
        }
    }

    /// Exact rows per user table, in this connection's current transaction.
    fn count_rows(&mut self) -> Result<Vec<TableRows>> {
        let tables: Vec<(String, String)> = self
            .client
            .query(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1, 2",
                &[],
            )
            .map_err(|e| self.query_err("list tables", &e))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut counts = Vec::with_capacity(tables.len());
        for (schema, name) in tables {
            let sql = format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(&schema),
                quote_ident(&name)
            );
            let rows: i64 = self
                .client
                .query_one(sql.as_str(), &[])
                .map_err(|e| self.query_err(&format!("count rows of {schema}.{name}"), &e))?
                .get(0);
            counts.push(TableRows {
                schema: Some(schema),
                name,
                rows: u64::try_from(rows).unwrap_or(0),
            });
        }
        Ok(counts)
    }

    /// A second connection to another database of the same server.
    fn connect_to(&self, database: &str) -> Result<PostgresEngine> {
        let mut args = self.args.clone();
        args.login_db = Some(database.to_string());
        PostgresEngine::connect(&args)
    }
}

impl Engine for PostgresEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Postgresql
    }

    fn server_facts(&mut self) -> Result<ServerFacts> {
        let row = self
            .client
            .query_one(
                "SELECT version(), current_setting('server_version'), pg_is_in_recovery(), \
                 pg_postmaster_start_time()::text, \
                 coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                &[],
            )
            .map_err(|e| self.query_err("read the server version", &e))?;
        let version: String = row.get(0);
        // "15.20 (Debian 15.20-0+deb12u1)": the number is the first word.
        let version_number: String = row
            .get::<_, String>(1)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let in_recovery: bool = row.get(2);
        let started_at: String = row.get(3);
        let tls_in_use: bool = row.get(4);

        let names: Vec<&str> = SETTINGS.to_vec();
        let mut settings = BTreeMap::new();
        for row in self
            .client
            .query(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1)",
                &[&names],
            )
            .map_err(|e| self.query_err("read the server settings", &e))?
        {
            settings.insert(row.get::<_, String>(0), row.get::<_, String>(1));
        }
        // The system identifier needs superuser or pg_read_all... rights; without it the data
        // directory and start time still tell aliases apart.
        let system_identifier: Option<String> = self
            .client
            .query_one(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .ok()
            .map(|r| r.get(0));
        let data_directory = settings.get("data_directory").cloned();
        let server_identity = format!(
            "postgresql:{}:{}",
            system_identifier.as_deref().unwrap_or("unknown-system-id"),
            data_directory.as_deref().unwrap_or("unknown-data-dir"),
        );
        let tls_available = settings.get("ssl").is_some_and(|v| v == "on");
        Ok(ServerFacts {
            engine: EngineKind::Postgresql,
            flavour: "postgresql".into(),
            version,
            version_number,
            server_identity,
            started_at: Some(started_at),
            role: if in_recovery { Role::Replica } else { Role::Primary },
            data_directory,
            settings,
            tls_in_use,
            tls_available,
            at_rest: AtRestEncryption {
                status: "not_detectable".into(),
                detail: "PostgreSQL has no built-in data-at-rest encryption; disk or file-system encryption is not visible over SQL".into(),
            },
        })
    }

    fn databases(&mut self) -> Result<Vec<DatabaseFacts>> {
        let rows = self
            .client
            .query(
                "SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), \
                 d.datcollate, d.datistemplate, \
                 CASE WHEN has_database_privilege(d.oid, 'CONNECT') THEN pg_database_size(d.oid) END \
                 FROM pg_database d ORDER BY d.datname",
                &[],
            )
            .map_err(|e| self.query_err("list databases", &e))?;
        Ok(rows
            .iter()
            .map(|row| {
                let name: String = row.get(0);
                let is_template: bool = row.get(4);
                let kind = if is_template {
                    DatabaseKind::Template
                } else if name == "postgres" {
                    DatabaseKind::System
                } else {
                    DatabaseKind::User
                };
                DatabaseFacts {
                    kind,
                    size_bytes: row
                        .get::<_, Option<i64>>(5)
                        .and_then(|n| u64::try_from(n).ok()),
                    owner: row.get(1),
                    charset: row.get(2),
                    collation: row.get(3),
                    name,
                }
            })
            .collect())
    }

    fn create_database(&mut self, name: &str) -> Result<bool> {
        let exists = self
            .client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .map_err(|e| self.query_err("look up a database", &e))?
            .is_some();
        if exists {
            return Ok(false);
        }
        self.client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .map_err(|e| self.query_err(&format!("create database '{name}'"), &e))?;
        Ok(true)
    }

    fn drop_database(&mut self, name: &str) -> Result<bool> {
        let existed = self
            .client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .map_err(|e| self.query_err("look up a database", &e))?
            .is_some();
        self.client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(name)
            ))
            .map_err(|e| self.query_err(&format!("drop database '{name}'"), &e))?;
        Ok(existed)
    }

    fn dump_plan(
        &mut self,
        database: &str,
        format: DumpFormat,
        jobs: u32,
        work_dir: &Path,
    ) -> Result<DumpPlan> {
        let program = bin_dir()?.join("pg_dump");
        if !program.exists() {
            return Err(Error::invalid(
                "PostgreSQL tools",
                format!(
                    "{} is missing; install the postgresql-client package",
                    program.display()
                ),
            ));
        }
        // A repeatable-read transaction exports its snapshot: pg_dump --snapshot dumps exactly
        // what this transaction sees, so the row counts below match the dump.
        let mut holder = self.connect_to(database)?;
        let what = "open the backup snapshot";
        let row = holder
            .client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .and_then(|_| {
                holder.client.query_one(
                    "SELECT pg_export_snapshot(), \
                     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text, \
                     pg_is_in_recovery()",
                    &[],
                )
            })
            .map_err(|e| holder.query_err(what, &e))?;
        let snapshot_id: String = row.get(0);
        let lsn: Option<String> = row.get(1);
        let in_recovery: bool = row.get(2);
        // Uncompressed: dbcadence compresses with zstd, much faster than pg_dump's zlib.
        let mut args = vec![
            "--compress=0".to_string(),
            format!("--snapshot={snapshot_id}"),
        ];
        let (file_name, output) = match format {
            DumpFormat::Custom => {
                args.push("--format=custom".into());
                ("dump.pgcustom", DumpOutput::Stdout)
            }
            DumpFormat::Directory => {
                let dir = work_dir.join("dump.pgdir");
                args.extend([
                    "--format=directory".into(),
                    format!("--jobs={}", jobs.max(1)),
                    "--no-sync".into(),
                    "--file".into(),
                    dir.to_string_lossy().into_owned(),
                ]);
                ("dump.pgdir", DumpOutput::Directory(dir))
            }
        };
        Ok(DumpPlan {
            tool: tool_version(&program),
            args,
            env: libpq_env(&self.args, database),
            program,
            file_name,
            output,
            snapshot: serde_json::json!({"lsn": lsn, "exported_snapshot": snapshot_id, "from_replica": in_recovery}),
            // Counting scans every table: it runs beside pg_dump in the same exported snapshot
            // instead of before it, and keeps the exporting transaction open until handed back.
            counter: Some(Box::new(move || {
                let counts = holder.count_rows();
                (counts, Box::new(holder) as Box<dyn std::any::Any + Send>)
            })),
            observer: None,
            keep_alive: vec![],
        })
    }

    fn dump_privilege_problems(&mut self, database: &str) -> Result<Vec<String>> {
        let mut other = self.connect_to(database)?;
        let rows = other
            .client
            .query(
                "SELECT CASE WHEN NOT has_schema_privilege(n.oid, 'USAGE') THEN 'USAGE on schema ' || quote_ident(n.nspname) \
                 ELSE 'SELECT on ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) END \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg\\_toast%' \
                 AND (NOT has_schema_privilege(n.oid, 'USAGE') OR NOT has_table_privilege(c.oid, 'SELECT')) \
                 ORDER BY 1 LIMIT 10",
                &[],
            )
            .map_err(|e| other.query_err("check the dump privileges", &e))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    fn physical_plan(&mut self) -> Result<DumpPlan> {
        let program = bin_dir()?.join("pg_basebackup");
        // One tar on stdout holding the data, the WAL needed to make it consistent (fetch) and
        // the backup_manifest that pg_verifybackup checks at verification.
        Ok(DumpPlan {
            tool: tool_version(&program),
            args: [
                "-D",
                "-",
                "--format=tar",
                "--wal-method=fetch",
                "--checkpoint=fast",
            ]
            .map(String::from)
            .to_vec(),
            env: libpq_env(
                &self.args,
                self.args.login_db.as_deref().unwrap_or("postgres"),
            ),
            program,
            file_name: "physical.tar",
            output: DumpOutput::Stdout,
            snapshot: serde_json::json!({"method": "physical", "user": self.args.login_user.clone().unwrap_or_else(|| "postgres".into())}),
            counter: None,
            observer: None,
            keep_alive: vec![],
        })
    }

    fn dump_globals(&mut self) -> Result<GlobalsDump> {
        let program = bin_dir()?.join("pg_dumpall");
        // Role password hashes are included: restoring roles without them locks users out.
        let output = crate::process::Tool::new(&program)
            .package("postgresql-client")
            .arg("--globals-only")
            .envs(libpq_env(
                &self.args,
                self.args.login_db.as_deref().unwrap_or("postgres"),
            ))
            .output()?;
        Ok(GlobalsDump {
            tool: tool_version(&program),
            sql: output.stdout,
            skipped: vec![],
        })
    }

    fn restore_plan(&mut self, database: &str, jobs: u32) -> Result<RestorePlan> {
        let program = bin_dir()?.join("pg_restore");
        // Roles of the source server need not exist here: objects belong to the restoring user.
        // pg_restore needs --dbname to restore at all; given as a connection string, a name
        // holding '=' or spaces cannot be misread.
        Ok(RestorePlan {
            program,
            args: vec![
                "--no-owner".into(),
                "--no-privileges".into(),
                "--exit-on-error".into(),
                format!("--jobs={}", jobs.max(1)),
                format!("--dbname=dbname={}", conninfo_value(database)),
            ],
            env: libpq_env(&self.args, database),
            input: RestoreInput::File,
            keep_alive: vec![],
        })
    }

    fn row_counts(&mut self, database: &str) -> Result<Vec<TableRows>> {
        self.connect_to(database)?.count_rows()
    }

    fn check_integrity(&mut self, database: &str) -> Result<Vec<String>> {
        let program = bin_dir()?.join("pg_amcheck");
        // pg_amcheck verifies heap and B-tree structure; --heapallindexed also checks that every
        // heap tuple is in its indexes. --install-missing adds the amcheck extension.
        // A failed check exits non-zero with its findings on stdout: not a tool failure.
        let output = crate::process::Tool::new(&program)
            .package("postgresql-client")
            .args([
                "--install-missing",
                "--heapallindexed",
                "--no-dependent-indexes",
            ])
            // pg_amcheck expands a database name holding '=' as a connection string, so the
            // name is given as one, quoted: `--x=y` stays a name.
            .operands([format!("dbname={}", conninfo_value(database))])
            .envs(libpq_env(&self.args, database))
            .capture()?;
        if output.status.success() {
            return Ok(vec![]);
        }
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(20)
            .map(str::to_string)
            .collect())
    }
}

impl LabEngine for PostgresEngine {
    fn execute_in(&mut self, database: Option<&str>, sql: &str) -> Result<()> {
        match database {
            Some(db) if Some(db) != self.args.login_db.as_deref() => {
                let mut other = self.connect_to(db)?;
                other.execute_in(None, sql)
            }
            _ => self
                .client
                .batch_execute(sql)
                .map_err(|e| self.query_err("run SQL", &e)),
        }
    }

    fn ensure_admin_login(&mut self, user: &str, password: &str) -> Result<()> {
        let exists = self
            .client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
            .map_err(|e| self.query_err("look up a role", &e))?
            .is_some();
        let verb = if exists { "ALTER" } else { "CREATE" };
        // A SCRAM verifier computed here, not the password: the SQL text may be logged
        // (log_statement), the verifier proves nothing to whoever reads it.
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        self.client
            .batch_execute(&format!(
                "{verb} ROLE {} LOGIN SUPERUSER PASSWORD {}",
                quote_ident(user),
                quote_literal(&verifier)
            ))
            .map_err(|e| self.query_err(&format!("create login '{user}'"), &e))
    }
}

/// libpq's environment for a connection: the dump tools read host, port, user, database,
/// password and TLS settings from there, so that none of them is on a command line.
fn libpq_env(args: &ConnectionArgs, database: &str) -> Vec<(String, String)> {
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
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn tool_version(program: &Path) -> String {
    crate::process::Tool::new(program)
        .arg("--version")
        .read()
        .unwrap_or_else(|_| program.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident(r#"we"ird; db"#), r#""we""ird; db""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
