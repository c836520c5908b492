//! One calendar for schedules: what `schedule validate` accepts is exactly what the timers
//! express and what compliance counts.
//!
//! A cron expression is accepted only in the subset that cron, systemd's OnCalendar and the
//! compliance calculation all read the same way: five numeric fields (minute hour
//! day-of-month month day-of-week) made of `*`, numbers, ranges `a-b`, lists and steps
//! (`*/n`, `a-b/n`). Refused, with the reason: names (`MON`, `JAN`: flavours differ), seconds
//! or years (six or seven fields), `L`, `W`, `#`, `?`, and a day-of-month together with a
//! day-of-week (cron fires when *either* matches, OnCalendar when *both* do).
//!
//! Intervals (`every`) are counted from 1970-01-01 00:00 UTC and accepted only when a calendar
//! can express them exactly: minutes dividing an hour, hours dividing a day, `1d`, `1w`
//! (Thursdays, as the epoch was). `90m` or `2d` are refused: no timer could fire on them.
//!
//! Daylight saving, one rule shared with systemd: a local time that does not exist (the hour
//! skipped in spring) does not occur that day; a local time that occurs twice (autumn) occurs
//! once, at the first of the two instants. The property test at the end of this file checks
//! the occurrences against `systemd-analyze calendar` itself.

use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

/// A cron expression in the accepted subset, as sets of values (None: every value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSpec {
    minutes: BTreeSet<u8>,
    hours: BTreeSet<u8>,
    days_of_month: Option<BTreeSet<u8>>,
    months: Option<BTreeSet<u8>>,
    /// 0 = Sunday ... 6 = Saturday (7 is read as Sunday).
    days_of_week: Option<BTreeSet<u8>>,
}

const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Values of one field: `*` (None) or a set, from `*`, `n`, `a-b`, `*/s`, `a-b/s`, `n/s` and
/// comma lists of those.
fn field(text: &str, name: &str, min: u8, max: u8) -> Result<Option<BTreeSet<u8>>, String> {
    if text == "*" {
        return Ok(None);
    }
    let number = |n: &str| -> Result<u8, String> {
        if n.chars().any(|c| "LW#?".contains(c)) {
            return Err(format!(
                "'{n}' in the {name} field uses L, W, # or ?, which neither cron nor systemd timers share"
            ));
        }
        if n.chars().any(|c| c.is_ascii_alphabetic()) {
            return Err(format!(
                "'{n}' in the {name} field is a name; use numbers (names differ between cron flavours and calendars)"
            ));
        }
        n.parse::<u8>()
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| format!("'{n}' is outside the {name} field ({min}-{max})"))
    };
    let mut values = BTreeSet::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u8 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("'{step}' is not a step in the {name} field"))?;
                (range, step)
            }
            None => (part, 1),
        };
        let (first, last) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                // `n/s` runs from n to the end of the field, as in cron.
                None if step > 1 => (number(range)?, max),
                None => {
                    let n = number(range)?;
                    (n, n)
                }
            },
        };
        if first > last {
            return Err(format!("'{range}' runs backwards in the {name} field"));
        }
        values.extend((first..=last).step_by(usize::from(step)));
    }
    Ok(Some(values))
}

impl CronSpec {
    /// Parses a cron expression, or says why it is outside the accepted subset.
    pub fn parse(text: &str) -> Result<CronSpec, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(format!(
                "'{text}' has {} fields; give exactly five: minute hour day-of-month month day-of-week (no seconds, no year)",
                fields.len()
            ));
        };
        let mut days_of_week = field(dow, "day-of-week", 0, 7)?;
        if let Some(days) = &mut days_of_week
            && days.remove(&7)
        {
            days.insert(0);
        }
        let spec = CronSpec {
            minutes: field(minute, "minute", 0, 59)?.unwrap_or_else(|| (0..=59).collect()),
            hours: field(hour, "hour", 0, 23)?.unwrap_or_else(|| (0..=23).collect()),
            days_of_month: field(dom, "day-of-month", 1, 31)?,
            months: field(month, "month", 1, 12)?,
            days_of_week,
        };
        if spec.days_of_month.is_some() && spec.days_of_week.is_some() {
            return Err(format!(
                "'{text}' restricts both day-of-month and day-of-week: cron runs when either matches, systemd timers when both do; keep one of them '*'"
            ));
        }
        Ok(spec)
    }

    /// Whether the expression fires on this local date.
    fn on_date(&self, date: Date) -> bool {
        let month = date.month() as u8;
        let dom = date.day() as u8;
        let dow = date.weekday().to_sunday_zero_offset() as u8;
        self.months.as_ref().is_none_or(|m| m.contains(&month))
            && self.days_of_month.as_ref().is_none_or(|d| d.contains(&dom))
            && self.days_of_week.as_ref().is_none_or(|d| d.contains(&dow))
    }

    /// The instants it fires at in `[from, to]`, in `tz`, under the shared daylight saving rule.
    pub fn occurrences(&self, tz: &TimeZone, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let first_day = from
            .to_zoned(tz.clone())
            .date()
            .yesterday()
            .unwrap_or(Date::MIN);
        let last_day = to
            .to_zoned(tz.clone())
            .date()
            .tomorrow()
            .unwrap_or(Date::MAX);
        let mut day = first_day;
        while day <= last_day {
            if self.on_date(day) {
                for &hour in &self.hours {
                    for &minute in &self.minutes {
                        let local = DateTime::from_parts(
                            day,
                            jiff::civil::time(hour as i8, minute as i8, 0, 0),
                        );
                        if let Some(at) = instant(tz, local)
                            && at >= from
                            && at <= to
                        {
                            out.push(at);
                        }
                    }
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The first instant it fires at after `after`, looking at most `horizon_days` ahead.
    pub fn next_after(
        &self,
        tz: &TimeZone,
        after: Timestamp,
        horizon_days: i64,
    ) -> Option<Timestamp> {
        let mut from = after;
        // A month at a time: a yearly expression does not scan a decade of minutes.
        for _ in 0..(horizon_days + 30) / 31 {
            let to = from + jiff::SignedDuration::from_hours(24 * 31);
            if let Some(next) = self
                .occurrences(tz, from, to)
                .into_iter()
                .find(|t| *t > after)
            {
                return Some(next);
            }
            from = to;
        }
        None
    }

    /// The same calendar for systemd (`OnCalendar=`), in the zone `tz_name`.
    pub fn on_calendar(&self, tz_name: &str) -> String {
        let list = |values: &BTreeSet<u8>, full: usize, width: usize| -> String {
            if values.len() == full {
                "*".into()
            } else {
                values
                    .iter()
                    .map(|v| format!("{v:0width$}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        };
        let dow = match &self.days_of_week {
            Some(days) => format!(
                "{} ",
                days.iter()
                    .map(|d| DAY_NAMES[usize::from(*d)])
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None => String::new(),
        };
        let months = self.months.as_ref().map_or("*".into(), |m| list(m, 12, 2));
        let days = self
            .days_of_month
            .as_ref()
            .map_or("*".into(), |d| list(d, 31, 2));
        format!(
            "{dow}*-{months}-{days} {}:{}:00 {tz_name}",
            list(&self.hours, 24, 2),
            list(&self.minutes, 60, 2)
        )
    }

    /// The same calendar as the five time fields of a cron line (explicit lists).
    pub fn cron_fields(&self) -> String {
        let list = |values: &BTreeSet<u8>, full: usize| -> String {
            if values.len() == full {
                "*".into()
            } else {
                values
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            }
        };
        let opt = |values: &Option<BTreeSet<u8>>| {
            values.as_ref().map_or("*".into(), |v| list(v, usize::MAX))
        };
        format!(
            "{} {} {} {} {}",
            list(&self.minutes, 60),
            list(&self.hours, 24),
            opt(&self.days_of_month),
            opt(&self.months),
            opt(&self.days_of_week)
        )
    }
}

/// A local time as an instant under the shared daylight saving rule: skipped in a gap, the
/// earlier instant in a fold.
fn instant(tz: &TimeZone, local: DateTime) -> Option<Timestamp> {
    let ambiguous = tz.to_ambiguous_timestamp(local);
    match ambiguous.offset() {
        jiff::tz::AmbiguousOffset::Gap { .. } => None,
        jiff::tz::AmbiguousOffset::Fold { .. } => ambiguous.earlier().ok(),
        jiff::tz::AmbiguousOffset::Unambiguous { .. } => ambiguous.compatible().ok(),
    }
}

/// An interval (`every`) as the UTC calendar it is equivalent to, counted from the epoch; or
/// why no calendar can express it.
pub fn interval(seconds: i64) -> Result<CronSpec, String> {
    let text = match seconds {
        604_800 => "0 0 * * 4".to_string(), // 1970-01-01 was a Thursday
        86_400 => "0 0 * * *".to_string(),
        s if s % 3600 == 0 && 86_400 % s == 0 => format!("0 */{} * * *", s / 3600),
        s if s % 60 == 0 && 3600 % s == 0 => format!("*/{} * * * *", s / 60),
        _ => {
            return Err(
                "no calendar can fire on it; use minutes that divide an hour (15m, 30m), hours that divide a day (2h, 6h, 12h), 1d or 1w, or a cron expression"
                    .into(),
            );
        }
    };
    CronSpec::parse(&text)
}

/// Escapes one argument for a systemd unit's ExecStart= (double quotes, `%` and `$` doubled:
/// systemd would otherwise read specifiers and environment variables in them).
pub fn systemd_arg(arg: &str) -> String {
    let plain = arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:=@,+".contains(c));
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    if plain {
        escaped
    } else {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Escapes one argument for a cron line (run by /bin/sh; `%` is a newline to cron unless
/// escaped).
pub fn cron_arg(arg: &str) -> String {
    let plain = arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-:=@,+".contains(c));
    let quoted = if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    };
    quoted.replace('%', "\\%")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_subset_is_accepted_and_the_rest_refused_with_the_reason() {
        for ok in [
            "0 2 * * *",
            "*/15 8-18 * * 1-5",
            "30 3 1,15 * *",
            "0 0 * 1-12/3 *",
            "5 4 * * 7",
        ] {
            assert!(CronSpec::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("0 2 1 * 1", "both day-of-month and day-of-week"),
            ("0 2 * * MON", "name"),
            ("0 2 * JAN *", "name"),
            ("0 0 2 * * *", "6 fields"),
            ("0 2 L * *", "L, W, # or ?"),
            ("0 2 * * 5#3", "L, W, # or ?"),
            ("61 2 * * *", "outside the minute field"),
            ("0 5-2 * * *", "backwards"),
        ] {
            let e = CronSpec::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(interval(90 * 60).is_err());
        assert!(interval(2 * 86_400).is_err());
        assert!(interval(15 * 60).is_ok() && interval(6 * 3600).is_ok());
    }

    #[test]
    fn daylight_saving_skips_the_missing_hour_and_counts_the_repeated_one_once() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let spec = CronSpec::parse("30 2 * * *").unwrap();
        // Spring 2027-03-28: 02:30 does not exist in Paris.
        let spring = spec.occurrences(
            &paris,
            ts("2027-03-26T00:00:00Z"),
            ts("2027-03-31T23:59:00Z"),
        );
        assert_eq!(spring.len(), 5, "26, 27, 29, 30, 31: {spring:?}");
        // Autumn 2027-10-31: 02:30 happens twice; once, at the first (00:30 UTC).
        let autumn = spec.occurrences(
            &paris,
            ts("2027-10-31T00:00:00Z"),
            ts("2027-10-31T23:00:00Z"),
        );
        assert_eq!(autumn, vec![ts("2027-10-31T00:30:00Z")]);
    }

    #[test]
    fn escaping_for_units_and_cron_lines() {
        assert_eq!(systemd_arg("/usr/bin/dbcadence"), "/usr/bin/dbcadence");
        assert_eq!(systemd_arg("a 50% $HOME \"q\""), r#""a 50%% $$HOME \"q\"""#);
        assert_eq!(cron_arg("it's 50%"), r"'it'\''s 50\%'");
    }

    /// What compliance counts as due equals what systemd computes for the OnCalendar the
    /// timers get, for random expressions and periods across daylight saving changes in
    /// several zones of both hemispheres.
    #[test]
    fn occurrences_equal_systemd_analyze_calendar() {
        if std::process::Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!(
                "systemd-analyze is not installed: skipping (the setup script installs systemd)"
            );
            return;
        }
        // Each zone with periods that start a few days before its daylight saving changes
        // (spring and autumn, both hemispheres).
        let periods = [
            ("Europe/Paris", "2027-03-25T00:00:00Z"),
            ("Europe/Paris", "2027-10-29T00:00:00Z"),
            ("America/New_York", "2027-03-12T00:00:00Z"),
            ("America/New_York", "2027-11-05T00:00:00Z"),
            ("Australia/Sydney", "2027-04-02T00:00:00Z"),
            ("Australia/Sydney", "2027-09-30T00:00:00Z"),
            ("UTC", "2027-03-25T00:00:00Z"),
        ];
        // A small deterministic generator: the same cases every run.
        let mut seed: u64 = 0x5eed;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut checked = 0;
        for case in 0..42 {
            let minute = ["0", "30", "*/20", "15,45", "5-10/5"][next(5) as usize];
            let hour = ["2", "1-3", "*/6", "0,2,23", "3"][next(5) as usize];
            let (dom, dow) = [
                ("*", "*"),
                ("*", "0"),
                ("1-7", "*"),
                ("*", "1-5"),
                ("*/2", "*"),
            ][next(5) as usize];
            let text = format!("{minute} {hour} {dom} * {dow}");
            let spec = CronSpec::parse(&text).unwrap();
            let (zone, base) = periods[case % periods.len()];
            let base = ts(base);
            let iterations = 12;
            // What compliance counts as due, through its own entry point...
            let task = crate::schedule::TaskSchedule {
                task: crate::task::Task::Backup,
                cron: Some(text.clone()),
                every: None,
                grace: "1h".into(),
                window: Some(crate::schedule::Window {
                    start: "00:00".into(),
                    end: "23:59".into(),
                    time_zone: zone.into(),
                }),
                retention: None,
            };
            let ours: Vec<Timestamp> = crate::compliance::due_times(
                &task,
                base,
                base + jiff::SignedDuration::from_hours(24 * 120),
            )
            .unwrap()
            .into_iter()
            .map(|due| due.0)
            .filter(|t| *t > base)
            .take(iterations)
            .collect();
            // ...equals what systemd fires on for the OnCalendar the timers are given.
            let calendar = spec.on_calendar(zone);
            let output = std::process::Command::new("systemd-analyze")
                .args(["calendar", "--iterations", &iterations.to_string()])
                .arg(format!("--base-time=@{}", base.as_second()))
                .arg(&calendar)
                .env("TZ", "UTC")
                .output()
                .unwrap();
            let text_out = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{calendar}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let theirs: Vec<Timestamp> = text_out
                .lines()
                .filter(|l| l.contains("Next elapse:") || l.contains("Iter. #"))
                .map(|l| {
                    // "    Next elapse: Fri 2027-03-26 01:30:00 UTC"
                    let fields: Vec<&str> = l.split_whitespace().collect();
                    let n = fields.len();
                    ts(&format!("{}T{}Z", fields[n - 3], fields[n - 2]))
                })
                .collect();
            assert_eq!(
                ours, theirs,
                "'{text}' in {zone} from {base}: OnCalendar={calendar}"
            );
            checked += 1;
        }
        assert_eq!(checked, 42);
    }
}
