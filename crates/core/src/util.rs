//! Small helpers with no better home.

/// `n` random bytes as hex, from the OS generator. A generator that fails is an error: a
/// password, an id or a scratch name made of zeros would be guessable and would collide.
pub fn random_hex(n: usize) -> crate::Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| {
        crate::Error::invalid(
            "random generator",
            format!("the operating system's random generator failed: {e}"),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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

/// The effective user id.
pub fn effective_uid() -> Option<u32> {
    Some(rustix::process::geteuid().as_raw())
}

/// Uid and gid of a local user, from /etc/passwd (the server users postgres and mysql).
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let uid = fields.nth(1)?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Gives `path` and everything below it to `user` (and its primary group), without following
/// symbolic links. A no-op when we are not root.
pub fn chown_recursive(path: &std::path::Path, user: &str) -> crate::Result<()> {
    if effective_uid() != Some(0) {
        return Ok(());
    }
    let (uid, gid) = user_ids(user).ok_or_else(|| {
        crate::Error::invalid(
            format!("user '{user}'"),
            "no such local user; install the server package that creates it",
        )
    })?;
    let (uid, gid) = (
        rustix::fs::Uid::from_raw(uid),
        rustix::fs::Gid::from_raw(gid),
    );
    fn walk(
        path: &std::path::Path,
        uid: rustix::fs::Uid,
        gid: rustix::fs::Gid,
    ) -> crate::Result<()> {
        rustix::fs::chownat(
            rustix::fs::CWD,
            path,
            Some(uid),
            Some(gid),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| crate::Error::io("change the owner of", path, e.into()))?;
        let meta =
            std::fs::symlink_metadata(path).map_err(|e| crate::Error::io("read", path, e))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).map_err(|e| crate::Error::io("read", path, e))? {
                let entry = entry.map_err(|e| crate::Error::io("read", path, e))?;
                walk(&entry.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    walk(path, uid, gid)
}

/// Free bytes for unprivileged users on the file system holding `path`.
pub fn available_bytes(path: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Whether a process is alive; a zombie counts as dead (reference pitfall 4). rustix can
/// signal a process but not tell a zombie apart, so the state is read from /proc.
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

/// Runs `program args` with `input` on its standard input (an unpacker such as `tar -x` or
/// `mbstream -x`) and fails with its own words if it or the feeding fails.
pub fn feed_command(
    program: &std::path::Path,
    args: &[&std::ffi::OsStr],
    input: &mut dyn std::io::Read,
) -> crate::Result<()> {
    let tool = crate::process::Tool::new(program).args(args);
    let failed = |code: &str, e: std::io::Error| crate::Error::Command {
        command: tool.name(),
        code: code.into(),
        stderr: e.to_string(),
    };
    let mut child = tool.spawn(
        std::process::Stdio::piped(),
        std::process::Stdio::null(),
        std::process::Stdio::piped(),
    )?;
    let fed = std::io::copy(input, child.stdin.as_mut().expect("piped"));
    drop(child.stdin.take());
    let output = child.wait_with_output().map_err(|e| failed("wait", e))?;
    if !output.status.success() {
        return Err(tool.failed(output.status, &String::from_utf8_lossy(&output.stderr)));
    }
    fed.map(|_| ()).map_err(|e| failed("input", e))
}
