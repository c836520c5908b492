//! `dbcadence inventory`: the fleet as a table or JSON, and the executable Ansible inventory
//! (`--list`, `--host`).

use std::path::PathBuf;

use dbcadence_core::Result;
use dbcadence_core::inventory::{self, InventoryRequest};

use crate::{Format, RunArgs, inventory_script, print_json, table};

#[derive(clap::Args)]
pub(crate) struct InventoryArgs {
    /// Sources file (YAML). Default: $DBCADENCE_SOURCES.
    #[arg(long, env = "DBCADENCE_SOURCES")]
    pub(crate) sources: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    /// Ansible inventory script mode: print every group and host as JSON.
    #[arg(long, conflicts_with = "host")]
    pub(crate) list: bool,
    /// Ansible inventory script mode: print the variables of one host.
    #[arg(long)]
    pub(crate) host: Option<String>,
    /// Keep the fleet's shape in this file and report changes against it.
    #[arg(long)]
    pub(crate) snapshot: Option<PathBuf>,
    /// With --snapshot: report changes without writing the file.
    #[arg(long)]
    pub(crate) check: bool,
    /// Endpoints probed at once.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// Seconds one endpoint may take in all.
    #[arg(long, default_value_t = 30)]
    pub(crate) probe_timeout: u64,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// Discovers the fleet, or answers ansible-inventory.
pub(crate) fn inventory(args: InventoryArgs) -> Result<()> {
    let InventoryArgs {
        sources,
        format,
        list,
        host,
        snapshot,
        check,
        concurrency,
        probe_timeout,
        run,
    } = args;
    let request = InventoryRequest {
        sources,
        snapshot_path: snapshot,
        concurrency,
        probe_timeout,
        run: run.options()?,
        ..InventoryRequest::default()
    };
    if list || host.is_some() {
        let outcome = inventory::run(&request, true)?;
        for w in &outcome.warnings {
            eprintln!("dbcadence: warning: {w}");
        }
        let runners = match &request.sources {
            Some(path) => inventory::Sources::load(path)?.runners,
            None => Vec::new(),
        };
        let ansible = inventory_script::ansible_inventory(&outcome.output, &runners);
        return match host {
            Some(name) => print_json(
                &ansible["_meta"]["hostvars"]
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({})),
            ),
            None => print_json(&ansible),
        };
    }
    let outcome = inventory::run(&request, check)?;
    for w in &outcome.warnings {
        eprintln!("dbcadence: warning: {w}");
    }
    match format {
        Format::Json => print_json(&outcome.output),
        Format::Table => {
            print!("{}", table::inventory(&outcome.output));
            if outcome.changed {
                println!("\nthe fleet changed since the last snapshot");
            }
            Ok(())
        }
    }
}
