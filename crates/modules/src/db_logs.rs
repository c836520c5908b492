//! db_logs: log retention that keeps point-in-time recovery possible.

use dbcadence_core::logs::{self, LogsReport, LogsRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support};

/// The `db_logs` module.
pub struct DbLogs;

impl Module for DbLogs {
    type Args = LogsRequest;
    type Output = LogsReport;
    type Error = dbcadence_core::Error;

    fn doc() -> ModuleDoc {
        ModuleDoc {
            name: "db_logs",
            short_description: "Log retention for a PostgreSQL or MySQL/MariaDB server that keeps point-in-time recovery possible",
            description: &[
                "Text logs: PostgreSQL's log directory (logging_collector, or log_dir), MariaDB's error, slow and general logs. The file being written is never touched. MariaDB's logs are rotated above rotate_bytes (renamed, then reopened by the server with FLUSH ... LOGS). Older files are compressed with zstd after compress_after_days, removed after keep_days, and the oldest removed while the logs take more than max_total_bytes.",
                "Binary logs (MariaDB/MySQL): purged with PURGE BINARY LOGS TO, never past the position recorded by the newest verified backup of any database of the server (found under backup_dir: point-in-time recovery from it needs every later binary log), nor past what a replica listed in replicas has not executed yet (Relay_Master_Log_File), nor past binlog_keep_days. Without backup_dir, or with a replica unreachable, nothing is purged; the server itself also never purges a binary log a connected replica is reading.",
                "PostgreSQL's WAL is never removed by hand: the result reports archive_mode, archiving failures, pg_wal's size and the replication slots with the WAL each holds; a failing archive_command and inactive slots are warnings.",
            ],
            examples: r#"- name: Keep 30 days of logs, 2 GB at most, and the binary logs recovery needs
  dbcadence.maintenance.db_logs:
    engine: mysql
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: dbcadence
    login_password: "{{ vault_my1_password }}"
    instance_id: my1
    keep_days: 30
    max_total_bytes: 2147483648
    backup_dir: /srv/backups
    binlog_keep_days: 7

- name: What would go, and the bytes it frees
  dbcadence.maintenance.db_logs:
    engine: postgresql
    login_unix_socket: /var/run/postgresql
    instance_id: pg1
  check_mode: true
  diff: true
"#,
            notes: &[
                "Run it on the database server (the inventory script's servers hosts): the text logs are files there.",
                "binlog_keep_days reads the binary logs' ages from their files (@@log_bin_basename): the module must be able to read that directory, or it keeps every binary log and says why.",
            ],
            check_mode: Support::Full,
            diff_mode: Support::Partial(
                "The log files and binary logs before and after (names only).",
            ),
            requirements: &[
                "Write access to the log directories (the module runs as the server's user or root).",
                "MySQL/MariaDB: BINLOG ADMIN (or SUPER) for PURGE BINARY LOGS, RELOAD for FLUSH LOGS.",
            ],
            fragments: &[crate::CONNECTION, crate::LEDGER],
        }
    }

    fn run(args: LogsRequest, ctx: &Context) -> Result<Report<LogsReport>, Self::Error> {
        Ok(crate::report(logs::run(&args, ctx.check_mode)?))
    }
}
