//! Reading a mariadb-dump stream as it passes: rows per table (INSERT tuples, across lines)
//! and the binary log position of the dump's snapshot, without being fooled by the data.

use crate::engine::{StreamObserver, TableRows};

/// Counts rows per table in a mariadb-dump/mysqldump text stream: CREATE TABLE registers a
/// table, each top-level tuple of an INSERT ... VALUES statement is one row. A statement may
/// span lines (mariadb-dump 10.11 puts each tuple on its own line) and ends at a `;` outside
/// strings. Strings are skipped with their escapes, so parentheses, quotes and semicolons inside
/// data do not count; the dump escapes newlines in data, so no string spans lines.
#[derive(Default)]
pub struct DumpRowCounter {
    tables: Vec<TableRows>,
    binlog: Option<(String, u64)>,
    /// The table whose INSERT statement is still open.
    open_insert: Option<usize>,
}

/// The quoted name right after `prefix` (backticks doubled inside), and the rest of the line.
pub(super) fn quoted_name<'a>(line: &'a [u8], prefix: &[u8]) -> Option<(String, &'a [u8])> {
    let rest = line.strip_prefix(prefix)?;
    let mut name = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        if rest[i] == b'`' {
            if rest.get(i + 1) == Some(&b'`') {
                name.push(b'`');
                i += 2;
                continue;
            }
            return Some((String::from_utf8_lossy(&name).into_owned(), &rest[i + 1..]));
        }
        name.push(rest[i]);
        i += 1;
    }
    None
}

/// Top-level tuples in (part of) the VALUES of an extended INSERT, and whether the statement
/// ends in this piece.
pub fn count_tuples(values: &[u8]) -> (u64, bool) {
    let (mut depth, mut rows, mut in_string, mut i) = (0u32, 0u64, false, 0);
    while i < values.len() {
        let b = values[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'\'' if values.get(i + 1) == Some(&b'\'') => i += 1,
                b'\'' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'\'' => in_string = true,
                b'(' => {
                    if depth == 0 {
                        rows += 1;
                    }
                    depth += 1;
                }
                b')' => depth = depth.saturating_sub(1),
                b';' if depth == 0 => return (rows, true),
                _ => {}
            }
        }
        i += 1;
    }
    (rows, false)
}

impl DumpRowCounter {
    pub(super) fn table(&mut self, name: &str) -> usize {
        if let Some(index) = self.tables.iter().position(|t| t.name == name) {
            return index;
        }
        self.tables.push(TableRows {
            database: None,
            schema: None,
            name: name.to_string(),
            rows: 0,
        });
        self.tables.len() - 1
    }

    pub(super) fn values(&mut self, index: usize, piece: &[u8]) {
        let (rows, ended) = count_tuples(piece);
        self.tables[index].rows += rows;
        self.open_insert = if ended { None } else { Some(index) };
    }
}

impl StreamObserver for DumpRowCounter {
    fn line(&mut self, line: &[u8]) {
        if let Some(index) = self.open_insert {
            self.values(index, line);
        } else if let Some((name, rest)) = quoted_name(line, b"INSERT INTO `") {
            let index = self.table(&name);
            let values = rest.strip_prefix(b" VALUES").unwrap_or(rest);
            self.values(index, values);
        } else if let Some((name, _)) = quoted_name(line, b"CREATE TABLE `") {
            self.table(&name);
        } else if line.starts_with(b"-- CHANGE MASTER TO MASTER_LOG_FILE='") {
            let text = String::from_utf8_lossy(line);
            let file = text.split('\'').nth(1).unwrap_or_default().to_string();
            let pos = text
                .split("MASTER_LOG_POS=")
                .nth(1)
                .and_then(|p| p.trim_end_matches([';', '\n', '\r']).parse().ok());
            if let Some(pos) = pos {
                self.binlog = Some((file, pos));
            }
        }
    }

    fn finish(self: Box<Self>) -> (Vec<TableRows>, serde_json::Value) {
        let snapshot = match &self.binlog {
            Some((file, pos)) => serde_json::json!({"binlog_file": file, "binlog_position": pos}),
            None => {
                serde_json::json!({"binlog_file": null, "note": "binary log off: no position recorded"})
            }
        };
        (self.tables, snapshot)
    }
}
