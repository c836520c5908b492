//! `dbcadence`: the same operations as the Ansible modules, for people at a terminal, for
//! cron/systemd timers, and as an executable inventory for `ansible-inventory -i`.
//! People-facing flags and tables live here; the work is in dbcadence-core.

mod commands;
mod inventory_script;
mod ops;
mod progress;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dbcadence_core::connection::{ConnectionArgs, EngineKind};
use dbcadence_core::run::RunOptions;

#[derive(Parser)]
#[command(
    name = "dbcadence",
    version,
    about = "Database maintenance schedules that run themselves and can prove it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Schedule compliance and the success-criteria scorecard, from the ledger.
    Report(ops::ReportArgs),
    /// What ran: the newest records, export as JSON lines, import into another store.
    Ledger {
        #[command(subcommand)]
        action: ops::LedgerAction,
    },
    /// Unplanned downtime incidents for the scorecard.
    Incident {
        #[command(subcommand)]
        action: ops::IncidentAction,
    },
    /// Alert accuracy feedback for the scorecard.
    Alert {
        #[command(subcommand)]
        action: ops::AlertAction,
    },
    /// Run one task of one schedule template for every database that follows it (what the
    /// timers call).
    Run(ops::RunTaskArgs),
    /// Print the metrics file (Prometheus text format) as node_exporter reads it.
    Metrics {
        /// Default: $DBCADENCE_METRICS_DIR.
        #[arg(long)]
        metrics_dir: Option<PathBuf>,
    },
    /// Schedules as code: validate a file, print the JSON Schema or the shipped templates.
    Schedule {
        #[command(subcommand)]
        action: commands::ScheduleAction,
    },
    /// Throwaway PostgreSQL and MariaDB servers on 127.0.0.1 for tests and demos.
    Lab {
        #[command(subcommand)]
        action: commands::LabAction,
    },
    /// Back up one database (logical dump, zstd, sha256, manifest, atomic completion).
    Backup(commands::BackupArgs),
    /// Prove a backup by restoring it into a throwaway server (checksums, integrity, row counts).
    Verify(commands::VerifyArgs),
    /// Restore a backup into a server under a database name (the newest verified, a given
    /// one, or the newest before a time); --dry-run for the plan.
    Restore(commands::RestoreArgs),
    /// Apply retention (grandfather-father-son) to the backups under a directory.
    Prune(commands::PruneArgs),
    /// Backups on disk.
    Backups {
        #[command(subcommand)]
        action: commands::BackupsAction,
    },
    /// Find what slows a database down, apply the allowed fixes under timeouts, measure the
    /// gain with a workload.
    Tune(commands::TuneArgs),
    /// Security audit of a server (accounts, authentication, TLS, logging, versions), or the
    /// failed logins in its log (--auth-failures).
    Audit(commands::AuditArgs),
    /// Log retention that keeps point-in-time recovery possible: text logs rotated,
    /// compressed and removed; binary logs purged no further than backups and replicas allow.
    Logs(commands::LogsArgs),
    /// A server's patch level and the gates a patch must pass; with --apply the minor-release
    /// patch itself (upgrade, restart, post-validation).
    Patch(commands::PatchArgs),
    /// Change records: create, move through their lifecycle, show, export for a CMDB.
    Change {
        #[command(subcommand)]
        command: commands::ChangeCommand,
    },
    /// Discover instances and databases; also an Ansible inventory script (--list, --host).
    Inventory(commands::InventoryArgs),
}

/// Connection flags; the password comes from a file or an environment variable, never a flag.
#[derive(clap::Args)]
struct ConnectArgs {
    #[arg(long, value_enum)]
    engine: EngineArg,
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    port: Option<u16>,
    #[arg(long)]
    user: Option<String>,
    /// File holding the password (first line).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[arg(long, default_value = "DBCADENCE_PASSWORD")]
    password_env: String,
    #[arg(long)]
    socket: Option<PathBuf>,
    /// disable, prefer, require, verify-ca or verify-full.
    #[arg(long, default_value = "prefer")]
    ssl_mode: String,
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

/// The first line of a secret file (a password file may end with a newline or carry notes).
fn first_line(path: &std::path::Path, action: &'static str) -> dbcadence_core::Result<String> {
    Ok(std::fs::read_to_string(path)
        .map_err(|e| dbcadence_core::Error::io(action, path, e))?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    Postgresql,
    Mysql,
}

impl ConnectArgs {
    fn connection(&self) -> dbcadence_core::Result<ConnectionArgs> {
        let password = match &self.password_file {
            Some(path) => Some(first_line(path, "read the password file")?),
            None => std::env::var(&self.password_env).ok(),
        };
        let ssl_mode = serde_json::from_value(serde_json::Value::String(self.ssl_mode.clone()))
            .map_err(|_| {
                dbcadence_core::Error::invalid(
                    "--ssl-mode",
                    "use disable, prefer, require, verify-ca or verify-full",
                )
            })?;
        Ok(ConnectionArgs {
            engine: Some(match self.engine {
                EngineArg::Postgresql => EngineKind::Postgresql,
                EngineArg::Mysql => EngineKind::Mysql,
            }),
            login_host: self.host.clone(),
            login_port: self.port,
            login_user: self.user.clone(),
            login_password: password.map(Into::into),
            login_unix_socket: self.socket.clone(),
            ssl_mode,
            ca_cert: self.ca_cert.clone(),
            connect_timeout: dbcadence_core::connection::default_connect_timeout(),
            ..ConnectionArgs::default()
        })
    }
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// Ledger file. Default: $DBCADENCE_LEDGER or the system default.
    #[arg(long)]
    pub(crate) ledger: Option<PathBuf>,
    /// Shared ledger in PostgreSQL: postgresql://user@host:port/db?sslmode=..&table=..
    /// (no password in the URL). Default: $DBCADENCE_LEDGER_URL.
    #[arg(long)]
    ledger_url: Option<String>,
    /// File holding the ledger database's password. Default: $DBCADENCE_LEDGER_PASSWORD.
    #[arg(long)]
    ledger_password_file: Option<PathBuf>,
    /// Textfile-collector directory for metrics. Default: $DBCADENCE_METRICS_DIR.
    #[arg(long)]
    pub(crate) metrics_dir: Option<PathBuf>,
    /// Change record id to attach to the ledger record.
    #[arg(long)]
    change_id: Option<String>,
}

impl RunArgs {
    pub(crate) fn options(&self) -> dbcadence_core::Result<RunOptions> {
        let ledger_password = self
            .ledger_password_file
            .as_ref()
            .map(|path| first_line(path, "read the ledger password file"))
            .transpose()?;
        Ok(RunOptions {
            ledger_path: self.ledger.clone(),
            ledger_url: self.ledger_url.clone(),
            ledger_password: ledger_password.map(Into::into),
            metrics_dir: self.metrics_dir.clone(),
            change_id: self.change_id.clone(),
        })
    }
}

fn main() -> ExitCode {
    progress::install();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dbcadence: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> dbcadence_core::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| dbcadence_core::Error::invalid("output", e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn run(cli: Cli) -> dbcadence_core::Result<()> {
    match cli.command {
        Command::Report(args) => ops::report(args),
        Command::Ledger { action } => ops::ledger(action),
        Command::Incident { action } => ops::incident(action),
        Command::Alert { action } => ops::alert(action),
        Command::Metrics { metrics_dir } => ops::metrics(metrics_dir),
        Command::Run(args) => ops::run_task(args),
        Command::Schedule { action } => commands::schedule(action),
        Command::Lab { action } => commands::lab(action),
        Command::Backup(args) => commands::backup(args),
        Command::Verify(args) => commands::verify(args),
        Command::Restore(args) => commands::restore(args),
        Command::Prune(args) => commands::prune(args),
        Command::Backups {
            action:
                commands::BackupsAction::List {
                    backup_dir,
                    repository,
                    format,
                },
        } => commands::backups(backup_dir, repository, format),
        Command::Inventory(args) => commands::inventory(args),
        Command::Tune(args) => commands::tune(args),
        Command::Audit(args) => commands::audit(args),
        Command::Patch(args) => commands::patch(args),
        Command::Logs(args) => commands::logs(args),
        Command::Change { command } => commands::change(command),
    }
}
