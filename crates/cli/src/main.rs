//! `dbcadence`: the same operations as the Ansible modules, for people at a terminal, for
//! cron/systemd timers, and as an executable inventory for `ansible-inventory -i`.
//! People-facing flags and tables live here; the work is in dbcadence-core.

mod inventory_script;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
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
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Throwaway PostgreSQL and MariaDB servers on 127.0.0.1 for tests and demos.
    Lab {
        #[command(subcommand)]
        action: LabAction,
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

#[derive(clap::Args)]
struct RunArgs {
    /// Ledger file. Default: $DBCADENCE_LEDGER or the system default.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Textfile-collector directory for metrics. Default: $DBCADENCE_METRICS_DIR.
    #[arg(long)]
    metrics_dir: Option<PathBuf>,
    /// Change record id to attach to the ledger record.
    #[arg(long)]
    change_id: Option<String>,
}

impl RunArgs {
    fn options(&self) -> RunOptions {
        RunOptions {
            ledger_path: self.ledger.clone(),
            metrics_dir: self.metrics_dir.clone(),
            change_id: self.change_id.clone(),
        }
    }
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
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dbcadence: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> dbcadence_core::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| dbcadence_core::Error::invalid("output", e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn run(cli: Cli) -> dbcadence_core::Result<()> {
    match cli.command {
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
                run: run.options(),
                ..InventoryRequest::default()
            };
            if list || host.is_some() {
                let outcome = inventory::run(&request, true)?;
                for w in &outcome.warnings {
                    eprintln!("dbcadence: warning: {w}");
                }
                let ansible = inventory_script::ansible_inventory(&outcome.report);
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
                Format::Json => print_json(&outcome.report),
                Format::Table => {
                    print!("{}", table::inventory(&outcome.report));
                    if outcome.changed {
                        println!("\nthe fleet changed since the last snapshot");
                    }
                    Ok(())
                }
            }
        }
    }
}
