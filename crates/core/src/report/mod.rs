//! The compliance report and the success-criteria scorecard, read from the ledger.
//!
//! One pass over the ledger (streamed: a million records fit in a few tens of megabytes)
//! gathers, per (task, instance, database), the finish times and outcomes of real runs, the
//! fleet as the inventory runs saw it (which databases exist, since when: nothing is owed
//! before the first inventory that saw a database; with which engine,
//! environment and labels), run durations, backups and their verifications, incidents, alert
//! feedback and tuning gains. Schedules are then bound to databases (assignments by inventory
//! group or labels; without assignments, each template applies to the databases of its engine
//! and environment) and every binding is judged by [`compliance::judge`].
//!
//! Task scopes: backup, verify and tune are per database; logs, audit and patch per instance
//! (their runs carry no database); inventory is fleet-wide (target `fleet`). Replicas owe
//! nothing (their primary does), nor do databases flagged as copies unless an assignment
//! names them (group `copies`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::compliance::{self, Status, Tally};
use crate::ledger::{Outcome, RecordView, Store};
use crate::metrics::Sample;
use crate::schedule::{self, ScheduleFile, TaskSchedule, Template, assign};
use crate::task::Task;
use crate::{Error, Result};

mod html;
mod markdown;

pub use html::html;
pub use markdown::markdown;

/// The goals of the success-criteria scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Goals {
    /// Share of due maintenance done on time.
    #[serde(default = "default_compliance")]
    pub compliance: f64,
    /// Unplanned downtime incidents per quarter, at most.
    #[serde(default = "default_incidents")]
    pub incidents_per_quarter: f64,
    /// Share of backups verified by a restore.
    #[serde(default = "default_verified")]
    pub verified_share: f64,
    /// Alert false positives plus false negatives per 30 days, fewer than.
    #[serde(default = "default_alert_errors")]
    pub alert_errors_per_30_days: f64,
    /// Query-time reduction after tuning, at least.
    #[serde(default = "default_tune_reduction")]
    pub tune_reduction: f64,
}

fn default_compliance() -> f64 {
    0.95
}
fn default_incidents() -> f64 {
    5.0
}
fn default_verified() -> f64 {
    1.0
}
fn default_alert_errors() -> f64 {
    10.0
}
fn default_tune_reduction() -> f64 {
    0.20
}

impl Default for Goals {
    fn default() -> Self {
        Goals {
            compliance: default_compliance(),
            incidents_per_quarter: default_incidents(),
            verified_share: default_verified(),
            alert_errors_per_30_days: default_alert_errors(),
            tune_reduction: default_tune_reduction(),
        }
    }
}

/// The period a report covers.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Occurrences whose deadline is after `now` are pending, not missed.
    pub now: Timestamp,
}

impl Period {
    /// The period asked for: from `from` (else `days` before `to`) to `to` (else `now`),
    /// both as dates or RFC 3339 times.
    pub fn resolve(
        days: u32,
        from: Option<&str>,
        to: Option<&str>,
        now: Timestamp,
    ) -> Result<Self> {
        let to = to.map(parse_time).transpose()?.unwrap_or(now);
        let from = match from.map(parse_time).transpose()? {
            Some(from) => from,
            None => to - SignedDuration::from_hours(24 * i64::from(days.max(1))),
        };
        if from >= to {
            return Err(Error::invalid(
                "period",
                "from must be before to; give a later to or an earlier from",
            ));
        }
        Ok(Period { from, to, now })
    }

    fn days(&self) -> f64 {
        (self.to.duration_since(self.from).as_secs_f64() / 86_400.0).max(1.0 / 24.0)
    }
}

/// Parses `2026-11-01`, `2026-11-01T06:00:00Z` or `2026-11-01T06:00:00+01:00`.
pub fn parse_time(text: &str) -> Result<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| {
            Error::invalid(
                "time",
                format!("'{text}' is neither a date (2026-11-01) nor an RFC 3339 time"),
            )
        })
}

/// Counts and the share on time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Share {
    #[serde(flatten)]
    pub tally: Tally,
    /// Occurrences due in the period (on time + late + missed + failed + out of window).
    pub due: u32,
    /// on_time / due; null ("no data") when nothing was due.
    pub ratio: Option<f64>,
}

impl Share {
    fn of(tally: &Tally) -> Self {
        Share {
            tally: tally.clone(),
            due: tally.due(),
            ratio: tally.ratio().map(|r| round(r, 4)),
        }
    }

    /// "45.5% (5 of 11 due occurrences on time)", or "no data" when nothing was due.
    pub fn headline(&self) -> String {
        match self.ratio {
            Some(ratio) => format!(
                "{:.1}% ({} of {} due occurrences on time)",
                ratio * 100.0,
                self.tally.on_time,
                self.due
            ),
            None => "no data (nothing was due in the period)".into(),
        }
    }

    /// For sorting worst first: no data sorts after every real ratio.
    fn sort_key(&self) -> f64 {
        self.ratio.unwrap_or(f64::INFINITY)
    }
}

/// One task of one database (or instance, or the fleet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskCompliance {
    /// The task.
    pub task: Task,
    /// Its schedule: cron expression or interval.
    pub schedule: String,
    #[serde(flatten)]
    pub share: Share,
    /// Last successful run, if any.
    pub last_success: Option<String>,
    /// The occurrences that were not on time (newest first, at most 10).
    pub problems: Vec<compliance::Occurrence>,
}

/// One database (or instance for per-instance tasks, `fleet` for the inventory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatabaseCompliance {
    /// Instance id.
    pub instance: String,
    /// Database (none for per-instance and fleet-wide tasks).
    pub db: Option<String>,
    /// Environment.
    pub env: String,
    /// The schedule template it follows.
    pub template: String,
    /// Owes maintenance from this moment (first seen by an inventory inside the period).
    pub since: Option<String>,
    #[serde(flatten)]
    pub share: Share,
    /// Per task.
    pub tasks: Vec<TaskCompliance>,
}

/// One day of the period (by due time, UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Day {
    /// The day (YYYY-MM-DD, UTC).
    pub date: String,
    #[serde(flatten)]
    pub share: Share,
}

/// Durations of the real runs of one task in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Durations {
    /// The task.
    pub task: String,
    /// Real runs in the period.
    pub runs: usize,
    /// Median wall time.
    pub median_seconds: f64,
    /// 95th percentile wall time.
    pub p95_seconds: f64,
    /// Longest run.
    pub max_seconds: f64,
}

/// A heat-map row: one database's ratio per column of `heatmap_days` days (None when nothing
/// was due in it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeatRow {
    /// instance/db.
    pub name: String,
    /// Its ratio over the whole period; null when nothing was due.
    pub ratio: Option<f64>,
    /// Ratio per column; null when nothing was due in it.
    pub days: Vec<Option<f64>>,
}

/// Heat-map columns stay readable: at most this many, each covering several days when the
/// period is long.
const HEATMAP_COLUMNS: usize = 120;

/// One success criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Criterion {
    /// The criterion.
    pub name: String,
    /// Its goal, e.g. ">= 95%".
    pub goal: String,
    /// The measured value; None when the ledger holds nothing to measure it with.
    pub value: Option<f64>,
    /// Met, not met, or unknown (no data).
    pub met: Option<bool>,
    /// How the value was measured, in one sentence.
    pub detail: String,
}

/// The next due time of one task of one template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NextDue {
    /// The template.
    pub template: String,
    /// The task.
    pub task: Task,
    /// Its schedule: cron expression (and zone) or interval.
    pub schedule: String,
    /// The next due time after the report was made (RFC 3339); null if never again.
    pub at: Option<String>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// Start of the period (RFC 3339).
    pub from: String,
    /// End of the period (RFC 3339).
    pub to: String,
    /// When the report was made.
    pub generated_at: String,
    /// The ledger read (file path or table).
    pub ledger: String,
    /// Ledger records read.
    pub records: usize,
    /// Ledger lines that could not be read (a torn last line after a crash).
    pub unreadable_lines: Vec<usize>,
    /// The whole fleet.
    pub fleet: Share,
    /// Per environment.
    pub by_env: BTreeMap<String, Share>,
    /// Per task.
    pub by_task: BTreeMap<String, Share>,
    /// Worst first.
    pub databases: Vec<DatabaseCompliance>,
    /// Databases in the inventory that no template applies to.
    pub unscheduled: Vec<String>,
    /// Per day of the period.
    pub daily: Vec<Day>,
    /// Run durations per task in the period.
    pub durations: Vec<Durations>,
    /// The worst databases (at most 40), by columns of `heatmap_days` days.
    pub heatmap: Vec<HeatRow>,
    /// Days per heat-map column.
    pub heatmap_days: usize,
    /// The success criteria with their goals, values and verdicts.
    pub scorecard: Vec<Criterion>,
    /// When each template task is next due: when the next proof will arrive.
    #[serde(default)]
    pub next_due: Vec<NextDue>,
    /// What the reader should know (unreadable lines, unknown tasks...).
    pub warnings: Vec<String>,
}

/// A database the inventory saw.
#[derive(Debug, Clone)]
struct FleetDb {
    instance: String,
    db: String,
    engine: String,
    env: String,
    labels: BTreeMap<String, String>,
    copy: bool,
    replica: bool,
    first_seen: Timestamp,
    last_seen: Timestamp,
}

#[derive(Deserialize)]
struct InventoryDetails {
    #[serde(default)]
    fleet: Vec<FleetInstance>,
    #[serde(default)]
    unreachable: Vec<String>,
}

#[derive(Deserialize)]
struct FleetInstance {
    instance: String,
    engine: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    databases: Vec<FleetDatabase>,
}

#[derive(Deserialize)]
struct FleetDatabase {
    name: String,
    env: String,
    #[serde(default)]
    copy_of: Option<String>,
}

/// The run index: keys are our own ledger's strings, so SipHash's protection against hostile
/// keys buys nothing here and rustc's Fx hash is faster.
type RunIndex = rustc_hash::FxHashMap<String, Vec<compliance::Run>>;

/// The run index key of (task, instance, db).
fn run_key(buffer: &mut String, task: &str, instance: &str, db: Option<&str>) {
    buffer.clear();
    buffer.push_str(task);
    buffer.push('\u{1f}');
    buffer.push_str(instance);
    if let Some(db) = db {
        buffer.push('\u{1f}');
        buffer.push_str(db);
    }
}

/// `2026-11-24T10:00:00.123456789Z`, the only form dbcadence writes, without the general
/// parser (a million records have two timestamps each); anything else goes to jiff.
fn parse_timestamp(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in b.get(range)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    let fast = || -> Option<Timestamp> {
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || *b.last()? != b'Z'
        {
            return None;
        }
        let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        let (hh, mm, ss) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
        let nanos = match b[19] {
            b'Z' if b.len() == 20 => 0,
            b'.' if (21..=30).contains(&b.len()) => {
                let frac = digits(20..b.len() - 1)?;
                frac * 10i64.pow(u32::try_from(30 - b.len()).ok()?)
            }
            _ => return None,
        };
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 59 {
            return None;
        }
        // Days from civil (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Timestamp::new(
            days * 86_400 + hh * 3600 + mm * 60 + ss,
            i32::try_from(nanos).ok()?,
        )
        .ok()
    };
    fast().or_else(|| text.parse().ok())
}

/// Everything the report needs from the ledger, folded per chunk of the file and merged.
#[derive(Default)]
struct Gathered {
    records: usize,
    /// (task, instance, db) -> real runs (finish time, outcome); see [`run_key`].
    runs: RunIndex,
    /// Inventory observations in ledger order: (time, in period, details as written, or None
    /// when the same as the one before in this chunk). Replayed in order after the merge.
    inventory_events: Vec<(Timestamp, bool, Option<String>)>,
    fleet: BTreeMap<(String, String), FleetDb>,
    first_inventory: Option<Timestamp>,
    /// The previous inventory's details as written, and the databases it listed.
    last_inventory_raw: String,
    last_inventory_keys: Vec<(String, String)>,
    last_inventory: Option<Timestamp>,
    durations: BTreeMap<String, Vec<f64>>,
    /// Backup paths, as 64-bit hashes: 430,000 backups need no strings to be matched with
    /// their verifications.
    backups_in_period: Vec<u64>,
    verified_backups: rustc_hash::FxHashSet<u64>,
    incidents: u32,
    /// Endpoint -> currently unreachable (an outage counts once, however many runs saw it).
    outages: HashMap<String, bool>,
    detected_outages: u32,
    alert_errors: u32,
    alert_feedback: u32,
    tune_before: f64,
    tune_after: f64,
    tune_runs: u32,
    key: String,
}

impl Gathered {
    fn visit(&mut self, record: &RecordView, period: &Period) {
        // The report's own runs are not maintenance, and counting them would make every
        // report differ from the one before.
        if record.task == Task::Compliance {
            return;
        }
        self.records += 1;
        let Some(finished) = parse_timestamp(&record.finished_at) else {
            return;
        };
        let in_period = finished >= period.from && finished <= period.to;
        let task = record.task.as_str();
        if task == "inventory" && record.outcome != Outcome::Skipped {
            // Most inventories see the same fleet as the one before: then only the times move
            // (parsing 500 databases four times a day for years is what would cost).
            let raw = record.details.map_or("", |d| d.get());
            if raw == self.last_inventory_raw {
                self.inventory_events.push((finished, in_period, None));
            } else {
                self.inventory_events
                    .push((finished, in_period, Some(raw.to_string())));
                self.last_inventory_raw = raw.to_string();
            }
        }
        if record.check_mode {
            return;
        }
        run_key(
            &mut self.key,
            task,
            &record.target.instance,
            record.target.db.as_deref(),
        );
        // The start decides whether the run was inside its maintenance window.
        let run = compliance::Run {
            finished,
            started: parse_timestamp(&record.started_at).unwrap_or(finished),
            outcome: record.outcome,
        };
        match self.runs.get_mut(self.key.as_str()) {
            Some(runs) => runs.push(run),
            None => {
                self.runs.insert(self.key.clone(), vec![run]);
            }
        }
        if !in_period {
            // Verifications after the period still prove backups taken in it.
            if task == "verify"
                && record.outcome == Outcome::Ok
                && let Some(path) = detail_string(record, "backup")
            {
                self.verified_backups.insert(path_hash(&path));
            }
            return;
        }
        if let Some(started) = parse_timestamp(&record.started_at) {
            let seconds = finished.duration_since(started).as_secs_f64().max(0.0);
            match self.durations.get_mut(task) {
                Some(list) => list.push(seconds),
                None => {
                    self.durations.insert(task.to_string(), vec![seconds]);
                }
            }
        }
        match (task, record.outcome) {
            ("backup", Outcome::Ok) => {
                if let Some(path) = detail_string(record, "path") {
                    self.backups_in_period.push(path_hash(&path));
                }
            }
            ("verify", Outcome::Ok) => {
                if let Some(path) = detail_string(record, "backup") {
                    self.verified_backups.insert(path_hash(&path));
                }
            }
            ("incident", _) => {
                let planned = record
                    .details::<serde_json::Value>()
                    .and_then(|d| d.get("planned")?.as_bool())
                    .unwrap_or(false);
                if !planned {
                    self.incidents += 1;
                }
            }
            ("alert_feedback", _) => {
                self.alert_feedback += 1;
                if let Some(kind) = detail_string(record, "kind")
                    && (kind == "false_positive" || kind == "false_negative")
                {
                    self.alert_errors += 1;
                }
            }
            ("tune", Outcome::Ok) => {
                if let Some(d) = record.details::<serde_json::Value>() {
                    let before = d.get("query_time_before_ms").and_then(|v| v.as_f64());
                    let after = d.get("query_time_after_ms").and_then(|v| v.as_f64());
                    if let (Some(before), Some(after)) = (before, after) {
                        self.tune_before += before;
                        self.tune_after += after;
                        self.tune_runs += 1;
                    }
                }
            }
            _ => {}
        }
    }

    /// An inventory identical to the previous one: the same databases were seen again.
    fn touch_inventory(&mut self, at: Timestamp) {
        self.last_inventory = Some(self.last_inventory.map_or(at, |t| t.max(at)));
        for key in &self.last_inventory_keys {
            if let Some(db) = self.fleet.get_mut(key) {
                db.last_seen = db.last_seen.max(at);
            }
        }
    }

    /// Folds a later chunk into this one (chunks come in file order).
    fn absorb(&mut self, later: Gathered) {
        self.records += later.records;
        for (key, runs) in later.runs {
            self.runs.entry(key).or_default().extend(runs);
        }
        self.inventory_events.extend(later.inventory_events);
        for (task, seconds) in later.durations {
            self.durations.entry(task).or_default().extend(seconds);
        }
        self.backups_in_period.extend(later.backups_in_period);
        self.verified_backups.extend(later.verified_backups);
        self.incidents += later.incidents;
        self.alert_errors += later.alert_errors;
        self.alert_feedback += later.alert_feedback;
        self.tune_before += later.tune_before;
        self.tune_after += later.tune_after;
        self.tune_runs += later.tune_runs;
    }

    /// The inventory observations, in ledger order: the fleet and the outages.
    fn replay_inventory(&mut self) {
        self.last_inventory_raw.clear();
        for (at, in_period, raw) in std::mem::take(&mut self.inventory_events) {
            match raw {
                Some(raw) if raw != self.last_inventory_raw => {
                    if let Ok(details) = serde_json::from_str::<InventoryDetails>(&raw) {
                        self.observe_inventory(details, at, in_period);
                    }
                    self.last_inventory_raw = raw;
                }
                _ => self.touch_inventory(at),
            }
        }
    }

    fn observe_inventory(&mut self, details: InventoryDetails, at: Timestamp, in_period: bool) {
        if details.fleet.is_empty() && details.unreachable.is_empty() {
            return;
        }
        self.first_inventory = Some(self.first_inventory.map_or(at, |t| t.min(at)));
        self.last_inventory = Some(self.last_inventory.map_or(at, |t| t.max(at)));
        self.last_inventory_keys.clear();
        for instance in details.fleet {
            for db in instance.databases {
                let key = (instance.instance.clone(), db.name.clone());
                self.last_inventory_keys.push(key.clone());
                let entry = self.fleet.entry(key).or_insert_with(|| FleetDb {
                    instance: instance.instance.clone(),
                    db: db.name.clone(),
                    engine: instance.engine.clone(),
                    env: db.env.clone(),
                    labels: BTreeMap::new(),
                    copy: false,
                    replica: false,
                    first_seen: at,
                    last_seen: at,
                });
                entry.first_seen = entry.first_seen.min(at);
                if at >= entry.last_seen {
                    // The newest observation describes the database.
                    entry.last_seen = at;
                    entry.engine = instance.engine.clone();
                    entry.env = db.env.clone();
                    entry.labels = instance.labels.clone();
                    entry.copy = db.copy_of.is_some();
                    entry.replica = instance.role == "replica";
                }
            }
        }
        // Availability: an endpoint going from reachable to unreachable is one incident.
        let down: std::collections::HashSet<&String> = details.unreachable.iter().collect();
        for endpoint in &details.unreachable {
            let was_down = self.outages.insert(endpoint.clone(), true).unwrap_or(false);
            if !was_down && in_period {
                self.detected_outages += 1;
            }
        }
        for (endpoint, state) in self.outages.iter_mut() {
            if !down.contains(endpoint) {
                *state = false;
            }
        }
    }
}

/// The few detail fields the report reads; everything else in the details is skipped
/// without building a JSON tree.
#[derive(Deserialize, Default)]
struct DetailFields<'a> {
    #[serde(borrow, default)]
    path: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    backup: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

fn path_hash(path: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(path.as_bytes());
    h.write_u8(0xff);
    h.finish()
}

fn detail_string(record: &RecordView, key: &str) -> Option<String> {
    let raw = record.details?;
    let fields: DetailFields = serde_json::from_str(raw.get()).ok()?;
    let value = match key {
        "path" => fields.path,
        "backup" => fields.backup,
        "kind" => fields.kind,
        _ => None,
    };
    value.map(|v| v.into_owned())
}

/// The template a database of the gathered fleet follows.
fn template_for<'s>(schedule: &'s ScheduleFile, db: &FleetDb) -> Option<&'s Template> {
    assign::template_for(
        schedule,
        &assign::Member {
            instance: &db.instance,
            engine: &db.engine,
            env: &db.env,
            labels: &db.labels,
            copy: db.copy,
        },
    )
}

struct Bound<'s> {
    instance: String,
    db: Option<String>,
    env: String,
    template: &'s str,
    task: &'s TaskSchedule,
    since: Timestamp,
    until: Timestamp,
}

/// Builds the report. `schedule` defaults to the shipped templates.
pub fn build(
    store: &Store,
    schedule: &ScheduleFile,
    period: Period,
    goals: &Goals,
) -> Result<Report> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (parts, unreadable) = store.scan_chunks(threads, Gathered::default, |g, record| {
        g.visit(record, &period)
    })?;
    let mut parts = parts.into_iter();
    let mut gathered = parts.next().unwrap_or_default();
    for part in parts {
        gathered.absorb(part);
    }
    gathered.replay_inventory();
    for runs in gathered.runs.values_mut() {
        runs.sort_by_key(|r| r.finished);
    }
    let mut warnings = Vec::new();
    if !unreadable.is_empty() {
        warnings.push(format!(
            "{} ledger line(s) could not be read and were skipped (line {}): a torn line from a crashed writer; the records after it were read",
            unreadable.len(),
            unreadable.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
    if gathered.fleet.is_empty() {
        warnings.push(
            "no inventory in the ledger: run db_inventory (or dbcadence inventory) so that the report knows which databases exist"
                .into(),
        );
    }

    // Bind schedules.
    let mut bound: Vec<Bound> = Vec::new();
    let mut unscheduled = Vec::new();
    let mut instance_done: std::collections::HashSet<(String, &str)> = Default::default();
    let mut fleet_task_done: std::collections::HashSet<&str> = Default::default();
    // A database owes maintenance from the first inventory that saw it: before that the
    // ledger knows nothing of it (a new database, or a fleet dbcadence had not watched yet).
    let last_inventory = gathered.last_inventory.unwrap_or(period.to);
    for db in gathered.fleet.values() {
        if db.replica {
            continue;
        }
        let Some(template) = template_for(schedule, db) else {
            if !db.copy {
                unscheduled.push(format!("{}/{}", db.instance, db.db));
            }
            continue;
        };
        let since = if db.first_seen > period.from {
            db.first_seen
        } else {
            Timestamp::MIN
        };
        // Gone from the newest inventory: dropped; it owes nothing after it was last seen.
        let until = if db.last_seen < last_inventory {
            db.last_seen
        } else {
            Timestamp::MAX
        };
        for task in &template.tasks {
            let (instance, target_db, env) = match task.task.scope() {
                crate::task::Scope::Database => {
                    (db.instance.clone(), Some(db.db.clone()), db.env.clone())
                }
                crate::task::Scope::Instance => {
                    if !instance_done.insert((db.instance.clone(), task.task.as_str())) {
                        continue;
                    }
                    (db.instance.clone(), None, db.env.clone())
                }
                crate::task::Scope::Fleet => {
                    if !fleet_task_done.insert(task.task.as_str()) {
                        continue;
                    }
                    ("fleet".to_string(), None, "fleet".to_string())
                }
            };
            bound.push(Bound {
                instance,
                db: target_db,
                env,
                template: &template.name,
                task,
                since,
                until,
            });
        }
    }

    // Judge every binding.
    let day_count = (period.days().ceil() as usize).max(1);
    let day_of = |t: Timestamp| -> Option<usize> {
        if t < period.from || t > period.to {
            return None;
        }
        Some(((t.duration_since(period.from).as_secs() / 86_400) as usize).min(day_count - 1))
    };
    let mut fleet = Tally::default();
    let mut by_env: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_task: BTreeMap<String, Tally> = BTreeMap::new();
    let mut daily = vec![Tally::default(); day_count];
    let mut rows: BTreeMap<(String, Option<String>), DatabaseCompliance> = BTreeMap::new();
    let mut row_days: BTreeMap<(String, Option<String>), Vec<Tally>> = BTreeMap::new();
    let mut row_tally: BTreeMap<(String, Option<String>), Tally> = BTreeMap::new();
    let no_runs = Vec::new();
    let mut key_buffer = String::new();
    // Due times depend on the template task only: computed once, shared by its databases.
    let mut dues_cache: HashMap<*const TaskSchedule, Vec<compliance::Due>> = HashMap::new();
    for b in &bound {
        let name = b.task.task.as_str();
        run_key(&mut key_buffer, name, &b.instance, b.db.as_deref());
        let runs = gathered.runs.get(key_buffer.as_str()).unwrap_or(&no_runs);
        let dues = match dues_cache.entry(b.task as *const TaskSchedule) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(compliance::due_times(b.task, period.from, period.to)?)
            }
        };
        let occurrences = compliance::judge(
            dues,
            b.since,
            b.until,
            runs,
            period.now,
            b.task.window.as_ref(),
        );
        let mut tally = Tally::default();
        let key = (b.instance.clone(), b.db.clone());
        let days = row_days
            .entry(key.clone())
            .or_insert_with(|| vec![Tally::default(); day_count]);
        for o in &occurrences {
            tally.add(o.status);
            if let Some(d) = day_of(o.due) {
                daily[d].add(o.status);
                days[d].add(o.status);
            }
        }
        merge(&mut fleet, &tally);
        merge(by_env.entry(b.env.clone()).or_default(), &tally);
        merge(by_task.entry(name.to_string()).or_default(), &tally);
        merge(row_tally.entry(key.clone()).or_default(), &tally);
        let last_success = runs
            .iter()
            .rev()
            .find(|r| r.outcome == Outcome::Ok)
            .map(|r| r.finished.to_string());
        let problems: Vec<compliance::Occurrence> = occurrences
            .iter()
            .rev()
            .filter(|o| !matches!(o.status, Status::OnTime | Status::Pending))
            .take(10)
            .map(|o| compliance::Occurrence {
                due: o.due.to_string(),
                deadline: o.deadline.to_string(),
                status: o.status,
            })
            .collect();
        let row = rows.entry(key).or_insert_with(|| DatabaseCompliance {
            instance: b.instance.clone(),
            db: b.db.clone(),
            env: b.env.clone(),
            template: b.template.to_string(),
            since: (b.since > Timestamp::MIN).then(|| b.since.to_string()),
            share: Share::default(),
            tasks: vec![],
        });
        row.tasks.push(TaskCompliance {
            task: b.task.task,
            schedule: b
                .task
                .cron
                .as_ref()
                .map(|c| format!("cron {c}"))
                .or_else(|| b.task.every.as_ref().map(|e| format!("every {e}")))
                .unwrap_or_default(),
            share: Share::of(&tally),
            last_success,
            problems,
        });
    }
    let mut databases: Vec<DatabaseCompliance> = rows
        .into_iter()
        .map(|(key, mut row)| {
            row.share = Share::of(&row_tally[&key]);
            row
        })
        .collect();
    databases.sort_by(|a, b| {
        a.share
            .sort_key()
            .total_cmp(&b.share.sort_key())
            .then(b.share.due.cmp(&a.share.due))
            .then(a.instance.cmp(&b.instance))
            .then(a.db.cmp(&b.db))
    });
    let heatmap_days = day_count.div_ceil(HEATMAP_COLUMNS);
    let heatmap = databases
        .iter()
        .take(40)
        .map(|row| {
            let key = (row.instance.clone(), row.db.clone());
            HeatRow {
                name: match &row.db {
                    Some(db) => format!("{}/{db}", row.instance),
                    None => row.instance.clone(),
                },
                ratio: row.share.ratio,
                days: row_days[&key]
                    .chunks(heatmap_days)
                    .map(|days| {
                        let mut t = Tally::default();
                        days.iter().for_each(|d| merge(&mut t, d));
                        t.ratio().map(|r| round(r, 4))
                    })
                    .collect(),
            }
        })
        .collect();
    let daily = daily
        .iter()
        .enumerate()
        .map(|(i, tally)| Day {
            date: (period.from + SignedDuration::from_hours(24 * i as i64))
                .to_zoned(jiff::tz::TimeZone::UTC)
                .date()
                .to_string(),
            share: Share::of(tally),
        })
        .collect();
    let durations = gathered
        .durations
        .iter_mut()
        .map(|(task, seconds)| {
            seconds.sort_by(f64::total_cmp);
            let pick = |q: f64| seconds[((seconds.len() - 1) as f64 * q).round() as usize];
            Durations {
                task: task.clone(),
                runs: seconds.len(),
                median_seconds: round(pick(0.5), 3),
                p95_seconds: round(pick(0.95), 3),
                max_seconds: round(pick(1.0), 3),
            }
        })
        .collect();
    let scorecard = scorecard(&gathered, &fleet, &period, goals);
    let next_due = schedule
        .templates
        .iter()
        .flat_map(|template| {
            template.tasks.iter().map(|task| NextDue {
                template: template.name.clone(),
                task: task.task,
                schedule: match (&task.cron, &task.every) {
                    (Some(cron), _) => format!(
                        "{cron} ({})",
                        task.window.as_ref().map_or("UTC", |w| w.time_zone.as_str())
                    ),
                    (None, Some(every)) => format!("every {every}"),
                    (None, None) => String::new(),
                },
                at: compliance::next_due(task, period.now).map(|t| t.to_string()),
            })
        })
        .collect();
    Ok(Report {
        from: period.from.to_string(),
        to: period.to.to_string(),
        generated_at: period.now.to_string(),
        ledger: store.describe(),
        records: gathered.records,
        unreadable_lines: unreadable,
        fleet: Share::of(&fleet),
        by_env: by_env
            .iter()
            .map(|(k, t)| (k.clone(), Share::of(t)))
            .collect(),
        by_task: by_task
            .iter()
            .map(|(k, t)| (k.clone(), Share::of(t)))
            .collect(),
        databases,
        unscheduled,
        daily,
        durations,
        heatmap,
        heatmap_days,
        scorecard,
        next_due,
        warnings,
    })
}

fn merge(into: &mut Tally, from: &Tally) {
    into.on_time += from.on_time;
    into.late += from.late;
    into.missed += from.missed;
    into.failed += from.failed;
    into.pending += from.pending;
    into.out_of_window += from.out_of_window;
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn scorecard(g: &Gathered, fleet: &Tally, period: &Period, goals: &Goals) -> Vec<Criterion> {
    let days = period.days();
    let mut out = Vec::new();
    let ratio = fleet.ratio();
    out.push(Criterion {
        name: "maintenance on schedule".into(),
        goal: format!(">= {:.0}%", goals.compliance * 100.0),
        value: ratio.map(|r| round(r, 4)),
        met: ratio.map(|r| r >= goals.compliance),
        detail: format!(
            "{} of {} due occurrences on time ({} late, {} missed, {} failed, {} out of window)",
            fleet.on_time,
            fleet.due(),
            fleet.late,
            fleet.missed,
            fleet.failed,
            fleet.out_of_window
        ),
    });
    let incidents = g.incidents + g.detected_outages;
    let per_quarter = f64::from(incidents) * 91.0 / days;
    out.push(Criterion {
        name: "unplanned downtime incidents".into(),
        goal: format!("<= {} per quarter", goals.incidents_per_quarter),
        value: Some(round(per_quarter, 2)),
        met: Some(per_quarter <= goals.incidents_per_quarter),
        detail: format!(
            "{} recorded (dbcadence incident record) + {} detected by inventory availability checks in {:.0} days",
            g.incidents, g.detected_outages, days
        ),
    });
    let backups = g.backups_in_period.len();
    let verified = g
        .backups_in_period
        .iter()
        .filter(|p| g.verified_backups.contains(*p))
        .count();
    let share = (backups > 0).then(|| verified as f64 / backups as f64);
    out.push(Criterion {
        name: "backups verified by restore".into(),
        goal: format!("{:.0}%", goals.verified_share * 100.0),
        value: share.map(|s| round(s, 4)),
        met: share.map(|s| s >= goals.verified_share),
        detail: if backups == 0 {
            "no successful backup in the period".into()
        } else {
            format!("{verified} of {backups} backups of the period verified by a restore")
        },
    });
    let per_30 = f64::from(g.alert_errors) * 30.0 / days;
    out.push(Criterion {
        name: "alert false positives + negatives".into(),
        goal: format!("< {} per 30 days", goals.alert_errors_per_30_days),
        value: Some(round(per_30, 2)),
        met: Some(per_30 < goals.alert_errors_per_30_days),
        detail: if g.alert_feedback == 0 {
            "no alert feedback recorded in the period (dbcadence alert feedback)".into()
        } else {
            format!(
                "{} wrong of {} alerts with feedback",
                g.alert_errors, g.alert_feedback
            )
        },
    });
    let reduction = (g.tune_before > 0.0).then(|| 1.0 - g.tune_after / g.tune_before);
    out.push(Criterion {
        name: "query-time reduction after tuning".into(),
        goal: format!(">= {:.0}%", goals.tune_reduction * 100.0),
        value: reduction.map(|r| round(r, 4)),
        met: reduction.map(|r| r >= goals.tune_reduction),
        detail: if g.tune_runs == 0 {
            "no tune run with measured query times in the period".into()
        } else {
            format!(
                "{} tune runs: {:.0} ms before, {:.0} ms after",
                g.tune_runs, g.tune_before, g.tune_after
            )
        },
    });
    out
}

/// Metrics from a report: compliance ratios per scope (fleet, env, task, database) and, per
/// binding, the longest a task may go without success (for DbcadenceMaintenanceOverdue).
pub fn samples(report: &Report, schedule: &ScheduleFile, now: Timestamp) -> Vec<Sample> {
    const RATIO: &str = "dbcadence_compliance_ratio";
    const HELP: &str = "Share of due maintenance done on time in the report's period.";
    // A scope with nothing due has no ratio: its series is left out (absent = no data), never
    // written as a green 1.0.
    let mut out = Vec::new();
    let mut ratio = |labels: &[(&str, &str)], share: &Share| {
        if let Some(value) = share.ratio {
            out.push(Sample::gauge(RATIO, HELP, labels, value));
        }
    };
    ratio(&[("scope", "fleet")], &report.fleet);
    for (env, share) in &report.by_env {
        ratio(&[("scope", "env"), ("env", env)], share);
    }
    for (task, share) in &report.by_task {
        ratio(&[("scope", "task"), ("task", task)], share);
    }
    for row in &report.databases {
        let db = row.db.as_deref().unwrap_or("");
        ratio(
            &[
                ("scope", "database"),
                ("instance", &row.instance),
                ("db", db),
            ],
            &row.share,
        );
    }
    for row in &report.databases {
        let Some(template) = schedule.templates.iter().find(|t| t.name == row.template) else {
            continue;
        };
        let db = row.db.as_deref().unwrap_or("");
        for task in &row.tasks {
            let Some(ts) = template.tasks.iter().find(|t| t.task == task.task) else {
                continue;
            };
            if let Ok(max_age) = compliance::max_age_seconds(ts, now) {
                out.push(Sample::gauge(
                    "dbcadence_schedule_max_age_seconds",
                    "Longest a task may go without success and stay on schedule (widest gap between due times plus grace).",
                    &[("task", task.task.as_str()), ("instance", &row.instance), ("db", db)],
                    max_age as f64,
                ));
            }
        }
    }
    for (i, criterion) in report.scorecard.iter().enumerate() {
        if let Some(met) = criterion.met {
            let id = ["compliance", "incidents", "verified", "alerts", "tuning"]
                .get(i)
                .copied()
                .unwrap_or("other");
            out.push(Sample::gauge(
                "dbcadence_scorecard_met",
                "Success criterion of the scorecard met (1) or not (0).",
                &[("criterion", id)],
                if met { 1.0 } else { 0.0 },
            ));
        }
    }
    out
}

/// The metric families a report owns: replaced whole on every write, so that a database
/// that left the fleet leaves the metrics too.
pub const REPORT_METRICS: &[&str] = &[
    "dbcadence_compliance_ratio",
    "dbcadence_schedule_max_age_seconds",
    "dbcadence_scorecard_met",
];

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

fn default_days() -> u32 {
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
fn substance(report: &Report) -> String {
    let mut copy = report.clone();
    copy.generated_at.clear();
    copy.from.clear();
    copy.to.clear();
    serde_json::to_string(&copy).unwrap_or_default()
}

/// A short digest of the substance, written into the report file.
fn digest(report: &Report) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(substance(report).as_bytes());
    hash.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

const DIGEST_MARK: &str = "dbcadence-report-digest: ";

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

fn digest_in(text: &str) -> Option<&str> {
    let start = text.rfind(DIGEST_MARK)? + DIGEST_MARK.len();
    text.get(start..start + 24)
}

/// Builds the report, updates the compliance metrics, writes the file when asked and
/// records the run. Check mode builds the report and writes nothing.
pub fn run(request: &ComplianceRequest, check_mode: bool) -> Result<ComplianceOutcome> {
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
            Ok(outcome)
        }
        Err(e) => {
            recorder.fail(target, &e);
            Err(e)
        }
    }
}

fn run_unrecorded(request: &ComplianceRequest, check_mode: bool) -> Result<ComplianceOutcome> {
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
    let now = Timestamp::now();
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

/// Replaces the report's metric families with this report's samples.
pub fn write_metrics(
    metrics: &crate::metrics::Metrics,
    report: &Report,
    schedule: &ScheduleFile,
) -> Result<Vec<String>> {
    let now = parse_time(&report.generated_at).unwrap_or_else(|_| Timestamp::now());
    metrics.update_replacing(REPORT_METRICS, &samples(report, schedule, now))
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::ledger::Ledger;

    fn line(
        task: &str,
        db: Option<&str>,
        finished: &str,
        outcome: &str,
        check: bool,
        details: &str,
    ) -> String {
        let target = match db {
            Some(db) => format!(r#"{{"instance":"pg1","db":"{db}"}}"#),
            None => r#"{"instance":"fleet"}"#.to_string(),
        };
        format!(
            r#"{{"id":"x","task":"{task}","target":{target},"started_at":"{finished}","finished_at":"{finished}","outcome":"{outcome}","changed":true,"check_mode":{check},"details":{details}}}"#
        )
    }

    fn inventory(at: &str, dbs: &[&str], unreachable: &[&str]) -> String {
        let dbs: Vec<String> = dbs
            .iter()
            .map(|d| {
                let copy = if d.contains("_bak_") {
                    r#""app""#
                } else {
                    "null"
                };
                format!(r#"{{"name":"{d}","env":"production","copy_of":{copy}}}"#)
            })
            .collect();
        let unreachable: Vec<String> = unreachable.iter().map(|u| format!("\"{u}\"")).collect();
        let details = format!(
            r#"{{"fleet":[{{"instance":"pg1","engine":"postgresql","env":"production","role":"primary","labels":{{"tier":"gold"}},"databases":[{}]}},{{"instance":"pg1r","engine":"postgresql","env":"production","role":"replica","labels":{{}},"databases":[{{"name":"app","env":"production"}}]}}],"unreachable":[{}]}}"#,
            dbs.join(","),
            unreachable.join(",")
        );
        line("inventory", None, at, "ok", false, &details)
    }

    const SCHEDULE: &str = "templates:\n  - name: pg-prod\n    engine: postgresql\n    env: production\n    tasks:\n      - {task: backup, cron: '0 1 * * *', grace: 2h}\n";

    fn ledger(lines: &[String]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        (dir, Store::File(Ledger::new(path)))
    }

    fn period() -> Period {
        Period {
            from: "2026-11-01T00:00:00Z".parse().unwrap(),
            to: "2026-11-08T00:00:00Z".parse().unwrap(),
            now: "2026-11-08T12:00:00Z".parse().unwrap(),
        }
    }

    fn fixture() -> Vec<String> {
        let ok = r#"{"path":"/b/x"}"#;
        let mut lines = vec![inventory(
            "2026-10-31T00:00:00Z",
            &["app", "app_bak_20261001"],
            &[],
        )];
        for day in [1, 2, 6, 7] {
            lines.push(line(
                "backup",
                Some("app"),
                &format!("2026-11-0{day}T01:30:00Z"),
                "ok",
                false,
                ok,
            ));
        }
        // Nov 3: only a rehearsal (check mode) -> missed; a torn line from a crash.
        lines.push(line(
            "backup",
            Some("app"),
            "2026-11-03T01:30:00Z",
            "ok",
            true,
            "{}",
        ));
        lines.push(r#"{"id":"torn","task":"back"#.to_string());
        // Nov 4: failed, retried inside the grace -> on time.
        lines.push(line(
            "backup",
            Some("app"),
            "2026-11-04T01:10:00Z",
            "failed",
            false,
            "{}",
        ));
        lines.push(inventory(
            "2026-11-04T00:00:00Z",
            &["app", "app_bak_20261001", "new"],
            &["pg2"],
        ));
        lines.push(line(
            "backup",
            Some("app"),
            "2026-11-04T02:30:00Z",
            "ok",
            false,
            r#"{"path":"/b/verified"}"#,
        ));
        lines.push(line(
            "verify",
            Some("app"),
            "2026-11-04T05:00:00Z",
            "ok",
            false,
            r#"{"backup":"/b/verified"}"#,
        ));
        // Nov 5: after the grace -> late.
        lines.push(line(
            "backup",
            Some("app"),
            "2026-11-05T05:00:00Z",
            "ok",
            false,
            ok,
        ));
        lines.push(inventory(
            "2026-11-05T00:00:00Z",
            &["app", "app_bak_20261001", "new"],
            &["pg2"],
        ));
        lines.push(inventory(
            "2026-11-06T00:00:00Z",
            &["app", "app_bak_20261001", "new"],
            &[],
        ));
        lines
    }

    #[test]
    fn compliance_from_a_synthetic_ledger() {
        let (_dir, store) = ledger(&fixture());
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        assert_eq!(report.unreadable_lines, vec![7], "{report:#?}");
        assert!(report.warnings[0].contains("torn"));
        let app = report
            .databases
            .iter()
            .find(|d| d.db.as_deref() == Some("app"))
            .unwrap();
        let t = &app.share.tally;
        assert_eq!(
            (t.on_time, t.late, t.missed, t.failed),
            (5, 1, 1, 0),
            "{app:#?}"
        );
        // Added on Nov 4: owes Nov 4..7 only, and did nothing.
        let new = report
            .databases
            .iter()
            .find(|d| d.db.as_deref() == Some("new"))
            .unwrap();
        assert_eq!((new.share.tally.missed, new.share.due), (4, 4));
        assert!(new.since.as_deref().unwrap().starts_with("2026-11-04"));
        // Worst first; the replica and the backup copy owe nothing.
        assert_eq!(report.databases[0].db.as_deref(), Some("new"));
        assert_eq!(report.databases.len(), 2);
        assert!(report.unscheduled.is_empty());
        assert_eq!((report.fleet.tally.on_time, report.fleet.due), (5, 11));
        assert_eq!(report.by_env["production"].due, 11);
        assert_eq!(report.daily.len(), 7);
        assert_eq!(
            report.daily[2].share.tally.missed,
            2 - 1,
            "Nov 3: app missed, new not yet owed"
        );
        // Scorecard: one outage of pg2 (seen twice, counted once); 1 of 5 backups verified.
        let card: BTreeMap<&str, &Criterion> = report
            .scorecard
            .iter()
            .map(|c| (c.name.as_str(), c))
            .collect();
        assert_eq!(card["maintenance on schedule"].met, Some(false));
        assert!(
            card["unplanned downtime incidents"]
                .detail
                .starts_with("0 recorded (dbcadence incident record) + 1 detected"),
            "{:?}",
            card["unplanned downtime incidents"]
        );
        assert_eq!(
            card["backups verified by restore"].value,
            Some(0.1667),
            "1 of 6"
        );
        assert_eq!(card["query-time reduction after tuning"].met, None);
        // Markdown and HTML carry the same numbers.
        assert!(markdown(&report).contains("**Fleet: 45.5% on time** (5 of 11"));
        assert!(html(&report).contains("45.5%"));
    }

    #[test]
    fn nothing_due_is_no_data_never_a_green_hundred_percent() {
        // The first inventory saw the fleet after the period's last due time: nothing is owed.
        let lines = vec![inventory("2026-11-07T23:00:00Z", &["app"], &[])];
        let (_dir, store) = ledger(&lines);
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        assert_eq!((report.fleet.due, report.fleet.ratio), (0, None));
        assert!(report.fleet.headline().starts_with("no data"));
        let on_schedule = report
            .scorecard
            .iter()
            .find(|c| c.name == "maintenance on schedule")
            .unwrap();
        assert_eq!((on_schedule.value, on_schedule.met), (None, None));
        let md = markdown(&report);
        assert!(md.contains("no data") && !md.contains("100.0%"), "{md}");
        let page = html(&report);
        assert!(page.contains("no data") && !page.contains("100.0%"));
        let samples = samples(&report, &schedule, period().now);
        assert!(
            !samples
                .iter()
                .any(|s| s.name == "dbcadence_compliance_ratio"),
            "no ratio series when nothing was due"
        );
        assert!(
            check_goal(&report, Some(0.95)).is_ok(),
            "no data is not a failure"
        );
        // A new user sees when the first proof will arrive: the next due time per task.
        assert_eq!(report.next_due.len(), 1);
        assert_eq!(
            report.next_due[0].at.as_deref(),
            Some("2026-11-09T01:00:00Z"),
            "the next 01:00 UTC after now (2026-11-08T12:00)"
        );
        assert!(
            md.contains("## Next due") && md.contains("2026-11-09T01:00:00Z"),
            "{md}"
        );
        assert!(page.contains("Next due"));
    }

    #[test]
    fn a_prune_is_never_a_backup() {
        // Every night a prune-only job runs where the backup should have: nothing is on time.
        let mut lines = vec![inventory("2026-10-31T00:00:00Z", &["app"], &[])];
        for day in 1..=7 {
            lines.push(line(
                "prune",
                Some("app"),
                &format!("2026-11-0{day}T01:30:00Z"),
                "ok",
                false,
                r#"{"pruned":[]}"#,
            ));
        }
        let (_dir, store) = ledger(&lines);
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        let t = &report.fleet.tally;
        assert_eq!((t.on_time, t.missed), (0, 7), "{report:#?}");
    }

    #[test]
    fn assignments_pick_databases_by_group_and_labels() {
        let (_dir, store) = ledger(&fixture());
        let text = format!(
            "{SCHEDULE}  - name: copies\n    tasks:\n      - {{task: backup, every: 1w}}\nassignments:\n  - {{template: pg-prod, group: env_production, labels: {{tier: silver}}}}\n  - {{template: copies, group: copies}}\n"
        );
        let schedule = schedule::parse(&text).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        // tier is gold: nothing matches pg-prod; the copy follows the copies template.
        assert_eq!(report.unscheduled, vec!["pg1/app", "pg1/new"]);
        assert_eq!(report.databases.len(), 1);
        assert_eq!(report.databases[0].template, "copies");
        let schedule = schedule::parse(&text.replace("silver", "gold")).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        assert!(report.unscheduled.is_empty());
        assert_eq!(report.databases.len(), 3);
    }

    #[test]
    fn the_fast_timestamp_parser_agrees_with_jiff() {
        for text in [
            "2026-11-24T10:00:00Z",
            "2026-02-28T23:59:59.5Z",
            "2024-02-29T12:00:00.123456789Z",
            "1999-12-31T00:00:00.000001Z",
            "2026-11-24T10:00:00+01:00",
        ] {
            assert_eq!(parse_timestamp(text), text.parse().ok(), "{text}");
        }
        assert_eq!(parse_timestamp("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn a_dropped_database_owes_nothing_after_it_left() {
        let mut lines = fixture();
        lines.push(inventory(
            "2026-11-07T00:00:00Z",
            &["app", "app_bak_20261001"],
            &[],
        ));
        let (_dir, store) = ledger(&lines);
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        let new = report
            .databases
            .iter()
            .find(|d| d.db.as_deref() == Some("new"))
            .unwrap();
        assert_eq!(new.share.due, 2, "Nov 4 and 5 only (last seen Nov 6 00:00)");
    }

    #[test]
    fn metrics_cover_every_scope() {
        let (_dir, store) = ledger(&fixture());
        let schedule = schedule::parse(SCHEDULE).unwrap();
        let report = build(&store, &schedule, period(), &Goals::default()).unwrap();
        let samples = samples(&report, &schedule, period().now);
        let scopes: Vec<&str> = samples
            .iter()
            .filter(|s| s.name == "dbcadence_compliance_ratio")
            .map(|s| s.labels["scope"].as_str())
            .collect();
        assert_eq!(scopes, ["fleet", "env", "task", "database", "database"]);
        let max_age = samples
            .iter()
            .find(|s| s.name == "dbcadence_schedule_max_age_seconds")
            .unwrap();
        assert_eq!(max_age.value, 86_400.0 + 7_200.0, "daily cron + 2h grace");
    }
}
