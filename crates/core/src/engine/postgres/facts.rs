//! What a PostgreSQL server says about itself: version, role, settings, identity, TLS and
//! at-rest encryption, and its databases (the inventory reads these).

use super::*;

/// Settings reported in the inventory: WAL archiving, logging, TLS and the basics.
const SETTINGS: &[&str] = &[
    "archive_command",
    "archive_mode",
    "data_checksums",
    "data_directory",
    "log_destination",
    "log_directory",
    "logging_collector",
    "max_connections",
    "port",
    "server_encoding",
    "shared_buffers",
    "ssl",
    "wal_level",
];

impl PostgresEngine {
    pub(super) fn read_server_facts(&mut self) -> Result<ServerFacts> {
        let row = self
            .client
            .query_one(
                "SELECT version(), current_setting('server_version'), pg_is_in_recovery(), \
                 pg_postmaster_start_time()::text, \
                 coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                &[],
            )
            .map_err(|e| self.query_err("read the server version", &e))?;
        let version: String = row.get(0);
        // "15.20 (Debian 15.20-0+deb12u1)": the number is the first word.
        let version_number: String = row
            .get::<_, String>(1)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let in_recovery: bool = row.get(2);
        let started_at: String = row.get(3);
        let tls_in_use: bool = row.get(4);

        let names: Vec<&str> = SETTINGS.to_vec();
        let mut settings = BTreeMap::new();
        for row in self
            .client
            .query(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1)",
                &[&names],
            )
            .map_err(|e| self.query_err("read the server settings", &e))?
        {
            settings.insert(row.get::<_, String>(0), row.get::<_, String>(1));
        }
        // The system identifier needs superuser or pg_read_all... rights; without it the data
        // directory and start time still tell aliases apart.
        let system_identifier: Option<String> = self
            .client
            .query_one(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .ok()
            .map(|r| r.get(0));
        let data_directory = settings.get("data_directory").cloned();
        let server_identity = format!(
            "postgresql:{}:{}",
            system_identifier.as_deref().unwrap_or("unknown-system-id"),
            data_directory.as_deref().unwrap_or("unknown-data-dir"),
        );
        let tls_available = settings.get("ssl").is_some_and(|v| v == "on");
        Ok(ServerFacts {
            engine: EngineKind::Postgresql,
            flavour: "postgresql".into(),
            version,
            version_number,
            server_identity,
            started_at: Some(started_at),
            role: if in_recovery { Role::Replica } else { Role::Primary },
            data_directory,
            settings,
            tls_in_use,
            tls_available,
            at_rest: AtRestEncryption {
                status: "not_detectable".into(),
                detail: "PostgreSQL has no built-in data-at-rest encryption; disk or file-system encryption is not visible over SQL".into(),
            },
        })
    }

    pub(super) fn list_databases(&mut self) -> Result<Vec<DatabaseFacts>> {
        let rows = self
            .client
            .query(
                "SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), \
                 d.datcollate, d.datistemplate, \
                 CASE WHEN has_database_privilege(d.oid, 'CONNECT') THEN pg_database_size(d.oid) END \
                 FROM pg_database d ORDER BY d.datname",
                &[],
            )
            .map_err(|e| self.query_err("list databases", &e))?;
        Ok(rows
            .iter()
            .map(|row| {
                let name: String = row.get(0);
                let is_template: bool = row.get(4);
                let kind = if is_template {
                    DatabaseKind::Template
                } else if name == "postgres" {
                    DatabaseKind::System
                } else {
                    DatabaseKind::User
                };
                DatabaseFacts {
                    kind,
                    size_bytes: row
                        .get::<_, Option<i64>>(5)
                        .and_then(|n| u64::try_from(n).ok()),
                    owner: row.get(1),
                    charset: row.get(2),
                    collation: row.get(3),
                    name,
                }
            })
            .collect())
    }
}
