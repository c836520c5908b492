//! Progress for people at a terminal or reading a log: the core reports bytes moved
//! (dbcadence_core::progress); here they become an indicatif bar with bytes, rate and ETA when
//! stderr is a terminal, or a plain line every few seconds when it is not (timers, CI logs).
//! Everything goes to stderr: stdout stays the command's result.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Installs the right sink for this process's stderr.
pub fn install() {
    if std::io::stderr().is_terminal() {
        dbcadence_core::progress::install(Box::new(Bar(Mutex::new(None))));
    } else {
        dbcadence_core::progress::install(Box::new(Lines(Mutex::new(None))));
    }
}

struct Bar(Mutex<Option<ProgressBar>>);

impl dbcadence_core::progress::Sink for Bar {
    fn start(&self, what: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/~{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg} {bytes} {binary_bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_message(what.to_string());
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            // The total is an estimate: never let the bar claim more than it knows.
            if bar.length().is_some_and(|len| bar.position() + bytes > len) {
                bar.set_length(bar.position() + bytes);
            }
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

/// A plain line every few seconds, for logs.
struct Lines(Mutex<Option<Phase>>);

struct Phase {
    what: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_line: Instant,
}

/// How often a line is written: 5 s, or $DBCADENCE_PROGRESS_SECONDS.
fn every() -> Duration {
    std::env::var("DBCADENCE_PROGRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(5), Duration::from_secs)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

impl Phase {
    fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / seconds;
        let of = self
            .total
            .map(|t| format!(" of ~{}", megabytes(t)))
            .unwrap_or_default();
        format!(
            "dbcadence: {}: {}{of}, {}/s",
            self.what,
            megabytes(self.done),
            megabytes(rate as u64)
        )
    }
}

impl dbcadence_core::progress::Sink for Lines {
    fn start(&self, what: &str, total: Option<u64>) {
        let now = Instant::now();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Phase {
            what: what.to_string(),
            total,
            done: 0,
            started: now,
            last_line: now,
        });
    }

    fn advance(&self, bytes: u64) {
        if let Some(phase) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            phase.done += bytes;
            if phase.last_line.elapsed() >= every() {
                phase.last_line = Instant::now();
                eprintln!("{}", phase.line());
            }
        }
    }

    fn finish(&self) {
        if let Some(phase) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
            && phase.started.elapsed() >= every()
        {
            eprintln!("{} (done)", phase.line());
        }
    }
}
