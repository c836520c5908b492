//! The index advice both engines share: duplicate, redundant and unused indexes from a list of
//! indexes, missing indexes from the columns heavy statements filter on, and the names and
//! statements of the indexes we create. Each engine lists its indexes and candidates (engine/
//! <engine>/tune.rs) and writes its own DDL through [`Ddl`].

use std::collections::BTreeMap;

use serde_json::json;

use super::model::{Finding, FindingKind, Fix, FixKind, Severity};

/// One index as the engine describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    /// Schema (PostgreSQL); None on MariaDB, where the database is the schema.
    pub schema: Option<String>,
    pub table: String,
    pub name: String,
    /// Key columns in order; empty when the index has expressions.
    pub columns: Vec<String>,
    /// Unique or primary: it enforces something, never dropped.
    pub unique: bool,
    /// Backs a constraint (primary key, unique, exclusion): never dropped.
    pub backs_constraint: bool,
    /// Partial or expression index: not comparable column by column.
    pub special: bool,
    /// Access method (btree, hash...; BTREE on MariaDB).
    pub method: String,
    /// Scans since the statistics were reset; None when the server does not say.
    pub scans: Option<u64>,
    pub size_bytes: Option<u64>,
    /// Rows of its table (an estimate).
    pub table_rows: f64,
}

impl IndexInfo {
    /// `schema.table` or `table`, for messages and ids.
    pub fn table_label(&self) -> String {
        label(self.schema.as_deref(), &self.table)
    }

    fn label(&self) -> String {
        label(self.schema.as_deref(), &self.name)
    }

    fn droppable(&self) -> bool {
        !self.unique && !self.backs_constraint
    }
}

/// `schema.name` or `name`.
pub fn label(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(schema) => format!("{schema}.{name}"),
        None => name.to_string(),
    }
}

/// The engine's DDL for index advice.
pub trait Ddl {
    /// An online index build that leaves nothing behind when it fails.
    fn create_index(
        &self,
        schema: Option<&str>,
        table: &str,
        name: &str,
        columns: &[String],
    ) -> Fix;
    /// An online drop of an index.
    fn drop_index(&self, index: &IndexInfo, kind: FixKind) -> Fix;
}

/// The name of an index we create: table and columns, `_dbc_idx` at the end, cut to fit the
/// 63-byte (PostgreSQL) and 64-character (MariaDB) limits with a short hash to stay unique.
pub fn index_name(table: &str, columns: &[String]) -> String {
    let full = format!("{table}_{}_dbc_idx", columns.join("_"));
    if full.len() <= 63 {
        return full;
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    full.hash(&mut hasher);
    let suffix = format!("_{:08x}_dbc_idx", hasher.finish() as u32);
    let mut head = String::new();
    for c in full.chars() {
        if head.len() + c.len_utf8() + suffix.len() > 63 {
            break;
        }
        head.push(c);
    }
    head + &suffix
}

/// Duplicate and redundant (prefix) indexes, and indexes never scanned since `stats_since`.
pub fn index_findings(
    indexes: &[IndexInfo],
    ddl: &dyn Ddl,
    min_table_rows: u64,
    stats_since: Option<&str>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut by_table: BTreeMap<(Option<&str>, &str), Vec<&IndexInfo>> = BTreeMap::new();
    for index in indexes
        .iter()
        .filter(|i| !i.special && !i.columns.is_empty())
    {
        by_table
            .entry((index.schema.as_deref(), index.table.as_str()))
            .or_default()
            .push(index);
    }
    for group in by_table.values() {
        findings.extend(overlapping(group, ddl));
    }
    let overlapping_names: Vec<String> = findings.iter().map(|f| f.object.clone()).collect();
    for index in indexes {
        let Some(0) = index.scans else { continue };
        if !index.droppable()
            || index.table_rows < min_table_rows as f64
            || overlapping_names.contains(&index.label())
        {
            continue;
        }
        findings.push(Finding {
            id: format!("{}:{}", FindingKind::UnusedIndex.as_str(), index.label()),
            kind: FindingKind::UnusedIndex,
            severity: Severity::Info,
            object: index.label(),
            reason: format!(
                "no scan of this index since the statistics were reset{}; it costs every write to {} and {} of disk",
                stats_since.map(|s| format!(" ({s})")).unwrap_or_default(),
                index.table_label(),
                index.size_bytes.map_or("some".into(), human_bytes)
            ),
            evidence: json!({
                "scans": 0,
                "since": stats_since,
                "size_bytes": index.size_bytes,
                "table_rows": index.table_rows,
            }),
            fix: Some(ddl.drop_index(index, FixKind::DropUnusedIndex)),
        });
    }
    findings
}

/// Within one table: an index with the same columns as another (duplicate) or whose columns
/// start another's (redundant). The one kept is the one that enforces something, else the
/// longer, else the first by name.
fn overlapping(group: &[&IndexInfo], ddl: &dyn Ddl) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut sorted: Vec<&IndexInfo> = group.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut flagged: Vec<&str> = Vec::new();
    for candidate in &sorted {
        if !candidate.droppable() {
            continue;
        }
        let keeper = sorted.iter().find(|other| {
            other.name != candidate.name
                && !flagged.contains(&other.name.as_str())
                && other.method == candidate.method
                && other.columns.starts_with(&candidate.columns)
                && (other.columns.len() > candidate.columns.len()
                    || !other.droppable()
                    || other.name < candidate.name)
        });
        let Some(keeper) = keeper else { continue };
        flagged.push(&candidate.name);
        let duplicate = keeper.columns.len() == candidate.columns.len();
        let (kind, fix_kind, how) = if duplicate {
            (
                FindingKind::DuplicateIndex,
                FixKind::DropDuplicateIndex,
                "has the same columns as",
            )
        } else {
            (
                FindingKind::RedundantIndex,
                FixKind::DropDuplicateIndex,
                "is a prefix of",
            )
        };
        findings.push(Finding {
            id: format!("{}:{}", kind.as_str(), candidate.label()),
            kind,
            severity: Severity::Warning,
            object: candidate.label(),
            reason: format!(
                "({}) {how} {} ({}): every query it serves, the other serves too, and both cost every write",
                candidate.columns.join(", "),
                keeper.label(),
                keeper.columns.join(", ")
            ),
            evidence: json!({
                "columns": candidate.columns,
                "kept": keeper.label(),
                "kept_columns": keeper.columns,
                "size_bytes": candidate.size_bytes,
                "scans": candidate.scans,
            }),
            fix: Some(ddl.drop_index(candidate, fix_kind)),
        });
    }
    findings
}

/// A statement searched for missing indexes: from the workload, or one of the heaviest the
/// server recorded (pg_stat_statements, performance_schema digests).
#[derive(Debug, Clone, PartialEq)]
pub struct Searched {
    pub text: String,
    /// Total time so far, when the server recorded it.
    pub total_ms: Option<f64>,
    pub calls: Option<u64>,
    /// Parameters are placeholders ($1 or ?), not values.
    pub normalized: bool,
}

impl Searched {
    /// A workload statement, parameters drawn.
    pub fn concrete(text: &str) -> Searched {
        Searched {
            text: text.to_string(),
            total_ms: None,
            calls: None,
            normalized: false,
        }
    }
}

/// One statement that a candidate index would help, with the planner's costs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HelpedStatement {
    pub statement: String,
    /// Total time so far (pg_stat_statements / performance_schema), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
    pub calls: Option<u64>,
    /// The plan's cost (PostgreSQL) or rows examined (MariaDB) as it is.
    pub cost_before: f64,
    /// The same with a hypothetical index (hypopg); None when it could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_with_index: Option<f64>,
}

/// A table scan that an index on `columns` would narrow.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub schema: Option<String>,
    pub table: String,
    pub columns: Vec<String>,
    pub table_rows: f64,
    pub statement: HelpedStatement,
}

/// Candidates grouped into one finding per (table, columns); skipped when an existing index
/// already starts with the columns, or when the hypothetical index would not lower the cost.
pub fn missing_index_findings(
    candidates: Vec<Candidate>,
    indexes: &[IndexInfo],
    ddl: &dyn Ddl,
) -> Vec<Finding> {
    let mut grouped: BTreeMap<(Option<String>, String, Vec<String>), Vec<Candidate>> =
        BTreeMap::new();
    for candidate in candidates {
        let covered = indexes.iter().any(|i| {
            i.schema == candidate.schema
                && i.table == candidate.table
                && i.columns.starts_with(&candidate.columns)
        });
        let helps = candidate
            .statement
            .cost_with_index
            .is_none_or(|with| with < candidate.statement.cost_before * 0.9);
        if covered || !helps {
            continue;
        }
        grouped
            .entry((
                candidate.schema.clone(),
                candidate.table.clone(),
                candidate.columns.clone(),
            ))
            .or_default()
            .push(candidate);
    }
    grouped
        .into_iter()
        .map(|((schema, table, columns), candidates)| {
            let object = format!("{}({})", label(schema.as_deref(), &table), columns.join(", "));
            let statements: Vec<&HelpedStatement> =
                candidates.iter().map(|c| &c.statement).collect();
            let measured = statements.iter().any(|s| s.cost_with_index.is_some());
            Finding {
                id: format!("{}:{object}", FindingKind::MissingIndex.as_str()),
                kind: FindingKind::MissingIndex,
                severity: Severity::Warning,
                reason: format!(
                    "{} heavy statement(s) scan {} ({:.0} rows) filtering on {}; {}",
                    statements.len(),
                    label(schema.as_deref(), &table),
                    candidates[0].table_rows,
                    columns.join(", "),
                    if measured {
                        "a hypothetical index lowers their planned cost (evidence)"
                    } else {
                        "no hypothetical-index cost was available (see limits)"
                    }
                ),
                object,
                evidence: json!({ "statements": statements, "table_rows": candidates[0].table_rows }),
                fix: Some(ddl.create_index(
                    schema.as_deref(),
                    &table,
                    &index_name(&table, &columns),
                    &columns,
                )),
            }
        })
        .collect()
}

/// The columns an index should have for a filter, from the comparisons the filter makes
/// (column, operator): equality columns first, then one range column (the rest of a range
/// cannot use the index); `<>` narrows nothing and is left out.
pub fn index_columns<'a>(comparisons: impl Iterator<Item = (String, &'a str)>) -> Vec<String> {
    let mut equal: Vec<String> = Vec::new();
    let mut range: Vec<String> = Vec::new();
    for (column, op) in comparisons {
        if column.is_empty() || op == "<>" || equal.contains(&column) || range.contains(&column) {
            continue;
        }
        if op == "=" {
            equal.push(column);
        } else {
            range.push(column);
        }
    }
    equal.extend(range.into_iter().take(1));
    equal
}

/// Bytes for people: 1.5 MB.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sql;
    impl Ddl for Sql {
        fn create_index(&self, _: Option<&str>, t: &str, n: &str, c: &[String]) -> Fix {
            Fix {
                kind: FixKind::CreateIndex,
                sql: format!("CREATE INDEX {n} ON {t} ({})", c.join(", ")),
                cleanup: None,
                outside_transaction: true,
            }
        }
        fn drop_index(&self, index: &IndexInfo, kind: FixKind) -> Fix {
            Fix {
                kind,
                sql: format!("DROP INDEX {}", index.name),
                cleanup: None,
                outside_transaction: true,
            }
        }
    }

    fn index(name: &str, columns: &[&str], unique: bool, scans: u64) -> IndexInfo {
        IndexInfo {
            schema: Some("public".into()),
            table: "orders".into(),
            name: name.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            unique,
            backs_constraint: unique,
            special: false,
            method: "btree".into(),
            scans: Some(scans),
            size_bytes: Some(8192),
            table_rows: 10_000.0,
        }
    }

    #[test]
    fn duplicates_prefixes_and_unused_indexes_are_told_apart() {
        let indexes = vec![
            index("orders_pkey", &["id"], true, 10),
            index("orders_id_dup", &["id"], false, 3),
            index("orders_customer", &["customer_id"], false, 5),
            index("orders_customer_day", &["customer_id", "day"], false, 5),
            index("orders_note", &["note"], false, 0),
        ];
        let findings = index_findings(&indexes, &Sql, 1000, Some("2026-11-01"));
        let kinds: Vec<(FindingKind, &str)> = findings
            .iter()
            .map(|f| (f.kind, f.object.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (FindingKind::RedundantIndex, "public.orders_customer"),
                (FindingKind::DuplicateIndex, "public.orders_id_dup"),
                (FindingKind::UnusedIndex, "public.orders_note"),
            ]
        );
        // Unique indexes and small tables are never proposed for dropping.
        let mut small = index("orders_note", &["note"], false, 0);
        small.table_rows = 10.0;
        assert!(index_findings(&[small], &Sql, 1000, None).is_empty());
    }

    #[test]
    fn long_index_names_fit_and_stay_distinct() {
        let long = |c: &str| vec![format!("a_very_long_column_name_{c}_that_goes_on")];
        let one = index_name("a_rather_long_table_name_too", &long("x"));
        let two = index_name("a_rather_long_table_name_too", &long("y"));
        assert!(one.len() <= 63 && two.len() <= 63, "{one} {two}");
        assert_ne!(one, two);
        assert!(one.ends_with("_dbc_idx"));
        assert_eq!(
            index_name("orders", &["customer_id".into()]),
            "orders_customer_id_dbc_idx"
        );
    }
}
