//! PostgreSQL: every SQL statement dbcadence sends to a PostgreSQL server, and every tool it
//! runs against one. The Engine implementation here is a table of contents: connecting lives
//! in conn.rs, what the server says about itself in facts.rs, dump and restore plans in
//! dump.rs, proofs of a restore in checks.rs, physical copies in physical.rs, private servers
//! in server.rs and lab.rs, the ledger table in ledger.rs.
//!
//! The blocking `postgres::Client` runs its own small runtime; callers keep it off tokio
//! runtime threads (reference pitfall 9), which the core guarantees by using plain threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use postgres::config::SslMode as PgSslMode;
use postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connection::{ConnectionArgs, EngineKind, SslMode};
use crate::engine::{
    AtRestEncryption, DatabaseFacts, DatabaseKind, DumpFormat, DumpOutput, DumpPlan, Engine,
    GlobalsDump, LabEngine, RestoreInput, RestorePlan, Role, ServerFacts, TableRows, connect_hint,
};
use crate::process::Tool;
use crate::secret::ExposeSecret;
use crate::{Error, Result};

mod audit;
mod checks;
mod conn;
pub use conn::PostgresEngine;
use conn::{conninfo_value, libpq_env};
mod dump;
mod facts;
mod globals;
pub(crate) mod lab;
pub mod ledger;
mod logs;
mod patch;
pub(crate) mod physical;
mod plans;
pub mod server;
mod tune;

pub use physical::start_physical_copy;

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

/// A server program (postgres, initdb) from `bin_dir`, or from the system's newest version.
/// Binaries outside the system's packages (an older release unpacked for the lab) find their
/// shared libraries in the `lib` directory beside `bin`, as their own build expects.
pub(crate) fn server_program(bin_dir: Option<&Path>, program: &str) -> Result<Tool> {
    let Some(bin) = bin_dir else {
        return Ok(Tool::new(self::bin_dir()?.join(program)).package("postgresql"));
    };
    let mut tool = Tool::new(bin.join(program)).package("postgresql");
    let lib = bin.join("../lib");
    if lib.is_dir() && !bin.starts_with("/usr/lib/postgresql") {
        tool = tool.env("LD_LIBRARY_PATH", lib);
    }
    Ok(tool)
}

/// The release of the server binaries in `bin_dir` (default: the system's), from
/// `postgres --version`: "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)" gives 15.20.
pub(crate) fn binaries_version(bin_dir: Option<&Path>) -> Result<String> {
    let tool = server_program(bin_dir, "postgres")?.arg("--version");
    let text = tool.read()?;
    text.split_whitespace()
        .skip_while(|w| *w != "(PostgreSQL)")
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| {
            Error::invalid(
                "postgres --version",
                format!("unexpected output '{}'", text.trim()),
            )
        })
}

/// Quotes an identifier: `we"ird; db` becomes `"we""ird; db"`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal (standard_conforming_strings is on in every supported version).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl Engine for PostgresEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Postgresql
    }

    fn server_facts(&mut self) -> Result<ServerFacts> {
        self.read_server_facts()
    }

    fn databases(&mut self) -> Result<Vec<DatabaseFacts>> {
        self.list_databases()
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
        self.update_outdated_extensions()
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
