//! Recording a run: every module and CLI run ends with one ledger record and fresh metrics.
//! Orchestration calls [`Recorder::finish`] once, whatever the outcome.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ledger::{Ledger, Outcome, Record, Store, Target};
use crate::metrics::{Metrics, Sample};
use crate::task::Task;

/// Where a run is recorded. Every module takes these arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct RunOptions {
    /// Ledger file (JSON lines). Default: $DBCADENCE_LEDGER, else
    /// /var/lib/dbcadence/ledger.jsonl for root and ~/.local/state/dbcadence/ledger.jsonl for others.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub ledger_path: Option<PathBuf>,
    /// Shared ledger in PostgreSQL instead of the file, for teams and AWX:
    /// postgresql://user@host:port/dbname?sslmode=verify-full&sslrootcert=CA&table=dbcadence_ledger
    /// (the table is created on first use). Default: $DBCADENCE_LEDGER_URL. Never put the
    /// password in the URL: use ledger_password or $DBCADENCE_LEDGER_PASSWORD (a URL with a
    /// password is refused; the URL is masked in module output in case one slipped in).
    #[serde(default)]
    #[schemars(extend("x-secret" = true))]
    pub ledger_url: Option<String>,
    /// Password for ledger_url. Default: $DBCADENCE_LEDGER_PASSWORD.
    #[serde(default, serialize_with = "crate::secret::serialize_masked")]
    #[schemars(extend("x-secret" = true), with = "Option<String>")]
    pub ledger_password: Option<crate::secret::SecretString>,
    /// Directory of node_exporter's textfile collector. Default: $DBCADENCE_METRICS_DIR;
    /// when neither is set no metrics are written.
    #[serde(default)]
    #[schemars(extend("x-path" = true))]
    pub metrics_dir: Option<PathBuf>,
    /// Change record this run belongs to, copied into the ledger.
    #[serde(default)]
    pub change_id: Option<String>,
}

impl RunOptions {
    /// The ledger store. Precedence: ledger_url, ledger_path, $DBCADENCE_LEDGER_URL, then
    /// the default file (an explicit file beats a URL inherited from the environment).
    pub fn ledger(&self) -> crate::Result<Store> {
        if let Some(url) = &self.ledger_url {
            return Store::postgres(url, self.ledger_password());
        }
        if let Some(path) = &self.ledger_path {
            return Ok(Store::File(Ledger::new(path.clone())));
        }
        match std::env::var("DBCADENCE_LEDGER_URL") {
            Ok(url) if !url.is_empty() => Store::postgres(&url, self.ledger_password()),
            _ => Ok(Store::File(Ledger::new(default_ledger_path()))),
        }
    }

    fn ledger_password(&self) -> Option<crate::secret::SecretString> {
        self.ledger_password.clone().or_else(|| {
            std::env::var("DBCADENCE_LEDGER_PASSWORD")
                .ok()
                .map(Into::into)
        })
    }

    pub fn metrics(&self) -> Option<Metrics> {
        self.metrics_dir
            .clone()
            .or_else(|| std::env::var_os("DBCADENCE_METRICS_DIR").map(PathBuf::from))
            .map(Metrics::new)
    }
}

pub fn default_ledger_path() -> PathBuf {
    if let Some(path) = std::env::var_os("DBCADENCE_LEDGER") {
        return PathBuf::from(path);
    }
    if crate::util::effective_uid() == Some(0) {
        return PathBuf::from("/var/lib/dbcadence/ledger.jsonl");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".local/state/dbcadence/ledger.jsonl")
}

/// What one operation did, the same for every front end: the module turns it into Ansible's
/// result, the CLI prints it, the timers log it. The operation decides `changed` and says
/// what it did in `msg`; nobody downstream recomputes either.
#[derive(Debug, Clone)]
pub struct Done<T> {
    pub changed: bool,
    pub msg: String,
    /// Before and after, where something changed and can be shown.
    pub diff: Option<Change>,
    /// What the user should know although the run succeeded (ledger not written, damaged
    /// backup directories, a scratch database left behind...).
    pub warnings: Vec<String>,
    pub output: T,
}

/// The before/after of what a run changed (or would change, in check mode).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What is compared, e.g. "backups" or "inventory".
    pub what: &'static str,
    pub before: String,
    pub after: String,
}

impl Change {
    /// A change when both sides are known and differ.
    pub fn between(
        what: &'static str,
        before: Option<String>,
        after: Option<String>,
    ) -> Option<Change> {
        match (before, after) {
            (Some(before), Some(after)) if before != after => Some(Change {
                what,
                before,
                after,
            }),
            _ => None,
        }
    }
}

/// Times one run and records it when it ends.
pub struct Recorder {
    task: Task,
    options: RunOptions,
    check_mode: bool,
    started: jiff::Timestamp,
    /// Values masked out of the details before they are written (an error text may quote a
    /// connection string or a tool's complaint holding a password).
    secrets: Vec<crate::secret::SecretString>,
}

impl Recorder {
    pub fn start(task: Task, options: &RunOptions, check_mode: bool) -> Self {
        Recorder {
            task,
            options: options.clone(),
            check_mode,
            started: jiff::Timestamp::now(),
            secrets: options.ledger_password.iter().cloned().collect(),
        }
    }

    /// Also masks this secret (a login password) wherever it would appear in the record.
    pub fn hiding(mut self, secret: Option<&crate::secret::SecretString>) -> Self {
        self.secrets.extend(secret.cloned());
        self
    }

    /// The details with every known secret replaced by the mask.
    fn scrubbed(&self, details: Value) -> Value {
        use crate::secret::ExposeSecret;
        let secrets: Vec<&str> = self
            .secrets
            .iter()
            .map(|s| s.expose_secret())
            .filter(|s| !s.is_empty())
            .collect();
        if secrets.is_empty() {
            return details;
        }
        let mut text = details.to_string();
        for secret in secrets {
            // Both as written and as it appears inside a JSON string.
            let escaped = serde_json::to_string(secret).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            text = text
                .replace(escaped, crate::secret::MASK)
                .replace(secret, crate::secret::MASK);
        }
        serde_json::from_str(&text).unwrap_or(Value::String(crate::secret::MASK.into()))
    }

    /// Records a run that failed with `error`: the one place an error becomes a failed ledger
    /// record. Returns the recorder's own warnings (the caller returns the error itself).
    pub fn fail(&self, target: Target, error: &crate::Error) -> Vec<String> {
        self.finish(
            target,
            Outcome::Failed,
            false,
            serde_json::json!({"error": error.to_string()}),
            vec![],
        )
    }

    /// Appends the ledger record and updates the metrics. Returns warnings for the caller to
    /// show: a run that did its work is not turned into a failure because the ledger or metrics
    /// could not be written, but the user is told.
    pub fn finish(
        &self,
        target: Target,
        outcome: Outcome,
        changed: bool,
        details: Value,
        extra: Vec<Sample>,
    ) -> Vec<String> {
        let finished = jiff::Timestamp::now();
        let duration = (finished - self.started).get_milliseconds() as f64 / 1000.0;
        let mut warnings = Vec::new();
        let recorded = crate::ledger::new_id().and_then(|id| {
            let record = Record {
                id,
                task: self.task,
                target: target.clone(),
                started_at: self.started.to_string(),
                finished_at: finished.to_string(),
                outcome,
                changed,
                check_mode: self.check_mode,
                details: self.scrubbed(details),
                change_id: self.options.change_id.clone(),
            };
            self.options.ledger().and_then(|l| l.append(&record))
        });
        if let Err(e) = recorded {
            warnings.push(format!(
                "the run was not recorded in the ledger: {e}; set ledger_path (or DBCADENCE_LEDGER) to a writable file, or ledger_url to a reachable PostgreSQL"
            ));
        }
        // A rehearsal (check mode) is in the ledger but is not maintenance: it must not make a
        // stale backup look fresh on a dashboard.
        if self.check_mode {
            return warnings;
        }
        if let Some(metrics) = self.options.metrics() {
            let db = target.db.as_deref().unwrap_or("");
            let labels = [
                ("task", self.task.as_str()),
                ("instance", target.instance.as_str()),
                ("db", db),
            ];
            let now = finished.as_second() as f64;
            let mut samples = vec![
                Sample::gauge(
                    "dbcadence_task_last_run_timestamp_seconds",
                    "Unix time the task last finished, whatever its outcome.",
                    &labels,
                    now,
                ),
                Sample::gauge(
                    "dbcadence_task_last_status",
                    "Outcome of the task's last run: 1 ok, 0 failed.",
                    &labels,
                    if outcome == Outcome::Failed { 0.0 } else { 1.0 },
                ),
                Sample::gauge(
                    "dbcadence_task_duration_seconds",
                    "Wall time of the task's last run.",
                    &labels,
                    duration,
                ),
                Sample::counter(
                    "dbcadence_task_runs_total",
                    "Runs of the task by outcome.",
                    &[
                        ("task", self.task.as_str()),
                        ("instance", target.instance.as_str()),
                        ("db", db),
                        ("outcome", outcome_label(outcome)),
                    ],
                    1.0,
                ),
            ];
            if outcome == Outcome::Ok {
                samples.push(Sample::gauge(
                    "dbcadence_task_last_success_timestamp_seconds",
                    "Unix time the task last finished successfully.",
                    &labels,
                    now,
                ));
            }
            samples.extend(extra);
            match metrics.update(&samples) {
                Ok(notes) => warnings.extend(notes),
                Err(e) => warnings.push(format!(
                    "the metrics were not updated: {e}; set metrics_dir to a writable directory"
                )),
            }
        }
        warnings
    }
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Failed => "failed",
        Outcome::Skipped => "skipped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_ledger_details() {
        let dir = tempfile::tempdir().unwrap();
        let options = RunOptions {
            ledger_path: Some(dir.path().join("ledger.jsonl")),
            ..RunOptions::default()
        };
        let password: crate::secret::SecretString = r#"p'w"\#:$x"#.to_string().into();
        let recorder = Recorder::start(Task::Backup, &options, false).hiding(Some(&password));
        let error = crate::Error::invalid(
            "connection",
            r#"the tool said: password p'w"\#:$x was refused"#,
        );
        recorder.fail(
            Target {
                instance: "pg1".into(),
                db: None,
            },
            &error,
        );
        let text = std::fs::read_to_string(dir.path().join("ledger.jsonl")).unwrap();
        assert!(!text.contains("p'w"), "{text}");
        assert!(text.contains("password ******** was refused"), "{text}");
    }
}
