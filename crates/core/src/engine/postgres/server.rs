//! Private PostgreSQL servers: the lab's, verification's throwaway servers and the server
//! started on a restored physical backup all start and stop here.
//!
//! pg_ctl is not used: it hands `-o` options and its paths to /bin/sh, so a data directory or
//! socket path holding a quote, a `$` or a space would be read by a shell. `postgres` runs
//! directly (as the postgres user when we are root) with every setting one `-c name=value`
//! argument, and readiness is read from postmaster.pid as pg_ctl itself does.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::Signal;

use crate::{Error, Result};

/// How to start one private server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The server binaries; None: the system's newest (see `bin_dir`).
    pub bin_dir: Option<PathBuf>,
    pub data_dir: PathBuf,
    /// The server's stderr (its log) is appended here.
    pub log_file: PathBuf,
    /// `-c name=value` settings, each one argv entry: no quoting is needed or done.
    pub settings: Vec<(String, String)>,
    /// The lab test host's network namespace the server runs in (None: this machine's).
    pub netns: Option<String>,
    /// How long to wait for the server to accept connections.
    pub timeout: Duration,
}

/// The postmaster's pid, from postmaster.pid.
pub fn pid(data_dir: &Path) -> Option<u32> {
    postmaster_pid_lines(data_dir)?.first()?.trim().parse().ok()
}

fn postmaster_pid_lines(data_dir: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    Some(text.lines().map(str::to_string).collect())
}

/// Starts postgres on `spec.data_dir` and waits until it accepts connections (primary) or
/// read-only connections (standby). A server that exits during start-up fails at once, quoting
/// its log.
pub fn start(spec: &ServerSpec) -> Result<()> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&spec.log_file)
        .map_err(|e| Error::io("open the server log", &spec.log_file, e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::io("open the server log", &spec.log_file, e))?;
    let mut tool = super::server_program(spec.bin_dir.as_deref(), "postgres")?
        .arg("-D")
        .arg(&spec.data_dir)
        .as_user("postgres")
        .in_netns(spec.netns.as_deref())
        .new_session();
    for (name, value) in &spec.settings {
        tool = tool.arg("-c").arg(format!("{name}={value}"));
    }
    // A pid file left by a killed server says "ready" too: only a new pid counts.
    let stale = pid(&spec.data_dir);
    let child = tool.spawn(Stdio::null(), Stdio::from(log), Stdio::from(log_err))?;
    // The session wrapper stays our child until the server stops (reaped then).
    crate::process::wait_until_ready(
        child,
        "postgres",
        &spec.log_file,
        (spec.timeout, Duration::from_millis(50)),
        || {
            let Some(lines) = postmaster_pid_lines(&spec.data_dir) else {
                return false;
            };
            // Line 8 is the postmaster's status: "ready" or "standby" once it accepts
            // connections (the same test as pg_ctl -w).
            let status = lines.get(7).map(|s| s.trim()).unwrap_or("");
            let pid: Option<u32> = lines.first().and_then(|p| p.trim().parse().ok());
            let fresh = pid.is_some_and(|p| Some(p) != stale && crate::util::process_alive(p));
            fresh && matches!(status, "ready" | "standby")
        },
    )
}

/// Stops the server on `data_dir`: fast shutdown (SIGINT), then immediate (SIGQUIT), then
/// SIGKILL. Returns whether a server was running.
pub fn stop(data_dir: &Path, timeout: Duration) -> bool {
    let Some(pid) = pid(data_dir).filter(|p| crate::util::process_alive(*p)) else {
        return false;
    };
    crate::process::signal(pid, Signal::INT);
    if !crate::process::wait_gone(pid, timeout) {
        crate::process::stop_process(pid, Signal::QUIT, Duration::from_secs(10));
    }
    true
}
