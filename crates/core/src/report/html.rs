//! The report as one self-contained HTML file: no network, no external script or font. The
//! tables are written here; three charts (compliance over time, task durations, a heat map of
//! the worst databases day by day) are drawn as SVG by a small inline script from the report's
//! own JSON, embedded in the page. When every chart is drawn the script sets
//! `data-charts-drawn` on the root element (the browser test reads it).

use std::fmt::Write;

use super::{Criterion, CriterionId, Goals, Report};

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A ratio as a percentage; "no data" when nothing was due (never a green 100%).
fn percent(ratio: Option<f64>) -> String {
    match ratio {
        Some(ratio) => format!("{:.1}%", ratio * 100.0),
        None => "no data".into(),
    }
}

fn status_class(criterion: &Criterion) -> (&'static str, &'static str) {
    match criterion.met {
        Some(true) => ("ok", "met"),
        Some(false) => ("bad", "not met"),
        None => ("none", "no data"),
    }
}

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #1d232b; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .muted { color: #68717d; }
.big { font-size: 2.4em; font-weight: 600; } .ok { color: #1b7f3b; } .bad { color: #b3261e; } .none { color: #68717d; }
table { border-collapse: collapse; width: 100%; margin: 0.6em 0 1.6em; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e6ea; } td.n, th.n { text-align: right; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 1em 0 2em; }
.card { border: 1px solid #e3e6ea; border-radius: 8px; padding: 10px 14px; min-width: 190px; flex: 1; }
.card .v { font-size: 1.6em; font-weight: 600; } svg { display: block; margin: 0.5em 0 1.5em; }
svg text { font: 11px system-ui, sans-serif; fill: #3b434d; }
"#;

/// Draws the charts from the JSON in #report-data. Plain DOM calls, no library.
const SCRIPT: &str = r#"
(function () {
  const data = JSON.parse(document.getElementById('report-data').textContent);
  const NS = 'http://www.w3.org/2000/svg';
  function el(name, attrs, parent, text) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function colour(r) {
    if (r === null || r === undefined) return '#eef0f3';
    if (r >= 0.95) return '#2e9d52';
    if (r >= 0.8) return '#9ccc65';
    if (r >= 0.5) return '#f4b400';
    return '#d93025';
  }
  function svg(id, width, height) {
    const holder = document.getElementById(id);
    return el('svg', { width: width, height: height, viewBox: '0 0 ' + width + ' ' + height, role: 'img' }, holder);
  }
  let drawn = 0;

  // 1. Compliance over time: one bar per day, the goal as a dashed line.
  (function () {
    const days = data.daily, W = 1000, H = 220, L = 40, B = 30, T = 10;
    const s = svg('chart-compliance', W, H);
    const step = (W - L - 10) / Math.max(days.length, 1);
    let marks = 0;
    days.forEach(function (d, i) {
      const x = L + i * step;
      if (d.due === 0 || d.ratio === null) {
        el('rect', { x: x + 1, y: H - B - 2, width: Math.max(step - 2, 1), height: 2, fill: '#d5d9de' }, s);
      } else {
        const h = (H - B - T) * d.ratio;
        const r = el('rect', { x: x + 1, y: H - B - h, width: Math.max(step - 2, 1), height: Math.max(h, 1), fill: colour(d.ratio), class: 'mark' }, s);
        el('title', {}, r, d.date + ': ' + (d.ratio * 100).toFixed(1) + '% of ' + d.due + ' on time');
        marks++;
      }
      if (i % Math.ceil(days.length / 10) === 0) el('text', { x: x, y: H - 12 }, s, d.date.slice(5));
    });
    const goal = data.goal;
    const gy = H - B - (H - B - T) * goal;
    el('line', { x1: L, x2: W - 10, y1: gy, y2: gy, stroke: '#1d232b', 'stroke-dasharray': '4 3' }, s);
    el('text', { x: 2, y: gy + 4 }, s, (goal * 100).toFixed(0) + '%');
    s.dataset.marks = marks;
    drawn++;
  })();

  // 2. Task durations: median and p95 per task, log-free linear scale.
  (function () {
    const rows = data.durations, W = 1000, row = 26, L = 110;
    const s = svg('chart-durations', W, Math.max(rows.length, 1) * row + 24);
    const max = Math.max.apply(null, rows.map(function (r) { return r.p95_seconds; }).concat([0.001]));
    let marks = 0;
    rows.forEach(function (r, i) {
      const y = i * row + 4, scale = (W - L - 280) / max;
      el('text', { x: 0, y: y + 14 }, s, r.task);
      el('rect', { x: L, y: y, width: Math.max(r.p95_seconds * scale, 1), height: 18, fill: '#c6dafc', class: 'mark' }, s);
      el('rect', { x: L, y: y + 4, width: Math.max(r.median_seconds * scale, 1), height: 10, fill: '#1a73e8', class: 'mark' }, s);
      el('text', { x: L + r.p95_seconds * scale + 6, y: y + 14 }, s,
         'median ' + r.median_seconds + ' s, p95 ' + r.p95_seconds + ' s (' + r.runs + ' runs)');
      marks += 2;
    });
    s.dataset.marks = marks;
    drawn++;
  })();

  // 3. Heat map: the worst databases, by columns of data.heatmap_days days.
  (function () {
    const rows = data.heatmap, per = data.heatmap_days || 1;
    const days = rows.length ? rows[0].days.length : 0, L = 220, cell = Math.max(Math.min(Math.floor(760 / Math.max(days, 1)), 18), 4), row = 16;
    const s = svg('chart-heatmap', L + days * cell + 70, Math.max(rows.length, 1) * row + 10);
    let marks = 0;
    rows.forEach(function (r, i) {
      const y = i * row;
      el('text', { x: 0, y: y + 12 }, s, r.name.length > 32 ? r.name.slice(0, 31) + '…' : r.name);
      r.days.forEach(function (v, j) {
        const c = el('rect', { x: L + j * cell, y: y + 1, width: cell - 1, height: row - 2, fill: colour(v), class: 'mark' }, s);
        const first = data.daily[Math.min(j * per, data.daily.length - 1)].date;
        el('title', {}, c, r.name + ' ' + first + (per > 1 ? ' (+' + (per - 1) + ' days)' : '') + ': ' + (v === null ? 'nothing due' : (v * 100).toFixed(0) + '%'));
        marks++;
      });
      el('text', { x: L + days * cell + 6, y: y + 12 }, s, r.ratio === null ? 'no data' : (r.ratio * 100).toFixed(1) + '%');
    });
    s.dataset.marks = marks;
    drawn++;
  })();

  document.documentElement.dataset.chartsDrawn = String(drawn);
})();
"#;

/// The report's JSON for the script: only what the charts use, `<` escaped so that no string
/// can close the script element.
fn chart_data(report: &Report) -> String {
    // The dashed goal line: the compliance criterion's own typed goal.
    let goal = report
        .scorecard
        .iter()
        .find(|c| c.id == CriterionId::Compliance)
        .map_or(Goals::default().compliance, |c| c.target);
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

pub fn html(report: &Report) -> String {
    let mut out = String::new();
    // The colour follows the scorecard's own goal (and says nothing when nothing was due).
    let fleet_class = report
        .scorecard
        .iter()
        .find(|c| c.id == CriterionId::Compliance)
        .map_or("none", |c| status_class(c).0);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dbcadence compliance {} – {}</title><style>{STYLE}</style></head><body>\n",
        escape(&report.from[..10.min(report.from.len())]),
        escape(&report.to[..10.min(report.to.len())])
    );
    let _ = write!(
        out,
        "<h1>Maintenance compliance</h1><p class=\"muted\">{} to {} · {} ledger records · {}</p>\n<p><span class=\"big {fleet_class}\">{}</span> of {} due maintenance occurrences on time ({} late, {} missed, {} failed, {} pending)</p>\n",
        escape(&report.from),
        escape(&report.to),
        report.records,
        escape(&report.ledger),
        percent(report.fleet.ratio),
        report.fleet.due,
        report.fleet.tally.late,
        report.fleet.tally.missed,
        report.fleet.tally.failed,
        report.fleet.tally.pending
    );
    out.push_str("<h2>Scorecard</h2><div class=\"cards\">");
    for c in &report.scorecard {
        let (class, word) = status_class(c);
        let value = c.value.map_or("–".into(), |v| {
            if c.goal.contains('%') {
                percent(Some(v))
            } else {
                format!("{v}")
            }
        });
        let _ = write!(
            out,
            "<div class=\"card\"><div>{}</div><div class=\"v {class}\">{}</div><div class=\"{class}\">{word} (goal {})</div><div class=\"muted\">{}</div></div>",
            escape(&c.name),
            escape(&value),
            escape(&c.goal),
            escape(&c.detail)
        );
    }
    out.push_str("</div>\n");
    if !report.next_due.is_empty() {
        out.push_str("<h2>Next due</h2><table><tr><th>template</th><th>task</th><th>schedule</th><th>next due</th></tr>");
        for n in &report.next_due {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&n.template),
                n.task,
                escape(&n.schedule),
                escape(n.at.as_deref().unwrap_or("never"))
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("<h2>Compliance over time</h2><div id=\"chart-compliance\"></div>\n<h2>Where it hurts: the worst databases over the period</h2><div id=\"chart-heatmap\"></div>\n<h2>Task durations</h2><div id=\"chart-durations\"></div>\n");
    for (title, map) in [
        ("By environment", &report.by_env),
        ("By task", &report.by_task),
    ] {
        let _ = write!(
            out,
            "<h2>{title}</h2><table><tr><th></th><th class=n>on time</th><th class=n>due</th><th class=n>late</th><th class=n>missed</th><th class=n>failed</th><th class=n>out of window</th></tr>"
        );
        for (name, s) in map {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                escape(name),
                percent(s.ratio),
                s.due,
                s.tally.late,
                s.tally.missed,
                s.tally.failed,
                s.tally.out_of_window
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("<h2>Databases, worst first</h2><table><tr><th>database</th><th>env</th><th>template</th><th class=n>on time</th><th class=n>due</th><th>tasks not always on time</th></tr>");
    for row in report.databases.iter().take(200) {
        let name = match &row.db {
            Some(db) => format!("{}/{db}", row.instance),
            None => row.instance.clone(),
        };
        let tasks: Vec<String> = row
            .tasks
            .iter()
            .filter(|t| t.share.ratio.is_some_and(|r| r < 1.0))
            .map(|t| format!("{:?} {}", t.task, percent(t.share.ratio)).to_lowercase())
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
            escape(&name),
            escape(&row.env),
            escape(&row.template),
            percent(row.share.ratio),
            row.share.due,
            escape(&tasks.join(", "))
        );
    }
    out.push_str("</table>\n");
    if report.databases.len() > 200 {
        let _ = write!(
            out,
            "<p class=\"muted\">{} more databases in the JSON report.</p>",
            report.databases.len() - 200
        );
    }
    if !report.unscheduled.is_empty() {
        let _ = write!(
            out,
            "<h2>Databases without a schedule</h2><p>{}</p>",
            escape(&report.unscheduled.join(", "))
        );
    }
    for w in &report.warnings {
        let _ = write!(out, "<p class=\"bad\">{}</p>", escape(w));
    }
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"report-data\">{}</script>\n<script>{SCRIPT}</script>\n</body></html>\n",
        chart_data(report)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_break_out_of_the_page() {
        assert_eq!(
            escape("<script>\"x\" & 'y'"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;"
        );
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
            warnings: vec![],
        };
        let page = html(&report);
        assert_eq!(page.matches("</script>").count(), 2, "only our own two");
    }
}
