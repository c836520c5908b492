//! A physical backup made usable: unpack the mbstream, prepare it with mariadb-backup, and
//! start a private mariadbd on it for the checks.

use super::*;
use crate::connection::{ConnectionArgs, EngineKind};
use crate::{Error, Result};

/// Unpacks an mbstream, runs mariadb-backup --prepare and starts mariadbd on the result.
pub fn start_physical_copy(
    stream: &mut dyn std::io::Read,
    work_dir: &std::path::Path,
) -> Result<crate::engine::PhysicalCopy> {
    let dir = tempfile::Builder::new()
        .prefix("dbc-phys.")
        .tempdir_in(work_dir)
        .map_err(|e| Error::io("create the scratch directory", work_dir, e))?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| Error::io("create", &data, e))?;
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
    crate::util::chown_recursive(dir.path(), "mysql")?;
    let pid_file = dir.path().join("mysqld.pid");
    let socket = dir.path().join("s.sock");
    server::start(&server::ServerSpec {
        data_dir: data,
        socket: socket.clone(),
        pid_file: pid_file.clone(),
        log_file: dir.path().join("error.log"),
        tmp_dir: dir.path().to_path_buf(),
        options: [
            "--skip-networking",
            "--skip-grant-tables",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=1G",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
        ]
        .map(String::from)
        .to_vec(),
        timeout: std::time::Duration::from_secs(90),
    })
    .map_err(|e| Error::lab("start mariadbd on the restored backup", e.to_string()))?;
    let connection = ConnectionArgs::local_socket(EngineKind::Mysql, "root", socket, 2);
    let stop = Box::new(move || {
        server::stop(&pid_file, std::time::Duration::from_secs(60));
    });
    Ok(crate::engine::PhysicalCopy::new(dir, connection, stop))
}
