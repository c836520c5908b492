//! The gates a patch must pass, each with its verdict, its reason in a sentence and the
//! evidence it rests on: a recent verified backup of every database, no long transaction,
//! replication lag, free disk on the data directory, the maintenance window, an approved
//! change record.

use super::*;

fn gate(id: &str, passed: bool, reason: String, evidence: Value) -> Gate {
    Gate {
        id: id.into(),
        passed,
        reason,
        evidence,
        overridden: false,
    }
}

/// Every user database has a verified backup younger than max_backup_age_hours.
pub(super) fn backup_gate(
    request: &PatchRequest,
    instance: &str,
    databases: &[String],
    now: jiff::Timestamp,
) -> Result<Gate> {
    let Some(dir) = &request.backup_dir else {
        return Ok(gate(
            "verified_backup",
            false,
            "no backup_dir: a recent verified backup of every database cannot be checked".into(),
            json!({}),
        ));
    };
    let backups = crate::backup::list(dir)?;
    let oldest_allowed =
        now - jiff::SignedDuration::from_hours(request.max_backup_age_hours as i64);
    let mut missing = Vec::new();
    let mut found = serde_json::Map::new();
    for db in databases {
        let newest = backups
            .iter()
            .filter(|b| b.verified && b.instance_id == instance && b.database == *db)
            .max_by(|a, b| a.started_at.cmp(&b.started_at));
        match newest {
            Some(b)
                if b.started_at
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|t| t >= oldest_allowed) =>
            {
                found.insert(db.clone(), json!(b.path));
            }
            _ => missing.push(db.clone()),
        }
    }
    Ok(gate(
        "verified_backup",
        missing.is_empty(),
        if missing.is_empty() {
            format!(
                "every database has a verified backup younger than {} hours",
                request.max_backup_age_hours
            )
        } else {
            format!(
                "no verified backup younger than {} hours of: {}",
                request.max_backup_age_hours,
                missing.join(", ")
            )
        },
        json!({"backups": found, "missing": missing}),
    ))
}

pub(super) fn limit_gate(
    id: &str,
    seconds: Option<f64>,
    max: u64,
    what: &str,
    advice: &str,
) -> Gate {
    let over = seconds.is_some_and(|s| s > max as f64);
    gate(
        id,
        !over,
        match seconds {
            Some(s) if over => format!("{what} is {s:.0} s, above {max} s: {advice}"),
            Some(s) => format!("{what} is {s:.0} s (limit {max} s)"),
            None => "nothing to wait for".to_string(),
        },
        json!({"seconds": seconds, "limit": max}),
    )
}

pub(super) fn disk_gate(request: &PatchRequest, data_directory: Option<&str>) -> Gate {
    let free = data_directory.and_then(|d| crate::util::available_bytes(std::path::Path::new(d)));
    gate(
        "free_disk",
        free.is_some_and(|f| f >= request.min_free_bytes),
        match free {
            Some(f) => format!(
                "{f} bytes free on the data directory's file system (needed {})",
                request.min_free_bytes
            ),
            None => "the data directory is not readable here: run db_patch on the database server"
                .into(),
        },
        json!({"data_directory": data_directory, "free_bytes": free, "needed": request.min_free_bytes}),
    )
}

pub(super) fn window_gate(request: &PatchRequest, now: jiff::Timestamp) -> Gate {
    match &request.window {
        None => gate(
            "window",
            true,
            "no window given: any time".into(),
            json!({}),
        ),
        Some(w) => {
            let verdict = w.gate(now, false);
            gate(
                "window",
                verdict.is_ok(),
                verdict
                    .err()
                    .map_or("inside the window".into(), |e| e.to_string()),
                json!({"start": w.start, "end": w.end, "time_zone": w.time_zone}),
            )
        }
    }
}

pub(super) fn change_gate(request: &PatchRequest, now: jiff::Timestamp) -> Gate {
    let verdict = request.run.ledger().and_then(|l| {
        crate::change::gate(
            &l,
            request.run.change_id.as_deref(),
            request.require_change,
            now,
        )
    });
    gate(
        "change",
        verdict.is_ok(),
        verdict.err().map_or(
            match &request.run.change_id {
                Some(id) => format!("change {id} is approved and its window is now"),
                None => "no change record required".into(),
            },
            |e| e.to_string(),
        ),
        json!({"change_id": request.run.change_id, "required": request.require_change}),
    )
}
