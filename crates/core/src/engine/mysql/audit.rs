//! Auditing a MariaDB/MySQL server (db_audit): accounts with SUPER beyond an allow-list,
//! anonymous accounts, root reachable from other hosts, accounts without a password, wildcard
//! hosts, a test database, TLS offered and required, failed-login logging and old versions;
//! and where the server writes its error log, for the failed-login reader.

use serde_json::{Value, json};

use super::*;
use crate::audit::model::{AuditFinding, Severity};
use crate::audit::{finding, old_version, test_database};

/// One account as mysql.global_priv describes it.
struct Account {
    user: String,
    host: String,
    superuser: bool,
    priv_json: Value,
}

impl Account {
    fn label(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// No password and nothing else that authenticates (socket, ed25519...), not locked.
    fn without_password(&self) -> bool {
        let p = &self.priv_json;
        let plugin = p.get("plugin").and_then(Value::as_str).unwrap_or("");
        let secret = p
            .get("authentication_string")
            .and_then(Value::as_str)
            .unwrap_or("");
        let locked = p
            .get("account_locked")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let alternatives = p
            .get("auth_or")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x.get("plugin").is_some()));
        matches!(plugin, "" | "mysql_native_password" | "mysql_old_password")
            && secret.is_empty()
            && !locked
            && !alternatives
    }
}

impl MysqlEngine {
    pub(super) fn run_audit_checks(
        &mut self,
        allowed_superusers: &[String],
    ) -> Result<(Vec<AuditFinding>, Vec<String>)> {
        let mut findings = Vec::new();
        let mut limits = Vec::new();
        match self.accounts() {
            Ok(accounts) => findings.extend(account_findings(&accounts, allowed_superusers)),
            Err(e) => limits.push(format!(
                "mysql.global_priv is not readable ({e}): accounts were not checked (grant SELECT on mysql.* to the audit login)"
            )),
        }
        findings.extend(self.server_findings()?);
        Ok((findings, limits))
    }

    fn accounts(&mut self) -> Result<Vec<Account>> {
        let rows = self.query_rows(
            "read the accounts",
            "SELECT u.User, u.Host, u.Super_priv, g.Priv FROM mysql.user u \
             JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host \
             WHERE u.is_role = 'N' ORDER BY 1, 2",
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(Account {
                    user: text(r, 0)?,
                    host: text(r, 1)?,
                    superuser: text(r, 2).as_deref() == Some("Y"),
                    priv_json: text(r, 3)
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or(Value::Null),
                })
            })
            .collect())
    }

    fn server_findings(&mut self) -> Result<Vec<AuditFinding>> {
        let rows = self.query_rows(
            "read the security settings",
            "SELECT @@version, @@have_ssl, CAST(@@log_warnings AS CHAR), \
             CAST(COALESCE((SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME = 'REQUIRE_SECURE_TRANSPORT'), 'OFF') AS CHAR), \
             CAST(EXISTS (SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'test' OR SCHEMA_NAME LIKE 'test\\_%') AS CHAR)",
        )?;
        let row = rows.first().ok_or_else(|| Error::Query {
            what: "read the security settings".into(),
            target: self.target.clone(),
            cause: "no row".into(),
        })?;
        let version = text(row, 0).unwrap_or_default();
        let mut findings = Vec::new();
        if text(row, 1).as_deref() != Some("YES") {
            findings.push(finding(
                "tls_not_offered",
                "have_ssl",
                Severity::High,
                "the server offers no TLS: passwords and data cross the network in clear",
                json!({"have_ssl": text(row, 1)}),
                "configure ssl_cert, ssl_key and ssl_ca and restart",
                &[
                    "CIS MariaDB: network",
                    "GDPR Art. 32",
                    "HIPAA 164.312(e)(1)",
                ],
            ));
        } else if !matches!(text(row, 3).as_deref(), Some("ON" | "1")) {
            findings.push(finding(
                "tls_not_required",
                "require_secure_transport",
                Severity::Medium,
                "clients may connect without TLS (require_secure_transport is off)",
                json!({"require_secure_transport": text(row, 3)}),
                "SET GLOBAL require_secure_transport = ON (and in the configuration file), or REQUIRE SSL per account",
                &["CIS MariaDB: network", "GDPR Art. 32", "HIPAA 164.312(e)(1)"],
            ));
        }
        if number(row, 2).is_some_and(|w| w < 2.0) {
            findings.push(finding(
                "connection_logging_off",
                "log_warnings",
                Severity::Medium,
                "failed logins are not logged (log_warnings below 2): guessing goes unseen",
                json!({"log_warnings": text(row, 2)}),
                "SET GLOBAL log_warnings = 2 (and in the configuration file)",
                &[
                    "CIS MariaDB: auditing and logging",
                    "HIPAA 164.312(b)",
                    "GDPR Art. 30",
                ],
            ));
        }
        let lower = version.to_ascii_lowercase();
        let (major, minor) = version_parts(&version);
        let (old, oldest) = if lower.contains("mariadb") {
            ((major, minor) < (10, 11), "10.11")
        } else {
            ((major, minor) < (8, 4), "8.4")
        };
        if old {
            findings.push(old_version(&version, oldest));
        }
        if text(row, 4).as_deref() == Some("1") {
            findings.push(test_database());
        }
        Ok(findings)
    }

    /// The error log the server writes (log_error, relative to the data directory).
    pub(super) fn current_log_file(&mut self) -> Result<Option<std::path::PathBuf>> {
        let rows = self.query_rows("read log_error", "SELECT @@log_error, @@datadir")?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let (file, data) = (
            text(row, 0).unwrap_or_default(),
            text(row, 1).unwrap_or_default(),
        );
        // An empty log_error (or stderr) means the error log goes wherever stderr goes.
        if file.is_empty() || file == "stderr" {
            return Ok(None);
        }
        let path = std::path::PathBuf::from(&file);
        Ok(Some(if path.is_absolute() {
            path
        } else {
            std::path::Path::new(&data).join(path)
        }))
    }
}

fn version_parts(version: &str) -> (u32, u32) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn account_findings(accounts: &[Account], allowed: &[String]) -> Vec<AuditFinding> {
    let auth = [
        "CIS MariaDB: authentication",
        "GDPR Art. 32",
        "HIPAA 164.312(d)",
    ];
    let mut findings = Vec::new();
    for a in accounts {
        let label = a.label();
        let evidence = json!({"user": a.user, "host": a.host});
        let drop = format!(
            "DROP USER {}@{}",
            quote_literal(&a.user),
            quote_literal(&a.host)
        );
        if a.superuser && !allowed.contains(&label) {
            findings.push(finding(
                "superuser_account",
                &label,
                Severity::High,
                "an account has SUPER (or ALL PRIVILEGES) beyond the allow-list",
                evidence.clone(),
                &format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {}@{}; grant what it needs, or add it to allowed_superusers with a reason", quote_literal(&a.user), quote_literal(&a.host)),
                &["CIS MariaDB: user privileges", "GDPR Art. 32", "HIPAA 164.312(a)(1)"],
            ));
        }
        if a.user.is_empty() {
            findings.push(finding(
                "anonymous_account",
                &label,
                Severity::High,
                "an anonymous account lets anyone in under any user name",
                evidence.clone(),
                &drop,
                &auth,
            ));
        }
        if a.user == "root" && !matches!(a.host.as_str(), "localhost" | "127.0.0.1" | "::1") {
            findings.push(finding(
                "root_remote",
                &label,
                Severity::Critical,
                "root can log in from another host",
                evidence.clone(),
                &drop,
                &auth,
            ));
        }
        if a.without_password() {
            findings.push(finding(
                "account_without_password",
                &label,
                if a.superuser { Severity::Critical } else { Severity::High },
                "an account has no password and no other authentication",
                evidence.clone(),
                &format!("ALTER USER {}@{} IDENTIFIED BY '...' (or IDENTIFIED VIA unix_socket for local admins, or ACCOUNT LOCK)", quote_literal(&a.user), quote_literal(&a.host)),
                &auth,
            ));
        }
        if a.host.contains('%') {
            findings.push(finding(
                "wildcard_host",
                &label,
                Severity::Medium,
                "the account accepts connections from any matching host",
                evidence,
                "create the account for the hosts or networks that need it, then drop the wildcard one",
                &["CIS MariaDB: network", "GDPR Art. 32"],
            ));
        }
    }
    findings
}
