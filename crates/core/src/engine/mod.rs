//! The one engine seam. Every piece of per-engine SQL lives below this folder; orchestration
//! (inventory, backup, ...) is written once against [`Engine`] and never matches on the kind.

pub mod lab;
pub mod mysql;
pub mod postgres;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::connection::{ConnectionArgs, EngineKind};

/// Primary or replica, as the server itself says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepts writes.
    Primary,
    /// Follows a primary (PostgreSQL recovery, MySQL/MariaDB replication threads configured).
    Replica,
    /// The login user may not see replication status.
    Unknown,
}

/// Data-at-rest encryption as far as SQL can tell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AtRestEncryption {
    /// enabled, partial, off or not_detectable.
    pub status: String,
    /// The settings or facts the status was read from.
    pub detail: String,
}

/// Facts about one server, as seen over one connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerFacts {
    pub engine: EngineKind,
    /// postgresql, mariadb or mysql.
    pub flavour: String,
    /// Full version string as the server reports it.
    pub version: String,
    /// Short version number, e.g. 15.19 or 10.11.19.
    pub version_number: String,
    /// Stable identity of the server, used to merge aliases: PostgreSQL system identifier and
    /// data directory; MySQL server_uuid; MariaDB host name and data directory.
    pub server_identity: String,
    /// Changes when the server restarts; part of the alias key so that a replica cloned from a
    /// primary (same system identifier) is never merged with it.
    pub started_at: Option<String>,
    pub role: Role,
    pub data_directory: Option<String>,
    /// Maintenance-relevant settings (WAL archiving or binary log, log directory, ssl...).
    pub settings: BTreeMap<String, String>,
    /// Whether this very connection is encrypted with TLS.
    pub tls_in_use: bool,
    /// Whether the server offers TLS at all.
    pub tls_available: bool,
    pub at_rest: AtRestEncryption,
}

/// What a database is for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseKind {
    /// Holds user data.
    User,
    /// The server's own (mysql, sys, information_schema, the postgres maintenance database).
    System,
    /// A PostgreSQL template database.
    Template,
}

/// One database as the server lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DatabaseFacts {
    pub name: String,
    pub kind: DatabaseKind,
    /// Size in bytes, where the login user may read it.
    pub size_bytes: Option<u64>,
    /// Owner (PostgreSQL); MySQL databases have none.
    pub owner: Option<String>,
    /// Encoding (PostgreSQL) or default character set (MySQL).
    pub charset: Option<String>,
    pub collation: Option<String>,
}

/// Rows of one table, counted in the dump's own snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TableRows {
    /// Database, in a physical backup's counts (a logical backup is of one database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Schema (PostgreSQL); MySQL tables have none beyond the database.
    pub schema: Option<String>,
    /// Table name.
    pub name: String,
    /// Rows counted.
    pub rows: u64,
}

/// One object of a database as the server shows it (SHOW CREATE ...), for comparing a
/// restore with its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectDefinition {
    /// table, view, procedure, function, trigger or event.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Its definition, without what a restore legitimately changes (a table's next
    /// AUTO_INCREMENT value).
    pub definition: String,
}

/// Watches an uncompressed text dump stream line by line (MySQL: rows per table and the
/// binary log position written in the dump's header).
pub trait StreamObserver: Send {
    fn line(&mut self, line: &[u8]);
    /// Row counts and snapshot facts found in the stream.
    fn finish(self: Box<Self>) -> (Vec<TableRows>, serde_json::Value);
}

/// Shape of a logical dump.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// One stream: PostgreSQL custom format, MySQL/MariaDB SQL text.
    #[default]
    Custom,
    /// PostgreSQL directory format, dumped by parallel jobs (one file per table).
    Directory,
}

/// Where the dump tool writes.
pub enum DumpOutput {
    /// To its standard output, streamed through dbcadence.
    Stdout,
    /// Into this directory (PostgreSQL directory format); files are compressed afterwards.
    Directory(std::path::PathBuf),
}

/// A row count job: the counts, and a guard to drop once the dump is done.
pub type RowCounter =
    Box<dyn FnOnce() -> (Result<Vec<TableRows>>, Box<dyn std::any::Any + Send>) + Send>;

/// How to dump one database, as the engine knows it. Connection settings and secrets reach
/// the dump tool through its environment or a 0600 file, never its command line.
pub struct DumpPlan {
    pub program: std::path::PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Tool name and version, e.g. "pg_dump (PostgreSQL) 15.20".
    pub tool: String,
    /// Name of the dump file (or directory) inside the backup, before ".zst".
    pub file_name: &'static str,
    pub output: DumpOutput,
    /// Snapshot position known before the dump (PostgreSQL LSN and exported snapshot).
    pub snapshot: serde_json::Value,
    /// Counts rows in the dump's snapshot, run beside the dump (PostgreSQL). It hands back
    /// what keeps the snapshot alive, to be dropped only after the dump has finished.
    pub counter: Option<RowCounter>,
    /// Row counts read from the stream itself (MySQL).
    pub observer: Option<Box<dyn StreamObserver>>,
    /// What the dump depends on while it runs: an open snapshot transaction, a temp
    /// credentials directory. Dropped when the dump ends.
    pub keep_alive: Vec<Box<dyn std::any::Any + Send>>,
}

/// Roles, users and grants as SQL text (small: kilobytes).
pub struct GlobalsDump {
    /// How it was produced, e.g. "pg_dumpall (PostgreSQL) 15.20" or "SHOW CREATE USER/SHOW GRANTS".
    pub tool: String,
    pub sql: Vec<u8>,
    /// Accounts that could not be dumped, and why (they are also noted in the SQL as comments).
    pub skipped: Vec<String>,
}

impl DumpPlan {
    /// The dump tool: its arguments and environment (where the secrets are).
    pub fn tool(&self) -> crate::process::Tool {
        crate::process::Tool::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
    }
}

impl RestorePlan {
    /// The restore tool: its arguments and environment (where the secrets are).
    pub fn tool(&self) -> crate::process::Tool {
        crate::process::Tool::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
    }
}

/// How the restore tool reads the dump.
pub enum RestoreInput {
    /// The decompressed dump on the tool's standard input.
    Stdin,
    /// The decompressed dump as a file named last on the command line (allows parallel jobs).
    File,
}

/// How [`Engine::load_dump`] loaded a dump.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastLoad {
    /// Tables whose secondary keys were built after their rows.
    pub keys_built_after: usize,
    /// Tables whose rows went as LOAD DATA rather than INSERT statements.
    pub tables_as_load_data: usize,
}

/// How to load a dump into a database of this server. Like [`DumpPlan`], secrets travel in
/// the environment or a 0600 file.
pub struct RestorePlan {
    pub program: std::path::PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub input: RestoreInput,
    pub keep_alive: Vec<Box<dyn std::any::Any + Send>>,
}

/// What an engine can do beyond the common seam, known without connecting: a request the
/// engine cannot serve fails before any connection is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// A dump as a directory of files written by parallel jobs (pg_dump -Fd).
    DirectoryFormat,
}

/// Whether engines of `kind` can do `capability`.
pub fn supports(kind: EngineKind, capability: Capability) -> bool {
    match (kind, capability) {
        (EngineKind::Postgresql, Capability::DirectoryFormat) => true,
        (EngineKind::Mysql, Capability::DirectoryFormat) => false,
    }
}

/// What db_tune asks the finder to look at.
#[derive(Debug, Clone, Default)]
pub struct TuneScope {
    /// Tables with fewer rows are left alone by the scan and index findings.
    pub min_table_rows: u64,
    /// How many of the heaviest statements to search for missing indexes.
    pub top_statements: u32,
    /// Concrete statements (the workload's, parameters drawn) searched too.
    pub statements: Vec<String>,
}

/// Bounds on every fix db_tune runs.
#[derive(Debug, Clone, Copy)]
pub struct TuneLimits {
    /// Longest wait for a lock.
    pub lock_timeout: std::time::Duration,
    /// Longest run of one statement.
    pub statement_timeout: std::time::Duration,
}

/// One open connection to one server. Object safe: orchestration holds `Box<dyn Engine>`.
pub trait Engine: Send {
    fn kind(&self) -> EngineKind;
    /// Whether this engine can do `capability` (see [`supports`]).
    fn supports(&self, capability: Capability) -> bool {
        supports(self.kind(), capability)
    }
    /// Version, identity, role, settings, encryption facts.
    fn server_facts(&mut self) -> Result<ServerFacts>;
    /// Every database, system ones included.
    fn databases(&mut self) -> Result<Vec<DatabaseFacts>>;
    /// Creates a database (identifier quoted by the engine); no-op if it exists.
    fn create_database(&mut self, name: &str) -> Result<bool>;
    /// Drops a database if it exists.
    fn drop_database(&mut self, name: &str) -> Result<bool>;
    /// Prepares a consistent logical dump of `database`; a directory-format dump is written
    /// into `work_dir`.
    fn dump_plan(
        &mut self,
        database: &str,
        format: DumpFormat,
        jobs: u32,
        work_dir: &std::path::Path,
    ) -> Result<DumpPlan>;
    /// What lives outside databases, as SQL: roles, grants, tablespaces (PostgreSQL
    /// pg_dumpall --globals-only; MySQL/MariaDB users and grants).
    fn dump_globals(&mut self) -> Result<GlobalsDump>;
    /// What the login user lacks to dump `database` (empty when nothing is missing), so that a
    /// backup fails before it starts, naming the grant to add.
    fn dump_privilege_problems(&mut self, database: &str) -> Result<Vec<String>>;
    /// Prepares a physical backup of the whole instance, streamed to standard output.
    fn physical_plan(&mut self) -> Result<DumpPlan>;
    /// Prepares loading a dump of this engine's format into `database` (which must exist).
    fn restore_plan(&mut self, database: &str, jobs: u32) -> Result<RestorePlan>;
    /// Verification's load of a dump, where the engine has one faster than the restore plan
    /// with the same result (MariaDB/MySQL: rows on `jobs` sessions as LOAD DATA, secondary
    /// keys built after the rows). Returns how it loaded; None when the engine has no such
    /// load or the dump is not one it understands (nothing was read: use
    /// [`Engine::restore_plan`]).
    fn load_dump(
        &mut self,
        _database: &str,
        _dump: &mut dyn std::io::BufRead,
        _jobs: u32,
    ) -> Result<Option<FastLoad>> {
        Ok(None)
    }
    /// SHOW CREATE of every table, view, routine, trigger and event of `database`, recorded
    /// in a backup's manifest and compared with the restore by verification; None where the
    /// engine records none (PostgreSQL: pg_restore replays the dump as it is).
    fn object_definitions(&mut self, _database: &str) -> Result<Option<Vec<ObjectDefinition>>> {
        Ok(None)
    }
    /// Rows per table of `database`, counted now.
    fn row_counts(&mut self, database: &str) -> Result<Vec<TableRows>>;
    /// Integrity checks of `database` (pg_amcheck, CHECK TABLE); returns the problems found.
    fn check_integrity(&mut self, database: &str) -> Result<Vec<String>>;
    /// db_tune: what is wrong with the connected database, each finding with its evidence and
    /// proposed fix; and what could not be examined, with why.
    fn tune_findings(
        &mut self,
        scope: &TuneScope,
    ) -> Result<(Vec<crate::tune::model::Finding>, Vec<String>)>;
    /// Runs one fix within the limits; when it fails, runs its cleanup so that nothing
    /// half-built stays behind.
    fn run_fix(&mut self, fix: &crate::tune::model::Fix, limits: &TuneLimits) -> Result<()>;
    /// Runs one statement and reads all its rows (a workload replay).
    fn run_timed(&mut self, sql: &str) -> Result<()>;
    /// db_audit: the server's security checks that failed, and what could not be checked.
    fn audit_checks(
        &mut self,
        allowed_superusers: &[String],
    ) -> Result<(Vec<crate::audit::model::AuditFinding>, Vec<String>)>;
    /// The log file the server writes now, when it says (for the failed-login reader).
    fn server_log(&mut self) -> Result<Option<std::path::PathBuf>>;
    /// db_patch's gates: the age of the oldest open transaction and the replication lag, in
    /// seconds (None when there is none, or it cannot be seen).
    fn patch_state(&mut self) -> Result<crate::patch::ServerState>;
    /// db_patch, after a minor upgrade and restart: PostgreSQL updates outdated extensions
    /// (ALTER EXTENSION ... UPDATE in every database), MariaDB runs mariadb-upgrade. Returns
    /// what was done, a line each.
    fn after_minor_upgrade(&mut self) -> Result<Vec<String>>;
    /// db_restore: applies a globals file from a backup (roles, or users and grants) statement
    /// by statement. Accounts that exist already are left as they are (`skip_existing`) or stop
    /// the restore before anything is applied; the server's own superuser and the restoring
    /// login are always left alone. Returns what was done, a line each.
    fn restore_globals(&mut self, sql: &str, skip_existing: bool) -> Result<Vec<String>>;
    /// db_patch's smoke query: the number of tables in `database`, read from its catalog.
    fn count_tables(&mut self, database: &str) -> Result<u64>;
    /// db_logs: the server's text logs, binary logs and WAL as it describes them.
    fn server_logs(&mut self) -> Result<crate::logs::model::ServerLogs>;
    /// Purges the binary logs before `name` (MariaDB/MySQL; PostgreSQL has none).
    fn purge_binary_logs_to(&mut self, name: &str) -> Result<()>;
    /// Asks the server to reopen a text log after it was renamed (rotation).
    fn reopen_log(&mut self, kind: crate::logs::model::TextLogKind) -> Result<()>;
    /// As a replica: the source's binary log it has executed up to (None: not a replica).
    fn replica_source_file(&mut self) -> Result<Option<String>>;
    /// The connected database's statement statistics, heaviest first; None when the server
    /// keeps none (no pg_stat_statements, performance_schema off).
    fn statement_stats(
        &mut self,
        limit: u32,
    ) -> Result<Option<Vec<crate::tune::model::StatementStat>>>;
}

/// What only the lab and the tests do to a server, kept off the production seam: run
/// arbitrary SQL, create an all-powerful login.
pub trait LabEngine: Engine {
    /// Runs statements that return nothing, in one database (None: the connection's default).
    /// For lab seeding and tests; the SQL must come from the engine's own helpers or fixtures.
    fn execute_in(&mut self, database: Option<&str>, sql: &str) -> Result<()>;
    /// Makes sure `user` exists with `password` and full privileges (lab bootstrap).
    fn ensure_admin_login(&mut self, user: &str, password: &str) -> Result<()>;
}

/// Opens a connection for the lab and the tests, with the lab-only operations.
pub fn connect_lab(args: &ConnectionArgs) -> Result<Box<dyn LabEngine>> {
    match args.engine()? {
        EngineKind::Postgresql => Ok(Box::new(postgres::PostgresEngine::connect(args)?)),
        EngineKind::Mysql => Ok(Box::new(mysql::MysqlEngine::connect(args)?)),
    }
}

/// Opens a connection with the shared connection arguments.
pub fn connect(args: &ConnectionArgs) -> Result<Box<dyn Engine>> {
    match args.engine()? {
        EngineKind::Postgresql => Ok(Box::new(postgres::PostgresEngine::connect(args)?)),
        EngineKind::Mysql => Ok(Box::new(mysql::MysqlEngine::connect(args)?)),
    }
}

/// A server started on a restored physical backup, for checks; stopped, then deleted with its
/// directory, on drop. Each engine says how to stop its own server.
pub struct PhysicalCopy {
    connection: ConnectionArgs,
    stop: Box<dyn Fn() + Send>,
    /// Removed after the server stopped (fields drop after Drop::drop).
    _dir: tempfile::TempDir,
}

impl PhysicalCopy {
    pub(crate) fn new(
        dir: tempfile::TempDir,
        connection: ConnectionArgs,
        stop: Box<dyn Fn() + Send>,
    ) -> Self {
        PhysicalCopy {
            connection,
            stop,
            _dir: dir,
        }
    }

    /// Connection to the started server, with full rights.
    pub fn connection(&self) -> &ConnectionArgs {
        &self.connection
    }
}

impl Drop for PhysicalCopy {
    fn drop(&mut self) {
        (self.stop)();
    }
}

/// Unpacks a physical backup stream into `work_dir`, makes it consistent (prepare) and starts
/// a private server on it, for the engine `kind`.
/// `user` is a role of the backed-up server (PostgreSQL logs in as it with local trust).
pub fn start_physical_copy(
    kind: EngineKind,
    stream: &mut dyn std::io::Read,
    work_dir: &std::path::Path,
    user: &str,
) -> Result<PhysicalCopy> {
    match kind {
        EngineKind::Mysql => mysql::start_physical_copy(stream, work_dir),
        EngineKind::Postgresql => postgres::start_physical_copy(stream, work_dir, user),
    }
}

/// Whether the engine's restore tool reads the dump from a file (parallel pg_restore) rather
/// than its standard input: then the dump can be decompressed ahead, while a server starts.
pub fn restores_from_file(kind: EngineKind) -> bool {
    match kind {
        EngineKind::Postgresql => true,
        EngineKind::Mysql => false,
    }
}

/// db_restore of a physical backup: unpacks (and checks or prepares) it into `data_dir`, a
/// new or empty directory, owned by the engine's service user.
pub fn unpack_physical(
    kind: EngineKind,
    stream: &mut dyn std::io::Read,
    data_dir: &std::path::Path,
) -> Result<()> {
    match kind {
        EngineKind::Mysql => mysql::physical::unpack(stream, data_dir),
        EngineKind::Postgresql => postgres::physical::unpack(stream, data_dir),
    }
}

/// A server started on a restored data directory; it keeps running.
#[derive(Debug, Clone)]
pub struct RestoredServer {
    /// How to reach it (its socket; local trust for PostgreSQL's `user`, root for MariaDB).
    pub connection: ConnectionArgs,
    /// Where its socket, log and (MariaDB) pid file are.
    pub run_dir: std::path::PathBuf,
}

/// Starts a server (socket only, in `run_dir`) on a restored data directory and leaves it
/// running.
pub fn start_restored(
    kind: EngineKind,
    data_dir: &std::path::Path,
    run_dir: &std::path::Path,
    user: &str,
) -> Result<RestoredServer> {
    std::fs::create_dir_all(run_dir).map_err(|e| crate::Error::io("create", run_dir, e))?;
    crate::util::chown_recursive(run_dir, lab::service_user(kind))?;
    let connection = match kind {
        EngineKind::Mysql => mysql::physical::start(data_dir, run_dir, false)?.0,
        EngineKind::Postgresql => postgres::physical::start(
            data_dir,
            run_dir,
            &run_dir.join("hba.conf"),
            &run_dir.join("server.log"),
            user,
            false,
        )?,
    };
    Ok(RestoredServer {
        connection,
        run_dir: run_dir.to_path_buf(),
    })
}

/// A hint for the most common connection failures, chosen from the driver's message.
pub(crate) fn connect_hint(cause: &str) -> &'static str {
    let lower = cause.to_ascii_lowercase();
    if lower.contains("refused") || lower.contains("no such file") {
        "check that the server runs and listens on that address (login_host/login_port or login_unix_socket)"
    } else if lower.contains("password")
        || lower.contains("access denied")
        || lower.contains("authentication")
    {
        "check login_user and login_password (or the endpoint's password reference)"
    } else if lower.contains("timed out") || lower.contains("timeout") {
        "the server did not answer within connect_timeout; check network and firewall"
    } else if lower.contains("tls") || lower.contains("ssl") || lower.contains("certificate") {
        "check ssl_mode and ca_cert against the server's TLS set-up"
    } else {
        "check the connection arguments and the server's log"
    }
}
