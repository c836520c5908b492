//! `dbcadence logs`: db_logs for people and timers: what was (or would be) removed,
//! compressed, rotated or purged, and what keeps the binary logs.

use std::path::PathBuf;

use dbcadence_core::Result;
use dbcadence_core::logs::{self, LogsRequest};

use crate::{ConnectArgs, Format, RunArgs, print_json};

#[derive(clap::Args)]
pub(crate) struct LogsArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    #[arg(long)]
    pub(crate) instance_id: Option<String>,
    #[arg(long, default_value_t = 30)]
    pub(crate) keep_days: u32,
    #[arg(long, default_value_t = 1)]
    pub(crate) compress_after_days: u32,
    #[arg(long)]
    pub(crate) max_total_bytes: Option<u64>,
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    pub(crate) rotate_bytes: u64,
    /// PostgreSQL without logging_collector: the directory its log files are in.
    #[arg(long)]
    pub(crate) log_dir: Option<PathBuf>,
    #[arg(long)]
    pub(crate) binlog_keep_days: Option<u32>,
    /// Backups whose newest verified ones keep the binary logs they need.
    #[arg(long)]
    pub(crate) backup_dir: Option<PathBuf>,
    /// Say what would go; change nothing.
    #[arg(long)]
    pub(crate) check: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    /// Refuse to change anything without an approved change record (--change-id).
    #[arg(long)]
    pub(crate) require_change: bool,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Applies log retention to one server.
pub(crate) fn logs(args: LogsArgs) -> Result<()> {
    let request = LogsRequest {
        connection: args.connect.connection()?,
        instance_id: args.instance_id,
        keep_days: args.keep_days,
        compress_after_days: args.compress_after_days,
        max_total_bytes: args.max_total_bytes,
        rotate_bytes: args.rotate_bytes,
        log_dir: args.log_dir,
        binlog_keep_days: args.binlog_keep_days,
        backup_dir: args.backup_dir,
        replicas: vec![],
        require_change: args.require_change,
        run: args.run.options()?,
    };
    let done = logs::run(&request, args.check)?;
    for w in &done.warnings {
        eprintln!("dbcadence: warning: {w}");
    }
    let report = &done.output;
    if args.format == Format::Json {
        return print_json(report);
    }
    for f in &report.files {
        println!(
            "{:<10} {} ({} bytes freed; {})",
            f.action,
            f.path.display(),
            f.freed_bytes,
            f.reason
        );
    }
    for b in &report.purged_binary_logs {
        println!("purged     {b}");
    }
    for limit in &report.limits {
        println!("kept       {limit}");
    }
    println!("{}", done.msg);
    Ok(())
}
