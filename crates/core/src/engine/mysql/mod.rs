//! MySQL and MariaDB: every SQL statement dbcadence sends to them. MariaDB is a flavour of
//! mysql, told apart by its version string.
//!
//! mysql_async needs a tokio runtime; each connection owns a current-thread runtime and the
//! engine stays synchronous like the rest of the core.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, SslOpts};
use tokio::runtime::Runtime;

use crate::connection::{ConnectionArgs, EngineKind, SslMode};
use crate::engine::{
    AtRestEncryption, DatabaseFacts, DatabaseKind, DumpFormat, DumpOutput, DumpPlan, Engine,
    GlobalsDump, RestoreInput, RestorePlan, Role, ServerFacts, StreamObserver, TableRows,
    connect_hint,
};
use crate::secret::ExposeSecret;
use crate::{Error, Result};

pub mod server;

/// Server variables reported in the inventory (those that do not exist in a flavour are absent).
const VARIABLES: &[&str] = &[
    "aria_encrypt_tables",
    "binlog_encryption",
    "binlog_expire_logs_seconds",
    "binlog_format",
    "datadir",
    "default_table_encryption",
    "encrypt_binlog",
    "encrypt_tmp_files",
    "expire_logs_days",
    "general_log",
    "gtid_mode",
    "have_ssl",
    "hostname",
    "innodb_encrypt_log",
    "innodb_encrypt_tables",
    "innodb_redo_log_encrypt",
    "log_bin",
    "log_bin_basename",
    "log_error",
    "port",
    "read_only",
    "require_secure_transport",
    "server_id",
    "server_uuid",
    "slow_query_log",
    "slow_query_log_file",
    "version",
    "version_comment",
];

const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "mysql", "performance_schema", "sys"];

/// Quotes an identifier: backticks doubled.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string literal for the default sql_mode (backslash escapes on).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

pub struct MysqlEngine {
    runtime: Runtime,
    conn: Option<Conn>,
    target: String,
    args: ConnectionArgs,
}

fn ssl_opts(args: &ConnectionArgs) -> Option<SslOpts> {
    if args.ssl_mode == SslMode::Disable {
        return None;
    }
    let verify = matches!(args.ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull)
        || (args.ssl_mode == SslMode::Require && args.ca_cert.is_some());
    let mut opts = SslOpts::default()
        .with_danger_accept_invalid_certs(!verify)
        .with_danger_skip_domain_validation(args.ssl_mode != SslMode::VerifyFull);
    if let Some(ca) = &args.ca_cert {
        opts = opts.with_root_certs(vec![ca.clone().into()]);
    }
    Some(opts)
}

fn opts(args: &ConnectionArgs, tls: bool) -> OptsBuilder {
    let mut builder = OptsBuilder::default()
        .user(Some(
            args.login_user.clone().unwrap_or_else(|| "root".into()),
        ))
        .pass(crate::secret::expose(&args.login_password))
        .db_name(args.login_db.clone())
        .prefer_socket(false);
    builder = match &args.login_unix_socket {
        Some(socket) => builder.socket(Some(socket.to_string_lossy().into_owned())),
        None => builder
            .ip_or_hostname(
                args.login_host
                    .clone()
                    .unwrap_or_else(|| "localhost".into()),
            )
            .tcp_port(args.port()),
    };
    if tls {
        builder = builder.ssl_opts(ssl_opts(args));
    }
    builder
}

impl MysqlEngine {
    pub fn connect(args: &ConnectionArgs) -> Result<Self> {
        if args.ssl_mode == SslMode::VerifyCa && args.ca_cert.is_none() {
            return Err(Error::invalid(
                "ca_cert",
                "ssl_mode verify-ca needs ca_cert (the CA's PEM file)",
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::invalid("runtime", e.to_string()))?;
        let target = args.describe();
        let timeout = args.timeout();
        let attempt = |tls: bool| {
            runtime.block_on(async {
                match tokio::time::timeout(timeout, Conn::new(opts(args, tls))).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("connection timed out after {}s", timeout.as_secs())),
                }
            })
        };
        let tls = args.ssl_mode != SslMode::Disable && args.login_unix_socket.is_none();
        let conn = match attempt(tls) {
            Ok(conn) => Ok(conn),
            // "prefer": a server without TLS refuses the handshake; try again in clear text,
            // as libpq and the mysql client do.
            Err(e) if tls && args.ssl_mode == SslMode::Prefer && !e.contains("Access denied") => {
                attempt(false)
            }
            Err(e) => Err(e),
        }
        .map_err(|cause| Error::Connect {
            engine: "mysql",
            target: target.clone(),
            hint: connect_hint(&cause),
            cause,
        })?;
        Ok(MysqlEngine {
            runtime,
            conn: Some(conn),
            target,
            args: args.clone(),
        })
    }

    fn query_rows(&mut self, what: &str, sql: &str) -> Result<Vec<Row>> {
        let conn = self.conn.as_mut().expect("connection is open until drop");
        self.runtime
            .block_on(conn.query::<Row, _>(sql))
            .map_err(|e| Error::Query {
                what: what.into(),
                target: self.target.clone(),
                cause: e.to_string(),
            })
    }

    fn exec_rows(&mut self, what: &str, sql: &str, params: Vec<String>) -> Result<Vec<Row>> {
        let conn = self.conn.as_mut().expect("connection is open until drop");
        self.runtime
            .block_on(conn.exec::<Row, _, _>(sql, params))
            .map_err(|e| Error::Query {
                what: what.into(),
                target: self.target.clone(),
                cause: e.to_string(),
            })
    }

    fn run(&mut self, what: &str, sql: &str) -> Result<()> {
        let conn = self.conn.as_mut().expect("connection is open until drop");
        self.runtime
            .block_on(conn.query_drop(sql))
            .map_err(|e| Error::Query {
                what: what.into(),
                target: self.target.clone(),
                cause: e.to_string(),
            })
    }

    /// A private temp directory holding the [client] option file for the command-line tools;
    /// the directory (and the password in it) goes away when the returned guard is dropped.
    fn option_file(&self, server_has_tls: bool) -> Result<(tempfile::TempDir, std::path::PathBuf)> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::Builder::new()
            .prefix("dbcadence-client.")
            .tempdir()
            .map_err(|e| Error::io("create a private temp directory", std::env::temp_dir(), e))?;
        let path = dir.path().join("client.cnf");
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("write the client option file", &path, e))?;
        f.write_all(client_option_file(&self.args, server_has_tls).as_bytes())
            .map_err(|e| Error::io("write the client option file", &path, e))?;
        Ok((dir, path))
    }

    fn server_has_tls(&mut self) -> Result<bool> {
        let rows = self.query_rows("read the TLS settings", "SELECT @@have_ssl")?;
        Ok(rows
            .first()
            .and_then(|r| text(r, 0))
            .is_some_and(|v| v == "YES"))
    }

    fn schema_exists(&mut self, name: &str) -> Result<bool> {
        Ok(!self
            .exec_rows(
                "look up a database",
                "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                vec![name.to_string()],
            )?
            .is_empty())
    }
}

impl Drop for MysqlEngine {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = self.runtime.block_on(conn.disconnect());
        }
    }
}

fn text(row: &Row, index: usize) -> Option<String> {
    row.get_opt::<Option<String>, usize>(index)
        .and_then(|r| r.ok())
        .flatten()
}

fn is_on(vars: &BTreeMap<String, String>, name: &str) -> bool {
    vars.get(name).is_some_and(|v| {
        matches!(
            v.to_ascii_uppercase().as_str(),
            "ON" | "FORCE" | "1" | "YES"
        )
    })
}

impl Engine for MysqlEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Mysql
    }

    fn server_facts(&mut self) -> Result<ServerFacts> {
        let names = VARIABLES
            .iter()
            .map(|v| format!("'{v}'"))
            .collect::<Vec<_>>()
            .join(",");
        let mut vars = BTreeMap::new();
        for row in self.query_rows(
            "read the server variables",
            &format!("SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})"),
        )? {
            if let (Some(k), Some(v)) = (text(&row, 0), text(&row, 1)) {
                vars.insert(k, v);
            }
        }
        let version = vars.get("version").cloned().unwrap_or_default();
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        let flavour = if mariadb { "mariadb" } else { "mysql" };
        let version_number = version
            .split(['-', '+'])
            .next()
            .unwrap_or_default()
            .to_string();
        let hostname = vars.get("hostname").cloned().unwrap_or_default();
        let datadir = vars.get("datadir").cloned();
        // MySQL keeps a server_uuid in auto.cnf; MariaDB has none, so the host name and data
        // directory (which no two running servers share) stand in for it.
        let server_identity = match vars.get("server_uuid") {
            Some(uuid) if !mariadb => format!("mysql:{uuid}"),
            _ => format!("mariadb:{hostname}:{}", datadir.as_deref().unwrap_or("")),
        };
        let uptime = self
            .query_rows("read the uptime", "SELECT CAST(UNIX_TIMESTAMP() - VARIABLE_VALUE AS UNSIGNED) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'")
            .ok()
            .and_then(|rows| rows.first().and_then(|r| text(r, 0)));
        let replica_sql = if mariadb {
            "SHOW ALL SLAVES STATUS"
        } else {
            "SHOW REPLICA STATUS"
        };
        let role = match self.query_rows("read the replication status", replica_sql) {
            Ok(rows) if rows.is_empty() => Role::Primary,
            Ok(_) => Role::Replica,
            Err(_) => Role::Unknown,
        };
        let tls_in_use = self
            .query_rows(
                "read the session cipher",
                "SHOW SESSION STATUS LIKE 'Ssl_cipher'",
            )?
            .first()
            .and_then(|r| text(r, 1))
            .is_some_and(|c| !c.is_empty());
        let tls_available = vars.get("have_ssl").is_some_and(|v| v == "YES");
        let at_rest = {
            let checks: &[&str] = if mariadb {
                &[
                    "innodb_encrypt_tables",
                    "innodb_encrypt_log",
                    "encrypt_binlog",
                    "aria_encrypt_tables",
                    "encrypt_tmp_files",
                ]
            } else {
                &[
                    "default_table_encryption",
                    "innodb_redo_log_encrypt",
                    "binlog_encryption",
                ]
            };
            let present: Vec<&&str> = checks.iter().filter(|c| vars.contains_key(**c)).collect();
            let on: Vec<&&str> = present
                .iter()
                .copied()
                .filter(|c| is_on(&vars, c))
                .collect();
            let status = match (on.len(), present.len()) {
                (_, 0) => "not_detectable",
                (0, _) => "off",
                (n, m) if n == m => "enabled",
                _ => "partial",
            };
            AtRestEncryption {
                status: status.into(),
                detail: present
                    .iter()
                    .map(|c| format!("{c}={}", vars.get(**c).map_or("", String::as_str)))
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        };
        let settings: BTreeMap<String, String> = vars
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "version" | "server_uuid" | "hostname"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(ServerFacts {
            engine: EngineKind::Mysql,
            flavour: flavour.into(),
            version,
            version_number,
            server_identity,
            started_at: uptime,
            role,
            data_directory: datadir,
            settings,
            tls_in_use,
            tls_available,
            at_rest,
        })
    }

    fn databases(&mut self) -> Result<Vec<DatabaseFacts>> {
        let rows = self.query_rows(
            "list databases",
            "SELECT s.SCHEMA_NAME, s.DEFAULT_CHARACTER_SET_NAME, s.DEFAULT_COLLATION_NAME, \
             CAST(SUM(COALESCE(t.DATA_LENGTH, 0) + COALESCE(t.INDEX_LENGTH, 0)) AS UNSIGNED) \
             FROM information_schema.SCHEMATA s \
             LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME \
             GROUP BY s.SCHEMA_NAME, s.DEFAULT_CHARACTER_SET_NAME, s.DEFAULT_COLLATION_NAME \
             ORDER BY s.SCHEMA_NAME",
        )?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let name = text(row, 0)?;
                let kind = if SYSTEM_SCHEMAS.contains(&name.to_ascii_lowercase().as_str()) {
                    DatabaseKind::System
                } else {
                    DatabaseKind::User
                };
                Some(DatabaseFacts {
                    kind,
                    size_bytes: text(row, 3).and_then(|s| s.parse().ok()),
                    owner: None,
                    charset: text(row, 1),
                    collation: text(row, 2),
                    name,
                })
            })
            .collect())
    }

    fn create_database(&mut self, name: &str) -> Result<bool> {
        if self.schema_exists(name)? {
            return Ok(false);
        }
        self.run(
            &format!("create database '{name}'"),
            &format!(
                "CREATE DATABASE {} CHARACTER SET utf8mb4",
                quote_ident(name)
            ),
        )?;
        Ok(true)
    }

    fn drop_database(&mut self, name: &str) -> Result<bool> {
        let existed = self.schema_exists(name)?;
        self.run(
            &format!("drop database '{name}'"),
            &format!("DROP DATABASE IF EXISTS {}", quote_ident(name)),
        )?;
        Ok(existed)
    }

    fn execute_in(&mut self, database: Option<&str>, sql: &str) -> Result<()> {
        if let Some(db) = database {
            self.run(
                &format!("use database '{db}'"),
                &format!("USE {}", quote_ident(db)),
            )?;
        }
        self.run("run SQL", sql)
    }

    fn dump_plan(
        &mut self,
        database: &str,
        format: DumpFormat,
        _jobs: u32,
        _work_dir: &std::path::Path,
    ) -> Result<DumpPlan> {
        if format == DumpFormat::Directory {
            return Err(Error::invalid(
                "format",
                "directory is a PostgreSQL format; use custom (SQL text) for MySQL/MariaDB",
            ));
        }
        let program = crate::util::find_program("mariadb-dump")
            .or_else(|_| crate::util::find_program("mysqldump"))?;
        let vars = self.query_rows(
            "read the binary log and TLS settings",
            "SELECT @@log_bin, @@have_ssl",
        )?;
        let log_bin = vars
            .first()
            .and_then(|r| text(r, 0))
            .is_some_and(|v| v == "1" || v == "ON");
        let has_tls = vars
            .first()
            .and_then(|r| text(r, 1))
            .is_some_and(|v| v == "YES");
        let (secrets, option_file) = self.option_file(has_tls)?;
        let mut args = vec![
            format!("--defaults-file={}", option_file.display()),
            "--single-transaction".into(),
            "--quick".into(),
            "--routines".into(),
            "--events".into(),
            "--triggers".into(),
            "--hex-blob".into(),
            "--default-character-set=utf8mb4".into(),
        ];
        if log_bin {
            // With --single-transaction MariaDB reads the position of the dump's own snapshot
            // (binlog_snapshot_file/pos), without a global read lock.
            args.push("--master-data=2".into());
        }
        // After "--" the name is an operand even when it reads like an option: a database
        // named `--result-file=/etc/passwd` must never become one.
        args.push("--".into());
        args.push(database.to_string());
        let tool = crate::process::Tool::new(&program)
            .arg("--version")
            .read()
            .unwrap_or_default();
        Ok(DumpPlan {
            program,
            args,
            env: vec![],
            tool,
            file_name: "dump.sql",
            output: DumpOutput::Stdout,
            snapshot: serde_json::json!({}),
            counter: None,
            observer: Some(Box::new(DumpRowCounter::default())),
            keep_alive: vec![Box::new(secrets)],
        })
    }

    fn dump_privilege_problems(&mut self, database: &str) -> Result<Vec<String>> {
        // --single-transaction --routines --events --triggers needs these, globally or on the
        // database; SHOW VIEW only matters when views exist, but a DBA grants it with the rest.
        let granted: Vec<String> = self
            .exec_rows(
                "check the dump privileges",
                "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = CONCAT(QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', 1)), '@', QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', -1))) \
                 UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE TABLE_SCHEMA = ? \
                 AND GRANTEE = CONCAT(QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', 1)), '@', QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', -1)))",
                vec![database.to_string()],
            )?
            .iter()
            .filter_map(|r| text(r, 0))
            .collect();
        Ok(["SELECT", "SHOW VIEW", "TRIGGER", "EVENT"]
            .iter()
            .filter(|p| !granted.iter().any(|g| g == *p))
            .map(|p| format!("{p} on {}", quote_ident(database)))
            .collect())
    }

    fn physical_plan(&mut self) -> Result<DumpPlan> {
        let program = crate::util::find_program("mariadb-backup").map_err(|_| {
            Error::invalid(
                "method physical",
                "mariadb-backup is missing; install the mariadb-backup package",
            )
        })?;
        let datadir = self
            .query_rows("read the data directory", "SELECT @@datadir")?
            .first()
            .and_then(|r| text(r, 0))
            .ok_or_else(|| {
                Error::invalid(
                    "method physical",
                    "the server did not tell its data directory",
                )
            })?;
        if !std::path::Path::new(&datadir).is_dir() {
            return Err(Error::invalid(
                "method physical",
                format!(
                    "the data directory '{datadir}' is not on this machine; mariadb-backup must run on the database host"
                ),
            ));
        }
        let has_tls = self.server_has_tls()?;
        let (secrets, option_file) = self.option_file(has_tls)?;
        let scratch = tempfile::Builder::new()
            .prefix("dbc-mbk.")
            .tempdir()
            .map_err(|e| Error::io("create a temp dir", std::env::temp_dir(), e))?;
        let tool = crate::process::Tool::new(&program)
            .arg("--version")
            .output()
            .map(|o| {
                // mariadb-backup prints its version on stderr.
                String::from_utf8_lossy(&o.stderr).trim().to_string()
                    + String::from_utf8_lossy(&o.stdout).trim()
            })
            .unwrap_or_default();
        Ok(DumpPlan {
            args: vec![
                format!("--defaults-file={}", option_file.display()),
                "--backup".into(),
                "--stream=mbstream".into(),
                format!("--datadir={datadir}"),
                format!("--target-dir={}", scratch.path().display()),
            ],
            program,
            env: vec![],
            tool,
            file_name: "physical.mbstream",
            output: DumpOutput::Stdout,
            snapshot: serde_json::json!({"method": "physical", "datadir": datadir}),
            counter: None,
            observer: None,
            keep_alive: vec![Box::new(secrets), Box::new(scratch)],
        })
    }

    fn dump_globals(&mut self) -> Result<GlobalsDump> {
        // SHOW CREATE USER and SHOW GRANTS per account, like pt-show-grants. An account the
        // server cannot use (a host name under skip-name-resolve, for one) is skipped and named,
        // where mariadb-dump --system=users would fail as a whole.
        let accounts: Vec<(String, String)> = self
            .query_rows(
                "list accounts",
                "SELECT User, Host FROM mysql.user ORDER BY User, Host",
            )?
            .iter()
            .filter_map(|r| Some((text(r, 0)?, text(r, 1)?)))
            .collect();
        let mut sql = String::from("-- users and grants, written by dbcadence\n");
        let mut skipped = Vec::new();
        for (user, host) in accounts {
            let account = format!("{}@{}", quote_literal(&user), quote_literal(&host));
            let statements = self
                .query_rows("show the account", &format!("SHOW CREATE USER {account}"))
                .and_then(|create| {
                    Ok((
                        create,
                        self.query_rows("show the grants", &format!("SHOW GRANTS FOR {account}"))?,
                    ))
                });
            match statements {
                Ok((create, grants)) => {
                    for row in create.iter().chain(grants.iter()) {
                        if let Some(statement) = text(row, 0) {
                            sql.push_str(&statement);
                            sql.push_str(";\n");
                        }
                    }
                }
                Err(e) => {
                    sql.push_str(&format!("-- skipped {account}: {e}\n"));
                    skipped.push(format!("{account}: {e}"));
                }
            }
        }
        Ok(GlobalsDump {
            tool: "SHOW CREATE USER / SHOW GRANTS".into(),
            sql: sql.into_bytes(),
            skipped,
        })
    }

    fn restore_plan(&mut self, database: &str, _jobs: u32) -> Result<RestorePlan> {
        let program =
            crate::util::find_program("mariadb").or_else(|_| crate::util::find_program("mysql"))?;
        let has_tls = self.server_has_tls()?;
        let (secrets, option_file) = self.option_file(has_tls)?;
        Ok(RestorePlan {
            program,
            args: vec![
                format!("--defaults-file={}", option_file.display()),
                "--default-character-set=utf8mb4".into(),
                "--binary-mode".into(),
                "--".into(),
                database.to_string(),
            ],
            env: vec![],
            input: RestoreInput::Stdin,
            keep_alive: vec![Box::new(secrets)],
        })
    }

    fn row_counts(&mut self, database: &str) -> Result<Vec<TableRows>> {
        let names: Vec<String> = self
            .exec_rows(
                "list tables",
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1",
                vec![database.to_string()],
            )?
            .iter()
            .filter_map(|r| text(r, 0))
            .collect();
        let mut counts = Vec::with_capacity(names.len());
        for name in names {
            let sql = format!(
                "SELECT COUNT(*) FROM {}.{}",
                quote_ident(database),
                quote_ident(&name)
            );
            let rows = self
                .query_rows(&format!("count rows of {name}"), &sql)?
                .first()
                .and_then(|r| text(r, 0))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            counts.push(TableRows {
                schema: None,
                name,
                rows,
            });
        }
        Ok(counts)
    }

    fn check_integrity(&mut self, database: &str) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for table in self.row_counts(database)? {
            let sql = format!(
                "CHECK TABLE {}.{}",
                quote_ident(database),
                quote_ident(&table.name)
            );
            for row in self.query_rows(&format!("check table {}", table.name), &sql)? {
                let (kind, message) = (
                    text(&row, 2).unwrap_or_default(),
                    text(&row, 3).unwrap_or_default(),
                );
                if kind.eq_ignore_ascii_case("error")
                    || (kind.eq_ignore_ascii_case("status") && !message.eq_ignore_ascii_case("OK"))
                {
                    problems.push(format!("{}: {kind}: {message}", table.name));
                }
            }
        }
        Ok(problems)
    }

    fn ensure_admin_login(&mut self, user: &str, password: &str) -> Result<()> {
        // The mysql_native_password hash computed here, not the password: the SQL text may
        // be logged (general log), the hash is what the server stores anyway.
        let hash = quote_literal(&native_password_hash(password));
        for host in ["%", "localhost"] {
            let account = format!("{}@{}", quote_literal(user), quote_literal(host));
            self.run(
                &format!("create login '{user}'"),
                &format!(
                    "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY PASSWORD {hash}; \
                     ALTER USER {account} IDENTIFIED BY PASSWORD {hash}; \
                     GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION"
                ),
            )?;
        }
        Ok(())
    }
}

/// mysql_native_password's stored form: `*` and the upper-case hex of SHA1(SHA1(password)).
fn native_password_hash(password: &str) -> String {
    use sha1::{Digest, Sha1};
    let twice = Sha1::digest(Sha1::digest(password.as_bytes()));
    format!(
        "*{}",
        twice.iter().map(|b| format!("{b:02X}")).collect::<String>()
    )
}

/// A value for a MySQL option file, quoted so that `#`, quotes and spaces survive.
fn option_value(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The [client] option file the dump tool reads with --defaults-file: credentials and TLS
/// settings stay off its command line (and --defaults-file also keeps /etc/mysql/my.cnf out).
fn client_option_file(args: &ConnectionArgs, server_has_tls: bool) -> String {
    let mut lines = vec!["[client]".to_string()];
    lines.push(format!(
        "user={}",
        option_value(args.login_user.as_deref().unwrap_or("root"))
    ));
    if let Some(password) = &args.login_password {
        lines.push(format!(
            "password={}",
            option_value(password.expose_secret())
        ));
    }
    match &args.login_unix_socket {
        Some(socket) => lines.push(format!(
            "socket={}",
            option_value(&socket.to_string_lossy())
        )),
        None => {
            lines.push(format!(
                "host={}",
                option_value(args.login_host.as_deref().unwrap_or("localhost"))
            ));
            lines.push(format!("port={}", args.port()));
            lines.push("protocol=TCP".into());
        }
    }
    // No connect-timeout here: mariadb-dump refuses it (only the mariadb client knows it); the
    // engine has already connected within connect_timeout before the dump starts.
    let tls = match args.ssl_mode {
        SslMode::Disable => false,
        SslMode::Prefer => server_has_tls && args.login_unix_socket.is_none(),
        _ => true,
    };
    if tls {
        lines.push("ssl".into());
        if let Some(ca) = &args.ca_cert {
            lines.push(format!("ssl-ca={}", option_value(&ca.to_string_lossy())));
        }
        if args.ssl_mode == SslMode::VerifyFull {
            lines.push("ssl-verify-server-cert".into());
        }
    } else {
        lines.push("skip-ssl".into());
    }
    lines.join("\n") + "\n"
}

/// Counts rows per table in a mariadb-dump/mysqldump text stream: CREATE TABLE registers a
/// table, each top-level tuple of an INSERT ... VALUES statement is one row. A statement may
/// span lines (mariadb-dump 10.11 puts each tuple on its own line) and ends at a `;` outside
/// strings. Strings are skipped with their escapes, so parentheses, quotes and semicolons inside
/// data do not count; the dump escapes newlines in data, so no string spans lines.
#[derive(Default)]
pub struct DumpRowCounter {
    tables: Vec<TableRows>,
    binlog: Option<(String, u64)>,
    /// The table whose INSERT statement is still open.
    open_insert: Option<usize>,
}

/// The quoted name right after `prefix` (backticks doubled inside), and the rest of the line.
fn quoted_name<'a>(line: &'a [u8], prefix: &[u8]) -> Option<(String, &'a [u8])> {
    let rest = line.strip_prefix(prefix)?;
    let mut name = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        if rest[i] == b'`' {
            if rest.get(i + 1) == Some(&b'`') {
                name.push(b'`');
                i += 2;
                continue;
            }
            return Some((String::from_utf8_lossy(&name).into_owned(), &rest[i + 1..]));
        }
        name.push(rest[i]);
        i += 1;
    }
    None
}

/// Top-level tuples in (part of) the VALUES of an extended INSERT, and whether the statement
/// ends in this piece.
pub fn count_tuples(values: &[u8]) -> (u64, bool) {
    let (mut depth, mut rows, mut in_string, mut i) = (0u32, 0u64, false, 0);
    while i < values.len() {
        let b = values[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'\'' if values.get(i + 1) == Some(&b'\'') => i += 1,
                b'\'' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'\'' => in_string = true,
                b'(' => {
                    if depth == 0 {
                        rows += 1;
                    }
                    depth += 1;
                }
                b')' => depth = depth.saturating_sub(1),
                b';' if depth == 0 => return (rows, true),
                _ => {}
            }
        }
        i += 1;
    }
    (rows, false)
}

impl DumpRowCounter {
    fn table(&mut self, name: &str) -> usize {
        if let Some(index) = self.tables.iter().position(|t| t.name == name) {
            return index;
        }
        self.tables.push(TableRows {
            schema: None,
            name: name.to_string(),
            rows: 0,
        });
        self.tables.len() - 1
    }

    fn values(&mut self, index: usize, piece: &[u8]) {
        let (rows, ended) = count_tuples(piece);
        self.tables[index].rows += rows;
        self.open_insert = if ended { None } else { Some(index) };
    }
}

impl StreamObserver for DumpRowCounter {
    fn line(&mut self, line: &[u8]) {
        if let Some(index) = self.open_insert {
            self.values(index, line);
        } else if let Some((name, rest)) = quoted_name(line, b"INSERT INTO `") {
            let index = self.table(&name);
            let values = rest.strip_prefix(b" VALUES").unwrap_or(rest);
            self.values(index, values);
        } else if let Some((name, _)) = quoted_name(line, b"CREATE TABLE `") {
            self.table(&name);
        } else if line.starts_with(b"-- CHANGE MASTER TO MASTER_LOG_FILE='") {
            let text = String::from_utf8_lossy(line);
            let file = text.split('\'').nth(1).unwrap_or_default().to_string();
            let pos = text
                .split("MASTER_LOG_POS=")
                .nth(1)
                .and_then(|p| p.trim_end_matches([';', '\n', '\r']).parse().ok());
            if let Some(pos) = pos {
                self.binlog = Some((file, pos));
            }
        }
    }

    fn finish(self: Box<Self>) -> (Vec<TableRows>, serde_json::Value) {
        let snapshot = match &self.binlog {
            Some((file, pos)) => serde_json::json!({"binlog_file": file, "binlog_position": pos}),
            None => {
                serde_json::json!({"binlog_file": null, "note": "binary log off: no position recorded"})
            }
        };
        (self.tables, snapshot)
    }
}

/// A mariadbd started on a prepared physical backup: socket only, no grant checks (the source's
/// passwords are unknown here and nobody else can reach the socket), tuned for checks.
pub struct PhysicalCopy {
    /// Removed (with the copy) when dropped, after the server has stopped.
    _dir: tempfile::TempDir,
    pid_file: std::path::PathBuf,
    connection: ConnectionArgs,
}

impl crate::engine::PhysicalScratch for PhysicalCopy {
    fn connection(&self) -> &ConnectionArgs {
        &self.connection
    }
}

impl Drop for PhysicalCopy {
    fn drop(&mut self) {
        // The directory itself is removed by TempDir's own drop, after this.
        server::stop(&self.pid_file, std::time::Duration::from_secs(60));
    }
}

/// Unpacks an mbstream, runs mariadb-backup --prepare and starts mariadbd on the result.
pub fn start_physical_copy(
    stream: &mut dyn std::io::Read,
    work_dir: &std::path::Path,
) -> Result<PhysicalCopy> {
    let dir = tempfile::Builder::new()
        .prefix("dbc-phys.")
        .tempdir_in(work_dir)
        .map_err(|e| Error::io("create the scratch directory", work_dir, e))?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| Error::io("create", &data, e))?;
    let mbstream = crate::util::find_program("mbstream").map_err(|_| {
        Error::invalid(
            "method physical",
            "mbstream is missing; install the mariadb-backup package",
        )
    })?;
    crate::util::feed_command(
        &mbstream,
        &["-x".as_ref(), "-C".as_ref(), data.as_os_str()],
        stream,
    )?;
    crate::process::Tool::find("mariadb-backup")?
        .package("mariadb-backup")
        .arg("--prepare")
        .arg(format!("--target-dir={}", data.display()))
        .run()?;
    crate::util::chown_recursive(dir.path(), "mysql")?;
    let pid_file = dir.path().join("mysqld.pid");
    let socket = dir.path().join("s.sock");
    server::start(&server::ServerSpec {
        data_dir: data,
        socket: socket.clone(),
        pid_file: pid_file.clone(),
        log_file: dir.path().join("error.log"),
        tmp_dir: dir.path().to_path_buf(),
        options: [
            "--skip-networking",
            "--skip-grant-tables",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=1G",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
        ]
        .map(String::from)
        .to_vec(),
        timeout: std::time::Duration::from_secs(90),
    })
    .map_err(|e| Error::lab("start mariadbd on the restored backup", e.to_string()))?;
    Ok(PhysicalCopy {
        _dir: dir,
        pid_file,
        connection: ConnectionArgs {
            engine: Some(EngineKind::Mysql),
            login_user: Some("root".into()),
            login_unix_socket: Some(socket),
            ssl_mode: SslMode::Disable,
            connect_timeout: 2,
            ..ConnectionArgs::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_rows_are_counted_per_table_without_being_fooled_by_data() {
        let mut counter = Box::new(DumpRowCounter::default());
        for line in [
            "-- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000002', MASTER_LOG_POS=4242;",
            "CREATE TABLE `empty` (",
            "CREATE TABLE `we``ird` (",
            "INSERT INTO `we``ird` VALUES (1,'a (b), c'),(2,'it''s'),(3,'back\\\\'),(4,'x\\'y)');",
            "INSERT INTO `we``ird` VALUES (5,NULL);",
            "INSERT INTO `empty` VALUES\n",
            "(1,'a;b'),\n",
            "(2,'c)'),\n",
            "(3,'d');\n",
            "-- (a comment with (parentheses)) after the statement",
        ] {
            counter.line(line.as_bytes());
        }
        let (tables, snapshot) = counter.finish();
        assert_eq!(tables.len(), 2);
        assert_eq!(
            (tables[0].name.as_str(), tables[0].rows),
            ("empty", 3),
            "one tuple per line"
        );
        assert_eq!((tables[1].name.as_str(), tables[1].rows), ("we`ird", 5));
        assert_eq!(snapshot["binlog_position"], 4242);
    }

    #[test]
    fn option_file_values_are_quoted() {
        let args = ConnectionArgs {
            login_user: Some("u".into()),
            login_password: Some(r#"p"w\#x"#.into()),
            login_host: Some("127.0.0.1".into()),
            ssl_mode: SslMode::VerifyFull,
            ca_cert: Some("/ca.pem".into()),
            ..ConnectionArgs::default()
        };
        let text = client_option_file(&args, true);
        assert!(text.contains(r#"password="p\"w\\#x""#), "{text}");
        assert!(
            text.contains("ssl-verify-server-cert") && text.contains("ssl-ca=\"/ca.pem\""),
            "{text}"
        );
    }

    #[test]
    fn the_native_password_hash_is_what_the_server_computes() {
        // SELECT PASSWORD('secret') on MariaDB 10.11.
        assert_eq!(
            native_password_hash("secret"),
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("we`ird; db"), "`we``ird; db`");
        assert_eq!(quote_literal(r"a'b\c"), r"'a''b\\c'");
    }
}
