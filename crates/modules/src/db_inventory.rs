//! db_inventory: discover instances and databases, merge aliases, classify, flag copies.

use dbcadence_core::inventory::{self, InventoryReport, InventoryRequest};
use dbcadence_protocol::{Context, Module, ModuleDoc, Report, Support};

/// The `db_inventory` module.
pub struct DbInventory;

impl Module for DbInventory {
    type Args = InventoryRequest;
    type Output = InventoryReport;
    type Error = dbcadence_core::Error;

    fn doc() -> ModuleDoc {
        ModuleDoc {
            name: "db_inventory",
            short_description: "Discover PostgreSQL and MySQL/MariaDB instances and databases",
            description: &[
                "Probes every endpoint concurrently (each with its own deadline) and reports instances and databases.",
                "Endpoints reaching the same server (127.0.0.1, localhost, the unix socket) are merged into one instance by the server's identity.",
                "Databases are classified by environment (labels first, then naming rules), as system or template, and flagged when their name marks a backup or shadow copy.",
                "An unreachable endpoint is reported with its reason and never fails the others.",
            ],
            examples: r#"- name: Inventory the fleet listed in a sources file
  dbcadence.maintenance.db_inventory:
    sources: /etc/dbcadence/sources.yml
    snapshot_path: /var/lib/dbcadence/inventory.json
  register: fleet

- name: Inventory one server from connection arguments
  dbcadence.maintenance.db_inventory:
    engine: postgresql
    login_host: db1.example.com
    login_user: dbcadence
    login_password: "{{ vault_db1_password }}"
    name: db1
"#,
            notes: &[
                "Sources file format: a YAML mapping with endpoints (a list of name, engine, login_host, login_port, login_user, login_password_env or login_password_file, login_unix_socket, login_db, ssl_mode, ca_cert, connect_timeout, labels) and optional naming_rules (environments, copies).",
                "Passwords are never written inline in a sources file: use login_password_env or login_password_file.",
                "Every run appends one record to the ledger and updates the metrics when metrics_dir is set.",
            ],
            check_mode: Support::Full,
            diff_mode: Support::Partial(
                "Shows the fleet snapshot before and after when snapshot_path is set.",
            ),
            requirements: &[
                "Nothing but network access to the servers: their protocols are spoken directly (no client tools).",
            ],
            fragments: &[crate::CONNECTION, crate::LEDGER],
        }
    }

    fn run(args: InventoryRequest, ctx: &Context) -> Result<Report<InventoryReport>, Self::Error> {
        Ok(crate::report(inventory::run(&args, ctx.check_mode)?))
    }
}
