//! Tuning a MariaDB/MySQL database (db_tune): stale statistics (InnoDB's modification
//! counter), fragmentation (data_free), duplicate, redundant and unused indexes
//! (performance_schema), missing indexes from the plans of the heaviest statement digests; fixes
//! as online DDL under lock_wait_timeout and max_statement_time.

use serde_json::{Value, json};

use super::*;
use crate::engine::{TuneLimits, TuneScope};
use crate::tune::advice::{self, Candidate, Ddl, HelpedStatement, IndexInfo, Searched};
use crate::tune::model::{Finding, FindingKind, Fix, FixKind, Severity, StatementStat};

/// Separates column names inside one GROUP_CONCAT value (no identifier holds it).
const UNIT_SEPARATOR: char = '\u{1f}';

/// MariaDB's online DDL for the shared index advice.
struct MyDdl;

impl Ddl for MyDdl {
    fn create_index(&self, _: Option<&str>, table: &str, name: &str, columns: &[String]) -> Fix {
        Fix {
            kind: FixKind::CreateIndex,
            sql: format!(
                "ALTER TABLE {} ADD INDEX {} ({}), ALGORITHM=INPLACE, LOCK=NONE",
                quote_ident(table),
                quote_ident(name),
                columns
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            // InnoDB's online ADD INDEX is atomic: a failed build leaves nothing behind.
            cleanup: None,
            outside_transaction: false,
        }
    }

    fn drop_index(&self, index: &IndexInfo, kind: FixKind) -> Fix {
        Fix {
            kind,
            sql: format!(
                "ALTER TABLE {} DROP INDEX {}, ALGORITHM=INPLACE, LOCK=NONE",
                quote_ident(&index.table),
                quote_ident(&index.name)
            ),
            cleanup: None,
            outside_transaction: false,
        }
    }
}

/// One table of the database as information_schema and InnoDB's statistics see it.
struct TableStats {
    name: String,
    rows: f64,
    data_bytes: u64,
    index_bytes: u64,
    free_bytes: u64,
    /// When InnoDB's persistent statistics were last computed; None if never.
    analyzed_at: Option<String>,
    /// Rows changed since then (INNODB_SYS_TABLESTATS); None when not readable.
    modified: Option<u64>,
}

impl MysqlEngine {
    pub(super) fn find_tuning(&mut self, scope: &TuneScope) -> Result<(Vec<Finding>, Vec<String>)> {
        let mut limits = Vec::new();
        let tables = self.table_stats(&mut limits)?;
        let mut findings = table_findings(&tables);
        let performance_schema = self
            .query_rows("read performance_schema", "SELECT @@performance_schema")?
            .first()
            .and_then(|r| text(r, 0))
            .is_some_and(|v| v == "1");
        if !performance_schema {
            limits.push("performance_schema is off: unused indexes and the heaviest statements cannot be read (set performance_schema=ON in the server configuration; it needs a restart)".into());
        }
        let indexes = self.indexes(&tables, performance_schema)?;
        let since = self
            .query_rows(
                "read the uptime",
                "SELECT CAST(NOW() - INTERVAL VARIABLE_VALUE SECOND AS CHAR) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'",
            )
            .ok()
            .and_then(|rows| rows.first().and_then(|r| text(r, 0)))
            .map(|t| format!("server start {t}"));
        findings.extend(advice::index_findings(
            &indexes,
            &MyDdl,
            scope.min_table_rows,
            since.as_deref(),
        ));
        let mut statements: Vec<Searched> = scope
            .statements
            .iter()
            .map(|s| Searched::concrete(s))
            .collect();
        if performance_schema && scope.top_statements > 0 {
            statements.extend(self.heaviest_digests(scope.top_statements)?);
        }
        if !statements.is_empty() {
            limits.push("MariaDB has no hypothetical indexes: index advice rests on the rows a full scan examines, not on a cost with the index".into());
        }
        let mut candidates = Vec::new();
        for searched in statements {
            for scan in self.full_scans(&searched.text) {
                let Some(table) = tables.iter().find(|t| t.name == scan.table) else {
                    continue;
                };
                let columns = self.existing_columns(&table.name, &scan.columns)?;
                if table.rows < scope.min_table_rows as f64 || columns.is_empty() {
                    continue;
                }
                candidates.push(Candidate {
                    schema: None,
                    table: table.name.clone(),
                    columns,
                    table_rows: table.rows,
                    statement: HelpedStatement {
                        statement: searched.text.clone(),
                        total_ms: searched.total_ms,
                        calls: searched.calls,
                        cost_before: scan.rows,
                        cost_with_index: None,
                    },
                });
            }
        }
        findings.extend(advice::missing_index_findings(candidates, &indexes, &MyDdl));
        Ok((findings, limits))
    }

    fn table_stats(&mut self, limits: &mut Vec<String>) -> Result<Vec<TableStats>> {
        let rows = self.query_rows(
            "read the tables",
            "SELECT t.TABLE_NAME, CAST(t.TABLE_ROWS AS CHAR), CAST(t.DATA_LENGTH AS CHAR), CAST(t.INDEX_LENGTH AS CHAR), \
             CAST(t.DATA_FREE AS CHAR), CAST(s.last_update AS CHAR) \
             FROM information_schema.TABLES t LEFT JOIN mysql.innodb_table_stats s \
             ON s.database_name = t.TABLE_SCHEMA AND s.table_name = t.TABLE_NAME \
             WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' AND t.ENGINE = 'InnoDB' ORDER BY 1",
        )?;
        // InnoDB names its tables db/table in the file-name encoding (@0022 for '"').
        let modified: Vec<(String, u64)> = match self.query_rows(
            "read the InnoDB modification counters",
            "SELECT NAME, CAST(MODIFIED_COUNTER AS CHAR) FROM information_schema.INNODB_SYS_TABLESTATS",
        ) {
            Ok(rows) => rows
                .iter()
                .filter_map(|r| Some((text(r, 0)?, text(r, 1)?.parse().ok()?)))
                .collect(),
            Err(e) => {
                limits.push(format!("the InnoDB modification counters are not readable ({e}): stale statistics are judged by their age only (grant PROCESS)"));
                vec![]
            }
        };
        let database = self.args.login_db.clone().unwrap_or_default();
        Ok(rows
            .iter()
            .filter_map(|r| {
                let name = text(r, 0)?;
                let key = format!(
                    "{}/{}",
                    filename_encoded(&database),
                    filename_encoded(&name)
                );
                Some(TableStats {
                    rows: number(r, 1).unwrap_or(0.0),
                    data_bytes: number(r, 2).unwrap_or(0.0) as u64,
                    index_bytes: number(r, 3).unwrap_or(0.0) as u64,
                    free_bytes: number(r, 4).unwrap_or(0.0) as u64,
                    analyzed_at: text(r, 5),
                    modified: modified.iter().find(|(n, _)| *n == key).map(|(_, m)| *m),
                    name,
                })
            })
            .collect())
    }

    fn indexes(&mut self, tables: &[TableStats], usage: bool) -> Result<Vec<IndexInfo>> {
        let separator = quote_literal(&UNIT_SEPARATOR.to_string());
        let rows = self.query_rows(
            "list the indexes",
            &format!(
                "SELECT TABLE_NAME, INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR {separator}), \
                 CAST(MIN(NON_UNIQUE) AS CHAR), INDEX_TYPE, CAST(MAX(SUB_PART IS NOT NULL OR COLUMN_NAME IS NULL) AS CHAR) \
                 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() \
                 GROUP BY TABLE_NAME, INDEX_NAME, INDEX_TYPE ORDER BY 1, 2"
            ),
        )?;
        let foreign_keys: Vec<(String, Vec<String>)> = self
            .query_rows(
                "list the foreign keys",
                &format!(
                    "SELECT TABLE_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION SEPARATOR {separator}) \
                     FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL \
                     GROUP BY TABLE_NAME, CONSTRAINT_NAME"
                ),
            )?
            .iter()
            .filter_map(|r| Some((text(r, 0)?, split_columns(&text(r, 1)?))))
            .collect();
        let scans: Vec<(String, String, u64)> = if usage {
            self.query_rows(
                "read index usage",
                "SELECT OBJECT_NAME, INDEX_NAME, CAST(COUNT_STAR AS CHAR) FROM performance_schema.table_io_waits_summary_by_index_usage \
                 WHERE OBJECT_SCHEMA = DATABASE() AND INDEX_NAME IS NOT NULL",
            )?
            .iter()
            .filter_map(|r| Some((text(r, 0)?, text(r, 1)?, text(r, 2)?.parse().ok()?)))
            .collect()
        } else {
            vec![]
        };
        Ok(rows
            .iter()
            .filter_map(|r| {
                let (table, name) = (text(r, 0)?, text(r, 1)?);
                let columns = split_columns(&text(r, 2).unwrap_or_default());
                // InnoDB needs an index on a foreign key's columns: the one that leads with
                // them is not ours to drop.
                let backs_foreign_key = foreign_keys
                    .iter()
                    .any(|(t, fk)| *t == table && columns.starts_with(fk));
                Some(IndexInfo {
                    schema: None,
                    unique: text(r, 3).as_deref() == Some("0"),
                    backs_constraint: name == "PRIMARY" || backs_foreign_key,
                    special: text(r, 5).as_deref() == Some("1"),
                    method: text(r, 4).unwrap_or_default(),
                    scans: scans
                        .iter()
                        .find(|(t, i, _)| *t == table && *i == name)
                        .map(|(_, _, n)| *n),
                    size_bytes: None,
                    table_rows: tables
                        .iter()
                        .find(|t| t.name == table)
                        .map_or(0.0, |t| t.rows),
                    columns,
                    table,
                    name,
                })
            })
            .collect())
    }

    /// The heaviest SELECT digests of this database: (text, total ms, calls).
    fn heaviest_digests(&mut self, top: u32) -> Result<Vec<Searched>> {
        let rows = self.query_rows(
            "read the statement digests",
            &format!(
                "SELECT DIGEST_TEXT, CAST(SUM_TIMER_WAIT / 1000000000 AS CHAR), CAST(COUNT_STAR AS CHAR) \
                 FROM performance_schema.events_statements_summary_by_digest \
                 WHERE SCHEMA_NAME = DATABASE() AND DIGEST_TEXT LIKE 'SELECT %' \
                 AND DIGEST_TEXT NOT LIKE '%information_schema%' AND DIGEST_TEXT NOT LIKE '%performance_schema%' \
                 ORDER BY SUM_TIMER_WAIT DESC LIMIT {top}"
            ),
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let digest = text(r, 0)?;
                // A digest cut at max_digest_length cannot be planned.
                (!digest.ends_with("...")).then(|| Searched {
                    total_ms: number(r, 1),
                    calls: number(r, 2).map(|n| n as u64),
                    normalized: true,
                    text: digest,
                })
            })
            .collect())
    }

    /// Full table scans with a condition in the plan of a statement (a digest's `?` planned
    /// as 0: the access path does not depend on the value when no index exists).
    fn full_scans(&mut self, statement: &str) -> Vec<FullScan> {
        let concrete = statement.replace('?', "0");
        let plan = self
            .query_rows(
                "explain a statement",
                &format!("EXPLAIN FORMAT=JSON {concrete}"),
            )
            .ok()
            .and_then(|rows| rows.first().and_then(|r| text(r, 0)))
            .and_then(|text| serde_json::from_str::<Value>(&text).ok());
        plan.map(|p| full_scans_in(&p)).unwrap_or_default()
    }

    fn existing_columns(&mut self, table: &str, names: &[String]) -> Result<Vec<String>> {
        let existing: Vec<String> = self
            .exec_rows(
                "list the columns",
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                vec![table.to_string()],
            )?
            .iter()
            .filter_map(|r| text(r, 0))
            .collect();
        Ok(names
            .iter()
            .filter(|n| existing.iter().any(|e| e.eq_ignore_ascii_case(n)))
            .cloned()
            .collect())
    }

    pub(super) fn run_tuning_fix(&mut self, fix: &Fix, limits: &TuneLimits) -> Result<()> {
        self.run(
            "set the timeouts",
            &format!(
                "SET SESSION lock_wait_timeout = {}, SESSION innodb_lock_wait_timeout = {}, SESSION max_statement_time = {}",
                limits.lock_timeout.as_secs(),
                limits.lock_timeout.as_secs(),
                limits.statement_timeout.as_secs()
            ),
        )?;
        self.run(&format!("run '{}'", fix.sql), &fix.sql)
    }

    pub(super) fn read_statement_stats(
        &mut self,
        limit: u32,
    ) -> Result<Option<Vec<StatementStat>>> {
        let on = self
            .query_rows("read performance_schema", "SELECT @@performance_schema")?
            .first()
            .and_then(|r| text(r, 0))
            .is_some_and(|v| v == "1");
        if !on {
            return Ok(None);
        }
        let rows = self.query_rows(
            "read the statement digests",
            &format!(
                "SELECT DIGEST, LEFT(DIGEST_TEXT, 120), CAST(COUNT_STAR AS CHAR), CAST(SUM_TIMER_WAIT / 1000000000 AS CHAR) \
                 FROM performance_schema.events_statements_summary_by_digest \
                 WHERE SCHEMA_NAME = DATABASE() AND DIGEST IS NOT NULL ORDER BY SUM_TIMER_WAIT DESC LIMIT {limit}"
            ),
        )?;
        Ok(Some(
            rows.iter()
                .filter_map(|r| {
                    Some(StatementStat {
                        id: text(r, 0)?,
                        text: text(r, 1).unwrap_or_default(),
                        calls: number(r, 2)? as u64,
                        total_ms: number(r, 3)?,
                    })
                })
                .collect(),
        ))
    }

    pub(super) fn run_statement(&mut self, sql: &str) -> Result<()> {
        self.run("run a workload statement", sql)
    }
}

fn split_columns(text: &str) -> Vec<String> {
    text.split(UNIT_SEPARATOR)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// MariaDB's file-name encoding of a name: letters, digits and `_` stay, every other
/// character below U+10000 becomes `@` and four hex digits. (Some letters outside ASCII have
/// shorter codes; such tables are simply not matched and are judged by age only.)
fn filename_encoded(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            out.push_str(&format!("@{:04x}", c as u32));
        }
    }
    out
}

/// Stale statistics and fragmentation, from the table statistics alone.
fn table_findings(tables: &[TableStats]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for t in tables {
        let analyze = Fix {
            kind: FixKind::Analyze,
            sql: format!("ANALYZE TABLE {}", quote_ident(&t.name)),
            cleanup: None,
            outside_transaction: false,
        };
        let never = t.analyzed_at.is_none() && t.rows > 0.0;
        let changed = t.modified.is_some_and(|m| m as f64 > 50.0 + 0.1 * t.rows);
        if never || changed {
            findings.push(Finding {
                id: format!("{}:{}", FindingKind::StaleStatistics.as_str(), t.name),
                kind: FindingKind::StaleStatistics,
                severity: Severity::Warning,
                object: t.name.clone(),
                reason: if never {
                    "no persistent statistics: the optimizer guesses the table's size and key spread".into()
                } else {
                    format!(
                        "{} rows changed since the statistics were computed ({}) for {:.0} rows",
                        t.modified.unwrap_or(0),
                        t.analyzed_at.as_deref().unwrap_or("never"),
                        t.rows
                    )
                },
                evidence: json!({"modified_counter": t.modified, "table_rows": t.rows, "stats_last_update": t.analyzed_at}),
                fix: Some(analyze),
            });
        }
        let total = t.data_bytes + t.index_bytes + t.free_bytes;
        if t.free_bytes > 32 * 1048576 && t.free_bytes as f64 > 0.2 * total as f64 {
            findings.push(Finding {
                id: format!("{}:{}", FindingKind::Fragmentation.as_str(), t.name),
                kind: FindingKind::Fragmentation,
                severity: Severity::Warning,
                object: t.name.clone(),
                reason: format!(
                    "{} of the table's {} are free space (data_free): an online rebuild gives it back",
                    advice::human_bytes(t.free_bytes),
                    advice::human_bytes(total)
                ),
                evidence: json!({"data_free": t.free_bytes, "data_length": t.data_bytes, "index_length": t.index_bytes}),
                fix: Some(Fix {
                    kind: FixKind::Rebuild,
                    sql: format!("ALTER TABLE {} FORCE, ALGORITHM=INPLACE, LOCK=NONE", quote_ident(&t.name)),
                    cleanup: None,
                    outside_transaction: false,
                }),
            });
        }
    }
    findings
}

/// A full scan of a table with a condition, from EXPLAIN FORMAT=JSON.
#[derive(Debug, PartialEq)]
struct FullScan {
    table: String,
    columns: Vec<String>,
    rows: f64,
}

fn full_scans_in(plan: &Value) -> Vec<FullScan> {
    let mut found = Vec::new();
    let mut stack = vec![plan];
    while let Some(node) = stack.pop() {
        match node {
            Value::Object(map) => {
                if map.get("access_type").and_then(Value::as_str) == Some("ALL")
                    && let (Some(table), Some(condition)) = (
                        map.get("table_name").and_then(Value::as_str),
                        map.get("attached_condition").and_then(Value::as_str),
                    )
                {
                    found.push(FullScan {
                        table: table.to_string(),
                        columns: condition_columns(condition),
                        rows: map.get("rows").and_then(Value::as_f64).unwrap_or(0.0),
                    });
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

/// The columns a condition compares, equality first: `` `orders`.`customer_id` = 7 ``.
fn condition_columns(condition: &str) -> Vec<String> {
    static COMPARISON: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)(?:`(?:[^`]|``)+`|\w+)\.(?:`((?:[^`]|``)+)`|(\w+))\s*(=|<>|<=|>=|<|>|like\b|between\b)",
        )
        .expect("a valid pattern")
    });
    advice::index_columns(COMPARISON.captures_iter(condition).map(|m| {
        let column = m
            .get(1)
            .map(|q| q.as_str().replace("``", "`"))
            .or_else(|| m.get(2).map(|c| c.as_str().to_string()))
            .unwrap_or_default();
        let op = m.get(3).map_or("", |o| o.as_str());
        // LIKE and BETWEEN read a range of the index.
        (
            column,
            if op.eq_ignore_ascii_case("like") {
                "like"
            } else {
                op
            },
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_give_their_columns_equality_first() {
        assert_eq!(
            condition_columns("`orders`.`created` > '2026-01-01' and `orders`.`customer_id` = 7"),
            vec!["customer_id", "created"]
        );
        assert_eq!(condition_columns("`t`.`we``ird` = 1"), vec!["we`ird"]);
    }

    #[test]
    fn full_scans_are_found_in_nested_plans() {
        let plan = json!({"query_block": {"nested_loop": [
            {"table": {"table_name": "orders", "access_type": "ALL", "rows": 5000, "attached_condition": "`orders`.`customer_id` = 0"}},
            {"table": {"table_name": "customers", "access_type": "eq_ref", "rows": 1}}
        ]}});
        assert_eq!(
            full_scans_in(&plan),
            vec![FullScan {
                table: "orders".into(),
                columns: vec!["customer_id".into()],
                rows: 5000.0
            }]
        );
    }

    #[test]
    fn names_are_encoded_as_innodb_names_its_files() {
        assert_eq!(filename_encoded(r#"tq"x y"#), "tq@0022x@0020y");
        assert_eq!(filename_encoded("t-1"), "t@002d1");
    }
}
