//! The ledger as a JSON-lines file: appends under an exclusive lock, fsync'd, on a fresh line
//! (a torn last line from a crash is skipped and reported, never fatal); reads whole or in
//! chunks cut at line boundaries.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::{Error, Result};

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

pub(super) fn ends_without_newline(file: &mut File) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// Reads JSON lines, hands each readable record to `visit`; returns the 1-based numbers of
/// unreadable lines and the number of lines read.
pub(super) fn visit_lines(
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
