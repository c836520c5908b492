//! `dbcadence tune`: db_tune for people and timers. The findings, the fixes and the measured
//! gain as a table, or the whole report as JSON; a failed fix is an error (exit code 1).

use std::path::PathBuf;

use dbcadence_core::Result;
use dbcadence_core::tune::{self, ActionStatus, TuneAction, TuneRequest};

use crate::{ConnectArgs, Format, RunArgs, print_json};

#[derive(clap::Args)]
pub(crate) struct TuneArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    #[arg(long)]
    pub(crate) database: String,
    #[arg(long)]
    pub(crate) instance_id: Option<String>,
    /// Find and plan only; change nothing.
    #[arg(long)]
    pub(crate) plan: bool,
    /// Change nothing; compare the statement statistics now with the last apply's snapshot.
    #[arg(long, conflicts_with = "plan")]
    pub(crate) measure: bool,
    /// Also create the advised indexes (CREATE INDEX CONCURRENTLY / online ADD INDEX).
    #[arg(long)]
    pub(crate) apply_index_advice: bool,
    /// Also drop indexes unused since the statistics were reset.
    #[arg(long)]
    pub(crate) drop_unused_indexes: bool,
    /// Also drop duplicate and redundant indexes.
    #[arg(long)]
    pub(crate) drop_duplicate_indexes: bool,
    /// SQL file replayed before and after the fixes (one statement per line).
    #[arg(long)]
    pub(crate) workload: Option<PathBuf>,
    #[arg(long, default_value_t = 20)]
    pub(crate) workload_runs: u32,
    /// Seconds a fix may wait for a lock.
    #[arg(long, default_value_t = 5)]
    pub(crate) lock_timeout: u64,
    /// Seconds one fix may run.
    #[arg(long, default_value_t = 1800)]
    pub(crate) statement_timeout: u64,
    #[arg(long, default_value_t = 1000)]
    pub(crate) min_table_rows: u64,
    #[arg(long, default_value_t = 20)]
    pub(crate) top_statements: u32,
    /// Rehearse on the newest verified backup restored into a throwaway server (needs
    /// --workload and --backup-dir); the real server is not changed.
    #[arg(long)]
    pub(crate) rehearse: bool,
    /// Refuse to apply unless a rehearsal of the same plan showed a gain.
    #[arg(long)]
    pub(crate) require_rehearsal: bool,
    #[arg(long)]
    pub(crate) backup_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    /// Refuse to change anything without an approved change record (--change-id).
    #[arg(long)]
    pub(crate) require_change: bool,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Tunes one database.
pub(crate) fn tune(args: TuneArgs) -> Result<()> {
    let request = TuneRequest {
        connection: args.connect.connection()?,
        database: args.database,
        instance_id: args.instance_id,
        action: if args.measure {
            TuneAction::Measure
        } else if args.plan {
            TuneAction::Plan
        } else {
            TuneAction::Apply
        },
        apply_index_advice: args.apply_index_advice,
        drop_unused_indexes: args.drop_unused_indexes,
        drop_duplicate_indexes: args.drop_duplicate_indexes,
        workload: args.workload,
        workload_runs: args.workload_runs,
        lock_timeout: args.lock_timeout,
        statement_timeout: args.statement_timeout,
        min_table_rows: args.min_table_rows,
        top_statements: args.top_statements,
        rehearse: args.rehearse,
        require_rehearsal: args.require_rehearsal,
        backup_dir: args.backup_dir,
        require_change: args.require_change,
        window: None,
        force: true,
        run: args.run.options()?,
    };
    let done = tune::run(&request, false)?;
    for w in &done.warnings {
        eprintln!("dbcadence: warning: {w}");
    }
    let report = &done.output;
    if args.format == Format::Json {
        print_json(report)?;
    } else {
        for f in &report.findings {
            println!(
                "{:<8} {}: {}",
                format!("{:?}", f.severity).to_lowercase(),
                f.id,
                f.reason
            );
        }
        for a in &report.actions {
            let status = match a.status {
                ActionStatus::Planned => "planned",
                ActionStatus::Applied => "applied",
                ActionStatus::Failed => "FAILED",
                ActionStatus::NotAllowed => "opt-in",
            };
            let note = a
                .note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default();
            println!("{status:<8} {}{note}", a.sql);
        }
        for limit in &report.limits {
            println!("limit    {limit}");
        }
        println!("{}", done.msg);
    }
    match report.failure() {
        Some(msg) => Err(dbcadence_core::Error::invalid("tune", msg)),
        None => Ok(()),
    }
}
