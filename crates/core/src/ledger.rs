//! The ledger: one record per module or CLI run, the only source of truth for "what ran".
//!
//! Default store: a JSON-lines file. Appends take an exclusive lock, start on a fresh line,
//! and are fsync'd before the run reports success. A crash can leave a torn last line; readers
//! skip it and report it, never fail on it.
//!
//! Shared store: a PostgreSQL table (`ledger_url: postgresql://user@host:port/db?table=...`),
//! created on first use, holding the same records. [`Store`] is either; everything that reads
//! or writes the ledger goes through it.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::connection::{ConnectionArgs, EngineKind, SslMode};
use crate::engine::postgres::ledger::PostgresLedger;
use crate::secret::SecretString;
use crate::task::Task;
use crate::{Error, Result};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    Skipped,
}

/// What a person says of an alert (`dbcadence alert feedback`): the scorecard counts the
/// false ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    /// The alert fired and should not have.
    FalsePositive,
    /// Something broke and the alert stayed silent.
    FalseNegative,
    /// The alert fired for a real problem.
    TruePositive,
}

impl FeedbackKind {
    pub const ALL: [FeedbackKind; 3] = [
        FeedbackKind::FalsePositive,
        FeedbackKind::FalseNegative,
        FeedbackKind::TruePositive,
    ];

    /// The one string form (ledger details).
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::FalsePositive => "false_positive",
            FeedbackKind::FalseNegative => "false_negative",
            FeedbackKind::TruePositive => "true_positive",
        }
    }

    /// Reads the string form; `false-positive` is accepted too (command-line habit).
    pub fn parse(text: &str) -> Option<FeedbackKind> {
        let text = text.replace('-', "_");
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Whether the alert was wrong (counted against alert accuracy).
    pub fn is_error(self) -> bool {
        self != FeedbackKind::TruePositive
    }
}

/// What a run was about: an instance, and a database when the task is per database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Target {
    pub instance: String,
    #[serde(default)]
    pub db: Option<String>,
}

/// One ledger record (contract: ARCHITECTURE.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Record {
    pub id: String,
    pub task: Task,
    pub target: Target,
    pub started_at: String,
    pub finished_at: String,
    pub outcome: Outcome,
    pub changed: bool,
    pub check_mode: bool,
    #[serde(default)]
    pub details: Value,
    #[serde(default)]
    pub change_id: Option<String>,
}

/// The ledger file.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
}

/// What a read found: the records, and the lines that could not be read.
#[derive(Debug, Default)]
pub struct ReadResult {
    pub records: Vec<Record>,
    /// 1-based line numbers of lines that are not records (a torn last line after a crash).
    pub bad_lines: Vec<usize>,
}

impl Ledger {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Ledger { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record durably.
    pub fn append(&self, record: &Record) -> Result<()> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io("create the ledger directory", parent, e))?;
        }
        let io = |e| Error::io("append to the ledger", &self.path, e);
        let new_file = !self.path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(crate::files::LEDGER_FILE)
            .open(&self.path)
            .map_err(io)?;
        if new_file {
            // Readable by an operators' group, never by everyone; and the new name itself
            // must survive a crash, not only the bytes appended to it.
            file.set_permissions(std::fs::Permissions::from_mode(crate::files::LEDGER_FILE))
                .map_err(io)?;
            crate::files::sync_dir(
                self.path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )?;
        }
        file.lock().map_err(io)?;
        let mut line = serde_json::to_string(record)
            .map_err(|e| Error::invalid("ledger record", e.to_string()))?;
        line.push('\n');
        // A torn last line from a crashed writer must not swallow our record.
        if ends_without_newline(&mut file).map_err(io)? {
            line.insert(0, '\n');
        }
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        file.unlock().map_err(io)?;
        Ok(())
    }

    /// Reads every record; a missing file is an empty ledger.
    pub fn read(&self) -> Result<ReadResult> {
        let text = match std::fs::read(&self.path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReadResult::default()),
            Err(e) => return Err(Error::io("read the ledger", &self.path, e)),
        };
        let mut result = ReadResult::default();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(record) => result.records.push(record),
                Err(_) => result.bad_lines.push(index + 1),
            }
        }
        Ok(result)
    }
}

fn ends_without_newline(file: &mut File) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// A record as reports read it: borrowed from its line, details left unparsed until asked
/// for, so that a million records are read without a million trees of JSON values.
#[derive(Debug, Deserialize)]
pub struct RecordView<'a> {
    pub task: Task,
    #[serde(borrow)]
    pub target: TargetView<'a>,
    #[serde(borrow)]
    pub started_at: Cow<'a, str>,
    #[serde(borrow)]
    pub finished_at: Cow<'a, str>,
    pub outcome: Outcome,
    #[serde(default)]
    pub check_mode: bool,
    #[serde(borrow, default)]
    pub details: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub struct TargetView<'a> {
    #[serde(borrow)]
    pub instance: Cow<'a, str>,
    #[serde(borrow, default)]
    pub db: Option<Cow<'a, str>>,
}

impl RecordView<'_> {
    /// The details, or the part of them a caller wants; None when absent or of another shape.
    pub fn details<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.details?.get()).ok()
    }
}

/// Where the ledger lives: a JSON-lines file or a PostgreSQL table.
#[derive(Debug, Clone)]
pub enum Store {
    File(Ledger),
    Postgres {
        connection: ConnectionArgs,
        table: String,
        /// The URL without any secret, for messages.
        url: String,
    },
}

/// The default table of the PostgreSQL store.
pub const DEFAULT_TABLE: &str = "dbcadence_ledger";

impl Store {
    /// A PostgreSQL store from `postgresql://user@host:port/dbname?sslmode=..&sslrootcert=..&table=..`.
    /// The password never goes in the URL (it would end up in shell history, process lists and
    /// AWX job output): it comes from `password`, e.g. $DBCADENCE_LEDGER_PASSWORD.
    pub fn postgres(url: &str, password: Option<SecretString>) -> Result<Self> {
        let bad = |detail: String| Error::invalid("ledger_url", detail);
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            return Err(bad("it must start with postgresql://".into()));
        }
        // The driver's own parser reads the URL (user, hosts with IPv6 brackets, port,
        // database, percent-encoding); the parameters it does not know are ours, taken out
        // first: TLS verification (which the driver leaves to its TLS connector) and the table.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut table = DEFAULT_TABLE.to_string();
        let (mut ssl_mode, mut ca_cert) = (SslMode::Prefer, None);
        let mut passed_on = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decode(value);
            match key {
                "sslmode" => {
                    ssl_mode = serde_json::from_value(Value::String(decoded.clone())).map_err(|_| {
                        bad(format!("sslmode '{decoded}' is not one of disable, prefer, require, verify-ca, verify-full"))
                    })?
                }
                "sslrootcert" => ca_cert = Some(PathBuf::from(decoded)),
                "table" => table = decoded,
                "password" => {
                    return Err(bad(
                        "it holds a password; set DBCADENCE_LEDGER_PASSWORD (or ledger_password) instead".into(),
                    ));
                }
                "connect_timeout" => passed_on.push(pair),
                other => {
                    return Err(bad(format!(
                        "unknown parameter '{other}'; known: sslmode, sslrootcert, connect_timeout, table"
                    )));
                }
            }
        }
        let driver_url = if passed_on.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", passed_on.join("&"))
        };
        let config: postgres::Config = driver_url
            .parse()
            .map_err(|e: postgres::Error| bad(format!("it is not a PostgreSQL URL: {e}")))?;
        if config.get_password().is_some() {
            return Err(bad(
                "it holds a password; remove it from the URL and set DBCADENCE_LEDGER_PASSWORD (or ledger_password) instead"
                    .into(),
            ));
        }
        let host = match config.get_hosts() {
            [] => "localhost".to_string(),
            [postgres::config::Host::Tcp(host)] => host.clone(),
            [postgres::config::Host::Unix(_)] => {
                return Err(bad(
                    "a socket directory is not supported here; give a host".into()
                ));
            }
            _ => return Err(bad("give one host".into())),
        };
        let connection = ConnectionArgs {
            engine: Some(EngineKind::Postgresql),
            login_host: Some(host),
            login_port: config.get_ports().first().copied(),
            login_user: config.get_user().map(str::to_string),
            login_password: password,
            login_db: Some(config.get_dbname().unwrap_or("postgres").to_string()),
            ssl_mode,
            ca_cert,
            connect_timeout: config
                .get_connect_timeout()
                .map_or(crate::connection::default_connect_timeout(), |t| {
                    t.as_secs().max(1)
                }),
            ..ConnectionArgs::default()
        };
        if connection.ssl_mode == SslMode::VerifyCa && connection.ca_cert.is_none() {
            return Err(bad("sslmode=verify-ca needs sslrootcert=<CA file>".into()));
        }
        Ok(Store::Postgres {
            connection,
            table,
            url: url.to_string(),
        })
    }

    /// Where the records go, for messages (never a secret).
    pub fn describe(&self) -> String {
        match self {
            Store::File(ledger) => ledger.path().display().to_string(),
            Store::Postgres { url, table, .. } => format!("{url} (table {table})"),
        }
    }

    /// Appends one record durably. Returns false when the store already held a record with
    /// this id (the PostgreSQL store ignores duplicates, so imports are idempotent).
    pub fn append(&self, record: &Record) -> Result<bool> {
        match self {
            Store::File(ledger) => ledger.append(record).map(|()| true),
            Store::Postgres {
                connection, table, ..
            } => PostgresLedger::open(connection, table)?.append(record),
        }
    }

    /// Appends many records over one connection; returns how many were new.
    pub fn append_all(&self, records: &[Record]) -> Result<usize> {
        match self {
            Store::File(ledger) => {
                for record in records {
                    ledger.append(record)?;
                }
                Ok(records.len())
            }
            Store::Postgres {
                connection, table, ..
            } => {
                let mut db = PostgresLedger::open(connection, table)?;
                let mut added = 0;
                for record in records {
                    added += usize::from(db.append(record)?);
                }
                Ok(added)
            }
        }
    }

    /// Calls `visit` for every record without holding them all in memory (the file is read
    /// line by line). Returns the 1-based numbers of unreadable lines.
    pub fn scan(&self, mut visit: impl FnMut(&RecordView)) -> Result<Vec<usize>> {
        match self {
            Store::File(ledger) => match File::open(ledger.path()) {
                Ok(file) => visit_lines(ledger.path(), file, &mut visit).map(|(bad, _)| bad),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
                Err(e) => Err(Error::io("read the ledger", ledger.path(), e)),
            },
            Store::Postgres { .. } => {
                for record in self.read()?.records {
                    let details = RawValue::from_string(record.details.to_string())
                        .map_err(|e| Error::invalid("ledger row", e.to_string()))?;
                    visit(&RecordView {
                        task: record.task,
                        target: TargetView {
                            instance: Cow::Borrowed(&record.target.instance),
                            db: record.target.db.as_deref().map(Cow::Borrowed),
                        },
                        started_at: Cow::Borrowed(&record.started_at),
                        finished_at: Cow::Borrowed(&record.finished_at),
                        outcome: record.outcome,
                        check_mode: record.check_mode,
                        details: Some(&details),
                    });
                }
                Ok(vec![])
            }
        }
    }

    /// Like [`Store::scan`], on `chunks` threads: the file is cut at line boundaries and each
    /// thread folds its part into its own `G` (returned in file order, so order-dependent
    /// work can be replayed by the caller). Unreadable line numbers are file-wide.
    pub fn scan_chunks<G: Send>(
        &self,
        chunks: usize,
        make: impl Fn() -> G + Sync,
        visit: impl Fn(&mut G, &RecordView) + Sync,
    ) -> Result<(Vec<G>, Vec<usize>)> {
        let Store::File(ledger) = self else {
            let mut one = make();
            let bad = self.scan(|r| visit(&mut one, r))?;
            return Ok((vec![one], bad));
        };
        let path = ledger.path();
        let io = |e| Error::io("read the ledger", path, e);
        let size = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((vec![make()], vec![]));
            }
            Err(e) => return Err(io(e)),
        };
        // Cut points: the byte after the first newline at or after each even share.
        let chunks = chunks.clamp(1, 16).min(1 + (size / (1 << 20)) as usize);
        let mut cuts = vec![0u64];
        let mut file = File::open(path).map_err(io)?;
        for i in 1..chunks {
            let mut at = size * i as u64 / chunks as u64;
            file.seek(SeekFrom::Start(at)).map_err(io)?;
            let mut reader = std::io::BufReader::new(&mut file);
            let mut skipped = Vec::new();
            at += reader.read_until(b'\n', &mut skipped).map_err(io)? as u64;
            if at > *cuts.last().unwrap_or(&0) && at < size {
                cuts.push(at);
            }
        }
        cuts.push(size);
        let parts: Vec<Result<(G, Vec<usize>, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = cuts
                .windows(2)
                .map(|w| {
                    let (start, end) = (w[0], w[1]);
                    let (make, visit) = (&make, &visit);
                    scope.spawn(move || -> Result<(G, Vec<usize>, usize)> {
                        let mut g = make();
                        let mut file = File::open(path).map_err(io)?;
                        file.seek(SeekFrom::Start(start)).map_err(io)?;
                        let (bad, number) =
                            visit_lines(path, file.take(end - start), &mut |r| visit(&mut g, r))?;
                        Ok((g, bad, number))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::invalid("ledger scan", "a reader thread panicked"))
                    })
                })
                .collect()
        });
        let (mut out, mut bad, mut lines_before) = (Vec::new(), Vec::new(), 0);
        for part in parts {
            let (g, part_bad, lines) = part?;
            bad.extend(part_bad.into_iter().map(|n| n + lines_before));
            lines_before += lines;
            out.push(g);
        }
        Ok((out, bad))
    }

    /// Every record, oldest first for the table; in append order for the file.
    pub fn read(&self) -> Result<ReadResult> {
        match self {
            Store::File(ledger) => ledger.read(),
            Store::Postgres {
                connection, table, ..
            } => Ok(ReadResult {
                records: PostgresLedger::open(connection, table)?.read()?,
                bad_lines: vec![],
            }),
        }
    }
}

/// Reads JSON lines, hands each readable record to `visit`; returns the 1-based numbers of
/// unreadable lines and the number of lines read.
fn visit_lines(
    path: &Path,
    input: impl Read,
    visit: &mut impl FnMut(&RecordView),
) -> Result<(Vec<usize>, usize)> {
    let mut reader = std::io::BufReader::with_capacity(1 << 20, input);
    let (mut line, mut bad, mut number) = (Vec::new(), Vec::new(), 0);
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io("read the ledger", path, e))?;
        if n == 0 {
            return Ok((bad, number));
        }
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<RecordView>(&line) {
            Ok(view) => visit(&view),
            Err(_) => bad.push(number),
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let (b'%', Some(byte)) = (bytes[i], hex) {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A fresh record id: time-ordered and unique across processes.
pub fn new_id() -> Result<String> {
    let nanos = jiff::Timestamp::now().as_nanosecond();
    Ok(format!("{nanos:x}-{}", crate::util::random_hex(4)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(task: &str) -> Record {
        Record {
            id: new_id().unwrap(),
            task: Task::parse(task).unwrap(),
            target: Target {
                instance: "pg1".into(),
                db: Some("app".into()),
            },
            started_at: "2026-11-24T10:00:00Z".into(),
            finished_at: "2026-11-24T10:00:01Z".into(),
            outcome: Outcome::Ok,
            changed: true,
            check_mode: false,
            details: serde_json::json!({"bytes": 1}),
            change_id: None,
        }
    }

    #[test]
    fn postgres_urls_are_parsed_and_passwords_refused() {
        let store = Store::postgres(
            "postgresql://ops%40x@db.example:6432/fleet%20ledger?sslmode=verify-full&sslrootcert=/ca.pem&table=runs",
            Some("s3cret".into()),
        )
        .unwrap();
        let Store::Postgres {
            connection, table, ..
        } = &store
        else {
            panic!("not postgres")
        };
        assert_eq!(connection.login_user.as_deref(), Some("ops@x"));
        assert_eq!(connection.login_host.as_deref(), Some("db.example"));
        assert_eq!(connection.login_port, Some(6432));
        assert_eq!(connection.login_db.as_deref(), Some("fleet ledger"));
        assert_eq!(connection.ssl_mode, SslMode::VerifyFull);
        assert_eq!(table, "runs");
        assert!(!store.describe().contains("s3cret"));
        for bad in [
            "postgresql://ops:pw@db/x",
            "postgresql://db/x?password=pw",
            "mysql://db/x",
            "postgresql://db:port/x",
            "postgresql://db/x?sslmode=sometimes",
        ] {
            assert!(Store::postgres(bad, None).is_err(), "{bad}");
        }
        // IPv6 hosts in brackets (the hand-written parser split them at the first ':').
        let Store::Postgres { connection, .. } =
            Store::postgres("postgresql://ops@[::1]:6432/ledger?connect_timeout=3", None).unwrap()
        else {
            panic!("not postgres")
        };
        assert_eq!(connection.login_host.as_deref(), Some("::1"));
        assert_eq!(connection.login_port, Some(6432));
        assert_eq!(connection.connect_timeout, 3);
    }

    #[test]
    fn feedback_kinds_have_one_string_form() {
        for kind in FeedbackKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(
                FeedbackKind::parse(&kind.as_str().replace('_', "-")),
                Some(kind)
            );
        }
        assert!(FeedbackKind::FalseNegative.is_error() && !FeedbackKind::TruePositive.is_error());
        assert_eq!(FeedbackKind::parse("maybe"), None);
    }

    #[test]
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path().join("sub/ledger.jsonl"));
        ledger.append(&record("backup")).unwrap();
        ledger.append(&record("verify")).unwrap();
        let read = ledger.read().unwrap();
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.records[1].task, Task::Verify);
        assert!(read.bad_lines.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_reported_and_does_not_eat_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let ledger = Ledger::new(&path);
        ledger.append(&record("backup")).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"id": "torn", "task": "back"#).unwrap();
        let read = ledger.read().unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.bad_lines, vec![2]);
        ledger.append(&record("verify")).unwrap();
        let read = ledger.read().unwrap();
        assert_eq!(
            read.records.len(),
            2,
            "the record after the torn line is intact"
        );
        assert_eq!(read.bad_lines, vec![2]);
    }

    #[test]
    fn a_chunked_scan_sees_every_record_once_and_numbers_bad_lines_file_wide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let line = serde_json::to_string(&record("backup")).unwrap();
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(if i == 15_000 { "{\"torn\n" } else { &line });
            if i != 15_000 {
                text.push('\n');
            }
        }
        std::fs::write(&path, text).unwrap();
        let store = Store::File(Ledger::new(&path));
        let (parts, bad) = store
            .scan_chunks(
                4,
                || 0usize,
                |n, r| *n += usize::from(r.task == Task::Backup),
            )
            .unwrap();
        assert!(parts.len() > 1, "the file is cut");
        assert_eq!(parts.iter().sum::<usize>(), 19_999);
        assert_eq!(bad, vec![15_001]);
    }

    #[test]
    fn concurrent_appends_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let ledger = Ledger::new(&path);
                    for _ in 0..25 {
                        ledger.append(&record("tune")).unwrap();
                    }
                });
            }
        });
        let read = Ledger::new(&path).read().unwrap();
        assert_eq!(read.records.len(), 200);
        assert!(read.bad_lines.is_empty());
    }
}
