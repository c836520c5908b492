//! dbcadence-core: the work of dbcadence. It knows databases; it knows neither Ansible nor the
//! command line (those live in dbcadence-protocol, dbcadence-modules and dbcadence-cli).
//!
//! - [`engine`]: the one engine seam; all SQL lives below it, one folder per engine.
//! - [`inventory`]: discovery of instances and databases, alias merging, classification.
//! - [`ledger`] and [`metrics`]: every run leaves a ledger record and fresh metrics
//!   ([`run::Recorder`] does both).
//! - [`backup`]: logical backups with manifest, checksums, atomic completion and a lock.
//! - [`repository`]: S3-compatible buckets as a backup repository beside the local directory.
//! - [`verify`]: proof by restore into a scratch server, integrity checks, row counts.
//! - [`schedule`]: schedules as code (templates, windows, grace), validated with key paths.
//! - [`compliance`] and [`report`]: occurrences due vs runs in the ledger, per database, task,
//!   environment and fleet; the success-criteria scorecard; JSON, Markdown and HTML.
//! - [`timers`]: a schedule as systemd timers (or cron lines) calling `dbcadence run`.
//! - [`lab`]: throwaway real servers for tests, demos and restore verification.
//!
//! Orchestration is written once against `dyn Engine`; nothing outside `engine/` matches on
//! the engine kind to pick SQL.

pub mod audit;
pub mod backup;
pub mod change;
pub mod compliance;
pub mod connection;
pub mod engine;
pub mod error;
pub mod files;
pub mod inventory;
pub mod lab;
pub mod ledger;
pub mod logs;
pub mod metrics;
pub mod patch;
pub mod process;
pub mod progress;
pub mod report;
pub mod repository;
pub mod restore;
pub mod retention;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod task;
pub mod timers;
pub mod tls;
pub mod tune;
pub mod util;
pub mod verify;

pub use error::{Error, Result};
