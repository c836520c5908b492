//! Tuning a PostgreSQL database (db_tune): findings from the statistics views and the catalog,
//! and fixes run under lock_timeout and statement_timeout so that they never stall writers for
//! long. Missing indexes, from the plans of the heaviest statements, are in plans.rs.

use serde_json::json;

use super::*;
use crate::engine::{TuneLimits, TuneScope};
use crate::tune::advice::{self, Ddl, IndexInfo};
use crate::tune::model::{Finding, FindingKind, Fix, FixKind, Severity, StatementStat};

/// PostgreSQL's DDL for the shared index advice.
struct PgDdl;

impl Ddl for PgDdl {
    fn create_index(
        &self,
        schema: Option<&str>,
        table: &str,
        name: &str,
        columns: &[String],
    ) -> Fix {
        let index = qualified(schema, name);
        Fix {
            kind: FixKind::CreateIndex,
            sql: format!(
                "CREATE INDEX CONCURRENTLY {} ON {} ({})",
                quote_ident(name),
                qualified(schema, table),
                columns
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            // A failed concurrent build leaves an invalid index behind.
            cleanup: Some(format!("DROP INDEX CONCURRENTLY IF EXISTS {index}")),
            outside_transaction: true,
        }
    }

    fn drop_index(&self, index: &IndexInfo, kind: FixKind) -> Fix {
        Fix {
            kind,
            sql: format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}",
                qualified(index.schema.as_deref(), &index.name)
            ),
            cleanup: None,
            outside_transaction: true,
        }
    }
}

fn qualified(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(name)),
        None => quote_ident(name),
    }
}

/// One user table as pg_stat_user_tables and pg_class see it.
pub(super) struct TableStats {
    pub(super) schema: String,
    pub(super) name: String,
    pub(super) reltuples: f64,
    pub(super) live: i64,
    pub(super) dead: i64,
    pub(super) modified_since_analyze: i64,
    pub(super) seq_scans: i64,
    pub(super) seq_rows_read: i64,
    pub(super) index_scans: i64,
    pub(super) last_analyzed: Option<String>,
    pub(super) xid_age: i64,
    pub(super) size_bytes: i64,
    /// Bytes the live rows need (average row width from pg_stats); None without statistics.
    pub(super) expected_bytes: Option<f64>,
}

impl TableStats {
    pub(super) fn label(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub(super) fn qualified(&self) -> String {
        qualified(Some(&self.schema), &self.name)
    }
}

impl PostgresEngine {
    pub(super) fn find_tuning(&mut self, scope: &TuneScope) -> Result<(Vec<Finding>, Vec<String>)> {
        let mut limits = Vec::new();
        let tables = self.table_stats()?;
        let mut findings = table_findings(&tables, scope.min_table_rows, self.freeze_max_age()?);
        let indexes = self.indexes()?;
        findings.extend(self.invalid_and_bloated_indexes()?);
        let stats_since = self
            .client
            .query_one(
                "SELECT coalesce(stats_reset::text, '') FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .ok()
            .map(|r| r.get::<_, String>(0))
            .filter(|s| !s.is_empty());
        findings.extend(advice::index_findings(
            &indexes,
            &PgDdl,
            scope.min_table_rows,
            stats_since.as_deref(),
        ));
        findings.extend(self.unindexed_foreign_keys(&indexes)?);
        let candidates = self.index_candidates(scope, &tables, &mut limits)?;
        findings.extend(advice::missing_index_findings(candidates, &indexes, &PgDdl));
        Ok((findings, limits))
    }

    fn table_stats(&mut self) -> Result<Vec<TableStats>> {
        let rows = self
            .client
            .query(
                "SELECT s.schemaname::text, s.relname::text, c.reltuples::float8, s.n_live_tup, s.n_dead_tup, \
                 s.n_mod_since_analyze, coalesce(s.seq_scan, 0), coalesce(s.seq_tup_read, 0), coalesce(s.idx_scan, 0), \
                 greatest(s.last_analyze, s.last_autoanalyze)::text, age(c.relfrozenxid)::int8, pg_table_size(c.oid), \
                 (SELECT sum(st.avg_width)::float8 FROM pg_stats st WHERE st.schemaname = s.schemaname AND st.tablename = s.relname) \
                 FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid ORDER BY 1, 2",
                &[],
            )
            .map_err(|e| self.query_err("read the table statistics", &e))?;
        Ok(rows
            .iter()
            .map(|r| {
                let live: i64 = r.get(3);
                let width: Option<f64> = r.get(12);
                TableStats {
                    schema: r.get(0),
                    name: r.get(1),
                    reltuples: r.get(2),
                    live,
                    dead: r.get(4),
                    modified_since_analyze: r.get(5),
                    seq_scans: r.get(6),
                    seq_rows_read: r.get(7),
                    index_scans: r.get(8),
                    last_analyzed: r.get(9),
                    xid_age: r.get(10),
                    size_bytes: r.get(11),
                    // 24 bytes of tuple header and 4 of line pointer per row, pages 90% full.
                    expected_bytes: width.map(|w| live as f64 * (w + 28.0) / 0.9),
                }
            })
            .collect())
    }

    fn freeze_max_age(&mut self) -> Result<i64> {
        let row = self
            .client
            .query_one(
                "SELECT current_setting('autovacuum_freeze_max_age')::int8",
                &[],
            )
            .map_err(|e| self.query_err("read autovacuum_freeze_max_age", &e))?;
        Ok(row.get(0))
    }

    fn indexes(&mut self) -> Result<Vec<IndexInfo>> {
        let rows = self
            .client
            .query(
                "SELECT n.nspname::text, ct.relname::text, ci.relname::text, \
                 CASE WHEN i.indexprs IS NULL THEN ARRAY(SELECT a.attname::text FROM unnest(string_to_array(i.indkey::text, ' ')::int2[]) WITH ORDINALITY k(num, pos) \
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.pos) ELSE ARRAY[]::text[] END, \
                 i.indisunique OR i.indisprimary, EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = ci.oid), \
                 i.indpred IS NOT NULL OR i.indexprs IS NOT NULL OR NOT i.indisvalid, am.amname::text, st.idx_scan, \
                 pg_relation_size(ci.oid), greatest(ct.reltuples, coalesce(tst.n_live_tup, 0))::float8 \
                 FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_class ct ON ct.oid = i.indrelid \
                 JOIN pg_namespace n ON n.oid = ct.relnamespace JOIN pg_am am ON am.oid = ci.relam \
                 LEFT JOIN pg_stat_user_indexes st ON st.indexrelid = ci.oid \
                 LEFT JOIN pg_stat_user_tables tst ON tst.relid = ct.oid \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
                 ORDER BY 1, 2, 3",
                &[],
            )
            .map_err(|e| self.query_err("list the indexes", &e))?;
        Ok(rows
            .iter()
            .map(|r| IndexInfo {
                schema: Some(r.get(0)),
                table: r.get(1),
                name: r.get(2),
                columns: r.get(3),
                unique: r.get(4),
                backs_constraint: r.get(5),
                special: r.get(6),
                method: r.get(7),
                scans: r.get::<_, Option<i64>>(8).map(|n| n.max(0) as u64),
                size_bytes: Some(r.get::<_, i64>(9).max(0) as u64),
                table_rows: r.get(10),
            })
            .collect())
    }

    /// Invalid indexes (a failed concurrent build) and B-tree indexes much larger than their
    /// entries need.
    fn invalid_and_bloated_indexes(&mut self) -> Result<Vec<Finding>> {
        let rows = self
            .client
            .query(
                "SELECT n.nspname::text, ci.relname::text, i.indisvalid, am.amname::text, pg_relation_size(ci.oid), ci.reltuples::float8, \
                 (SELECT sum(st.avg_width)::float8 FROM pg_attribute a JOIN pg_stats st ON st.schemaname = n.nspname \
                   AND st.tablename = ct.relname AND st.attname = a.attname WHERE a.attrelid = ct.oid AND a.attnum = ANY(i.indkey)) \
                 FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_class ct ON ct.oid = i.indrelid \
                 JOIN pg_namespace n ON n.oid = ct.relnamespace JOIN pg_am am ON am.oid = ci.relam \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
                 ORDER BY 1, 2",
                &[],
            )
            .map_err(|e| self.query_err("check the indexes", &e))?;
        let mut findings = Vec::new();
        for r in &rows {
            let (schema, name): (String, String) = (r.get(0), r.get(1));
            let object = format!("{schema}.{name}");
            let reindex = Fix {
                kind: FixKind::Reindex,
                sql: format!(
                    "REINDEX INDEX CONCURRENTLY {}",
                    qualified(Some(&schema), &name)
                ),
                cleanup: None,
                outside_transaction: true,
            };
            let valid: bool = r.get(2);
            if !valid {
                findings.push(Finding {
                    id: format!("{}:{object}", FindingKind::InvalidIndex.as_str()),
                    kind: FindingKind::InvalidIndex,
                    severity: Severity::Critical,
                    object,
                    reason: "the index is invalid (a concurrent build failed): queries cannot use it, yet every write maintains it".into(),
                    evidence: json!({"indisvalid": false}),
                    fix: Some(reindex),
                });
                continue;
            }
            let (method, size, entries, width): (String, i64, f64, Option<f64>) =
                (r.get(3), r.get(4), r.get(5), r.get(6));
            // Index tuple header 8 bytes, line pointer 4, leaf pages 90% full.
            let expected = width.map(|w| entries.max(0.0) * (w + 12.0) / 0.9 + 8192.0);
            if let Some(expected) = expected.filter(|e| {
                method == "btree" && size as f64 > 2.0 * e && size as f64 - e > 8.0 * 1048576.0
            }) {
                findings.push(Finding {
                    id: format!("{}:{object}", FindingKind::IndexBloat.as_str()),
                    kind: FindingKind::IndexBloat,
                    severity: Severity::Warning,
                    object,
                    reason: format!(
                        "the index takes {} where its entries need about {}",
                        advice::human_bytes(size as u64),
                        advice::human_bytes(expected as u64)
                    ),
                    evidence: json!({"size_bytes": size, "estimated_bytes": expected.round(), "entries": entries}),
                    fix: Some(reindex),
                });
            }
        }
        Ok(findings)
    }

    /// Foreign keys whose referencing columns no valid index starts with: every delete or
    /// key update on the referenced table scans the referencing one.
    fn unindexed_foreign_keys(&mut self, indexes: &[IndexInfo]) -> Result<Vec<Finding>> {
        let rows = self
            .client
            .query(
                "SELECT n.nspname::text, c.relname::text, k.conname::text, \
                 ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(num, pos) \
                   JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.num ORDER BY u.pos), \
                 greatest(c.reltuples, coalesce((SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = c.oid), 0))::float8, k.confrelid::regclass::text \
                 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE k.contype = 'f' ORDER BY 1, 2, 3",
                &[],
            )
            .map_err(|e| self.query_err("list the foreign keys", &e))?;
        let mut findings = Vec::new();
        for r in &rows {
            let (schema, table, constraint, columns, rows, referenced): (
                String,
                String,
                String,
                Vec<String>,
                f64,
                String,
            ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
            let covered = indexes.iter().any(|i| {
                i.schema.as_deref() == Some(schema.as_str())
                    && i.table == table
                    && !i.special
                    && i.columns.len() >= columns.len()
                    && columns
                        .iter()
                        .all(|c| i.columns[..columns.len()].contains(c))
            });
            if covered {
                continue;
            }
            let object = format!("{schema}.{table}({})", columns.join(", "));
            findings.push(Finding {
                id: format!("{}:{object}", FindingKind::UnindexedForeignKey.as_str()),
                kind: FindingKind::UnindexedForeignKey,
                severity: Severity::Warning,
                object,
                reason: format!(
                    "foreign key {constraint} to {referenced} has no index on ({}): joins on it and every delete from {referenced} scan {schema}.{table} ({rows:.0} rows)",
                    columns.join(", ")
                ),
                evidence: json!({"constraint": constraint, "columns": columns, "references": referenced, "table_rows": rows}),
                fix: Some(PgDdl.create_index(
                    Some(&schema),
                    &table,
                    &advice::index_name(&table, &columns),
                    &columns,
                )),
            });
        }
        Ok(findings)
    }

    pub(super) fn run_tuning_fix(&mut self, fix: &Fix, limits: &TuneLimits) -> Result<()> {
        self.client
            .batch_execute(&format!(
                "SET lock_timeout = '{}s'; SET statement_timeout = '{}s'",
                limits.lock_timeout.as_secs(),
                limits.statement_timeout.as_secs()
            ))
            .map_err(|e| self.query_err("set the timeouts", &e))?;
        let result = self
            .client
            .batch_execute(&fix.sql)
            .map_err(|e| self.query_err(&format!("run '{}'", fix.sql), &e));
        let Err(error) = result else {
            return Ok(());
        };
        let Some(cleanup) = &fix.cleanup else {
            return Err(error);
        };
        // DROP INDEX CONCURRENTLY blocks no writer while it waits for the transactions that
        // made the build fail: it may take the whole statement_timeout to wait.
        let cleaned = self
            .client
            .batch_execute(&format!(
                "SET lock_timeout = '{}s'",
                limits.statement_timeout.as_secs()
            ))
            .and_then(|_| self.client.batch_execute(cleanup));
        match cleaned {
            Ok(()) => Err(Error::Query {
                what: format!("run '{}'", fix.sql),
                target: self.target.clone(),
                cause: format!("{error}; nothing was left behind ({cleanup})"),
            }),
            Err(e) => Err(Error::Query {
                what: format!("run '{}'", fix.sql),
                target: self.target.clone(),
                cause: format!(
                    "{error}; the cleanup '{cleanup}' failed too ({}): the next db_tune run reports the invalid index and rebuilds it",
                    super::conn::chain(&e)
                ),
            }),
        }
    }

    pub(super) fn read_statement_stats(
        &mut self,
        limit: u32,
    ) -> Result<Option<Vec<StatementStat>>> {
        let installed = self
            .client
            .query_opt(
                "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'",
                &[],
            )
            .map_err(|e| self.query_err("look up pg_stat_statements", &e))?
            .is_some();
        if !installed {
            return Ok(None);
        }
        let rows = self
            .client
            .query(
                "SELECT queryid::text, left(query, 120), calls, total_exec_time FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL \
                 ORDER BY total_exec_time DESC LIMIT $1",
                &[&i64::from(limit)],
            )
            .map_err(|e| self.query_err("read pg_stat_statements", &e))?;
        Ok(Some(
            rows.iter()
                .map(|r| StatementStat {
                    id: r.get(0),
                    text: r.get(1),
                    calls: r.get::<_, i64>(2).max(0) as u64,
                    total_ms: r.get(3),
                })
                .collect(),
        ))
    }

    pub(super) fn run_statement(&mut self, sql: &str) -> Result<()> {
        self.client
            .simple_query(sql)
            .map(|_| ())
            .map_err(|e| self.query_err("run a workload statement", &e))
    }
}

/// Stale statistics, dead tuples, wraparound age, table bloat and sequential-scan-heavy
/// tables, from the table statistics alone.
fn table_findings(tables: &[TableStats], min_rows: u64, freeze_max_age: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    for t in tables {
        let rows = t.reltuples.max(0.0);
        let vacuum = Fix {
            kind: FixKind::Vacuum,
            sql: format!("VACUUM (ANALYZE) {}", t.qualified()),
            cleanup: None,
            outside_transaction: true,
        };
        let needs_vacuum = t.dead > 1000 && t.dead as f64 > 0.2 * t.live.max(1) as f64;
        // The autovacuum rule, with its defaults: 50 rows + 10% of the table.
        let never_analyzed = t.last_analyzed.is_none() && t.live > 0;
        if never_analyzed || t.modified_since_analyze as f64 > 50.0 + 0.1 * rows {
            findings.push(Finding {
                id: format!("{}:{}", FindingKind::StaleStatistics.as_str(), t.label()),
                kind: FindingKind::StaleStatistics,
                severity: Severity::Warning,
                object: t.label(),
                reason: if never_analyzed {
                    format!("never analyzed although it holds {} rows: the planner guesses its size", t.live)
                } else {
                    format!(
                        "{} rows changed since the last ANALYZE ({:.0} rows estimated): plans rest on old numbers",
                        t.modified_since_analyze, rows
                    )
                },
                evidence: json!({"n_mod_since_analyze": t.modified_since_analyze, "reltuples": rows, "n_live_tup": t.live, "last_analyzed": t.last_analyzed}),
                fix: Some(if needs_vacuum {
                    vacuum.clone()
                } else {
                    Fix {
                        kind: FixKind::Analyze,
                        sql: format!("ANALYZE {}", t.qualified()),
                        cleanup: None,
                        outside_transaction: false,
                    }
                }),
            });
        }
        if needs_vacuum {
            findings.push(Finding {
                id: format!("{}:{}", FindingKind::DeadTuples.as_str(), t.label()),
                kind: FindingKind::DeadTuples,
                severity: Severity::Warning,
                object: t.label(),
                reason: format!(
                    "{} dead rows beside {} live ones: scans read them and the space is not reused until a vacuum",
                    t.dead, t.live
                ),
                evidence: json!({"n_dead_tup": t.dead, "n_live_tup": t.live}),
                fix: Some(vacuum.clone()),
            });
        }
        if t.xid_age > freeze_max_age / 2 {
            let critical = t.xid_age > 1_200_000_000;
            findings.push(Finding {
                id: format!("{}:{}", FindingKind::WraparoundAge.as_str(), t.label()),
                kind: FindingKind::WraparoundAge,
                severity: if critical { Severity::Critical } else { Severity::Warning },
                object: t.label(),
                reason: format!(
                    "its oldest transaction ID is {} transactions old (autovacuum_freeze_max_age {freeze_max_age}); at 2 billion the server stops accepting writes",
                    t.xid_age
                ),
                evidence: json!({"age_relfrozenxid": t.xid_age, "autovacuum_freeze_max_age": freeze_max_age}),
                fix: Some(Fix {
                    kind: FixKind::Vacuum,
                    sql: format!("VACUUM (FREEZE, ANALYZE) {}", t.qualified()),
                    cleanup: None,
                    outside_transaction: true,
                }),
            });
        }
        if let Some(expected) = t
            .expected_bytes
            .filter(|e| t.size_bytes as f64 > 2.0 * e && t.size_bytes as f64 - e > 64.0 * 1048576.0)
        {
            findings.push(Finding {
                id: format!("{}:{}", FindingKind::TableBloat.as_str(), t.label()),
                kind: FindingKind::TableBloat,
                severity: Severity::Info,
                object: t.label(),
                reason: format!(
                    "the table takes {} where its live rows need about {}: VACUUM makes the space reusable; giving it back needs VACUUM FULL or pg_repack in a window (not run here: both rewrite the table)",
                    advice::human_bytes(t.size_bytes as u64),
                    advice::human_bytes(expected as u64)
                ),
                evidence: json!({"size_bytes": t.size_bytes, "estimated_bytes": expected.round()}),
                fix: None,
            });
        }
        if (t.live as u64) >= min_rows && t.seq_scans >= 50 && t.seq_scans > 10 * t.index_scans {
            findings.push(Finding {
                id: format!("{}:{}", FindingKind::SequentialScans.as_str(), t.label()),
                kind: FindingKind::SequentialScans,
                severity: Severity::Info,
                object: t.label(),
                reason: format!(
                    "{} sequential scans read {} rows, against {} index scans: see missing_index findings for the statements behind them",
                    t.seq_scans, t.seq_rows_read, t.index_scans
                ),
                evidence: json!({"seq_scan": t.seq_scans, "seq_tup_read": t.seq_rows_read, "idx_scan": t.index_scans, "n_live_tup": t.live}),
                fix: None,
            });
        }
    }
    findings
}
