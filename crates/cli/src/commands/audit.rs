//! `dbcadence audit`: db_audit for people and timers: the findings as a table, Markdown or
//! JSON; or the failed logins read from the server's log.

use std::path::PathBuf;

use clap::ValueEnum;
use dbcadence_core::Result;
use dbcadence_core::audit::{self, AuditMode, AuditRequest};

use crate::{ConnectArgs, RunArgs, print_json};

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(crate) enum AuditFormat {
    Table,
    Markdown,
    Json,
}

#[derive(clap::Args)]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    #[arg(long)]
    pub(crate) instance_id: Option<String>,
    /// Read the failed logins in the server's log instead of running the checks.
    #[arg(long)]
    pub(crate) auth_failures: bool,
    /// An account allowed to be a superuser (repeat the flag); replaces the defaults.
    #[arg(long = "allowed-superuser")]
    pub(crate) allowed_superusers: Vec<String>,
    /// A YAML file listing accepted risks: [{check, object, reason, expires}].
    #[arg(long)]
    pub(crate) suppressions: Option<PathBuf>,
    #[arg(long)]
    pub(crate) log_path: Option<PathBuf>,
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub(crate) failure_threshold: u64,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: AuditFormat,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Audits one server.
pub(crate) fn audit(args: AuditArgs) -> Result<()> {
    let mut request = AuditRequest::defaults(args.connect.connection()?);
    request.instance_id = args.instance_id;
    if args.auth_failures {
        request.mode = AuditMode::AuthFailures;
    }
    if !args.allowed_superusers.is_empty() {
        request.allowed_superusers = args.allowed_superusers;
    }
    if let Some(path) = &args.suppressions {
        let text = std::fs::read_to_string(path)
            .map_err(|e| dbcadence_core::Error::io("read the suppressions", path, e))?;
        request.suppressions = audit::parse_suppressions(&text)?;
    }
    request.log_path = args.log_path;
    request.state_dir = args.state_dir;
    request.failure_threshold = args.failure_threshold;
    request.run = args.run.options()?;
    let done = audit::run(&request, false)?;
    for w in &done.warnings {
        eprintln!("dbcadence: warning: {w}");
    }
    let report = &done.output;
    match args.format {
        AuditFormat::Json => print_json(report)?,
        AuditFormat::Markdown => print!("{}", audit::markdown(report)),
        AuditFormat::Table => {
            for f in &report.findings {
                let mark = if f.suppressed.is_some() {
                    " (suppressed)"
                } else {
                    ""
                };
                println!(
                    "{:<8} {}:{}{mark}: {}",
                    f.severity.as_str(),
                    f.check,
                    f.object,
                    f.title
                );
            }
            if let Some(auth) = &report.auth {
                for f in &auth.failures {
                    println!("{:>6} failed logins: {} from {}", f.count, f.user, f.source);
                }
            }
            for limit in &report.limits {
                println!("not checked: {limit}");
            }
            println!("{}", done.msg);
        }
    }
    Ok(())
}
