//! `dbcadence lab`: throwaway PostgreSQL and MariaDB servers for tests and demos, on 127.0.0.1
//! or on test hosts in network namespaces reached over SSH.

use std::path::PathBuf;

use clap::Subcommand;
use dbcadence_core::Result;
use dbcadence_core::lab::{self, LabRequest};

use crate::{Format, print_json};

#[derive(Subcommand)]
pub(crate) enum LabAction {
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
        /// PostgreSQL server binaries for new primaries (e.g. an older minor release to
        /// patch); default: the system's newest.
        #[arg(long)]
        pg_bin_dir: Option<PathBuf>,
        /// Test hosts (host1..N), each in its own network namespace with an sshd and
        /// --postgres/--mysql servers of its own on its address (root only).
        #[arg(long, default_value_t = 0)]
        hosts: usize,
        /// One more test host, `runner`, without servers: where backups are kept and
        /// verified.
        #[arg(long)]
        runner: bool,
        /// Also start prometheus-node-exporter (textfile collector on DIR/metrics) and a
        /// Prometheus server with the project's alert rules, on free 127.0.0.1 ports.
        #[arg(long)]
        monitoring: bool,
        /// Also start Garage (an S3-compatible object store) with a bucket and a key, on
        /// free 127.0.0.1 ports: a repository for backups off the host.
        #[arg(long)]
        s3: bool,
    },
    /// The lab's package upgrade: INSTANCE starts with other binaries from its next restart
    /// (the running server is left alone, as after apt-get upgrade).
    Upgrade {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        instance: String,
        /// The binaries to switch to; default: the system's newest.
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Stop INSTANCE and start it again with its recorded binaries.
    Restart {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        instance: String,
    },
    /// INSTANCE's installed and candidate releases, shaped like `apt-cache policy` (what
    /// db_patch reads in the lab).
    Packages {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        instance: String,
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

pub(crate) fn lab(action: LabAction) -> Result<()> {
    match action {
        LabAction::Up {
            dir,
            postgres,
            mysql,
            pg_replicas,
            seed,
            pg_bin_dir,
            hosts,
            runner,
            monitoring,
            s3,
        } => {
            let lab = lab::up(&LabRequest {
                dir,
                postgres,
                mysql,
                pg_replicas,
                seed,
                tuned_for_loading: false,
                pg_bin_dir,
                hosts,
                runner,
                monitoring,
                s3,
            })?;
            for h in &lab.hosts {
                println!(
                    "{:<12} host       ssh root@{} (key {})",
                    h.name,
                    h.address,
                    lab.dir.join("ssh/lab_key").display()
                );
            }
            for i in &lab.instances {
                println!(
                    "{:<12} {:<10} {:<12} {}:{:<6} user {} (password in {})",
                    i.name,
                    i.engine,
                    i.env,
                    i.host,
                    i.port,
                    i.user,
                    i.password_file.display()
                );
            }
            if let Some(m) = &lab.monitoring {
                println!(
                    "metrics:    {} (node-exporter on 127.0.0.1:{})",
                    m.textfile_dir.display(),
                    m.node_exporter_port
                );
                println!("prometheus: {}", m.prometheus_url());
            }
            if let Some(s) = &lab.s3 {
                println!(
                    "s3:         {} bucket {} region {} (key {} in {})",
                    s.endpoint(),
                    s.bucket,
                    dbcadence_core::lab::s3::LAB_REGION,
                    s.access_key_id,
                    s.credentials_file.display()
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
            if let Some(m) = lab::Lab::load(&dir)?.monitoring {
                println!(
                    "monitoring prometheus {} (node-exporter 127.0.0.1:{}) {}",
                    m.prometheus_url(),
                    m.node_exporter_port,
                    if m.running() { "running" } else { "stopped" }
                );
            }
            if let Some(s) = lab::Lab::load(&dir)?.s3 {
                println!(
                    "s3         garage {} bucket {} {}",
                    s.endpoint(),
                    s.bucket,
                    if s.pid().is_some() {
                        "running"
                    } else {
                        "stopped"
                    }
                );
            }
            Ok(())
        }
        LabAction::Upgrade {
            dir,
            instance,
            bin_dir,
        } => {
            let upgraded = lab::upgrade(&dir, &instance, bin_dir)?;
            println!(
                "{instance}: starts with {} from its next restart",
                upgraded
                    .bin_dir
                    .map_or("the system's binaries".into(), |d| d.display().to_string())
            );
            Ok(())
        }
        LabAction::Restart { dir, instance } => {
            lab::restart(&dir, &instance)?;
            println!("{instance}: restarted");
            Ok(())
        }
        LabAction::Packages { dir, instance } => {
            print!("{}", lab::packages(&dir, &instance)?);
            Ok(())
        }
        LabAction::Down { dir, purge } => {
            for line in lab::down(&dir, purge)? {
                println!("{line}");
            }
            Ok(())
        }
    }
}
