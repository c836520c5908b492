//! MariaDB/MySQL's logs (db_logs): the error, slow and general logs (files the server reopens
//! on FLUSH ... LOGS), the binary logs (purged with PURGE BINARY LOGS TO), and, on a replica,
//! the source's binary log it has executed up to.

use std::path::{Path, PathBuf};

use super::*;
use crate::logs::model::{BinaryLog, ServerLogs, TextLog, TextLogKind};

impl MysqlEngine {
    pub(super) fn read_server_logs(&mut self) -> Result<ServerLogs> {
        let mut logs = ServerLogs::default();
        let rows = self.query_rows(
            "read the log settings",
            "SELECT @@log_error, @@datadir, CAST(@@slow_query_log AS CHAR), @@slow_query_log_file, \
             CAST(@@general_log AS CHAR), @@general_log_file, @@log_output, CAST(@@log_bin AS CHAR), \
             @@log_bin_basename",
        )?;
        let row = rows.first().ok_or_else(|| Error::Query {
            what: "read the log settings".into(),
            target: self.target.clone(),
            cause: "no row".into(),
        })?;
        let data = text(row, 1).unwrap_or_default();
        let file = |i: usize| -> Option<PathBuf> {
            let name = text(row, i).filter(|n| !n.is_empty() && n != "stderr")?;
            let path = PathBuf::from(&name);
            Some(if path.is_absolute() {
                path
            } else {
                Path::new(&data).join(path)
            })
        };
        let to_files = text(row, 6)
            .unwrap_or_default()
            .to_ascii_uppercase()
            .contains("FILE");
        // Booleans arrive as 1/0 or ON/OFF depending on the variable.
        let on = |i: usize| matches!(text(row, i).as_deref(), Some("1" | "ON"));
        let mut add = |kind: TextLogKind, path: Option<PathBuf>| {
            if let Some(path) = path {
                logs.text.push(TextLog {
                    kind,
                    dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                    stem: path.file_name().map(|n| n.to_string_lossy().into_owned()),
                    current: Some(path),
                });
            }
        };
        add(TextLogKind::Error, file(0));
        add(
            TextLogKind::Slow,
            (on(2) && to_files).then(|| file(3)).flatten(),
        );
        add(
            TextLogKind::General,
            (on(4) && to_files).then(|| file(5)).flatten(),
        );
        if file(0).is_none() {
            logs.limits.push("the error log goes to stderr (log_error unset): it is the service manager's to rotate".into());
        }
        if on(7) {
            let binary = self
                .query_rows("list the binary logs", "SHOW BINARY LOGS")?
                .iter()
                .filter_map(|r| {
                    Some(BinaryLog {
                        name: text(r, 0)?,
                        bytes: number(r, 1).unwrap_or(0.0) as u64,
                    })
                })
                .collect();
            logs.binary = Some(binary);
            logs.binary_dir = file(8).and_then(|p| p.parent().map(Path::to_path_buf));
        }
        Ok(logs)
    }

    pub(super) fn purge_binlogs_to(&mut self, name: &str) -> Result<()> {
        self.run(
            &format!("purge the binary logs before {name}"),
            &format!("PURGE BINARY LOGS TO {}", quote_literal(name)),
        )
    }

    pub(super) fn reopen_text_log(&mut self, kind: TextLogKind) -> Result<()> {
        let sql = match kind {
            TextLogKind::Error | TextLogKind::Server => "FLUSH ERROR LOGS",
            TextLogKind::Slow => "FLUSH SLOW LOGS",
            TextLogKind::General => "FLUSH GENERAL LOGS",
        };
        self.run("reopen the log", sql)
    }

    /// Relay_Master_Log_File of every replication source (the smallest: the oldest still
    /// needed).
    pub(super) fn executed_source_file(&mut self) -> Result<Option<String>> {
        let conn = self.conn.as_mut().expect("connection is open until drop");
        let rows: Vec<mysql_async::Row> = self
            .runtime
            .block_on(mysql_async::prelude::Queryable::query(
                conn,
                "SHOW ALL SLAVES STATUS",
            ))
            .map_err(|e| Error::Query {
                what: "read the replication status".into(),
                target: self.target.clone(),
                cause: e.to_string(),
            })?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let index = r
                    .columns_ref()
                    .iter()
                    .position(|c| c.name_str() == "Relay_Master_Log_File")?;
                text(r, index).filter(|f| !f.is_empty())
            })
            .min_by(|a, b| crate::logs::binlog_order(a, b)))
    }
}
