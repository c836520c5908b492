//! The ledger: one record per module or CLI run, the only source of truth for "what ran".
//!
//! Default store: a JSON-lines file. Appends take an exclusive lock, start on a fresh line,
//! and are fsync'd before the run reports success. A crash can leave a torn last line; readers
//! skip it and report it, never fail on it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    Skipped,
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
    pub task: String,
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
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(io)?;
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

/// A fresh record id: time-ordered and unique across processes.
pub fn new_id() -> String {
    let nanos = jiff::Timestamp::now().as_nanosecond();
    format!("{nanos:x}-{}", crate::util::random_hex(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(task: &str) -> Record {
        Record {
            id: new_id(),
            task: task.into(),
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
    fn appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path().join("sub/ledger.jsonl"));
        ledger.append(&record("backup")).unwrap();
        ledger.append(&record("verify")).unwrap();
        let read = ledger.read().unwrap();
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.records[1].task, "verify");
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
