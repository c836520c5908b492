//! What a MariaDB/MySQL server says about itself: version, role, settings, identity, TLS and
//! at-rest encryption, and its databases (the inventory reads these).

use super::*;

impl MysqlEngine {
    pub(super) fn read_server_facts(&mut self) -> Result<ServerFacts> {
        let names = VARIABLES
            .iter()
            .map(|v| format!("'{v}'"))
            .collect::<Vec<_>>()
            .join(",");
        let mut vars = BTreeMap::new();
        for row in self.query_rows(
            "read the server variables",
            &format!("SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})"),
        )? {
            if let (Some(k), Some(v)) = (text(&row, 0), text(&row, 1)) {
                vars.insert(k, v);
            }
        }
        let version = vars.get("version").cloned().unwrap_or_default();
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        let flavour = if mariadb { "mariadb" } else { "mysql" };
        let version_number = version
            .split(['-', '+'])
            .next()
            .unwrap_or_default()
            .to_string();
        let hostname = vars.get("hostname").cloned().unwrap_or_default();
        let datadir = vars.get("datadir").cloned();
        // MySQL keeps a server_uuid in auto.cnf; MariaDB has none, so the host name and data
        // directory (which no two running servers share) stand in for it.
        let server_identity = match vars.get("server_uuid") {
            Some(uuid) if !mariadb => format!("mysql:{uuid}"),
            _ => format!("mariadb:{hostname}:{}", datadir.as_deref().unwrap_or("")),
        };
        let uptime = self
            .query_rows("read the uptime", "SELECT CAST(UNIX_TIMESTAMP() - VARIABLE_VALUE AS UNSIGNED) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'")
            .ok()
            .and_then(|rows| rows.first().and_then(|r| text(r, 0)));
        let role = self.replication_role(mariadb);
        let tls_in_use = self
            .query_rows(
                "read the session cipher",
                "SHOW SESSION STATUS LIKE 'Ssl_cipher'",
            )?
            .first()
            .and_then(|r| text(r, 1))
            .is_some_and(|c| !c.is_empty());
        let tls_available = vars.get("have_ssl").is_some_and(|v| v == "YES");
        let at_rest = at_rest_encryption(&vars, mariadb);
        let settings: BTreeMap<String, String> = vars
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "version" | "server_uuid" | "hostname"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(ServerFacts {
            engine: EngineKind::Mysql,
            flavour: flavour.into(),
            version,
            version_number,
            server_identity,
            started_at: uptime,
            role,
            data_directory: datadir,
            settings,
            tls_in_use,
            tls_available,
            at_rest,
        })
    }

    /// A server with replication sources configured is a replica; Unknown when the login may
    /// not see replication status.
    fn replication_role(&mut self, mariadb: bool) -> Role {
        let replica_sql = if mariadb {
            "SHOW ALL SLAVES STATUS"
        } else {
            "SHOW REPLICA STATUS"
        };
        match self.query_rows("read the replication status", replica_sql) {
            Ok(rows) if rows.is_empty() => Role::Primary,
            Ok(_) => Role::Replica,
            Err(_) => Role::Unknown,
        }
    }

    pub(super) fn list_databases(&mut self) -> Result<Vec<DatabaseFacts>> {
        let rows = self.query_rows(
            "list databases",
            "SELECT s.SCHEMA_NAME, s.DEFAULT_CHARACTER_SET_NAME, s.DEFAULT_COLLATION_NAME, \
             CAST(SUM(COALESCE(t.DATA_LENGTH, 0) + COALESCE(t.INDEX_LENGTH, 0)) AS UNSIGNED) \
             FROM information_schema.SCHEMATA s \
             LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME \
             GROUP BY s.SCHEMA_NAME, s.DEFAULT_CHARACTER_SET_NAME, s.DEFAULT_COLLATION_NAME \
             ORDER BY s.SCHEMA_NAME",
        )?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let name = text(row, 0)?;
                let kind = if SYSTEM_SCHEMAS.contains(&name.to_ascii_lowercase().as_str()) {
                    DatabaseKind::System
                } else {
                    DatabaseKind::User
                };
                Some(DatabaseFacts {
                    kind,
                    size_bytes: text(row, 3).and_then(|s| s.parse().ok()),
                    owner: None,
                    charset: text(row, 1),
                    collation: text(row, 2),
                    name,
                })
            })
            .collect())
    }
}

/// Data-at-rest encryption from the server's variables: enabled when every encryption setting
/// the flavour has is on, partial when some are, off when none is.
fn at_rest_encryption(vars: &BTreeMap<String, String>, mariadb: bool) -> AtRestEncryption {
    let checks: &[&str] = if mariadb {
        &[
            "innodb_encrypt_tables",
            "innodb_encrypt_log",
            "encrypt_binlog",
            "aria_encrypt_tables",
            "encrypt_tmp_files",
        ]
    } else {
        &[
            "default_table_encryption",
            "innodb_redo_log_encrypt",
            "binlog_encryption",
        ]
    };
    let present: Vec<&&str> = checks.iter().filter(|c| vars.contains_key(**c)).collect();
    let on: Vec<&&str> = present.iter().copied().filter(|c| is_on(vars, c)).collect();
    let status = match (on.len(), present.len()) {
        (_, 0) => "not_detectable",
        (0, _) => "off",
        (n, m) if n == m => "enabled",
        _ => "partial",
    };
    AtRestEncryption {
        status: status.into(),
        detail: present
            .iter()
            .map(|c| format!("{c}={}", vars.get(**c).map_or("", String::as_str)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}
