//! Backing up a PostgreSQL database: the dump, physical and restore plans (argv and
//! environment for the tools, never a password on a command line), the globals, and the
//! privileges a dump needs.

use super::*;

impl PostgresEngine {
    pub(super) fn plan_dump(
        &mut self,
        database: &str,
        format: DumpFormat,
        jobs: u32,
        work_dir: &Path,
    ) -> Result<DumpPlan> {
        let program = bin_dir()?.join("pg_dump");
        if !program.exists() {
            return Err(Error::invalid(
                "PostgreSQL tools",
                format!(
                    "{} is missing; install the postgresql-client package",
                    program.display()
                ),
            ));
        }
        // A repeatable-read transaction exports its snapshot: pg_dump --snapshot dumps exactly
        // what this transaction sees, so the row counts below match the dump.
        let mut holder = self.connect_to(database)?;
        let what = "open the backup snapshot";
        let row = holder
            .client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .and_then(|_| {
                holder.client.query_one(
                    "SELECT pg_export_snapshot(), \
                     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text, \
                     pg_is_in_recovery()",
                    &[],
                )
            })
            .map_err(|e| holder.query_err(what, &e))?;
        let snapshot_id: String = row.get(0);
        let lsn: Option<String> = row.get(1);
        let in_recovery: bool = row.get(2);
        // Uncompressed: dbcadence compresses with zstd, much faster than pg_dump's zlib.
        let mut args = vec![
            "--compress=0".to_string(),
            format!("--snapshot={snapshot_id}"),
        ];
        let (file_name, output) = match format {
            DumpFormat::Custom => {
                args.push("--format=custom".into());
                ("dump.pgcustom", DumpOutput::Stdout)
            }
            DumpFormat::Directory => {
                let dir = work_dir.join("dump.pgdir");
                args.extend([
                    "--format=directory".into(),
                    format!("--jobs={}", jobs.max(1)),
                    "--no-sync".into(),
                    "--file".into(),
                    dir.to_string_lossy().into_owned(),
                ]);
                ("dump.pgdir", DumpOutput::Directory(dir))
            }
        };
        Ok(DumpPlan {
            tool: tool_version(&program),
            args,
            env: libpq_env(&self.args, database),
            program,
            file_name,
            output,
            snapshot: serde_json::json!({"lsn": lsn, "exported_snapshot": snapshot_id, "from_replica": in_recovery}),
            // Counting scans every table: it runs beside pg_dump in the same exported snapshot
            // instead of before it, and keeps the exporting transaction open until handed back.
            counter: Some(Box::new(move || {
                let counts = holder.count_rows();
                (counts, Box::new(holder) as Box<dyn std::any::Any + Send>)
            })),
            observer: None,
            keep_alive: vec![],
        })
    }

    pub(super) fn missing_dump_privileges(&mut self, database: &str) -> Result<Vec<String>> {
        let mut other = self.connect_to(database)?;
        let rows = other
            .client
            .query(
                "SELECT CASE WHEN NOT has_schema_privilege(n.oid, 'USAGE') THEN 'USAGE on schema ' || quote_ident(n.nspname) \
                 ELSE 'SELECT on ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) END \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND n.nspname NOT LIKE 'pg\\_toast%' \
                 AND (NOT has_schema_privilege(n.oid, 'USAGE') OR NOT has_table_privilege(c.oid, 'SELECT')) \
                 ORDER BY 1 LIMIT 10",
                &[],
            )
            .map_err(|e| other.query_err("check the dump privileges", &e))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    pub(super) fn plan_physical(&mut self) -> Result<DumpPlan> {
        let program = bin_dir()?.join("pg_basebackup");
        // One tar on stdout holding the data, the WAL needed to make it consistent (fetch) and
        // the backup_manifest that pg_verifybackup checks at verification.
        Ok(DumpPlan {
            tool: tool_version(&program),
            args: [
                "-D",
                "-",
                "--format=tar",
                "--wal-method=fetch",
                "--checkpoint=fast",
            ]
            .map(String::from)
            .to_vec(),
            env: libpq_env(
                &self.args,
                self.args.login_db.as_deref().unwrap_or("postgres"),
            ),
            program,
            file_name: "physical.tar",
            output: DumpOutput::Stdout,
            snapshot: serde_json::json!({"method": "physical", "user": self.args.login_user.clone().unwrap_or_else(|| "postgres".into())}),
            counter: None,
            observer: None,
            keep_alive: vec![],
        })
    }

    pub(super) fn read_globals(&mut self) -> Result<GlobalsDump> {
        let program = bin_dir()?.join("pg_dumpall");
        // Role password hashes are included: restoring roles without them locks users out.
        let output = crate::process::Tool::new(&program)
            .package("postgresql-client")
            .arg("--globals-only")
            .envs(libpq_env(
                &self.args,
                self.args.login_db.as_deref().unwrap_or("postgres"),
            ))
            .output()?;
        Ok(GlobalsDump {
            tool: tool_version(&program),
            sql: output.stdout,
            skipped: vec![],
        })
    }

    pub(super) fn plan_restore(&mut self, database: &str, jobs: u32) -> Result<RestorePlan> {
        let program = bin_dir()?.join("pg_restore");
        // Roles of the source server need not exist here: objects belong to the restoring user.
        // pg_restore needs --dbname to restore at all; given as a connection string, a name
        // holding '=' or spaces cannot be misread.
        Ok(RestorePlan {
            program,
            args: vec![
                "--no-owner".into(),
                "--no-privileges".into(),
                "--exit-on-error".into(),
                format!("--jobs={}", jobs.max(1)),
                format!("--dbname=dbname={}", conninfo_value(database)),
            ],
            env: libpq_env(&self.args, database),
            input: RestoreInput::File,
            keep_alive: vec![],
        })
    }
}
