//! Proving a restored MariaDB/MySQL database: exact row counts, the integrity check, and the
//! definitions of its objects (SHOW CREATE) to compare with the source's.

use super::*;

impl MysqlEngine {
    /// The base tables of `database`, by name.
    fn table_names(&mut self, database: &str) -> Result<Vec<String>> {
        Ok(self
            .exec_rows(
                "list tables",
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1",
                vec![database.to_string()],
            )?
            .iter()
            .filter_map(|r| text(r, 0))
            .collect())
    }

    pub(super) fn count_table_rows(&mut self, database: &str) -> Result<Vec<TableRows>> {
        let names = self.table_names(database)?;
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
                database: None,
                schema: None,
                name,
                rows,
            });
        }
        Ok(counts)
    }

    pub(super) fn run_integrity_check(&mut self, database: &str) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        // The names only: counting every table here would scan it once more than the
        // verification's own row counts do.
        for table in self.table_names(database)? {
            let sql = format!(
                "CHECK TABLE {}.{}",
                quote_ident(database),
                quote_ident(&table)
            );
            for row in self.query_rows(&format!("check table {table}"), &sql)? {
                let (kind, message) = (
                    text(&row, 2).unwrap_or_default(),
                    text(&row, 3).unwrap_or_default(),
                );
                if kind.eq_ignore_ascii_case("error")
                    || (kind.eq_ignore_ascii_case("status") && !message.eq_ignore_ascii_case("OK"))
                {
                    problems.push(format!("{table}: {kind}: {message}"));
                }
            }
        }
        Ok(problems)
    }

    /// SHOW CREATE of every table, view, routine, trigger and event of `database`, in a
    /// session whose time zone is UTC (SHOW CREATE shows timestamps in the session's zone).
    /// An object the login may not see the definition of is left out.
    pub(super) fn read_object_definitions(
        &mut self,
        database: &str,
    ) -> Result<Vec<crate::engine::ObjectDefinition>> {
        self.run("set the session time zone", "SET time_zone = '+00:00'")?;
        let objects: Vec<(String, String)> = self
            .exec_rows(
                "list the database's objects",
                "SELECT IF(TABLE_TYPE = 'VIEW', 'view', 'table'), TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
                 UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? \
                 UNION ALL SELECT 'trigger', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? \
                 UNION ALL SELECT 'event', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? \
                 ORDER BY 1, 2",
                vec![database.to_string(); 4],
            )?
            .iter()
            .filter_map(|r| Some((text(r, 0)?, text(r, 1)?)))
            .collect();
        let auto_increment = regex::Regex::new(r" AUTO_INCREMENT=[0-9]+").expect("a valid pattern");
        let mut definitions = Vec::with_capacity(objects.len());
        for (kind, name) in objects {
            // Where SHOW CREATE puts the definition.
            let column = match kind.as_str() {
                "table" | "view" => 1,
                "event" => 3,
                _ => 2,
            };
            let sql = format!(
                "SHOW CREATE {} {}.{}",
                kind.to_uppercase(),
                quote_ident(database),
                quote_ident(&name)
            );
            let shown = self.query_rows(&format!("show the definition of {kind} {name}"), &sql)?;
            let Some(definition) = shown.first().and_then(|r| text(r, column)) else {
                continue;
            };
            let definition = if kind == "table" {
                auto_increment.replace(&definition, "").into_owned()
            } else {
                definition
            };
            definitions.push(crate::engine::ObjectDefinition {
                kind,
                name,
                definition,
            });
        }
        Ok(definitions)
    }
}
