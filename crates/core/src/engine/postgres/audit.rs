//! Auditing a PostgreSQL server (db_audit): superusers, pg_hba methods (through
//! pg_hba_file_rules), password_encryption, TLS offered and required, connection logging,
//! CREATE on the public schema, login roles without a password, a test database and old
//! versions; and where the server writes its log, for the failed-login reader.

use serde_json::json;

use super::*;
use crate::audit::model::{AuditFinding, Severity};
use crate::audit::{finding, old_version, test_database};

/// The oldest major version still supported by the PostgreSQL project: a major version is
/// supported for five years; 14 had its last release in November 2026 (as of 2026-11-27).
const OLDEST_SUPPORTED: i32 = 150000;

impl PostgresEngine {
    pub(super) fn run_audit_checks(
        &mut self,
        allowed_superusers: &[String],
    ) -> Result<(Vec<AuditFinding>, Vec<String>)> {
        let mut findings = Vec::new();
        let mut limits = Vec::new();
        findings.extend(self.superusers(allowed_superusers)?);
        match self.hba_rules() {
            Ok(rules) => findings.extend(hba_findings(&rules)),
            Err(e) => limits.push(format!(
                "pg_hba_file_rules is not readable ({e}): authentication methods and TLS requirements were not checked (grant pg_read_all_settings or run as a superuser)"
            )),
        }
        findings.extend(self.settings_findings()?);
        findings.extend(self.public_schema_findings()?);
        match self.roles_without_password() {
            Ok(found) => findings.extend(found),
            Err(_) => limits.push(
                "pg_authid is not readable: login roles without a password were not checked (needs a superuser)"
                    .into(),
            ),
        }
        Ok((findings, limits))
    }

    fn superusers(&mut self, allowed: &[String]) -> Result<Vec<AuditFinding>> {
        let rows = self
            .client
            .query(
                "SELECT rolname::text FROM pg_roles WHERE rolsuper AND rolcanlogin ORDER BY 1",
                &[],
            )
            .map_err(|e| self.query_err("list superusers", &e))?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|name| !allowed.contains(name))
            .map(|name| {
                finding(
                    "superuser_account",
                    &name,
                    Severity::High,
                    "a login role is a superuser beyond the allow-list: it bypasses every permission check",
                    json!({"role": name}),
                    &format!("ALTER ROLE {} NOSUPERUSER; grant the roles it needs (pg_read_all_data, pg_monitor...) instead, or add it to allowed_superusers with a reason", quote_ident(&name)),
                    &["CIS PostgreSQL: user access and authorization", "GDPR Art. 32", "HIPAA 164.312(a)(1)"],
                )
            })
            .collect())
    }

    fn hba_rules(&mut self) -> Result<Vec<HbaRule>> {
        let rows = self
            .client
            .query(
                "SELECT line_number, type, array_to_string(database, ','), array_to_string(user_name, ','), \
                 coalesce(address || coalesce('/' || netmask, ''), ''), auth_method \
                 FROM pg_hba_file_rules WHERE error IS NULL ORDER BY line_number",
                &[],
            )
            .map_err(|e| self.query_err("read pg_hba_file_rules", &e))?;
        Ok(rows
            .iter()
            .map(|r| HbaRule {
                line: r.get(0),
                kind: r.get(1),
                databases: r.get::<_, Option<String>>(2).unwrap_or_default(),
                users: r.get::<_, Option<String>>(3).unwrap_or_default(),
                address: r.get(4),
                method: r.get(5),
            })
            .collect())
    }

    fn settings_findings(&mut self) -> Result<Vec<AuditFinding>> {
        let row = self
            .client
            .query_one(
                "SELECT current_setting('password_encryption'), current_setting('ssl'), \
                 current_setting('log_connections'), current_setting('log_disconnections'), \
                 current_setting('server_version_num')::int, current_setting('server_version'), \
                 EXISTS (SELECT 1 FROM pg_database WHERE datname = 'test' OR datname LIKE 'test\\_%')",
                &[],
            )
            .map_err(|e| self.query_err("read the security settings", &e))?;
        let (encryption, ssl, log_connections, log_disconnections): (
            String,
            String,
            String,
            String,
        ) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let (version_num, version, test_db): (i32, String, bool) =
            (row.get(4), row.get(5), row.get(6));
        let mut findings = Vec::new();
        if encryption != "scram-sha-256" {
            findings.push(finding(
                "password_encryption",
                "password_encryption",
                Severity::Medium,
                "new passwords are stored as MD5 hashes, which leak to anyone who reads them",
                json!({"password_encryption": encryption}),
                "set password_encryption = 'scram-sha-256', reload, then reset each password so that it is stored as SCRAM",
                &["CIS PostgreSQL: connection and login", "GDPR Art. 32", "HIPAA 164.312(d)"],
            ));
        }
        if ssl != "on" {
            findings.push(finding(
                "tls_not_offered",
                "ssl",
                Severity::High,
                "the server offers no TLS: passwords and data cross the network in clear",
                json!({"ssl": ssl}),
                "set ssl = on with ssl_cert_file and ssl_key_file, reload, then require hostssl in pg_hba.conf for remote clients",
                &["CIS PostgreSQL: settings (TLS)", "GDPR Art. 32", "HIPAA 164.312(e)(1)"],
            ));
        }
        for (setting, value) in [
            ("log_connections", log_connections),
            ("log_disconnections", log_disconnections),
        ] {
            if value != "on" {
                findings.push(finding(
                    "connection_logging_off",
                    setting,
                    Severity::Medium,
                    "connections are not logged: who logged in, and from where, cannot be told afterwards",
                    json!({setting: value}),
                    &format!("ALTER SYSTEM SET {setting} = on; SELECT pg_reload_conf();"),
                    &["CIS PostgreSQL: logging and auditing", "HIPAA 164.312(b)", "GDPR Art. 30"],
                ));
            }
        }
        if version_num < OLDEST_SUPPORTED {
            findings.push(old_version(&version, "15"));
        }
        if test_db {
            findings.push(test_database());
        }
        Ok(findings)
    }

    /// CREATE on the public schema for PUBLIC, in every database the login may enter.
    fn public_schema_findings(&mut self) -> Result<Vec<AuditFinding>> {
        let databases: Vec<String> = self
            .client
            .query(
                "SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate \
                 AND has_database_privilege(oid, 'CONNECT') ORDER BY 1",
                &[],
            )
            .map_err(|e| self.query_err("list databases", &e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut findings = Vec::new();
        for database in databases {
            let Ok(mut other) = self.connect_to(&database) else {
                continue;
            };
            let open = other
                .client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public') \
                     AND has_schema_privilege('public', 'public', 'CREATE')",
                    &[],
                )
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false);
            if open {
                findings.push(finding(
                    "public_schema_create",
                    &database,
                    Severity::Medium,
                    "every role may create objects in the public schema (trojan functions, search_path attacks)",
                    json!({"database": database}),
                    &format!("REVOKE CREATE ON SCHEMA public FROM PUBLIC; (in database {})", quote_ident(&database)),
                    &["CIS PostgreSQL: user access and authorization", "GDPR Art. 25"],
                ));
            }
        }
        Ok(findings)
    }

    fn roles_without_password(&mut self) -> Result<Vec<AuditFinding>> {
        let rows = self
            .client
            .query(
                "SELECT rolname::text FROM pg_authid WHERE rolcanlogin AND rolpassword IS NULL ORDER BY 1",
                &[],
            )
            .map_err(|e| self.query_err("read pg_authid", &e))?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .map(|name| {
                finding(
                    "account_without_password",
                    &name,
                    Severity::Medium,
                    "a login role has no password: it gets in wherever pg_hba.conf does not ask for one",
                    json!({"role": name}),
                    &format!("ALTER ROLE {} PASSWORD '...' (or NOLOGIN if nobody should log in as it)", quote_ident(&name)),
                    &["CIS PostgreSQL: connection and login", "GDPR Art. 32", "HIPAA 164.312(d)"],
                )
            })
            .collect())
    }

    /// The file the server writes its log to now (logging_collector), if it says so.
    pub(super) fn current_log_file(&mut self) -> Result<Option<std::path::PathBuf>> {
        let row = self
            .client
            .query_one(
                "SELECT pg_current_logfile(), current_setting('data_directory')",
                &[],
            )
            .map_err(|e| self.query_err("ask for the current log file", &e))?;
        let (file, data): (Option<String>, String) = (row.get(0), row.get(1));
        Ok(file.map(|f| {
            let path = std::path::PathBuf::from(&f);
            if path.is_absolute() {
                path
            } else {
                std::path::Path::new(&data).join(path)
            }
        }))
    }
}

/// One rule of pg_hba.conf.
struct HbaRule {
    line: i32,
    kind: String,
    databases: String,
    users: String,
    address: String,
    method: String,
}

impl HbaRule {
    /// The rule without its method and line: stable while the method is being fixed.
    fn object(&self) -> String {
        format!(
            "{} {} {} {}",
            self.kind, self.databases, self.users, self.address
        )
        .trim_end()
        .to_string()
    }

    fn remote(&self) -> bool {
        self.kind.starts_with("host")
            && !matches!(
                self.address.as_str(),
                "127.0.0.1/255.255.255.255" | "::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
            )
    }
}

fn hba_findings(rules: &[HbaRule]) -> Vec<AuditFinding> {
    let mut findings = Vec::new();
    let tags = [
        "CIS PostgreSQL: connection and login",
        "GDPR Art. 32",
        "HIPAA 164.312(d)",
    ];
    for rule in rules {
        let evidence = json!({"line": rule.line, "type": rule.kind, "database": rule.databases, "user": rule.users, "address": rule.address, "method": rule.method});
        match rule.method.as_str() {
            "trust" => findings.push(finding(
                "pg_hba_trust",
                &rule.object(),
                if rule.kind == "local" { Severity::Medium } else { Severity::Critical },
                if rule.kind == "local" {
                    "any local OS user connects as any role without a password (trust on the socket)"
                } else {
                    "anyone who reaches the address connects as any role without a password (trust)"
                },
                evidence.clone(),
                "use scram-sha-256 (or peer for local admin access) on this line of pg_hba.conf and reload",
                &tags,
            )),
            "password" => findings.push(finding(
                "pg_hba_cleartext_password",
                &rule.object(),
                Severity::High,
                "passwords are sent in clear text (method password)",
                evidence.clone(),
                "use scram-sha-256 on this line of pg_hba.conf and reload",
                &tags,
            )),
            "md5" => findings.push(finding(
                "pg_hba_md5",
                &rule.object(),
                Severity::Medium,
                "md5 challenge-response: a stolen hash is as good as the password",
                evidence.clone(),
                "set password_encryption = scram-sha-256, reset the passwords, then use scram-sha-256 on this line",
                &tags,
            )),
            _ => {}
        }
        if rule.remote()
            && matches!(rule.kind.as_str(), "host" | "hostnossl")
            && rule.method != "reject"
        {
            findings.push(finding(
                "tls_not_required",
                &rule.object(),
                Severity::Medium,
                "remote clients may connect without TLS (host or hostnossl line)",
                evidence,
                "use hostssl for remote addresses in pg_hba.conf and reload",
                &[
                    "CIS PostgreSQL: settings (TLS)",
                    "GDPR Art. 32",
                    "HIPAA 164.312(e)(1)",
                ],
            ));
        }
    }
    findings
}
