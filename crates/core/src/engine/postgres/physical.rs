//! A physical backup made usable: unpack the pg_basebackup tar into a data directory, check
//! it with pg_verifybackup, and start a private postgres on it (socket only, local trust):
//! for verification's checks (a throwaway copy) or for db_restore (a directory the user
//! named, left running).

use std::path::Path;

use super::{bin_dir, server};
use crate::connection::{ConnectionArgs, EngineKind};
use crate::{Error, Result};

/// Unpacks a pg_basebackup tar into `data` (new or empty), checks it with pg_verifybackup,
/// and hands it to the postgres user, mode 0700.
pub fn unpack(stream: &mut dyn std::io::Read, data: &Path) -> Result<()> {
    std::fs::create_dir_all(data).map_err(|e| Error::io("create", data, e))?;
    let tar = crate::util::find_program("tar")?;
    crate::util::feed_command(
        &tar,
        &["-x".as_ref(), "-C".as_ref(), data.as_os_str()],
        stream,
    )?;
    // The source's configuration may live elsewhere (Debian keeps it in /etc): an empty one
    // lets the server start with its defaults.
    let conf = data.join("postgresql.conf");
    if !conf.exists() {
        std::fs::write(&conf, "").map_err(|e| Error::io("write", &conf, e))?;
    }
    crate::util::chown_recursive(data, "postgres")?;
    std::fs::set_permissions(data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| Error::io("set permissions on", data, e))?;
    // pg_verifybackup runs pg_waldump through /bin/sh with the path it was given: a relative
    // "." from inside the data directory keeps the path (quotes, spaces) out of it.
    crate::process::Tool::new(bin_dir()?.join("pg_verifybackup"))
        .package("postgresql-client")
        .arg(".")
        .current_dir(data)
        .as_user("postgres")
        .run()
}

/// Starts postgres on `data`: no TCP, a socket in `socket_dir`, local trust through an hba
/// file of our own (`hba`; the backup's pg_hba.conf is left as it is), the source's
/// configuration otherwise. Returns how to reach it as `user`.
pub fn start(
    data: &Path,
    socket_dir: &Path,
    hba: &Path,
    log_file: &Path,
    user: &str,
    scratch: bool,
) -> Result<ConnectionArgs> {
    std::fs::write(hba, "local all all trust\n").map_err(|e| Error::io("write", hba, e))?;
    crate::util::chown_recursive(hba, "postgres")?;
    let socket = socket_dir.display().to_string();
    let mut settings = vec![
        ("listen_addresses", ""),
        ("unix_socket_directories", socket.as_str()),
        ("port", "5432"),
        ("ssl", "off"),
        ("archive_mode", "off"),
        ("logging_collector", "off"),
    ];
    let hba_path = hba.display().to_string();
    settings.push(("hba_file", hba_path.as_str()));
    if scratch {
        // A throwaway copy for checks: durability is not needed.
        settings.extend([
            ("fsync", "off"),
            ("full_page_writes", "off"),
            ("max_wal_senders", "0"),
            ("wal_level", "minimal"),
        ]);
    }
    server::start(&server::ServerSpec {
        netns: None,
        bin_dir: None,
        data_dir: data.to_path_buf(),
        log_file: log_file.to_path_buf(),
        settings: settings
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        timeout: std::time::Duration::from_secs(120),
    })
    .map_err(|e| Error::lab("start postgres on the restored backup", e.to_string()))?;
    Ok(ConnectionArgs {
        login_port: Some(5432),
        ..ConnectionArgs::local_socket(EngineKind::Postgresql, user, socket_dir.to_path_buf(), 5)
    })
}

/// A throwaway copy for verification: unpacked, checked and started in a temp directory
/// under `work_dir`, stopped and removed on drop.
pub fn start_physical_copy(
    stream: &mut dyn std::io::Read,
    work_dir: &Path,
    user: &str,
) -> Result<crate::engine::PhysicalCopy> {
    let dir = tempfile::Builder::new()
        .prefix("dbc-phys.")
        .tempdir_in(work_dir)
        .map_err(|e| Error::io("create the scratch directory", work_dir, e))?;
    let data = dir.path().join("data");
    unpack(stream, &data)?;
    crate::util::chown_recursive(dir.path(), "postgres")?;
    let connection = start(
        &data,
        dir.path(),
        &dir.path().join("hba.conf"),
        &dir.path().join("server.log"),
        user,
        true,
    )?;
    let stop = Box::new(move || {
        server::stop(&data, std::time::Duration::from_secs(30));
    });
    Ok(crate::engine::PhysicalCopy::new(dir, connection, stop))
}
