//! `report.html`: one self-contained page (inline CSS and SVG, no script, nothing loaded
//! from elsewhere) with the question, the sweep's provenance, the correlation table, one
//! scatter panel per family × ASD metric drawn with plotters' SVG backend, the
//! per-machine-type table and the failures. Every text from the sweep is escaped.

use super::{Report, utc_time};
use crate::error::{Error, Result};
use asdsweep_shared::analysis::alignment::{DIFFICULTY_RULE, DIRECTION_RULE, SIGNIFICANCE_RULE};
use asdsweep_shared::analysis::{ConfigPoint, Direction, SWEEP_ASD_METRICS};
use asdsweep_shared::proto as pb;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Width and height of one scatter panel, pixels.
pub const PANEL_SIZE: (u32, u32) = (400, 310);

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
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

/// A statistic for people: 3 decimals, `–` when undefined.
fn stat(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

/// A p- or q-value for people: 3 significant figures, scientific below 0.001.
fn pval(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v != 0.0 && v < 1e-3 {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}\
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}\
.question{font-size:16px;color:#444;margin-top:0}\
.provisional{background:#fff3cd;border:1px solid #e0c36a;padding:8px 12px;margin:12px 0}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}\
th{background:#f4f4f4}td.t,th.t{text-align:left}\
.aligned{color:#1b6e2e}.opposed{color:#a4262c}.significant{font-weight:bold}\
.panels{display:flex;flex-wrap:wrap;gap:10px}\
figure.panel{margin:0;border:1px solid #e4e4e4}\
pre{white-space:pre-wrap;background:#fafafa;border:1px solid #eee;padding:6px;margin:0;font-size:12px;text-align:left}";

/// Renders the page.
pub fn render(report: &Report) -> Result<String> {
    let f = &report.facts;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>asdsweep report: {}</title><style>{STYLE}</style></head><body>\n",
        escape(&f.name)
    );
    let _ = writeln!(h, "<h1>Sweep “{}”</h1>", escape(&f.name));
    h.push_str(
        "<p class=\"question\">Does a better proxy task give a better anomaly detector? Each panel below puts a proxy \
         family's configs on the proxy-quality axis (lower-is-better proxies negated, so right is always better) \
         against an anomaly-detection metric (mean over machine types, then seeds).</p>\n",
    );
    if f.provisional() {
        let _ = writeln!(
            h,
            "<p class=\"provisional\"><b>Provisional:</b> {} jobs are still blocked, pending or running; these numbers will change.</p>",
            f.open_jobs
        );
    }
    provenance(&mut h, report);
    correlation_table(&mut h, &report.correlations);
    panels(&mut h, report)?;
    device_table(&mut h, report);
    failures(&mut h, report);
    h.push_str("</body></html>\n");
    Ok(h)
}

fn provenance(h: &mut String, report: &Report) {
    let f = &report.facts;
    let list = |v: &[String]| {
        if v.is_empty() {
            "–".to_string()
        } else {
            escape(&v.join(", "))
        }
    };
    let states: Vec<String> = f
        .jobs_by_state
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    let total: u64 = f.jobs_by_state.values().sum();
    let seeds: Vec<String> = f.seeds.iter().map(i64::to_string).collect();
    h.push_str("<h2>Provenance</h2>\n<table>\n");
    let rows = [
        (
            "sweep",
            format!("{} (id {}, {})", escape(&f.name), f.id, escape(&f.state)),
        ),
        ("spec hash", escape(&f.spec_hash)),
        ("dataset fingerprint", list(&f.dataset_fingerprints)),
        ("seeds", list(&seeds)),
        ("code version", list(&f.code_versions)),
        ("backend", list(&f.backends)),
        ("jobs", format!("{total}: {}", escape(&states.join(", ")))),
        ("dead jobs", f.dead.len().to_string()),
        (
            "result rows",
            format!(
                "{} used, {} without a proxy value",
                report.analysis.rows_used, report.analysis.rows_without_proxy
            ),
        ),
        ("launched", utc_time(f.created_at_ms)),
        ("report made", utc_time(f.generated_at_ms)),
    ];
    for (k, v) in rows {
        let _ = writeln!(
            h,
            "<tr><th class=\"t\">{k}</th><td class=\"t\">{v}</td></tr>"
        );
    }
    h.push_str("</table>\n");
}

fn correlation_table(h: &mut String, lines: &[pb::CorrelationLine]) {
    h.push_str("<h2>Correlations</h2>\n");
    if lines.is_empty() {
        h.push_str("<p>No results with a proxy value yet.</p>\n");
        return;
    }
    let level = lines
        .iter()
        .map(|l| l.ci_level)
        .find(|v| v.is_finite())
        .unwrap_or(0.95)
        * 100.0;
    let _ = writeln!(
        h,
        "<table><tr><th class=\"t\">family</th><th class=\"t\">ASD metric</th><th>n</th><th>Pearson r</th><th>p</th>\
         <th>r {level:.0}% CI</th><th>Spearman ρ</th><th>p (permutation)</th><th>ρ {level:.0}% CI</th><th>Kendall τ</th>\
         <th>BH q</th><th class=\"t\">difficulty</th><th class=\"t\">direction</th><th class=\"t\">significance</th></tr>"
    );
    for l in lines {
        let class = |verdict: &str| {
            let word = verdict.split_whitespace().next().unwrap_or("");
            if ["aligned", "opposed", "significant"].contains(&word) {
                format!(" {word}")
            } else {
                String::new()
            }
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"t\">{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>[{}, {}]</td><td>{}</td><td>{}</td>\
             <td>[{}, {}]</td><td>{}</td><td>{}</td><td class=\"t\">{}</td><td class=\"t{}\">{}</td><td class=\"t{}\">{}</td></tr>",
            escape(&l.family),
            escape(&l.asd_metric),
            l.n,
            stat(l.pearson_r),
            pval(l.pearson_p),
            stat(l.pearson_ci_low),
            stat(l.pearson_ci_high),
            stat(l.spearman_rho),
            pval(l.spearman_p),
            stat(l.spearman_ci_low),
            stat(l.spearman_ci_high),
            stat(l.kendall_tau),
            pval(l.q_bh),
            escape(&l.difficulty),
            class(&l.direction),
            escape(&l.direction),
            class(&l.significance),
            escape(&l.significance),
        );
    }
    h.push_str("</table>\n");
    let _ = writeln!(
        h,
        "<p style=\"font-size:12px;color:#555\">Direction: {}. Significance: {}. Difficulty: {}.</p>",
        escape(DIRECTION_RULE),
        escape(SIGNIFICANCE_RULE),
        escape(DIFFICULTY_RULE)
    );
}

/// The families of the report, in the order of the correlation table.
fn families(report: &Report) -> Vec<String> {
    let mut out: Vec<String> = report
        .analysis
        .points
        .iter()
        .map(|p| p.family.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn panels(h: &mut String, report: &Report) -> Result<()> {
    h.push_str("<h2>Proxy quality vs anomaly detection</h2>\n");
    let families = families(report);
    if families.is_empty() {
        h.push_str("<p>No results with a proxy value yet.</p>\n");
        return Ok(());
    }
    for family in &families {
        let points: Vec<&ConfigPoint> = report
            .analysis
            .points
            .iter()
            .filter(|p| &p.family == family)
            .collect();
        let metric_name = report
            .lines
            .iter()
            .find(|l| &l.family == family)
            .map(|l| l.proxy_metric.clone())
            .unwrap_or_default();
        let negated = report.analysis.directions.get(family) == Some(&Direction::LowerIsBetter);
        let x_label = if negated {
            format!("proxy quality: −{metric_name}")
        } else {
            format!("proxy quality: {metric_name}")
        };
        let _ = writeln!(h, "<h3>{}</h3>\n<div class=\"panels\">", escape(family));
        for (k, metric) in SWEEP_ASD_METRICS.iter().enumerate() {
            let line = report
                .correlations
                .iter()
                .find(|l| &l.family == family && l.asd_metric == *metric);
            let title = match line {
                Some(l) => format!(
                    "{family} · {metric}: ρ={} p={} q={} n={}",
                    stat(l.spearman_rho),
                    pval(l.spearman_p),
                    pval(l.q_bh),
                    l.n
                ),
                None => format!("{family} · {metric}"),
            };
            let xy: Vec<(f64, f64, String)> = points
                .iter()
                .filter(|p| {
                    p.proxy_quality.is_finite() && p.asd.get(k).is_some_and(|v| v.is_finite())
                })
                .map(|p| (p.proxy_quality, p.asd[k], p.config.clone()))
                .collect();
            let svg = scatter_svg(&title, &x_label, metric, &xy).map_err(|e| {
                Error::Report(format!("drawing the {family} × {metric} panel: {e}"))
            })?;
            let _ = writeln!(
                h,
                "<figure class=\"panel\" data-family=\"{}\" data-metric=\"{}\">{svg}</figure>",
                escape(family),
                escape(metric)
            );
        }
        h.push_str("</div>\n");
    }
    Ok(())
}

/// A padded axis range around finite values (a unit range around a single value).
fn axis_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.12
    } else {
        (lo.abs() * 0.05).max(0.05)
    };
    (lo - pad, hi + pad)
}

/// One scatter panel as an `<svg>` element (no XML namespace URL: inline SVG in HTML needs none).
fn scatter_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64, String)],
) -> std::result::Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PANEL_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| format!("{e:?}"))?;
        let (x0, x1) = axis_range(points.iter().map(|p| p.0));
        let (y0, y1) = axis_range(points.iter().map(|p| p.1));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 13))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| format!("{e:?}"))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_labels(5)
            .y_labels(5)
            .label_style(("sans-serif", 11))
            .axis_desc_style(("sans-serif", 12))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(|e| format!("{e:?}"))?;
        let dot = RGBColor(31, 90, 160);
        chart
            .draw_series(points.iter().map(|(x, y, label)| {
                EmptyElement::at((*x, *y))
                    + Circle::new((0, 0), 4, dot.filled())
                    + Text::new(label.clone(), (6, -14), ("sans-serif", 11).into_font())
            }))
            .map_err(|e| format!("{e:?}"))?;
        if points.is_empty() {
            let (w, hgt) = PANEL_SIZE;
            root.draw(&Text::new(
                "no data yet",
                (w as i32 / 2 - 30, hgt as i32 / 2),
                ("sans-serif", 13).into_font(),
            ))
            .map_err(|e| format!("{e:?}"))?;
        }
        root.present().map_err(|e| format!("{e:?}"))?;
    }
    Ok(svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1))
}

fn device_table(h: &mut String, report: &Report) {
    h.push_str("<h2>Per machine type</h2>\n");
    if report.lines.is_empty() {
        h.push_str("<p>No results yet.</p>\n");
        return;
    }
    // (family, config, device) in first-appearance order → values per column, over seeds.
    type Key = (String, String, String);
    let mut order: Vec<Key> = Vec::new();
    let mut cells: BTreeMap<Key, (String, Vec<Vec<f64>>)> = BTreeMap::new();
    for l in &report.lines {
        let key = (l.family.clone(), l.config.clone(), l.device.clone());
        let entry = cells.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            (l.proxy_metric.clone(), vec![Vec::new(); 7])
        });
        for (k, v) in std::iter::once(l.proxy_value)
            .chain(l.asd.iter().copied())
            .enumerate()
        {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                entry.1[k].push(v);
            }
        }
    }
    let seeds = report.facts.seeds.len();
    let _ = write!(
        h,
        "<p style=\"font-size:12px;color:#555\">{}</p><table><tr><th class=\"t\">family</th><th class=\"t\">config</th>\
         <th class=\"t\">machine type</th><th class=\"t\">proxy metric</th><th>proxy</th>",
        if seeds > 1 { "Mean over seeds." } else { "" }
    );
    for m in SWEEP_ASD_METRICS {
        let _ = write!(h, "<th>{m}</th>");
    }
    h.push_str("</tr>\n");
    for key in &order {
        let (metric, values) = &cells[key];
        let _ = write!(
            h,
            "<tr><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td>",
            escape(&key.0),
            escape(&key.1),
            escape(&key.2),
            escape(metric)
        );
        for v in values {
            let mean = if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            };
            let _ = write!(h, "<td>{}</td>", stat(mean));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

fn failures(h: &mut String, report: &Report) {
    let dead = &report.facts.dead;
    if dead.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<h2>Failures ({})</h2>\n<table><tr><th class=\"t\">job</th><th>attempts</th><th class=\"t\">last error</th></tr>",
        dead.len()
    );
    for d in dead {
        let _ = writeln!(
            h,
            "<tr><td class=\"t\">{}</td><td>{}</td><td class=\"t\"><pre>{}</pre></td></tr>",
            escape(&d.job),
            d.attempts,
            escape(&d.error)
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::super::build_report;
    use super::super::tests::{sweep, synthetic_jobs};
    use super::*;
    use crate::queue::JobState;

    #[test]
    fn the_page_has_one_panel_per_family_and_asd_metric_and_loads_nothing() {
        let report = build_report(&sweep(), &synthetic_jobs()).unwrap();
        let page = render(&report).unwrap();
        assert_eq!(page.matches("<figure class=\"panel\"").count(), 2 * 6);
        assert_eq!(page.matches("<svg").count(), 2 * 6);
        for forbidden in ["<script", "http://", "https://", "@import", "url("] {
            assert!(
                !page.contains(forbidden),
                "the page must be self-contained, found {forbidden}"
            );
        }
        assert!(
            page.contains("ae · lp_in_auc: ρ="),
            "panel titles carry rho"
        );
        assert!(page.contains("proxy quality: −ae_l1"));
        assert!(!page.contains("Provisional"));
    }

    #[test]
    fn text_from_the_sweep_is_escaped_everywhere() {
        let mut jobs = synthetic_jobs();
        for (j, _) in jobs.iter_mut().filter(|(j, _)| j.config == "c2") {
            j.config = "<b>c2&\"x\"".into();
        }
        jobs[0].0.state = JobState::Dead;
        jobs[0].0.last_error = Some("<script>alert(1)</script>".into());
        let page = render(&build_report(&sweep(), &jobs).unwrap()).unwrap();
        assert!(
            !page.contains("<b>c2") && !page.contains("<script"),
            "raw markup leaked"
        );
        assert!(page.contains("&lt;b&gt;c2&amp;&quot;x&quot;"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<h2>Failures (1)</h2>"));
    }

    #[test]
    fn an_unfinished_sweep_is_marked_provisional_and_an_empty_one_still_renders() {
        let mut jobs = synthetic_jobs();
        jobs[1].0.state = JobState::Pending;
        jobs[1].1 = None;
        let page = render(&build_report(&sweep(), &jobs).unwrap()).unwrap();
        assert!(
            page.contains("<b>Provisional:</b> 1 jobs"),
            "the banner names the open jobs"
        );
        let empty = render(&build_report(&sweep(), &[]).unwrap()).unwrap();
        assert!(empty.contains("No results with a proxy value yet") && !empty.contains("<svg"));
    }

    #[test]
    fn p_values_are_readable() {
        assert_eq!(pval(0.04213), "0.042");
        assert_eq!(pval(0.00001234), "1.23e-5");
        assert_eq!(pval(f64::NAN), "–");
        assert_eq!(stat(-0.8333), "-0.833");
    }
}
