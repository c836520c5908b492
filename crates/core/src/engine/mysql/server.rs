//! Private MariaDB servers: the lab's, verification's throwaway servers and the server started
//! on a prepared physical backup all start and stop here.
//!
//! mariadbd runs directly in a new session with `--no-defaults` (no /etc/mysql/my.cnf) and
//! every path as its own `--name=value` argument; it drops to the mysql user itself when we
//! are root. Its pid, socket and log live in a directory it can write (reference pitfall 3).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::Signal;

use crate::process::Tool;
use crate::{Error, Result};

/// How to start one private server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
    pub tmp_dir: PathBuf,
    /// Further `--name=value` options (port, TLS, buffer sizes...).
    pub options: Vec<String>,
    /// The lab test host's network namespace the server runs in (None: this machine's).
    pub netns: Option<String>,
    /// How long to wait for the socket to appear.
    pub timeout: Duration,
}

/// Creates the system tables of a new data directory with mariadb-install-db. That tool is a
/// shell script that word-splits some of its paths (`chown $user $dir`), so a directory whose
/// path holds anything but plain characters is reached through a symbolic link of our own
/// with a plain name.
pub fn install(data_dir: &Path, tmp_dir: &Path) -> Result<()> {
    let plain = |p: &Path| {
        p.to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
    };
    let parent = data_dir.parent().unwrap_or(Path::new("/"));
    let mut _link_dir = None;
    let (data, tmp) = if plain(data_dir) && plain(tmp_dir) {
        (data_dir.to_path_buf(), tmp_dir.to_path_buf())
    } else {
        let link_dir = tempfile::Builder::new()
            .prefix("dbc-ln.")
            .tempdir()
            .map_err(|e| Error::io("create a temp dir", std::env::temp_dir(), e))?;
        let link = link_dir.path().join("i");
        std::os::unix::fs::symlink(parent, &link)
            .map_err(|e| Error::io("link the instance directory", &link, e))?;
        let name = |p: &Path| p.file_name().map(|n| link.join(n)).unwrap_or(link.clone());
        let paths = (name(data_dir), name(tmp_dir));
        _link_dir = Some(link_dir);
        paths
    };
    let mut tool = Tool::find("mariadb-install-db")?
        .package("mariadb-server")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
    if crate::util::effective_uid() == Some(0) {
        tool = tool.arg("--user=mysql");
    }
    tool.run()
}

/// The server's pid, from its pid file.
pub fn pid(pid_file: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The release of the system's mariadbd, from `mariadbd --version`:
/// "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for ..." gives 10.11.19.
pub fn binaries_version() -> Result<String> {
    let text = Tool::find("mariadbd")?
        .package("mariadb-server")
        .arg("--version")
        .read()?;
    text.split_whitespace()
        .skip_while(|w| *w != "Ver")
        .nth(1)
        .and_then(|v| v.split('-').next())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::invalid(
                "mariadbd --version",
                format!("unexpected output '{}'", text.trim()),
            )
        })
}

/// Starts mariadbd and waits until it listens on its socket. A server that exits during
/// start-up fails at once, quoting its log.
pub fn start(spec: &ServerSpec) -> Result<()> {
    // Stale files of a killed server would read as "started".
    let _ = std::fs::remove_file(&spec.pid_file);
    let _ = std::fs::remove_file(&spec.socket);
    let mut tool = Tool::find("mariadbd")?
        .package("mariadb-server")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", spec.data_dir.display()))
        .arg(format!("--socket={}", spec.socket.display()))
        .arg(format!("--pid-file={}", spec.pid_file.display()))
        .arg(format!("--log-error={}", spec.log_file.display()))
        .arg(format!("--tmpdir={}", spec.tmp_dir.display()))
        .args(&spec.options)
        .in_netns(spec.netns.as_deref())
        .new_session();
    if crate::util::effective_uid() == Some(0) {
        tool = tool.arg("--user=mysql");
    }
    let child = tool.spawn(Stdio::null(), Stdio::null(), Stdio::null())?;
    // The socket appears once the server accepts connections.
    crate::process::wait_until_ready(
        child,
        "mariadbd",
        &spec.log_file,
        (spec.timeout, Duration::from_millis(50)),
        || spec.socket.exists() && pid(&spec.pid_file).is_some(),
    )
}

/// Stops the server whose pid is in `pid_file` (SIGTERM, then SIGKILL after `timeout`).
/// Returns whether a server was running.
/// Kills the server (a throwaway one whose data is deleted next).
pub fn kill(pid_file: &Path, timeout: Duration) -> bool {
    let Some(pid) = pid(pid_file).filter(|p| crate::util::process_alive(*p)) else {
        return false;
    };
    crate::process::signal(pid, Signal::KILL);
    crate::process::wait_gone(pid, timeout);
    let _ = std::fs::remove_file(pid_file);
    true
}

pub fn stop(pid_file: &Path, timeout: Duration) -> bool {
    let Some(pid) = pid(pid_file).filter(|p| crate::util::process_alive(*p)) else {
        return false;
    };
    crate::process::stop_process(pid, Signal::TERM, timeout);
    let _ = std::fs::remove_file(pid_file);
    true
}
