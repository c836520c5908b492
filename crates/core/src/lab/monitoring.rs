//! The lab's monitoring: Debian's prometheus-node-exporter reading the lab's textfile
//! directory, and a Prometheus server that scrapes it and evaluates the project's alert rules
//! (the monitoring role's `files/dbcadence-rules.yml`, built in), both on free 127.0.0.1 ports.
//! Health gates and tests ask that Prometheus for firing alerts over its HTTP API, so a gate
//! decision is what an operator would see.
//!
//! ```text
//! DIR/metrics/                      the textfile directory (DBCADENCE_METRICS_DIR)
//! DIR/monitoring/prometheus.yml     scrape and evaluate every second (a lab, not a fleet)
//! DIR/monitoring/dbcadence-rules.yml
//! DIR/monitoring/data/              Prometheus' TSDB
//! DIR/monitoring/{node-exporter,prometheus}.{pid,log}
//! ```

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::process::Tool;
use crate::util::process_alive;
use crate::{Error, Result};

/// The project's Prometheus alert rules, as the monitoring role installs them.
pub const RULES: &str =
    include_str!("../../../../ansible/roles/monitoring/files/dbcadence-rules.yml");

/// How often the lab's Prometheus scrapes and evaluates: short, so that a gate or a test sees
/// an alert seconds after the metric that fires it was written.
const LAB_INTERVAL: &str = "1s";

/// Where the lab's monitoring runs (lab.json).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct LabMonitoring {
    /// node_exporter's textfile collector directory: point DBCADENCE_METRICS_DIR (or a
    /// module's metrics_dir) here.
    pub textfile_dir: PathBuf,
    pub node_exporter_port: u16,
    pub prometheus_port: u16,
    /// DIR/monitoring: configuration, data, pid files and logs.
    pub dir: PathBuf,
}

impl LabMonitoring {
    /// The Prometheus HTTP API's base address.
    pub fn prometheus_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.prometheus_port)
    }

    fn pid(&self, daemon: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("{daemon}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
            .filter(|pid| process_alive(*pid))
    }

    /// Whether both daemons run.
    pub fn running(&self) -> bool {
        self.pid("node-exporter").is_some() && self.pid("prometheus").is_some()
    }
}

/// Plans the lab's monitoring (its ports are kept once chosen) and starts what is not running.
pub(super) fn ensure(lab: &super::Lab, planned: Option<LabMonitoring>) -> Result<LabMonitoring> {
    let monitoring = match planned {
        Some(m) => m,
        None => {
            let node_exporter_port = super::free_port(lab, &[])?;
            LabMonitoring {
                textfile_dir: lab.dir.join("metrics"),
                node_exporter_port,
                prometheus_port: super::free_port(lab, &[node_exporter_port])?,
                dir: lab.dir.join("monitoring"),
            }
        }
    };
    for dir in [&monitoring.dir, &monitoring.textfile_dir] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        // node_exporter reads the textfiles; dbcadence writes them as whoever runs it.
        super::set_mode(dir, 0o755)?;
    }
    write_config(&monitoring)?;
    if monitoring.pid("node-exporter").is_none() {
        let tool = Tool::find("prometheus-node-exporter")?
            .package("prometheus-node-exporter")
            .arg(format!(
                "--web.listen-address=127.0.0.1:{}",
                monitoring.node_exporter_port
            ))
            // Only what the lab needs: the textfiles (the other collectors read the machine).
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!(
                "--collector.textfile.directory={}",
                monitoring.textfile_dir.display()
            ));
        start_daemon(&monitoring, "node-exporter", tool, "/metrics")?;
    }
    if monitoring.pid("prometheus").is_none() {
        let tool = Tool::find("prometheus")?
            .package("prometheus")
            .arg(format!(
                "--config.file={}",
                monitoring.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                monitoring.dir.join("data").display()
            ))
            .arg(format!(
                "--web.listen-address=127.0.0.1:{}",
                monitoring.prometheus_port
            ))
            .arg("--storage.tsdb.retention.time=2d");
        start_daemon(&monitoring, "prometheus", tool, "/-/ready")?;
    }
    Ok(monitoring)
}

fn write_config(monitoring: &LabMonitoring) -> Result<()> {
    let rules = monitoring.dir.join("dbcadence-rules.yml");
    crate::files::write_atomically(&rules, RULES.as_bytes(), crate::files::PUBLIC_FILE)?;
    // honor_labels: the metrics carry their own `instance` label (the database instance).
    let config = format!(
        "# The lab's Prometheus (dbcadence lab up --monitoring): written by the lab.\n\
         global:\n  scrape_interval: {LAB_INTERVAL}\n  evaluation_interval: {LAB_INTERVAL}\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: node\n    honor_labels: true\n    static_configs:\n      \
         - targets: ['127.0.0.1:{port}']\n",
        rules = serde_json::to_string(&rules.display().to_string()).unwrap_or_default(),
        port = monitoring.node_exporter_port,
    );
    crate::files::write_atomically(
        &monitoring.dir.join("prometheus.yml"),
        config.as_bytes(),
        crate::files::PUBLIC_FILE,
    )
}

/// Starts a daemon in its own session with its output in DIR/monitoring/NAME.log, records its
/// pid, and waits until `ready_path` answers 200 on its port.
fn start_daemon(
    monitoring: &LabMonitoring,
    name: &str,
    tool: Tool,
    ready_path: &str,
) -> Result<()> {
    let log_path = monitoring.dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| Error::io("create", &log_path, e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::io("open", &log_path, e))?;
    let mut child = tool
        .new_session()
        .spawn(Stdio::null(), Stdio::from(log), Stdio::from(log2))?;
    let pid_file = monitoring.dir.join(format!("{name}.pid"));
    crate::files::write_atomically(
        &pid_file,
        format!("{}\n", child.id()).as_bytes(),
        crate::files::PUBLIC_FILE,
    )?;
    let port = if name == "prometheus" {
        monitoring.prometheus_port
    } else {
        monitoring.node_exporter_port
    };
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
        if http_status(port, ready_path) == Some(200) {
            // Reaped when it exits while this process lives (tests); otherwise init's.
            std::thread::spawn(move || child.wait());
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!("not ready on 127.0.0.1:{port} after 30s")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status code of a plain HTTP GET on 127.0.0.1 (no client crate for one readiness probe).
pub(super) fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Stops both daemons (idempotent); one line each saying what happened.
pub(super) fn stop(monitoring: &LabMonitoring) -> Vec<String> {
    ["prometheus", "node-exporter"]
        .into_iter()
        .map(|name| match monitoring.pid(name) {
            Some(pid) => {
                crate::process::stop_process(
                    pid,
                    rustix::process::Signal::TERM,
                    Duration::from_secs(10),
                );
                let _ = std::fs::remove_file(monitoring.dir.join(format!("{name}.pid")));
                format!("{name}: stopped")
            }
            None => format!("{name}: not running"),
        })
        .collect()
}
