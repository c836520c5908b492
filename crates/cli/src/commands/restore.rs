//! `dbcadence restore`: db_restore from a terminal, with progress on stderr for long restores
//! and `--dry-run` for the plan.

use std::path::PathBuf;

use clap::ValueEnum;
use dbcadence_core::Result;
use dbcadence_core::restore::{self, GlobalsPolicy, RestoreRequest};

use crate::{ConnectArgs, Format, RunArgs, print_json};

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum GlobalsArg {
    None,
    SkipExisting,
    FailExisting,
}

#[derive(clap::Args)]
pub(crate) struct RestoreArgs {
    /// The target server.
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    #[arg(long, required_unless_present = "repository")]
    pub(crate) backup_dir: Option<PathBuf>,
    /// Restore from an S3-compatible repository (a YAML or JSON file holding the module's
    /// `repository` option) instead of --backup-dir.
    #[arg(long)]
    pub(crate) repository: Option<PathBuf>,
    /// The backed-up instance id.
    #[arg(long)]
    pub(crate) instance_id: Option<String>,
    /// The backed-up database.
    #[arg(long)]
    pub(crate) database: Option<String>,
    /// A given backup directory instead of the newest verified one.
    #[arg(long)]
    pub(crate) backup: Option<PathBuf>,
    /// The newest backup taken before this time (RFC 3339).
    #[arg(long)]
    pub(crate) before: Option<String>,
    #[arg(long)]
    pub(crate) allow_unverified: bool,
    /// Default: the backed-up database's name.
    #[arg(long)]
    pub(crate) target_database: Option<String>,
    #[arg(long)]
    pub(crate) target_instance_id: Option<String>,
    /// Replace a target database that holds tables (after a safety backup of it).
    #[arg(long)]
    pub(crate) replace: bool,
    #[arg(long)]
    pub(crate) safety_backup_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "none")]
    pub(crate) globals: GlobalsArg,
    /// MariaDB/MySQL: DEFINERs become CURRENT_USER.
    #[arg(long)]
    pub(crate) rewrite_definers: bool,
    #[arg(long, default_value_t = 2)]
    pub(crate) jobs: u32,
    /// Replacing needs an approved change record (--change-id).
    #[arg(long)]
    pub(crate) require_change: bool,
    /// A restore drill into the target server: under <database>_drill_<date>, a smoke query,
    /// dropped afterwards (the timers' drills use a throwaway server).
    #[arg(long)]
    pub(crate) drill: bool,
    /// A drill keeps the restored copy.
    #[arg(long)]
    pub(crate) keep: bool,
    /// A physical backup: the new data directory to restore into.
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// A physical backup: start a server on it (socket only, in <data-dir>.run).
    #[arg(long)]
    pub(crate) start: bool,
    /// Say what would be restored, change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Restores one backup.
pub(crate) fn restore(args: RestoreArgs) -> Result<()> {
    let request = RestoreRequest {
        target: args.connect.connection()?,
        backup_dir: args.backup_dir.unwrap_or_default(),
        repository: args
            .repository
            .as_deref()
            .map(super::backup::read_repository)
            .transpose()?,
        instance_id: args.instance_id,
        database: args.database,
        backup: args.backup,
        before: args.before,
        allow_unverified: args.allow_unverified,
        target_database: args.target_database,
        target_instance_id: args.target_instance_id,
        replace: args.replace,
        safety_backup_dir: args.safety_backup_dir,
        globals: match args.globals {
            GlobalsArg::None => GlobalsPolicy::None,
            GlobalsArg::SkipExisting => GlobalsPolicy::SkipExisting,
            GlobalsArg::FailExisting => GlobalsPolicy::FailExisting,
        },
        rewrite_definers: args.rewrite_definers,
        jobs: args.jobs,
        require_change: args.require_change,
        drill: args.drill,
        keep: args.keep,
        data_dir: args.data_dir,
        start: args.start,
        run: args.run.options()?,
    };
    let done = restore::run(&request, args.dry_run)?;
    for w in &done.warnings {
        eprintln!("dbcadence: warning: {w}");
    }
    if args.format == Format::Json {
        print_json(&done.output)?;
    } else {
        for line in &done.output.globals {
            println!("globals  {line}");
        }
        for m in &done.output.row_mismatches {
            println!(
                "rows     {}: manifest {}, restored {}",
                m.table,
                m.expected.map_or("-".into(), |n| n.to_string()),
                m.found.map_or("-".into(), |n| n.to_string())
            );
        }
        println!("{}", done.msg);
    }
    match done.output.failure() {
        Some(msg) => Err(dbcadence_core::Error::invalid("restore", msg)),
        None => Ok(()),
    }
}
