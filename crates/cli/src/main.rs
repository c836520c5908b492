//! `dbcadence`: the same operations as the Ansible modules, for people at a terminal, for
//! cron/systemd timers, and as an executable inventory for `ansible-inventory -i`.
//! People-facing flags and tables live here; the work is in dbcadence-core.

mod inventory_script;
mod ops;
mod progress;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dbcadence_core::backup::{self, BackupRequest};
use dbcadence_core::connection::{ConnectionArgs, EngineKind};
use dbcadence_core::inventory::{self, InventoryRequest};
use dbcadence_core::lab::{self, LabRequest};
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
        action: ScheduleAction,
    },
    /// Throwaway PostgreSQL and MariaDB servers on 127.0.0.1 for tests and demos.
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
    /// Back up one database (logical dump, zstd, sha256, manifest, atomic completion).
    Backup {
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long)]
        database: String,
        #[arg(long)]
        backup_dir: PathBuf,
        #[arg(long)]
        instance_id: Option<String>,
        #[arg(long, default_value_t = 3)]
        compression_level: i32,
        /// Also back up roles, grants and tablespaces (MariaDB: users and grants).
        #[arg(long)]
        globals: bool,
        /// PostgreSQL directory format, dumped by --jobs parallel jobs.
        #[arg(long)]
        directory: bool,
        /// Physical copy of the whole instance (mariadb-backup); use --database '*'.
        #[arg(long)]
        physical: bool,
        #[arg(long, default_value_t = 2)]
        jobs: u32,
        /// A local group given read access to the backup (0640/0750 instead of 0600/0700).
        #[arg(long)]
        backup_group: Option<String>,
        /// Say what would be backed up; write nothing.
        #[arg(long)]
        check: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Prove a backup by restoring it into a throwaway server (checksums, integrity, row counts).
    Verify {
        #[arg(long)]
        backup_dir: PathBuf,
        #[arg(long)]
        instance_id: Option<String>,
        #[arg(long)]
        database: Option<String>,
        /// A given backup directory instead of the newest unverified one.
        #[arg(long)]
        backup: Option<PathBuf>,
        #[arg(long, default_value_t = 2)]
        jobs: u32,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Apply retention (grandfather-father-son) to the backups under a directory.
    Prune {
        #[arg(long)]
        backup_dir: PathBuf,
        #[arg(long)]
        instance_id: Option<String>,
        #[arg(long)]
        database: Option<String>,
        #[arg(long)]
        keep_last: Option<u32>,
        #[arg(long)]
        keep_daily: Option<u32>,
        #[arg(long)]
        keep_weekly: Option<u32>,
        #[arg(long)]
        keep_monthly: Option<u32>,
        /// List what would be removed; remove nothing.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Backups on disk.
    Backups {
        #[command(subcommand)]
        action: BackupsAction,
    },
    /// Discover instances and databases; also an Ansible inventory script (--list, --host).
    Inventory {
        /// Sources file (YAML). Default: $DBCADENCE_SOURCES.
        #[arg(long, env = "DBCADENCE_SOURCES")]
        sources: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Ansible inventory script mode: print every group and host as JSON.
        #[arg(long, conflicts_with = "host")]
        list: bool,
        /// Ansible inventory script mode: print the variables of one host.
        #[arg(long)]
        host: Option<String>,
        /// Keep the fleet's shape in this file and report changes against it.
        #[arg(long)]
        snapshot: Option<PathBuf>,
        /// With --snapshot: report changes without writing the file.
        #[arg(long)]
        check: bool,
        /// Endpoints probed at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds one endpoint may take in all.
        #[arg(long, default_value_t = 30)]
        probe_timeout: u64,
        #[command(flatten)]
        run: RunArgs,
    },
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

#[derive(Subcommand)]
enum ScheduleAction {
    /// Check a schedule file; every problem is printed with the path of its key.
    Validate { file: PathBuf },
    /// Print the JSON Schema of schedule files.
    Schema,
    /// Print the shipped templates (PostgreSQL and MySQL/MariaDB x production, staging, development).
    Init,
    /// Turn a schedule into systemd timers (or a cron file) that call `dbcadence run`.
    Install(Box<ops::InstallArgs>),
}

#[derive(Subcommand)]
enum BackupsAction {
    /// Complete backups with size, age and verified status (partial ones are never listed).
    List {
        #[arg(long)]
        backup_dir: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum LabAction {
    /// Start (or reuse) servers; writes DIR/lab.json, DIR/inventory.yml and DIR/sources.yml.
    Up {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        postgres: usize,
        #[arg(long, default_value_t = 1)]
        mysql: usize,
        /// PostgreSQL streaming replicas (pg<i>r follows pg<i>).
        #[arg(long, default_value_t = 0)]
        pg_replicas: usize,
        /// Create sample databases (app and a dated backup copy of it).
        #[arg(long)]
        seed: bool,
    },
    /// Show which servers run.
    Status {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Stop every server (idempotent).
    Down {
        #[arg(long)]
        dir: PathBuf,
        /// Also delete the directory.
        #[arg(long)]
        purge: bool,
    },
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
        Command::Schedule { action } => match action {
            ScheduleAction::Schema => print_json(&dbcadence_core::schedule::json_schema()),
            ScheduleAction::Install(args) => ops::install(*args),
            ScheduleAction::Init => {
                print!("{}", dbcadence_core::schedule::SHIPPED_TEMPLATES);
                Ok(())
            }
            ScheduleAction::Validate { file } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| dbcadence_core::Error::io("read the schedule file", &file, e))?;
                match dbcadence_core::schedule::parse(&text) {
                    Ok(schedule) => {
                        let tasks: usize = schedule.templates.iter().map(|t| t.tasks.len()).sum();
                        println!(
                            "{}: valid ({} templates, {tasks} task schedules, {} assignments)",
                            file.display(),
                            schedule.templates.len(),
                            schedule.assignments.len()
                        );
                        Ok(())
                    }
                    Err(problems) => {
                        for p in &problems {
                            println!("{}: {}: {}", file.display(), p.path, p.message);
                        }
                        Err(dbcadence_core::Error::invalid(
                            "schedule",
                            format!("{} problems in {}", problems.len(), file.display()),
                        ))
                    }
                }
            }
        },
        Command::Lab { action } => match action {
            LabAction::Up {
                dir,
                postgres,
                mysql,
                pg_replicas,
                seed,
            } => {
                let lab = lab::up(&LabRequest {
                    dir,
                    postgres,
                    mysql,
                    pg_replicas,
                    seed,
                    tuned_for_loading: false,
                })?;
                for i in &lab.instances {
                    println!(
                        "{:<5} {:<10} {:<12} 127.0.0.1:{:<6} user {} (password in {})",
                        i.name,
                        i.engine,
                        i.env,
                        i.port,
                        i.user,
                        i.password_file.display()
                    );
                }
                println!("inventory: {}", lab.dir.join("inventory.yml").display());
                println!("sources:   {}", lab.dir.join("sources.yml").display());
                Ok(())
            }
            LabAction::Status { dir, format } => {
                let status = lab::status(&dir)?;
                if format == Format::Json {
                    return print_json(&status);
                }
                for s in status {
                    println!(
                        "{:<5} {:<10} 127.0.0.1:{:<6} {}",
                        s.name,
                        s.engine,
                        s.port,
                        if s.running { "running" } else { "stopped" }
                    );
                }
                Ok(())
            }
            LabAction::Down { dir, purge } => {
                for line in lab::down(&dir, purge)? {
                    println!("{line}");
                }
                Ok(())
            }
        },
        Command::Backup {
            connect,
            database,
            backup_dir,
            instance_id,
            compression_level,
            globals,
            directory,
            physical,
            jobs,
            backup_group,
            check,
            format,
            run,
        } => {
            let request = BackupRequest {
                backup_group,
                action: backup::BackupAction::Backup,
                method: if physical {
                    backup::BackupMethod::Physical
                } else {
                    backup::BackupMethod::Logical
                },
                retention: None,
                globals,
                format: if directory {
                    dbcadence_core::engine::DumpFormat::Directory
                } else {
                    dbcadence_core::engine::DumpFormat::Custom
                },
                jobs,
                connection: connect.connection()?,
                database,
                backup_dir,
                instance_id,
                compression_level,
                compression_threads: 0,
                lock_timeout: 60,
                run: run.options()?,
            };
            let done = backup::run(&request, check)?;
            for w in &done.warnings {
                eprintln!("dbcadence: warning: {w}");
            }
            match (format, &done.output.path) {
                (Format::Json, _) => print_json(&done.output),
                // The path alone on stdout, for scripts; what happened on stderr.
                (Format::Table, Some(path)) => {
                    eprintln!("dbcadence: {}", done.msg);
                    println!("{}", path.display());
                    Ok(())
                }
                (Format::Table, None) => {
                    println!("{}", done.msg);
                    Ok(())
                }
            }
        }
        Command::Verify {
            backup_dir,
            instance_id,
            database,
            backup,
            jobs,
            format,
            run,
        } => {
            let request = dbcadence_core::verify::VerifyRequest {
                backup_dir,
                instance_id,
                database,
                backup,
                jobs,
                run: run.options()?,
                ..Default::default()
            };
            let done = dbcadence_core::verify::run(&request, false)?;
            let (report, warnings) = (done.output, done.warnings);
            for w in &warnings {
                eprintln!("dbcadence: warning: {w}");
            }
            if format == Format::Json {
                print_json(&report)?;
            } else if report.nothing_to_verify {
                println!("{}", report.reason);
            } else {
                println!(
                    "{}: {}",
                    if report.verified {
                        "verified"
                    } else {
                        "NOT VERIFIED"
                    },
                    report.reason
                );
                println!("{}", report.backup.display());
            }
            if report.verified || report.nothing_to_verify {
                Ok(())
            } else {
                Err(dbcadence_core::Error::invalid(
                    "backup",
                    format!("{} is not verified", report.backup.display()),
                ))
            }
        }
        Command::Prune {
            backup_dir,
            instance_id,
            database,
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            check,
            run,
        } => {
            let policy = dbcadence_core::retention::RetentionPolicy {
                keep_last,
                keep_daily,
                keep_weekly,
                keep_monthly,
            };
            if policy.is_empty() {
                return Err(dbcadence_core::Error::invalid(
                    "prune",
                    "give at least one of --keep-last, --keep-daily, --keep-weekly, --keep-monthly",
                ));
            }
            let (plan, warnings) = dbcadence_core::retention::run(
                &backup_dir,
                instance_id.as_deref(),
                database.as_deref(),
                &policy,
                check,
                &run.options()?,
            )?;
            for w in &warnings {
                eprintln!("dbcadence: warning: {w}");
            }
            let verb = if check { "would remove" } else { "removed" };
            for path in &plan.delete {
                println!("{verb} {}", path.display());
            }
            println!("kept {}, {verb} {}", plan.keep.len(), plan.delete.len());
            Ok(())
        }
        Command::Backups {
            action: BackupsAction::List { backup_dir, format },
        } => {
            // Damaged backup directories are never hidden: they are named on stderr (and the
            // exit code stays 0: listing worked).
            let listing = backup::scan(&backup_dir);
            for damaged in &listing.damaged {
                eprintln!("dbcadence: warning: {}", damaged.warning());
            }
            if format == Format::Json {
                return print_json(&listing.backups);
            }
            print!("{}", table::backups(&listing.backups));
            Ok(())
        }
        Command::Inventory {
            sources,
            format,
            list,
            host,
            snapshot,
            check,
            concurrency,
            probe_timeout,
            run,
        } => {
            let request = InventoryRequest {
                sources,
                snapshot_path: snapshot,
                concurrency,
                probe_timeout,
                run: run.options()?,
                ..InventoryRequest::default()
            };
            if list || host.is_some() {
                let outcome = inventory::run(&request, true)?;
                for w in &outcome.warnings {
                    eprintln!("dbcadence: warning: {w}");
                }
                let ansible = inventory_script::ansible_inventory(&outcome.output);
                return match host {
                    Some(name) => print_json(
                        &ansible["_meta"]["hostvars"]
                            .get(&name)
                            .cloned()
                            .unwrap_or_else(|| serde_json::json!({})),
                    ),
                    None => print_json(&ansible),
                };
            }
            let outcome = inventory::run(&request, check)?;
            for w in &outcome.warnings {
                eprintln!("dbcadence: warning: {w}");
            }
            match format {
                Format::Json => print_json(&outcome.output),
                Format::Table => {
                    print!("{}", table::inventory(&outcome.output));
                    if outcome.changed {
                        println!("\nthe fleet changed since the last snapshot");
                    }
                    Ok(())
                }
            }
        }
    }
}
