//! db_patch, first part: the facts of a server's patch level and the gates a patch must pass.
//! The facts: the running version, the installed and offered package versions (through
//! overridable commands: dpkg-query and apt-cache by default), minor releases behind, and the
//! end of life of the major version (data/end-of-life.json, with its source and date). The
//! gates, each with its evidence and verdict: a recent verified backup of every database, no
//! long transaction, replication lag, free disk, the maintenance window, an approved change.
//! Applying a patch is not implemented yet: `action: apply` says so and changes nothing.

use std::path::PathBuf;
use std::process::Command;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::connection::{ConnectionArgs, EngineKind};
use crate::engine::{self, DatabaseKind};
use crate::ledger::{Outcome, Target};
use crate::run::{Done, Recorder, RunOptions};
use crate::schedule::Window;
use crate::task::Task;
use crate::{Error, Result};

/// End of community support per major version (see its "about").
const END_OF_LIFE: &str = include_str!("../../data/end-of-life.json");

/// What db_patch does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatchAction {
    /// Facts and gates only (the default).
    #[default]
    Check,
    /// Upgrade and restart: not implemented yet; refused, nothing changed.
    Apply,
}

/// Arguments of db_patch.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PatchRequest {
    #[serde(flatten)]
    pub connection: ConnectionArgs,
    /// Instance id (the inventory's): the backups and the ledger know the server by it.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// check (default) or apply.
    #[serde(default)]
    pub action: PatchAction,
    /// The version to reach; default: what the package manager offers.
    #[serde(default)]
    pub target_version: Option<String>,
    /// The server package; default postgresql-<major> or mariadb-server.
    #[serde(default)]
    pub package: Option<String>,
    /// The command printing the installed package version; `{package}` is replaced.
    /// Default: dpkg-query -W -f=${Version} {package}.
    #[serde(default)]
    pub installed_command: Option<Vec<String>>,
    /// The command whose output holds "Candidate: <version>". Default: apt-cache policy
    /// {package}.
    #[serde(default)]
    pub candidate_command: Option<Vec<String>>,
    /// Where the backups are: every user database needs a verified one younger than
    /// max_backup_age_hours.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub backup_dir: Option<PathBuf>,
    /// How old the newest verified backup of a database may be.
    #[serde(default = "default_backup_age")]
    pub max_backup_age_hours: u64,
    /// No transaction may be open longer than this.
    #[serde(default = "default_transaction_seconds")]
    pub max_transaction_seconds: u64,
    /// The replication lag allowed (a primary is patched after its replicas).
    #[serde(default = "default_lag_seconds")]
    pub max_replication_lag_seconds: u64,
    /// Free bytes needed on the data directory's file system (checked where the module runs).
    #[serde(default = "default_free_bytes")]
    pub min_free_bytes: u64,
    /// The maintenance window the patch must be in.
    #[serde(default)]
    pub window: Option<Window>,
    /// An approved change record is needed (production).
    #[serde(default)]
    pub require_change: bool,
    #[serde(flatten)]
    pub run: RunOptions,
}

fn default_backup_age() -> u64 {
    24
}
fn default_transaction_seconds() -> u64 {
    300
}
fn default_lag_seconds() -> u64 {
    30
}
fn default_free_bytes() -> u64 {
    1 << 30
}

/// What the gates read from the server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerState {
    pub oldest_transaction_seconds: Option<f64>,
    pub replication_lag_seconds: Option<f64>,
}

/// current, behind (a newer minor release is offered) or eol (the major version's support
/// has ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatchStatus {
    Current,
    Behind,
    Eol,
}

/// A server's patch level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PatchFacts {
    /// postgresql, mariadb or mysql.
    pub flavour: String,
    /// The version the server reports.
    pub running_version: String,
    /// The server package.
    pub package: String,
    /// Its installed version, upstream part; None when the command could not say.
    pub installed_version: Option<String>,
    /// The version to reach: target_version, else the package manager's candidate.
    pub target_version: Option<String>,
    /// Minor releases between the running and the target version (same major).
    pub minor_behind: Option<u32>,
    /// The major version.
    pub major: String,
    /// When its community support ends (or ended).
    pub end_of_life: Option<String>,
    /// current, behind or eol.
    pub status: PatchStatus,
}

/// One gate and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Gate {
    /// verified_backup, open_transactions, replication_lag, free_disk, window, change.
    pub id: String,
    /// Whether the patch may go ahead as far as this gate is concerned.
    pub passed: bool,
    /// Why, in a sentence.
    pub reason: String,
    /// The facts it rests on.
    pub evidence: Value,
}

/// What db_patch found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PatchReport {
    /// Instance id in the ledger.
    pub instance_id: String,
    /// The patch level.
    pub facts: PatchFacts,
    /// Every gate with its verdict.
    pub gates: Vec<Gate>,
    /// Every gate passed.
    pub ready: bool,
}

/// Runs db_patch (facts and gates); recorded as a rehearsal (task patch, nothing changed).
pub fn run(request: &PatchRequest, check_mode: bool) -> Result<Done<PatchReport>> {
    if request.action == PatchAction::Apply && !check_mode {
        return Err(Error::invalid(
            "action",
            "applying patches is not implemented yet: run with action check for the facts and gates, and upgrade with your package manager",
        ));
    }
    let target = Target::of(request.instance_id.as_ref(), &request.connection, None);
    let recorder = Recorder::start(Task::Patch, &request.run, true)
        .hiding(request.connection.login_password.as_ref());
    let report = match check(request, &target.instance) {
        Ok(report) => report,
        Err(e) => {
            recorder.fail(target, &e);
            return Err(e);
        }
    };
    let details = json!({"facts": report.facts, "gates": report.gates, "ready": report.ready});
    let warnings = recorder.finish(target, Outcome::Ok, false, details, vec![]);
    let failed: Vec<&str> = report
        .gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| g.id.as_str())
        .collect();
    Ok(Done {
        changed: false,
        msg: format!(
            "{} {} ({:?}, target {}); {}",
            report.facts.flavour,
            report.facts.running_version,
            report.facts.status,
            report.facts.target_version.as_deref().unwrap_or("unknown"),
            if failed.is_empty() {
                "every gate passed".to_string()
            } else {
                format!("gates not passed: {}", failed.join(", "))
            }
        )
        .to_lowercase(),
        diff: None,
        warnings,
        output: report,
    })
}

fn check(request: &PatchRequest, instance: &str) -> Result<PatchReport> {
    let mut engine = engine::connect(&request.connection)?;
    let facts = engine.server_facts()?;
    let databases: Vec<String> = engine
        .databases()?
        .into_iter()
        .filter(|d| d.kind == DatabaseKind::User)
        .map(|d| d.name)
        .collect();
    let state = engine.patch_state()?;
    let patch = patch_facts(request, facts.engine, &facts.flavour, &facts.version_number);
    let now = jiff::Timestamp::now();
    let gates = vec![
        backup_gate(request, instance, &databases, now)?,
        limit_gate(
            "open_transactions",
            state.oldest_transaction_seconds,
            request.max_transaction_seconds,
            "the oldest open transaction",
            "a restart would cut it off",
        ),
        limit_gate(
            "replication_lag",
            state.replication_lag_seconds,
            request.max_replication_lag_seconds,
            "the replication lag",
            "patch the replicas first and wait for them to catch up",
        ),
        disk_gate(request, facts.data_directory.as_deref()),
        window_gate(request, now),
        change_gate(request, now),
    ];
    Ok(PatchReport {
        instance_id: instance.to_string(),
        ready: gates.iter().all(|g| g.passed),
        facts: patch,
        gates,
    })
}

/// The upstream part of a package version: `1:10.11.19-0+deb12u1` is 10.11.19.
fn upstream(version: &str) -> String {
    let no_epoch = version.split_once(':').map_or(version, |(_, v)| v);
    no_epoch
        .split(['-', '+', '~'])
        .next()
        .unwrap_or("")
        .to_string()
}

fn major_of(engine: EngineKind, version: &str) -> String {
    let parts: Vec<&str> = version.split('.').collect();
    match engine {
        EngineKind::Postgresql => parts.first().copied().unwrap_or("").to_string(),
        EngineKind::Mysql => parts.iter().take(2).copied().collect::<Vec<_>>().join("."),
    }
}

fn minor_of(engine: EngineKind, version: &str) -> Option<u32> {
    let index = if engine == EngineKind::Postgresql {
        1
    } else {
        2
    };
    version.split('.').nth(index)?.parse().ok()
}

fn command_output(template: &[String], package: &str) -> Option<String> {
    let (program, args) = template.split_first()?;
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{package}", package))
        .collect();
    let out = Command::new(program).args(&args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn patch_facts(
    request: &PatchRequest,
    engine: EngineKind,
    flavour: &str,
    running: &str,
) -> PatchFacts {
    let major = major_of(engine, running);
    let package = request.package.clone().unwrap_or_else(|| match engine {
        EngineKind::Postgresql => format!("postgresql-{major}"),
        EngineKind::Mysql => "mariadb-server".into(),
    });
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let installed = command_output(
        request.installed_command.as_deref().unwrap_or(&strings(&[
            "dpkg-query",
            "-W",
            "-f=${Version}",
            "{package}",
        ])),
        &package,
    )
    .map(|v| upstream(v.trim()))
    .filter(|v| !v.is_empty());
    let candidate = command_output(
        request.candidate_command.as_deref().unwrap_or(&strings(&[
            "apt-cache",
            "policy",
            "{package}",
        ])),
        &package,
    )
    .and_then(|text| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("Candidate:")
                .map(|v| upstream(v.trim()))
        })
    })
    .filter(|v| !v.is_empty() && v != "(none)");
    let target = request.target_version.clone().or(candidate);
    let minor_behind = match (&target, minor_of(engine, running)) {
        (Some(t), Some(now)) if major_of(engine, t) == major => {
            minor_of(engine, t).map(|m| m.saturating_sub(now))
        }
        _ => None,
    };
    let table: Value = serde_json::from_str(END_OF_LIFE).unwrap_or_default();
    let end_of_life = table[flavour][&major].as_str().map(str::to_string);
    let today = jiff::Zoned::now().date().to_string();
    let status = if end_of_life.as_deref().is_some_and(|d| d < today.as_str()) {
        PatchStatus::Eol
    } else if minor_behind.is_some_and(|n| n > 0) {
        PatchStatus::Behind
    } else {
        PatchStatus::Current
    };
    PatchFacts {
        flavour: flavour.into(),
        running_version: running.into(),
        package,
        installed_version: installed,
        target_version: target,
        minor_behind,
        major,
        end_of_life,
        status,
    }
}

fn gate(id: &str, passed: bool, reason: String, evidence: Value) -> Gate {
    Gate {
        id: id.into(),
        passed,
        reason,
        evidence,
    }
}

/// Every user database has a verified backup younger than max_backup_age_hours.
fn backup_gate(
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

fn limit_gate(id: &str, seconds: Option<f64>, max: u64, what: &str, advice: &str) -> Gate {
    let over = seconds.is_some_and(|s| s > max as f64);
    gate(
        id,
        !over,
        match seconds {
            Some(s) if over => format!("{what} is {s:.0} s, above {max} s: {advice}"),
            Some(s) => format!("{what} is {s:.0} s (limit {max} s)"),
            None => format!("no {what} to wait for"),
        },
        json!({"seconds": seconds, "limit": max}),
    )
}

fn disk_gate(request: &PatchRequest, data_directory: Option<&str>) -> Gate {
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

fn window_gate(request: &PatchRequest, now: jiff::Timestamp) -> Gate {
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

fn change_gate(request: &PatchRequest, now: jiff::Timestamp) -> Gate {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_the_way_packages_write_them() {
        assert_eq!(upstream("15.20-0+deb12u1"), "15.20");
        assert_eq!(upstream("1:10.11.19-0+deb12u1"), "10.11.19");
        assert_eq!(major_of(EngineKind::Postgresql, "15.8"), "15");
        assert_eq!(major_of(EngineKind::Mysql, "10.11.19"), "10.11");
        assert_eq!(minor_of(EngineKind::Postgresql, "15.20"), Some(20));
        assert_eq!(minor_of(EngineKind::Mysql, "10.11.19"), Some(19));
    }

    #[test]
    fn the_end_of_life_table_has_its_source_and_the_engines() {
        let table: Value = serde_json::from_str(END_OF_LIFE).unwrap();
        assert!(table["about"].as_str().unwrap().contains("postgresql.org"));
        assert_eq!(table["postgresql"]["14"], "2026-11-12");
        assert!(table["mariadb"]["10.11"].is_string());
    }
}
