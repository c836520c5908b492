//! A physical backup made usable: unpack the pg_basebackup tar, check it with
//! pg_verifybackup, and start a private postgres on it (socket only, local trust) for the
//! checks.

use std::path::Path;

use super::{bin_dir, server};
use crate::connection::{ConnectionArgs, EngineKind};
use crate::{Error, Result};

/// Unpacks a pg_basebackup tar, checks it with pg_verifybackup, and starts postgres on it.
pub fn start_physical_copy(
    stream: &mut dyn std::io::Read,
    work_dir: &Path,
    user: &str,
) -> Result<crate::engine::PhysicalCopy> {
    let bin = bin_dir()?;
    let dir = tempfile::Builder::new()
        .prefix("dbc-phys.")
        .tempdir_in(work_dir)
        .map_err(|e| Error::io("create the scratch directory", work_dir, e))?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| Error::io("create", &data, e))?;
    let tar = crate::util::find_program("tar")?;
    crate::util::feed_command(
        &tar,
        &["-x".as_ref(), "-C".as_ref(), data.as_os_str()],
        stream,
    )?;
    // The source's configuration may point at files that are not here (certificates, hba):
    // a minimal configuration of our own, local trust on a private socket.
    let conf = data.join("postgresql.conf");
    if !conf.exists() {
        std::fs::write(&conf, "").map_err(|e| Error::io("write", &conf, e))?;
    }
    let hba = dir.path().join("hba.conf");
    std::fs::write(&hba, "local all all trust\n").map_err(|e| Error::io("write", &hba, e))?;
    crate::util::chown_recursive(dir.path(), "postgres")?;
    let _ = std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    // pg_verifybackup runs pg_waldump through /bin/sh with the path it was given: a relative
    // "." from inside the data directory keeps the scratch path (quotes, spaces) out of it.
    crate::process::Tool::new(bin.join("pg_verifybackup"))
        .package("postgresql-client")
        .arg(".")
        .current_dir(&data)
        .as_user("postgres")
        .run()?;
    let socket_dir = dir.path().display().to_string();
    let settings = [
        ("listen_addresses", ""),
        ("unix_socket_directories", socket_dir.as_str()),
        ("port", "5432"),
        ("hba_file", &hba.display().to_string()),
        ("ssl", "off"),
        ("fsync", "off"),
        ("full_page_writes", "off"),
        ("archive_mode", "off"),
        ("logging_collector", "off"),
        ("max_wal_senders", "0"),
        ("wal_level", "minimal"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    server::start(&server::ServerSpec {
        bin_dir: None,
        data_dir: data.clone(),
        log_file: dir.path().join("server.log"),
        settings,
        timeout: std::time::Duration::from_secs(120),
    })
    .map_err(|e| Error::lab("start postgres on the restored backup", e.to_string()))?;
    let connection = ConnectionArgs {
        login_port: Some(5432),
        ..ConnectionArgs::local_socket(EngineKind::Postgresql, user, dir.path().to_path_buf(), 5)
    };
    // A postgres started on the copy: socket only, local trust, durability off; stopped on
    // drop.
    let stop = Box::new(move || {
        server::stop(&data, std::time::Duration::from_secs(30));
    });
    Ok(crate::engine::PhysicalCopy::new(dir, connection, stop))
}
