//! Starting, seeding and stopping the lab's servers. What each engine needs to come up
//! (initdb or mariadb-install-db, a replica's copy, the admin login) lives in engine/lab.rs
//! and engine/<engine>/lab.rs; this file hands them the instance's plan.

use std::time::{Duration, Instant};

use super::*;
use crate::engine::lab::{LabServer, Primary};
use crate::util::process_alive;
use crate::{Result, engine};

pub(super) fn start_instance(
    instance: &LabInstance,
    primary: Option<&LabInstance>,
    seed: bool,
) -> Result<()> {
    if !instance.running() {
        wait_until_gone(instance.pid());
    }
    let tls_dir = install_tls(instance, engine::lab::service_user(instance.engine))?;
    let password = instance.password()?;
    let server = LabServer {
        name: &instance.name,
        kind: instance.engine,
        instance_dir: &instance.instance_dir(),
        files: instance.files(),
        host: &instance.host,
        port: instance.port,
        user: &instance.user,
        password: &password,
        tls_dir: &tls_dir,
        tuned_for_loading: instance.tuned_for_loading,
        bin_dir: instance.bin_dir.as_deref(),
        netns: instance.netns.as_deref(),
        primary: primary.map(|p| Primary {
            name: &p.name,
            socket: &p.socket,
            port: p.port,
            user: &p.user,
        }),
        admin: instance.socket_connection()?,
    };
    engine::lab::start(&server).map_err(|e| instance.failure_with_log("start", e.to_string()))?;
    if seed && instance.replica_of.is_none() {
        seed_instance(instance)?;
    }
    Ok(())
}

/// A killed server can stay a zombie for a few seconds; starting on its data dir meanwhile fails.
pub(super) fn wait_until_gone(pid: Option<u32>) {
    let Some(pid) = pid else { return };
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(super) fn stop_instance(instance: &LabInstance) -> String {
    let Some(pid) = instance.pid().filter(|p| process_alive(*p)) else {
        return format!("{}: not running", instance.name);
    };
    engine::lab::stop(instance.engine, &instance.files(), Duration::from_secs(60));
    wait_until_gone(Some(pid));
    format!("{}: stopped", instance.name)
}

/// Stops a throwaway instance whose data is deleted next (see [`engine::lab::discard`]).
pub(super) fn discard_instance(instance: &LabInstance) {
    if instance.pid().is_some_and(process_alive) {
        engine::lab::discard(instance.engine, &instance.files(), Duration::from_secs(60));
    }
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
