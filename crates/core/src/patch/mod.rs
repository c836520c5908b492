//! db_patch: a server's patch level, the gates a patch must pass, and the patch itself.
//! The facts: the running version, the installed and offered package versions (through the
//! platform's commands, see `platform`), minor releases behind, and the end of life of the
//! major version (data/end-of-life.json, with its source and date). The gates, each with its
//! evidence and verdict: a recent verified backup of every database, no long transaction,
//! replication lag, free disk, the maintenance window, an approved change. Applying (`apply`):
//! upgrade, restart, wait, post-validate; a failure says the server's state and the way back.
//!
//! - `platform`: Debian, RHEL and lab commands, placeholders.
//! - `gates`: the gates and their evidence.
//! - `apply`: the steps of a patch and their validation.

mod apply;
mod gates;
pub mod platform;

use gates::{backup_gate, change_gate, disk_gate, limit_gate, window_gate};

pub use platform::Platform;

use std::path::PathBuf;

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
    /// Upgrade, restart and post-validate, when every gate passed.
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
    /// Where the packages come from (the default commands): debian, redhat or lab.
    /// Default: this host's family, from /etc/os-release.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// platform lab: the lab directory (the instance is instance_id).
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub lab_dir: Option<PathBuf>,
    /// The server package; default postgresql-<major> (postgresql<major>-server on redhat)
    /// or mariadb-server.
    #[serde(default)]
    pub package: Option<String>,
    /// The command printing the installed package version (alone or on an "Installed:"
    /// line). Default: dpkg-query -W -f=${Version} {package}; rpm -q on redhat.
    /// Placeholders: {package}, {major}, {instance}, {lab_dir}.
    #[serde(default)]
    pub installed_command: Option<Vec<String>>,
    /// The command whose output holds "Candidate: <version>". Default: apt-cache policy
    /// {package}; dnf repoquery on redhat.
    #[serde(default)]
    pub candidate_command: Option<Vec<String>>,
    /// The upgrade command. Default: apt-get install -y --only-upgrade {package} (with
    /// DEBIAN_FRONTEND=noninteractive); dnf -y upgrade {package} on redhat. Also {version}.
    #[serde(default)]
    pub upgrade_command: Option<Vec<String>>,
    /// The restart command. Default: systemctl restart postgresql@{major}-main
    /// (postgresql-{major} on redhat) or mariadb.
    #[serde(default)]
    pub restart_command: Option<Vec<String>>,
    /// How long to wait for the restarted server to accept connections.
    #[serde(default = "default_restart_timeout")]
    pub restart_timeout_seconds: u64,
    /// The server's log, scanned for errors after the restart. Default: the file the server
    /// says it writes (PostgreSQL's logging_collector file, MariaDB's log_error); the lab's
    /// log on platform lab.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub log_path: Option<PathBuf>,
    /// Upgrade, restart and validate even when the server already runs the target version
    /// (a reinstall, or a restart left pending).
    #[serde(default)]
    pub force: bool,
    /// Gates to go ahead without; each stays in the report and the ledger, marked overridden.
    #[serde(default)]
    pub ignore_gates: Vec<String>,
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

impl PatchRequest {
    /// A check of the server behind `connection` with every default (what the module does
    /// with no other argument).
    pub fn defaults(connection: ConnectionArgs) -> PatchRequest {
        PatchRequest {
            connection,
            instance_id: None,
            action: PatchAction::Check,
            target_version: None,
            platform: None,
            lab_dir: None,
            package: None,
            installed_command: None,
            candidate_command: None,
            upgrade_command: None,
            restart_command: None,
            restart_timeout_seconds: default_restart_timeout(),
            log_path: None,
            force: false,
            ignore_gates: vec![],
            backup_dir: None,
            max_backup_age_hours: default_backup_age(),
            max_transaction_seconds: default_transaction_seconds(),
            max_replication_lag_seconds: default_lag_seconds(),
            min_free_bytes: default_free_bytes(),
            window: None,
            require_change: false,
            run: RunOptions::default(),
        }
    }
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
fn default_restart_timeout() -> u64 {
    120
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
    /// Not passed, but named in ignore_gates: the patch went ahead anyway.
    #[serde(default)]
    pub overridden: bool,
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
    /// Every gate passed (or was overridden).
    pub ready: bool,
    /// What apply did or, in check mode, would do: upgrade, restart, wait, version,
    /// post_upgrade, smoke, log_scan.
    #[serde(default)]
    pub steps: Vec<PatchStep>,
    /// After apply: the state the server is in, in a sentence.
    #[serde(default)]
    pub state: Option<String>,
    /// Why apply failed.
    #[serde(default)]
    pub failure: Option<String>,
    /// When apply failed: the way back, a step each.
    #[serde(default)]
    pub rollback: Vec<String>,
}

/// What became of one step of a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Check mode: it would run.
    Planned,
    Done,
    /// Not needed (e.g. the package is already installed, only the restart is pending).
    Skipped,
    Failed,
}

/// One step of a patch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PatchStep {
    /// upgrade, restart, wait, version, post_upgrade, smoke or log_scan.
    pub id: String,
    /// planned, done, skipped or failed.
    pub status: StepStatus,
    /// What happened, in a sentence.
    pub detail: String,
    /// The command it runs, when it runs one.
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

/// What `check` learned that `apply` needs.
struct Context {
    platform: Platform,
    engine: EngineKind,
    commands: platform::Commands,
    /// The user databases (the smoke query runs in each).
    databases: Vec<String>,
}

/// Runs db_patch: facts and gates (recorded as a rehearsal); with action apply, the patch
/// itself when every gate passed or was overridden.
pub fn run(request: &PatchRequest, check_mode: bool) -> Result<Done<PatchReport>> {
    let applying = request.action == PatchAction::Apply;
    let target = Target::of(request.instance_id.as_ref(), &request.connection, None);
    let recorder = Recorder::start(Task::Patch, &request.run, check_mode || !applying)
        .hiding(request.connection.login_password.as_ref());
    let (mut report, context) = match check(request, &target.instance) {
        Ok(checked) => checked,
        Err(e) => {
            recorder.fail(target, &e);
            return Err(e);
        }
    };
    let changed = applying && apply::apply(request, &context, &mut report, check_mode);
    let outcome = if report.failure.is_some() {
        Outcome::Failed
    } else {
        Outcome::Ok
    };
    let details = json!({
        "facts": report.facts, "gates": report.gates, "ready": report.ready,
        "steps": report.steps, "state": report.state, "failure": report.failure,
        "rollback": report.rollback,
    });
    let warnings = recorder.finish(target, outcome, changed, details, vec![]);
    Ok(Done {
        changed,
        msg: message(&report, applying, check_mode),
        diff: None,
        warnings,
        output: report,
    })
}

impl PatchReport {
    /// The gates that stop the patch (not passed, not overridden).
    pub fn blocking_gates(&self) -> Vec<&Gate> {
        self.gates
            .iter()
            .filter(|g| !g.passed && !g.overridden)
            .collect()
    }
}

fn message(report: &PatchReport, applying: bool, check_mode: bool) -> String {
    let facts = &report.facts;
    let target = facts.target_version.as_deref().unwrap_or("unknown");
    if let Some(failure) = &report.failure {
        return failure.clone();
    }
    let blocking: Vec<&str> = report
        .blocking_gates()
        .iter()
        .map(|g| g.id.as_str())
        .collect();
    let gates = if blocking.is_empty() {
        "every gate passed".to_string()
    } else {
        format!("gates not passed: {}", blocking.join(", "))
    };
    let ran = |status: StepStatus| report.steps.iter().any(|s| s.status == status);
    match (applying, check_mode) {
        (true, true) if ran(StepStatus::Planned) => format!(
            "would patch {} {} to {target}; {gates}",
            facts.flavour, facts.running_version
        ),
        (true, false) if ran(StepStatus::Done) => format!(
            "patched {} {} to {target}: {}",
            facts.flavour,
            facts.running_version,
            report.state.as_deref().unwrap_or("validated")
        ),
        (true, _) => format!("{} already runs {target}: nothing to do", facts.flavour),
        (false, _) => format!(
            "{} {} ({:?}, target {target}); {gates}",
            facts.flavour, facts.running_version, facts.status
        )
        .to_lowercase(),
    }
}

fn check(request: &PatchRequest, instance: &str) -> Result<(PatchReport, Context)> {
    let mut engine = engine::connect(&request.connection)?;
    let facts = engine.server_facts()?;
    let databases: Vec<String> = engine
        .databases()?
        .into_iter()
        .filter(|d| d.kind == DatabaseKind::User)
        .map(|d| d.name)
        .collect();
    let state = engine.patch_state()?;
    drop(engine);
    let platform = request.platform.unwrap_or_else(Platform::detect);
    let (patch, commands) = patch_facts(
        request,
        platform,
        facts.engine,
        &facts.flavour,
        &facts.version_number,
    )?;
    let now = jiff::Timestamp::now();
    let mut gates = vec![
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
    for name in &request.ignore_gates {
        let Some(gate) = gates.iter_mut().find(|g| g.id == *name) else {
            return Err(Error::invalid(
                "ignore_gates",
                format!(
                    "no gate named '{name}'; the gates are verified_backup, open_transactions, replication_lag, free_disk, window and change"
                ),
            ));
        };
        gate.overridden = !gate.passed;
    }
    let report = PatchReport {
        instance_id: instance.to_string(),
        ready: gates.iter().all(|g| g.passed || g.overridden),
        facts: patch,
        gates,
        steps: vec![],
        state: None,
        failure: None,
        rollback: vec![],
    };
    let context = Context {
        platform,
        engine: facts.engine,
        commands,
        databases,
    };
    Ok((report, context))
}

pub(crate) fn major_of(engine: EngineKind, version: &str) -> String {
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

fn patch_facts(
    request: &PatchRequest,
    platform: Platform,
    engine: EngineKind,
    flavour: &str,
    running: &str,
) -> Result<(PatchFacts, platform::Commands)> {
    let major = major_of(engine, running);
    let package = request
        .package
        .clone()
        .unwrap_or_else(|| platform.default_package(engine, &major));
    let mut values = platform::Placeholders {
        package: package.clone(),
        major: major.clone(),
        instance: request.instance_id.clone().unwrap_or_default(),
        lab_dir: request.lab_dir.clone(),
        version: None,
    };
    let overrides = platform::Overrides {
        installed: request.installed_command.as_deref(),
        candidate: request.candidate_command.as_deref(),
        upgrade: request.upgrade_command.as_deref(),
        restart: request.restart_command.as_deref(),
    };
    let early = platform::commands(platform, engine, &overrides, &values)?;
    let installed =
        platform::read_output(&early.installed).and_then(|text| platform::installed_version(&text));
    let candidate = platform::read_output(&early.candidate)
        .and_then(|text| platform::labelled_version(&text, "Candidate:"));
    let target = request.target_version.clone().or(candidate);
    values.version = target.clone();
    let commands = platform::commands(platform, engine, &overrides, &values)?;
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
    let facts = PatchFacts {
        flavour: flavour.into(),
        running_version: running.into(),
        package,
        installed_version: installed,
        target_version: target,
        minor_behind,
        major,
        end_of_life,
        status,
    };
    Ok((facts, commands))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_split_by_engine() {
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
