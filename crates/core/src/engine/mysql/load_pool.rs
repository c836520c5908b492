//! The loading sessions of verification's fast load: `jobs` connections of our own taking work
//! from one queue, whichever is free takes the next. Each is started with the dump's own header
//! (character set, sql_mode, time zone, unique and foreign key checks off).
//!
//! A piece of work is a statement run as it is (an INSERT of a table the rewrite does not
//! read, an `ALTER TABLE ... ADD KEY`), or one INSERT statement's rows rewritten and sent as a
//! `LOAD DATA LOCAL INFILE` (see [`super::rows`]): the rows of one statement, about a megabyte,
//! so a statement that loses a deadlock between sessions is simply run again.

use std::sync::{Arc, Mutex, mpsc};

use super::MysqlEngine;
use super::dump_parser::quoted_name;
use crate::connection::ConnectionArgs;
use crate::{Error, Result};

/// One piece of work for a loading session.
pub(super) enum Work {
    /// A statement, run as it is.
    Statement(Vec<u8>),
    /// An INSERT statement of a loadable table, sent as LOAD DATA.
    Rows(Vec<u8>),
}

/// `jobs` connections taking work from one queue.
pub(super) struct Pool {
    queue: Option<mpsc::SyncSender<Work>>,
    workers: Vec<std::thread::JoinHandle<Result<()>>>,
    /// Whether rows may go as LOAD DATA: the server takes LOCAL INFILE and the dump names its
    /// character set.
    pub(super) takes_rows: bool,
}

/// The statements of a dump's header (its SET lines), to run on every connection.
fn header_statements(header: &[u8]) -> Vec<Vec<u8>> {
    header
        .split(|b| *b == b'\n')
        .map(|line| line.trim_ascii())
        .filter(|line| line.starts_with(b"/*!") && line.ends_with(b";"))
        .map(|line| line[..line.len() - 1].to_vec())
        .collect()
}

/// The character set the dump's header names (`SET NAMES utf8mb4`): LOAD DATA reads its rows
/// in it, as the server read the INSERT text.
fn dump_charset(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let (_, rest) = text.split_once("SET NAMES ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Runs `attempt`; a deadlock between the loading sessions (InnoDB picks one statement as the
/// victim and rolls it back whole) runs it again. Any other failure is returned.
fn retrying_deadlocks<T>(mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    const ATTEMPTS: u32 = 5;
    let mut tries = 1;
    loop {
        match attempt() {
            Err(Error::Query { cause, .. })
                if tries < ATTEMPTS
                    && (cause.contains("ERROR 1213") || cause.contains("ERROR 1205")) =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20 * u64::from(tries)));
            }
            other => return other,
        }
    }
}

/// Loads one INSERT statement's rows with LOAD DATA. Every row must arrive: the rows added
/// must be the rows sent, without a warning (LOAD DATA LOCAL turns what would fail an INSERT,
/// a duplicate key or a value that does not fit, into warnings).
fn load_rows(engine: &mut MysqlEngine, charset: &str, statement: &[u8]) -> Result<()> {
    let invalid = |what: String| Error::invalid("restore", what);
    let (table, rest) = quoted_name(statement, b"INSERT INTO `")
        .ok_or_else(|| invalid("a row statement without its table".into()))?;
    let values = rest
        .strip_prefix(b" VALUES")
        .ok_or_else(|| invalid(format!("rows of `{table}` without VALUES")))?;
    let mut data = Vec::with_capacity(values.len());
    let rows = super::rows::rewrite_values(values, &mut data)
        .map_err(|e| invalid(format!("reading the rows of `{table}`: {e}")))?;
    let data = bytes::Bytes::from(data);
    let sql = format!(
        "LOAD DATA LOCAL INFILE 'rows' INTO TABLE {} CHARACTER SET {charset}",
        super::quote_ident(&table)
    );
    let what = format!("load rows of {table}");
    let (added, warnings) =
        retrying_deadlocks(|| engine.load_local_data(&what, &sql, data.clone()))?;
    if added != rows || warnings > 0 {
        let shown = engine
            .query_rows("read the load's warnings", "SHOW WARNINGS LIMIT 3")
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| super::text(r, 2))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        return Err(invalid(format!(
            "loading the rows of `{table}` added {added} of {rows} rows with {warnings} warnings: {shown}"
        )));
    }
    Ok(())
}

impl Pool {
    pub(super) fn start(
        connection: &ConnectionArgs,
        database: &str,
        jobs: u32,
        header: &[u8],
    ) -> Result<Pool> {
        // A few statements (about 1 MB each) wait per connection: memory stays bounded.
        let (queue, receiver) = mpsc::sync_channel::<Work>(2 * jobs as usize);
        let receiver = Arc::new(Mutex::new(receiver));
        let setup = header_statements(header);
        let charset = dump_charset(header);
        let mut workers = Vec::new();
        let mut takes_rows = charset.is_some();
        for _ in 0..jobs.max(1) {
            let mut engine = MysqlEngine::connect(connection)?;
            engine.run(
                "use the restored database",
                &format!("USE {}", super::quote_ident(database)),
            )?;
            for statement in &setup {
                engine.run_bytes("run the dump's header", statement)?;
            }
            // No gap locks between sessions that insert into the same table.
            engine.run(
                "set the isolation level",
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            )?;
            // The dump turns unique checks off; into an empty table InnoDB then takes the
            // first statement as a bulk insert under a table lock, and the other sessions
            // wait for it. With the checks on, the sessions insert side by side (measured:
            // rows 3.1 s instead of 4.9 s, and CHECK TABLE 0.4 s instead of 1.0 s after it).
            // Secondary unique keys are built by ALTER TABLE afterwards, which checks them.
            engine.run("turn unique checks on", "SET SESSION unique_checks = 1")?;
            if workers.is_empty() {
                let local_infile = engine
                    .query_rows("read local_infile", "SELECT @@local_infile")?
                    .first()
                    .and_then(|r| super::text(r, 0));
                takes_rows &= local_infile.as_deref() == Some("1");
            }
            let receiver = Arc::clone(&receiver);
            let charset = charset.clone().unwrap_or_default();
            workers.push(std::thread::spawn(move || -> Result<()> {
                loop {
                    let next = receiver.lock().ok().and_then(|r| r.recv().ok());
                    match next {
                        None => return Ok(()),
                        Some(Work::Statement(statement)) => {
                            retrying_deadlocks(|| engine.run_bytes("load rows", &statement))?
                        }
                        Some(Work::Rows(statement)) => {
                            load_rows(&mut engine, &charset, &statement)?
                        }
                    }
                }
            }));
        }
        Ok(Pool {
            queue: Some(queue),
            workers,
            takes_rows,
        })
    }

    /// Queues work; false when every connection has stopped.
    pub(super) fn send(&self, work: Work) -> bool {
        self.queue.as_ref().is_some_and(|q| q.send(work).is_ok())
    }

    /// Waits for every connection; the first failure is the error.
    pub(super) fn finish(mut self) -> Result<()> {
        drop(self.queue.take());
        let mut first_error = None;
        for worker in self.workers.drain(..) {
            let result = worker
                .join()
                .unwrap_or_else(|_| Err(Error::invalid("restore", "a loading thread crashed")));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_gives_the_session_setup_and_the_character_set() {
        let header = b"-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n/*!40103 SET TIME_ZONE='+00:00' */;\n--\n";
        assert_eq!(header_statements(header).len(), 2);
        assert_eq!(dump_charset(header).as_deref(), Some("utf8mb4"));
        assert_eq!(dump_charset(b"-- no names\n"), None);
    }
}
