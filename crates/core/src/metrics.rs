//! Prometheus metrics for node_exporter's textfile collector (contract names, `dbcadence_`).
//!
//! Many runs write concurrently; each takes a lock, merges its samples into a small state file,
//! and rewrites `dbcadence.prom` through a temp file and a rename so that the collector never
//! reads half a file.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Every metric dbcadence writes (contract: dashboards and alert rules may use only these;
/// a test checks monitoring/ against this list, and every sample is checked against it).
pub const NAMES: &[&str] = &[
    "dbcadence_audit_findings",
    "dbcadence_auth_failures_total",
    "dbcadence_backup_last_success_timestamp_seconds",
    "dbcadence_backup_size_bytes",
    "dbcadence_backup_verified_timestamp_seconds",
    "dbcadence_backup_verify_last_status",
    "dbcadence_compliance_ratio",
    "dbcadence_inventory_copies",
    "dbcadence_inventory_databases",
    "dbcadence_inventory_instances",
    "dbcadence_inventory_unreachable_endpoints",
    "dbcadence_logs_directory_bytes",
    "dbcadence_logs_freed_bytes",
    "dbcadence_metrics_last_write_timestamp_seconds",
    "dbcadence_recovery_point_timestamp_seconds",
    "dbcadence_rpo_seconds",
    "dbcadence_rpo_target_seconds",
    "dbcadence_rto_seconds",
    "dbcadence_rto_target_seconds",
    "dbcadence_schedule_max_age_seconds",
    "dbcadence_scorecard_met",
    "dbcadence_task_duration_seconds",
    "dbcadence_task_last_run_timestamp_seconds",
    "dbcadence_task_last_status",
    "dbcadence_task_last_success_timestamp_seconds",
    "dbcadence_task_runs_total",
    "dbcadence_tune_findings",
];

/// The file node_exporter reads.
pub const PROM_FILE: &str = "dbcadence.prom";
const STATE_FILE: &str = ".dbcadence-metrics.json";
const LOCK_FILE: &str = ".dbcadence-metrics.lock";

/// gauge: the value replaces; counter: the value is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Gauge,
    Counter,
}

/// One sample of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn gauge(name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> Self {
        Self::new(name, help, Kind::Gauge, labels, value)
    }

    pub fn counter(name: &str, help: &str, labels: &[(&str, &str)], increment: f64) -> Self {
        Self::new(name, help, Kind::Counter, labels, increment)
    }

    fn new(name: &str, help: &str, kind: Kind, labels: &[(&str, &str)], value: f64) -> Self {
        debug_assert!(
            NAMES.contains(&name),
            "{name} is missing from metrics::NAMES"
        );
        Sample {
            name: name.into(),
            help: help.into(),
            kind,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            value,
        }
    }

    fn key(&self) -> String {
        format!("{}{}", self.name, render_labels(&self.labels))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    series: BTreeMap<String, Sample>,
}

/// The metrics directory (node_exporter's `--collector.textfile.directory`).
#[derive(Debug, Clone)]
pub struct Metrics {
    dir: PathBuf,
}

/// The series kept between runs. A file that cannot be parsed is not silently replaced by an
/// empty state (counters would restart from zero unnoticed): it is renamed aside, kept for a
/// person to look at, and named in a warning. A file that cannot be read at all is an error.
fn read_state(path: &std::path::Path) -> Result<(State, Vec<String>)> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((State::default(), vec![]));
        }
        Err(e) => return Err(Error::io("read the metrics state", path, e)),
    };
    match serde_json::from_slice(&bytes) {
        Ok(state) => Ok((state, vec![])),
        Err(e) => {
            let aside = path.with_file_name(format!(
                "{STATE_FILE}.unreadable-{}",
                jiff::Timestamp::now().as_second()
            ));
            std::fs::rename(path, &aside)
                .map_err(|e| Error::io("keep the unreadable metrics state aside", path, e))?;
            Ok((
                State::default(),
                vec![format!(
                    "the metrics state '{}' could not be parsed ({e}); it was kept as '{}' and the series start afresh (counters from zero)",
                    path.display(),
                    aside.display()
                )],
            ))
        }
    }
}

impl Metrics {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Metrics { dir: dir.into() }
    }

    pub fn prom_path(&self) -> PathBuf {
        self.dir.join(PROM_FILE)
    }

    /// Merges samples into the current set and rewrites the file atomically. Returns warnings
    /// (a state file that could not be parsed, kept aside).
    pub fn update(&self, samples: &[Sample]) -> Result<Vec<String>> {
        self.update_replacing(&[], samples)
    }

    /// Like [`Metrics::update`], after dropping every series of the `replaced` families (a
    /// report rewrites its families whole, so that series of vanished databases go away).
    pub fn update_replacing(&self, replaced: &[&str], samples: &[Sample]) -> Result<Vec<String>> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("create the metrics directory", &self.dir, e))?;
        let lock_path = self.dir.join(LOCK_FILE);
        let io = |e| Error::io("update the metrics", &lock_path, e);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        lock.lock().map_err(io)?;
        let state_path = self.dir.join(STATE_FILE);
        let (mut state, warnings) = read_state(&state_path)?;
        state
            .series
            .retain(|_, sample| !replaced.contains(&sample.name.as_str()));
        // MetricsStale alerts on this: a textfile that stopped changing looks healthy otherwise.
        let written = Sample::gauge(
            "dbcadence_metrics_last_write_timestamp_seconds",
            "Unix time dbcadence last rewrote this file.",
            &[],
            jiff::Timestamp::now().as_second() as f64,
        );
        for sample in samples.iter().chain(std::iter::once(&written)) {
            let key = sample.key();
            match (sample.kind, state.series.get_mut(&key)) {
                (Kind::Counter, Some(existing)) => existing.value += sample.value,
                _ => {
                    state.series.insert(key, sample.clone());
                }
            }
        }
        let json = serde_json::to_vec(&state)
            .map_err(|e| Error::invalid("metrics state", e.to_string()))?;
        // node_exporter runs as its own user: the textfile stays world-readable.
        crate::files::write_atomically(&state_path, &json, crate::files::PUBLIC_FILE)?;
        crate::files::write_atomically(
            &self.prom_path(),
            render(&state).as_bytes(),
            crate::files::PUBLIC_FILE,
        )?;
        lock.unlock().map_err(io)?;
        Ok(warnings)
    }
}

/// Prometheus text exposition format, series grouped by metric name.
fn render(state: &State) -> String {
    let mut by_name: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for sample in state.series.values() {
        by_name
            .entry(sample.name.as_str())
            .or_default()
            .push(sample);
    }
    let mut out = String::new();
    for (name, samples) in by_name {
        let first = samples[0];
        let kind = match first.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        out.push_str(&format!(
            "# HELP {name} {}\n# TYPE {name} {kind}\n",
            first.help
        ));
        for sample in samples {
            out.push_str(&format!(
                "{name}{} {}\n",
                render_labels(&sample.labels),
                sample.value
            ));
        }
    }
    out
}

fn render_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_replace_counters_add_and_labels_are_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metrics::new(dir.path());
        let labels = [
            ("task", "backup"),
            ("instance", "pg1"),
            ("db", "we\"ird; db"),
        ];
        m.update(&[
            Sample::gauge("dbcadence_task_last_status", "1 ok, 0 failed", &labels, 0.0),
            Sample::counter("dbcadence_task_runs_total", "Runs", &labels, 1.0),
        ])
        .unwrap();
        m.update(&[
            Sample::gauge("dbcadence_task_last_status", "1 ok, 0 failed", &labels, 1.0),
            Sample::counter("dbcadence_task_runs_total", "Runs", &labels, 1.0),
        ])
        .unwrap();
        let text = std::fs::read_to_string(m.prom_path()).unwrap();
        assert!(
            text.contains("# TYPE dbcadence_task_last_status gauge"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dbcadence_task_last_status{db="we\"ird; db",instance="pg1",task="backup"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"dbcadence_task_runs_total{db="we\"ird; db",instance="pg1",task="backup"} 2"#
            ),
            "{text}"
        );
        assert!(
            !dir.path().read_dir().unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-"))
        );
    }

    #[test]
    fn an_unparsable_state_is_kept_aside_and_named_not_silently_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metrics::new(dir.path());
        let state = dir.path().join(STATE_FILE);
        std::fs::write(&state, b"{\"series\": {torn").unwrap();
        let warnings = m
            .update(&[Sample::gauge("dbcadence_task_last_status", "x", &[], 1.0)])
            .unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("could not be parsed"), "{warnings:?}");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".unreadable-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(&aside[0]).unwrap(), b"{\"series\": {torn");
        assert!(
            std::fs::read_to_string(m.prom_path())
                .unwrap()
                .contains("dbcadence_task_last_status")
        );
        // The next update reads the fresh state without a warning.
        assert!(m.update(&[]).unwrap().is_empty());
    }
}
