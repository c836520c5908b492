//! What tuning is made of: the request (module arguments), a finding with its evidence and
//! the fix it proposes, the plan of fixes a run applies, and what a workload measured.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::ConnectionArgs;
use crate::run::RunOptions;
use crate::schedule::Window;

/// What db_tune does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TuneAction {
    /// Find, then apply the fixes the policy allows (the default).
    #[default]
    Apply,
    /// Find and plan only; change nothing (like check mode, but recorded as a real run).
    Plan,
    /// Change nothing; compare the server's statement statistics now with the snapshot the
    /// last apply took before its fixes (pg_stat_statements, performance_schema digests).
    Measure,
}

/// Arguments of db_tune and `dbcadence tune`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TuneRequest {
    #[serde(flatten)]
    pub connection: ConnectionArgs,
    /// Database to tune.
    pub database: String,
    /// Instance id for the ledger (use the inventory's id); default: engine, host and port.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// apply (default), plan, or measure (the observed gain since the last apply).
    #[serde(default)]
    pub action: TuneAction,
    /// Also create the indexes the advice proposes (CREATE INDEX CONCURRENTLY, or online DDL
    /// on MariaDB). Off by default: an index costs writes and disk.
    #[serde(default)]
    pub apply_index_advice: bool,
    /// Also drop indexes never used since the statistics were reset (never one backing a
    /// constraint).
    #[serde(default)]
    pub drop_unused_indexes: bool,
    /// Also drop indexes that duplicate another, or are a prefix of another (never one backing
    /// a constraint).
    #[serde(default)]
    pub drop_duplicate_indexes: bool,
    /// A SQL file replayed before and after the fixes to measure the gain: one statement per
    /// line; `$[1..1000]` draws an integer from a range, `$[a|b|c]` one of the words. Lines
    /// starting with `--` are comments.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub workload: Option<PathBuf>,
    /// Runs of each workload statement, before and after.
    #[serde(default = "default_workload_runs")]
    #[schemars(range(min = 1, max = 100000))]
    pub workload_runs: u32,
    /// Seconds a fix may wait for a lock before it gives up (lock_timeout; MariaDB
    /// lock_wait_timeout), so that it never queues writers behind it for long.
    #[serde(default = "default_lock_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub lock_timeout: u64,
    /// Seconds one fix may run (statement_timeout; MariaDB max_statement_time).
    #[serde(default = "default_statement_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub statement_timeout: u64,
    /// Tables with fewer rows are left alone by the scan and index findings.
    #[serde(default = "default_min_rows")]
    pub min_table_rows: u64,
    /// The heaviest statements (by total time) searched for missing indexes.
    #[serde(default = "default_top_statements")]
    #[schemars(range(min = 0, max = 1000))]
    pub top_statements: u32,
    /// Rehearse instead of applying: restore the newest verified backup of this database
    /// (under backup_dir) into a throwaway server, apply the plan there and replay the
    /// workload before and after; the real server is not changed. Needs workload and
    /// backup_dir.
    #[serde(default)]
    pub rehearse: bool,
    /// Refuse to apply unless a rehearsal of this very plan (same statements) showed a gain.
    #[serde(default)]
    pub require_rehearsal: bool,
    /// Root directory of the backups, for rehearse.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub backup_dir: Option<PathBuf>,
    /// Refuse to apply without an approved change record (change_id) whose window is now
    /// (production hosts); a change_id given is checked either way.
    #[serde(default)]
    pub require_change: bool,
    /// Apply only inside this window (plans are allowed any time).
    #[serde(default)]
    pub window: Option<Window>,
    /// Apply outside the window anyway.
    #[serde(default)]
    pub force: bool,
    #[serde(flatten)]
    pub run: RunOptions,
}

impl TuneRequest {
    /// A request with every default, as a task that names only its connection and database
    /// gets it (what the timers run).
    pub fn defaults(connection: ConnectionArgs, database: &str) -> TuneRequest {
        TuneRequest {
            connection,
            database: database.to_string(),
            instance_id: None,
            action: TuneAction::Apply,
            apply_index_advice: false,
            drop_unused_indexes: false,
            drop_duplicate_indexes: false,
            workload: None,
            workload_runs: default_workload_runs(),
            lock_timeout: default_lock_timeout(),
            statement_timeout: default_statement_timeout(),
            min_table_rows: default_min_rows(),
            top_statements: default_top_statements(),
            rehearse: false,
            require_rehearsal: false,
            backup_dir: None,
            require_change: false,
            window: None,
            force: false,
            run: RunOptions::default(),
        }
    }
}

fn default_workload_runs() -> u32 {
    20
}
fn default_lock_timeout() -> u64 {
    5
}
fn default_statement_timeout() -> u64 {
    1800
}
fn default_min_rows() -> u64 {
    1000
}
fn default_top_statements() -> u32 {
    20
}

/// How much a finding matters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; no harm yet.
    Info,
    /// Costs time or space now.
    Warning,
    /// Risks an outage (transaction-ID wraparound, an invalid index).
    Critical,
}

/// The kinds of findings, one string form each (the finding id starts with it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The planner's statistics lag behind the data.
    StaleStatistics,
    /// Dead rows wait for a vacuum.
    DeadTuples,
    /// The oldest transaction ID of a table is getting old (PostgreSQL).
    WraparoundAge,
    /// A table holds much more space than its rows need.
    TableBloat,
    /// An index holds much more space than its entries need.
    IndexBloat,
    /// Free space inside a MariaDB table (data_free).
    Fragmentation,
    /// A foreign key whose referencing columns no index starts with.
    UnindexedForeignKey,
    /// A large table read mostly by sequential scans.
    SequentialScans,
    /// A heavy statement scans a large table that an index would narrow.
    MissingIndex,
    /// An index not used since the statistics were reset.
    UnusedIndex,
    /// An index with the same columns as another.
    DuplicateIndex,
    /// An index whose columns are a prefix of another's.
    RedundantIndex,
    /// An index left invalid by a failed concurrent build (PostgreSQL).
    InvalidIndex,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::StaleStatistics => "stale_statistics",
            FindingKind::DeadTuples => "dead_tuples",
            FindingKind::WraparoundAge => "wraparound_age",
            FindingKind::TableBloat => "table_bloat",
            FindingKind::IndexBloat => "index_bloat",
            FindingKind::Fragmentation => "fragmentation",
            FindingKind::UnindexedForeignKey => "unindexed_foreign_key",
            FindingKind::SequentialScans => "sequential_scans",
            FindingKind::MissingIndex => "missing_index",
            FindingKind::UnusedIndex => "unused_index",
            FindingKind::DuplicateIndex => "duplicate_index",
            FindingKind::RedundantIndex => "redundant_index",
            FindingKind::InvalidIndex => "invalid_index",
        }
    }
}

/// The kinds of fixes; which ones a run applies is the request's policy.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FixKind {
    /// ANALYZE / ANALYZE TABLE.
    Analyze,
    /// VACUUM (ANALYZE).
    Vacuum,
    /// REINDEX INDEX CONCURRENTLY.
    Reindex,
    /// An online rebuild of a MariaDB table (ALTER TABLE ... FORCE, LOCK=NONE).
    Rebuild,
    /// CREATE INDEX CONCURRENTLY / online ADD INDEX (apply_index_advice).
    CreateIndex,
    /// DROP INDEX of an unused index (drop_unused_indexes).
    DropUnusedIndex,
    /// DROP INDEX of a duplicate or redundant index (drop_duplicate_indexes).
    DropDuplicateIndex,
}

/// A fix: the statement that resolves a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Fix {
    /// What kind of fix it is (the policy allows kinds).
    pub kind: FixKind,
    /// The statement, identifiers quoted.
    pub sql: String,
    /// Run when the statement fails, so that nothing half-built stays behind (the invalid
    /// index a failed CREATE INDEX CONCURRENTLY leaves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<String>,
    /// Whether it runs outside a transaction block (the CONCURRENTLY forms must).
    #[serde(default)]
    pub outside_transaction: bool,
}

/// One thing found wrong with the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    /// Stable id: kind and object, e.g. `missing_index:public.orders(customer_id)`.
    pub id: String,
    /// What kind of problem it is.
    pub kind: FindingKind,
    /// info, warning or critical.
    pub severity: Severity,
    /// The table or index concerned (schema-qualified on PostgreSQL).
    pub object: String,
    /// Why it matters, in one sentence.
    pub reason: String,
    /// The numbers the finding rests on (counts, sizes, EXPLAIN costs, statements).
    pub evidence: Value,
    /// The proposed fix, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
}

/// What happened to a planned fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Would run (check mode, action plan).
    Planned,
    /// Ran and succeeded.
    Applied,
    /// Ran and failed (the note says why); nothing half-built is left.
    Failed,
    /// Proposed, but the policy does not allow this kind (say which argument would).
    NotAllowed,
}

/// One fix of the plan and its fate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Action {
    /// The finding it resolves (several, comma-separated, when one statement fixes them all).
    pub finding: String,
    /// What kind of fix it is.
    pub kind: FixKind,
    /// The statement, identifiers quoted.
    pub sql: String,
    /// planned, applied, failed or not_allowed.
    pub status: ActionStatus,
    /// Wall time of the statement, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Why it failed or is not allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Timings of one workload statement, or of all of them together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Timings {
    /// Runs measured.
    pub runs: usize,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile, in milliseconds.
    pub p95_ms: f64,
    /// Mean, in milliseconds.
    pub mean_ms: f64,
}

/// One statement of the workload, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatementGain {
    /// The statement as written in the workload file (parameters unexpanded).
    pub statement: String,
    /// Before the fixes.
    pub before: Timings,
    /// After the fixes.
    pub after: Timings,
}

/// What the workload measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Measurement {
    /// The workload file.
    pub workload: PathBuf,
    /// Every statement together, before the fixes.
    pub before: Timings,
    /// Every statement together, after the fixes.
    pub after: Timings,
    /// 1 - after/before of the mean time; None when nothing was measured.
    pub reduction: Option<f64>,
    /// Each statement, before and after.
    pub statements: Vec<StatementGain>,
}

/// One statement as the server's statistics count it (pg_stat_statements, performance_schema
/// digests), cumulated since they were reset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatementStat {
    /// queryid / digest.
    pub id: String,
    /// The start of its normalized text.
    pub text: String,
    /// Executions counted.
    pub calls: u64,
    /// Their total time, in milliseconds.
    pub total_ms: f64,
}

/// One statement seen before the fixes and after them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedStatement {
    /// The start of its normalized text.
    pub text: String,
    /// Executions before the apply.
    pub calls_before: u64,
    /// Executions since.
    pub calls_after: u64,
    /// Mean time before the apply, in milliseconds.
    pub mean_before_ms: f64,
    /// Mean time since, in milliseconds.
    pub mean_after_ms: f64,
}

/// The gain observed on real traffic: mean time per statement before the last apply and since,
/// over the statements that ran in both windows, weighted by their calls since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedGain {
    /// When the apply took its snapshot.
    pub since: String,
    /// Statements that ran in both windows.
    pub statements_compared: usize,
    /// Statements whose counters went down (statistics reset or server restarted): left out.
    pub statements_reset: usize,
    /// Mean time per statement before the apply, weighted by calls since, in milliseconds.
    pub mean_before_ms: f64,
    /// Mean time per statement since, weighted the same way.
    pub mean_after_ms: f64,
    /// 1 - after/before.
    pub reduction: Option<f64>,
    /// Each statement compared.
    pub statements: Vec<ObservedStatement>,
}

/// The plan applied to a restored copy first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rehearsal {
    /// The verified backup restored.
    pub backup: PathBuf,
    /// Seconds the restore took.
    pub restore_seconds: f64,
    /// Identifies the plan (its statements): require_rehearsal looks for a rehearsal of the
    /// same fingerprint that showed a gain.
    pub fingerprint: String,
    /// The fixes on the copy, with their durations.
    pub actions: Vec<Action>,
    /// The workload on the copy, before and after.
    pub measurement: Measurement,
    /// Whether the mean time went down.
    pub gain: bool,
}

/// What a db_tune run found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TuneReport {
    /// Instance id in the ledger.
    pub instance_id: String,
    /// The database tuned.
    pub database: String,
    /// What was found, each with its evidence and proposed fix.
    pub findings: Vec<Finding>,
    /// The fixes, in the order they run.
    pub actions: Vec<Action>,
    /// Before and after, when a workload was given and fixes ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<Measurement>,
    /// The plan rehearsed on a restored copy (rehearse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal: Option<Rehearsal>,
    /// The gain on real traffic since the last apply (action measure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedGain>,
    /// Statements whose statistics the apply kept for a later `action: measure`.
    #[serde(default)]
    pub snapshot_statements: usize,
    /// What the finder could not look at (no pg_stat_statements, no hypopg...), and why.
    pub limits: Vec<String>,
}
