//! db_patch on PostgreSQL: what the gates read (open transactions, replication lag) and the
//! steps after a minor upgrade: extensions brought to the version the new binaries ship, and
//! a smoke query.

use super::*;

impl PostgresEngine {
    /// The oldest open transaction of another session, and how far behind the replicas (on a
    /// primary) or this server (on a replica) are. A replica that has replayed all it received
    /// is not behind, however long ago the primary last committed (an idle primary would
    /// otherwise make its replicas look late); one behind that never replayed a commit counts
    /// from its own start.
    pub(super) fn read_patch_state(&mut self) -> Result<crate::patch::ServerState> {
        let row = self
            .client
            .query_one(
                "SELECT (SELECT extract(epoch FROM max(now() - xact_start))::float8 FROM pg_stat_activity \
                   WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'), \
                 CASE WHEN pg_is_in_recovery() THEN \
                   CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0::float8 \
                   ELSE extract(epoch FROM now() - coalesce(pg_last_xact_replay_timestamp(), pg_postmaster_start_time()))::float8 END \
                   ELSE (SELECT extract(epoch FROM max(replay_lag))::float8 FROM pg_stat_replication) END",
                &[],
            )
            .map_err(|e| self.query_err("read the sessions and replication", &e))?;
        Ok(crate::patch::ServerState {
            oldest_transaction_seconds: row.get(0),
            replication_lag_seconds: row.get(1),
        })
    }

    /// ALTER EXTENSION ... UPDATE for every extension, in every database that accepts
    /// connections, whose installed version is not the default the server's files offer.
    pub(super) fn update_outdated_extensions(&mut self) -> Result<Vec<String>> {
        let databases: Vec<String> = self
            .client
            .query(
                "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname",
                &[],
            )
            .map_err(|e| self.query_err("list the databases", &e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut updated = Vec::new();
        for db in databases {
            let mut other = self.connect_to(&db)?;
            let outdated = other
                .client
                .query(
                    "SELECT e.extname::text, e.extversion, a.default_version FROM pg_extension e \
                     JOIN pg_available_extensions a ON a.name = e.extname \
                     WHERE a.default_version IS DISTINCT FROM e.extversion ORDER BY 1",
                    &[],
                )
                .map_err(|e| other.query_err("list outdated extensions", &e))?;
            for row in outdated {
                let (name, from, to): (String, String, Option<String>) =
                    (row.get(0), row.get(1), row.get(2));
                other
                    .client
                    .batch_execute(&format!("ALTER EXTENSION {} UPDATE", quote_ident(&name)))
                    .map_err(|e| {
                        other.query_err(&format!("update extension {name} in {db}"), &e)
                    })?;
                updated.push(format!(
                    "{db}: {name} {from} -> {}",
                    to.unwrap_or_else(|| "default".into())
                ));
            }
        }
        Ok(updated)
    }

    /// A query that touches the catalog of `database`: the number of its own tables (not the
    /// system catalogs').
    pub(super) fn count_tables_in(&mut self, database: &str) -> Result<u64> {
        let mut other = self.connect_to(database)?;
        let row = other
            .client
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_tables \
                 WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
                &[],
            )
            .map_err(|e| other.query_err(&format!("run the smoke query in {database}"), &e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }
}
