//! Failed logins from a server's log: read from where the last read stopped (a state file per
//! instance), start over when the log was rotated or truncated, count failed authentications
//! per user and source.
//!
//! PostgreSQL: `password authentication failed for user "x"`, `role "x" does not exist` and
//! `no pg_hba.conf entry for host "h", user "x"`; the source comes from the `connection received: host=...` line of the
//! same process (log_connections) when the message does not carry it. MariaDB: `Access denied
//! for user 'x'@'h'`.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::{AuthFailures, AuthReport};
use crate::connection::EngineKind;
use crate::{Error, Result};

/// Where the last read stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Position {
    path: PathBuf,
    inode: u64,
    offset: u64,
}

fn state_file(state_dir: &Path, instance: &str) -> PathBuf {
    state_dir.join(format!(
        "auth-{}.json",
        crate::backup::encode_name(instance)
    ))
}

/// Reads the log from the saved position and counts the failed logins in the new part. In
/// check mode the position is not saved.
pub fn read_failures(
    engine: EngineKind,
    log: &Path,
    state_dir: &Path,
    instance: &str,
    save: bool,
) -> Result<AuthReport> {
    let state = state_file(state_dir, instance);
    let previous: Position = std::fs::read(&state)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut file =
        std::fs::File::open(log).map_err(|e| Error::io("read the server log", log, e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io("read the server log", log, e))?;
    // A new file (rotation) or a shorter one (truncation): read it from its start.
    let restarted =
        previous.path == log && (previous.inode != meta.ino() || previous.offset > meta.len());
    let start = if previous.path == log && !restarted {
        previous.offset
    } else {
        0
    };
    file.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io("read the server log", log, e))?;
    let mut bytes = Vec::new();
    file.take(meta.len().saturating_sub(start))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read the server log", log, e))?;
    // A line still being written waits for the next read.
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&bytes[..complete]);
    let failures = count(engine, &text);
    if save {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| Error::io("create the state directory", state_dir, e))?;
        let position = Position {
            path: log.to_path_buf(),
            inode: meta.ino(),
            offset: start + complete as u64,
        };
        crate::files::write_atomically(
            &state,
            &serde_json::to_vec(&position).unwrap_or_default(),
            0o600,
        )?;
    }
    Ok(AuthReport {
        log_path: log.to_path_buf(),
        bytes_read: complete as u64,
        restarted,
        total: failures.iter().map(|f| f.count).sum(),
        failures,
    })
}

/// Failed logins in some log text, by user and source.
pub fn count(engine: EngineKind, text: &str) -> Vec<AuthFailures> {
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    match engine {
        EngineKind::Postgresql => count_postgres(text, &mut counts),
        EngineKind::Mysql => count_mariadb(text, &mut counts),
    }
    counts
        .into_iter()
        .map(|((user, source), count)| AuthFailures {
            user,
            source,
            count,
        })
        .collect()
}

fn count_postgres(text: &str, counts: &mut BTreeMap<(String, String), u64>) {
    use std::sync::LazyLock;
    static PID: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"\[(\d+)\]").expect("a valid pattern"));
    static RECEIVED: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"connection received: host=(\S+)").expect("a valid pattern")
    });
    static PASSWORD: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r#"FATAL:\s+password authentication failed for user "((?:[^"]|"")*)""#)
            .expect("a valid pattern")
    });
    static NO_ROLE: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r#"FATAL:\s+role "((?:[^"]|"")*)" does not exist"#)
            .expect("a valid pattern")
    });
    static NO_HBA: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r#"FATAL:\s+no pg_hba\.conf entry for host "([^"]*)", user "((?:[^"]|"")*)""#,
        )
        .expect("a valid pattern")
    });
    // The client of each backend process, from its "connection received" line.
    let mut sources: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let pid = PID.captures(line).map(|c| c[1].to_string());
        if let (Some(pid), Some(host)) = (&pid, RECEIVED.captures(line)) {
            let host = match &host[1] {
                "[local]" => "local".to_string(),
                other => other.to_string(),
            };
            sources.insert(pid.clone(), host);
            continue;
        }
        // A wrong password, or an unknown user where no password is asked (trust, peer).
        if let Some(c) = PASSWORD.captures(line).or_else(|| NO_ROLE.captures(line)) {
            let source = pid
                .and_then(|p| sources.get(&p).cloned())
                .unwrap_or_else(|| "unknown".into());
            *counts
                .entry((c[1].replace("\"\"", "\""), source))
                .or_default() += 1;
        } else if let Some(c) = NO_HBA.captures(line) {
            let source = if c[1].is_empty() {
                "local".into()
            } else {
                c[1].to_string()
            };
            *counts
                .entry((c[2].replace("\"\"", "\""), source))
                .or_default() += 1;
        }
    }
}

fn count_mariadb(text: &str, counts: &mut BTreeMap<(String, String), u64>) {
    static DENIED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"Access denied for user '((?:[^'\\]|\\.|'')*)'@'([^']*)'")
            .expect("a valid pattern")
    });
    for c in text.lines().filter_map(|l| DENIED.captures(l)) {
        let source = match &c[2] {
            "localhost" => "local".to_string(),
            other => other.to_string(),
        };
        let user = c[1].replace("\\'", "'").replace("''", "'");
        *counts.entry((user, source)).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_failures_by_user_and_source() {
        let log = r#"2026-11-27 10:00:00.000 UTC [101] LOG:  connection received: host=127.0.0.1 port=51000
2026-11-27 10:00:00.010 UTC [101] FATAL:  password authentication failed for user "alice"
2026-11-27 10:00:01.000 UTC [102] LOG:  connection received: host=[local]
2026-11-27 10:00:01.010 UTC [102] FATAL:  password authentication failed for user "a'b ""q"""
2026-11-27 10:00:02.000 UTC [103] FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "eve", database "x", no encryption
2026-11-27 10:00:03.000 UTC [104] LOG:  connection received: host=127.0.0.1 port=51001
2026-11-27 10:00:03.010 UTC [104] FATAL:  password authentication failed for user "alice"
2026-11-27 10:00:04.000 UTC [105] LOG:  connection received: host=[local]
2026-11-27 10:00:04.010 UTC [105] FATAL:  role "nobody" does not exist
"#;
        let counts = count(EngineKind::Postgresql, log);
        let find = |u: &str, s: &str| {
            counts
                .iter()
                .find(|f| f.user == u && f.source == s)
                .map(|f| f.count)
        };
        assert_eq!(find("alice", "127.0.0.1"), Some(2));
        assert_eq!(find(r#"a'b "q""#, "local"), Some(1));
        assert_eq!(find("eve", "10.0.0.9"), Some(1));
        assert_eq!(find("nobody", "local"), Some(1));
        assert_eq!(counts.iter().map(|f| f.count).sum::<u64>(), 5);
    }

    #[test]
    fn mariadb_failures_by_user_and_source() {
        let log = "2026-11-27 10:00:00 5 [Warning] Access denied for user 'bob'@'localhost' (using password: YES)\n\
                   2026-11-27 10:00:01 6 [Warning] Access denied for user 'bob'@'127.0.0.1' (using password: YES)\n\
                   2026-11-27 10:00:02 7 [Warning] Access denied for user 'a\\'b'@'127.0.0.1' (using password: NO)\n";
        let counts = count(EngineKind::Mysql, log);
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(
            counts
                .iter()
                .any(|f| f.user == "bob" && f.source == "local")
        );
        assert!(
            counts
                .iter()
                .any(|f| f.user == "a'b" && f.source == "127.0.0.1")
        );
    }

    #[test]
    fn reads_resume_and_follow_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("error.log");
        let line = "x [Warning] Access denied for user 'u'@'h' (using password: YES)\n";
        std::fs::write(&log, line.repeat(3)).unwrap();
        let state = dir.path().join("state");
        let read = |save| read_failures(EngineKind::Mysql, &log, &state, "my1", save).unwrap();
        assert_eq!(read(false).total, 3, "check mode saves nothing");
        assert_eq!(read(true).total, 3);
        assert_eq!(read(true).total, 0, "only new lines");
        // A half-written line waits for the next read.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"x [Warning] Access denied for user 'u'@'h'")
            .unwrap();
        assert_eq!(read(true).total, 0);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b" (using password: YES)\n")
            .unwrap();
        assert_eq!(read(true).total, 1);
        // Rotation: a new file under the same name.
        std::fs::rename(&log, dir.path().join("error.log.1")).unwrap();
        std::fs::write(&log, line.repeat(2)).unwrap();
        let rotated = read(true);
        assert!(rotated.restarted);
        assert_eq!(rotated.total, 2);
        // Truncation in place.
        std::fs::write(&log, line).unwrap();
        let truncated = read(true);
        assert!(truncated.restarted);
        assert_eq!(truncated.total, 1);
    }

    use std::io::Write;
}
