//! Schedule compliance: for every (database, task) bound to a schedule, the occurrences due in
//! a period against the runs in the ledger.
//!
//! An occurrence is due at a cron time (in the window's time zone, so a 01:30 job stays at
//! 01:30 local across daylight-saving changes) or at the end of each `every` interval
//! (intervals counted from 1970-01-01 00:00 UTC, so `every: 1d` ends at midnight UTC). It is:
//! - `on_time` when a successful run finished between the due time and due + grace (for
//!   intervals: anywhere in the interval, or within grace after it);
//! - `late` when the first success came after the grace but before the next occurrence;
//! - `failed` when runs happened in that span but none succeeded;
//! - `missed` when nothing ran at all;
//! - `pending` while its deadline is still in the future (not counted).
//!
//! Check-mode runs are rehearsals and never count.

use jiff::{Timestamp, tz::TimeZone};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ledger::{Outcome, Record};
use crate::schedule::calendar::CronSpec;
use crate::schedule::{TaskSchedule, parse_duration};
use crate::{Error, Result};

/// What became of one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    OnTime,
    Late,
    Missed,
    Failed,
    Pending,
    /// Done, but started outside the task's maintenance window: not on time.
    OutOfWindow,
}

/// One real run, as compliance needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub finished: Timestamp,
    pub started: Timestamp,
    pub outcome: Outcome,
}

/// One occurrence due and its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Occurrence {
    pub due: String,
    pub deadline: String,
    pub status: Status,
}

/// A database following a task schedule since a moment (a database added mid-period owes
/// nothing before it appeared).
#[derive(Debug, Clone)]
pub struct Binding<'a> {
    pub instance: String,
    pub db: Option<String>,
    pub task: &'a TaskSchedule,
    pub since: Timestamp,
}

/// Counts for one binding or a whole scope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tally {
    /// Due occurrences done successfully within the grace.
    pub on_time: u32,
    /// Done successfully after the grace, before the next occurrence.
    pub late: u32,
    /// Nothing ran for them.
    pub missed: u32,
    /// Runs happened, none successful.
    pub failed: u32,
    /// Deadline still ahead: not counted in due.
    pub pending: u32,
    /// Done successfully but started outside the task's maintenance window.
    #[serde(default)]
    pub out_of_window: u32,
}

impl Tally {
    pub fn add(&mut self, status: Status) {
        match status {
            Status::OnTime => self.on_time += 1,
            Status::Late => self.late += 1,
            Status::Missed => self.missed += 1,
            Status::Failed => self.failed += 1,
            Status::Pending => self.pending += 1,
            Status::OutOfWindow => self.out_of_window += 1,
        }
    }

    pub fn due(&self) -> u32 {
        self.on_time + self.late + self.missed + self.failed + self.out_of_window
    }

    /// Share of due occurrences done on time; None ("no data") when nothing was due: 0 of 0
    /// is not 100%.
    pub fn ratio(&self) -> Option<f64> {
        (self.due() > 0).then(|| f64::from(self.on_time) / f64::from(self.due()))
    }
}

fn time_zone(task: &TaskSchedule) -> Result<TimeZone> {
    let name = task.window.as_ref().map_or("UTC", |w| w.time_zone.as_str());
    TimeZone::get(name).map_err(|e| Error::invalid("time zone", format!("'{name}': {e}")))
}

/// One due time with the span a run may answer it: (due, deadline, span_start, span_end).
pub type Due = (Timestamp, Timestamp, Timestamp, Timestamp);

/// Due times of a task schedule in [from, to]. Depends on the schedule only, so the report
/// computes them once per template task and shares them between databases.
pub fn due_times(task: &TaskSchedule, from: Timestamp, to: Timestamp) -> Result<Vec<Due>> {
    let grace = jiff::SignedDuration::from_secs(parse_duration(&task.grace).unwrap_or(3600));
    let mut out = Vec::new();
    match (&task.cron, &task.every) {
        (Some(cron), _) => {
            // The same calendar the timers fire on (schedule/calendar.rs), daylight saving
            // included: a skipped local time is not due, a repeated one is due once.
            let spec = CronSpec::parse(cron).map_err(|e| Error::invalid("cron", e))?;
            let tz = time_zone(task)?;
            let mut dues = spec.occurrences(&tz, from, to);
            if dues.len() > 200_000 {
                return Err(Error::invalid(
                    "schedule",
                    "more than 200000 occurrences in the period; shorten it",
                ));
            }
            // The one after the period bounds the last span.
            if let Some(after) = spec.next_after(&tz, to, 366 * 5) {
                dues.push(after);
            }
            for pair in dues.windows(2) {
                out.push((pair[0], pair[0] + grace, pair[0], pair[1]));
            }
        }
        (None, Some(every)) => {
            let seconds =
                parse_duration(every).ok_or_else(|| Error::invalid("every", every.clone()))?;
            let step = jiff::SignedDuration::from_secs(seconds);
            // Interval ends are counted from 1970-01-01 00:00 UTC (every 6h: 00, 06, 12, 18
            // UTC), not from the period's start: the same schedule gives the same due times
            // whatever period a report looks at, so a re-run finds the same occurrences.
            let first = (from.as_second().div_euclid(seconds) + 1) * seconds;
            let mut due = Timestamp::from_second(first)
                .map_err(|e| Error::invalid("period", e.to_string()))?;
            while due <= to {
                out.push((due, due + grace, due - step, due + step));
                due += step;
            }
        }
        (None, None) => return Err(Error::invalid("schedule", "a task needs cron or every")),
    }
    Ok(out)
}

/// The first due time of a task after `after` (None for a calendar that never comes again):
/// the same calendar as due_times and the timers.
pub fn next_due(task: &TaskSchedule, after: Timestamp) -> Option<Timestamp> {
    let (spec, tz) = match (&task.cron, &task.every) {
        (Some(cron), _) => (CronSpec::parse(cron).ok()?, time_zone(task).ok()?),
        (None, Some(every)) => (
            crate::schedule::calendar::interval(parse_duration(every)?).ok()?,
            TimeZone::UTC,
        ),
        (None, None) => return None,
    };
    spec.next_after(&tz, after, 366 * 5)
}

/// The occurrences of one binding in [from, to], judged against `records` as of `now`.
pub fn evaluate(
    binding: &Binding,
    records: &[Record],
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Result<Vec<Occurrence>> {
    let mut runs: Vec<Run> = records
        .iter()
        .filter(|r| {
            !r.check_mode
                && r.task == binding.task.task
                && r.target.instance == binding.instance
                && r.target.db == binding.db
        })
        .filter_map(|r| {
            Some(Run {
                finished: r.finished_at.parse().ok()?,
                started: r.started_at.parse().ok()?,
                outcome: r.outcome,
            })
        })
        .collect();
    runs.sort_by_key(|r| r.finished);
    evaluate_runs(binding, &runs, from, to, now)
}

/// The occurrences of one binding, judged against its own real (not check-mode) runs sorted
/// by finish time.
pub fn evaluate_runs(
    binding: &Binding,
    runs: &[Run],
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Result<Vec<Occurrence>> {
    let dues = due_times(binding.task, from, to)?;
    let window = binding.task.window.as_ref();
    Ok(
        judge(&dues, binding.since, Timestamp::MAX, runs, now, window)
            .into_iter()
            .map(|j| Occurrence {
                due: j.due.to_string(),
                deadline: j.deadline.to_string(),
                status: j.status,
            })
            .collect(),
    )
}

/// One judged occurrence, in numbers (the report turns few of them into text).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    pub due: Timestamp,
    pub deadline: Timestamp,
    pub status: Status,
}

/// Judges the due times in [since, until] against runs sorted by finish time. With a window,
/// a successful run that started outside it makes its occurrence out of window, not on time.
pub fn judge(
    dues: &[Due],
    since: Timestamp,
    until: Timestamp,
    runs: &[Run],
    now: Timestamp,
    window: Option<&crate::schedule::Window>,
) -> Vec<Judged> {
    let mut out = Vec::new();
    // A run answers one occurrence only (spans of intervals overlap by their grace): the
    // earliest occurrence takes it.
    let mut used = vec![false; runs.len()];
    for &(due, deadline, span_start, span_end) in dues {
        if due < since || due > until {
            continue;
        }
        let start = runs.partition_point(|r| r.finished < span_start);
        let end = runs.partition_point(|r| r.finished < span_end.max(deadline));
        let first_ok_index = (start..end).find(|&i| !used[i] && runs[i].outcome == Outcome::Ok);
        if let Some(i) = first_ok_index {
            used[i] = true;
        }
        let status = match first_ok_index.map(|i| runs[i]) {
            Some(run) if window.is_some_and(|w| !w.contains(run.started)) => Status::OutOfWindow,
            Some(run) if run.finished <= deadline => Status::OnTime,
            Some(_) => Status::Late,
            None if deadline > now => Status::Pending,
            None if (start..end).any(|i| !used[i] && runs[i].outcome == Outcome::Failed) => {
                Status::Failed
            }
            None => Status::Missed,
        };
        out.push(Judged {
            due,
            deadline,
            status,
        });
    }
    out
}

/// The longest time a task may go without success and still be on schedule: the widest gap
/// between two due times plus the grace (for the DbcadenceMaintenanceOverdue alert).
pub fn max_age_seconds(task: &TaskSchedule, around: Timestamp) -> Result<i64> {
    let grace = parse_duration(&task.grace).unwrap_or(3600);
    if let Some(every) = &task.every {
        return Ok(parse_duration(every).unwrap_or(86_400) + grace);
    }
    // Cron: look at eight weeks (a monthly job needs at least two months).
    let from = around - jiff::SignedDuration::from_hours(24 * 62);
    let widest = due_times(task, from, around)?
        .iter()
        .map(|(_, _, start, end)| end.duration_since(*start).as_secs())
        .max()
        .unwrap_or(86_400);
    Ok(widest + grace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Target;
    use crate::schedule::Window;

    /// A nightly cron task gets a 00:00-06:00 window in `tz`; an interval task none (its
    /// runs happen around the clock).
    fn task(cron: Option<&str>, every: Option<&str>, grace: &str, tz: &str) -> TaskSchedule {
        TaskSchedule {
            task: crate::task::Task::Backup,
            cron: cron.map(String::from),
            every: every.map(String::from),
            grace: grace.into(),
            window: cron.map(|_| Window {
                start: "00:00".into(),
                end: "06:00".into(),
                time_zone: tz.into(),
            }),
            retention: None,
        }
    }

    fn run(finished: &str, outcome: Outcome) -> Record {
        Record {
            id: finished.into(),
            task: crate::task::Task::Backup,
            target: Target {
                instance: "pg1".into(),
                db: Some("app".into()),
            },
            started_at: finished.into(),
            finished_at: finished.into(),
            outcome,
            changed: true,
            check_mode: false,
            details: serde_json::Value::Null,
            change_id: None,
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn statuses(
        task: &TaskSchedule,
        records: &[Record],
        from: &str,
        to: &str,
        since: &str,
    ) -> Vec<Status> {
        let binding = Binding {
            instance: "pg1".into(),
            db: Some("app".into()),
            task,
            since: ts(since),
        };
        evaluate(
            &binding,
            records,
            ts(from),
            ts(to),
            ts("2030-01-01T00:00:00Z"),
        )
        .unwrap()
        .into_iter()
        .map(|o| o.status)
        .collect()
    }

    #[test]
    fn a_local_time_skipped_in_spring_is_not_due() {
        // 30 2 * * * in Europe/Paris over 2027-03-26..31: 02:30 does not exist on the 28th,
        // systemd does not fire, so compliance does not count it due (4, not 5).
        let nightly = task(Some("30 2 * * *"), None, "1h", "Europe/Paris");
        let dues = due_times(
            &nightly,
            ts("2027-03-26T00:00:00Z"),
            ts("2027-03-31T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(dues.len(), 4, "{dues:?}");
        assert!(
            dues.iter()
                .all(|d| !d.0.to_string().starts_with("2027-03-28"))
        );
    }

    #[test]
    fn a_run_outside_its_window_is_out_of_window_not_on_time() {
        // Due 02:00 UTC with a 00:00-06:00 window (the `task` helper): a run started at 02:05
        // is on time; one started at 06:30 and finished within the grace is out of window.
        let nightly = task(Some("0 2 * * *"), None, "6h", "UTC");
        let inside = run("2026-03-01T02:10:00Z", Outcome::Ok);
        let outside = Record {
            started_at: "2026-03-02T06:30:00Z".into(),
            ..run("2026-03-02T06:40:00Z", Outcome::Ok)
        };
        let got = statuses(
            &nightly,
            &[inside, outside],
            "2026-03-01T00:00:00Z",
            "2026-03-02T23:00:00Z",
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(got, [Status::OnTime, Status::OutOfWindow]);
        let mut tally = Tally::default();
        got.iter().for_each(|s| tally.add(*s));
        assert_eq!((tally.due(), tally.ratio()), (2, Some(0.5)));
    }

    #[test]
    fn windows_cross_midnight_and_gate_modifying_tasks() {
        let window = Window {
            start: "22:00".into(),
            end: "04:00".into(),
            time_zone: "Europe/Paris".into(),
        };
        // 23:30 and 03:30 Paris (winter, UTC+1) are inside; 12:00 is not.
        assert!(window.contains(ts("2026-01-10T22:30:00Z")));
        assert!(window.contains(ts("2026-01-10T02:30:00Z")));
        assert!(!window.contains(ts("2026-01-10T11:00:00Z")));
        assert!(window.gate(ts("2026-01-10T22:30:00Z"), false).is_ok());
        let refused = window.gate(ts("2026-01-10T11:00:00Z"), false).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("outside the window 22:00-04:00 Europe/Paris"),
            "{refused}"
        );
        assert!(
            window.gate(ts("2026-01-10T11:00:00Z"), true).is_ok(),
            "force"
        );
    }

    #[test]
    fn on_time_late_missed_failed_and_retry() {
        let daily = task(Some("0 2 * * *"), None, "1h", "UTC");
        let records = [
            run("2026-03-01T02:10:00Z", Outcome::Ok), // day 1: on time
            run("2026-03-02T05:00:00Z", Outcome::Ok), // day 2: after grace: late
            run("2026-03-04T02:05:00Z", Outcome::Failed), // day 4: failed, never retried
            run("2026-03-05T02:05:00Z", Outcome::Failed), // day 5: failed, then retried in grace
            run("2026-03-05T02:40:00Z", Outcome::Ok),
            run("2026-03-06T02:01:00Z", Outcome::Ok),
        ];
        let got = statuses(
            &daily,
            &records,
            "2026-03-01T00:00:00Z",
            "2026-03-06T23:00:00Z",
            "2026-01-01T00:00:00Z",
        );
        use Status::*;
        assert_eq!(got, [OnTime, Late, Missed, Failed, OnTime, OnTime]);
        let check_mode = Record {
            check_mode: true,
            ..run("2026-03-03T02:05:00Z", Outcome::Ok)
        };
        let mut with_rehearsal = records.to_vec();
        with_rehearsal.push(check_mode);
        let again = statuses(
            &daily,
            &with_rehearsal,
            "2026-03-01T00:00:00Z",
            "2026-03-06T23:00:00Z",
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(
            again[2], Missed,
            "a check-mode rehearsal is not maintenance"
        );
    }

    #[test]
    fn a_local_cron_time_follows_daylight_saving() {
        // 03:30 in Paris: 01:30Z in summer time, 02:30Z in winter time. DST ends 2026-10-25.
        let paris = task(Some("30 3 * * *"), None, "30m", "Europe/Paris");
        let records = [
            run("2026-10-24T01:45:00Z", Outcome::Ok), // 03:45 CEST: on time
            run("2026-10-25T02:45:00Z", Outcome::Ok), // 03:45 CET, the day the clocks go back: on time
            run("2026-10-26T01:45:00Z", Outcome::Ok), // 02:45 CET: before the due time: not this one
        ];
        let got = statuses(
            &paris,
            &records,
            "2026-10-23T22:00:00Z",
            "2026-10-26T23:00:00Z",
            "2026-01-01T00:00:00Z",
        );
        use Status::*;
        assert_eq!(got, [OnTime, OnTime, Missed]);
    }

    #[test]
    fn intervals_and_a_database_added_mid_period() {
        let six_hourly = task(None, Some("6h"), "1h", "UTC");
        let records = [
            run("2026-03-01T05:00:00Z", Outcome::Ok),
            run("2026-03-01T12:30:00Z", Outcome::Ok),
        ];
        // Periods end at 06, 12, 18, 24: the first is done inside it, the second within grace,
        // the third and fourth not at all; a database added at 13:00 owes only the last two.
        let got = statuses(
            &six_hourly,
            &records,
            "2026-03-01T00:00:00Z",
            "2026-03-02T00:00:00Z",
            "2026-01-01T00:00:00Z",
        );
        use Status::*;
        assert_eq!(got, [OnTime, OnTime, Missed, Missed]);
        let joined_at_13 = [run("2026-03-01T17:00:00Z", Outcome::Ok)];
        let late_joiner = statuses(
            &six_hourly,
            &joined_at_13,
            "2026-03-01T00:00:00Z",
            "2026-03-02T00:00:00Z",
            "2026-03-01T13:00:00Z",
        );
        assert_eq!(
            late_joiner,
            [OnTime, Missed],
            "only the periods after it appeared are due"
        );
    }

    #[test]
    fn pending_occurrences_are_not_counted() {
        let daily = task(Some("0 2 * * *"), None, "2h", "UTC");
        let binding = Binding {
            instance: "pg1".into(),
            db: Some("app".into()),
            task: &daily,
            since: ts("2026-01-01T00:00:00Z"),
        };
        let got = evaluate(
            &binding,
            &[],
            ts("2026-03-01T00:00:00Z"),
            ts("2026-03-01T23:00:00Z"),
            ts("2026-03-01T03:00:00Z"),
        )
        .unwrap();
        assert_eq!(got[0].status, Status::Pending);
        let mut tally = Tally::default();
        tally.add(got[0].status);
        assert_eq!((tally.due(), tally.ratio()), (0, None));
    }
}
