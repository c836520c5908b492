//! MySQL and MariaDB: every SQL statement dbcadence sends to them, and every tool it runs
//! against them. MariaDB is a flavour of mysql, told apart by its version string. The Engine
//! implementation here is a table of contents: connecting lives in conn.rs, what the server
//! says about itself in facts.rs, dump and restore plans in dump.rs (the dump's row counter in
//! dump_parser.rs), proofs of a restore in checks.rs, physical copies in physical.rs, private
//! servers in server.rs and lab.rs.
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

mod audit;
mod checks;
mod conn;
mod dump;
mod dump_parser;
mod facts;
mod globals;
pub(crate) mod lab;
mod load;
mod load_pool;
mod logs;
mod patch;
pub(crate) mod physical;
mod rows;
pub mod server;
mod tune;

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
        self.read_server_facts()
    }

    fn databases(&mut self) -> Result<Vec<DatabaseFacts>> {
        self.list_databases()
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
        jobs: u32,
        work_dir: &std::path::Path,
    ) -> Result<DumpPlan> {
        self.plan_dump(database, format, jobs, work_dir)
    }

    fn dump_privilege_problems(&mut self, database: &str) -> Result<Vec<String>> {
        self.missing_dump_privileges(database)
    }

    fn physical_plan(&mut self) -> Result<DumpPlan> {
        self.plan_physical()
    }

    fn dump_globals(&mut self) -> Result<GlobalsDump> {
        self.read_globals()
    }

    fn restore_plan(&mut self, database: &str, jobs: u32) -> Result<RestorePlan> {
        self.plan_restore(database, jobs)
    }

    fn load_dump(
        &mut self,
        database: &str,
        dump: &mut dyn std::io::BufRead,
        jobs: u32,
    ) -> Result<Option<crate::engine::FastLoad>> {
        let plan = self.plan_restore(database, jobs)?;
        let connection = self.args.clone();
        load::load_if_understood(&plan, (&connection, database), dump, jobs)
    }

    fn object_definitions(
        &mut self,
        database: &str,
    ) -> Result<Option<Vec<crate::engine::ObjectDefinition>>> {
        self.read_object_definitions(database).map(Some)
    }

    fn row_counts(&mut self, database: &str) -> Result<Vec<TableRows>> {
        self.count_table_rows(database)
    }

    fn check_integrity(&mut self, database: &str) -> Result<Vec<String>> {
        self.run_integrity_check(database)
    }

    fn tune_findings(
        &mut self,
        scope: &crate::engine::TuneScope,
    ) -> Result<(Vec<crate::tune::model::Finding>, Vec<String>)> {
        self.find_tuning(scope)
    }

    fn run_fix(
        &mut self,
        fix: &crate::tune::model::Fix,
        limits: &crate::engine::TuneLimits,
    ) -> Result<()> {
        self.run_tuning_fix(fix, limits)
    }

    fn run_timed(&mut self, sql: &str) -> Result<()> {
        self.run_statement(sql)
    }

    fn audit_checks(
        &mut self,
        allowed_superusers: &[String],
    ) -> Result<(Vec<crate::audit::model::AuditFinding>, Vec<String>)> {
        self.run_audit_checks(allowed_superusers)
    }

    fn server_log(&mut self) -> Result<Option<std::path::PathBuf>> {
        self.current_log_file()
    }

    fn patch_state(&mut self) -> Result<crate::patch::ServerState> {
        self.read_patch_state()
    }

    fn after_minor_upgrade(&mut self) -> Result<Vec<String>> {
        self.run_upgrade_tool()
    }

    fn count_tables(&mut self, database: &str) -> Result<u64> {
        self.count_tables_in(database)
    }

    fn restore_globals(&mut self, sql: &str, skip_existing: bool) -> Result<Vec<String>> {
        self.apply_globals(sql, skip_existing)
    }

    fn server_logs(&mut self) -> Result<crate::logs::model::ServerLogs> {
        self.read_server_logs()
    }

    fn purge_binary_logs_to(&mut self, name: &str) -> Result<()> {
        self.purge_binlogs_to(name)
    }

    fn reopen_log(&mut self, kind: crate::logs::model::TextLogKind) -> Result<()> {
        self.reopen_text_log(kind)
    }

    fn replica_source_file(&mut self) -> Result<Option<String>> {
        self.executed_source_file()
    }

    fn statement_stats(
        &mut self,
        limit: u32,
    ) -> Result<Option<Vec<crate::tune::model::StatementStat>>> {
        self.read_statement_stats(limit)
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
