//! `dbcadence backup`, `verify`, `prune` and `backups list`: the operations of db_backup and
//! db_verify for people and timers. The path of a new backup alone goes to stdout, for
//! scripts; what happened goes to stderr.

use std::path::PathBuf;

use clap::Subcommand;
use dbcadence_core::Result;
use dbcadence_core::backup::{self, BackupRequest};

use crate::{ConnectArgs, Format, RunArgs, print_json, table};

#[derive(clap::Args)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    #[arg(long)]
    pub(crate) database: String,
    #[arg(long, required_unless_present = "repository")]
    pub(crate) backup_dir: Option<PathBuf>,
    /// An S3-compatible repository instead of --backup-dir: a YAML or JSON file holding the
    /// module's `repository` option (endpoint, region, bucket, prefix, credentials...).
    #[arg(long)]
    pub(crate) repository: Option<PathBuf>,
    #[arg(long)]
    pub(crate) instance_id: Option<String>,
    #[arg(long, default_value_t = 3)]
    pub(crate) compression_level: i32,
    /// Also back up roles, grants and tablespaces (MariaDB: users and grants).
    #[arg(long)]
    pub(crate) globals: bool,
    /// PostgreSQL directory format, dumped by --jobs parallel jobs.
    #[arg(long)]
    pub(crate) directory: bool,
    /// Physical copy of the whole instance (mariadb-backup); use --database '*'.
    #[arg(long)]
    pub(crate) physical: bool,
    #[arg(long, default_value_t = 2)]
    pub(crate) jobs: u32,
    /// A local group given read access to the backup (0640/0750 instead of 0600/0700).
    #[arg(long)]
    pub(crate) backup_group: Option<String>,
    /// Say what would be backed up; write nothing.
    #[arg(long)]
    pub(crate) check: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Backs up one database.
pub(crate) fn backup(args: BackupArgs) -> Result<()> {
    let BackupArgs {
        connect,
        database,
        backup_dir,
        repository,
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
    } = args;
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
        backup_dir: backup_dir.unwrap_or_default(),
        repository: repository.as_deref().map(read_repository).transpose()?,
        copy_to: None,
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

/// An S3 repository described in a YAML or JSON file (the modules' `repository` option).
pub(crate) fn read_repository(
    path: &std::path::Path,
) -> Result<dbcadence_core::repository::S3Repository> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| dbcadence_core::Error::io("read the repository file", path, e))?;
    serde_yaml_ng::from_str(&text).map_err(|e| {
        dbcadence_core::Error::invalid(
            format!("repository file '{}'", path.display()),
            e.to_string(),
        )
    })
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    #[arg(long, required_unless_present = "repository")]
    pub(crate) backup_dir: Option<PathBuf>,
    /// Verify backups of an S3-compatible repository (a YAML or JSON file holding the
    /// module's `repository` option) instead of --backup-dir.
    #[arg(long)]
    pub(crate) repository: Option<PathBuf>,
    #[arg(long)]
    pub(crate) instance_id: Option<String>,
    #[arg(long)]
    pub(crate) database: Option<String>,
    /// A given backup directory instead of the newest unverified one.
    #[arg(long)]
    pub(crate) backup: Option<PathBuf>,
    /// Where the throwaway scratch server lives; default: /dev/shm when the restore fits
    /// comfortably in memory, else /tmp.
    #[arg(long)]
    pub(crate) scratch_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    pub(crate) jobs: u32,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Verifies one backup; an unverified backup is an error (exit code 1).
pub(crate) fn verify(args: VerifyArgs) -> Result<()> {
    let VerifyArgs {
        backup_dir,
        repository,
        instance_id,
        database,
        backup,
        scratch_dir,
        jobs,
        format,
        run,
    } = args;
    let request = dbcadence_core::verify::VerifyRequest {
        scratch_dir,
        backup_dir: backup_dir.unwrap_or_default(),
        repository: repository.as_deref().map(read_repository).transpose()?,
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

#[derive(clap::Args)]
pub(crate) struct PruneArgs {
    #[arg(long, required_unless_present = "repository")]
    pub(crate) backup_dir: Option<PathBuf>,
    /// Prune one database's backups in an S3-compatible repository (a YAML or JSON file
    /// holding the module's `repository` option); needs --instance-id and --database.
    #[arg(long, requires_all = ["instance_id", "database"])]
    pub(crate) repository: Option<PathBuf>,
    #[arg(long)]
    pub(crate) instance_id: Option<String>,
    #[arg(long)]
    pub(crate) database: Option<String>,
    #[arg(long)]
    pub(crate) keep_last: Option<u32>,
    #[arg(long)]
    pub(crate) keep_daily: Option<u32>,
    #[arg(long)]
    pub(crate) keep_weekly: Option<u32>,
    #[arg(long)]
    pub(crate) keep_monthly: Option<u32>,
    /// List what would be removed; remove nothing.
    #[arg(long)]
    pub(crate) check: bool,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Applies retention to the backups under a directory.
pub(crate) fn prune(args: PruneArgs) -> Result<()> {
    let PruneArgs {
        backup_dir,
        repository,
        instance_id,
        database,
        keep_last,
        keep_daily,
        keep_weekly,
        keep_monthly,
        check,
        run,
    } = args;
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
    let (plan, warnings) = match (repository, instance_id, database) {
        (Some(repository), Some(instance_id), Some(database)) => {
            let request = BackupRequest {
                action: backup::BackupAction::Prune,
                repository: Some(read_repository(&repository)?),
                instance_id: Some(instance_id),
                database,
                retention: Some(policy),
                run: run.options()?,
                ..BackupRequest::default()
            };
            let done = backup::run(&request, check)?;
            let plan = dbcadence_core::retention::PrunePlan {
                keep: done.output.kept,
                delete: done.output.pruned,
                ..Default::default()
            };
            (plan, done.warnings)
        }
        (_, instance_id, database) => dbcadence_core::retention::run(
            &backup_dir.unwrap_or_default(),
            instance_id.as_deref(),
            database.as_deref(),
            &policy,
            check,
            &run.options()?,
        )?,
    };
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

#[derive(Subcommand)]
pub(crate) enum BackupsAction {
    /// Complete backups with size, age and verified status (partial ones are never listed).
    List {
        #[arg(long, required_unless_present = "repository")]
        backup_dir: Option<PathBuf>,
        /// The backups of an S3-compatible repository (a YAML or JSON file holding the
        /// module's `repository` option).
        #[arg(long)]
        repository: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// Lists the backups on disk; damaged backup directories are never hidden.
pub(crate) fn backups(
    backup_dir: Option<PathBuf>,
    repository: Option<PathBuf>,
    format: Format,
) -> Result<()> {
    // Damaged backup directories are never hidden: they are named on stderr (and the
    // exit code stays 0: listing worked).
    let listing = match repository {
        Some(file) => {
            let store = dbcadence_core::repository::S3Store::open(&read_repository(&file)?)?;
            store.scan(None, None)?.0
        }
        None => backup::scan(&backup_dir.unwrap_or_default()),
    };
    for damaged in &listing.damaged {
        eprintln!("dbcadence: warning: {}", damaged.warning());
    }
    if format == Format::Json {
        return print_json(&listing.backups);
    }
    print!("{}", table::backups(&listing.backups));
    Ok(())
}
