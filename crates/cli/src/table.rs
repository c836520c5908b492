//! Plain-text tables for people.

use dbcadence_core::backup::BackupEntry;
use dbcadence_core::inventory::InventoryReport;

fn human_size(bytes: Option<u64>) -> String {
    let Some(b) = bytes else { return "-".into() };
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Renders rows with columns padded to their widest cell.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

pub fn inventory(report: &InventoryReport) -> String {
    let instance_rows: Vec<Vec<String>> = report
        .instances
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                format!("{} {}", i.flavour, i.version_number),
                format!("{:?}", i.role).to_lowercase(),
                i.env.clone(),
                i.aliases
                    .iter()
                    .map(|a| a.address.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
                human_size(i.size_bytes),
                if i.tls_in_use { "tls" } else { "plain" }.to_string(),
            ]
        })
        .collect();
    let db_rows: Vec<Vec<String>> = report
        .instances
        .iter()
        .flat_map(|i| {
            i.databases.iter().map(move |d| {
                vec![
                    i.id.clone(),
                    d.name.clone(),
                    format!("{:?}", d.kind).to_lowercase(),
                    d.env.clone(),
                    human_size(d.size_bytes),
                    d.owner
                        .clone()
                        .or_else(|| d.charset.clone())
                        .unwrap_or_default(),
                    d.copy
                        .as_ref()
                        .map(|c| format!("{} of {}", c.kind, c.original))
                        .unwrap_or_default(),
                ]
            })
        })
        .collect();
    let mut out = render(
        &[
            "INSTANCE",
            "SERVER",
            "ROLE",
            "ENV",
            "ADDRESSES",
            "SIZE",
            "LINK",
        ],
        &instance_rows,
    );
    out.push('\n');
    out.push_str(&render(
        &[
            "INSTANCE",
            "DATABASE",
            "KIND",
            "ENV",
            "SIZE",
            "OWNER/CHARSET",
            "COPY",
        ],
        &db_rows,
    ));
    if !report.unreachable.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = report
            .unreachable
            .iter()
            .map(|u| vec![u.endpoint.clone(), u.address.clone(), u.reason.clone()])
            .collect();
        out.push_str(&render(&["UNREACHABLE", "ADDRESS", "REASON"], &rows));
    }
    let s = &report.summary;
    out.push_str(&format!(
        "\n{} instances ({} aliases merged), {} databases ({} user, {} copies), {} unreachable, probed in {:.2}s\n",
        s.instances, s.aliases_merged, s.databases, s.user_databases, s.copies, s.unreachable, s.probe_seconds
    ));
    out
}

pub fn backups(entries: &[BackupEntry]) -> String {
    let now = jiff::Timestamp::now();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let age = e
                .started_at
                .parse::<jiff::Timestamp>()
                .map(|t| format!("{:.1}h", (now - t).get_seconds() as f64 / 3600.0))
                .unwrap_or_else(|_| "?".into());
            vec![
                e.instance_id.clone(),
                e.database.clone(),
                e.started_at.clone(),
                age,
                human_size(Some(e.bytes)),
                if e.verified { "yes" } else { "no" }.into(),
                e.path.display().to_string(),
            ]
        })
        .collect();
    render(
        &[
            "INSTANCE", "DATABASE", "STARTED", "AGE", "SIZE", "VERIFIED", "PATH",
        ],
        &rows,
    )
}
