//! Small helpers with no better home.

use std::io::Read;

/// `n` random bytes as hex, from the kernel's generator.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, as RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Microsecond)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

/// The last `max_lines` lines of a file, for error messages that quote a server's log.
pub fn tail_file(path: &std::path::Path, max_lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(max_lines);
            lines[start..].join("\n")
        }
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

/// The effective user id, read from /proc (no libc: the workspace forbids unsafe code).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether a process is alive; a zombie counts as dead (reference pitfall 4).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the command name in parentheses, which may itself hold spaces.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z" | "X") | None)
        }
        Err(_) => false,
    }
}

/// Finds a program on PATH or in the sbin directories that non-root PATHs lack.
pub fn find_program(name: &str) -> crate::Result<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(std::path::PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            crate::Error::invalid(
                format!("program '{name}'"),
                "not on PATH nor in /usr/sbin; install the package that provides it (mariadb-client, mariadb-server, postgresql-client)",
            )
        })
}

/// A program's file name, for messages ("pg_dump", not its full path).
pub fn program_name(program: &std::path::Path) -> String {
    program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The error for a child process that exited badly: its exit code and the last lines of its
/// stderr, where tools say what went wrong.
pub fn child_failed(command: &str, status: std::process::ExitStatus, stderr: &str) -> crate::Error {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n");
    crate::Error::Command {
        command: command.to_string(),
        code: status.code().map_or("signal".into(), |c| c.to_string()),
        stderr: tail,
    }
}

/// A command that runs as `user` when we are root (initdb and postgres refuse to run as root),
/// and as ourselves otherwise.
pub fn as_user(user: &str, program: &std::path::Path, args: Vec<String>) -> duct::Expression {
    if effective_uid() == Some(0) {
        let mut full = vec![
            "-u".to_string(),
            user.to_string(),
            "--".to_string(),
            program.to_string_lossy().into_owned(),
        ];
        full.extend(args);
        duct::cmd("runuser", full)
    } else {
        duct::cmd(program, args)
    }
}

/// Runs `program args` with `input` on its standard input (an unpacker such as `tar -x` or
/// `mbstream -x`) and fails with its own words if it or the feeding fails.
pub fn feed_command(
    program: &std::path::Path,
    args: &[&std::ffi::OsStr],
    input: &mut dyn std::io::Read,
) -> crate::Result<()> {
    let name = program_name(program);
    let failed = |code: &str, e: std::io::Error| crate::Error::Command {
        command: name.clone(),
        code: code.into(),
        stderr: e.to_string(),
    };
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed("not started", e))?;
    let fed = std::io::copy(input, child.stdin.as_mut().expect("piped"));
    drop(child.stdin.take());
    let output = child.wait_with_output().map_err(|e| failed("wait", e))?;
    if !output.status.success() {
        return Err(child_failed(
            &name,
            output.status,
            &String::from_utf8_lossy(&output.stderr),
        ));
    }
    fed.map(|_| ()).map_err(|e| failed("input", e))
}
