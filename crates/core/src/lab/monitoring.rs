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
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::process::Tool;
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
        super::daemon::pid(&self.dir, daemon)
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
        let port = monitoring.node_exporter_port;
        super::daemon::start(&monitoring.dir, "node-exporter", tool, || {
            http_status(port, "/metrics") == Some(200)
        })?;
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
        let port = monitoring.prometheus_port;
        super::daemon::start(&monitoring.dir, "prometheus", tool, || {
            http_status(port, "/-/ready") == Some(200)
        })?;
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
        .map(|name| super::daemon::stop(&monitoring.dir, name))
        .collect()
}
