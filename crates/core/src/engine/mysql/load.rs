//! Verification's fast load of a mariadb-dump file: the same statements a plain restore runs,
//! in an order that loads faster, with the same result.
//!
//! A plain restore feeds the dump to one client: each table is created with all its indexes,
//! then its rows arrive one INSERT at a time, and every row also goes into every secondary
//! index, in random order. Once those indexes outgrow the buffer pool, each insert reads and
//! writes index pages on disk and the restore slows down more than linearly. Here:
//! - table definitions go to one ordered session, with their secondary keys taken out;
//! - the INSERT statements go to `jobs` connections of our own, whichever is free (InnoDB takes
//!   concurrent inserts into one table; see [`super::load_pool`]). A statement of a table whose
//!   columns all read a field as they read a literal is rewritten and sent as `LOAD DATA LOCAL
//!   INFILE` (see [`super::rows`]): the server then reads fields instead of parsing SQL, in
//!   about half the time. Rows go over our connections rather than more `mariadb` clients: the
//!   client reads every byte of a statement again to find where it ends, and on two cores that
//!   CPU is the server's;
//! - once a table's rows are all read, one `ALTER TABLE ... ADD KEY ...` joins the same queue
//!   and builds its secondary keys by sorting (InnoDB's bulk index build): the keys of one
//!   table build while the next table's rows load (the queue is first in, first out, so every
//!   row of the table was taken before; the ALTER waits for the last ones to finish);
//! - then everything that followed the rows (triggers, views, routines, events) runs on the
//!   ordered session, in the dump's order.
//!
//! LOCK TABLES and DISABLE/ENABLE KEYS are left out: with several sessions the lock would
//! serialise them, and InnoDB ignores DISABLE KEYS. What the restore looks like in the end is
//! proven separately: verification compares SHOW CREATE of every object with the definitions
//! recorded at backup time.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{ChildStdin, Stdio};

use super::dump_parser::{count_tuples, quoted_name};
use super::load_pool::{Pool, Work};
use crate::engine::{FastLoad, RestorePlan};
use crate::process::{StderrTail, Tool};
use crate::{Error, Result};

/// Where the splitter sends the pieces of a dump.
pub(crate) trait LoadSink {
    /// Text for the ordered session: the header, table and view definitions.
    fn structure(&mut self, text: &[u8]) -> Result<()>;
    /// Called before the first row of a table: what the ordered session was given must have
    /// run (the table exists). `header` is the dump's session setup, for the data sessions.
    fn sync(&mut self, header: &[u8]) -> Result<()>;
    /// One complete INSERT statement; `loadable`: a plain `INSERT INTO ... VALUES` of a table
    /// whose rows the LOAD DATA rewrite reads.
    fn data(&mut self, statement: Vec<u8>, loadable: bool) -> Result<()>;
    /// Every row of a table was given: `alter` (its `ALTER TABLE ... ADD KEY ...`) can build
    /// its secondary keys, while the next table's rows load.
    fn keys(&mut self, alter: String, header: &[u8]) -> Result<()>;
}

/// What the splitter keeps for after the rows.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    /// The dump's session setup (the SET lines before the first table).
    pub header: Vec<u8>,
    /// Tables whose secondary keys were taken out of their definition and built after their
    /// rows.
    pub index_builds: usize,
    /// Everything after the rows: triggers, views, routines, events, the closing SET lines.
    pub post: Vec<u8>,
}

#[derive(PartialEq)]
enum Section {
    Header,
    Structure,
    Data,
    Post,
}

/// Whether a dump starts like one this loader knows: mariadb-dump or mysqldump text with its
/// comments, after the sandbox-mode line newer mariadb-dump releases write first. Anything else
/// is restored the plain way.
pub(crate) fn understands(head: &[u8]) -> bool {
    let known =
        |line: &[u8]| line.starts_with(b"-- MariaDB dump") || line.starts_with(b"-- MySQL dump");
    let mut lines = head.split(|b| *b == b'\n');
    match lines.next() {
        Some(first) if first.starts_with(b"/*M!999999\\- enable the sandbox mode */") => {
            lines.next().is_some_and(known)
        }
        Some(first) => known(first),
        None => false,
    }
}

/// Reads the whole dump once, sending the structure and the rows to `sink` as they come and
/// keeping the rest for after the rows.
pub(crate) fn split_dump(mut input: impl BufRead, sink: &mut dyn LoadSink) -> Result<Deferred> {
    let mut deferred = Deferred::default();
    let mut section = Section::Header;
    let mut line = Vec::new();
    let mut create: Option<Vec<u8>> = None;
    // The INSERT statement still open, and whether its rows go as LOAD DATA.
    let mut insert: Option<(Vec<u8>, bool)> = None;
    let mut loadable_tables = std::collections::HashSet::new();
    // The key build of the table whose rows are being read, given once they are all read.
    let mut pending_keys: Option<String> = None;
    let read_error =
        |e: std::io::Error| Error::invalid("restore", format!("reading the dump: {e}"));
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).map_err(read_error)? == 0 {
            break;
        }
        if let Some((statement, _)) = insert.as_mut() {
            statement.extend_from_slice(&line);
            if count_tuples(&line).1 {
                let (statement, loadable) = insert.take().unwrap_or_default();
                sink.data(statement, loadable)?;
            }
            continue;
        }
        if let Some(text) = create.as_mut() {
            text.extend_from_slice(&line);
            if line.starts_with(b")") && line.trim_ascii_end().ends_with(b";") {
                let text = create.take().unwrap_or_default();
                let text = String::from_utf8_lossy(&text);
                if super::rows::loadable(&text)
                    && let Some((table, _)) = quoted_name(text.as_bytes(), b"CREATE TABLE `")
                {
                    loadable_tables.insert(table);
                }
                match defer_secondary_keys(&text) {
                    Some((create, alter)) => {
                        sink.structure(create.as_bytes())?;
                        deferred.index_builds += 1;
                        pending_keys = Some(alter);
                    }
                    None => sink.structure(text.as_bytes())?,
                }
            }
            continue;
        }
        if let Some(next) = section_marker(&line) {
            if next == Section::Data {
                sink.sync(&deferred.header)?;
            } else if let Some(alter) = pending_keys.take() {
                sink.keys(alter, &deferred.header)?;
            }
            section = next;
        }
        match section {
            Section::Header => {
                deferred.header.extend_from_slice(&line);
                sink.structure(&line)?;
            }
            // A definition on one line (not how mariadb-dump writes them) goes as it is.
            Section::Structure
                if line.starts_with(b"CREATE TABLE `")
                    && !line.trim_ascii_end().ends_with(b";") =>
            {
                create = Some(line.clone())
            }
            Section::Structure => sink.structure(&line)?,
            Section::Data if line.starts_with(b"INSERT INTO `") => {
                let (ended, loadable) = match quoted_name(&line, b"INSERT INTO `") {
                    Some((table, rest)) => (
                        count_tuples(rest).1,
                        rest.starts_with(b" VALUES") && loadable_tables.contains(&table),
                    ),
                    None => (false, false),
                };
                if ended {
                    sink.data(line.clone(), loadable)?;
                } else {
                    insert = Some((line.clone(), loadable));
                }
            }
            Section::Data if is_single_session_only(&line) => {}
            // Comments and blank lines around the rows say nothing about what follows.
            Section::Data if line.trim_ascii().is_empty() || line.starts_with(b"--") => {}
            Section::Data | Section::Post => {
                section = Section::Post;
                deferred.post.extend_from_slice(&line);
            }
        }
    }
    if insert.is_some() || create.is_some() {
        return Err(Error::invalid(
            "restore",
            "the dump ends inside a statement: the backup is truncated",
        ));
    }
    if let Some(alter) = pending_keys.take() {
        sink.keys(alter, &deferred.header)?;
    }
    Ok(deferred)
}

/// The section a mariadb-dump comment starts, if it starts one.
fn section_marker(line: &[u8]) -> Option<Section> {
    let text = line.strip_prefix(b"-- ")?;
    if text.starts_with(b"Table structure for table ")
        || text.starts_with(b"Temporary table structure for view ")
    {
        Some(Section::Structure)
    } else if text.starts_with(b"Dumping data for table ") {
        Some(Section::Data)
    } else if text.starts_with(b"Dumping routines ")
        || text.starts_with(b"Dumping events ")
        || text.starts_with(b"Final view structure for view ")
    {
        Some(Section::Post)
    } else {
        None
    }
}

/// Lines around a table's rows that only make sense for one session: LOCK TABLES (it would
/// serialise the sessions) and DISABLE/ENABLE KEYS (ignored by InnoDB).
fn is_single_session_only(line: &[u8]) -> bool {
    let line = line.trim_ascii();
    line.starts_with(b"LOCK TABLES `")
        || line == b"UNLOCK TABLES;"
        || (line.starts_with(b"/*!40000 ALTER TABLE `")
            && (line.ends_with(b"DISABLE KEYS */;") || line.ends_with(b"ENABLE KEYS */;")))
}

/// A dump's CREATE TABLE without its secondary keys, and the ALTER TABLE that adds them back
/// in the same order; None when the table is left as it is: not InnoDB, partitioned, with
/// constraints (foreign keys need their index, checks are kept simple), or without secondary
/// keys. A key that starts with the AUTO_INCREMENT column stays (the column needs a key).
pub(crate) fn defer_secondary_keys(create: &str) -> Option<(String, String)> {
    let lines: Vec<&str> = create.lines().collect();
    let (first, rest) = lines.split_first()?;
    let (last, body) = rest.split_last()?;
    let (table, _) = quoted_name(first.as_bytes(), b"CREATE TABLE `")?;
    if !last.starts_with(") ENGINE=InnoDB") || !last.trim_end().ends_with(';') {
        return None;
    }
    if body
        .iter()
        .any(|l| !l.starts_with("  ") || l.starts_with("  CONSTRAINT"))
    {
        return None;
    }
    let auto_columns: Vec<String> = body
        .iter()
        .filter(|l| l.contains(" AUTO_INCREMENT"))
        .filter_map(|l| quoted_name(l.as_bytes(), b"  `").map(|(name, _)| name))
        .collect();
    let first_column = |key: &str| -> Option<String> {
        let (_, rest) = quoted_name(key.trim_start().as_bytes(), b"KEY `")
            .or_else(|| quoted_name(key.trim_start().as_bytes(), b"UNIQUE KEY `"))?;
        quoted_name(rest, b" (`").map(|(name, _)| name)
    };
    let (mut kept, mut moved) = (Vec::new(), Vec::new());
    for line in body {
        let definition = line.trim().trim_end_matches(',');
        let secondary = line.starts_with("  KEY `") || line.starts_with("  UNIQUE KEY `");
        if secondary && !first_column(line).is_some_and(|c| auto_columns.contains(&c)) {
            moved.push(format!("ADD {definition}"));
        } else {
            kept.push(format!("  {definition}"));
        }
    }
    if moved.is_empty() || kept.is_empty() {
        return None;
    }
    let create = format!("{first}\n{}\n{last}\n", kept.join(",\n"));
    let alter = format!(
        "ALTER TABLE {} {};\n",
        super::quote_ident(&table),
        moved.join(", ")
    );
    Some((create, alter))
}

/// The `mariadb` client of the ordered part, fed on its standard input.
struct Session {
    tool: Tool,
    child: std::process::Child,
    stdin: Option<BufWriter<ChildStdin>>,
    stdout: Option<BufReader<std::process::ChildStdout>>,
    stderr: StderrTail,
}

impl Session {
    /// Starts a client whose results are read back (the sync).
    fn start(plan: &RestorePlan) -> Result<Session> {
        // --unbuffered: the client writes each result as soon as it has it.
        let mut args = plan.args.clone();
        let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
        args.insert(at, "--unbuffered".into());
        let tool = Tool::new(&plan.program)
            .args(&args)
            .envs(plan.env.iter().map(|(k, v)| (k, v)));
        let mut child = tool.spawn(Stdio::piped(), Stdio::piped(), Stdio::piped())?;
        let stderr = StderrTail::collect(&mut child);
        Ok(Session {
            stdin: child
                .stdin
                .take()
                .map(|s| BufWriter::with_capacity(1 << 16, s)),
            stdout: child.stdout.take().map(BufReader::new),
            tool,
            child,
            stderr,
        })
    }

    /// Writes to the client; a client that stopped (a failed statement) is reported by
    /// [`Session::finish`] with its own words.
    fn write(&mut self, text: &[u8]) -> bool {
        match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(text).is_ok(),
            None => false,
        }
    }

    /// Waits until everything written so far has run: a marker query, read back.
    fn sync(&mut self, marker: u64) -> bool {
        let marker = format!("dbcadence-sync-{marker}");
        let query = format!("SELECT '{marker}';\n");
        let sent =
            self.write(query.as_bytes()) && self.stdin.as_mut().is_some_and(|s| s.flush().is_ok());
        let Some(stdout) = self.stdout.as_mut() else {
            return false;
        };
        if !sent {
            return false;
        }
        let mut answer = String::new();
        loop {
            answer.clear();
            match stdout.read_line(&mut answer) {
                Ok(0) | Err(_) => return false,
                Ok(_) if answer.trim_end() == marker => return true,
                Ok(_) => {}
            }
        }
    }

    /// Closes the input and waits; a client that failed is an error quoting its stderr.
    fn finish(mut self) -> Result<()> {
        let flushed = self.stdin.take().map(|mut s| s.flush()).transpose();
        drop(self.stdout.take());
        let status = self.tool.wait(&mut self.child)?;
        let stderr = self.stderr.text();
        if !status.success() {
            return Err(self.tool.failed(status, &stderr));
        }
        flushed.map_err(|e| Error::invalid("restore", format!("feeding the client: {e}")))?;
        Ok(())
    }
}

/// The sink of a real load: the ordered session and, from the first rows on, the pool.
struct Loader<'a> {
    connection: &'a crate::connection::ConnectionArgs,
    database: &'a str,
    jobs: u32,
    ordered: Option<Session>,
    pool: Option<Pool>,
    syncs: u64,
    /// The tables whose rows went as LOAD DATA.
    tables_as_load_data: std::collections::HashSet<String>,
}

impl Loader<'_> {
    /// The ordered session stopped: its own error.
    fn ordered_failed(&mut self) -> Error {
        self.ordered
            .take()
            .and_then(|session| session.finish().err())
            .unwrap_or_else(|| {
                Error::invalid(
                    "restore",
                    "the client loading the table definitions stopped",
                )
            })
    }

    fn ordered_write(&mut self, text: &[u8]) -> Result<()> {
        if self.ordered.as_mut().is_some_and(|s| s.write(text)) {
            Ok(())
        } else {
            Err(self.ordered_failed())
        }
    }

    /// Stops the ordered session after a failure elsewhere.
    fn abandon(&mut self) {
        if let Some(mut session) = self.ordered.take() {
            let _ = session.child.kill();
            let _ = session.finish();
        }
    }
}

impl LoadSink for Loader<'_> {
    fn structure(&mut self, text: &[u8]) -> Result<()> {
        self.ordered_write(text)
    }

    fn sync(&mut self, header: &[u8]) -> Result<()> {
        self.syncs += 1;
        let syncs = self.syncs;
        if !self.ordered.as_mut().is_some_and(|s| s.sync(syncs)) {
            return Err(self.ordered_failed());
        }
        if self.pool.is_none() {
            self.pool = Some(Pool::start(
                self.connection,
                self.database,
                self.jobs,
                header,
            )?);
        }
        Ok(())
    }

    fn keys(&mut self, alter: String, header: &[u8]) -> Result<()> {
        // The table's definition must have run (a table without rows had no sync yet).
        self.sync(header)?;
        self.data(alter.into_bytes(), false)
    }

    fn data(&mut self, statement: Vec<u8>, loadable: bool) -> Result<()> {
        match &self.pool {
            Some(pool) => {
                let work = if loadable && pool.takes_rows {
                    if let Some((table, _)) = quoted_name(&statement, b"INSERT INTO `") {
                        self.tables_as_load_data.insert(table);
                    }
                    Work::Rows(statement)
                } else {
                    Work::Statement(statement)
                };
                if pool.send(work) {
                    return Ok(());
                }
                Err(self
                    .pool
                    .take()
                    .map(Pool::finish)
                    .and_then(|r| r.err())
                    .unwrap_or_else(|| Error::invalid("restore", "every loading session stopped")))
            }
            None => Err(Error::invalid(
                "restore",
                "the dump has rows before any table definition",
            )),
        }
    }
}

/// Loads `dump` into the plan's database when it is a dump this loader understands (None:
/// nothing was read; restore it the plain way).
pub(crate) fn load_if_understood(
    plan: &RestorePlan,
    target: (&crate::connection::ConnectionArgs, &str),
    dump: &mut dyn BufRead,
    jobs: u32,
) -> Result<Option<FastLoad>> {
    let head = dump
        .fill_buf()
        .map_err(|e| Error::invalid("restore", format!("reading the dump: {e}")))?;
    if !understands(head) {
        return Ok(None);
    }
    load(plan, target, dump, jobs).map(Some)
}

/// Loads the dump read from `input` into `database` of the server at `connection` (the plan
/// runs the `mariadb` client for the ordered part): definitions, rows on `jobs` connections,
/// secondary keys, then what followed the rows. Returns the number of tables whose secondary
/// keys were built after their rows and of those whose rows went as LOAD DATA.
pub(crate) fn load(
    plan: &RestorePlan,
    (connection, database): (&crate::connection::ConnectionArgs, &str),
    input: impl BufRead,
    jobs: u32,
) -> Result<FastLoad> {
    let jobs = jobs.max(1);
    let mut loader = Loader {
        connection,
        database,
        jobs,
        ordered: Some(Session::start(plan)?),
        pool: None,
        syncs: 0,
        tables_as_load_data: Default::default(),
    };
    let split = split_dump(input, &mut loader);
    let rows = match loader.pool.take() {
        Some(pool) => pool.finish(),
        None => Ok(()),
    };
    let deferred = match (split, rows) {
        (Ok(deferred), Ok(())) => deferred,
        (Err(e), _) | (Ok(_), Err(e)) => {
            loader.abandon();
            return Err(e);
        }
    };
    loader.ordered_write(&deferred.post)?;
    match loader.ordered.take() {
        Some(session) => session.finish()?,
        None => return Err(loader.ordered_failed()),
    }
    Ok(FastLoad {
        keys_built_after: deferred.index_builds,
        tables_as_load_data: loader.tables_as_load_data.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = "CREATE TABLE `t``x` (\n  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n  `s` tinyint(4) DEFAULT NULL,\n  `a` decimal(12,2) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `u` (`a`,`s`),\n  KEY `k_id` (`id`,`s`),\n  KEY `k s` (`s`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;\n";

    #[test]
    fn secondary_keys_move_to_one_alter_in_order() {
        let (create, alter) = defer_secondary_keys(CREATE).expect("deferred");
        assert_eq!(
            create,
            "CREATE TABLE `t``x` (\n  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n  `s` tinyint(4) DEFAULT NULL,\n  `a` decimal(12,2) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `k_id` (`id`,`s`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;\n"
        );
        assert_eq!(
            alter,
            "ALTER TABLE `t``x` ADD UNIQUE KEY `u` (`a`,`s`), ADD KEY `k s` (`s`);\n"
        );
    }

    #[test]
    fn tables_with_constraints_or_other_engines_stay_as_they_are() {
        let fk = CREATE.replace(
            "  KEY `k s` (`s`)\n",
            "  KEY `k s` (`s`),\n  CONSTRAINT `f` FOREIGN KEY (`s`) REFERENCES `p` (`id`)\n",
        );
        assert!(defer_secondary_keys(&fk).is_none());
        assert!(defer_secondary_keys(&CREATE.replace("InnoDB", "MyISAM")).is_none());
        let no_keys =
            "CREATE TABLE `p` (\n  `id` int NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n";
        assert!(defer_secondary_keys(no_keys).is_none());
    }

    #[derive(Default)]
    struct Recorded {
        structure: String,
        data: Vec<String>,
        synced_header: Option<String>,
        keys: Vec<String>,
    }

    impl LoadSink for Recorded {
        fn structure(&mut self, text: &[u8]) -> Result<()> {
            self.structure.push_str(&String::from_utf8_lossy(text));
            Ok(())
        }
        fn sync(&mut self, header: &[u8]) -> Result<()> {
            self.synced_header = Some(String::from_utf8_lossy(header).into_owned());
            Ok(())
        }
        fn data(&mut self, statement: Vec<u8>, _loadable: bool) -> Result<()> {
            self.data.push(String::from_utf8(statement).unwrap());
            Ok(())
        }
        fn keys(&mut self, alter: String, _header: &[u8]) -> Result<()> {
            // Given after the table's rows.
            assert!(!self.data.is_empty());
            self.keys.push(alter);
            Ok(())
        }
    }

    #[test]
    fn a_dump_splits_into_structure_rows_keys_and_what_follows() {
        let dump = format!(
            "-- MariaDB dump 10.19\n/*!40101 SET NAMES utf8mb4 */;\n--\n-- Table structure for table `t``x`\n--\n\nDROP TABLE IF EXISTS `t``x`;\n{CREATE}\n--\n-- Dumping data for table `t``x`\n--\n\nLOCK TABLES `t``x` WRITE;\n/*!40000 ALTER TABLE `t``x` DISABLE KEYS */;\nINSERT INTO `t``x` VALUES (1,1,'a;\\');'),\n(2,2,');(');\nINSERT INTO `t``x` VALUES (3,3,'x');\n/*!40000 ALTER TABLE `t``x` ENABLE KEYS */;\nUNLOCK TABLES;\nDELIMITER ;;\n/*!50003 CREATE TRIGGER tr BEFORE INSERT ON `t``x` FOR EACH ROW SET NEW.s = 1 */;;\nDELIMITER ;\n/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n"
        );
        let mut sink = Recorded::default();
        let deferred = split_dump(dump.as_bytes(), &mut sink).unwrap();
        assert_eq!(sink.data.len(), 2, "{:?}", sink.data);
        assert!(sink.data[0].ends_with("(2,2,');(');\n"), "{:?}", sink.data);
        assert_eq!(
            sink.synced_header.as_deref(),
            Some("-- MariaDB dump 10.19\n/*!40101 SET NAMES utf8mb4 */;\n--\n")
        );
        assert!(sink.structure.contains("DROP TABLE IF EXISTS"));
        assert!(!sink.structure.contains("KEY `k s`") && !sink.structure.contains("LOCK TABLES"));
        assert_eq!(deferred.index_builds, 1);
        assert_eq!(
            sink.keys,
            ["ALTER TABLE `t``x` ADD UNIQUE KEY `u` (`a`,`s`), ADD KEY `k s` (`s`);\n"]
        );
        let post = String::from_utf8(deferred.post).unwrap();
        assert!(
            post.starts_with("DELIMITER ;;\n") && post.contains("TRIGGER tr"),
            "{post}"
        );
        assert!(
            !post.contains("UNLOCK") && !post.contains("ENABLE KEYS"),
            "{post}"
        );
    }

    #[test]
    fn dumps_are_recognised_with_or_without_the_sandbox_line() {
        assert!(understands(
            b"-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n--\n"
        ));
        assert!(understands(
            b"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19\n"
        ));
        assert!(!understands(b"CREATE TABLE t (id int);\n"));
        assert!(!understands(
            b"/*M!999999\\- enable the sandbox mode */ \nDROP TABLE x;\n"
        ));
    }

    #[test]
    fn a_truncated_dump_is_an_error() {
        let dump =
            "-- MariaDB dump\n-- Table structure for table `t`\nCREATE TABLE `t` (\n  `id` int\n";
        assert!(split_dump(dump.as_bytes(), &mut Recorded::default()).is_err());
        let dump = "-- MariaDB dump\n-- Dumping data for table `t`\nINSERT INTO `t` VALUES (1),\n";
        assert!(split_dump(dump.as_bytes(), &mut Recorded::default()).is_err());
    }
}
