//! A lab PostgreSQL server: a new cluster from initdb (the password from a file, never a
//! command line) or a streaming replica copied from a running primary with pg_basebackup, then
//! started with TLS on its own port and socket.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::server::{ServerSpec, pid};
use crate::engine::lab::LabServer;
use crate::process::Tool;
use crate::util::{chown_recursive, process_alive};
use crate::{Error, Result};

/// The system user the server runs as.
pub(crate) const SERVICE_USER: &str = "postgres";

/// Brings the server up; a running one is left alone.
pub(crate) fn start(server: &LabServer) -> Result<()> {
    let bin = super::bin_dir()?;
    let dir = server.instance_dir;
    let files = &server.files;
    if let Some(primary) = server
        .primary
        .as_ref()
        .filter(|_| !files.data_dir.join("PG_VERSION").exists())
    {
        let _ = std::fs::remove_dir_all(&files.data_dir);
        std::fs::create_dir_all(&files.socket)
            .map_err(|e| Error::io("create the socket directory", &files.socket, e))?;
        chown_recursive(dir, SERVICE_USER)?;
        // -R writes standby.signal and primary_conninfo: the copy starts as a streaming replica.
        let args = vec![
            "-h".to_string(),
            primary.socket.to_string_lossy().into_owned(),
            "-p".into(),
            primary.port.to_string(),
            "-U".into(),
            primary.user.to_string(),
            "-D".into(),
            files.data_dir.to_string_lossy().into_owned(),
            "-R".into(),
            "-X".into(),
            "stream".into(),
            "--no-sync".into(),
        ];
        Tool::new(bin.join("pg_basebackup"))
            .args(args)
            .as_user("postgres")
            .run()
            .map_err(|e| {
                Error::lab(
                    format!("{} pg_basebackup from {}", server.name, primary.name),
                    e.to_string(),
                )
            })?;
    }
    if !files.data_dir.join("PG_VERSION").exists() {
        let _ = std::fs::remove_dir_all(&files.data_dir);
        std::fs::create_dir_all(&files.socket)
            .map_err(|e| Error::io("create the socket directory", &files.socket, e))?;
        // initdb reads the superuser's password from a file: never on a command line.
        let pwfile = dir.join(".initdb-password");
        std::fs::write(&pwfile, server.password).map_err(|e| Error::io("write", &pwfile, e))?;
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("set permissions on", &pwfile, e))?;
        chown_recursive(dir, SERVICE_USER)?;
        let result = Tool::new(bin.join("initdb"))
            .package("postgresql")
            .as_user("postgres")
            .args::<Vec<String>, String>(vec![
                "-D".into(),
                files.data_dir.to_string_lossy().into_owned(),
                "-U".into(),
                server.user.to_string(),
                format!("--pwfile={}", pwfile.display()),
                "--auth-local=trust".into(),
                "--auth-host=scram-sha-256".into(),
                "-E".into(),
                "UTF8".into(),
                "--locale=C.UTF-8".into(),
                "--no-sync".into(),
            ])
            .run();
        let _ = std::fs::remove_file(&pwfile);
        result.map_err(|e| Error::lab(format!("{} initdb", server.name), e.to_string()))?;
    }
    if pid(&files.data_dir).is_some_and(process_alive) {
        return Ok(());
    }
    let tls = server.tls_dir;
    let mut settings: Vec<(String, String)> = [
        ("port", server.port.to_string()),
        (
            "unix_socket_directories",
            files.socket.display().to_string(),
        ),
        ("listen_addresses", server.host.to_string()),
        ("logging_collector", "off".into()),
        ("ssl", "on".into()),
        (
            "ssl_cert_file",
            tls.join("server.pem").display().to_string(),
        ),
        ("ssl_key_file", tls.join("server.key").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if server.tuned_for_loading {
        settings.extend(
            [
                ("fsync", "off"),
                ("full_page_writes", "off"),
                ("synchronous_commit", "off"),
                ("max_wal_size", "4GB"),
                ("maintenance_work_mem", "512MB"),
                ("autovacuum", "off"),
                ("wal_level", "minimal"),
                ("max_wal_senders", "0"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
    }
    super::server::start(&ServerSpec {
        data_dir: files.data_dir.clone(),
        log_file: files.log_file.clone(),
        settings,
        timeout: Duration::from_secs(60),
    })
}
