//! The ledger's shared store: a PostgreSQL table, for teams and AWX where runs happen on many
//! machines. Created on first use; one row per record, the same fields as the JSON-lines file.

use crate::connection::ConnectionArgs;
use crate::engine::postgres::{PostgresEngine, quote_ident};
use crate::ledger::{Outcome, Record, Target};
use crate::task::Task;
use crate::{Error, Result};

/// A connection to the ledger table.
pub struct PostgresLedger {
    engine: PostgresEngine,
    table: String,
}

impl PostgresLedger {
    /// Connects and creates the table (and its index) when missing.
    pub fn open(args: &ConnectionArgs, table: &str) -> Result<Self> {
        let mut ledger = PostgresLedger {
            engine: PostgresEngine::connect(args)?,
            table: quote_ident(table),
        };
        let t = &ledger.table;
        let index = quote_ident(&format!("{table}_finished_at"));
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                id text PRIMARY KEY,
                task text NOT NULL,
                instance text NOT NULL,
                db text,
                started_at timestamptz NOT NULL,
                finished_at timestamptz NOT NULL,
                outcome text NOT NULL CHECK (outcome IN ('ok', 'failed', 'skipped')),
                changed boolean NOT NULL,
                check_mode boolean NOT NULL,
                details jsonb NOT NULL DEFAULT '{{}}',
                change_id text);
             CREATE INDEX IF NOT EXISTS {index} ON {t} (finished_at);"
        );
        // Two first runs at once may both try to create the table; the loser's error is
        // harmless once the table exists.
        if let Err(e) = ledger.engine.client.batch_execute(&ddl) {
            let exists = ledger
                .engine
                .client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .map(|row| row.get::<_, bool>(0))
                .unwrap_or(false);
            if !exists {
                return Err(ledger.engine.query_err("create the ledger table", &e));
            }
        }
        Ok(ledger)
    }

    /// Inserts one record (idempotent on the id: an import run twice adds nothing).
    pub fn append(&mut self, record: &Record) -> Result<bool> {
        let sql = format!(
            "INSERT INTO {} (id, task, instance, db, started_at, finished_at, outcome, changed, check_mode, details, change_id)
             VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6::text::timestamptz, $7, $8, $9, $10::text::jsonb, $11)
             ON CONFLICT (id) DO NOTHING",
            self.table
        );
        let details = record.details.to_string();
        let outcome = outcome_text(record.outcome);
        let inserted = self
            .engine
            .client
            .execute(
                sql.as_str(),
                &[
                    &record.id,
                    &record.task.as_str(),
                    &record.target.instance,
                    &record.target.db,
                    &record.started_at,
                    &record.finished_at,
                    &outcome,
                    &record.changed,
                    &record.check_mode,
                    &details,
                    &record.change_id,
                ],
            )
            .map_err(|e| self.engine.query_err("append to the ledger table", &e))?;
        Ok(inserted == 1)
    }

    /// Every record, oldest first (timestamps come back in RFC 3339, UTC).
    pub fn read(&mut self) -> Result<Vec<Record>> {
        let sql = format!(
            "SELECT id, task, instance, db,
                    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                    outcome, changed, check_mode, details::text, change_id
             FROM {} ORDER BY finished_at, id",
            self.table
        );
        let rows = self
            .engine
            .client
            .query(sql.as_str(), &[])
            .map_err(|e| self.engine.query_err("read the ledger table", &e))?;
        rows.iter()
            .map(|row| {
                let outcome: String = row.get(6);
                let task: String = row.get(1);
                let details: String = row.get(9);
                Ok(Record {
                    id: row.get(0),
                    task: Task::parse(&task).ok_or_else(|| {
                        Error::invalid("ledger table", format!("unknown task '{task}'"))
                    })?,
                    target: Target {
                        instance: row.get(2),
                        db: row.get(3),
                    },
                    started_at: row.get(4),
                    finished_at: row.get(5),
                    outcome: match outcome.as_str() {
                        "ok" => Outcome::Ok,
                        "failed" => Outcome::Failed,
                        _ => Outcome::Skipped,
                    },
                    changed: row.get(7),
                    check_mode: row.get(8),
                    details: serde_json::from_str(&details).map_err(|e| {
                        Error::invalid("ledger row", format!("details are not JSON: {e}"))
                    })?,
                    change_id: row.get(10),
                })
            })
            .collect()
    }
}

fn outcome_text(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Failed => "failed",
        Outcome::Skipped => "skipped",
    }
}
