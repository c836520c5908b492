//! The report as pages people read: one self-contained HTML file (no network, no external script
//! or font) and Markdown for tickets, wikis and chat. The text of each page lives in
//! templates/ and is rendered by minijinja; the HTML template is auto-escaped, so no value from the
//! ledger can become markup. Three charts (compliance over time, task durations, a heat map of
//! the worst databases day by day) are drawn as SVG by a small inline script from the report's
//! own JSON, embedded in the page. When every chart is drawn the script sets
//! `data-charts-drawn` on the root element (the browser test reads it).

use minijinja::{Environment, Value, context};

use super::{Criterion, CriterionId, Goals, Report};

/// The criteria whose values are shares, shown as percentages.
fn share_criteria() -> Vec<&'static str> {
    CriterionId::ALL
        .into_iter()
        .filter(|id| id.is_share())
        .map(CriterionId::as_str)
        .collect()
}

const HTML: &str = include_str!("templates/report.html");
const MARKDOWN: &str = include_str!("templates/report.md");

/// A ratio as a percentage; "no data" when nothing was due (never a green 100%).
fn percent(ratio: Option<f64>) -> String {
    match ratio {
        Some(ratio) => format!("{:.1}%", ratio * 100.0),
        None => "no data".into(),
    }
}

/// A number as Rust prints it (3, not 3.0); "-" when absent.
fn number(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v}"))
}

/// Seconds as people read them: 45 s, 12 min, 6 h 05 min, 2 d 3 h; "–" when absent.
fn duration(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "–".into();
    };
    let s = s.max(0.0);
    let whole = s.round() as u64;
    match whole {
        0..=59 => format!("{s:.1} s"),
        60..=3599 => format!("{} min", whole / 60),
        3600..=86_399 => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
        _ => format!("{} d {} h", whole / 86_400, whole % 86_400 / 3600),
    }
}

/// Pipes and newlines would break a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The CSS class and the word of a criterion's status: met, not met, or no data.
fn status(met: Option<bool>) -> [&'static str; 2] {
    match met {
        Some(true) => ["ok", "met"],
        Some(false) => ["bad", "not met"],
        None => ["none", "no data"],
    }
}

/// The compliance criterion's own typed goal (the default when the scorecard has none).
fn compliance(report: &Report) -> Option<&Criterion> {
    report
        .scorecard
        .iter()
        .find(|c| c.id == CriterionId::Compliance)
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.add_filter("percent", |ratio: Option<f64>| percent(ratio));
    env.add_filter("number", |value: Option<f64>| number(value));
    env.add_filter("cell", |text: String| cell(&text));
    env.add_filter("duration", |seconds: Option<f64>| duration(seconds));
    env.add_filter("status", |met: Option<bool>| status(met).to_vec());
    // The names end in .html and .md: auto-escape follows (HTML for the page, none for Markdown).
    env.add_template("report.html", HTML)
        .expect("the HTML template parses (unit-tested)");
    env.add_template("report.md", MARKDOWN)
        .expect("the Markdown template parses (unit-tested)");
    env
}

fn render(template: &str, ctx: Value) -> String {
    let env = environment();
    env.get_template(template)
        .and_then(|t| t.render(ctx))
        // A template error is a bug of ours, caught by the unit tests; the page says so rather
        // than the report run failing after its ledger record was written.
        .unwrap_or_else(|e| format!("report page could not be rendered: {e:#}\n"))
}

/// The report's JSON for the charts: only what they use, `<`, `>` and `&` escaped so that no
/// string can close the script element.
fn chart_data(report: &Report) -> String {
    let goal = compliance(report).map_or(Goals::default().compliance, |c| c.target);
    let data = serde_json::json!({
        "goal": goal,
        "daily": report.daily,
        "durations": report.durations,
        "heatmap": report.heatmap,
        "heatmap_days": report.heatmap_days,
    });
    data.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The report as one HTML page.
pub fn html(report: &Report) -> String {
    // The headline's colour follows the scorecard's own goal (and says nothing when nothing
    // was due).
    let fleet_class = compliance(report).map_or("none", |c| status(c.met)[0]);
    render(
        "report.html",
        context! {
            report => Value::from_serialize(report),
            fleet_class,
            shares => share_criteria(),
            chart_data => Value::from_safe_string(chart_data(report)),
        },
    )
}

/// The report as Markdown.
pub fn markdown(report: &Report) -> String {
    render(
        "report.md",
        context! {
            report => Value::from_serialize(report),
            shares => share_criteria(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_break_out_of_the_page() {
        let report = Report {
            from: "2026-11-01T00:00:00Z".into(),
            to: "2026-11-02T00:00:00Z".into(),
            generated_at: String::new(),
            ledger: "l".into(),
            records: 0,
            unreadable_lines: vec![],
            fleet: Default::default(),
            by_env: Default::default(),
            by_task: Default::default(),
            databases: vec![],
            unscheduled: vec![],
            daily: vec![],
            durations: vec![],
            heatmap_days: 1,
            heatmap: vec![super::super::HeatRow {
                name: "pg1/</script><script>alert(1)</script>".into(),
                ratio: Some(1.0),
                days: vec![],
            }],
            scorecard: vec![],
            next_due: vec![],
            audits: vec![],
            changes: vec![],
            warnings: vec![],
        };
        let page = html(&report);
        assert!(!page.contains("could not be rendered"), "{page}");
        let text = markdown(&report);
        assert!(!text.contains("could not be rendered"), "{text}");
        assert_eq!(page.matches("</script>").count(), 2, "only our own two");
    }
}
