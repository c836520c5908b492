//! Where the ledger lives: the file, or a PostgreSQL table for teams and AWX (`ledger_url`,
//! password never in the URL). Everything that reads or writes the ledger goes through
//! [`Store`].

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde_json::Value;
use serde_json::value::RawValue;

use super::*;
use crate::connection::{ConnectionArgs, EngineKind, SslMode};
use crate::engine::postgres::ledger::PostgresLedger;
use crate::secret::SecretString;
use crate::{Error, Result};

/// Where the ledger lives: a JSON-lines file or a PostgreSQL table.
#[derive(Debug, Clone)]
pub enum Store {
    File(Ledger),
    Postgres {
        connection: ConnectionArgs,
        table: String,
        /// The URL without any secret, for messages.
        url: String,
    },
}

/// The default table of the PostgreSQL store.
pub const DEFAULT_TABLE: &str = "dbcadence_ledger";

impl Store {
    /// A PostgreSQL store from `postgresql://user@host:port/dbname?sslmode=..&sslrootcert=..&table=..`.
    /// The password never goes in the URL (it would end up in shell history, process lists and
    /// AWX job output): it comes from `password`, e.g. $DBCADENCE_LEDGER_PASSWORD.
    pub fn postgres(url: &str, password: Option<SecretString>) -> Result<Self> {
        let bad = |detail: String| Error::invalid("ledger_url", detail);
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            return Err(bad("it must start with postgresql://".into()));
        }
        // The driver's own parser reads the URL (user, hosts with IPv6 brackets, port,
        // database, percent-encoding); the parameters it does not know are ours, taken out
        // first: TLS verification (which the driver leaves to its TLS connector) and the table.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut table = DEFAULT_TABLE.to_string();
        let (mut ssl_mode, mut ca_cert) = (SslMode::Prefer, None);
        let mut passed_on = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decode(value);
            match key {
                "sslmode" => {
                    ssl_mode = serde_json::from_value(Value::String(decoded.clone())).map_err(|_| {
                        bad(format!("sslmode '{decoded}' is not one of disable, prefer, require, verify-ca, verify-full"))
                    })?
                }
                "sslrootcert" => ca_cert = Some(PathBuf::from(decoded)),
                "table" => table = decoded,
                "password" => {
                    return Err(bad(
                        "it holds a password; set DBCADENCE_LEDGER_PASSWORD (or ledger_password) instead".into(),
                    ));
                }
                "connect_timeout" => passed_on.push(pair),
                other => {
                    return Err(bad(format!(
                        "unknown parameter '{other}'; known: sslmode, sslrootcert, connect_timeout, table"
                    )));
                }
            }
        }
        let driver_url = if passed_on.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", passed_on.join("&"))
        };
        let config: postgres::Config = driver_url
            .parse()
            .map_err(|e: postgres::Error| bad(format!("it is not a PostgreSQL URL: {e}")))?;
        if config.get_password().is_some() {
            return Err(bad(
                "it holds a password; remove it from the URL and set DBCADENCE_LEDGER_PASSWORD (or ledger_password) instead"
                    .into(),
            ));
        }
        let host = match config.get_hosts() {
            [] => "localhost".to_string(),
            [postgres::config::Host::Tcp(host)] => host.clone(),
            [postgres::config::Host::Unix(_)] => {
                return Err(bad(
                    "a socket directory is not supported here; give a host".into()
                ));
            }
            _ => return Err(bad("give one host".into())),
        };
        let connection = ConnectionArgs {
            engine: Some(EngineKind::Postgresql),
            login_host: Some(host),
            login_port: config.get_ports().first().copied(),
            login_user: config.get_user().map(str::to_string),
            login_password: password,
            login_db: Some(config.get_dbname().unwrap_or("postgres").to_string()),
            ssl_mode,
            ca_cert,
            connect_timeout: config
                .get_connect_timeout()
                .map_or(crate::connection::default_connect_timeout(), |t| {
                    t.as_secs().max(1)
                }),
            ..ConnectionArgs::default()
        };
        if connection.ssl_mode == SslMode::VerifyCa && connection.ca_cert.is_none() {
            return Err(bad("sslmode=verify-ca needs sslrootcert=<CA file>".into()));
        }
        Ok(Store::Postgres {
            connection,
            table,
            url: url.to_string(),
        })
    }

    /// Where the records go, for messages (never a secret).
    pub fn describe(&self) -> String {
        match self {
            Store::File(ledger) => ledger.path().display().to_string(),
            Store::Postgres { url, table, .. } => format!("{url} (table {table})"),
        }
    }

    /// Appends one record durably. Returns false when the store already held a record with
    /// this id (the PostgreSQL store ignores duplicates, so imports are idempotent).
    pub fn append(&self, record: &Record) -> Result<bool> {
        match self {
            Store::File(ledger) => ledger.append(record).map(|()| true),
            Store::Postgres {
                connection, table, ..
            } => PostgresLedger::open(connection, table)?.append(record),
        }
    }

    /// Appends many records over one connection; returns how many were new.
    pub fn append_all(&self, records: &[Record]) -> Result<usize> {
        match self {
            Store::File(ledger) => {
                for record in records {
                    ledger.append(record)?;
                }
                Ok(records.len())
            }
            Store::Postgres {
                connection, table, ..
            } => {
                let mut db = PostgresLedger::open(connection, table)?;
                let mut added = 0;
                for record in records {
                    added += usize::from(db.append(record)?);
                }
                Ok(added)
            }
        }
    }

    /// Calls `visit` for every record without holding them all in memory (the file is read
    /// line by line). Returns the 1-based numbers of unreadable lines.
    pub fn scan(&self, mut visit: impl FnMut(&RecordView)) -> Result<Vec<usize>> {
        match self {
            Store::File(ledger) => match File::open(ledger.path()) {
                Ok(file) => visit_lines(ledger.path(), file, &mut visit).map(|(bad, _)| bad),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
                Err(e) => Err(Error::io("read the ledger", ledger.path(), e)),
            },
            Store::Postgres { .. } => {
                for record in self.read()?.records {
                    let details = RawValue::from_string(record.details.to_string())
                        .map_err(|e| Error::invalid("ledger row", e.to_string()))?;
                    visit(&RecordView {
                        task: record.task,
                        target: TargetView {
                            instance: Cow::Borrowed(&record.target.instance),
                            db: record.target.db.as_deref().map(Cow::Borrowed),
                        },
                        started_at: Cow::Borrowed(&record.started_at),
                        finished_at: Cow::Borrowed(&record.finished_at),
                        outcome: record.outcome,
                        check_mode: record.check_mode,
                        details: Some(&details),
                    });
                }
                Ok(vec![])
            }
        }
    }

    /// Like [`Store::scan`], on `chunks` threads: the file is cut at line boundaries and each
    /// thread folds its part into its own `G` (returned in file order, so order-dependent
    /// work can be replayed by the caller). Unreadable line numbers are file-wide.
    pub fn scan_chunks<G: Send>(
        &self,
        chunks: usize,
        make: impl Fn() -> G + Sync,
        visit: impl Fn(&mut G, &RecordView) + Sync,
    ) -> Result<(Vec<G>, Vec<usize>)> {
        let Store::File(ledger) = self else {
            let mut one = make();
            let bad = self.scan(|r| visit(&mut one, r))?;
            return Ok((vec![one], bad));
        };
        let path = ledger.path();
        let io = |e| Error::io("read the ledger", path, e);
        let size = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((vec![make()], vec![]));
            }
            Err(e) => return Err(io(e)),
        };
        // Cut points: the byte after the first newline at or after each even share.
        let chunks = chunks.clamp(1, 16).min(1 + (size / (1 << 20)) as usize);
        let mut cuts = vec![0u64];
        let mut file = File::open(path).map_err(io)?;
        for i in 1..chunks {
            let mut at = size * i as u64 / chunks as u64;
            file.seek(SeekFrom::Start(at)).map_err(io)?;
            let mut reader = std::io::BufReader::new(&mut file);
            let mut skipped = Vec::new();
            at += reader.read_until(b'\n', &mut skipped).map_err(io)? as u64;
            if at > *cuts.last().unwrap_or(&0) && at < size {
                cuts.push(at);
            }
        }
        cuts.push(size);
        let parts: Vec<Result<(G, Vec<usize>, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = cuts
                .windows(2)
                .map(|w| {
                    let (start, end) = (w[0], w[1]);
                    let (make, visit) = (&make, &visit);
                    scope.spawn(move || -> Result<(G, Vec<usize>, usize)> {
                        let mut g = make();
                        let mut file = File::open(path).map_err(io)?;
                        file.seek(SeekFrom::Start(start)).map_err(io)?;
                        let (bad, number) =
                            visit_lines(path, file.take(end - start), &mut |r| visit(&mut g, r))?;
                        Ok((g, bad, number))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::invalid("ledger scan", "a reader thread panicked"))
                    })
                })
                .collect()
        });
        let (mut out, mut bad, mut lines_before) = (Vec::new(), Vec::new(), 0);
        for part in parts {
            let (g, part_bad, lines) = part?;
            bad.extend(part_bad.into_iter().map(|n| n + lines_before));
            lines_before += lines;
            out.push(g);
        }
        Ok((out, bad))
    }

    /// Every record, oldest first for the table; in append order for the file.
    pub fn read(&self) -> Result<ReadResult> {
        match self {
            Store::File(ledger) => ledger.read(),
            Store::Postgres {
                connection, table, ..
            } => Ok(ReadResult {
                records: PostgresLedger::open(connection, table)?.read()?,
                bad_lines: vec![],
            }),
        }
    }
}

pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let (b'%', Some(byte)) = (bytes[i], hex) {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
