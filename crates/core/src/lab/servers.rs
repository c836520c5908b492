//! Starting, bootstrapping, seeding and stopping the lab's servers (the processes themselves
//! start and stop in engine/<engine>/server.rs).

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::connection::{ConnectionArgs, EngineKind, SslMode};
use crate::process::Tool;
use crate::util::process_alive;
use crate::{Error, Result, engine};

pub(super) fn start_instance(
    instance: &LabInstance,
    primary: Option<&LabInstance>,
    seed: bool,
) -> Result<()> {
    match instance.engine {
        EngineKind::Postgresql => start_postgres(instance, primary)?,
        EngineKind::Mysql => start_mysql(instance)?,
    }
    if seed && instance.replica_of.is_none() {
        seed_instance(instance)?;
    }
    Ok(())
}

pub(super) fn start_postgres(instance: &LabInstance, primary: Option<&LabInstance>) -> Result<()> {
    let bin = crate::engine::postgres::bin_dir()?;
    let dir = instance.instance_dir();
    let fail = |what: &str, e: Error| instance.failure_with_log(what, e.to_string());
    if let Some(primary) = primary.filter(|_| !instance.data_dir.join("PG_VERSION").exists()) {
        let _ = std::fs::remove_dir_all(&instance.data_dir);
        std::fs::create_dir_all(&instance.socket)
            .map_err(|e| Error::io("create the socket directory", &instance.socket, e))?;
        chown(&dir, "postgres")?;
        // -R writes standby.signal and primary_conninfo: the copy starts as a streaming replica.
        let args = vec![
            "-h".to_string(),
            primary.socket.to_string_lossy().into_owned(),
            "-p".into(),
            primary.port.to_string(),
            "-U".into(),
            primary.user.clone(),
            "-D".into(),
            instance.data_dir.to_string_lossy().into_owned(),
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
                    format!("{} pg_basebackup from {}", instance.name, primary.name),
                    e.to_string(),
                )
            })?;
    }
    if !instance.data_dir.join("PG_VERSION").exists() {
        let _ = std::fs::remove_dir_all(&instance.data_dir);
        std::fs::create_dir_all(&instance.socket)
            .map_err(|e| Error::io("create the socket directory", &instance.socket, e))?;
        // initdb reads the superuser's password from a file: never on a command line.
        let pwfile = dir.join(".initdb-password");
        std::fs::write(&pwfile, instance.password()?)
            .map_err(|e| Error::io("write", &pwfile, e))?;
        set_mode(&pwfile, 0o600)?;
        chown(&dir, "postgres")?;
        let result = Tool::new(bin.join("initdb"))
            .package("postgresql")
            .as_user("postgres")
            .args::<Vec<String>, String>(vec![
                "-D".into(),
                instance.data_dir.to_string_lossy().into_owned(),
                "-U".into(),
                instance.user.clone(),
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
        result.map_err(|e| Error::lab(format!("{} initdb", instance.name), e.to_string()))?;
    }
    if instance.running() {
        return Ok(());
    }
    wait_until_gone(instance.pid());
    let tls = install_tls(instance, "postgres")?;
    let mut settings: Vec<(String, String)> = [
        ("port", instance.port.to_string()),
        (
            "unix_socket_directories",
            instance.socket.display().to_string(),
        ),
        ("listen_addresses", instance.host.clone()),
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
    if instance.tuned_for_loading {
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
    crate::engine::postgres::server::start(&crate::engine::postgres::server::ServerSpec {
        data_dir: instance.data_dir.clone(),
        log_file: instance.log_file.clone(),
        settings,
        timeout: Duration::from_secs(60),
    })
    .map_err(|e| fail("start", e))
}

pub(super) fn start_mysql(instance: &LabInstance) -> Result<()> {
    let dir = instance.instance_dir();
    let fail = |what: &str, detail: String| instance.failure_with_log(what, detail);
    // A private temp dir: parallel mariadb-install-db runs sharing /tmp were seen to trip over
    // each other's temporary tables ("Unknown table 'mysql.tmp_user_sys'").
    let tmpdir = dir.join("tmp");
    std::fs::create_dir_all(&tmpdir)
        .map_err(|e| Error::io("create the temp directory", &tmpdir, e))?;
    if !instance.data_dir.join("mysql").is_dir() {
        let _ = std::fs::remove_dir_all(&instance.data_dir);
        chown(&dir, "mysql")?;
        crate::engine::mysql::server::install(&instance.data_dir, &tmpdir).map_err(|e| {
            Error::lab(
                format!("{} mariadb-install-db", instance.name),
                e.to_string(),
            )
        })?;
    }
    if !instance.running() {
        wait_until_gone(instance.pid());
        let _ = std::fs::remove_file(dir.join("mysqld.pid"));
        let tls = install_tls(instance, "mysql")?;
        let mut options = vec![
            format!("--port={}", instance.port),
            format!("--bind-address={}", instance.host),
            "--skip-name-resolve".into(),
            "--server-id=1".into(),
            format!("--ssl-cert={}", tls.join("server.pem").display()),
            format!("--ssl-key={}", tls.join("server.key").display()),
            format!("--ssl-ca={}", tls.join("ca.pem").display()),
        ];
        if instance.tuned_for_loading {
            // Reference pitfall 7: the default 128 MB buffer pool makes a restore 5x slower.
            options.extend(
                [
                    "--skip-log-bin",
                    "--innodb-buffer-pool-size=2G",
                    "--innodb-log-file-size=1G",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-doublewrite=0",
                    "--sync-binlog=0",
                ]
                .map(String::from),
            );
        } else {
            // A binary log makes the lab look like a real server (position in manifests, logs
            // retention); it lives beside the data.
            options.push(format!("--log-bin={}", dir.join("binlog").display()));
        }
        crate::engine::mysql::server::start(&crate::engine::mysql::server::ServerSpec {
            data_dir: instance.data_dir.clone(),
            socket: instance.socket.clone(),
            pid_file: dir.join("mysqld.pid"),
            log_file: instance.log_file.clone(),
            tmp_dir: tmpdir.clone(),
            options,
            timeout: Duration::from_secs(90),
        })
        .map_err(|e| fail("start", e.to_string()))?;
    }
    // Bootstrap over the socket as root (no password yet), then log in as the lab user.
    let deadline = Instant::now() + Duration::from_secs(90);
    let root_args = ConnectionArgs {
        engine: Some(EngineKind::Mysql),
        login_user: Some("root".into()),
        login_unix_socket: Some(instance.socket.clone()),
        connect_timeout: 2,
        ssl_mode: SslMode::Disable,
        ..ConnectionArgs::default()
    };
    loop {
        if let Ok(mut engine) = engine::connect(&instance.socket_connection()?) {
            // Already bootstrapped (a re-run of lab up).
            let _ = engine.databases()?;
            return Ok(());
        }
        match engine::connect_lab(&root_args) {
            Ok(mut engine) => {
                engine
                    .ensure_admin_login(&instance.user, &instance.password()?)
                    .map_err(|e| fail("bootstrap", e.to_string()))?;
                return Ok(());
            }
            Err(e) => {
                let started = instance.pid().is_some();
                if (started && !instance.running()) || Instant::now() > deadline {
                    return Err(fail("start", format!("mariadbd is not answering: {e}")));
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        }
    }
}

/// A killed server can stay a zombie for a few seconds; starting on its data dir meanwhile fails.
pub(super) fn wait_until_gone(pid: Option<u32>) {
    let Some(pid) = pid else { return };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists()
        && process_alive(pid)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(super) fn stop_instance(instance: &LabInstance) -> String {
    let Some(pid) = instance.pid().filter(|p| process_alive(*p)) else {
        return format!("{}: not running", instance.name);
    };
    match instance.engine {
        EngineKind::Postgresql => {
            crate::engine::postgres::server::stop(&instance.data_dir, Duration::from_secs(60));
        }
        EngineKind::Mysql => {
            crate::engine::mysql::server::stop(
                &instance.instance_dir().join("mysqld.pid"),
                Duration::from_secs(60),
            );
        }
    }
    wait_until_gone(Some(pid));
    format!("{}: stopped", instance.name)
}

/// Sample data for the demo: an application database with a few rows and a dated copy of it,
/// the kind of forgotten backup copy the inventory must flag.
pub(super) fn seed_instance(instance: &LabInstance) -> Result<()> {
    let mut engine = engine::connect_lab(&instance.connection()?)?;
    for db in ["app", "app_bak_20260101"] {
        if engine.create_database(db)? {
            engine.execute_in(
                Some(db),
                "CREATE TABLE orders (id integer PRIMARY KEY, item varchar(100), qty integer); \
                 INSERT INTO orders VALUES (1, 'disk', 2), (2, 'cable', 10), (3, 'rack', 1);",
            )?;
        }
    }
    Ok(())
}
