//! A physical backup made usable: unpack the mbstream into a data directory, prepare it with
//! mariadb-backup, and start a private mariadbd on it (no networking, a socket in a private
//! directory): for verification's checks (a throwaway copy) or for db_restore (a directory the
//! user named, left running).

use std::path::Path;

use super::*;
use crate::connection::{ConnectionArgs, EngineKind};
use crate::{Error, Result};

/// Unpacks an mbstream into `data` (new or empty), runs mariadb-backup --prepare and hands
/// it to the mysql user, mode 0700.
pub fn unpack(stream: &mut dyn std::io::Read, data: &Path) -> Result<()> {
    std::fs::create_dir_all(data).map_err(|e| Error::io("create", data, e))?;
    let mbstream = crate::util::find_program("mbstream").map_err(|_| {
        Error::invalid(
            "method physical",
            "mbstream is missing; install the mariadb-backup package",
        )
    })?;
    crate::util::feed_command(
        &mbstream,
        &["-x".as_ref(), "-C".as_ref(), data.as_os_str()],
        stream,
    )?;
    crate::process::Tool::find("mariadb-backup")?
        .package("mariadb-backup")
        .arg("--prepare")
        .arg(format!("--target-dir={}", data.display()))
        .run()?;
    crate::util::chown_recursive(data, "mysql")?;
    std::fs::set_permissions(data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| Error::io("set permissions on", data, e))
}

/// Starts mariadbd on `data` with no networking and its socket, pid file and log in
/// `run_dir` (which the mysql user must be able to write). Verification's copy also skips
/// the grant tables (its checks run as root on a throwaway server); a restored server keeps
/// its accounts. Returns how to reach it, and its pid file.
pub fn start(
    data: &Path,
    run_dir: &Path,
    scratch: bool,
) -> Result<(ConnectionArgs, std::path::PathBuf)> {
    let pid_file = run_dir.join("mysqld.pid");
    let socket = run_dir.join("mysqld.sock");
    let mut options = vec!["--skip-networking", "--skip-log-bin"];
    if scratch {
        options.extend([
            "--skip-grant-tables",
            "--innodb-buffer-pool-size=1G",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
        ]);
    }
    server::start(&server::ServerSpec {
        netns: None,
        data_dir: data.to_path_buf(),
        socket: socket.clone(),
        pid_file: pid_file.clone(),
        log_file: run_dir.join("error.log"),
        tmp_dir: run_dir.to_path_buf(),
        options: options.into_iter().map(String::from).collect(),
        timeout: std::time::Duration::from_secs(90),
    })
    .map_err(|e| Error::lab("start mariadbd on the restored backup", e.to_string()))?;
    Ok((
        ConnectionArgs::local_socket(EngineKind::Mysql, "root", socket, 2),
        pid_file,
    ))
}

/// A throwaway copy for verification: unpacked, prepared and started in a temp directory
/// under `work_dir`, stopped and removed on drop.
pub fn start_physical_copy(
    stream: &mut dyn std::io::Read,
    work_dir: &std::path::Path,
) -> Result<crate::engine::PhysicalCopy> {
    let dir = tempfile::Builder::new()
        .prefix("dbc-phys.")
        .tempdir_in(work_dir)
        .map_err(|e| Error::io("create the scratch directory", work_dir, e))?;
    let data = dir.path().join("data");
    unpack(stream, &data)?;
    crate::util::chown_recursive(dir.path(), "mysql")?;
    let (connection, pid_file) = start(&data, dir.path(), true)?;
    let stop = Box::new(move || {
        server::stop(&pid_file, std::time::Duration::from_secs(60));
    });
    Ok(crate::engine::PhysicalCopy::new(dir, connection, stop))
}
