//! The one way to run a child tool.
//!
//! A [`Tool`] is a program, its arguments as separate argv entries (never a shell string: a
//! database name, a path or a template value is data, wherever it comes from), its environment
//! (where secrets travel, never argv), and optionally the user it runs as (initdb and postgres
//! refuse root) and a new session (servers that outlive us). Failures become one typed
//! [`Error::Command`] with the tool's name, its exit code, the last lines of its stderr and,
//! when it could not start, the package that provides it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use crate::{Error, Result};

/// Lines of stderr kept in an error: enough for a tool to say what went wrong.
const STDERR_TAIL_LINES: usize = 8;

/// A child tool to run: argv, environment, user, session.
#[derive(Debug, Clone)]
pub struct Tool {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    run_as: Option<String>,
    new_session: bool,
    netns: Option<String>,
    current_dir: Option<PathBuf>,
    package: &'static str,
}

impl Tool {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Tool {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            run_as: None,
            new_session: false,
            netns: None,
            current_dir: None,
            package: "",
        }
    }

    /// A program found on PATH or in the sbin directories.
    pub fn find(name: &str) -> Result<Self> {
        Ok(Tool::new(crate::util::find_program(name)?))
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Everything after this is an operand, never an option, even when it starts with `-`
    /// (a database named `--result-file=x` or `-h`).
    pub fn operands<I, S>(self, operands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.arg("--").args(operands)
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Runs as `user` when we are root (through runuser); as ourselves otherwise.
    pub fn as_user(mut self, user: &str) -> Self {
        self.run_as = Some(user.to_string());
        self
    }

    /// Runs in a new session (setsid): a server started here leaves our process group, so a
    /// Ctrl-C at our terminal does not reach it.
    pub fn new_session(mut self) -> Self {
        self.new_session = true;
        self
    }

    /// Runs in the named network namespace (`ip netns exec`): the lab's test hosts.
    pub fn in_netns(mut self, netns: Option<&str>) -> Self {
        self.netns = netns.map(str::to_string);
        self
    }

    /// The directory the tool runs in.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// The Debian package that provides the program, named when it cannot start.
    pub fn package(mut self, package: &'static str) -> Self {
        self.package = package;
        self
    }

    /// The program's file name, for messages ("pg_dump", not its full path).
    pub fn name(&self) -> String {
        crate::util::program_name(&self.program)
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The arguments as given (for tests and debug output; secrets are never among them).
    pub fn arguments(&self) -> &[OsString] {
        &self.args
    }

    /// The command to spawn: wrappers first (setsid, runuser), then the program and its argv.
    pub fn command(&self) -> Command {
        let mut argv: Vec<OsString> = Vec::new();
        if self.run_as.is_some() && crate::util::effective_uid() == Some(0) {
            argv.extend(["runuser", "-u"].map(OsString::from));
            argv.push(self.run_as.clone().unwrap_or_default().into());
            argv.push("--".into());
        }
        argv.push(self.program.clone().into_os_string());
        argv.extend(self.args.iter().cloned());
        if let Some(netns) = &self.netns {
            // Entered as root, before runuser drops to the service user.
            let prefix = ["ip", "netns", "exec", netns.as_str()].map(OsString::from);
            argv.splice(0..0, prefix);
        }
        if self.new_session {
            // Not a process group leader (we spawn it), so setsid needs no fork and the child
            // we hold is the server's parent: an early exit is seen by try_wait.
            argv.insert(0, "setsid".into());
        }
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        command
    }

    /// Starts the tool with the given standard streams.
    pub fn spawn(&self, stdin: Stdio, stdout: Stdio, stderr: Stdio) -> Result<Child> {
        self.command()
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| self.not_started(e))
    }

    /// Runs to the end with stdout and stderr captured, whatever its exit code (a checker
    /// that reports findings by exiting non-zero); only not starting is an error.
    pub fn capture(&self) -> Result<Output> {
        self.command()
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.not_started(e))
    }

    /// Runs to the end with stdout and stderr captured; a non-zero exit is an error that
    /// quotes the tool's stderr.
    pub fn output(&self) -> Result<Output> {
        let output = self.capture()?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(self.failed(output.status, &String::from_utf8_lossy(&output.stderr)))
        }
    }

    /// Runs to the end; errors as [`Tool::output`].
    pub fn run(&self) -> Result<()> {
        self.output().map(|_| ())
    }

    /// Runs to the end and returns its standard output, trimmed.
    pub fn read(&self) -> Result<String> {
        self.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// Waits for a child started from this tool.
    pub fn wait(&self, child: &mut Child) -> Result<ExitStatus> {
        child.wait().map_err(|e| Error::Command {
            command: self.name(),
            code: "wait".into(),
            stderr: e.to_string(),
        })
    }

    /// The error for this tool exiting badly.
    pub fn failed(&self, status: ExitStatus, stderr: &str) -> Error {
        failed(&self.name(), status, stderr)
    }

    /// The error for this tool not starting at all (missing program, bad permissions).
    pub fn not_started(&self, e: std::io::Error) -> Error {
        let hint = if self.package.is_empty() {
            String::new()
        } else {
            format!("; install the {} package", self.package)
        };
        Error::Command {
            command: self.name(),
            code: "not started".into(),
            stderr: format!("{e}{hint}"),
        }
    }
}

/// A child's stderr read on a thread while the child runs (so a full pipe never blocks it),
/// keeping at most the last 64 KiB: enough for the tool's own words in an error.
pub struct StderrTail(Option<std::thread::JoinHandle<String>>);

impl StderrTail {
    const KEEP: usize = 64 * 1024;

    /// Starts reading the child's piped stderr (nothing to read when it was not piped).
    pub fn collect(child: &mut Child) -> StderrTail {
        StderrTail(child.stderr.take().map(|mut stderr| {
            std::thread::spawn(move || {
                use std::io::Read;
                let mut tail: Vec<u8> = Vec::new();
                let mut buf = [0u8; 8192];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * Self::KEEP {
                        tail.drain(..tail.len() - Self::KEEP);
                    }
                }
                let start = tail.len().saturating_sub(Self::KEEP);
                String::from_utf8_lossy(&tail[start..]).into_owned()
            })
        }))
    }

    /// What the child wrote (its end), once it has closed stderr.
    pub fn text(self) -> String {
        self.0
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    }
}

/// The error for a child process that exited badly: its exit code and the last lines of its
/// stderr, where tools say what went wrong.
pub fn failed(command: &str, status: ExitStatus, stderr: &str) -> Error {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
    Error::Command {
        command: command.to_string(),
        code: status.code().map_or("signal".into(), |c| c.to_string()),
        stderr: tail,
    }
}

/// Sends a signal to a process; a process that is already gone is not an error.
pub fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Waits until `pid` is gone (a zombie counts as gone, reference pitfall 4), at most `timeout`.
/// Returns whether it is gone.
pub fn wait_gone(pid: u32, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while crate::util::process_alive(pid) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}

/// Waits until a server started as `child` serves: `ready()` is polled every `poll` for at
/// most `timeout`. One that exits first, or is not ready in time (then killed), is an error
/// that quotes the end of its log (`what`: the server, for the message). A ready one is reaped
/// by a thread when it exits (while this process lives; otherwise by init).
pub fn wait_until_ready(
    mut child: Child,
    what: &str,
    log: &Path,
    (timeout, poll): (std::time::Duration, std::time::Duration),
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let failed = |why: String| {
        Error::lab(
            format!("start {what}"),
            format!(
                "{why}; --- last lines of {} ---\n{}",
                log.display(),
                crate::util::tail_file(log, 20)
            ),
        )
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(format!("it exited during start-up ({status})")));
        }
        if ready() {
            std::thread::spawn(move || child.wait());
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!("not ready after {}s", timeout.as_secs())));
        }
        std::thread::sleep(poll);
    }
}

/// Stops a server process: `polite` first, then SIGKILL if it is still there after `timeout`.
pub fn stop_process(pid: u32, polite: rustix::process::Signal, timeout: std::time::Duration) {
    signal(pid, polite);
    if !wait_gone(pid, timeout) {
        signal(pid, rustix::process::Signal::KILL);
        wait_gone(pid, std::time::Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operands_come_after_a_double_dash() {
        let tool = Tool::new("/bin/echo")
            .arg("-n")
            .operands(["--result-file=x", "-h"]);
        let args: Vec<_> = tool
            .arguments()
            .iter()
            .map(|a| a.to_str().unwrap())
            .collect();
        assert_eq!(args, ["-n", "--", "--result-file=x", "-h"]);
    }

    #[test]
    fn a_failure_quotes_the_tail_of_stderr() {
        let out = Tool::new("/bin/sh")
            .args([
                "-c",
                "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i >&2; done; exit 3",
            ])
            .output();
        let Err(Error::Command { code, stderr, .. }) = out else {
            panic!("expected a command error");
        };
        assert_eq!(code, "3");
        assert!(
            stderr.starts_with("line3") && stderr.ends_with("line10"),
            "{stderr}"
        );
    }

    #[test]
    fn the_stderr_tail_is_bounded_and_keeps_the_end() {
        let mut child = Tool::new("/bin/sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 20000 ]; do echo line$i >&2; i=$((i+1)); done",
            ])
            .spawn(Stdio::null(), Stdio::null(), Stdio::piped())
            .unwrap();
        let tail = StderrTail::collect(&mut child);
        child.wait().unwrap();
        let text = tail.text();
        assert!(text.len() <= StderrTail::KEEP, "{}", text.len());
        assert!(text.ends_with("line19999\n"));
    }

    #[test]
    fn a_missing_program_names_its_package() {
        let e = Tool::new("/nonexistent/tool").package("some-package").run();
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("install the some-package package")
        );
    }
}
