//! db_restore's globals on MariaDB/MySQL: our own users-and-grants file (SHOW CREATE USER and
//! SHOW GRANTS per account, in that order) applied statement by statement. An account that
//! exists already keeps its password and grants (its statements are skipped, or the restore
//! stops, by policy); root, the system accounts and the restoring login are always left alone.

use std::collections::BTreeSet;

use super::*;

/// Accounts every server has: never created, never changed by a restore.
const BUILT_IN_USERS: [&str; 4] = ["root", "mariadb.sys", "mysql", "PUBLIC"];

impl MysqlEngine {
    pub(super) fn apply_globals(&mut self, sql: &str, skip_existing: bool) -> Result<Vec<String>> {
        let rows = self.query_rows(
            "list the accounts",
            "SELECT User, Host, CURRENT_USER() FROM mysql.user",
        )?;
        let me = rows.first().and_then(|r| text(r, 2)).unwrap_or_default();
        let mut existing = BTreeSet::new();
        let mut built_in = BTreeSet::new();
        for row in &rows {
            let (user, host) = (
                text(row, 0).unwrap_or_default(),
                text(row, 1).unwrap_or_default(),
            );
            let account = format!("{}@{}", quote_ident(&user), quote_ident(&host));
            if BUILT_IN_USERS.contains(&user.as_str()) || me == format!("{user}@{host}") {
                built_in.insert(account.clone());
            }
            existing.insert(account);
        }
        let statements: Vec<&str> = sql
            .split(";\n")
            .map(str::trim)
            .filter(|s| !s.is_empty() && !s.starts_with("--"))
            .collect();
        let created = |s: &str| {
            s.strip_prefix("CREATE USER ")
                .and_then(|rest| rest.split(' ').next())
                .map(str::to_string)
        };
        let clashing: Vec<String> = statements
            .iter()
            .filter_map(|s| created(s))
            .filter(|a| existing.contains(a) && !built_in.contains(a))
            .collect();
        if !skip_existing && !clashing.is_empty() {
            return Err(Error::invalid(
                "globals",
                format!(
                    "these accounts exist on the target already: {}; nothing was applied (globals: skip_existing keeps them as they are)",
                    clashing.join(", ")
                ),
            ));
        }
        let mut done = Vec::new();
        // The statements come grouped per account, its CREATE USER first.
        let mut skipping = false;
        for statement in statements {
            if let Some(account) = created(statement) {
                skipping = existing.contains(&account);
                done.push(if skipping {
                    format!("account {account}: exists, left as it is")
                } else {
                    format!("account {account}: created with its grants")
                });
            }
            if !skipping {
                self.run("apply the globals", statement)?;
            }
        }
        Ok(done)
    }
}
