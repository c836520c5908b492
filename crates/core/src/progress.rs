//! Progress of long operations, for people. The core reports what it moves (bytes dumped,
//! bytes restored) to one sink that the front end installs: the CLI draws a bar on a
//! terminal or prints a line every few seconds in a log; the modules install nothing, so
//! nothing but the one JSON object ever reaches Ansible's stdout.

use std::sync::OnceLock;

/// Where progress goes.
pub trait Sink: Send + Sync {
    /// A new phase: what it is and, when known, how many bytes it will move.
    fn start(&self, what: &str, total: Option<u64>);
    /// `bytes` more moved.
    fn advance(&self, bytes: u64);
    /// The phase is over.
    fn finish(&self);
}

static SINK: OnceLock<Box<dyn Sink>> = OnceLock::new();

/// Installs the process's sink (once; later calls are ignored).
pub fn install(sink: Box<dyn Sink>) {
    let _ = SINK.set(sink);
}

/// Starts a phase (no-op without a sink).
pub fn start(what: &str, total: Option<u64>) {
    if let Some(sink) = SINK.get() {
        sink.start(what, total);
    }
}

pub fn advance(bytes: u64) {
    if let Some(sink) = SINK.get() {
        sink.advance(bytes);
    }
}

pub fn finish() {
    if let Some(sink) = SINK.get() {
        sink.finish();
    }
}

/// A reader that reports the bytes read through it.
pub struct Counting<R>(pub R);

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        advance(n as u64);
        Ok(n)
    }
}
