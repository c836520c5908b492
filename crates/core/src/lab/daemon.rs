//! The lab's daemons (Prometheus, node_exporter, Garage): each started in its own session with
//! its output in `DIR/NAME.log` and its pid in `DIR/NAME.pid`, waited for until it serves, and
//! stopped by that pid.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

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
pub(super) fn start(
    dir: &Path,
    name: &str,
    tool: Tool,
    port: u16,
    serves: impl Fn() -> bool,
) -> Result<()> {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| Error::io("create", &log_path, e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::io("open", &log_path, e))?;
    let mut child = tool
        .new_session()
        .spawn(Stdio::null(), Stdio::from(log), Stdio::from(log2))?;
    crate::files::write_atomically(
        &dir.join(format!("{name}.pid")),
        format!("{}\n", child.id()).as_bytes(),
        crate::files::PUBLIC_FILE,
    )?;
    // The daemon's own log is the best hint at why it did not come up.
    let failed = |why: String| {
        Error::lab(
            format!("start {name}"),
            format!(
                "{why}; --- last lines of {} ---\n{}",
                log_path.display(),
                crate::util::tail_file(&log_path, 20)
            ),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(format!("it exited during start-up ({status})")));
        }
        if serves() {
            // Reaped when it exits while this process lives (tests); otherwise init's.
            std::thread::spawn(move || child.wait());
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "not answering on 127.0.0.1:{port} after 30s"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
