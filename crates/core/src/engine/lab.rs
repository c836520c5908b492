//! Lab servers, engine by engine: where each engine keeps a private server's files, which
//! system user runs it, and how one is brought up (a new data directory or a streaming copy of
//! a primary, started with TLS, with its admin login) and stopped. The lab (lab/) plans
//! instances, ports and certificates and calls these; it never matches on the engine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Result;
use crate::connection::{ConnectionArgs, EngineKind};

/// The files of one private server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerFiles {
    pub data_dir: PathBuf,
    /// Socket directory (postgresql) or socket file (mysql).
    pub socket: PathBuf,
    pub log_file: PathBuf,
    /// Where the server writes its pid (postmaster.pid inside the data directory for
    /// postgresql).
    pub pid_file: PathBuf,
}

impl ServerFiles {
    /// The layout of a server living in `instance_dir`.
    pub fn in_dir(kind: EngineKind, instance_dir: &Path) -> ServerFiles {
        let data_dir = instance_dir.join("data");
        match kind {
            EngineKind::Postgresql => ServerFiles {
                socket: instance_dir.join("sock"),
                log_file: instance_dir.join("server.log"),
                pid_file: data_dir.join("postmaster.pid"),
                data_dir,
            },
            EngineKind::Mysql => ServerFiles {
                socket: instance_dir.join("mysqld.sock"),
                log_file: instance_dir.join("error.log"),
                pid_file: instance_dir.join("mysqld.pid"),
                data_dir,
            },
        }
    }
}

/// A running primary that a new PostgreSQL replica copies and follows.
#[derive(Debug, Clone)]
pub struct Primary<'a> {
    pub name: &'a str,
    pub socket: &'a Path,
    pub port: u16,
    pub user: &'a str,
}

/// Everything needed to bring up one lab server.
#[derive(Debug, Clone)]
pub struct LabServer<'a> {
    /// Instance name, for messages.
    pub name: &'a str,
    pub kind: EngineKind,
    /// The directory the server's files live in; handed to the service user.
    pub instance_dir: &'a Path,
    pub files: ServerFiles,
    pub host: &'a str,
    pub port: u16,
    /// The admin login the lab uses, and its password.
    pub user: &'a str,
    pub password: &'a str,
    /// Holds server.pem, server.key and ca.pem, readable by the service user.
    pub tls_dir: &'a Path,
    /// A throwaway restore target: durability traded for loading speed.
    pub tuned_for_loading: bool,
    /// PostgreSQL only: the server binaries (an older release for an upgrade test); None:
    /// the system's.
    pub bin_dir: Option<&'a Path>,
    /// PostgreSQL only: start as a streaming replica of this primary.
    pub primary: Option<Primary<'a>>,
    /// The lab test host's network namespace the server runs in (None: this machine's).
    pub netns: Option<&'a str>,
    /// The admin login over the socket (tells a bootstrapped server from a new one).
    pub admin: ConnectionArgs,
}

/// The system user that runs servers of this engine (and owns their files).
pub fn service_user(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Postgresql => super::postgres::lab::SERVICE_USER,
        EngineKind::Mysql => super::mysql::lab::SERVICE_USER,
    }
}

/// The pid the server wrote, if it did.
pub fn pid(kind: EngineKind, files: &ServerFiles) -> Option<u32> {
    match kind {
        EngineKind::Postgresql => super::postgres::server::pid(&files.data_dir),
        EngineKind::Mysql => super::mysql::server::pid(&files.pid_file),
    }
}

/// Brings a lab server up (initialising or copying its data directory first when needed); a
/// running one is left alone.
pub fn start(server: &LabServer) -> Result<()> {
    match server.kind {
        EngineKind::Postgresql => super::postgres::lab::start(server),
        EngineKind::Mysql => super::mysql::lab::start(server),
    }
}

/// The release of the server binaries a lab server would start with (`bin_dir`, else the
/// system's): what the lab reports as its installed and candidate "package" versions.
pub fn binaries_version(kind: EngineKind, bin_dir: Option<&Path>) -> Result<String> {
    match kind {
        EngineKind::Postgresql => super::postgres::binaries_version(bin_dir),
        EngineKind::Mysql => super::mysql::server::binaries_version(),
    }
}

/// Stops a lab server: a clean shutdown first, then a kill after `timeout`. True when it is gone.
/// Stops a throwaway server whose data is deleted next, as fast as is clean: MariaDB is
/// killed (nothing of its data is kept, and it holds no shared memory that outlives it);
/// PostgreSQL gets the usual fast shutdown (a killed postmaster may leave a System V shared
/// memory segment behind).
pub fn discard(kind: EngineKind, files: &ServerFiles, timeout: Duration) -> bool {
    match kind {
        EngineKind::Postgresql => stop(kind, files, timeout),
        EngineKind::Mysql => super::mysql::server::kill(&files.pid_file, timeout),
    }
}

pub fn stop(kind: EngineKind, files: &ServerFiles, timeout: Duration) -> bool {
    match kind {
        EngineKind::Postgresql => super::postgres::server::stop(&files.data_dir, timeout),
        EngineKind::Mysql => super::mysql::server::stop(&files.pid_file, timeout),
    }
}
