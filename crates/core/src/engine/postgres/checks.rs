//! Proving a restored PostgreSQL database: exact row counts and the integrity check.

use super::*;

impl PostgresEngine {
    /// Exact rows per user table, in this connection's current transaction.
    pub(super) fn count_rows(&mut self) -> Result<Vec<TableRows>> {
        let tables: Vec<(String, String)> = self
            .client
            .query(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1, 2",
                &[],
            )
            .map_err(|e| self.query_err("list tables", &e))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut counts = Vec::with_capacity(tables.len());
        for (schema, name) in tables {
            let sql = format!(
                "SELECT count(*) FROM {}.{}",
                quote_ident(&schema),
                quote_ident(&name)
            );
            let rows: i64 = self
                .client
                .query_one(sql.as_str(), &[])
                .map_err(|e| self.query_err(&format!("count rows of {schema}.{name}"), &e))?
                .get(0);
            counts.push(TableRows {
                database: None,
                schema: Some(schema),
                name,
                rows: u64::try_from(rows).unwrap_or(0),
            });
        }
        Ok(counts)
    }

    pub(super) fn count_table_rows(&mut self, database: &str) -> Result<Vec<TableRows>> {
        self.connect_to(database)?.count_rows()
    }

    pub(super) fn run_integrity_check(&mut self, database: &str) -> Result<Vec<String>> {
        let program = bin_dir()?.join("pg_amcheck");
        // pg_amcheck verifies heap and B-tree structure; --heapallindexed also checks that every
        // heap tuple is in its indexes. --install-missing adds the amcheck extension. Two
        // connections check two relations at a time (the scratch server has nothing else to do).
        // A failed check exits non-zero with its findings on stdout: not a tool failure.
        let output = crate::process::Tool::new(&program)
            .package("postgresql-client")
            .args([
                "--install-missing",
                "--heapallindexed",
                "--no-dependent-indexes",
                "--jobs=2",
            ])
            // pg_amcheck expands a database name holding '=' as a connection string, so the
            // name is given as one, quoted: `--x=y` stays a name.
            .operands([format!("dbname={}", conninfo_value(database))])
            .envs(libpq_env(&self.args, database))
            .capture()?;
        if output.status.success() {
            return Ok(vec![]);
        }
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(20)
            .map(str::to_string)
            .collect())
    }
}
