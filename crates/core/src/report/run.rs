//! The compliance run (db_compliance, `dbcadence report`): arguments, rendering with a digest
//! of the substance (a re-run that finds nothing new changes nothing), the file, the metrics
//! and the ledger record.

use std::path::PathBuf;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;
use crate::ledger::Outcome;
use crate::run::{Change, Done};
use crate::schedule::{self, ScheduleFile};
use crate::task::Task;
use crate::{Error, Result};

/// Output formats of a written report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    #[default]
    Json,
    Markdown,
    Html,
}

/// What db_compliance is asked for (unknown arguments are refused by the protocol crate,
/// from the schema: serde cannot deny them next to a flattened struct).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ComplianceRequest {
    /// The schedule as data (the structure of `dbcadence schedule schema`, e.g. from role
    /// variables). Default: schedule_file, else the shipped templates.
    #[serde(default)]
    pub schedule: Option<ScheduleFile>,
    /// The schedule as a YAML file.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub schedule_file: Option<PathBuf>,
    /// The period: the last N days before `to`.
    #[serde(default = "default_days")]
    #[schemars(range(min = 1, max = 3660))]
    pub period_days: u32,
    /// Start of the period (2026-11-01 or RFC 3339); overrides period_days.
    #[serde(default)]
    pub from: Option<String>,
    /// End of the period. Default: now.
    #[serde(default)]
    pub to: Option<String>,
    /// Judge as of this moment (occurrences whose deadline is later are pending), for reports
    /// about the past. Default: now.
    #[serde(default)]
    pub now: Option<String>,
    /// Write the report here (atomically). Rewritten only when its content changed.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub output_path: Option<PathBuf>,
    #[serde(default)]
    pub output_format: ReportFormat,
    /// Fail when fleet compliance is below this share (e.g. 0.95).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub fail_under: Option<f64>,
    /// Goals of the scorecard.
    #[serde(default)]
    pub goals: Goals,
    #[serde(flatten)]
    pub run: crate::run::RunOptions,
}

pub(super) fn default_days() -> u32 {
    30
}

/// What a compliance run did.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ComplianceOutcome {
    pub report: Report,
    /// The file written (or that would be written in check mode).
    pub output_path: Option<PathBuf>,
    /// The file's content changed (or would).
    pub changed: bool,
    #[serde(skip)]
    pub before: Option<String>,
    #[serde(skip)]
    pub after: Option<String>,
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// The report without the moment it was made: two reports with equal substance are the same
/// report, so a re-run that finds nothing new changes nothing.
pub(super) fn substance(report: &Report) -> String {
    let mut copy = report.clone();
    copy.generated_at.clear();
    copy.from.clear();
    copy.to.clear();
    serde_json::to_string(&copy).unwrap_or_default()
}

/// A short digest of the substance, written into the report file.
pub(super) fn digest(report: &Report) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(substance(report).as_bytes());
    hash.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

pub(super) const DIGEST_MARK: &str = "dbcadence-report-digest: ";

/// The text of a report file in a format, with its digest mark.
pub fn render(report: &Report, format: ReportFormat) -> String {
    let mark = format!("{DIGEST_MARK}{}", digest(report));
    match format {
        ReportFormat::Json => {
            let mut value = serde_json::to_value(report).unwrap_or_default();
            value["digest"] = serde_json::Value::String(mark);
            let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
            text.push('\n');
            text
        }
        ReportFormat::Markdown => format!("{}\n<!-- {mark} -->\n", markdown(report)),
        ReportFormat::Html => format!("{}<!-- {mark} -->\n", html(report)),
    }
}

pub(super) fn digest_in(text: &str) -> Option<&str> {
    let start = text.rfind(DIGEST_MARK)? + DIGEST_MARK.len();
    text.get(start..start + 24)
}

/// Builds the report, updates the compliance metrics, writes the file when asked and
/// records the run. Check mode builds the report and writes nothing.
pub fn run(request: &ComplianceRequest, check_mode: bool) -> Result<Done<ComplianceOutcome>> {
    let recorder = crate::run::Recorder::start(Task::Compliance, &request.run, check_mode);
    let target = crate::ledger::Target {
        instance: "fleet".into(),
        db: None,
    };
    match run_unrecorded(request, check_mode) {
        Ok(mut outcome) => {
            let details = serde_json::json!({
                "fleet_ratio": outcome.report.fleet.ratio,
                "due": outcome.report.fleet.due,
                "output_path": outcome.output_path,
            });
            outcome.warnings.extend(recorder.finish(
                target,
                Outcome::Ok,
                outcome.changed,
                details,
                vec![],
            ));
            let verb = match (&outcome.output_path, outcome.changed, check_mode) {
                (Some(path), true, true) => format!("; would write {}", path.display()),
                (Some(path), true, false) => format!("; wrote {}", path.display()),
                (Some(path), false, _) => format!("; {} is up to date", path.display()),
                (None, _, _) => String::new(),
            };
            Ok(Done {
                changed: outcome.changed,
                msg: format!("fleet compliance {}{verb}", outcome.report.fleet.headline()),
                diff: Change::between(
                    "compliance report",
                    outcome.before.clone(),
                    outcome.after.clone(),
                ),
                warnings: outcome.warnings.clone(),
                output: outcome,
            })
        }
        Err(e) => {
            recorder.fail(target, &e);
            Err(e)
        }
    }
}

pub(super) fn run_unrecorded(
    request: &ComplianceRequest,
    check_mode: bool,
) -> Result<ComplianceOutcome> {
    let schedule = match &request.schedule {
        Some(schedule) => {
            let problems = schedule::check(schedule);
            if !problems.is_empty() {
                return Err(Error::invalid(
                    "schedule",
                    problems
                        .iter()
                        .map(|p| format!("{}: {}", p.path, p.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                ));
            }
            schedule.clone()
        }
        None => load_schedule(request.schedule_file.as_ref())?,
    };
    let now = match &request.now {
        Some(text) => parse_time(text)?,
        None => Timestamp::now(),
    };
    let period = Period::resolve(
        request.period_days,
        request.from.as_deref(),
        request.to.as_deref(),
        now,
    )?;
    let store = request.run.ledger()?;
    let report = build(&store, &schedule, period, &request.goals)?;
    let mut warnings = report.warnings.clone();
    if !check_mode && let Some(metrics) = request.run.metrics() {
        match write_metrics(&metrics, &report, &schedule) {
            Ok(notes) => warnings.extend(notes),
            Err(e) => warnings.push(format!("the compliance metrics were not updated: {e}")),
        }
    }
    let (mut changed, mut before, mut after) = (false, None, None);
    if let Some(path) = &request.output_path {
        let text = render(&report, request.output_format);
        let old = std::fs::read_to_string(path).ok();
        if old.as_deref().and_then(digest_in) != digest_in(&text) {
            changed = true;
            if !check_mode {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io("create the report directory", parent, e))?;
                }
                crate::files::write_atomically(path, text.as_bytes(), crate::files::PUBLIC_FILE)?;
            }
            if request.output_format != ReportFormat::Html {
                before = Some(old.unwrap_or_default());
                after = Some(text);
            }
        }
    }
    check_goal(&report, request.fail_under)?;
    Ok(ComplianceOutcome {
        report,
        output_path: request.output_path.clone(),
        changed,
        before,
        after,
        warnings,
    })
}

/// Fails when fleet compliance is below `fail_under`, saying by how much and where to look.
pub fn check_goal(report: &Report, fail_under: Option<f64>) -> Result<()> {
    match fail_under {
        Some(goal) if report.fleet.ratio.is_some_and(|r| r < goal) => Err(Error::invalid(
            "compliance",
            format!(
                "fleet compliance {:.1}% is below {:.1}% ({} of {} due occurrences on time); the worst databases come first in the report",
                report.fleet.ratio.unwrap_or_default() * 100.0,
                goal * 100.0,
                report.fleet.tally.on_time,
                report.fleet.due
            ),
        )),
        _ => Ok(()),
    }
}

/// Reads a schedule file, or the shipped templates when none is given.
pub fn load_schedule(path: Option<&PathBuf>) -> Result<ScheduleFile> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Error::io("read the schedule file", path, e))?,
        None => schedule::SHIPPED_TEMPLATES.to_string(),
    };
    schedule::parse(&text).map_err(|problems| {
        Error::invalid(
            "schedule",
            problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}
