//! A lab PostgreSQL server: a new cluster from initdb (the password from a file, never a
//! command line) or a streaming replica copied from a running primary with pg_basebackup, then
//! started with TLS on its own port and socket.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use super::server::{ServerSpec, pid};
use crate::engine::lab::{LabServer, Primary};
use crate::process::Tool;
use crate::util::{chown_recursive, process_alive};
use crate::{Error, Result};

/// The system user the server runs as.
pub(crate) const SERVICE_USER: &str = "postgres";

/// Brings the server up; a running one is left alone.
pub(crate) fn start(server: &LabServer) -> Result<()> {
    let bin = super::bin_dir()?;
    let files = &server.files;
    let initialised = || files.data_dir.join("PG_VERSION").exists();
    if let Some(primary) = server.primary.as_ref().filter(|_| !initialised()) {
        copy_from_primary(server, primary, &bin)?;
    }
    if !initialised() {
        init_cluster(server)?;
    }
    if pid(&files.data_dir).is_some_and(process_alive) {
        return Ok(());
    }
    super::server::start(&ServerSpec {
        bin_dir: server.bin_dir.map(Path::to_path_buf),
        data_dir: files.data_dir.clone(),
        log_file: files.log_file.clone(),
        settings: settings(server),
        netns: server.netns.map(str::to_string),
        timeout: Duration::from_secs(60),
    })
}

/// A new data directory copied from a running primary; -R writes standby.signal and
/// primary_conninfo, so the copy starts as a streaming replica.
fn copy_from_primary(server: &LabServer, primary: &Primary, bin: &Path) -> Result<()> {
    let files = &server.files;
    let _ = std::fs::remove_dir_all(&files.data_dir);
    std::fs::create_dir_all(&files.socket)
        .map_err(|e| Error::io("create the socket directory", &files.socket, e))?;
    chown_recursive(server.instance_dir, SERVICE_USER)?;
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
        })
}

/// A new cluster from initdb, with the admin login and its password.
fn init_cluster(server: &LabServer) -> Result<()> {
    let files = &server.files;
    let dir = server.instance_dir;
    let _ = std::fs::remove_dir_all(&files.data_dir);
    std::fs::create_dir_all(&files.socket)
        .map_err(|e| Error::io("create the socket directory", &files.socket, e))?;
    // initdb reads the superuser's password from a file: never on a command line.
    let pwfile = dir.join(".initdb-password");
    std::fs::write(&pwfile, server.password).map_err(|e| Error::io("write", &pwfile, e))?;
    std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("set permissions on", &pwfile, e))?;
    chown_recursive(dir, SERVICE_USER)?;
    let result = super::server_program(server.bin_dir, "initdb")?
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
    if server.netns.is_some() {
        // On a test host, clients come from the lab's test network (this machine through the
        // bridge, the runner, the host itself), not from 127.0.0.1.
        let hba = files.data_dir.join("pg_hba.conf");
        let mut text = std::fs::read_to_string(&hba).map_err(|e| Error::io("read", &hba, e))?;
        text.push_str(
            "# dbcadence lab: the test network\n\
             host all all 10.213.0.0/16 scram-sha-256\n\
             host replication all 10.213.0.0/16 scram-sha-256\n",
        );
        std::fs::write(&hba, text).map_err(|e| Error::io("write", &hba, e))?;
    }
    Ok(())
}

/// The server's settings: its port, socket and TLS; for a scratch server durability traded
/// for loading speed.
fn settings(server: &LabServer) -> Vec<(String, String)> {
    let tls = server.tls_dir;
    let mut settings: Vec<(String, String)> = [
        ("port", server.port.to_string()),
        (
            "unix_socket_directories",
            server.files.socket.display().to_string(),
        ),
        ("listen_addresses", server.host.to_string()),
        ("logging_collector", "off".into()),
        // db_tune reads the heaviest statements from pg_stat_statements.
        ("shared_preload_libraries", "pg_stat_statements".into()),
        // db_audit reads connections and failed logins from the log.
        ("log_connections", "on".into()),
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
    settings
}
