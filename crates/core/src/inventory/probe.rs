//! Probing endpoints concurrently, each with its own deadline: one that does not answer is
//! reported with its reason and never holds up the others.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;
use crate::Result;
use crate::connection::ConnectionArgs;
use crate::engine::{self, DatabaseFacts, ServerFacts};

/// What one probe found.
pub(super) struct Probe {
    pub(super) facts: ServerFacts,
    pub(super) databases: Vec<DatabaseFacts>,
}

pub(super) fn probe(args: &ConnectionArgs) -> Result<Probe> {
    let mut engine = engine::connect(args)?;
    let facts = engine.server_facts()?;
    let databases = engine.databases()?;
    Ok(Probe { facts, databases })
}

/// Probes every endpoint, at most `concurrency` at once, each with its own deadline.
/// A probe past its deadline is reported and abandoned; its thread ends on its own.
pub(super) fn probe_all(
    endpoints: &[Endpoint],
    inline_password: Option<&str>,
    request: &InventoryRequest,
) -> Vec<std::result::Result<Probe, String>> {
    let limit = request.concurrency.max(1);
    let timeout = Duration::from_secs(request.probe_timeout.max(1));
    let (sender, receiver) = mpsc::channel::<(usize, std::result::Result<Probe, String>)>();
    let mut results: Vec<Option<std::result::Result<Probe, String>>> =
        endpoints.iter().map(|_| None).collect();
    let mut in_flight: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut next = 0;
    while next < endpoints.len() || !in_flight.is_empty() {
        while next < endpoints.len() && in_flight.len() < limit {
            let index = next;
            next += 1;
            match connection_of(
                &endpoints[index],
                inline_password,
                request.connection.connect_timeout,
            ) {
                Ok(args) => {
                    let sender = sender.clone();
                    in_flight.insert(index, Instant::now() + timeout);
                    std::thread::spawn(move || {
                        let _ = sender.send((index, probe(&args).map_err(|e| e.to_string())));
                    });
                }
                Err(e) => results[index] = Some(Err(e.to_string())),
            }
        }
        let Some(earliest) = in_flight.values().min().copied() else {
            continue;
        };
        match receiver.recv_timeout(earliest.saturating_duration_since(Instant::now())) {
            Ok((index, result)) => {
                if in_flight.remove(&index).is_some() {
                    results[index] = Some(result);
                }
            }
            Err(_) => {
                let now = Instant::now();
                let expired: Vec<usize> = in_flight
                    .iter()
                    .filter(|(_, d)| **d <= now)
                    .map(|(i, _)| *i)
                    .collect();
                for index in expired {
                    in_flight.remove(&index);
                    results[index] = Some(Err(format!(
                        "no answer within probe_timeout ({}s); the server may be hung or the network slow",
                        timeout.as_secs()
                    )));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not probed".into())))
        .collect()
}
