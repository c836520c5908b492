//! Applying a patch, step by step: the package upgrade, the restart, waiting (bounded) until
//! the server accepts connections, then the post-validation: the version is the target, the
//! engine's own after-upgrade work (outdated extensions, mariadb-upgrade), a smoke query in
//! every database, and the server's log since the restart read for errors. Every step lands
//! in the report; a failure says what state the server is in and the way back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;

/// Runs the patch, or in check mode plans it, filling the report's steps, state, failure
/// and rollback. Returns whether the server was (or, in check mode, would be) changed.
pub(super) fn apply(
    request: &PatchRequest,
    context: &Context,
    report: &mut PatchReport,
    check_mode: bool,
) -> bool {
    let facts = report.facts.clone();
    let untouched = format!("untouched: runs {}", facts.running_version);
    let target = match refusal(request, context, report) {
        Ok(Some(target)) => target,
        Ok(None) => {
            report.state = Some(format!("runs {}: nothing to do", facts.running_version));
            return false;
        }
        Err(why) => {
            report.failure = Some(why);
            report.state = Some(untouched);
            return false;
        }
    };
    report.steps = plan(request, context, &facts, &target);
    if check_mode {
        report.state = Some(format!("{untouched} (check mode)"));
        return true;
    }
    let mut patch = Patch {
        request,
        context,
        report,
        target,
        lab_binaries: lab_binaries(request, context.platform),
    };
    patch.run();
    true
}

/// Why the patch may not go ahead (Err), that there is nothing to do (None), or the target.
fn refusal(
    request: &PatchRequest,
    context: &Context,
    report: &PatchReport,
) -> std::result::Result<Option<String>, String> {
    let facts = &report.facts;
    let Some(target) = facts.target_version.clone() else {
        return Err(format!(
            "no target version: the package manager offers none for {} and target_version is not set; give target_version (nothing was changed)",
            facts.package
        ));
    };
    if major_of(context.engine, &target) != facts.major {
        return Err(format!(
            "{target} is not a minor release of {}: db_patch applies minor releases; a major upgrade needs pg_upgrade or a dump and restore (nothing was changed)",
            facts.major
        ));
    }
    if minor_of(context.engine, &target) < minor_of(context.engine, &facts.running_version) {
        return Err(format!(
            "the target {target} is older than the running {}: db_patch does not downgrade (nothing was changed)",
            facts.running_version
        ));
    }
    if facts.running_version == target && !request.force {
        return Ok(None);
    }
    let blocking = report.blocking_gates();
    if !blocking.is_empty() {
        let reasons: Vec<String> = blocking
            .iter()
            .map(|g| format!("{} ({})", g.id, g.reason))
            .collect();
        return Err(format!(
            "the patch to {target} was refused: gates not passed: {}; nothing was changed (name a gate in ignore_gates to go ahead without it)",
            reasons.join("; ")
        ));
    }
    Ok(Some(target))
}

fn step(id: &str, status: StepStatus, detail: String, command: Option<&[String]>) -> PatchStep {
    PatchStep {
        id: id.into(),
        status,
        detail,
        command: command.map(<[String]>::to_vec),
    }
}

/// The steps a patch takes, all planned (the upgrade skipped when the package is already
/// there and only the restart is pending).
fn plan(
    request: &PatchRequest,
    context: &Context,
    facts: &PatchFacts,
    target: &str,
) -> Vec<PatchStep> {
    let commands = &context.commands;
    let upgrade = if request.force || facts.installed_version.as_deref() != Some(target) {
        step(
            "upgrade",
            StepStatus::Planned,
            format!("upgrade {} to {target}", facts.package),
            Some(&commands.upgrade),
        )
    } else {
        step(
            "upgrade",
            StepStatus::Skipped,
            format!(
                "{} {target} is installed already: only the restart is pending",
                facts.package
            ),
            Some(&commands.upgrade),
        )
    };
    let post_upgrade = match context.engine {
        EngineKind::Postgresql => {
            "ALTER EXTENSION ... UPDATE for outdated extensions, in every database"
        }
        EngineKind::Mysql => "mariadb-upgrade (system tables)",
    };
    vec![
        upgrade,
        step(
            "restart",
            StepStatus::Planned,
            "restart the server".into(),
            Some(&commands.restart),
        ),
        step(
            "wait",
            StepStatus::Planned,
            format!(
                "until it accepts connections, at most {} s",
                request.restart_timeout_seconds
            ),
            None,
        ),
        step(
            "version",
            StepStatus::Planned,
            format!("the server reports {target}"),
            None,
        ),
        step(
            "post_upgrade",
            StepStatus::Planned,
            post_upgrade.into(),
            None,
        ),
        step(
            "smoke",
            StepStatus::Planned,
            format!(
                "a query in each of the {} databases",
                context.databases.len()
            ),
            None,
        ),
        step(
            "log_scan",
            StepStatus::Planned,
            "errors in the server's log since the restart".into(),
            None,
        ),
    ]
}

/// A patch under way.
struct Patch<'a> {
    request: &'a PatchRequest,
    context: &'a Context,
    report: &'a mut PatchReport,
    target: String,
    /// Platform lab: the binaries the instance ran before (the way back).
    lab_binaries: Option<Option<PathBuf>>,
}

impl Patch<'_> {
    fn run(&mut self) {
        let facts = self.report.facts.clone();
        let log = self.log_before_restart();
        let commands = self.context.commands.clone();
        if self.status("upgrade") == StepStatus::Planned {
            if let Err(e) = run_command(&commands.upgrade, &commands.env) {
                let state = format!(
                    "not restarted: still runs {}; the package upgrade failed and may be half done",
                    facts.running_version
                );
                let mut way_back = vec![self.repair_packages()];
                way_back.extend(self.downgrade());
                return self.fail("upgrade", e, state, way_back);
            }
            self.done("upgrade", format!("{} upgraded", facts.package));
        }
        if let Err(e) = run_command(&commands.restart, &[]) {
            let e = format!("{e}{}", log_excerpt(log.as_ref()));
            return self.fail(
                "restart",
                e,
                "DOWN or in an unknown state: the restart command failed".into(),
                self.after_bad_restart(),
            );
        }
        self.done("restart", "restarted".into());
        let waiting = Instant::now();
        let mut engine = match self.wait_for_server() {
            Ok(engine) => {
                self.done(
                    "wait",
                    format!(
                        "accepted connections {:.1} s after the restart",
                        waiting.elapsed().as_secs_f64()
                    ),
                );
                engine
            }
            Err(e) => {
                let e = format!("{e}{}", log_excerpt(log.as_ref()));
                return self.fail(
                    "wait",
                    e,
                    format!(
                        "DOWN or not accepting connections {} s after the restart",
                        self.request.restart_timeout_seconds
                    ),
                    self.after_bad_restart(),
                );
            }
        };
        if let Err(e) = self.validate(engine.as_mut(), log.as_ref()) {
            let (id, why) = e;
            let version = engine
                .server_facts()
                .map(|f| f.version_number)
                .unwrap_or_else(|_| "an unknown version".into());
            let state = format!("UP, runs {version} and accepts connections, but {id} failed");
            let mut way_back = vec![format!(
                "read what {id} found (above) and fix it; the server is up"
            )];
            way_back.extend(self.downgrade());
            return self.fail(&id, why, state, way_back);
        }
        self.report.state = Some(format!(
            "runs {}, accepts connections; {} database(s) answered the smoke query",
            self.target,
            self.context.databases.len()
        ));
    }

    /// The post-validation steps, in order; Err names the step that failed and why.
    fn validate(
        &mut self,
        engine: &mut dyn crate::engine::Engine,
        log: Option<&LogStart>,
    ) -> std::result::Result<(), (String, String)> {
        let failed = |id: &str, e: String| (id.to_string(), e);
        let version = engine
            .server_facts()
            .map_err(|e| failed("version", e.to_string()))?
            .version_number;
        if version != self.target {
            return Err(failed(
                "version",
                format!(
                    "the server reports {version}, not the target {}: the upgrade installed another release",
                    self.target
                ),
            ));
        }
        self.done("version", format!("the server reports {version}"));
        let updated = engine
            .after_minor_upgrade()
            .map_err(|e| failed("post_upgrade", e.to_string()))?;
        self.done(
            "post_upgrade",
            if updated.is_empty() {
                "nothing to update".into()
            } else {
                updated.join("; ")
            },
        );
        let mut answered = Vec::new();
        for db in &self.context.databases {
            let tables = engine
                .count_tables(db)
                .map_err(|e| failed("smoke", e.to_string()))?;
            answered.push(format!("{db}: {tables} tables"));
        }
        self.done(
            "smoke",
            if answered.is_empty() {
                "no user database to query".into()
            } else {
                answered.join(", ")
            },
        );
        match log {
            None => self.set(
                "log_scan",
                StepStatus::Skipped,
                "the server's log is not known here: give log_path".into(),
            ),
            Some(log) => {
                let errors = error_lines(self.context.engine, &log.new_text());
                if !errors.is_empty() {
                    return Err(failed(
                        "log_scan",
                        format!(
                            "{} error line(s) in {} since the restart: {}",
                            errors.len(),
                            log.path.display(),
                            errors.join(" | ")
                        ),
                    ));
                }
                self.done(
                    "log_scan",
                    format!("no error in {} since the restart", log.path.display()),
                );
            }
        }
        Ok(())
    }

    fn status(&self, id: &str) -> StepStatus {
        self.report
            .steps
            .iter()
            .find(|s| s.id == id)
            .map_or(StepStatus::Skipped, |s| s.status)
    }

    fn set(&mut self, id: &str, status: StepStatus, detail: String) {
        if let Some(s) = self.report.steps.iter_mut().find(|s| s.id == id) {
            s.status = status;
            s.detail = detail;
        }
    }

    fn done(&mut self, id: &str, detail: String) {
        self.set(id, StepStatus::Done, detail);
    }

    /// Marks `id` failed and every later planned step skipped; records the state and the way back.
    fn fail(&mut self, id: &str, why: String, state: String, rollback: Vec<String>) {
        self.set(id, StepStatus::Failed, why.clone());
        for s in &mut self.report.steps {
            if s.status == StepStatus::Planned {
                s.status = StepStatus::Skipped;
                s.detail = format!("not run: {id} failed");
            }
        }
        self.report.failure = Some(format!(
            "patch to {} failed at {id}: {why}. The server is {state}. Way back: {}",
            self.target,
            rollback.join("; then ")
        ));
        self.report.state = Some(state);
        self.report.rollback = rollback;
    }

    /// Polls until the server accepts a connection again, at most restart_timeout_seconds.
    fn wait_for_server(&self) -> Result<Box<dyn crate::engine::Engine>> {
        let deadline = Instant::now() + Duration::from_secs(self.request.restart_timeout_seconds);
        loop {
            match engine::connect(&self.request.connection) {
                Ok(engine) => return Ok(engine),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// Where the server's log is and how long it is now: what comes after is the restart's.
    fn log_before_restart(&self) -> Option<LogStart> {
        let path = self.request.log_path.clone().or_else(|| {
            if self.context.platform == Platform::Lab {
                lab_instance(self.request).map(|i| i.log_file)
            } else {
                engine::connect(&self.request.connection)
                    .and_then(|mut e| e.server_log())
                    .ok()
                    .flatten()
            }
        })?;
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Some(LogStart { path, offset })
    }

    fn repair_packages(&self) -> String {
        match self.context.platform {
            Platform::Debian => {
                "repair the package state: dpkg --configure -a; apt-get -f install".into()
            }
            Platform::Redhat => "look at the transaction: dnf history info last".into(),
            Platform::Lab => "look at the lab: dbcadence lab status --dir <lab_dir>".into(),
        }
    }

    /// The way back to the release that ran before: minor releases share the data format, so
    /// going back keeps the data.
    fn downgrade(&self) -> Vec<String> {
        let facts = &self.report.facts;
        let package = &facts.package;
        let old = facts
            .installed_version
            .clone()
            .unwrap_or_else(|| facts.running_version.clone());
        let back = match self.context.platform {
            Platform::Debian => format!(
                "go back to {old} (same data format): apt-get install --allow-downgrades {package}=<its Debian version: apt-cache policy {package}, /var/log/apt/history.log>"
            ),
            Platform::Redhat => {
                format!("go back to {old} (same data format): dnf downgrade {package}-{old}")
            }
            Platform::Lab => format!(
                "go back to {old} (same data format): dbcadence lab upgrade --dir {} --instance {}{}",
                self.request
                    .lab_dir
                    .as_deref()
                    .map(Path::display)
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                self.request.instance_id.as_deref().unwrap_or_default(),
                match self.lab_binaries.clone().flatten() {
                    Some(dir) => format!(" --bin-dir {}", dir.display()),
                    None => String::new(),
                }
            ),
        };
        vec![
            back,
            format!("restart it: {}", self.context.commands.restart.join(" ")),
        ]
    }

    fn after_bad_restart(&self) -> Vec<String> {
        let mut steps = vec![format!(
            "read the server's log (the lines above): fix what it names (configuration, permissions, disk) and run {}",
            self.context.commands.restart.join(" ")
        )];
        steps.extend(self.downgrade());
        steps
    }
}

/// A server log and its length before the restart.
struct LogStart {
    path: PathBuf,
    offset: u64,
}

impl LogStart {
    /// What was written since (the whole file when it was rotated and is shorter now); at
    /// most the last megabyte.
    fn new_text(&self) -> String {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let len = bytes.len() as u64;
        let from = if len < self.offset { 0 } else { self.offset };
        let from = from.max(len.saturating_sub(1 << 20)) as usize;
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }
}

/// The last lines the server wrote since the restart, for a failure message.
fn log_excerpt(log: Option<&LogStart>) -> String {
    let Some(log) = log else {
        return String::new();
    };
    let text = log.new_text();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(8)..];
    if tail.is_empty() {
        return String::new();
    }
    format!(
        "; the server's log ({}) says: {}",
        log.path.display(),
        tail.join(" | ")
    )
}

/// The lines of a log that report a server error. Clients turned away while the server
/// stopped and started (and failed logins) are not the server's errors.
fn error_lines(engine: EngineKind, text: &str) -> Vec<String> {
    const CLIENT_NOISE: [&str; 6] = [
        "the database system is starting up",
        "the database system is shutting down",
        "the database system is not yet accepting connections",
        "terminating connection due to administrator command",
        "password authentication failed",
        "no pg_hba.conf entry",
    ];
    text.lines()
        .filter(|line| match engine {
            EngineKind::Postgresql => {
                ["PANIC:", "FATAL:", "ERROR:"]
                    .iter()
                    .any(|s| line.contains(s))
                    && !CLIENT_NOISE.iter().any(|n| line.contains(n))
            }
            EngineKind::Mysql => line.contains("[ERROR]"),
        })
        .map(|l| l.trim().to_string())
        .collect()
}

/// Runs an upgrade or restart command; Err holds the end of what it printed.
fn run_command(command: &[String], env: &[(String, String)]) -> std::result::Result<(), String> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| "the command is empty".to_string())?;
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .map_err(|e| format!("{program} did not start: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(format!(
        "{} exited with {}: {}",
        command.join(" "),
        output.status,
        lines[lines.len().saturating_sub(6)..].join(" | ")
    ))
}

fn lab_instance(request: &PatchRequest) -> Option<crate::lab::LabInstance> {
    let lab = crate::lab::Lab::load(request.lab_dir.as_deref()?).ok()?;
    lab.instance(request.instance_id.as_deref()?).cloned()
}

/// Platform lab: the binaries the instance runs before the patch (None inside: the system's).
fn lab_binaries(request: &PatchRequest, platform: Platform) -> Option<Option<PathBuf>> {
    (platform == Platform::Lab)
        .then(|| lab_instance(request).map(|i| i.bin_dir))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_told_from_clients_turned_away() {
        let log = "2026-11-27 LOG:  database system is ready\n\
                   2026-11-27 FATAL:  the database system is starting up\n\
                   2026-11-27 FATAL:  password authentication failed for user \"x\"\n\
                   2026-11-27 FATAL:  could not load library \"/x.so\"\n\
                   2026-11-27 ERROR:  relation \"t\" does not exist\n";
        let errors = error_lines(EngineKind::Postgresql, log);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("could not load library"));
        let mariadb = "2026-11-27 0 [Note] ready\n2026-11-27 0 [ERROR] Incorrect definition of table mysql.proc\n";
        assert_eq!(error_lines(EngineKind::Mysql, mariadb).len(), 1);
    }

    #[test]
    fn a_failing_command_reports_its_last_words() {
        let e = run_command(
            &[
                "sh".into(),
                "-c".into(),
                "echo one; echo two >&2; exit 3".into(),
            ],
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("exit status: 3") && e.contains("two") && e.contains("one"),
            "{e}"
        );
        assert!(run_command(&["true".into()], &[]).is_ok());
        assert!(run_command(&[], &[]).is_err());
    }
}
