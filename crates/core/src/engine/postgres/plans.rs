//! Missing indexes for db_tune: the plans of the heaviest statements (pg_stat_statements,
//! planned as generic plans so that their parameters stay parameters) and of the workload,
//! their sequential scans of large tables and the columns the filters compare, and the cost a
//! hypothetical index would give (hypopg).

use serde_json::Value;

use super::tune::TableStats;
use super::*;
use crate::engine::TuneScope;
use crate::tune::advice::{self, Candidate, HelpedStatement, Searched};

impl PostgresEngine {
    /// Scans of large tables in the plans of the heaviest statements and of the workload,
    /// with the cost a hypothetical index would give (hypopg).
    pub(super) fn index_candidates(
        &mut self,
        scope: &TuneScope,
        tables: &[TableStats],
        limits: &mut Vec<String>,
    ) -> Result<Vec<Candidate>> {
        let installed = |engine: &mut Self, name: &str| {
            engine
                .client
                .query_opt("SELECT 1 FROM pg_extension WHERE extname = $1", &[&name])
                .map(|r| r.is_some())
                .unwrap_or(false)
        };
        let mut statements: Vec<Searched> = scope
            .statements
            .iter()
            .map(|s| Searched::concrete(s))
            .collect();
        if scope.top_statements > 0 {
            if installed(self, "pg_stat_statements") {
                statements.extend(self.heaviest_statements(scope.top_statements)?);
            } else {
                limits.push("pg_stat_statements is not installed in this database: the heaviest statements were not searched for missing indexes (preload it in shared_preload_libraries, then CREATE EXTENSION pg_stat_statements)".into());
            }
        }
        let hypopg = installed(self, "hypopg");
        if !hypopg && !statements.is_empty() {
            limits.push("hypopg is not installed in this database: index advice has no cost with the index (CREATE EXTENSION hypopg; Debian package postgresql-<version>-hypopg)".into());
        }
        let mut candidates = Vec::new();
        for searched in statements {
            let (statement, normalized) = (&searched.text, searched.normalized);
            let Some(plan) = self.explain(statement, normalized) else {
                continue;
            };
            let cost_before = plan_cost(&plan);
            for scan in seq_scans(&plan) {
                let Some(table) = tables
                    .iter()
                    .find(|t| t.schema == scan.schema && t.name == scan.table)
                else {
                    continue;
                };
                let rows = table.reltuples.max(table.live as f64);
                // An index pays when the table is large and the filter keeps few rows.
                if rows < scope.min_table_rows as f64 || scan.plan_rows > rows * 0.1 {
                    continue;
                }
                let columns = self.existing_columns(table, &scan.columns)?;
                if columns.is_empty() {
                    continue;
                }
                let cost_with_index = if hypopg {
                    self.cost_with_hypothetical_index(statement, normalized, table, &columns)
                } else {
                    None
                };
                candidates.push(Candidate {
                    schema: Some(table.schema.clone()),
                    table: table.name.clone(),
                    columns,
                    table_rows: rows,
                    statement: HelpedStatement {
                        statement: statement.clone(),
                        total_ms: searched.total_ms,
                        calls: searched.calls,
                        cost_before,
                        cost_with_index,
                    },
                });
            }
        }
        Ok(candidates)
    }

    /// The heaviest SELECTs of this database by total time: (text, total ms, calls,
    /// normalized).
    fn heaviest_statements(&mut self, top: u32) -> Result<Vec<Searched>> {
        let rows = self
            .client
            .query(
                "SELECT query, total_exec_time, calls FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND query ~* '^\\s*select\\M' AND query !~* '(pg_catalog|pg_stat|information_schema|hypopg)' \
                 ORDER BY total_exec_time DESC LIMIT $1",
                &[&i64::from(top)],
            )
            .map_err(|e| self.query_err("read pg_stat_statements", &e))?;
        Ok(rows
            .iter()
            .map(|r| {
                let total: f64 = r.get(1);
                let calls: i64 = r.get(2);
                Searched {
                    text: r.get(0),
                    total_ms: Some((total * 1000.0).round() / 1000.0),
                    calls: Some(calls.max(0) as u64),
                    normalized: true,
                }
            })
            .collect())
    }

    /// The statement's plan as JSON (VERBOSE: scans name their schema). A normalized statement ($1, $2...) is planned as a
    /// generic plan: the parameters stay parameters, so the filters show the columns.
    fn explain(&mut self, statement: &str, normalized: bool) -> Option<Value> {
        let text = if normalized {
            let params = max_parameter(statement);
            let prepared = format!("PREPARE dbcadence_tune AS {statement}");
            self.client.batch_execute("DEALLOCATE ALL").ok()?;
            self.client.batch_execute(&prepared).ok()?;
            let nulls = vec!["NULL"; params].join(", ");
            if params == 0 {
                "EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE dbcadence_tune".to_string()
            } else {
                format!("EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE dbcadence_tune({nulls})")
            }
        } else {
            format!("EXPLAIN (FORMAT JSON, VERBOSE) {statement}")
        };
        let _ = self
            .client
            .batch_execute("SET plan_cache_mode = force_generic_plan");
        // EXPLAIN's JSON arrives as text over the simple protocol.
        let plan = self.client.simple_query(&text).ok().and_then(|messages| {
            messages.into_iter().find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
        });
        let _ = self
            .client
            .batch_execute("RESET plan_cache_mode; DEALLOCATE ALL");
        let plan: Value = serde_json::from_str(&plan?).ok()?;
        plan.get(0).and_then(|p| p.get("Plan")).cloned()
    }

    fn cost_with_hypothetical_index(
        &mut self,
        statement: &str,
        normalized: bool,
        table: &TableStats,
        columns: &[String],
    ) -> Option<f64> {
        let ddl = format!(
            "CREATE INDEX ON {} ({})",
            table.qualified(),
            columns
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.client
            .query("SELECT * FROM hypopg_create_index($1)", &[&ddl])
            .ok()?;
        let cost = self.explain(statement, normalized).map(|p| plan_cost(&p));
        let _ = self.client.batch_execute("SELECT hypopg_reset()");
        cost
    }

    /// The columns of `table` among `names` (a filter may name something else).
    fn existing_columns(&mut self, table: &TableStats, names: &[String]) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                &[&table.schema, &table.name],
            )
            .map_err(|e| self.query_err("list the columns", &e))?;
        let existing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(names
            .iter()
            .filter(|n| existing.contains(n))
            .cloned()
            .collect())
    }
}

/// A sequential scan in a plan: its table, the columns its filter names, its row estimate.
#[derive(Debug, PartialEq)]
struct SeqScan {
    schema: String,
    table: String,
    columns: Vec<String>,
    plan_rows: f64,
}

fn seq_scans(plan: &Value) -> Vec<SeqScan> {
    let mut found = Vec::new();
    let mut stack = vec![plan];
    while let Some(node) = stack.pop() {
        if node.get("Node Type").and_then(Value::as_str) == Some("Seq Scan")
            && let (Some(schema), Some(table), Some(filter)) = (
                node.get("Schema").and_then(Value::as_str),
                node.get("Relation Name").and_then(Value::as_str),
                node.get("Filter").and_then(Value::as_str),
            )
        {
            found.push(SeqScan {
                schema: schema.into(),
                table: table.into(),
                columns: filter_columns(filter),
                plan_rows: node.get("Plan Rows").and_then(Value::as_f64).unwrap_or(0.0),
            });
        }
        if let Some(children) = node.get("Plans").and_then(Value::as_array) {
            stack.extend(children);
        }
    }
    found
}

/// The columns a plan's filter compares, in the order an index wants them:
/// `((customer_id = $1) AND (created_at > '2026-01-01'::date))` gives customer_id, created_at.
fn filter_columns(filter: &str) -> Vec<String> {
    static COMPARISON: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"\(+\s*(?:(?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\.)?(?:"((?:[^"]|"")+)"|([a-z_][a-z0-9_$]*))\)?(?:::[a-z ]+(?:\(\d+\))?)?\s*(=|<>|<=|>=|<|>|~~|IS NULL)"#,
        )
        .expect("a valid pattern")
    });
    advice::index_columns(COMPARISON.captures_iter(filter).map(|m| {
        let column = m
            .get(1)
            .map(|q| q.as_str().replace("\"\"", "\""))
            .or_else(|| m.get(2).map(|c| c.as_str().to_string()))
            .unwrap_or_default();
        (column, m.get(3).map_or("", |o| o.as_str()))
    }))
}

fn plan_cost(plan: &Value) -> f64 {
    plan.get("Total Cost")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// The highest `$n` in a normalized statement.
fn max_parameter(statement: &str) -> usize {
    static PARAM: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\$(\d+)").expect("a valid pattern"));
    PARAM
        .captures_iter(statement)
        .filter_map(|c| c[1].parse().ok())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filter_columns_put_equality_first() {
        assert_eq!(
            filter_columns("((created_at > '2026-01-01'::date) AND (customer_id = $1))"),
            vec!["customer_id", "created_at"]
        );
        assert_eq!(
            filter_columns("((status)::text = 'open'::text)"),
            vec!["status"]
        );
        assert_eq!(
            filter_columns(r#"("we""ird col" = 5)"#),
            vec![r#"we"ird col"#]
        );
        assert!(filter_columns("(note <> 'x'::text)").is_empty());
    }

    #[test]
    fn parameters_are_counted() {
        assert_eq!(
            max_parameter("SELECT * FROM t WHERE a = $1 AND b = $12"),
            12
        );
        assert_eq!(max_parameter("SELECT 1"), 0);
    }

    #[test]
    fn scans_are_found_anywhere_in_the_plan() {
        let plan = json!({"Node Type": "Hash Join", "Plans": [
            {"Node Type": "Seq Scan", "Schema": "public", "Relation Name": "orders", "Filter": "(customer_id = 7)", "Plan Rows": 10.0},
            {"Node Type": "Index Scan", "Schema": "public", "Relation Name": "customers"}
        ]});
        assert_eq!(
            seq_scans(&plan),
            vec![SeqScan {
                schema: "public".into(),
                table: "orders".into(),
                columns: vec!["customer_id".into()],
                plan_rows: 10.0
            }]
        );
    }
}
