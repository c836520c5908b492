//! Building the report: schedules bound to the gathered fleet, every binding judged by
//! compliance, tallies per database, task, environment, day and fleet.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::Result;
use crate::compliance::{self, Status, Tally};
use crate::ledger::{Outcome, Store};
use crate::schedule::{ScheduleFile, TaskSchedule, Template, assign};

/// The template a database of the gathered fleet follows.
pub(super) fn template_for<'s>(schedule: &'s ScheduleFile, db: &FleetDb) -> Option<&'s Template> {
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

pub(super) struct Bound<'s> {
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
    let (mut gathered, unreadable) = gather(store, &period)?;
    let warnings = ledger_warnings(&gathered, &unreadable);
    let (bound, unscheduled) = bind(schedule, &gathered, &period);
    let day_count = (period.days().ceil() as usize).max(1);
    let mut judged = judge_all(&bound, &gathered, &period, day_count)?;
    let mut databases = judged.ranked_rows();
    add_recovery(&mut databases, schedule, &gathered, &period);
    let heatmap_days = day_count.div_ceil(HEATMAP_COLUMNS);
    let heatmap = heat_rows(&databases, &judged.row_days, heatmap_days);
    let scorecard = scorecard(&gathered, &judged.fleet, &period, goals);
    Ok(Report {
        from: period.from.to_string(),
        to: period.to.to_string(),
        generated_at: period.now.to_string(),
        ledger: store.describe(),
        records: gathered.records,
        unreadable_lines: unreadable,
        fleet: Share::of(&judged.fleet),
        by_env: shares(&judged.by_env),
        by_task: shares(&judged.by_task),
        databases,
        unscheduled,
        daily: days(&judged.daily, &period),
        durations: durations(&mut gathered),
        heatmap,
        heatmap_days,
        scorecard,
        next_due: next_due(schedule, period.now),
        audits: std::mem::take(&mut gathered.audits).into_values().collect(),
        changes: std::mem::take(&mut gathered.changes)
            .into_values()
            .collect(),
        warnings,
    })
}

/// RPO and RTO of every database row, against its template's targets.
fn add_recovery(
    rows: &mut [DatabaseCompliance],
    schedule: &ScheduleFile,
    gathered: &Gathered,
    period: &Period,
) {
    let end = period.now.min(period.to);
    for row in rows.iter_mut() {
        let Some(db) = row.db.as_deref() else {
            continue;
        };
        let template = schedule.templates.iter().find(|t| t.name == row.template);
        let since = row
            .since
            .as_deref()
            .and_then(|s| s.parse::<Timestamp>().ok());
        let start = since.map_or(period.from, |s| s.max(period.from));
        row.recovery = Some(
            gathered
                .recovery
                .of(&row.instance, db, template, start, end),
        );
    }
}

/// Reads the ledger on every core (the file in chunks cut at line boundaries) and merges the
/// chunks in order; runs end up sorted by finish time.
fn gather(store: &Store, period: &Period) -> Result<(Gathered, Vec<usize>)> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (parts, unreadable) = store.scan_chunks(threads, Gathered::default, |g, record| {
        g.visit(record, period)
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
    Ok((gathered, unreadable))
}

fn ledger_warnings(gathered: &Gathered, unreadable: &[usize]) -> Vec<String> {
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
    warnings
}

/// Binds every database of the fleet to the tasks of its template, each at its scope (per
/// database, once per instance, once for the fleet). Returns the bindings and the databases
/// no template applies to.
fn bind<'s>(
    schedule: &'s ScheduleFile,
    gathered: &Gathered,
    period: &Period,
) -> (Vec<Bound<'s>>, Vec<String>) {
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
    (bound, unscheduled)
}

/// A row of the report: an instance and, for per-database tasks, a database.
type RowKey = (String, Option<String>);

/// The tallies of every binding, per scope.
struct Judged {
    fleet: Tally,
    by_env: BTreeMap<String, Tally>,
    by_task: BTreeMap<String, Tally>,
    daily: Vec<Tally>,
    rows: BTreeMap<RowKey, DatabaseCompliance>,
    row_days: BTreeMap<RowKey, Vec<Tally>>,
    row_tally: BTreeMap<RowKey, Tally>,
}

impl Judged {
    /// The rows with their shares, worst first (taken out of the tallies).
    fn ranked_rows(&mut self) -> Vec<DatabaseCompliance> {
        let mut databases: Vec<DatabaseCompliance> = std::mem::take(&mut self.rows)
            .into_iter()
            .map(|(key, row)| DatabaseCompliance {
                share: Share::of(&self.row_tally[&key]),
                ..row
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
        databases
    }
}

/// Judges every binding against its runs and adds the result to every scope it belongs to.
fn judge_all(
    bound: &[Bound],
    gathered: &Gathered,
    period: &Period,
    day_count: usize,
) -> Result<Judged> {
    let day_of = |t: Timestamp| -> Option<usize> {
        if t < period.from || t > period.to {
            return None;
        }
        Some(((t.duration_since(period.from).as_secs() / 86_400) as usize).min(day_count - 1))
    };
    let mut judged = Judged {
        fleet: Tally::default(),
        by_env: BTreeMap::new(),
        by_task: BTreeMap::new(),
        daily: vec![Tally::default(); day_count],
        rows: BTreeMap::new(),
        row_days: BTreeMap::new(),
        row_tally: BTreeMap::new(),
    };
    let no_runs = Vec::new();
    let mut key_buffer = String::new();
    // Due times depend on the template task only: computed once, shared by its databases.
    let mut dues_cache: HashMap<*const TaskSchedule, Vec<compliance::Due>> = HashMap::new();
    for b in bound {
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
        let days = judged
            .row_days
            .entry(key.clone())
            .or_insert_with(|| vec![Tally::default(); day_count]);
        for o in &occurrences {
            tally.add(o.status);
            if let Some(d) = day_of(o.due) {
                judged.daily[d].add(o.status);
                days[d].add(o.status);
            }
        }
        merge(&mut judged.fleet, &tally);
        merge(judged.by_env.entry(b.env.clone()).or_default(), &tally);
        merge(judged.by_task.entry(name.to_string()).or_default(), &tally);
        merge(judged.row_tally.entry(key.clone()).or_default(), &tally);
        let row = judged
            .rows
            .entry(key)
            .or_insert_with(|| DatabaseCompliance {
                instance: b.instance.clone(),
                db: b.db.clone(),
                env: b.env.clone(),
                template: b.template.to_string(),
                since: (b.since > Timestamp::MIN).then(|| b.since.to_string()),
                share: Share::default(),
                tasks: vec![],
                recovery: None,
            });
        row.tasks.push(task_row(b, runs, &occurrences, &tally));
    }
    Ok(judged)
}

/// One task of a row: its share, last success and the occurrences that were not on time.
fn task_row(
    b: &Bound,
    runs: &[compliance::Run],
    occurrences: &[compliance::Judged],
    tally: &Tally,
) -> TaskCompliance {
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
    TaskCompliance {
        task: b.task.task,
        schedule: b
            .task
            .cron
            .as_ref()
            .map(|c| format!("cron {c}"))
            .or_else(|| b.task.every.as_ref().map(|e| format!("every {e}")))
            .unwrap_or_default(),
        share: Share::of(tally),
        last_success,
        problems,
    }
}

fn shares(tallies: &BTreeMap<String, Tally>) -> BTreeMap<String, Share> {
    tallies
        .iter()
        .map(|(k, t)| (k.clone(), Share::of(t)))
        .collect()
}

/// The heat map: the 40 worst rows, by columns of `heatmap_days` days.
fn heat_rows(
    databases: &[DatabaseCompliance],
    row_days: &BTreeMap<RowKey, Vec<Tally>>,
    heatmap_days: usize,
) -> Vec<HeatRow> {
    databases
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
        .collect()
}

/// One share per day of the period (UTC days).
fn days(daily: &[Tally], period: &Period) -> Vec<Day> {
    daily
        .iter()
        .enumerate()
        .map(|(i, tally)| Day {
            date: (period.from + SignedDuration::from_hours(24 * i as i64))
                .to_zoned(jiff::tz::TimeZone::UTC)
                .date()
                .to_string(),
            share: Share::of(tally),
        })
        .collect()
}

/// Median, 95th percentile and longest run per task in the period.
fn durations(gathered: &mut Gathered) -> Vec<Durations> {
    gathered
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
        .collect()
}

/// When each template task is next due after `now`.
fn next_due(schedule: &ScheduleFile, now: Timestamp) -> Vec<NextDue> {
    schedule
        .templates
        .iter()
        .flat_map(|template| {
            template.tasks.iter().map(move |task| NextDue {
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
                at: compliance::next_due(task, now).map(|t| t.to_string()),
            })
        })
        .collect()
}

pub(super) fn merge(into: &mut Tally, from: &Tally) {
    into.on_time += from.on_time;
    into.late += from.late;
    into.missed += from.missed;
    into.failed += from.failed;
    into.pending += from.pending;
    into.out_of_window += from.out_of_window;
}

pub(super) fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}
