//! One pass over the ledger: what the report needs from every record, folded per chunk of
//! the file and merged (runs per task/instance/database, the fleet as inventories saw it,
//! backups and their verifications, incidents, alert feedback, tuning gains).

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use serde::Deserialize;

use super::*;
use crate::compliance::{self};
use crate::inventory::InventoryDetails;
use crate::ledger::{Outcome, RecordView};
use crate::task::Task;

/// A database the inventory saw.
#[derive(Debug, Clone)]
pub(super) struct FleetDb {
    pub(super) instance: String,
    pub(super) db: String,
    pub(super) engine: String,
    pub(super) env: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) copy: bool,
    pub(super) replica: bool,
    pub(super) first_seen: Timestamp,
    pub(super) last_seen: Timestamp,
}

/// The run index: keys are our own ledger's strings, so SipHash's protection against hostile
/// keys buys nothing here and rustc's Fx hash is faster.
pub(super) type RunIndex = rustc_hash::FxHashMap<String, Vec<compliance::Run>>;

/// The run index key of (task, instance, db).
pub(super) fn run_key(buffer: &mut String, task: &str, instance: &str, db: Option<&str>) {
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
pub(super) fn parse_timestamp(text: &str) -> Option<Timestamp> {
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
pub(super) struct Gathered {
    pub(super) records: usize,
    /// (task, instance, db) -> real runs (finish time, outcome); see [`run_key`].
    pub(super) runs: RunIndex,
    /// Inventory observations in ledger order: (time, in period, details as written, or None
    /// when the same as the one before in this chunk). Replayed in order after the merge.
    pub(super) inventory_events: Vec<(Timestamp, bool, Option<String>)>,
    pub(super) fleet: BTreeMap<(String, String), FleetDb>,
    pub(super) first_inventory: Option<Timestamp>,
    /// The previous inventory's details as written, and the databases it listed.
    pub(super) last_inventory_raw: String,
    pub(super) last_inventory_keys: Vec<(String, String)>,
    pub(super) last_inventory: Option<Timestamp>,
    pub(super) durations: BTreeMap<String, Vec<f64>>,
    /// Backup paths, as 64-bit hashes: 430,000 backups need no strings to be matched with
    /// their verifications.
    pub(super) backups_in_period: Vec<u64>,
    pub(super) verified_backups: rustc_hash::FxHashSet<u64>,
    pub(super) incidents: u32,
    /// Endpoint -> currently unreachable (an outage counts once, however many runs saw it).
    pub(super) outages: HashMap<String, bool>,
    pub(super) detected_outages: u32,
    pub(super) alert_errors: u32,
    pub(super) alert_feedback: u32,
    pub(super) tune_before: f64,
    pub(super) tune_after: f64,
    pub(super) tune_runs: u32,
    /// The last security audit (mode checks) of each instance in the period.
    pub(super) audits: BTreeMap<String, super::model::AuditSummary>,
    /// The last transition of each change record in the period.
    pub(super) changes: BTreeMap<String, super::model::ChangeSummary>,
    /// Backups, their proofs and measured restores up to the period's end (RPO, RTO).
    pub(super) recovery: super::recovery::RecoveryEvidence,
    pub(super) key: String,
}

impl Gathered {
    pub(super) fn visit(&mut self, record: &RecordView, period: &Period) {
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
        if record.task == Task::Inventory && record.outcome != Outcome::Skipped {
            self.note_inventory(record, finished, in_period);
        }
        if record.check_mode {
            return;
        }
        self.index_run(record, finished);
        if finished <= period.to {
            self.recovery.visit(record, finished);
        }
        if in_period {
            self.note_duration(record, finished);
            self.note_evidence(record);
        } else if record.task == Task::Verify
            && record.outcome == Outcome::Ok
            && let Some(path) = detail_string(record, "backup")
        {
            // Verifications after the period still prove backups taken in it.
            self.verified_backups.insert(path_hash(&path));
        }
    }

    /// Most inventories see the same fleet as the one before: then only the times move
    /// (parsing 500 databases four times a day for years is what would cost).
    fn note_inventory(&mut self, record: &RecordView, finished: Timestamp, in_period: bool) {
        let raw = record.details.map_or("", |d| d.get());
        if raw == self.last_inventory_raw {
            self.inventory_events.push((finished, in_period, None));
        } else {
            self.inventory_events
                .push((finished, in_period, Some(raw.to_string())));
            self.last_inventory_raw = raw.to_string();
        }
    }

    /// Files the run under (task, instance, db) for the judging.
    fn index_run(&mut self, record: &RecordView, finished: Timestamp) {
        run_key(
            &mut self.key,
            record.task.as_str(),
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
    }

    fn note_duration(&mut self, record: &RecordView, finished: Timestamp) {
        let Some(started) = parse_timestamp(&record.started_at) else {
            return;
        };
        let seconds = finished.duration_since(started).as_secs_f64().max(0.0);
        let task = record.task.as_str();
        match self.durations.get_mut(task) {
            Some(list) => list.push(seconds),
            None => {
                self.durations.insert(task.to_string(), vec![seconds]);
            }
        }
    }

    /// What a run in the period proves for the scorecard: backups and their verifications,
    /// incidents, alert feedback, tuning gains.
    fn note_evidence(&mut self, record: &RecordView) {
        match (record.task, record.outcome) {
            (Task::Audit, Outcome::Ok) => {
                #[derive(serde::Deserialize)]
                struct Details {
                    mode: String,
                    findings: Vec<String>,
                    by_severity: BTreeMap<String, usize>,
                }
                if let Some(d) = record.details::<Details>().filter(|d| d.mode == "checks") {
                    self.audits.insert(
                        record.target.instance.to_string(),
                        super::model::AuditSummary {
                            instance: record.target.instance.to_string(),
                            at: record.finished_at.to_string(),
                            by_severity: d.by_severity,
                            findings: d.findings,
                        },
                    );
                }
            }
            (Task::Change, Outcome::Ok) => {
                if let Some(c) = record.details::<crate::change::ChangeRecord>() {
                    self.changes.insert(
                        c.id.clone(),
                        super::model::ChangeSummary {
                            state: c.state.as_str().into(),
                            id: c.id,
                            summary: c.summary,
                            window_start: c.window_start,
                            window_end: c.window_end,
                            hosts: c.hosts,
                            requester: c.requester,
                            approver: c.approver,
                        },
                    );
                }
            }
            (Task::Backup, Outcome::Ok) => {
                if let Some(path) = detail_string(record, "path") {
                    self.backups_in_period.push(path_hash(&path));
                }
            }
            (Task::Verify, Outcome::Ok) => {
                if let Some(path) = detail_string(record, "backup") {
                    self.verified_backups.insert(path_hash(&path));
                }
            }
            (Task::Incident, _) => {
                let planned = record
                    .details::<serde_json::Value>()
                    .and_then(|d| d.get("planned")?.as_bool())
                    .unwrap_or(false);
                if !planned {
                    self.incidents += 1;
                }
            }
            (Task::AlertFeedback, _) => {
                self.alert_feedback += 1;
                if detail_string(record, "kind")
                    .and_then(|k| crate::ledger::FeedbackKind::parse(&k))
                    .is_some_and(|k| k.is_error())
                {
                    self.alert_errors += 1;
                }
            }
            // A workload measured by the tune run itself, or the gain observed since (measure).
            (Task::Tune | Task::TuneMeasure, Outcome::Ok) => {
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
    pub(super) fn touch_inventory(&mut self, at: Timestamp) {
        self.last_inventory = Some(self.last_inventory.map_or(at, |t| t.max(at)));
        for key in &self.last_inventory_keys {
            if let Some(db) = self.fleet.get_mut(key) {
                db.last_seen = db.last_seen.max(at);
            }
        }
    }

    /// Folds a later chunk into this one (chunks come in file order).
    pub(super) fn absorb(&mut self, later: Gathered) {
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
        // A later chunk holds the later audits and transitions.
        self.audits.extend(later.audits);
        self.changes.extend(later.changes);
        self.recovery.absorb(later.recovery);
    }

    /// The inventory observations, in ledger order: the fleet and the outages.
    pub(super) fn replay_inventory(&mut self) {
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

    pub(super) fn observe_inventory(
        &mut self,
        details: InventoryDetails,
        at: Timestamp,
        in_period: bool,
    ) {
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
                    engine: instance.engine.as_str().to_string(),
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
                    entry.engine = instance.engine.as_str().to_string();
                    entry.env = db.env.clone();
                    entry.labels = instance.labels.clone();
                    entry.copy = db.copy_of.is_some();
                    entry.replica = instance.role == crate::engine::Role::Replica;
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
pub(super) struct DetailFields<'a> {
    #[serde(borrow, default)]
    path: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    backup: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

pub(super) fn path_hash(path: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(path.as_bytes());
    h.write_u8(0xff);
    h.finish()
}

pub(super) fn detail_string(record: &RecordView, key: &str) -> Option<String> {
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
