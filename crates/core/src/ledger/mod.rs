//! The ledger: one record per module or CLI run, the only source of truth for "what ran".
//!
//! Default store: a JSON-lines file. Appends take an exclusive lock, start on a fresh line,
//! and are fsync'd before the run reports success. A crash can leave a torn last line; readers
//! skip it and report it, never fail on it.
//!
//! Shared store: a PostgreSQL table (`ledger_url: postgresql://user@host:port/db?table=...`),
//! created on first use, holding the same records. [`Store`] is either; everything that reads
//! or writes the ledger goes through it.
//!
//! - `file`: the JSON-lines file (append, read, chunked scan).
//! - `store`: the file or the PostgreSQL table, and the URL.

mod file;
mod store;

pub use file::{Ledger, ReadResult};
pub use store::{DEFAULT_TABLE, Store};

use file::visit_lines;

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::Result;
use crate::task::Task;

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

impl Target {
    /// The target of a run on a server: the instance id given, else one derived from the
    /// connection (engine, host and port, as the backups' layout names it); and a database.
    pub fn of(
        instance_id: Option<&String>,
        connection: &crate::connection::ConnectionArgs,
        db: Option<&str>,
    ) -> Target {
        Target {
            instance: instance_id
                .cloned()
                .unwrap_or_else(|| crate::backup::default_instance_id(connection)),
            db: db.map(str::to_string),
        }
    }
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

/// A fresh record id: time-ordered and unique across processes.
pub fn new_id() -> Result<String> {
    let nanos = jiff::Timestamp::now().as_nanosecond();
    Ok(format!("{nanos:x}-{}", crate::util::random_hex(4)?))
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;
    use crate::connection::SslMode;

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
