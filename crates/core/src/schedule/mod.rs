//! Schedules as code: which maintenance tasks run, how often, in which window (time-zone
//! aware), with what grace, for which databases. The same structure is a YAML file for
//! `dbcadence schedule validate` and Ansible variables for the roles; its JSON Schema is
//! generated from these types (`dbcadence schedule schema`).
//!
//! Validation reports every problem with the path of the offending key
//! (`templates[1].tasks[0].cron`), first the shape (types, unknown keys) then the meaning
//! (cron syntax, durations, time zones, references between templates and assignments).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::connection::EngineKind;
use crate::retention::RetentionPolicy;

/// A maintenance task a schedule can ask for (one enum for schedules and the ledger).
use crate::task::Task;

pub mod assign;
pub mod calendar;

/// When a task may run: a daily window in a time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Start, HH:MM local time.
    pub start: String,
    /// End, HH:MM local time; before start means the window crosses midnight.
    pub end: String,
    /// IANA time zone, e.g. Europe/Paris; daylight saving is taken into account.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".into()
}

impl Window {
    /// Whether an instant falls inside the window (local time in its zone; a window whose end
    /// is before its start crosses midnight). A window that cannot be read contains nothing.
    pub fn contains(&self, at: jiff::Timestamp) -> bool {
        let (Some(start), Some(end), Ok(tz)) = (
            parse_clock(&self.start),
            parse_clock(&self.end),
            jiff::tz::TimeZone::get(&self.time_zone),
        ) else {
            return false;
        };
        let local = at.to_zoned(tz).time();
        if start <= end {
            start <= local && local < end
        } else {
            local >= start || local < end
        }
    }

    /// Refuses a modifying task outside its window unless forced: tune apply, patch and
    /// other changes to a server call this before they touch it.
    pub fn gate(&self, at: jiff::Timestamp, force: bool) -> crate::Result<()> {
        if force || self.contains(at) {
            return Ok(());
        }
        Err(crate::Error::invalid(
            "maintenance window",
            format!(
                "{} is outside the window {}-{} {}; wait for it, or set force: true to run anyway (the run is reported out of window)",
                at.to_zoned(
                    jiff::tz::TimeZone::get(&self.time_zone).unwrap_or(jiff::tz::TimeZone::UTC)
                )
                .strftime("%Y-%m-%d %H:%M %Z"),
                self.start,
                self.end,
                self.time_zone
            ),
        ))
    }
}

/// One task of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSchedule {
    pub task: Task,
    /// Cron expression (minute hour day-of-month month day-of-week), in the window's time zone.
    #[serde(default)]
    pub cron: Option<String>,
    /// Or a plain interval: 30m, 6h, 1d, 1w.
    #[serde(default)]
    pub every: Option<String>,
    /// How late a run may finish and still count as on time (30m, 2h, 1d).
    #[serde(default = "default_grace")]
    pub grace: String,
    /// When the task may run; without a window, any time.
    #[serde(default)]
    pub window: Option<Window>,
    /// Retention for backup tasks.
    #[serde(default)]
    pub retention: Option<RetentionPolicy>,
}

fn default_grace() -> String {
    "1h".into()
}

/// A named set of task schedules, usually per engine and tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Template name, referenced by assignments.
    pub name: String,
    /// Engine the template is meant for; absent means any.
    #[serde(default)]
    pub engine: Option<EngineKind>,
    /// Environment the template is meant for (production, staging, development).
    #[serde(default)]
    pub env: Option<String>,
    /// Its tasks.
    pub tasks: Vec<TaskSchedule>,
    /// Recovery point objective: how old the newest restorable (proven) backup may be, e.g.
    /// 24h. The report and DbcadenceRpoBreached hold every database of the template to it.
    #[serde(default)]
    pub rpo: Option<String>,
    /// Recovery time objective: how long a restore may take, e.g. 1h, judged against the
    /// latest measured restore (a drill or a verification).
    #[serde(default)]
    pub rto: Option<String>,
}

impl Template {
    /// The RPO in seconds, when set (and valid: `check` says when it is not).
    pub fn rpo_seconds(&self) -> Option<i64> {
        self.rpo.as_deref().and_then(parse_duration)
    }

    /// The RTO in seconds, when set.
    pub fn rto_seconds(&self) -> Option<i64> {
        self.rto.as_deref().and_then(parse_duration)
    }
}

/// Which databases follow a template: by inventory group, by labels, or by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Name of a template of this file.
    pub template: String,
    /// Inventory group (env_production, postgresql, instance_pg1, tier_gold...).
    #[serde(default)]
    pub group: Option<String>,
    /// Labels every matching database must carry (env, tier, owner...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A schedule file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    /// Schedule templates: tasks with cron or intervals, windows, grace and retention.
    #[serde(default)]
    pub templates: Vec<Template>,
    /// Which databases follow which template, by group pattern and labels.
    #[serde(default)]
    pub assignments: Vec<Assignment>,
}

/// One problem, at one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Problem {
    /// Path of the offending key, e.g. templates[0].tasks[1].cron.
    pub path: String,
    pub message: String,
}

/// The templates dbcadence ships: PostgreSQL and MySQL/MariaDB × production, staging,
/// development (`dbcadence schedule init`).
pub const SHIPPED_TEMPLATES: &str = include_str!("../../templates/schedules.yml");

/// Parses `30m`, `6h`, `1d`, `1w` into seconds. Days are 24 hours: intervals are elapsed
/// time, not calendar days.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    (n > 0).then_some(n * seconds)
}

fn parse_clock(text: &str) -> Option<jiff::civil::Time> {
    let (h, m) = text.split_once(':')?;
    jiff::civil::Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

/// Reads and checks a schedule file's text: the parsed file, or every problem found.
pub fn parse(text: &str) -> Result<ScheduleFile, Vec<Problem>> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let file: ScheduleFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        vec![Problem {
            path: if path == "." { "(top)".into() } else { path },
            message: e.into_inner().to_string(),
        }]
    })?;
    let problems = check(&file);
    if problems.is_empty() {
        Ok(file)
    } else {
        Err(problems)
    }
}

/// Meaning checks on a well-shaped file.
pub fn check(file: &ScheduleFile) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut push = |path: String, message: String| problems.push(Problem { path, message });
    let mut names: Vec<&str> = Vec::new();
    for (t, template) in file.templates.iter().enumerate() {
        if names.contains(&template.name.as_str()) {
            push(
                format!("templates[{t}].name"),
                format!("template '{}' is defined twice", template.name),
            );
        }
        names.push(&template.name);
        if template.tasks.is_empty() {
            push(
                format!("templates[{t}].tasks"),
                "a template needs at least one task".into(),
            );
        }
        for (k, task) in template.tasks.iter().enumerate() {
            check_task(task, &format!("templates[{t}].tasks[{k}]"), &mut push);
        }
        for (key, value) in [("rpo", &template.rpo), ("rto", &template.rto)] {
            if let Some(text) = value
                && parse_duration(text).is_none_or(|s| s <= 0)
            {
                push(
                    format!("templates[{t}].{key}"),
                    format!("'{text}' is not a duration; use 30m, 6h, 1d or 1w"),
                );
            }
        }
    }
    for (a, assignment) in file.assignments.iter().enumerate() {
        if !names.contains(&assignment.template.as_str()) {
            push(
                format!("assignments[{a}].template"),
                format!(
                    "no template named '{}'; the templates are: {}",
                    assignment.template,
                    names.join(", ")
                ),
            );
        }
        if assignment.group.is_none() && assignment.labels.is_empty() {
            push(
                format!("assignments[{a}]"),
                "say which databases: a group, labels, or both".into(),
            );
        }
    }
    problems
}

/// The problems of one task of a template, each pushed with its path under `at`.
fn check_task(task: &TaskSchedule, at: &str, push: &mut impl FnMut(String, String)) {
    match (&task.cron, &task.every) {
        (Some(_), Some(_)) => push(at.to_string(), "give either cron or every, not both".into()),
        (None, None) => push(
            at.to_string(),
            "give cron (e.g. \"0 2 * * *\") or every (e.g. 1d)".into(),
        ),
        // One calendar (calendar.rs): accepted here only if the timers can fire on
        // it and compliance counts it the same way.
        (Some(cron), None) => match calendar::CronSpec::parse(cron) {
            Err(e) => push(format!("{at}.cron"), e),
            Ok(spec) => {
                let now = jiff::Timestamp::now();
                if spec
                    .next_after(&jiff::tz::TimeZone::UTC, now, 366 * 5)
                    .is_none()
                {
                    push(
                        format!("{at}.cron"),
                        format!("'{cron}' never fires (no such date in the next five years)"),
                    );
                }
            }
        },
        (None, Some(every)) => match parse_duration(every) {
            None => push(
                format!("{at}.every"),
                format!("'{every}' is not an interval; use 30m, 6h, 1d or 1w"),
            ),
            Some(seconds) => {
                if let Err(e) = calendar::interval(seconds) {
                    push(format!("{at}.every"), format!("'{every}': {e}"));
                }
            }
        },
    }
    if parse_duration(&task.grace).is_none() {
        push(
            format!("{at}.grace"),
            format!("'{}' is not a duration; use 30m, 2h or 1d", task.grace),
        );
    }
    if let Some(window) = &task.window {
        for (key, value) in [("start", &window.start), ("end", &window.end)] {
            if parse_clock(value).is_none() {
                push(
                    format!("{at}.window.{key}"),
                    format!("'{value}' is not a time; use HH:MM"),
                );
            }
        }
        if jiff::tz::TimeZone::get(&window.time_zone).is_err() {
            push(
                format!("{at}.window.time_zone"),
                format!(
                    "'{}' is not a known time zone (IANA names such as Europe/Paris)",
                    window.time_zone
                ),
            );
        }
    }
    if !task.task.schedulable() {
        push(
            format!("{at}.task"),
            format!(
                "'{}' is recorded by people (dbcadence incident/alert), not scheduled",
                task.task
            ),
        );
    }
    if task.retention.is_some() && task.task != Task::Backup {
        push(
            format!("{at}.retention"),
            "retention applies to backup tasks only".into(),
        );
    }
}

/// The JSON Schema of a schedule file.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ScheduleFile)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_templates_are_valid_and_cover_both_engines_and_three_envs() {
        let file = parse(SHIPPED_TEMPLATES).unwrap_or_else(|p| panic!("{p:?}"));
        for engine in [EngineKind::Postgresql, EngineKind::Mysql] {
            for env in ["production", "staging", "development"] {
                assert!(
                    file.templates
                        .iter()
                        .any(|t| t.engine == Some(engine) && t.env.as_deref() == Some(env)),
                    "{engine} {env}"
                );
            }
        }
    }

    #[test]
    fn problems_point_at_the_offending_key() {
        let text = "templates:\n  - name: a\n    tasks:\n      - task: backup\n        cron: '61 2 * * *'\n        grace: soon\n        window: {start: '25:00', end: '05:00', time_zone: Mars/Olympus}\n      - task: verify\n        every: 1d\n        retention: {keep_last: 3}\nassignments:\n  - template: b\n";
        let problems = parse(text).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "templates[0].tasks[0].cron",
                "templates[0].tasks[0].grace",
                "templates[0].tasks[0].window.start",
                "templates[0].tasks[0].window.time_zone",
                "templates[0].tasks[1].retention",
                "assignments[0].template",
                "assignments[0]",
            ],
            "{problems:?}"
        );
        let shape = parse("templates:\n  - name: a\n    tasks:\n      - task: backup\n        every: 1d\n        colour: red\n").unwrap_err();
        assert_eq!(shape[0].path, "templates[0].tasks[0].colour");
        assert!(shape[0].message.contains("colour"), "{shape:?}");
        let wrong_type =
            parse("templates:\n  - name: a\n    tasks:\n      - task: sweep\n        every: 1d\n")
                .unwrap_err();
        assert_eq!(wrong_type[0].path, "templates[0].tasks[0].task");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("1d"), Some(86_400));
        assert_eq!(parse_duration("2w"), Some(1_209_600));
        assert_eq!(parse_duration("0h"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5 days"), None);
    }
}
