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
    AtRestEncryption, DatabaseFacts, DatabaseKind, Engine, Role, ServerFacts, connect_hint,
};
use crate::{Error, Result};

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
        .pass(args.login_password.clone())
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

    fn ensure_admin_login(&mut self, user: &str, password: &str) -> Result<()> {
        for host in ["%", "localhost"] {
            let account = format!("{}@{}", quote_literal(user), quote_literal(host));
            let pw = quote_literal(password);
            self.run(
                &format!("create login '{user}'"),
                &format!(
                    "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {pw}; \
                     ALTER USER {account} IDENTIFIED BY {pw}; \
                     GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION"
                ),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("we`ird; db"), "`we``ird; db`");
        assert_eq!(quote_literal(r"a'b\c"), r"'a''b\\c'");
    }
}
