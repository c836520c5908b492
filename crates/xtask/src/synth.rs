//! `cargo xtask synth-ledger`: a synthetic ledger for the report benchmark and for trying the
//! report on a big fleet. Deterministic (fixed seed): the same arguments give the same file.
//!
//! The fleet: `databases` user databases over instances of 10 databases each, half PostgreSQL
//! and half MariaDB, in production / staging / development. Every day: one backup and one
//! verify per database (a few late, missed, or failed then retried), logs and audit per
//! instance, an inventory every 6 hours listing the fleet; until `records` records exist.

use std::io::Write;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

const ENVS: [&str; 3] = ["production", "staging", "development"];

pub fn synth_ledger(args: &[String]) -> Result<(), String> {
    let value = |name: &str, default: u64| -> Result<u64, String> {
        match args.iter().position(|a| a == name) {
            Some(i) => args
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} needs a number")),
            None => Ok(default),
        }
    };
    let records = value("--records", 1_000_000)?;
    let databases = value("--databases", 500)?;
    let out = match args.iter().position(|a| a == "--out") {
        Some(i) => args.get(i + 1).ok_or("--out needs a path")?.clone(),
        None => {
            return Err(
                "usage: cargo xtask synth-ledger --out FILE [--records N] [--databases N]".into(),
            );
        }
    };
    let file = std::fs::File::create(&out).map_err(|e| format!("{out}: {e}"))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let instances = databases.div_ceil(10);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Start far enough back that the fleet's history ends today.
    let per_day = databases * 2 + instances * 2 + 4;
    // A few percent more days than needed: missed runs write nothing.
    let days = (records.div_ceil(per_day) * 21 / 20) as i64;
    let start = jiff::Timestamp::now().as_second() / 86_400 * 86_400 - days * 86_400;
    let fleet = {
        let mut parts = Vec::new();
        for i in 0..instances {
            let engine = if i % 2 == 0 { "postgresql" } else { "mysql" };
            let env = ENVS[(i % 3) as usize];
            let dbs: Vec<String> = (0..10)
                .filter(|d| i * 10 + d < databases)
                .map(|d| format!(r#"{{"name":"db{d}","env":"{env}","copy_of":null}}"#))
                .collect();
            parts.push(format!(
                r#"{{"instance":"{engine}-{i}","engine":"{engine}","env":"{env}","role":"primary","labels":{{}},"databases":[{}]}}"#,
                dbs.join(",")
            ));
        }
        format!(
            r#"{{"instances":{instances},"databases":{databases},"copies":0,"unreachable":[],"fleet":[{}]}}"#,
            parts.join(",")
        )
    };
    let ts = |s: i64| {
        jiff::Timestamp::from_second(s)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    let mut written = 0u64;
    let mut last_day = 0;
    let mut id = 0u64;
    let mut line = |w: &mut std::io::BufWriter<std::fs::File>,
                    task: &str,
                    instance: &str,
                    db: Option<&str>,
                    started: i64,
                    seconds: i64,
                    ok: bool,
                    details: &str|
     -> Result<(), String> {
        id += 1;
        let db = db.map_or("null".to_string(), |d| format!("\"{d}\""));
        writeln!(
            w,
            r#"{{"id":"synth-{id:08x}","task":"{task}","target":{{"instance":"{instance}","db":{db}}},"started_at":"{}","finished_at":"{}","outcome":"{}","changed":true,"check_mode":false,"details":{details},"change_id":null}}"#,
            ts(started),
            ts(started + seconds),
            if ok { "ok" } else { "failed" }
        )
        .map_err(|e| e.to_string())
    };
    'days: for day in 0..days {
        let midnight = start + day * 86_400;
        last_day = day;
        for hour in [0, 6, 12, 18] {
            line(
                &mut w,
                "inventory",
                "fleet",
                None,
                midnight + hour * 3600,
                2,
                true,
                &fleet,
            )?;
            written += 1;
        }
        for i in 0..instances {
            let engine = if i % 2 == 0 { "postgresql" } else { "mysql" };
            let instance = format!("{engine}-{i}");
            // The shipped templates: PostgreSQL at :00, MySQL at :30; production backups
            // at 01, staging at 02, verify at 05; tune on Sundays at 03; patch on the 1st at 04.
            let minute = if engine == "mysql" { 30 * 60 } else { 0 };
            let env = ENVS[(i % 3) as usize];
            let backup_hour = if env == "staging" { 2 } else { 1 };
            let weekday = (midnight / 86_400 + 4) % 7; // 1970-01-01 was a Thursday
            let first_of_month = jiff::Timestamp::from_second(midnight)
                .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).day() == 1)
                .unwrap_or(false);
            for d in (0..10).filter(|d| i * 10 + d < databases) {
                let db = format!("db{d}");
                if rng.chance(0.02) {
                    // missed: nothing ran
                } else {
                    let late = if rng.chance(0.03) { 5 * 3600 } else { 0 };
                    let at =
                        midnight + backup_hour * 3600 + minute + late + (rng.next() % 900) as i64;
                    if rng.chance(0.01) {
                        line(
                            &mut w,
                            "backup",
                            &instance,
                            Some(&db),
                            at,
                            20,
                            false,
                            r#"{"error":"synthetic"}"#,
                        )?;
                        written += 1;
                    }
                    let path = format!("/backups/{instance}/{db}/{day}");
                    line(
                        &mut w,
                        "backup",
                        &instance,
                        Some(&db),
                        at + 600,
                        30 + (rng.next() % 60) as i64,
                        true,
                        &format!(r#"{{"path":"{path}","bytes":1048576}}"#),
                    )?;
                    line(
                        &mut w,
                        "verify",
                        &instance,
                        Some(&db),
                        midnight + 5 * 3600 + minute,
                        60 + (rng.next() % 120) as i64,
                        !rng.chance(0.005),
                        &format!(r#"{{"backup":"{path}","verified":true}}"#),
                    )?;
                    written += 2;
                }
                if weekday == 0 && env != "development" {
                    line(
                        &mut w,
                        "tune",
                        &instance,
                        Some(&db),
                        midnight + 3 * 3600 + minute,
                        40,
                        true,
                        r#"{"query_time_before_ms":120.0,"query_time_after_ms":84.0}"#,
                    )?;
                    written += 1;
                }
            }
            // Patch: production on the 1st of the month, staging on Mondays.
            if (first_of_month && env == "production") || (weekday == 1 && env == "staging") {
                line(
                    &mut w,
                    "patch",
                    &instance,
                    None,
                    midnight + 4 * 3600 + minute,
                    300,
                    true,
                    "{}",
                )?;
                written += 1;
            }
            for task in ["logs", "audit"] {
                line(
                    &mut w,
                    task,
                    &instance,
                    None,
                    midnight + 7 * 3600,
                    5,
                    true,
                    "{}",
                )?;
                written += 1;
            }
        }
        if written >= records {
            break 'days;
        }
    }
    w.flush().map_err(|e| e.to_string())?;
    // The period the records cover, for `dbcadence report --from --to`.
    println!(
        "{out}: {written} records, {databases} databases on {instances} instances; from {} to {}",
        ts(start),
        ts(start + (last_day + 1) * 86_400)
    );
    Ok(())
}
