//! The operator's side of the sweep service: the calls behind `asdsweep
//! launch/status/results/correlations/cancel/retry` and how their answers are printed.

use crate::queue::JobState;
use crate::report;
use asdsweep_shared::auth::Bearer;
use asdsweep_shared::grid;
use asdsweep_shared::proto::{self as pb, AuthChannel, sweep_service_client::SweepServiceClient};
use asdsweep_shared::spec::{Backend, Spec};
use std::fmt::Write as _;
use std::path::Path;
use tonic::transport::Channel;

/// Why an operator call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec file is unreadable or invalid.
    #[error(transparent)]
    Spec(#[from] asdsweep_shared::spec::SpecError),
    /// The coordinator could not be reached.
    #[error(
        "cannot reach coordinator {addr}: {source} (start one with `asdsweep serve`, or set --coordinator / ASDSWEEP_COORDINATOR)"
    )]
    Connect {
        /// Address tried.
        addr: String,
        /// Cause.
        source: tonic::transport::Error,
    },
    /// The coordinator answered with an error.
    #[error("{}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
    /// Output could not be written.
    #[error("cannot render output: {0}")]
    Render(String),
}

/// Result alias for operator calls.
pub type Result<T> = std::result::Result<T, Error>;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Comma-separated values with a header.
    Csv,
    /// One JSON array of rows.
    Json,
}

/// Connects to a coordinator's sweep service, with a bearer token if given.
pub async fn connect(addr: &str, token: Option<&str>) -> Result<SweepServiceClient<AuthChannel>> {
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Channel::from_shared(url.clone())
        .map_err(|e| Error::Render(format!("bad coordinator address \"{addr}\": {e}")))?
        .connect_timeout(std::time::Duration::from_secs(5));
    let bearer = Bearer::new(token).map_err(Error::Render)?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| Error::Connect { addr: url, source })?;
    Ok(SweepServiceClient::with_interceptor(channel, bearer))
}

/// Renders what a spec would launch, without launching it.
pub fn dry_run(spec: &Spec) -> String {
    let jobs = grid::expand(spec);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<48} {:<6} {:<8} {:<10} {:<12} {:>5}  depends on",
        "job", "stage", "kind", "config", "device", "seed"
    );
    for j in &jobs {
        let _ = writeln!(
            out,
            "{:<48} {:<6} {:<8} {:<10} {:<12} {:>5}  {}",
            j.key,
            j.stage.as_str(),
            j.kind,
            j.config,
            j.device,
            j.seed,
            j.depends_on.join(", ")
        );
    }
    let count = |s: grid::Stage| jobs.iter().filter(|j| j.stage == s).count();
    let _ = writeln!(
        out,
        "\nsweep \"{}\" (spec {}): {} jobs — {} train, {} eval, {} single-stage; {} families × {} machine types × {} seeds",
        spec.name,
        &spec.hash()[..12],
        jobs.len(),
        count(grid::Stage::Train),
        count(grid::Stage::Eval),
        count(grid::Stage::Run),
        spec.families.len(),
        spec.devices.len(),
        spec.seeds.len()
    );
    for f in spec.families.iter().filter(|f| !f.backends().is_empty()) {
        let _ = writeln!(
            out,
            "family \"{}\" runs only on workers with backend {}",
            f.name(),
            Backend::join(f.backends(), " or ")
        );
    }
    out
}

/// Renders a status answer for people.
pub fn render_status(s: &pb::StatusResponse) -> String {
    let mut out = String::new();
    if s.sweeps.is_empty() {
        out.push_str("no sweeps\n");
    }
    for sw in &s.sweeps {
        let counts: Vec<String> = sw
            .counts
            .iter()
            .filter(|c| c.count > 0)
            .map(|c| format!("{} {}", c.count, c.state))
            .collect();
        let eta = match sw.eta_s {
            Some(e) if e > 0.0 => format!(", ETA {}", human_duration(e)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "sweep {} \"{}\" [{}]: {} jobs: {}; {:.1} jobs/s{}",
            sw.sweep_id,
            sw.name,
            sw.state,
            sw.total,
            counts.join(", "),
            sw.throughput_per_s,
            eta
        );
        for f in &sw.families {
            let counts: Vec<String> = f
                .counts
                .iter()
                .filter(|c| c.count > 0)
                .map(|c| format!("{} {}", c.count, c.state))
                .collect();
            let done = f
                .counts
                .iter()
                .filter(|c| c.state == JobState::Succeeded.as_str())
                .map(|c| c.count)
                .sum::<u64>();
            let _ = writeln!(
                out,
                "  family {}: {}/{} succeeded; {}",
                f.family,
                done,
                f.total,
                counts.join(", ")
            );
        }
        for need in &sw.backend_needs {
            let allowed: Vec<&str> = need.backends.split(',').collect();
            let able = s
                .live_workers
                .iter()
                .filter(|w| allowed.contains(&w.backend.as_str()))
                .count();
            let _ = writeln!(
                out,
                "  {} pending job(s) need a worker with backend {}: {}",
                need.pending,
                allowed.join(" or "),
                if able == 0 {
                    "no live worker has one".to_owned()
                } else {
                    format!("{able} live worker(s) can run them")
                }
            );
        }
        for d in &sw.dead {
            let _ = writeln!(
                out,
                "  dead: {} after {} attempts: {}",
                d.job_key, d.attempts, d.error
            );
        }
    }
    let _ = writeln!(out, "live workers: {}", s.live_workers.len());
    for w in &s.live_workers {
        let _ = writeln!(
            out,
            "  {} ({}) {} {} {}",
            w.name,
            w.worker_id,
            w.backend,
            w.device,
            w.current_job
                .as_deref()
                .map(|j| format!("running {j}"))
                .unwrap_or_else(|| "idle".into())
        );
    }
    out
}

fn human_duration(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A metric column that `asdsweep results --metric` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Metric {
    /// The proxy metric's value.
    ProxyValue,
    /// Linear probe, in-domain AUC.
    LpInAuc,
    /// Linear probe, in-domain pAUC.
    LpInPauc,
    /// Linear probe, out-of-domain AUC.
    LpOutAuc,
    /// Linear probe, out-of-domain pAUC.
    LpOutPauc,
    /// Mahalanobis AUC.
    MdAuc,
    /// Mahalanobis pAUC.
    MdPauc,
}

impl Metric {
    /// The column name.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ProxyValue => "proxy_value",
            Metric::LpInAuc => "lp_in_auc",
            Metric::LpInPauc => "lp_in_pauc",
            Metric::LpOutAuc => "lp_out_auc",
            Metric::LpOutPauc => "lp_out_pauc",
            Metric::MdAuc => "md_auc",
            Metric::MdPauc => "md_pauc",
        }
    }

    /// The metric's value in a result, if it has one.
    pub fn value(self, m: &pb::JobMetrics) -> Option<f64> {
        match self {
            Metric::ProxyValue => m.proxy_value,
            Metric::LpInAuc => m.lp_in_auc,
            Metric::LpInPauc => m.lp_in_pauc,
            Metric::LpOutAuc => m.lp_out_auc,
            Metric::LpOutPauc => m.lp_out_pauc,
            Metric::MdAuc => m.md_auc,
            Metric::MdPauc => m.md_pauc,
        }
    }
}

/// Which rows and columns `asdsweep results` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultFilter {
    /// Only this family.
    pub family: Option<String>,
    /// Only this machine type.
    pub device: Option<String>,
    /// Only rows that have this metric, and of the metric columns only it.
    pub metric: Option<Metric>,
}

impl ResultFilter {
    /// True if a row passes the filter.
    pub fn keeps(&self, r: &pb::ResultRow) -> bool {
        self.family.as_ref().is_none_or(|f| *f == r.family)
            && self.device.as_ref().is_none_or(|d| *d == r.device)
            && self
                .metric
                .is_none_or(|m| r.metrics.as_ref().and_then(|x| m.value(x)).is_some())
    }
}

/// Renders the rows that pass a filter; with a metric, only that metric column is shown.
pub fn render_filtered_results(
    rows: &[pb::ResultRow],
    filter: &ResultFilter,
    format: Format,
) -> Result<String> {
    let kept: Vec<pb::ResultRow> = rows.iter().filter(|r| filter.keeps(r)).cloned().collect();
    let Some(metric) = filter.metric else {
        return render_results(&kept, format);
    };
    let columns: Vec<usize> = (0..RESULT_COLUMNS.len())
        .filter(|&c| !(9..16).contains(&c) || RESULT_COLUMNS[c] == metric.as_str())
        .collect();
    render_columns(&kept, format, &columns)
}

const RESULT_COLUMNS: [&str; 17] = [
    "job",
    "state",
    "attempts",
    "family",
    "config",
    "device",
    "seed",
    "stage",
    "proxy_metric",
    "proxy_value",
    "lp_in_auc",
    "lp_in_pauc",
    "lp_out_auc",
    "lp_out_pauc",
    "md_auc",
    "md_pauc",
    "error",
];

fn result_cells(r: &pb::ResultRow) -> Vec<String> {
    let num = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let m = r.metrics.clone().unwrap_or_default();
    vec![
        r.job_key.clone(),
        r.state.clone(),
        r.attempts.to_string(),
        r.family.clone(),
        r.config.clone(),
        r.device.clone(),
        r.seed.to_string(),
        r.stage.clone(),
        m.proxy_metric,
        num(m.proxy_value),
        num(m.lp_in_auc),
        num(m.lp_in_pauc),
        num(m.lp_out_auc),
        num(m.lp_out_pauc),
        num(m.md_auc),
        num(m.md_pauc),
        r.error.clone(),
    ]
}

/// Renders result rows as a table, CSV or JSON.
pub fn render_results(rows: &[pb::ResultRow], format: Format) -> Result<String> {
    let all: Vec<usize> = (0..RESULT_COLUMNS.len()).collect();
    render_columns(rows, format, &all)
}

/// Renders result rows with the given columns of [`RESULT_COLUMNS`] (JSON keeps every field).
fn render_columns(rows: &[pb::ResultRow], format: Format, columns: &[usize]) -> Result<String> {
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let m = r.metrics.clone().unwrap_or_default();
                    serde_json::json!({
                        "job": r.job_key, "state": r.state, "attempts": r.attempts, "family": r.family,
                        "config": r.config, "device": r.device, "seed": r.seed, "stage": r.stage, "kind": r.kind,
                        "worker": r.worker, "error": if r.error.is_empty() { None } else { Some(&r.error) },
                        "proxy_metric": m.proxy_metric, "proxy_value": m.proxy_value,
                        "lp_in_auc": m.lp_in_auc, "lp_in_pauc": m.lp_in_pauc,
                        "lp_out_auc": m.lp_out_auc, "lp_out_pauc": m.lp_out_pauc,
                        "md_auc": m.md_auc, "md_pauc": m.md_pauc,
                        "extra": serde_json::from_str::<serde_json::Value>(&m.extra_json).ok(),
                        "provenance": serde_json::from_str::<serde_json::Value>(&m.provenance_json).ok(),
                    })
                })
                .collect();
            serde_json::to_string_pretty(&v)
                .map(|s| s + "\n")
                .map_err(|e| Error::Render(e.to_string()))
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(columns.iter().map(|&c| RESULT_COLUMNS[c]))
                .map_err(|e| Error::Render(e.to_string()))?;
            for r in rows {
                let cells = result_cells(r);
                w.write_record(columns.iter().map(|&c| &cells[c]))
                    .map_err(|e| Error::Render(e.to_string()))?;
            }
            let bytes = w.into_inner().map_err(|e| Error::Render(e.to_string()))?;
            String::from_utf8(bytes).map_err(|e| Error::Render(e.to_string()))
        }
        Format::Table => {
            let cells: Vec<Vec<String>> = rows.iter().map(result_cells).collect();
            // Drop metric columns that are empty in every row.
            let keep: Vec<usize> = columns
                .iter()
                .copied()
                .filter(|&c| c < 8 || cells.iter().any(|r| !r[c].is_empty()))
                .collect();
            let widths: Vec<usize> = keep
                .iter()
                .map(|&c| {
                    cells
                        .iter()
                        .map(|r| r[c].chars().count())
                        .chain([RESULT_COLUMNS[c].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let mut out = String::new();
            let line = |vals: Vec<&str>| -> String {
                let mut l = vals
                    .iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ");
                l.truncate(l.trim_end().len());
                l + "\n"
            };
            out.push_str(&line(keep.iter().map(|&c| RESULT_COLUMNS[c]).collect()));
            for r in &cells {
                out.push_str(&line(keep.iter().map(|&c| r[c].as_str()).collect()));
            }
            Ok(out)
        }
    }
}

/// Renders a sweep's correlations as a table, CSV (the columns of `correlations.csv`) or JSON.
pub fn render_correlations(c: &pb::CorrelationsResponse, format: Format) -> Result<String> {
    match format {
        Format::Csv => report::correlations_csv(&c.lines, c.provisional)
            .map_err(|e| Error::Render(e.to_string())),
        Format::Json => {
            let lines: Vec<report::CorrelationLine> =
                c.lines.iter().map(report::CorrelationLine::from).collect();
            let v = serde_json::json!({
                "sweep_id": c.sweep_id, "name": c.name, "provisional": c.provisional, "open_jobs": c.open_jobs,
                "rows_used": c.rows_used, "rows_without_proxy": c.rows_without_proxy, "tests": lines,
            });
            serde_json::to_string_pretty(&v)
                .map(|s| s + "\n")
                .map_err(|e| Error::Render(e.to_string()))
        }
        Format::Table => {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "sweep {} \"{}\": {} result rows{}",
                c.sweep_id,
                c.name,
                c.rows_used,
                if c.rows_without_proxy > 0 {
                    format!(
                        " ({} without a proxy value, left out)",
                        c.rows_without_proxy
                    )
                } else {
                    String::new()
                }
            );
            if c.provisional {
                let _ = writeln!(
                    out,
                    "PROVISIONAL: {} jobs are still open; these numbers will change",
                    c.open_jobs
                );
            }
            if c.lines.is_empty() {
                out.push_str("no results with a proxy value yet\n");
                return Ok(out);
            }
            let f = |v: f64| {
                if v.is_finite() {
                    format!("{v:.3}")
                } else {
                    "NaN".into()
                }
            };
            let _ = writeln!(
                out,
                "{:<16} {:<12} {:>3} {:>8} {:>8} {:>8} {:>8} {:>16} {:>8} {:>8}  {:<14} significance",
                "family",
                "asd_metric",
                "n",
                "pearson",
                "p",
                "spearman",
                "perm_p",
                "rho CI",
                "kendall",
                "q_bh",
                "direction"
            );
            for l in &c.lines {
                let _ = writeln!(
                    out,
                    "{:<16} {:<12} {:>3} {:>8} {:>8} {:>8} {:>8} {:>16} {:>8} {:>8}  {:<14} {}{}",
                    l.family,
                    l.asd_metric,
                    l.n,
                    f(l.pearson_r),
                    f(l.pearson_p),
                    f(l.spearman_rho),
                    f(l.spearman_p),
                    format!("[{}, {}]", f(l.spearman_ci_low), f(l.spearman_ci_high)),
                    f(l.kendall_tau),
                    f(l.q_bh),
                    l.direction,
                    l.significance,
                    if l.note.is_empty() {
                        String::new()
                    } else {
                        format!("  ({})", l.note)
                    }
                );
            }
            Ok(out)
        }
    }
}

/// Reads and validates a spec file, returning it with its text.
pub fn read_spec(path: &Path) -> Result<(Spec, String)> {
    let spec = Spec::from_path(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Render(format!("cannot read {}: {e}", path.display())))?;
    Ok((spec, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, md: Option<f64>, error: &str) -> pb::ResultRow {
        pb::ResultRow {
            job_key: "ae/c,1/fan/s1/eval".into(),
            state: state.into(),
            metrics: md.map(|m| pb::JobMetrics {
                proxy_metric: "ae_l1".into(),
                md_auc: Some(m),
                ..Default::default()
            }),
            error: error.into(),
            ..Default::default()
        }
    }

    #[test]
    fn csv_output_quotes_fields_and_keeps_every_column() {
        let out = render_results(&[row("succeeded", Some(0.75), "")], Format::Csv).unwrap();
        let mut lines = out.lines();
        assert_eq!(
            lines.next().unwrap().split(',').count(),
            RESULT_COLUMNS.len()
        );
        let data = lines.next().unwrap();
        assert!(
            data.starts_with("\"ae/c,1/fan/s1/eval\",succeeded"),
            "{data}"
        );
        assert!(data.contains("0.750000"));
    }

    #[test]
    fn the_table_hides_metric_columns_that_are_empty_everywhere_but_shows_errors() {
        let out = render_results(&[row("dead", None, "boom")], Format::Table).unwrap();
        assert!(!out.contains("md_auc"), "{out}");
        assert!(out.contains("error") && out.contains("boom"), "{out}");
    }

    fn metric_row(family: &str, device: &str, md: Option<f64>) -> pb::ResultRow {
        pb::ResultRow {
            job_key: format!("{family}/c1/{device}/s1/eval"),
            family: family.into(),
            device: device.into(),
            state: "succeeded".into(),
            metrics: Some(pb::JobMetrics {
                proxy_metric: "ae_l1".into(),
                proxy_value: Some(0.25),
                md_auc: md,
                lp_in_auc: Some(0.7),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn filters_keep_the_family_the_machine_type_and_rows_with_the_metric() {
        let rows = [
            metric_row("ae", "fan", Some(0.9)),
            metric_row("ae", "pump", None),
            metric_row("ce", "fan", Some(0.8)),
        ];
        let filter = ResultFilter {
            family: Some("ae".into()),
            device: None,
            metric: Some(Metric::MdAuc),
        };
        let out = render_filtered_results(&rows, &filter, Format::Csv).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(
            lines[0],
            "job,state,attempts,family,config,device,seed,stage,proxy_metric,md_auc,error"
        );
        assert!(
            lines[1].starts_with("ae/c1/fan/s1/eval,") && lines[1].contains("0.900000"),
            "{out}"
        );
        let by_device = ResultFilter {
            device: Some("fan".into()),
            ..Default::default()
        };
        assert_eq!(
            render_filtered_results(&rows, &by_device, Format::Csv)
                .unwrap()
                .lines()
                .count(),
            3
        );
        assert!(
            render_filtered_results(&rows, &by_device, Format::Table)
                .unwrap()
                .contains("lp_in_auc")
        );
    }

    #[test]
    fn provisional_correlations_say_so_in_every_format() {
        let c = pb::CorrelationsResponse {
            sweep_id: 3,
            name: "demo".into(),
            provisional: true,
            open_jobs: 4,
            rows_used: 6,
            lines: vec![pb::CorrelationLine {
                family: "ae".into(),
                asd_metric: "md_auc".into(),
                n: 3,
                spearman_rho: 1.0,
                pearson_r: f64::NAN,
                ..Default::default()
            }],
            ..Default::default()
        };
        let table = render_correlations(&c, Format::Table).unwrap();
        assert!(table.contains("PROVISIONAL: 4 jobs"), "{table}");
        let csv = render_correlations(&c, Format::Csv).unwrap();
        assert!(
            csv.lines().next().unwrap().ends_with(",provisional")
                && csv.lines().nth(1).unwrap().ends_with(",true"),
            "{csv}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_correlations(&c, Format::Json).unwrap()).unwrap();
        assert_eq!(json["provisional"], true);
        assert_eq!(json["tests"][0]["spearman_rho"], 1.0);
        assert!(json["tests"][0]["pearson_r"].is_null(), "NaN becomes null");
    }

    #[test]
    fn json_output_parses_back_with_nulls_for_missing_metrics() {
        let out = render_results(&[row("dead", None, "boom")], Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["error"], "boom");
        assert!(v[0]["md_auc"].is_null());
    }
}
