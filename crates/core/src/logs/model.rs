//! What log retention is made of: the request, the server's logs as it describes them, and
//! what a run removed, compressed, rotated or purged.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::connection::ConnectionArgs;
use crate::run::RunOptions;

/// Arguments of db_logs and `dbcadence logs`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogsRequest {
    #[serde(flatten)]
    pub connection: ConnectionArgs,
    /// Instance id for the ledger and the backups' layout (use the inventory's id); default:
    /// engine, host and port.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Text logs (and rotated copies) older than this many days are removed.
    #[serde(default = "default_keep_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub keep_days: u32,
    /// Text logs older than this many days are compressed (zstd); 0 compresses every file
    /// but the one being written.
    #[serde(default = "default_compress_days")]
    pub compress_after_days: u32,
    /// Total size the text logs may take; the oldest go first beyond it (never the one being
    /// written).
    #[serde(default)]
    pub max_total_bytes: Option<u64>,
    /// MariaDB/MySQL text logs (error, slow, general) larger than this are rotated: renamed
    /// and reopened by the server (FLUSH ... LOGS).
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
    /// PostgreSQL without logging_collector: the directory its log files are in.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub log_dir: Option<PathBuf>,
    /// MariaDB/MySQL: binary logs older than this many days may be purged, and never past
    /// what the newest verified backups and the replicas still need.
    #[serde(default)]
    pub binlog_keep_days: Option<u32>,
    /// Root directory of the backups: the newest verified backup of each database keeps the
    /// binary logs from its position on (point-in-time recovery). Binary logs are never
    /// purged without it.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub backup_dir: Option<PathBuf>,
    /// Replicas of this server: none is left without the binary log it has not executed yet.
    #[serde(default)]
    pub replicas: Vec<ConnectionArgs>,
    /// Refuse to change anything without an approved change record (change_id) whose window
    /// is now (production hosts); a change_id given is checked either way.
    #[serde(default)]
    pub require_change: bool,
    #[serde(flatten)]
    pub run: RunOptions,
}

impl LogsRequest {
    /// A request with every default (what the timers run).
    pub fn defaults(connection: ConnectionArgs) -> LogsRequest {
        LogsRequest {
            connection,
            instance_id: None,
            keep_days: default_keep_days(),
            compress_after_days: default_compress_days(),
            max_total_bytes: None,
            rotate_bytes: default_rotate_bytes(),
            log_dir: None,
            binlog_keep_days: None,
            backup_dir: None,
            replicas: vec![],
            require_change: false,
            run: RunOptions::default(),
        }
    }
}

fn default_keep_days() -> u32 {
    30
}
fn default_compress_days() -> u32 {
    1
}
fn default_rotate_bytes() -> u64 {
    100 * 1024 * 1024
}

/// A text log the server writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextLogKind {
    /// PostgreSQL's server log (a directory of files).
    Server,
    /// MariaDB's error log.
    Error,
    /// MariaDB's slow query log.
    Slow,
    /// MariaDB's general query log.
    General,
}

/// Where a server writes one kind of text log.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLog {
    pub kind: TextLogKind,
    /// The directory holding the files (and their rotated copies).
    pub dir: PathBuf,
    /// The file being written, never touched.
    pub current: Option<PathBuf>,
    /// MariaDB: the log's own file name; rotated copies start with it. None on PostgreSQL,
    /// where every file of the directory is a log.
    pub stem: Option<String>,
}

/// One binary log of a MariaDB/MySQL server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BinaryLog {
    /// Its file name, e.g. binlog.000042.
    pub name: String,
    /// Its size.
    pub bytes: u64,
}

/// A replication slot and the WAL it holds back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Slot {
    /// The slot's name.
    pub name: String,
    /// Whether a consumer is connected.
    pub active: bool,
    /// WAL bytes kept for it.
    pub retained_bytes: Option<u64>,
}

/// PostgreSQL's WAL: never removed by hand; reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WalStatus {
    /// off, on or always.
    pub archive_mode: String,
    /// Archiving failures since the statistics were reset.
    pub failed_count: i64,
    /// The WAL file of the last failure.
    pub last_failed_wal: Option<String>,
    /// When archiving last failed.
    pub last_failed_time: Option<String>,
    /// When archiving last succeeded.
    pub last_archived_time: Option<String>,
    /// Size of pg_wal, when readable.
    pub wal_bytes: Option<u64>,
    /// The replication slots and the WAL each holds back.
    pub slots: Vec<Slot>,
}

/// The server's logs as it describes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerLogs {
    pub text: Vec<TextLog>,
    /// MariaDB/MySQL with log-bin: every binary log, oldest first; the last is being written.
    pub binary: Option<Vec<BinaryLog>>,
    /// Where the binary log files are (for their ages).
    pub binary_dir: Option<PathBuf>,
    pub wal: Option<WalStatus>,
    /// What the server does not say, and why.
    pub limits: Vec<String>,
}

/// What happened (or would) to one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileAction {
    /// removed, compressed or rotated.
    pub action: String,
    /// The file.
    pub path: PathBuf,
    /// Bytes freed (removed: its size; compressed: size minus the compressed size).
    pub freed_bytes: u64,
    /// Why: age, budget, size.
    pub reason: String,
}

/// What a db_logs run did (or would do, in check mode).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LogsReport {
    /// Instance id in the ledger.
    pub instance_id: String,
    /// Text log files removed, compressed or rotated.
    pub files: Vec<FileAction>,
    /// Binary logs purged (MariaDB/MySQL).
    pub purged_binary_logs: Vec<String>,
    /// The oldest binary log that must stay, and what keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_floor: Option<String>,
    /// Bytes freed in all.
    pub freed_bytes: u64,
    /// Bytes the text logs take after the run.
    pub text_log_bytes: u64,
    /// PostgreSQL's WAL and archiving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalStatus>,
    /// What needs a person: archiving failures, slots holding WAL.
    pub warnings: Vec<String>,
    /// What could not be managed, and why.
    pub limits: Vec<String>,
}
