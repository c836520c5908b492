//! One connection to a MySQL/MariaDB server: options (TLS, timeouts), the small query helpers
//! every statement goes through, and the 0600 option file that hands credentials to the
//! client tools.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, SslOpts};
use tokio::runtime::Runtime;

use crate::connection::{ConnectionArgs, SslMode};
use crate::engine::connect_hint;
use crate::secret::ExposeSecret;
use crate::{Error, Result};

pub struct MysqlEngine {
    pub(super) runtime: Runtime,
    pub(super) conn: Option<Conn>,
    pub(super) target: String,
    pub(super) args: ConnectionArgs,
}

pub(super) fn ssl_opts(args: &ConnectionArgs) -> Option<SslOpts> {
    if args.ssl_mode == SslMode::Disable {
        return None;
    }
    let verify = matches!(args.ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull)
        || (args.ssl_mode == SslMode::Require && args.ca_cert.is_some());
    let mut opts = SslOpts::default()
        .with_danger_accept_invalid_certs(!verify)
        .with_danger_skip_domain_validation(args.ssl_mode != SslMode::VerifyFull);
    if let Some(ca) = &args.ca_cert {
        opts = opts.with_root_certs(vec![ca.clone().into()]);
    }
    Some(opts)
}

pub(super) fn opts(args: &ConnectionArgs, tls: bool) -> OptsBuilder {
    let mut builder = OptsBuilder::default()
        .user(Some(
            args.login_user.clone().unwrap_or_else(|| "root".into()),
        ))
        .pass(crate::secret::expose(&args.login_password))
        .db_name(args.login_db.clone())
        .prefer_socket(false);
    builder = match &args.login_unix_socket {
        Some(socket) => builder.socket(Some(socket.to_string_lossy().into_owned())),
        None => builder
            .ip_or_hostname(
                args.login_host
                    .clone()
                    .unwrap_or_else(|| "localhost".into()),
            )
            .tcp_port(args.port()),
    };
    if tls {
        builder = builder.ssl_opts(ssl_opts(args));
    }
    builder
}

/// The error of a failed statement: what it was for, the server, and the server's words.
fn query_error<'a>(
    what: &'a str,
    target: &'a str,
) -> impl FnOnce(mysql_async::Error) -> Error + 'a {
    move |e| Error::Query {
        what: what.into(),
        target: target.into(),
        cause: e.to_string(),
    }
}

impl MysqlEngine {
    pub fn connect(args: &ConnectionArgs) -> Result<Self> {
        crate::tls::install_provider();
        if args.ssl_mode == SslMode::VerifyCa && args.ca_cert.is_none() {
            return Err(Error::invalid(
                "ca_cert",
                "ssl_mode verify-ca needs ca_cert (the CA's PEM file)",
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::invalid("runtime", e.to_string()))?;
        let target = args.describe();
        let timeout = args.timeout();
        let attempt = |tls: bool| {
            runtime.block_on(async {
                match tokio::time::timeout(timeout, Conn::new(opts(args, tls))).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("connection timed out after {}s", timeout.as_secs())),
                }
            })
        };
        let tls = args.ssl_mode != SslMode::Disable && args.login_unix_socket.is_none();
        let conn = match attempt(tls) {
            Ok(conn) => Ok(conn),
            // "prefer": a server without TLS refuses the handshake; try again in clear text,
            // as libpq and the mysql client do.
            Err(e) if tls && args.ssl_mode == SslMode::Prefer && !e.contains("Access denied") => {
                attempt(false)
            }
            Err(e) => Err(e),
        }
        .map_err(|cause| Error::Connect {
            engine: "mysql",
            target: target.clone(),
            hint: connect_hint(&cause),
            cause,
        })?;
        Ok(MysqlEngine {
            runtime,
            conn: Some(conn),
            target,
            args: args.clone(),
        })
    }

    pub(super) fn query_rows(&mut self, what: &str, sql: &str) -> Result<Vec<Row>> {
        let conn = self.conn.as_mut().expect("connection is open until drop");
        self.runtime
            .block_on(conn.query::<Row, _>(sql))
            .map_err(query_error(what, &self.target))
    }

    pub(super) fn exec_rows(
        &mut self,
        what: &str,
        sql: &str,
        params: Vec<String>,
    ) -> Result<Vec<Row>> {
        let conn = self.conn.as_mut().expect("connection is open until drop");
        self.runtime
            .block_on(conn.exec::<Row, _, _>(sql, params))
            .map_err(query_error(what, &self.target))
    }

    /// Runs one statement given as bytes (a dump's INSERT, passed on as it was read).
    pub(super) fn run_bytes(&mut self, what: &str, sql: &[u8]) -> Result<()> {
        let conn = self.conn.as_mut().expect("connection is open until drop");
        self.runtime
            .block_on(conn.query_drop(sql))
            .map_err(query_error(what, &self.target))
    }

    /// Runs a `LOAD DATA LOCAL INFILE` statement whose file is `data` (sent from memory, no
    /// file is read); returns the rows it added and the warnings it gave.
    pub(super) fn load_local_data(
        &mut self,
        what: &str,
        sql: &str,
        data: bytes::Bytes,
    ) -> Result<(u64, u16)> {
        let conn = self.conn.as_mut().expect("connection is open until drop");
        conn.set_infile_handler(async move {
            Ok(
                Box::pin(futures_util::stream::once(async move { Ok(data) }))
                    as mysql_async::InfileData,
            )
        });
        self.runtime
            .block_on(conn.query_drop(sql))
            .map_err(query_error(what, &self.target))?;
        Ok((conn.affected_rows(), conn.get_warnings()))
    }

    pub(super) fn run(&mut self, what: &str, sql: &str) -> Result<()> {
        self.run_bytes(what, sql.as_bytes())
    }

    /// A private temp directory holding the [client] option file for the command-line tools;
    /// the directory (and the password in it) goes away when the returned guard is dropped.
    pub(super) fn option_file(
        &self,
        server_has_tls: bool,
    ) -> Result<(tempfile::TempDir, std::path::PathBuf)> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::Builder::new()
            .prefix("dbcadence-client.")
            .tempdir()
            .map_err(|e| Error::io("create a private temp directory", std::env::temp_dir(), e))?;
        let path = dir.path().join("client.cnf");
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("write the client option file", &path, e))?;
        f.write_all(client_option_file(&self.args, server_has_tls).as_bytes())
            .map_err(|e| Error::io("write the client option file", &path, e))?;
        Ok((dir, path))
    }

    pub(super) fn server_has_tls(&mut self) -> Result<bool> {
        let rows = self.query_rows("read the TLS settings", "SELECT @@have_ssl")?;
        Ok(rows
            .first()
            .and_then(|r| text(r, 0))
            .is_some_and(|v| v == "YES"))
    }

    pub(super) fn schema_exists(&mut self, name: &str) -> Result<bool> {
        Ok(!self
            .exec_rows(
                "look up a database",
                "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                vec![name.to_string()],
            )?
            .is_empty())
    }
}

impl Drop for MysqlEngine {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = self.runtime.block_on(conn.disconnect());
        }
    }
}

/// A numeric column read as text (the text protocol), parsed.
pub(super) fn number(row: &Row, index: usize) -> Option<f64> {
    text(row, index).and_then(|s| s.parse().ok())
}

pub(super) fn text(row: &Row, index: usize) -> Option<String> {
    row.get_opt::<Option<String>, usize>(index)
        .and_then(|r| r.ok())
        .flatten()
}

pub(super) fn is_on(vars: &BTreeMap<String, String>, name: &str) -> bool {
    vars.get(name).is_some_and(|v| {
        matches!(
            v.to_ascii_uppercase().as_str(),
            "ON" | "FORCE" | "1" | "YES"
        )
    })
}

/// mysql_native_password's stored form: `*` and the upper-case hex of SHA1(SHA1(password)).
pub(super) fn native_password_hash(password: &str) -> String {
    use sha1::{Digest, Sha1};
    let twice = Sha1::digest(Sha1::digest(password.as_bytes()));
    format!(
        "*{}",
        twice.iter().map(|b| format!("{b:02X}")).collect::<String>()
    )
}

/// A value for a MySQL option file, quoted so that `#`, quotes and spaces survive.
pub(super) fn option_value(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The [client] option file the dump tool reads with --defaults-file: credentials and TLS
/// settings stay off its command line (and --defaults-file also keeps /etc/mysql/my.cnf out).
pub(super) fn client_option_file(args: &ConnectionArgs, server_has_tls: bool) -> String {
    let mut lines = vec!["[client]".to_string()];
    lines.push(format!(
        "user={}",
        option_value(args.login_user.as_deref().unwrap_or("root"))
    ));
    if let Some(password) = &args.login_password {
        lines.push(format!(
            "password={}",
            option_value(password.expose_secret())
        ));
    }
    match &args.login_unix_socket {
        Some(socket) => lines.push(format!(
            "socket={}",
            option_value(&socket.to_string_lossy())
        )),
        None => {
            lines.push(format!(
                "host={}",
                option_value(args.login_host.as_deref().unwrap_or("localhost"))
            ));
            lines.push(format!("port={}", args.port()));
            lines.push("protocol=TCP".into());
        }
    }
    // No connect-timeout here: mariadb-dump refuses it (only the mariadb client knows it); the
    // engine has already connected within connect_timeout before the dump starts.
    let tls = match args.ssl_mode {
        SslMode::Disable => false,
        SslMode::Prefer => server_has_tls && args.login_unix_socket.is_none(),
        _ => true,
    };
    if tls {
        lines.push("ssl".into());
        if let Some(ca) = &args.ca_cert {
            lines.push(format!("ssl-ca={}", option_value(&ca.to_string_lossy())));
        }
        if args.ssl_mode == SslMode::VerifyFull {
            lines.push("ssl-verify-server-cert".into());
        }
    } else {
        lines.push("skip-ssl".into());
    }
    lines.join("\n") + "\n"
}
