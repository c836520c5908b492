//! db_patch on MariaDB/MySQL: what the gates read (open InnoDB transactions, replica lag) and
//! the steps after a minor upgrade: mariadb-upgrade (which checks and updates the system
//! tables, and knows when it has nothing to do) and a smoke query.

use super::*;

impl MysqlEngine {
    /// The oldest open InnoDB transaction, and this server's lag behind its source.
    pub(super) fn read_patch_state(&mut self) -> Result<crate::patch::ServerState> {
        let oldest = self
            .query_rows(
                "read the open transactions",
                "SELECT CAST(MAX(TIMESTAMPDIFF(SECOND, trx_started, NOW())) AS CHAR) FROM information_schema.INNODB_TRX \
                 WHERE trx_mysql_thread_id <> CONNECTION_ID()",
            )?
            .first()
            .and_then(|r| number(r, 0));
        let conn = self.conn.as_mut().expect("connection is open until drop");
        let rows: Vec<mysql_async::Row> = self
            .runtime
            .block_on(mysql_async::prelude::Queryable::query(
                conn,
                "SHOW ALL SLAVES STATUS",
            ))
            .unwrap_or_default();
        let lag = rows
            .iter()
            .filter_map(|r| {
                let i = r
                    .columns_ref()
                    .iter()
                    .position(|c| c.name_str() == "Seconds_Behind_Master")?;
                number(r, i)
            })
            .reduce(f64::max);
        Ok(crate::patch::ServerState {
            oldest_transaction_seconds: oldest,
            replication_lag_seconds: lag,
        })
    }

    /// Runs mariadb-upgrade (mysql_upgrade on MySQL) with the login from a private option
    /// file; returns the tool's last line ("already upgraded", or what it did).
    pub(super) fn run_upgrade_tool(&mut self) -> Result<Vec<String>> {
        let program = crate::util::find_program("mariadb-upgrade")
            .or_else(|_| crate::util::find_program("mysql_upgrade"))?;
        let has_tls = self.server_has_tls()?;
        let (_secrets, option_file) = self.option_file(has_tls)?;
        let output = crate::process::Tool::new(&program)
            .package("mariadb-client")
            .arg(format!("--defaults-file={}", option_file.display()))
            .read()?;
        Ok(output
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| vec![format!("mariadb-upgrade: {}", l.trim())])
            .unwrap_or_default())
    }

    /// A query that touches the catalog of `database`: the number of its tables.
    pub(super) fn count_tables_in(&mut self, database: &str) -> Result<u64> {
        let rows = self.exec_rows(
            "run the smoke query",
            "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
            vec![database.to_string()],
        )?;
        rows.first()
            .and_then(|r| number(r, 0))
            .map(|n| n as u64)
            .ok_or_else(|| Error::Query {
                what: format!("run the smoke query in {database}"),
                target: self.target.clone(),
                cause: "no row came back".into(),
            })
    }
}
