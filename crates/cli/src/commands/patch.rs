//! `dbcadence patch`: db_patch for people: a server's patch level and gates as a table or
//! JSON, and with --apply the patch itself (--dry-run lists the steps it would take).

use std::path::PathBuf;

use dbcadence_core::Result;
use dbcadence_core::patch::{self, PatchAction, PatchRequest, Platform, StepStatus};
use dbcadence_core::schedule::Window;

use crate::{ConnectArgs, Format, RunArgs, print_json};

#[derive(clap::Args)]
pub(crate) struct PatchArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    #[arg(long)]
    pub(crate) instance_id: Option<String>,
    /// Upgrade, restart and validate when every gate passes (default: facts and gates only).
    #[arg(long)]
    pub(crate) apply: bool,
    /// With --apply: list the steps, change nothing (Ansible's check mode).
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// The version to reach; default: what the package manager offers.
    #[arg(long)]
    pub(crate) target_version: Option<String>,
    /// debian, redhat or lab; default: this host's family.
    #[arg(long, value_parser = parse_platform)]
    pub(crate) platform: Option<Platform>,
    /// The lab directory, with --platform lab (the instance is --instance-id).
    #[arg(long)]
    pub(crate) lab_dir: Option<PathBuf>,
    /// The server package; default postgresql-<major> or mariadb-server.
    #[arg(long)]
    pub(crate) package: Option<String>,
    /// Where the backups are (the verified_backup gate).
    #[arg(long)]
    pub(crate) backup_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 24)]
    pub(crate) max_backup_age_hours: u64,
    #[arg(long, default_value_t = 300)]
    pub(crate) max_transaction_seconds: u64,
    #[arg(long, default_value_t = 30)]
    pub(crate) max_replication_lag_seconds: u64,
    /// The maintenance window, HH:MM-HH:MM (with --time-zone).
    #[arg(long)]
    pub(crate) window: Option<String>,
    #[arg(long, default_value = "UTC")]
    pub(crate) time_zone: String,
    /// Refuse without an approved change record (--change-id) whose window is now.
    #[arg(long)]
    pub(crate) require_change: bool,
    /// Go ahead without this gate (repeat the flag); it stays in the report, overridden.
    #[arg(long = "ignore-gate")]
    pub(crate) ignore_gates: Vec<String>,
    /// Upgrade, restart and validate even at the target version.
    #[arg(long)]
    pub(crate) force: bool,
    /// The server's log, read for errors after the restart.
    #[arg(long)]
    pub(crate) log_path: Option<PathBuf>,
    #[arg(long, default_value_t = 120)]
    pub(crate) restart_timeout_seconds: u64,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

fn parse_platform(text: &str) -> std::result::Result<Platform, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| "debian, redhat or lab".to_string())
}

/// Checks, or patches, one server.
pub(crate) fn patch(args: PatchArgs) -> Result<()> {
    let mut request = PatchRequest::defaults(args.connect.connection()?);
    request.instance_id = args.instance_id;
    if args.apply {
        request.action = PatchAction::Apply;
    }
    request.target_version = args.target_version;
    request.platform = args.platform;
    request.lab_dir = args.lab_dir;
    request.package = args.package;
    request.backup_dir = args.backup_dir;
    request.max_backup_age_hours = args.max_backup_age_hours;
    request.max_transaction_seconds = args.max_transaction_seconds;
    request.max_replication_lag_seconds = args.max_replication_lag_seconds;
    request.window = args
        .window
        .as_deref()
        .map(|w| window(w, &args.time_zone))
        .transpose()?;
    request.require_change = args.require_change;
    request.ignore_gates = args.ignore_gates;
    request.force = args.force;
    request.log_path = args.log_path;
    request.restart_timeout_seconds = args.restart_timeout_seconds;
    request.run = args.run.options()?;
    let done = patch::run(&request, args.dry_run)?;
    for w in &done.warnings {
        eprintln!("dbcadence: warning: {w}");
    }
    let report = &done.output;
    if args.format == Format::Json {
        print_json(report)?;
    } else {
        let f = &report.facts;
        println!(
            "{} {} (installed {}, target {}, {} minor behind, end of life {}): {:?}",
            f.flavour,
            f.running_version,
            f.installed_version.as_deref().unwrap_or("unknown"),
            f.target_version.as_deref().unwrap_or("unknown"),
            f.minor_behind.map_or("?".into(), |n| n.to_string()),
            f.end_of_life.as_deref().unwrap_or("unknown"),
            f.status
        );
        for g in &report.gates {
            let verdict = match (g.passed, g.overridden) {
                (true, _) => "pass",
                (false, true) => "override",
                (false, false) => "FAIL",
            };
            println!("gate  {verdict:<8} {:<18} {}", g.id, g.reason);
        }
        for s in &report.steps {
            let status = match s.status {
                StepStatus::Planned => "planned",
                StepStatus::Done => "done",
                StepStatus::Skipped => "skipped",
                StepStatus::Failed => "FAILED",
            };
            println!("step  {status:<8} {:<18} {}", s.id, s.detail);
        }
        for (i, step) in report.rollback.iter().enumerate() {
            println!("back  {}. {step}", i + 1);
        }
        println!("{}", done.msg);
    }
    match &report.failure {
        Some(msg) => Err(dbcadence_core::Error::invalid("patch", msg.clone())),
        None => Ok(()),
    }
}

/// "01:00-05:00" in `time_zone`.
fn window(text: &str, time_zone: &str) -> Result<Window> {
    let (start, end) = text.split_once('-').ok_or_else(|| {
        dbcadence_core::Error::invalid("--window", "write it HH:MM-HH:MM, e.g. 01:00-05:00")
    })?;
    Ok(Window {
        start: start.trim().to_string(),
        end: end.trim().to_string(),
        time_zone: time_zone.to_string(),
    })
}
