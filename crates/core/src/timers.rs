//! Running without a person: a schedule becomes systemd timers (or cron lines) that call
//! `dbcadence run`, which runs one task of one template for every database assigned to it.
//!
//! `dbcadence run --task backup --template postgresql-production` takes an inventory of the
//! sources (recorded as a rehearsal: it tells the report which databases exist without
//! counting as the inventory task), picks the databases that follow the template, and backs
//! up (or verifies, drills a restore, or tunes) each one; one failure does not stop the others, and the command
//! fails at the end when any did. A server task (audit, logs) runs once per instance that has
//! a database following the template. Patch gets no timer: patches run from AWX or
//! `dbcadence patch` under change records, and `install` lists the task as skipped rather
//! than patching unattended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Serialize;

use crate::backup::{self, BackupRequest};
use crate::engine::{DatabaseKind, Role};
use crate::inventory::{self, InventoryRequest};
use crate::run::RunOptions;
use crate::schedule::calendar::{self, CronSpec};
use crate::schedule::{ScheduleFile, TaskSchedule, parse_duration};
use crate::schedule::{Template, assign};
use crate::task::Task;
use crate::verify::{self, VerifyRequest};
use crate::{Error, Result};

/// What one timer run is asked to do.
#[derive(Debug, Clone)]
pub struct TaskRun {
    pub task: Task,
    pub template: String,
    pub schedule: ScheduleFile,
    pub sources: PathBuf,
    pub backup_dir: PathBuf,
    pub run: RunOptions,
}

/// One database's result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TaskRunItem {
    pub instance: String,
    pub db: Option<String>,
    pub ok: bool,
    pub detail: String,
}

fn runnable(task: Task) -> bool {
    matches!(
        task,
        Task::Inventory
            | Task::Backup
            | Task::Verify
            | Task::Restore
            | Task::Tune
            | Task::Audit
            | Task::Logs
    )
}

/// Runs one task of one template for every database that follows it.
pub fn run_task(request: &TaskRun) -> Result<Vec<TaskRunItem>> {
    let template = request
        .schedule
        .templates
        .iter()
        .find(|t| t.name == request.template)
        .ok_or_else(|| {
            Error::invalid(
                "template",
                format!("no template named '{}' in the schedule", request.template),
            )
        })?;
    if !runnable(request.task) {
        return Err(Error::invalid(
            "task",
            format!(
                "{:?} does not run from timers; only inventory, backup, verify, restore (a drill), tune, audit and logs do (patch from playbooks/patch.yml or dbcadence patch)",
                request.task
            )
            .to_lowercase(),
        ));
    }
    let inventory_request = InventoryRequest {
        sources: Some(request.sources.clone()),
        run: request.run.clone(),
        ..InventoryRequest::default()
    };
    if request.task == Task::Inventory {
        let outcome = inventory::run(&inventory_request, false)?;
        return Ok(vec![TaskRunItem {
            instance: "fleet".into(),
            db: None,
            ok: true,
            detail: format!(
                "{} instances, {} databases",
                outcome.output.summary.instances, outcome.output.summary.databases
            ),
        }]);
    }
    // A rehearsal inventory: the fleet as it is now, without counting as the inventory task.
    let fleet = inventory::run(&inventory_request, true)?;
    let (endpoints, _) = inventory::endpoints_of(&inventory_request)?;
    let mut items = Vec::new();
    for instance in &fleet.output.instances {
        if instance.role == Role::Replica {
            continue;
        }
        let Some(endpoint) = instance
            .aliases
            .first()
            .and_then(|a| endpoints.iter().find(|e| e.name == a.endpoint))
        else {
            continue;
        };
        for db in instance
            .databases
            .iter()
            .filter(|d| d.kind == DatabaseKind::User)
        {
            let follows = assign::template_for(
                &request.schedule,
                &assign::Member {
                    instance: &instance.id,
                    engine: instance.engine.as_str(),
                    env: &db.env,
                    labels: &instance.labels,
                    copy: db.copy.is_some(),
                },
            );
            if follows.map(|t| t.name.as_str()) != Some(template.name.as_str()) {
                continue;
            }
            // A server task is owed once per instance that has a database following the
            // template (the report binds it the same way).
            if request.task.scope() == crate::task::Scope::Instance {
                let result = inventory::connection_of(endpoint, None, 10)
                    .and_then(|connection| run_on_instance(request, connection, &instance.id));
                items.push(TaskRunItem {
                    instance: instance.id.clone(),
                    db: None,
                    ok: result.is_ok(),
                    detail: result.unwrap_or_else(|e| e.to_string()),
                });
                break;
            }
            let result = inventory::connection_of(endpoint, None, 10).and_then(|connection| {
                run_on_database(request, template, connection, &instance.id, &db.name)
            });
            items.push(TaskRunItem {
                instance: instance.id.clone(),
                db: Some(db.name.clone()),
                ok: result.is_ok(),
                detail: result.unwrap_or_else(|e| e.to_string()),
            });
        }
    }
    Ok(items)
}

/// Runs the task on one database that follows the template; Ok holds what happened.
fn run_on_database(
    request: &TaskRun,
    template: &Template,
    connection: crate::connection::ConnectionArgs,
    instance: &str,
    database: &str,
) -> Result<String> {
    match request.task {
        Task::Backup => backup::run(
            &BackupRequest {
                connection,
                database: database.to_string(),
                backup_dir: request.backup_dir.clone(),
                instance_id: Some(instance.to_string()),
                retention: template
                    .tasks
                    .iter()
                    .find(|t| t.task == Task::Backup)
                    .and_then(|t| t.retention.clone()),
                run: request.run.clone(),
                ..BackupRequest::default()
            },
            false,
        )
        .map(|done| done.msg),
        // A restore drill: the newest verified backup restored into a throwaway server, a
        // smoke query, the time measured (the database's RTO in the report).
        Task::Restore => crate::restore::run(
            &crate::restore::RestoreRequest {
                backup_dir: request.backup_dir.clone(),
                instance_id: Some(instance.to_string()),
                database: Some(database.to_string()),
                drill: true,
                jobs: 2,
                run: request.run.clone(),
                ..crate::restore::RestoreRequest::default()
            },
            false,
        )
        .and_then(|done| match done.output.failure() {
            Some(msg) => Err(Error::invalid("restore", msg)),
            None => Ok(done.msg),
        }),
        // From a timer, tuning applies what needs no opt-in (statistics, vacuum, rebuilds of
        // invalid or bloated indexes), inside the task's window.
        Task::Tune => crate::tune::run(
            &crate::tune::TuneRequest {
                instance_id: Some(instance.to_string()),
                window: template
                    .tasks
                    .iter()
                    .find(|t| t.task == Task::Tune)
                    .and_then(|t| t.window.clone()),
                run: request.run.clone(),
                ..crate::tune::TuneRequest::defaults(connection, database)
            },
            false,
        )
        .and_then(|done| match done.output.failure() {
            Some(msg) => Err(Error::invalid("tune", msg)),
            None => Ok(done.msg),
        }),
        _ => verify::run(
            &VerifyRequest {
                backup_dir: request.backup_dir.clone(),
                instance_id: Some(instance.to_string()),
                database: Some(database.to_string()),
                jobs: 2,
                run: request.run.clone(),
                ..VerifyRequest::default()
            },
            false,
        )
        .and_then(|done| {
            // The newest backup already proven is the work done, not a failure.
            let r = &done.output;
            if r.verified || r.nothing_to_verify {
                Ok(done.msg)
            } else {
                Err(Error::invalid(
                    "backup",
                    format!("not verified: {}", r.reason),
                ))
            }
        }),
    }
}

/// Runs a server task on one instance; Ok holds what happened.
fn run_on_instance(
    request: &TaskRun,
    connection: crate::connection::ConnectionArgs,
    instance: &str,
) -> Result<String> {
    match request.task {
        // The checks; then the failed logins, when the server's log is on this host.
        Task::Audit => {
            let mut audit = crate::audit::AuditRequest::defaults(connection);
            audit.instance_id = Some(instance.to_string());
            audit.run = request.run.clone();
            let checks = crate::audit::run(&audit, false)?;
            audit.mode = crate::audit::AuditMode::AuthFailures;
            let logins = match crate::audit::run(&audit, false) {
                Ok(done) => done.msg,
                Err(e) => format!("failed logins not read: {e}"),
            };
            Ok(format!("{}; {logins}", checks.msg))
        }
        // Log retention; the backups under the timers' backup directory keep the binary
        // logs point-in-time recovery needs.
        Task::Logs => {
            let logs = crate::logs::LogsRequest {
                instance_id: Some(instance.to_string()),
                backup_dir: Some(request.backup_dir.clone()),
                run: request.run.clone(),
                ..crate::logs::LogsRequest::defaults(connection)
            };
            crate::logs::run(&logs, false).map(|done| done.msg)
        }
        other => Err(Error::invalid(
            "task",
            format!("{other} has no runner on a server"),
        )),
    }
}

/// Where and how timers are installed.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    pub schedule: ScheduleFile,
    /// The schedule file the units point `dbcadence run` at.
    pub schedule_file: PathBuf,
    pub sources: PathBuf,
    pub backup_dir: PathBuf,
    /// Directory for the units (/etc/systemd/system).
    pub unit_dir: PathBuf,
    /// Write one /etc/cron.d-style file here instead of units (hosts without systemd).
    pub cron_file: Option<PathBuf>,
    /// The dbcadence binary the units call.
    pub binary: PathBuf,
    pub ledger: Option<PathBuf>,
    pub metrics_dir: Option<PathBuf>,
    /// Period of the compliance report the report timer writes, in days.
    pub report_path: Option<PathBuf>,
}

/// What install wrote (or would write).
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct InstallPlan {
    /// File name -> content.
    pub files: BTreeMap<String, String>,
    /// Files whose content differs from what is on disk.
    pub changed: Vec<String>,
    /// Timer units to enable.
    pub timers: Vec<String>,
    /// Template tasks that got no timer, and why.
    pub skipped: Vec<String>,
}

/// The one calendar of a task (schedule/calendar.rs) and its zone: cron in the window's zone,
/// intervals as the UTC calendar counted from the epoch.
fn calendar_of(task: &TaskSchedule) -> Result<(CronSpec, String)> {
    match (&task.cron, &task.every) {
        (Some(cron), _) => Ok((
            CronSpec::parse(cron).map_err(|e| Error::invalid("cron", e))?,
            task.window
                .as_ref()
                .map_or("UTC".to_string(), |w| w.time_zone.clone()),
        )),
        (None, Some(every)) => {
            let seconds = parse_duration(every)
                .ok_or_else(|| Error::invalid("every", format!("'{every}' is not an interval")))?;
            let spec = calendar::interval(seconds)
                .map_err(|e| Error::invalid("every", format!("'{every}': {e}")))?;
            Ok((spec, "UTC".to_string()))
        }
        (None, None) => Err(Error::invalid("schedule", "a task needs cron or every")),
    }
}

/// The [Timer] lines of a task schedule: the very calendar compliance counts.
fn timer_lines(task: &TaskSchedule) -> Result<String> {
    let (spec, zone) = calendar_of(task)?;
    Ok(format!("OnCalendar={}\n", spec.on_calendar(&zone)))
}

/// Whether this host's local time is UTC all year (cron has no per-line time zone, and its
/// handling of daylight saving differs from systemd's and compliance's).
fn host_is_utc() -> bool {
    let tz = jiff::tz::TimeZone::system();
    let now = jiff::Timestamp::now();
    [now, now + jiff::SignedDuration::from_hours(24 * 182)]
        .iter()
        .all(|t| tz.to_offset(*t).seconds() == 0)
}

/// The command of a unit or cron line: `binary args... [--ledger L] [--metrics-dir M]`, each
/// argument escaped by `escape` (systemd or shell rules).
fn command(request: &InstallRequest, args: &[&str], escape: fn(&str) -> String) -> String {
    let mut parts = vec![escape(&request.binary.display().to_string())];
    parts.extend(args.iter().map(|a| escape(a)));
    if let Some(ledger) = &request.ledger {
        parts.push("--ledger".into());
        parts.push(escape(&ledger.display().to_string()));
    }
    if let Some(dir) = &request.metrics_dir {
        parts.push("--metrics-dir".into());
        parts.push(escape(&dir.display().to_string()));
    }
    parts.join(" ")
}

/// The units (or cron file) for a schedule, compared with what is on disk.
pub fn plan(request: &InstallRequest) -> Result<InstallPlan> {
    let mut plan = InstallPlan::default();
    let mut cron = CronFile {
        lines: vec![
            "# Written by `dbcadence schedule install`; times are UTC (this host's zone).".into(),
            "SHELL=/bin/sh".into(),
            "CRON_TZ=UTC".into(),
        ],
        problems: vec![],
    };
    for template in &request.schedule.templates {
        for task in &template.tasks {
            let task_name = format!("{:?}", task.task).to_lowercase();
            if !runnable(task.task) {
                plan.skipped.push(format!(
                    "{}/{task_name}: no timer (patches run from playbooks/patch.yml or dbcadence patch, under change records)",
                    template.name
                ));
                continue;
            }
            add_task_units(request, template, task, &mut plan, &mut cron)?;
        }
    }
    add_report_units(request, &mut plan, &mut cron);
    if let Some(cron_file) = &request.cron_file {
        plan.files = BTreeMap::from([(cron_file.display().to_string(), cron.into_text()?)]);
        plan.timers.clear();
    }
    for (name, content) in &plan.files {
        let path = target_path(request, name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            plan.changed.push(name.clone());
        }
    }
    Ok(plan)
}

/// The cron file that stands in for the timers, and what it could not express the way the
/// timers and compliance do.
struct CronFile {
    lines: Vec<String>,
    problems: Vec<String>,
}

impl CronFile {
    /// The file's text, or an error naming what cron cannot run as scheduled.
    fn into_text(self) -> Result<String> {
        let mut cron = self;
        if !host_is_utc() {
            cron.problems.push(
                "this host's local time is not UTC all year: cron would fire in local time, with its own daylight saving rules".into(),
            );
        }
        if !cron.problems.is_empty() {
            return Err(Error::invalid(
                "cron_file",
                format!(
                    "a cron file cannot run this schedule as the timers and the compliance report count it: {}; install systemd timers instead, or use UTC windows on a UTC host",
                    cron.problems.join("; ")
                ),
            ));
        }
        Ok(cron.lines.join("\n") + "\n")
    }
}

/// The service and timer of one task of one template, and its cron line.
fn add_task_units(
    request: &InstallRequest,
    template: &Template,
    task: &crate::schedule::TaskSchedule,
    plan: &mut InstallPlan,
    cron: &mut CronFile,
) -> Result<()> {
    let task_name = format!("{:?}", task.task).to_lowercase();
    let schedule_file = request.schedule_file.display().to_string();
    let sources = request.sources.display().to_string();
    let backup_dir = request.backup_dir.display().to_string();
    let unit = format!(
        "dbcadence-{}-{task_name}",
        assign::group_safe(&template.name).replace('_', "-")
    );
    let run_args = [
        "run",
        "--task",
        &task_name,
        "--template",
        &template.name,
        "--schedule",
        &schedule_file,
        "--sources",
        &sources,
        "--backup-dir",
        &backup_dir,
    ];
    let exec = command(request, &run_args, calendar::systemd_arg);
    plan.files.insert(
        format!("{unit}.service"),
        format!(
            "# Written by `dbcadence schedule install`.\n[Unit]\nDescription=dbcadence {task_name} of the databases following {}\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nExecStart={exec}\n",
            template.name
        ),
    );
    plan.files.insert(
        format!("{unit}.timer"),
        format!(
            "# Written by `dbcadence schedule install`.\n[Unit]\nDescription=dbcadence {task_name} of {} ({})\n\n[Timer]\n{}Persistent=true\nUnit={unit}.service\n\n[Install]\nWantedBy=timers.target\n",
            template.name,
            task.cron.as_deref().map(|c| format!("cron {c}")).or(task.every.as_ref().map(|e| format!("every {e}"))).unwrap_or_default(),
            timer_lines(task)?
        ),
    );
    plan.timers.push(format!("{unit}.timer"));
    let (spec, zone) = calendar_of(task)?;
    if zone != "UTC" {
        cron.problems.push(format!(
            "{} {task_name} runs in {zone}: cron has no per-line time zone",
            template.name
        ));
    }
    cron.lines.push(format!(
        "{} root {}",
        spec.cron_fields(),
        command(request, &run_args, calendar::cron_arg)
    ));
    Ok(())
}

/// The daily compliance report refreshes the compliance metrics (and the page).
fn add_report_units(request: &InstallRequest, plan: &mut InstallPlan, cron: &mut CronFile) {
    let schedule_file = request.schedule_file.display().to_string();
    let mut report_args = vec!["report", "--schedule", &schedule_file, "--format", "html"];
    let report_path = request
        .report_path
        .as_ref()
        .map(|p| p.display().to_string());
    if let Some(path) = &report_path {
        report_args.extend(["--output", path.as_str()]);
    }
    let exec = command(request, &report_args, calendar::systemd_arg);
    plan.files.insert(
        "dbcadence-report.service".into(),
        format!("# Written by `dbcadence schedule install`.\n[Unit]\nDescription=dbcadence compliance report and metrics\n\n[Service]\nType=oneshot\nExecStart={exec}\n"),
    );
    plan.files.insert(
        "dbcadence-report.timer".into(),
        "# Written by `dbcadence schedule install`.\n[Unit]\nDescription=dbcadence compliance report, hourly\n\n[Timer]\nOnCalendar=hourly\nPersistent=true\nUnit=dbcadence-report.service\n\n[Install]\nWantedBy=timers.target\n".into(),
    );
    plan.timers.push("dbcadence-report.timer".into());
    cron.lines.push(format!(
        "0 * * * * root {}",
        command(request, &report_args, calendar::cron_arg)
    ));
}

fn target_path(request: &InstallRequest, name: &str) -> PathBuf {
    match &request.cron_file {
        Some(file) => file.clone(),
        None => request.unit_dir.join(name),
    }
}

/// Writes the changed files of a plan (atomically) and removes units of ours that the
/// schedule no longer has.
pub fn apply(request: &InstallRequest, plan: &InstallPlan) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    if request.cron_file.is_none() {
        std::fs::create_dir_all(&request.unit_dir)
            .map_err(|e| Error::io("create the unit directory", &request.unit_dir, e))?;
        for entry in std::fs::read_dir(&request.unit_dir)
            .map_err(|e| Error::io("read the unit directory", &request.unit_dir, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with("dbcadence-")
                && (name.ends_with(".timer") || name.ends_with(".service"));
            if ours && !plan.files.contains_key(&name) && is_generated(&entry.path()) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| Error::io("remove a stale unit", entry.path(), e))?;
                removed.push(entry.path());
            }
        }
    }
    for name in &plan.changed {
        let path = target_path(request, name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io("create the directory", parent, e))?;
        }
        crate::files::write_atomically(
            &path,
            plan.files[name].as_bytes(),
            crate::files::PUBLIC_FILE,
        )?;
    }
    Ok(removed)
}

/// Only files we wrote are ever removed.
fn is_generated(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.starts_with("# Written by `dbcadence schedule install`."))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_becomes_on_calendar() {
        let on = |cron: &str, zone: &str| CronSpec::parse(cron).unwrap().on_calendar(zone);
        assert_eq!(on("0 1 * * *", "UTC"), "*-*-* 01:00:00 UTC");
        assert_eq!(
            on("30 3 * * 0", "Europe/Paris"),
            "Sun *-*-* 03:30:00 Europe/Paris"
        );
        assert_eq!(
            on("*/15 8-18 1,15 * *", "UTC"),
            "*-*-01,15 08,09,10,11,12,13,14,15,16,17,18:00,15,30,45:00 UTC"
        );
    }

    #[test]
    fn intervals_align_with_the_compliance_calculation() {
        let task = |every: &str| TaskSchedule {
            task: Task::Inventory,
            cron: None,
            every: Some(every.into()),
            grace: "1h".into(),
            window: None,
            retention: None,
        };
        assert_eq!(
            timer_lines(&task("6h")).unwrap(),
            "OnCalendar=*-*-* 00,06,12,18:00:00 UTC\n"
        );
        assert_eq!(
            timer_lines(&task("1w")).unwrap(),
            "OnCalendar=Thu *-*-* 00:00:00 UTC\n"
        );
        assert_eq!(
            timer_lines(&task("30m")).unwrap(),
            "OnCalendar=*-*-* *:00,30:00 UTC\n"
        );
        // No calendar fires every 5 hours from the epoch: refused, never approximated.
        assert!(timer_lines(&task("5h")).is_err());
    }
}
