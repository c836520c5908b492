//! The report as Markdown: for change tickets, wikis and chat.

use std::fmt::Write;

use super::{Criterion, Report, Share};

/// A ratio as a percentage; "no data" when nothing was due (never a green 100%).
fn percent(ratio: Option<f64>) -> String {
    match ratio {
        Some(ratio) => format!("{:.1}%", ratio * 100.0),
        None => "no data".into(),
    }
}

fn met(criterion: &Criterion) -> &'static str {
    match criterion.met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "no data",
    }
}

/// Pipes and newlines would break a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn share_row(name: &str, share: &Share) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
        cell(name),
        percent(share.ratio),
        share.due,
        share.tally.on_time,
        share.tally.late,
        share.tally.missed,
        share.tally.failed,
        share.tally.out_of_window
    )
}

const SHARE_HEADER: &str = "| scope | share on time | due | on time | late | missed | failed | out of window |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";

pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Maintenance compliance\n");
    let _ = writeln!(
        out,
        "Period {} to {}; {} ledger records from {}.\n",
        report.from, report.to, report.records, report.ledger
    );
    let _ = writeln!(
        out,
        "**Fleet: {}** ({} of {} due occurrences; {} pending).\n",
        match report.fleet.ratio {
            Some(_) => format!("{} on time", percent(report.fleet.ratio)),
            None => "no data, nothing was due yet".into(),
        },
        report.fleet.tally.on_time,
        report.fleet.due,
        report.fleet.tally.pending
    );
    let _ = writeln!(
        out,
        "## Scorecard\n\n| criterion | goal | value | status | detail |\n|---|---|---:|---|---|"
    );
    for c in &report.scorecard {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            cell(&c.name),
            cell(&c.goal),
            c.value.map_or("-".to_string(), |v| format!("{v}")),
            met(c),
            cell(&c.detail)
        );
    }
    let _ = writeln!(out, "\n## By environment\n\n{SHARE_HEADER}");
    out.pop();
    for (env, share) in &report.by_env {
        out.push_str(&share_row(env, share));
    }
    let _ = writeln!(out, "\n## By task\n\n{SHARE_HEADER}");
    out.pop();
    for (task, share) in &report.by_task {
        out.push_str(&share_row(task, share));
    }
    if !report.next_due.is_empty() {
        let _ = writeln!(
            out,
            "\n## Next due\n\n| template | task | schedule | next due |\n|---|---|---|---|"
        );
        for n in &report.next_due {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&n.template),
                n.task,
                cell(&n.schedule),
                n.at.as_deref().unwrap_or("never")
            );
        }
    }
    let _ = writeln!(
        out,
        "\n## Databases (worst first)\n\n| database | env | template | on time | due | late | missed | failed | not on time |\n|---|---|---|---:|---:|---:|---:|---:|---|"
    );
    for row in &report.databases {
        let name = match &row.db {
            Some(db) => format!("{}/{db}", row.instance),
            None => row.instance.clone(),
        };
        let problems: Vec<String> = row
            .tasks
            .iter()
            .filter(|t| t.share.ratio.is_some_and(|r| r < 1.0))
            .map(|t| format!("{:?} {}", t.task, percent(t.share.ratio)).to_lowercase())
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&name),
            cell(&row.env),
            cell(&row.template),
            percent(row.share.ratio),
            row.share.due,
            row.share.tally.late,
            row.share.tally.missed,
            row.share.tally.failed,
            cell(&problems.join(", "))
        );
    }
    if !report.unscheduled.is_empty() {
        let _ = writeln!(
            out,
            "\n## Databases without a schedule\n\n{}",
            report
                .unscheduled
                .iter()
                .map(|d| format!("- {d}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    if !report.durations.is_empty() {
        let _ = writeln!(
            out,
            "\n## Task durations\n\n| task | runs | median s | p95 s | max s |\n|---|---:|---:|---:|---:|"
        );
        for d in &report.durations {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                cell(&d.task),
                d.runs,
                d.median_seconds,
                d.p95_seconds,
                d.max_seconds
            );
        }
    }
    if !report.warnings.is_empty() {
        let _ = writeln!(out, "\n## Warnings\n");
        for w in &report.warnings {
            let _ = writeln!(out, "- {w}");
        }
    }
    out
}
