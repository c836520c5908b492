//! The lab's daemons (Prometheus, node_exporter, Garage): each started in its own session with
//! its output in `DIR/NAME.log` and its pid in `DIR/NAME.pid`, waited for until it serves, and
//! stopped by that pid.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::process::Tool;
use crate::util::process_alive;
use crate::{Error, Result};

/// The daemon's pid while it runs.
pub(super) fn pid(dir: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(dir.join(format!("{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| process_alive(*pid))
}

/// Starts `tool` as daemon `name` and waits up to 30 s until `serves()` (polled every 100 ms);
/// one that exits or does not serve in time is an error quoting the end of its log.
pub(super) fn start(dir: &Path, name: &str, tool: Tool, serves: impl Fn() -> bool) -> Result<()> {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| Error::io("create", &log_path, e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::io("open", &log_path, e))?;
    let child = tool
        .new_session()
        .spawn(Stdio::null(), Stdio::from(log), Stdio::from(log2))?;
    crate::files::write_atomically(
        &dir.join(format!("{name}.pid")),
        format!("{}\n", child.id()).as_bytes(),
        crate::files::PUBLIC_FILE,
    )?;
    let timing = (Duration::from_secs(30), Duration::from_millis(100));
    crate::process::wait_until_ready(child, name, &log_path, timing, serves)
}

/// Stops daemon `name` (idempotent); says what happened.
pub(super) fn stop(dir: &Path, name: &str) -> String {
    match pid(dir, name) {
        Some(pid) => {
            crate::process::stop_process(
                pid,
                rustix::process::Signal::TERM,
                Duration::from_secs(10),
            );
            let _ = std::fs::remove_file(dir.join(format!("{name}.pid")));
            format!("{name}: stopped")
        }
        None => format!("{name}: not running"),
    }
}
