//! Proving a restored MariaDB/MySQL database: exact row counts and the integrity check.

use super::*;

impl MysqlEngine {
    pub(super) fn count_table_rows(&mut self, database: &str) -> Result<Vec<TableRows>> {
        let names: Vec<String> = self
            .exec_rows(
                "list tables",
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1",
                vec![database.to_string()],
            )?
            .iter()
            .filter_map(|r| text(r, 0))
            .collect();
        let mut counts = Vec::with_capacity(names.len());
        for name in names {
            let sql = format!(
                "SELECT COUNT(*) FROM {}.{}",
                quote_ident(database),
                quote_ident(&name)
            );
            let rows = self
                .query_rows(&format!("count rows of {name}"), &sql)?
                .first()
                .and_then(|r| text(r, 0))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            counts.push(TableRows {
                schema: None,
                name,
                rows,
            });
        }
        Ok(counts)
    }

    pub(super) fn run_integrity_check(&mut self, database: &str) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for table in self.row_counts(database)? {
            let sql = format!(
                "CHECK TABLE {}.{}",
                quote_ident(database),
                quote_ident(&table.name)
            );
            for row in self.query_rows(&format!("check table {}", table.name), &sql)? {
                let (kind, message) = (
                    text(&row, 2).unwrap_or_default(),
                    text(&row, 3).unwrap_or_default(),
                );
                if kind.eq_ignore_ascii_case("error")
                    || (kind.eq_ignore_ascii_case("status") && !message.eq_ignore_ascii_case("OK"))
                {
                    problems.push(format!("{}: {kind}: {message}", table.name));
                }
            }
        }
        Ok(problems)
    }
}
