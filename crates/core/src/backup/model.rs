//! What a backup is: the request (module arguments), the manifest written beside the dump,
//! the report of a run, and a backup as listed on disk.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connection::ConnectionArgs;
use crate::engine::{DumpFormat, TableRows};
use crate::retention::RetentionPolicy;
use crate::run::RunOptions;

/// The `database` value of an instance-wide (physical) backup.
pub const ALL_DATABASES: &str = "*";

/// How a backup is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupMethod {
    /// A dump of one database (pg_dump, mariadb-dump).
    #[default]
    Logical,
    /// A copy of the whole instance (pg_basebackup; mariadb-backup, which must run on the
    /// database host), verified by unpack + start + checks; set database to '*'.
    Physical,
}

/// What db_backup does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupAction {
    /// Take a backup, then apply retention if given.
    #[default]
    Backup,
    /// Only apply retention (and remove leftovers of crashed runs); no dump.
    Prune,
    /// Copy every verified backup of the database in backup_dir that copy_to lacks (manifest
    /// last, checksums checked on the way); no dump. Retention, if given, then applies to
    /// copy_to.
    Copy,
}

/// Arguments of db_backup and `dbcadence backup`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BackupRequest {
    /// backup (default), prune or copy (see copy_to).
    #[serde(default)]
    pub action: BackupAction,
    /// logical (default) or physical.
    #[serde(default)]
    pub method: BackupMethod,
    #[serde(flatten)]
    pub connection: ConnectionArgs,
    /// Database to back up (or prune).
    pub database: String,
    /// Root directory of the backups (unless repository is set).
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub backup_dir: PathBuf,
    /// An S3-compatible bucket to back up to instead of backup_dir: the dump (logical custom
    /// format or physical) is streamed to it as a multipart upload while it runs; a
    /// directory-format dump is staged in a private temporary directory and uploaded file by
    /// file. The manifest is written last. Retention and prune then apply to it.
    #[serde(default)]
    pub repository: Option<crate::repository::S3Repository>,
    /// action copy: the S3-compatible bucket that verified backups of backup_dir are copied
    /// to (a short local history, a long off-site one).
    #[serde(default)]
    pub copy_to: Option<crate::repository::S3Repository>,
    /// Instance id in the layout (use the inventory's id); default: engine, host and port.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// custom (one stream; for MySQL/MariaDB SQL text) or directory (PostgreSQL, parallel jobs).
    #[serde(default)]
    pub format: DumpFormat,
    /// Parallel dump jobs for the directory format.
    #[serde(default = "default_jobs")]
    pub jobs: u32,
    /// zstd compression level, 1 (fast) to 19 (small).
    #[serde(default = "default_level")]
    pub compression_level: i32,
    /// zstd worker threads; 0 uses every core.
    #[serde(default)]
    pub compression_threads: u32,
    /// Seconds to wait while another backup of the same database runs.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: u64,
    /// Also back up what lives outside the database: roles, grants and tablespaces
    /// (pg_dumpall --globals-only) or MariaDB users and grants, as globals.sql.zst.
    #[serde(default)]
    pub globals: bool,
    /// Retention applied to this instance and database after a successful backup (or alone
    /// with action prune).
    #[serde(default)]
    pub retention: Option<RetentionPolicy>,
    /// A local group (backup operators) given read access to the backups: files 0640 and
    /// directories 0750 instead of 0600 and 0700.
    #[serde(default)]
    pub backup_group: Option<String>,
    #[serde(flatten)]
    pub run: RunOptions,
}

/// The same defaults as the module's arguments (a derived Default would give level 0).
impl Default for BackupRequest {
    fn default() -> Self {
        BackupRequest {
            action: BackupAction::default(),
            method: BackupMethod::default(),
            connection: ConnectionArgs::default(),
            database: String::new(),
            backup_dir: PathBuf::new(),
            repository: None,
            copy_to: None,
            instance_id: None,
            format: DumpFormat::default(),
            jobs: default_jobs(),
            compression_level: default_level(),
            compression_threads: 0,
            lock_timeout: default_lock_timeout(),
            globals: false,
            retention: None,
            backup_group: None,
            run: RunOptions::default(),
        }
    }
}

fn default_jobs() -> u32 {
    2
}

fn default_level() -> i32 {
    3
}

fn default_lock_timeout() -> u64 {
    60
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ManifestFile {
    /// Path relative to the backup directory.
    pub path: String,
    /// Size on disk (compressed).
    pub bytes: u64,
    /// Size of the dump before compression.
    pub raw_bytes: u64,
    /// sha256 of the file as stored.
    pub sha256: String,
}

/// manifest.json: what a backup holds and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// complete; anything else is not a usable backup.
    pub status: String,
    /// postgresql or mysql.
    pub engine: crate::connection::EngineKind,
    /// postgresql, mariadb or mysql.
    pub flavour: String,
    /// Version of the server backed up.
    pub server_version: String,
    /// Dump tool and version.
    pub tool: String,
    /// Instance id in the layout.
    pub instance_id: String,
    /// Database backed up (`*` for a physical backup).
    pub database: String,
    /// When the backup started (RFC 3339).
    pub started_at: String,
    /// When the dump finished.
    pub finished_at: String,
    /// Wall time of the backup.
    pub duration_seconds: f64,
    /// Snapshot position: PostgreSQL LSN and exported snapshot; MySQL binary log file and position.
    pub snapshot: Value,
    /// Rows per table in the dump's own snapshot. A physical backup: rows per table of every
    /// user database when the copy started (see `tables_at_end`).
    pub tables: Vec<TableRows>,
    /// Physical backups: rows per table when the copy ended. The copy is consistent at a point
    /// in between, so verification requires every table counted at both ends to be restored
    /// and notes (without failing) a restored count outside the two.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables_at_end: Vec<TableRows>,
    /// SHOW CREATE of every object of the database, read just before the dump (MariaDB/MySQL
    /// logical backups); verification compares the restore with it. None: not recorded
    /// (PostgreSQL, physical backups, backups made before dbcadence recorded them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<Vec<crate::engine::ObjectDefinition>>,
    /// The main dump: a file (dump.pgcustom.zst, dump.sql.zst, physical.mbstream.zst) or a
    /// directory (dump.pgdir).
    #[serde(default)]
    pub dump: String,
    /// logical or physical.
    #[serde(default)]
    pub method: BackupMethod,
    /// Every file of the backup with its size and sha256.
    pub files: Vec<ManifestFile>,
    /// Compression algorithm and level.
    pub compression: Value,
    /// Set by db_verify: when and how the backup was proven by a restore.
    #[serde(default)]
    pub verification: Option<Value>,
    /// What the backup could not include, e.g. accounts skipped from the globals.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The result of a backup run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct BackupReport {
    /// Whether the run changed anything: a backup was written or a backup was removed (never
    /// in check mode).
    pub changed: bool,
    /// Directory of the new backup (an s3:// URL in a repository; none in check mode).
    pub path: Option<PathBuf>,
    /// Its manifest (none in check mode).
    pub manifest: Option<Manifest>,
    /// Size of the database on the server, the basis of the space check.
    pub database_bytes: Option<u64>,
    /// Leftovers of crashed runs removed before this one.
    pub removed_partials: Vec<String>,
    /// Backups removed by retention (in check mode: that would be removed).
    pub pruned: Vec<PathBuf>,
    /// Backups kept by retention.
    pub kept: Vec<PathBuf>,
    /// action copy: the backups copied (their s3:// URLs; in check mode: that would be).
    #[serde(default)]
    pub copied: Vec<PathBuf>,
}

/// One complete backup on disk.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BackupEntry {
    pub path: PathBuf,
    pub instance_id: String,
    pub database: String,
    pub started_at: String,
    pub bytes: u64,
    pub verified: bool,
}
