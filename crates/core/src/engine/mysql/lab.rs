//! A lab MariaDB server: system tables from mariadb-install-db, mariadbd started with TLS and a
//! binary log (or tuned for loading, for verification's scratch servers), then bootstrapped
//! over its socket as root: the admin login is created from a password hash, never SQL text
//! holding the password.

use std::time::{Duration, Instant};

use super::server::{ServerSpec, install, pid};
use crate::connection::{ConnectionArgs, EngineKind};
use crate::engine::lab::LabServer;
use crate::util::{chown_recursive, process_alive};
use crate::{Error, Result};

/// The system user the server runs as.
pub(crate) const SERVICE_USER: &str = "mysql";

/// Brings the server up and makes sure the admin login exists; a running one is left alone.
pub(crate) fn start(server: &LabServer) -> Result<()> {
    let dir = server.instance_dir;
    let files = &server.files;
    // A private temp dir: parallel mariadb-install-db runs sharing /tmp were seen to trip over
    // each other's temporary tables ("Unknown table 'mysql.tmp_user_sys'").
    let tmpdir = dir.join("tmp");
    std::fs::create_dir_all(&tmpdir)
        .map_err(|e| Error::io("create the temp directory", &tmpdir, e))?;
    if !files.data_dir.join("mysql").is_dir() {
        let _ = std::fs::remove_dir_all(&files.data_dir);
        chown_recursive(dir, SERVICE_USER)?;
        install(&files.data_dir, &tmpdir).map_err(|e| {
            Error::lab(format!("{} mariadb-install-db", server.name), e.to_string())
        })?;
    }
    let running = || pid(&files.pid_file).is_some_and(process_alive);
    if !running() {
        let _ = std::fs::remove_file(&files.pid_file);
        let tls = server.tls_dir;
        let mut options = vec![
            format!("--port={}", server.port),
            format!("--bind-address={}", server.host),
            "--skip-name-resolve".into(),
            // Unique per server: lab servers can replicate from one another.
            format!("--server-id={}", server.port),
            // db_tune reads statement digests and index usage from performance_schema; a
            // scratch server for restores has no use for it (it costs CPU while loading).
            format!(
                "--performance-schema={}",
                if server.tuned_for_loading {
                    "OFF"
                } else {
                    "ON"
                }
            ),
            format!("--ssl-cert={}", tls.join("server.pem").display()),
            format!("--ssl-key={}", tls.join("server.key").display()),
            format!("--ssl-ca={}", tls.join("ca.pem").display()),
        ];
        if server.tuned_for_loading {
            // Reference pitfall 7: the default 128 MB buffer pool makes a restore 5x slower.
            options.extend(
                [
                    "--skip-log-bin",
                    "--innodb-buffer-pool-size=2G",
                    "--innodb-log-file-size=1G",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-doublewrite=0",
                    "--sync-binlog=0",
                    // A restore is CPU-bound on two cores: no hash index to maintain while
                    // loading, the largest sort buffer for the secondary keys built afterwards,
                    // no buffer pool dump at shutdown nor statistics recalculated behind the
                    // load.
                    "--innodb-adaptive-hash-index=OFF",
                    "--innodb-sort-buffer-size=64M",
                    "--innodb-buffer-pool-dump-at-shutdown=OFF",
                    "--innodb-buffer-pool-load-at-startup=OFF",
                    "--innodb-stats-auto-recalc=OFF",
                    // Verification sends rows as LOAD DATA LOCAL INFILE (on by default; said
                    // here because the fast load depends on it).
                    "--local-infile=1",
                ]
                .map(String::from),
            );
        } else {
            // A binary log makes the lab look like a real server (position in manifests, logs
            // retention); it lives beside the data.
            options.push(format!("--log-bin={}", dir.join("binlog").display()));
        }
        super::server::start(&ServerSpec {
            data_dir: files.data_dir.clone(),
            socket: files.socket.clone(),
            pid_file: files.pid_file.clone(),
            log_file: files.log_file.clone(),
            tmp_dir: tmpdir.clone(),
            options,
            netns: server.netns.map(str::to_string),
            timeout: Duration::from_secs(90),
        })?;
    }
    bootstrap(server)
}

/// Waits for the server to answer, then creates the admin login over the socket as root (no
/// password yet). A server that already answers the admin login was bootstrapped before.
fn bootstrap(server: &LabServer) -> Result<()> {
    let files = &server.files;
    let running = || pid(&files.pid_file).is_some_and(process_alive);
    let deadline = Instant::now() + Duration::from_secs(90);
    let root_args =
        ConnectionArgs::local_socket(EngineKind::Mysql, "root", files.socket.clone(), 2);
    loop {
        if let Ok(mut engine) = crate::engine::connect(&server.admin) {
            // Already bootstrapped (a re-run of lab up).
            let _ = engine.databases()?;
            return Ok(());
        }
        match crate::engine::connect_lab(&root_args) {
            Ok(mut engine) => {
                engine
                    .ensure_admin_login(server.user, server.password)
                    .map_err(|e| Error::lab(format!("{} bootstrap", server.name), e.to_string()))?;
                return Ok(());
            }
            Err(e) => {
                let started = pid(&files.pid_file).is_some();
                if (started && !running()) || Instant::now() > deadline {
                    return Err(Error::lab(
                        format!("{} start", server.name),
                        format!("mariadbd is not answering: {e}"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        }
    }
}
