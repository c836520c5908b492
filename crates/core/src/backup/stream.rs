//! The dump's one pass through this process: zstd (multi-threaded), sha256 of what is
//! written and, for text dumps, the engine's row counter; plus directory-format dumps, whose
//! files are compressed afterwards, a few at a time.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};

use super::model::ManifestFile;
use crate::engine::DumpPlan;
use crate::files::{Access, sync_dir};
use crate::repository::{S3Store, S3Upload};
use crate::{Error, Result};

/// Where a compressed stream is stored: a new file, or an object of an S3 repository.
pub(crate) enum Output<'a> {
    File { path: PathBuf, access: Access },
    Object { store: &'a S3Store, key: String },
}

impl Output<'_> {
    /// The file's path or the object's URL, for messages.
    fn name(&self) -> PathBuf {
        match self {
            Output::File { path, .. } => path.clone(),
            Output::Object { store, key } => PathBuf::from(store.url(key)),
        }
    }
}

/// The bytes' destination under the hashing: a file (fsync'd at the end) or a multipart
/// upload (completed at the end; aborted when dropped unfinished).
enum Sink {
    File(File),
    Upload(S3Upload),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Upload(u) => u.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Upload(u) => u.flush(),
        }
    }
}

/// Counts and hashes what passes through to the sink.
struct HashingFile {
    file: Sink,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// What was written: sizes and the sha256 of the stored bytes.
pub(super) struct Streamed {
    raw_bytes: u64,
    bytes: u64,
    sha256: String,
}

impl Streamed {
    /// The manifest entry of the file written, at `path` relative to the backup.
    pub(super) fn into_file(self, path: String) -> ManifestFile {
        ManifestFile {
            path,
            bytes: self.bytes,
            raw_bytes: self.raw_bytes,
            sha256: self.sha256,
        }
    }
}

pub(crate) fn write_error(path: &Path, e: std::io::Error) -> Error {
    let hint = if e.raw_os_error() == Some(28) {
        "; the disk is full: free space or point backup_dir at a larger file system"
    } else {
        ""
    };
    Error::Write {
        path: path.to_path_buf(),
        cause: e.to_string(),
        hint,
    }
}

/// The one sink every stream a backup writes goes through: zstd, then a sha256 and a byte
/// count of what lands on disk; fsync'd when finished.
pub(super) struct CompressedFile {
    encoder: zstd::stream::write::Encoder<'static, HashingFile>,
    raw_bytes: u64,
    path: PathBuf,
}

impl CompressedFile {
    /// A new file or object at `out`; `threads` > 1 compresses on that many threads.
    pub(super) fn create(out: &Output, level: i32, threads: u32) -> Result<Self> {
        let name = out.name();
        let file = match out {
            Output::File { path, access } => {
                Sink::File(access.create_file(path).map_err(|e| write_error(path, e))?)
            }
            Output::Object { store, key } => Sink::Upload(store.upload(key)?),
        };
        let out = name.as_path();
        let sink = HashingFile {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut encoder =
            zstd::stream::write::Encoder::new(sink, level).map_err(|e| write_error(out, e))?;
        if threads > 1 {
            encoder
                .multithread(threads)
                .map_err(|e| write_error(out, e))?;
        }
        Ok(CompressedFile {
            encoder,
            raw_bytes: 0,
            path: out.to_path_buf(),
        })
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.encoder
            .write_all(bytes)
            .map_err(|e| write_error(&self.path, e))?;
        self.raw_bytes += bytes.len() as u64;
        crate::progress::advance(bytes.len() as u64);
        Ok(())
    }

    /// Flushes the compressor, fsyncs the file and says what was written.
    pub(super) fn finish(self) -> Result<Streamed> {
        let path = self.path;
        let sink = self.encoder.finish().map_err(|e| write_error(&path, e))?;
        match sink.file {
            Sink::File(file) => file.sync_all().map_err(|e| write_error(&path, e))?,
            Sink::Upload(upload) => upload.finish()?,
        }
        Ok(Streamed {
            raw_bytes: self.raw_bytes,
            bytes: sink.bytes,
            sha256: format!("{:x}", sink.hasher.finalize()),
        })
    }
}

/// Compresses what `source` yields into `out` (globals, and the files of a directory-format
/// dump, streamed: a table file can be large).
pub(super) fn write_compressed(
    source: &mut dyn Read,
    out: &Output,
    level: i32,
) -> Result<Streamed> {
    let mut file = CompressedFile::create(out, level, 1)?;
    let name = out.name();
    let out = name.as_path();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = source
            .read(&mut buf)
            .map_err(|e| Error::io("read", out, e))?;
        if n == 0 {
            break;
        }
        file.write(&buf[..n])?;
    }
    file.finish()
}

/// Runs a dump tool that writes its own files (directory format) and waits for it.
pub(super) fn run_dump_to_directory(plan: &DumpPlan) -> Result<()> {
    plan.tool().run()
}

/// Compresses every file of a dump directory in place (`x` becomes `x.zst`), a few files at a
/// time, and returns them as manifest entries relative to `backup_root`.
pub(super) fn compress_directory(
    backup_root: &Path,
    dir: &Path,
    level: i32,
    threads: u32,
    access: Access,
) -> Result<Vec<ManifestFile>> {
    let mut raw: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("read the dump directory", dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    raw.sort();
    let workers = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads as usize
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Vec<(usize, ManifestFile)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<Vec<(usize, ManifestFile)>> {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = raw.get(index) else {
                            return Ok(done);
                        };
                        let mut source = File::open(path)
                            .map_err(|e| Error::io("read the dump file", path, e))?;
                        let out = PathBuf::from(format!("{}.zst", path.display()));
                        let written = write_compressed(
                            &mut source,
                            &Output::File {
                                path: out.clone(),
                                access,
                            },
                            level,
                        )?;
                        std::fs::remove_file(path)
                            .map_err(|e| Error::io("remove the uncompressed dump file", path, e))?;
                        let relative = out
                            .strip_prefix(backup_root)
                            .unwrap_or(&out)
                            .to_string_lossy()
                            .into_owned();
                        done.push((index, written.into_file(relative)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::invalid("backup", "a compression thread crashed"))
                })
            })
            .collect()
    });
    let mut files = Vec::new();
    for result in results {
        files.extend(result?);
    }
    files.sort_by_key(|(index, _)| *index);
    sync_dir(dir)?;
    Ok(files.into_iter().map(|(_, f)| f).collect())
}

/// Runs the dump and streams its output through zstd into `out`.
pub(super) fn stream_dump(
    plan: &mut DumpPlan,
    out: &Output,
    level: i32,
    threads: u32,
) -> Result<Streamed> {
    let dump_tool = plan.tool();
    let tool = dump_tool.name();
    let mut child = dump_tool.spawn(Stdio::null(), Stdio::piped(), Stdio::piped())?;
    let stderr = crate::process::StderrTail::collect(&mut child);
    let stdout = child.stdout.take().expect("piped");
    let result = (|| -> Result<Streamed> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
        } else {
            threads
        };
        let mut file = CompressedFile::create(out, level, threads)?;
        let mut reader = BufReader::with_capacity(1 << 20, stdout);
        let read_error = |e: std::io::Error| Error::Command {
            command: tool.clone(),
            code: "read".into(),
            stderr: e.to_string(),
        };
        match plan.observer.as_mut() {
            Some(observer) => {
                let mut line = Vec::with_capacity(1 << 16);
                loop {
                    line.clear();
                    let n = reader.read_until(b'\n', &mut line).map_err(read_error)?;
                    if n == 0 {
                        break;
                    }
                    observer.line(&line);
                    file.write(&line)?;
                }
            }
            None => {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = reader.read(&mut buf).map_err(read_error)?;
                    if n == 0 {
                        break;
                    }
                    file.write(&buf[..n])?;
                }
            }
        }
        file.finish()
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    let status = dump_tool.wait(&mut child)?;
    let stderr_text = stderr.text();
    let streamed = result?;
    if !status.success() {
        return Err(crate::process::failed(&tool, status, &stderr_text));
    }
    Ok(streamed)
}
