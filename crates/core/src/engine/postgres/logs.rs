//! PostgreSQL's logs (db_logs): the log directory and the file being written (with
//! logging_collector), and the WAL, which is never removed by hand: archiving failures,
//! pg_wal's size and the replication slots holding WAL back.

use super::*;
use crate::logs::model::{ServerLogs, Slot, TextLog, TextLogKind, WalStatus};

impl PostgresEngine {
    pub(super) fn read_server_logs(&mut self) -> Result<ServerLogs> {
        let mut logs = ServerLogs::default();
        let row = self
            .client
            .query_one(
                "SELECT current_setting('logging_collector'), current_setting('log_directory'), \
                 current_setting('data_directory'), pg_current_logfile(), current_setting('archive_mode')",
                &[],
            )
            .map_err(|e| self.query_err("read the log settings", &e))?;
        let (collector, directory, data, current, archive_mode): (
            String,
            String,
            String,
            Option<String>,
            String,
        ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let under_data = |p: &str| {
            let path = PathBuf::from(p);
            if path.is_absolute() {
                path
            } else {
                Path::new(&data).join(path)
            }
        };
        if collector == "on" {
            logs.text.push(TextLog {
                kind: TextLogKind::Server,
                dir: under_data(&directory),
                current: current.as_deref().map(under_data),
                stem: None,
            });
        } else {
            logs.limits.push("logging_collector is off: the server log goes to its stderr (give log_dir if it lands in files there)".into());
        }
        let mut wal = WalStatus {
            archive_mode,
            ..WalStatus::default()
        };
        if let Ok(r) = self.client.query_one(
            "SELECT failed_count, last_failed_wal, last_failed_time::text, last_archived_time::text FROM pg_stat_archiver",
            &[],
        ) {
            wal.failed_count = r.get(0);
            wal.last_failed_wal = r.get(1);
            wal.last_failed_time = r.get(2);
            wal.last_archived_time = r.get(3);
        }
        wal.wal_bytes = self
            .client
            .query_one("SELECT sum(size)::int8 FROM pg_ls_waldir()", &[])
            .ok()
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(|b| b.max(0) as u64);
        if wal.wal_bytes.is_none() {
            logs.limits
                .push("pg_wal's size is not readable (pg_ls_waldir needs pg_monitor)".into());
        }
        wal.slots = self
            .client
            .query(
                "SELECT slot_name::text, active, CASE WHEN pg_is_in_recovery() THEN NULL \
                 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 END FROM pg_replication_slots ORDER BY 1",
                &[],
            )
            .map_err(|e| self.query_err("read the replication slots", &e))?
            .iter()
            .map(|r| Slot {
                name: r.get(0),
                active: r.get(1),
                retained_bytes: r.get::<_, Option<i64>>(2).map(|b| b.max(0) as u64),
            })
            .collect();
        logs.wal = Some(wal);
        Ok(logs)
    }

    pub(super) fn purge_binlogs_to(&mut self, _name: &str) -> Result<()> {
        Err(Error::invalid(
            "binary logs",
            "PostgreSQL has no binary logs; its WAL is never removed by hand",
        ))
    }

    /// PostgreSQL rotates its own files (log_rotation_age/size); asking it to start a new
    /// one is pg_rotate_logfile().
    pub(super) fn reopen_text_log(&mut self, _kind: crate::logs::model::TextLogKind) -> Result<()> {
        self.client
            .batch_execute("SELECT pg_rotate_logfile()")
            .map_err(|e| self.query_err("rotate the log file", &e))
    }

    pub(super) fn executed_source_file(&mut self) -> Result<Option<String>> {
        Ok(None)
    }
}
