//! MySQL and MariaDB: every SQL statement dbcadence sends to them. MariaDB is a flavour of
//! mysql, told apart by its version string.
//!
//! mysql_async needs a tokio runtime; each connection owns a current-thread runtime and the
//! engine stays synchronous like the rest of the core.

use std::collections::BTreeMap;

use crate::connection::EngineKind;
use crate::engine::{
    AtRestEncryption, DatabaseFacts, DatabaseKind, DumpFormat, DumpOutput, DumpPlan, Engine,
    GlobalsDump, LabEngine, RestoreInput, RestorePlan, Role, ServerFacts, TableRows,
};
use crate::{Error, Result};

mod conn;
mod dump_parser;
pub(crate) mod lab;
mod physical;
pub mod server;

pub use conn::MysqlEngine;
pub use dump_parser::{DumpRowCounter, count_tuples};
pub use physical::start_physical_copy;

use conn::*;

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
}

impl LabEngine for MysqlEngine {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{ConnectionArgs, SslMode};
    use crate::engine::StreamObserver;

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
