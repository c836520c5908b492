//! Commands about what ran: the ledger (tail, export, import), the compliance report, records
//! people add (incidents, alert feedback) and the metrics file.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use dbcadence_core::ledger::{FeedbackKind, Outcome, Record, Target};
use dbcadence_core::report::{self, Goals};
use dbcadence_core::task::Task;
use dbcadence_core::{Error, Result};
use serde_json::json;

use crate::{Format, RunArgs, print_json};

#[derive(Subcommand)]
pub enum LedgerAction {
    /// The newest records.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Only records of this task (inventory, backup, prune, verify, compliance...).
        #[arg(long, value_parser = parse_task)]
        task: Option<Task>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Every record as JSON lines on stdout (optionally a period), e.g. for an import.
    Export {
        /// From this date or time (2026-11-01 or RFC 3339), by finish time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Append JSON-lines records (from `ledger export`) to the ledger; records already there
    /// (same id) are skipped by the PostgreSQL store.
    Import {
        /// File of JSON lines; - for stdin.
        file: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum ReportFormat {
    Json,
    Markdown,
    Html,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Schedule file (YAML). Default: the shipped templates.
    #[arg(long)]
    schedule: Option<PathBuf>,
    /// The period: the last N days before --to.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Start of the period (date or RFC 3339); overrides --days.
    #[arg(long)]
    from: Option<String>,
    /// End of the period. Default: now.
    #[arg(long)]
    to: Option<String>,
    /// Judge as of this moment (occurrences whose deadline is later are pending). Default: now.
    #[arg(long)]
    now: Option<String>,
    #[arg(long, value_enum, default_value = "markdown")]
    format: ReportFormat,
    /// Write the report to this file (atomically) instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Exit 1 when fleet compliance is below this share (e.g. 0.95), for CI and timers.
    #[arg(long)]
    fail_under: Option<f64>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
pub enum IncidentAction {
    /// Record an unplanned downtime incident (counts against the scorecard).
    Record {
        #[arg(long)]
        instance: String,
        #[arg(long)]
        db: Option<String>,
        /// When the downtime began (RFC 3339).
        #[arg(long)]
        started: String,
        /// When service was back (RFC 3339).
        #[arg(long)]
        ended: String,
        #[arg(long)]
        summary: String,
        /// A planned outage (maintenance window): recorded, not counted.
        #[arg(long)]
        planned: bool,
        #[command(flatten)]
        run: RunArgs,
    },
}

fn parse_feedback(text: &str) -> std::result::Result<FeedbackKind, String> {
    FeedbackKind::parse(text).ok_or_else(|| {
        "the kind is one of false-positive, false-negative, true-positive".to_string()
    })
}

#[derive(Subcommand)]
pub enum AlertAction {
    /// Record whether an alert was right (alert accuracy on the scorecard).
    Feedback {
        /// Alert name, e.g. DbcadenceBackupFailed.
        #[arg(long)]
        alert: String,
        /// false-positive (fired, should not have), false-negative (stayed silent when something
        /// broke) or true-positive.
        #[arg(long, value_parser = parse_feedback)]
        kind: FeedbackKind,
        #[arg(long, default_value = "fleet")]
        instance: String,
        #[arg(long)]
        db: Option<String>,
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
}

fn time_arg(text: &Option<String>) -> Result<Option<jiff::Timestamp>> {
    text.as_deref().map(report::parse_time).transpose()
}

fn parse_task(text: &str) -> std::result::Result<Task, String> {
    Task::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Task::ALL.iter().map(|t| t.as_str()).collect();
        format!("unknown task '{text}'; tasks are {}", names.join(", "))
    })
}

pub fn ledger(action: LedgerAction) -> Result<()> {
    match action {
        LedgerAction::Tail {
            lines,
            task,
            format,
            run,
        } => {
            let store = run.options()?.ledger()?;
            let read = store.read()?;
            let records: Vec<&Record> = read
                .records
                .iter()
                .filter(|r| task.is_none_or(|t| r.task == t))
                .collect();
            let newest = &records[records.len().saturating_sub(lines)..];
            if format == Format::Json {
                return print_json(&newest);
            }
            for r in newest {
                let target = match &r.target.db {
                    Some(db) => format!("{}/{db}", r.target.instance),
                    None => r.target.instance.clone(),
                };
                let outcome = match r.outcome {
                    Outcome::Ok => "ok",
                    Outcome::Failed => "FAILED",
                    Outcome::Skipped => "skipped",
                };
                let check = if r.check_mode { " (check)" } else { "" };
                println!(
                    "{}  {:<10} {:<28} {outcome}{check}",
                    &r.finished_at[..19.min(r.finished_at.len())],
                    r.task,
                    target
                );
            }
            if !read.bad_lines.is_empty() {
                eprintln!(
                    "dbcadence: warning: unreadable ledger lines (torn by a crash?): {:?}",
                    read.bad_lines
                );
            }
            Ok(())
        }
        LedgerAction::Export { since, until, run } => {
            let (since, until) = (time_arg(&since)?, time_arg(&until)?);
            let read = run.options()?.ledger()?.read()?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for record in &read.records {
                let finished = record.finished_at.parse::<jiff::Timestamp>().ok();
                if since.is_some_and(|s| finished.is_none_or(|f| f < s))
                    || until.is_some_and(|u| finished.is_none_or(|f| f > u))
                {
                    continue;
                }
                let line = serde_json::to_string(record)
                    .map_err(|e| Error::invalid("ledger record", e.to_string()))?;
                writeln!(out, "{line}").map_err(|e| Error::io("write", "stdout", e))?;
            }
            out.flush().map_err(|e| Error::io("write", "stdout", e))
        }
        LedgerAction::Import { file, run } => {
            let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file)
                        .map_err(|e| Error::io("open the records file", &file, e))?,
                ))
            };
            let mut records = Vec::new();
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| Error::io("read the records file", &file, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                records.push(serde_json::from_str::<Record>(&line).map_err(|e| {
                    Error::invalid(
                        "record",
                        format!("line {} of {}: {e}", n + 1, file.display()),
                    )
                })?);
            }
            let store = run.options()?.ledger()?;
            let added = store.append_all(&records)?;
            println!(
                "imported {added} of {} records into {}",
                records.len(),
                store.describe()
            );
            Ok(())
        }
    }
}

pub fn report(args: ReportArgs) -> Result<()> {
    let format = match args.format {
        ReportFormat::Json => report::ReportFormat::Json,
        ReportFormat::Markdown => report::ReportFormat::Markdown,
        ReportFormat::Html => report::ReportFormat::Html,
    };
    // The same operation as db_compliance: the same ledger record, metrics and file. The goal
    // is checked here, after the report is shown, so that a failing fleet still sees it.
    let request = report::ComplianceRequest {
        schedule_file: args.schedule,
        period_days: args.days,
        from: args.from,
        to: args.to,
        now: args.now,
        output_path: args.output.clone(),
        output_format: format,
        fail_under: None,
        goals: Goals::default(),
        run: args.run.options()?,
        ..Default::default()
    };
    let done = report::run(&request, false)?;
    match &args.output {
        Some(_) => eprintln!("dbcadence: {}", done.msg),
        None => print!("{}", report::render(&done.output.report, format)),
    }
    for w in &done.warnings {
        eprintln!("dbcadence: warning: {w}");
    }
    report::check_goal(&done.output.report, args.fail_under)
}

/// Appends a record people make (incident, alert feedback) and says where it went.
fn append_manual(
    task: Task,
    target: Target,
    at: (String, String),
    details: serde_json::Value,
    run: &RunArgs,
) -> Result<()> {
    let options = run.options()?;
    let store = options.ledger()?;
    let record = Record {
        id: dbcadence_core::ledger::new_id()?,
        task,
        target,
        started_at: at.0,
        finished_at: at.1,
        outcome: Outcome::Ok,
        changed: true,
        check_mode: false,
        details,
        change_id: options.change_id.clone(),
    };
    store.append(&record)?;
    println!("recorded {task} {} in {}", record.id, store.describe());
    Ok(())
}

pub fn incident(action: IncidentAction) -> Result<()> {
    let IncidentAction::Record {
        instance,
        db,
        started,
        ended,
        summary,
        planned,
        run,
    } = action;
    let (start, end) = (report::parse_time(&started)?, report::parse_time(&ended)?);
    if end < start {
        return Err(Error::invalid("incident", "--ended is before --started"));
    }
    let minutes = end.duration_since(start).as_secs_f64() / 60.0;
    append_manual(
        Task::Incident,
        Target { instance, db },
        (start.to_string(), end.to_string()),
        json!({"summary": summary, "planned": planned, "downtime_minutes": (minutes * 10.0).round() / 10.0}),
        &run,
    )
}

pub fn alert(action: AlertAction) -> Result<()> {
    let AlertAction::Feedback {
        alert,
        kind,
        instance,
        db,
        note,
        run,
    } = action;
    let now = jiff::Timestamp::now().to_string();
    append_manual(
        Task::AlertFeedback,
        Target { instance, db },
        (now.clone(), now),
        json!({"alert": alert, "kind": kind, "note": note}),
        &run,
    )
}

/// Prints the metrics file as node_exporter would read it.
pub fn metrics(metrics_dir: Option<PathBuf>) -> Result<()> {
    let options = dbcadence_core::run::RunOptions {
        metrics_dir,
        ..Default::default()
    };
    let Some(metrics) = options.metrics() else {
        return Err(Error::invalid(
            "metrics",
            "no metrics directory: give --metrics-dir or set DBCADENCE_METRICS_DIR",
        ));
    };
    let path = metrics.prom_path();
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::io("read the metrics", &path, e))?;
    print!("{text}");
    Ok(())
}

#[derive(clap::Args)]
pub struct InstallArgs {
    /// The schedule file the timers follow (and pass to `dbcadence run`).
    schedule: PathBuf,
    /// Sources file of the fleet (YAML, as for `dbcadence inventory`).
    #[arg(long)]
    sources: PathBuf,
    #[arg(long)]
    backup_dir: PathBuf,
    /// Where the units go.
    #[arg(long, default_value = "/etc/systemd/system")]
    unit_dir: PathBuf,
    /// Hosts without systemd: write one /etc/cron.d-style file instead of units.
    #[arg(long)]
    cron_file: Option<PathBuf>,
    /// The dbcadence binary the units call. Default: this one.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where the hourly report timer writes the HTML report.
    #[arg(long)]
    report_path: Option<PathBuf>,
    /// Say what would be written; write nothing.
    #[arg(long)]
    check: bool,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[command(flatten)]
    run: RunArgs,
}

pub fn install(args: InstallArgs) -> Result<()> {
    let schedule = report::load_schedule(Some(&args.schedule))?;
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    let binary = match args.binary {
        Some(b) => b,
        None => {
            std::env::current_exe().map_err(|e| Error::io("find this program", "dbcadence", e))?
        }
    };
    let request = dbcadence_core::timers::InstallRequest {
        schedule,
        schedule_file: absolute(&args.schedule),
        sources: absolute(&args.sources),
        backup_dir: absolute(&args.backup_dir),
        unit_dir: args.unit_dir.clone(),
        cron_file: args.cron_file.clone(),
        binary,
        ledger: args.run.ledger.as_ref().map(absolute),
        metrics_dir: args.run.metrics_dir.as_ref().map(absolute),
        report_path: args.report_path.as_ref().map(absolute),
    };
    let plan = dbcadence_core::timers::plan(&request)?;
    let removed = if args.check {
        vec![]
    } else {
        dbcadence_core::timers::apply(&request, &plan)?
    };
    if args.format == Format::Json {
        return print_json(&json!({
            "changed": !plan.changed.is_empty() || !removed.is_empty(),
            "check_mode": args.check,
            "changed_files": plan.changed,
            "removed": removed,
            "timers": plan.timers,
            "skipped": plan.skipped,
        }));
    }
    let verb = if args.check { "would write" } else { "wrote" };
    for name in &plan.changed {
        println!("{verb} {name}");
    }
    for path in &removed {
        println!("removed {}", path.display());
    }
    for skipped in &plan.skipped {
        println!("skipped {skipped}");
    }
    if plan.changed.is_empty() && removed.is_empty() {
        println!("up to date ({} files)", plan.files.len());
    } else if args.cron_file.is_none() {
        println!(
            "next: systemctl daemon-reload && systemctl enable --now {}",
            plan.timers.join(" ")
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct RunTaskArgs {
    /// The task to run (the core refuses one without a runner, naming those it has).
    #[arg(long, value_parser = parse_task)]
    task: Task,
    /// Template of the schedule whose databases to serve.
    #[arg(long)]
    template: String,
    #[arg(long)]
    schedule: PathBuf,
    #[arg(long)]
    sources: PathBuf,
    #[arg(long)]
    backup_dir: PathBuf,
    #[command(flatten)]
    run: RunArgs,
}

pub fn run_task(args: RunTaskArgs) -> Result<()> {
    let request = dbcadence_core::timers::TaskRun {
        task: args.task,
        template: args.template.clone(),
        schedule: report::load_schedule(Some(&args.schedule))?,
        sources: args.sources,
        backup_dir: args.backup_dir,
        run: args.run.options()?,
    };
    let items = dbcadence_core::timers::run_task(&request)?;
    let failed = items.iter().filter(|i| !i.ok).count();
    for item in &items {
        let target = match &item.db {
            Some(db) => format!("{}/{db}", item.instance),
            None => item.instance.clone(),
        };
        println!(
            "{} {target}: {}",
            if item.ok { "ok    " } else { "FAILED" },
            item.detail
        );
    }
    if items.is_empty() {
        println!("no database follows template '{}'", args.template);
    }
    if failed > 0 {
        return Err(Error::invalid(
            "run",
            format!(
                "{failed} of {} failed; each failure is in the ledger",
                items.len()
            ),
        ));
    }
    Ok(())
}
