//! Backing up a MariaDB/MySQL database: the dump, physical and restore plans (argv and
//! environment for the tools, never a password on a command line), the globals, and the
//! privileges a dump needs.

use super::*;

impl MysqlEngine {
    pub(super) fn plan_dump(
        &mut self,
        database: &str,
        format: DumpFormat,
        _jobs: u32,
        _work_dir: &std::path::Path,
    ) -> Result<DumpPlan> {
        if format == DumpFormat::Directory {
            return Err(Error::invalid(
                "format",
                "directory is a PostgreSQL format; use custom (SQL text) for MySQL/MariaDB",
            ));
        }
        let program = crate::util::find_program("mariadb-dump")
            .or_else(|_| crate::util::find_program("mysqldump"))?;
        if database.contains('"') && self.has_events(database)? {
            // mariadb-dump 10.11 --events fails with "Unknown database" when selecting such a
            // database: said before anything is written, with the ways around it.
            return Err(Error::invalid(
                "database",
                format!(
                    "mariadb-dump cannot dump the events of '{database}' (a name with a double quote: it fails with \"Unknown database\"); move its events to another database or rename the database, then back it up again"
                ),
            ));
        }
        let vars = self.query_rows(
            "read the binary log and TLS settings",
            "SELECT @@log_bin, @@have_ssl",
        )?;
        let log_bin = vars
            .first()
            .and_then(|r| text(r, 0))
            .is_some_and(|v| v == "1" || v == "ON");
        let has_tls = vars
            .first()
            .and_then(|r| text(r, 1))
            .is_some_and(|v| v == "YES");
        let (secrets, option_file) = self.option_file(has_tls)?;
        let mut args = vec![
            format!("--defaults-file={}", option_file.display()),
            "--single-transaction".into(),
            "--quick".into(),
            "--routines".into(),
            "--events".into(),
            "--triggers".into(),
            "--hex-blob".into(),
            "--default-character-set=utf8mb4".into(),
        ];
        if log_bin {
            // With --single-transaction MariaDB reads the position of the dump's own snapshot
            // (binlog_snapshot_file/pos), without a global read lock.
            args.push("--master-data=2".into());
        }
        // After "--" the name is an operand even when it reads like an option: a database
        // named `--result-file=/etc/passwd` must never become one.
        args.push("--".into());
        args.push(database.to_string());
        let tool = crate::process::Tool::new(&program)
            .arg("--version")
            .read()
            .unwrap_or_default();
        Ok(DumpPlan {
            program,
            args,
            env: vec![],
            tool,
            file_name: "dump.sql",
            output: DumpOutput::Stdout,
            snapshot: serde_json::json!({}),
            counter: None,
            observer: Some(Box::new(DumpRowCounter::default())),
            keep_alive: vec![Box::new(secrets)],
        })
    }

    fn has_events(&mut self, database: &str) -> Result<bool> {
        Ok(!self
            .exec_rows(
                "list the database's events",
                "SELECT 1 FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? LIMIT 1",
                vec![database.to_string()],
            )?
            .is_empty())
    }

    pub(super) fn missing_dump_privileges(&mut self, database: &str) -> Result<Vec<String>> {
        // --single-transaction --routines --events --triggers needs these, globally or on the
        // database; SHOW VIEW only matters when views exist, but a DBA grants it with the rest.
        let granted: Vec<String> = self
            .exec_rows(
                "check the dump privileges",
                "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = CONCAT(QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', 1)), '@', QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', -1))) \
                 UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE TABLE_SCHEMA = ? \
                 AND GRANTEE = CONCAT(QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', 1)), '@', QUOTE(SUBSTRING_INDEX(CURRENT_USER(), '@', -1)))",
                vec![database.to_string()],
            )?
            .iter()
            .filter_map(|r| text(r, 0))
            .collect();
        Ok(["SELECT", "SHOW VIEW", "TRIGGER", "EVENT"]
            .iter()
            .filter(|p| !granted.iter().any(|g| g == *p))
            .map(|p| format!("{p} on {}", quote_ident(database)))
            .collect())
    }

    pub(super) fn plan_physical(&mut self) -> Result<DumpPlan> {
        let program = crate::util::find_program("mariadb-backup").map_err(|_| {
            Error::invalid(
                "method physical",
                "mariadb-backup is missing; install the mariadb-backup package",
            )
        })?;
        let datadir = self
            .query_rows("read the data directory", "SELECT @@datadir")?
            .first()
            .and_then(|r| text(r, 0))
            .ok_or_else(|| {
                Error::invalid(
                    "method physical",
                    "the server did not tell its data directory",
                )
            })?;
        if !std::path::Path::new(&datadir).is_dir() {
            return Err(Error::invalid(
                "method physical",
                format!(
                    "the data directory '{datadir}' is not on this machine; mariadb-backup must run on the database host"
                ),
            ));
        }
        let has_tls = self.server_has_tls()?;
        let (secrets, option_file) = self.option_file(has_tls)?;
        let scratch = tempfile::Builder::new()
            .prefix("dbc-mbk.")
            .tempdir()
            .map_err(|e| Error::io("create a temp dir", std::env::temp_dir(), e))?;
        let tool = crate::process::Tool::new(&program)
            .arg("--version")
            .output()
            .map(|o| {
                // mariadb-backup prints its version on stderr.
                String::from_utf8_lossy(&o.stderr).trim().to_string()
                    + String::from_utf8_lossy(&o.stdout).trim()
            })
            .unwrap_or_default();
        Ok(DumpPlan {
            args: vec![
                format!("--defaults-file={}", option_file.display()),
                "--backup".into(),
                "--stream=mbstream".into(),
                format!("--datadir={datadir}"),
                format!("--target-dir={}", scratch.path().display()),
            ],
            program,
            env: vec![],
            tool,
            file_name: "physical.mbstream",
            output: DumpOutput::Stdout,
            snapshot: serde_json::json!({"method": "physical", "datadir": datadir}),
            counter: None,
            observer: None,
            keep_alive: vec![Box::new(secrets), Box::new(scratch)],
        })
    }

    pub(super) fn read_globals(&mut self) -> Result<GlobalsDump> {
        // SHOW CREATE USER and SHOW GRANTS per account, like pt-show-grants. An account the
        // server cannot use (a host name under skip-name-resolve, for one) is skipped and named,
        // where mariadb-dump --system=users would fail as a whole.
        let accounts: Vec<(String, String)> = self
            .query_rows(
                "list accounts",
                "SELECT User, Host FROM mysql.user ORDER BY User, Host",
            )?
            .iter()
            .filter_map(|r| Some((text(r, 0)?, text(r, 1)?)))
            .collect();
        let mut sql = String::from("-- users and grants, written by dbcadence\n");
        let mut skipped = Vec::new();
        for (user, host) in accounts {
            let account = format!("{}@{}", quote_literal(&user), quote_literal(&host));
            let statements = self
                .query_rows("show the account", &format!("SHOW CREATE USER {account}"))
                .and_then(|create| {
                    Ok((
                        create,
                        self.query_rows("show the grants", &format!("SHOW GRANTS FOR {account}"))?,
                    ))
                });
            match statements {
                Ok((create, grants)) => {
                    for row in create.iter().chain(grants.iter()) {
                        if let Some(statement) = text(row, 0) {
                            sql.push_str(&statement);
                            sql.push_str(";\n");
                        }
                    }
                }
                Err(e) => {
                    sql.push_str(&format!("-- skipped {account}: {e}\n"));
                    skipped.push(format!("{account}: {e}"));
                }
            }
        }
        Ok(GlobalsDump {
            tool: "SHOW CREATE USER / SHOW GRANTS".into(),
            sql: sql.into_bytes(),
            skipped,
        })
    }

    pub(super) fn plan_restore(&mut self, database: &str, _jobs: u32) -> Result<RestorePlan> {
        let program =
            crate::util::find_program("mariadb").or_else(|_| crate::util::find_program("mysql"))?;
        let has_tls = self.server_has_tls()?;
        let (secrets, option_file) = self.option_file(has_tls)?;
        Ok(RestorePlan {
            program,
            args: vec![
                format!("--defaults-file={}", option_file.display()),
                "--default-character-set=utf8mb4".into(),
                "--binary-mode".into(),
                "--".into(),
                database.to_string(),
            ],
            env: vec![],
            input: RestoreInput::Stdin,
            keep_alive: vec![Box::new(secrets)],
        })
    }
}
