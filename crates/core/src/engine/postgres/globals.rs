//! db_restore's globals on PostgreSQL: a pg_dumpall --globals-only file applied statement by
//! statement. A role that exists already keeps its attributes and password (its CREATE ROLE
//! and ALTER ROLE are skipped, or the restore stops, by policy); the server's own superuser
//! and the restoring login are always left alone. A membership whose grantor is missing here
//! is reported, not fatal. pg_dumpall writes one statement a line (role names and passwords
//! are quoted literals, with no line breaks of their own in practice).

use std::collections::BTreeSet;

use super::*;

impl PostgresEngine {
    pub(super) fn apply_globals(&mut self, sql: &str, skip_existing: bool) -> Result<Vec<String>> {
        let existing: BTreeSet<String> = self
            .client
            .query("SELECT rolname::text FROM pg_roles", &[])
            .map_err(|e| self.query_err("list the roles", &e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let built_in: BTreeSet<String> = self
            .client
            .query(
                "SELECT rolname::text FROM pg_roles WHERE oid = 10 OR rolname = current_user",
                &[],
            )
            .map_err(|e| self.query_err("read the built-in roles", &e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // One statement a line; comments and psql meta-commands (\restrict, \connect) are not
        // SQL.
        let statements: Vec<&str> = sql
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("--") && !l.starts_with('\\'))
            .collect();
        let created = |s: &str| s.strip_prefix("CREATE ROLE ").map(role_name);
        let clashing: Vec<String> = statements
            .iter()
            .filter_map(|s| created(s))
            .filter(|r| existing.contains(r) && !built_in.contains(r))
            .collect();
        if !skip_existing && !clashing.is_empty() {
            return Err(Error::invalid(
                "globals",
                format!(
                    "these roles exist on the target already: {}; nothing was applied (globals: skip_existing keeps them as they are)",
                    clashing.join(", ")
                ),
            ));
        }
        let mut done = Vec::new();
        for statement in statements {
            let role =
                created(statement).or_else(|| statement.strip_prefix("ALTER ROLE ").map(role_name));
            if let Some(role) = role.filter(|r| existing.contains(r)) {
                if statement.starts_with("CREATE ROLE ") {
                    done.push(format!("role {role}: exists, left as it is"));
                }
                continue;
            }
            match self.client.batch_execute(statement) {
                Ok(()) if statement.starts_with("CREATE ROLE ") => {
                    done.push(format!(
                        "role {}: created",
                        created(statement).unwrap_or_default()
                    ));
                }
                Ok(()) => {}
                Err(e) if statement.starts_with("GRANT ") => {
                    done.push(format!(
                        "not applied: {statement} ({})",
                        e.as_db_error()
                            .map_or(e.to_string(), |d| d.message().to_string())
                    ));
                }
                Err(e) => return Err(self.query_err("apply the globals", &e)),
            }
        }
        Ok(done)
    }
}

/// The role a CREATE/ALTER ROLE statement names (after the keyword): `"we""ird"` or plain.
fn role_name(rest: &str) -> String {
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    name.push('"');
                    continue;
                }
                break;
            }
            name.push(c);
        }
        return name;
    }
    rest.split([' ', ';']).next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::role_name;

    #[test]
    fn role_names_are_read_quoted_or_plain() {
        assert_eq!(role_name("app_reader;"), "app_reader");
        assert_eq!(role_name("app WITH LOGIN;"), "app");
        assert_eq!(role_name("\"we\"\"ird; r\" WITH LOGIN;"), "we\"ird; r");
    }
}
