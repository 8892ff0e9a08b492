//! The operator's side of the sweep service: the calls behind `asdsweep
//! launch/status/results/correlations/cancel/retry` and how their answers are printed.

use crate::queue::JobState;
use crate::report;
use asdsweep_shared::auth::Bearer;
use asdsweep_shared::grid;
use asdsweep_shared::proto::{self as pb, AuthChannel, sweep_service_client::SweepServiceClient};
use asdsweep_shared::remote::ClientTls;
use asdsweep_shared::spec::{Backend, Spec};
use std::fmt::Write as _;
use std::path::Path;

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

/// Connects to a coordinator's sweep service, with a bearer token and TLS if given.
pub async fn connect(
    addr: &str,
    token: Option<&str>,
    tls: &ClientTls,
) -> Result<SweepServiceClient<AuthChannel>> {
    let url = asdsweep_shared::remote::coordinator_url(addr, tls);
    let endpoint = asdsweep_shared::remote::endpoint(addr, tls)
        .map_err(Error::Render)?
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

/// `asdsweep workers`: one line per worker, live ones first, with how long ago each was
/// last heard from (`now_ms`: the time to measure from).
pub fn render_workers(r: &pb::WorkersResponse, now_ms: i64) -> String {
    let live = r.workers.iter().filter(|w| w.live).count();
    let mut out = format!(
        "{live} live, {} lost (no heartbeat for a minute)\n",
        r.workers.len() - live
    );
    if r.workers.is_empty() {
        return out;
    }
    let rows: Vec<[String; 7]> = r
        .workers
        .iter()
        .map(|w| {
            [
                w.name.clone(),
                w.worker_id.clone(),
                if w.live { "live" } else { "lost" }.to_owned(),
                w.backend.clone(),
                w.device.clone(),
                w.current_job.clone().unwrap_or_else(|| "-".into()),
                format!(
                    "{} ago",
                    human_duration((now_ms - w.last_seen_ms).max(0) as f64 / 1000.0)
                ),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "ID",
        "STATE",
        "BACKEND",
        "DEVICE",
        "JOB",
        "LAST HEARTBEAT",
    ];
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// `asdsweep workers --json`: one object per worker, times in Unix milliseconds.
pub fn workers_json(r: &pb::WorkersResponse) -> serde_json::Value {
    r.workers
        .iter()
        .map(|w| {
            serde_json::json!({
                "name": w.name,
                "worker_id": w.worker_id,
                "live": w.live,
                "backend": w.backend,
                "device": w.device,
                "current_job": w.current_job,
                "last_seen_ms": w.last_seen_ms,
                "registered_at_ms": w.registered_at_ms,
            })
        })
        .collect()
}

fn human_duration(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A metric that `asdsweep results --metric` selects: `proxy_value`, one of the six ASD
/// columns, or any metric a result reports by name — its proxy metric (`ae_l1`) or one of
/// its further metrics (`si_sdr_0db`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric(String);

impl std::str::FromStr for Metric {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Metric, String> {
        let column = RESULT_COLUMNS.iter().position(|c| *c == name);
        if name.is_empty() || column.is_some_and(|c| !METRIC_COLUMNS.contains(&c)) {
            return Err(format!(
                "\"{name}\" is no metric: name proxy_value, an ASD column ({}), or a metric the results report",
                RESULT_COLUMNS[METRIC_COLUMNS.start + 1..METRIC_COLUMNS.end].join(", ")
            ));
        }
        Ok(Metric(name.to_owned()))
    }
}

impl Metric {
    /// The column name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its column among [`RESULT_COLUMNS`], when it names one of the fixed metric columns.
    fn column(&self) -> Option<usize> {
        METRIC_COLUMNS
            .into_iter()
            .find(|&c| RESULT_COLUMNS[c] == self.0)
    }

    /// The metric's value in a result, if it has one.
    pub fn value(&self, m: &pb::JobMetrics) -> Option<f64> {
        match self.column() {
            Some(c) => fixed_metric(m, c),
            None => named_metric(m, &self.0).and_then(|(value, _)| value),
        }
    }
}

/// A result's metric `name` with its direction: its proxy metric if so named, else its
/// further metric of that name.
pub fn named_metric(m: &pb::JobMetrics, name: &str) -> Option<(Option<f64>, pb::MetricDirection)> {
    if m.proxy_metric == name {
        return Some((m.proxy_value, m.proxy_direction()));
    }
    m.metrics
        .iter()
        .find(|x| x.name == name)
        .map(|x| (x.value, x.direction()))
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
                .as_ref()
                .is_none_or(|m| r.metrics.as_ref().and_then(|x| m.value(x)).is_some())
    }
}

/// Renders the rows that pass a filter; with a metric, of the metric columns only that
/// one is shown (named as asked, between `proxy_metric` and `error`).
pub fn render_filtered_results(
    rows: &[pb::ResultRow],
    filter: &ResultFilter,
    format: Format,
) -> Result<String> {
    let kept: Vec<pb::ResultRow> = rows.iter().filter(|r| filter.keeps(r)).cloned().collect();
    let Some(metric) = &filter.metric else {
        return render_results(&kept, format);
    };
    let mut columns: Vec<Column> = (0..METRIC_COLUMNS.start).map(Column::Fixed).collect();
    columns.push(match metric.column() {
        Some(c) => Column::Fixed(c),
        None => Column::Named(metric.as_str().to_owned()),
    });
    columns.push(Column::Fixed(ERROR_COLUMN));
    render_columns(&kept, format, &columns)
}

/// The columns of `asdsweep results --format csv` (and of the table) before the further
/// metrics: each further metric name of the rows follows `proxy_direction`, sorted.
pub const RESULT_COLUMNS: [&str; 18] = [
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
    "proxy_direction",
];

/// Keys of `asdsweep results --format json` rows that are no column.
pub const RESULT_JSON_KEYS: [&str; 5] = ["kind", "worker", "extra", "provenance", "metrics"];

/// The fixed metric columns of [`RESULT_COLUMNS`]: `proxy_value` and the six ASD metrics.
const METRIC_COLUMNS: std::ops::Range<usize> = 9..16;

/// The `error` column of [`RESULT_COLUMNS`].
const ERROR_COLUMN: usize = 16;

/// Columns shown in every table, even when empty: the job's key and identity.
const KEY_COLUMNS: usize = 8;

/// A column of `asdsweep results`.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    /// One of [`RESULT_COLUMNS`].
    Fixed(usize),
    /// A metric by name (see [`Metric`]); in the full listing, a further metric.
    Named(String),
}

impl Column {
    fn header(&self) -> &str {
        match self {
            Column::Fixed(c) => RESULT_COLUMNS[*c],
            Column::Named(name) => name,
        }
    }
}

/// The value of fixed metric column `c` in a result.
fn fixed_metric(m: &pb::JobMetrics, c: usize) -> Option<f64> {
    match RESULT_COLUMNS[c] {
        "proxy_value" => m.proxy_value,
        "lp_in_auc" => m.lp_in_auc,
        "lp_in_pauc" => m.lp_in_pauc,
        "lp_out_auc" => m.lp_out_auc,
        "lp_out_pauc" => m.lp_out_pauc,
        "md_auc" => m.md_auc,
        "md_pauc" => m.md_pauc,
        _ => None,
    }
}

/// A direction as `asdsweep results` prints it (empty, or null in JSON, when unspecified).
fn direction_name(d: pb::MetricDirection) -> Option<&'static str> {
    d.direction().map(|d| d.as_str())
}

fn result_cell(r: &pb::ResultRow, column: &Column) -> String {
    let num = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let m = r.metrics.clone().unwrap_or_default();
    let c = match column {
        Column::Fixed(c) => *c,
        Column::Named(name) => {
            return num(named_metric(&m, name).and_then(|(value, _)| value));
        }
    };
    if METRIC_COLUMNS.contains(&c) {
        return num(fixed_metric(&m, c));
    }
    match RESULT_COLUMNS[c] {
        "job" => r.job_key.clone(),
        "state" => r.state.clone(),
        "attempts" => r.attempts.to_string(),
        "family" => r.family.clone(),
        "config" => r.config.clone(),
        "device" => r.device.clone(),
        "seed" => r.seed.to_string(),
        "stage" => r.stage.clone(),
        "proxy_metric" => m.proxy_metric,
        "error" => r.error.clone(),
        "proxy_direction" => direction_name(m.proxy_direction())
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// Renders result rows as a table, CSV or JSON: every column of [`RESULT_COLUMNS`], then
/// one per further metric name of the rows, sorted.
pub fn render_results(rows: &[pb::ResultRow], format: Format) -> Result<String> {
    let mut columns: Vec<Column> = (0..RESULT_COLUMNS.len()).map(Column::Fixed).collect();
    let names: std::collections::BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.metrics.iter().flat_map(|m| &m.metrics))
        .map(|m| m.name.as_str())
        .collect();
    columns.extend(names.into_iter().map(|n| Column::Named(n.to_owned())));
    render_columns(rows, format, &columns)
}

/// One result row as `asdsweep results --format json` prints it.
fn result_json(r: &pb::ResultRow) -> serde_json::Value {
    let m = r.metrics.clone().unwrap_or_default();
    let metrics: serde_json::Map<String, serde_json::Value> = m
        .metrics
        .iter()
        .map(|x| {
            (
                x.name.clone(),
                serde_json::json!({"value": x.value, "direction": direction_name(x.direction())}),
            )
        })
        .collect();
    serde_json::json!({
        "job": r.job_key, "state": r.state, "attempts": r.attempts, "family": r.family,
        "config": r.config, "device": r.device, "seed": r.seed, "stage": r.stage, "kind": r.kind,
        "worker": r.worker, "error": if r.error.is_empty() { None } else { Some(&r.error) },
        "proxy_metric": m.proxy_metric, "proxy_value": m.proxy_value,
        "proxy_direction": direction_name(m.proxy_direction()),
        "lp_in_auc": m.lp_in_auc, "lp_in_pauc": m.lp_in_pauc,
        "lp_out_auc": m.lp_out_auc, "lp_out_pauc": m.lp_out_pauc,
        "md_auc": m.md_auc, "md_pauc": m.md_pauc,
        "metrics": metrics,
        "extra": serde_json::from_str::<serde_json::Value>(&m.extra_json).ok(),
        "provenance": serde_json::from_str::<serde_json::Value>(&m.provenance_json).ok(),
    })
}

/// Renders result rows with the given columns (JSON keeps every field).
fn render_columns(rows: &[pb::ResultRow], format: Format, columns: &[Column]) -> Result<String> {
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = rows.iter().map(result_json).collect();
            serde_json::to_string_pretty(&v)
                .map(|s| s + "\n")
                .map_err(|e| Error::Render(e.to_string()))
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(columns.iter().map(Column::header))
                .map_err(|e| Error::Render(e.to_string()))?;
            for r in rows {
                w.write_record(columns.iter().map(|c| result_cell(r, c)))
                    .map_err(|e| Error::Render(e.to_string()))?;
            }
            let bytes = w.into_inner().map_err(|e| Error::Render(e.to_string()))?;
            String::from_utf8(bytes).map_err(|e| Error::Render(e.to_string()))
        }
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| columns.iter().map(|c| result_cell(r, c)).collect())
                .collect();
            // Drop metric columns that are empty in every row.
            let keep: Vec<usize> = (0..columns.len())
                .filter(|&k| {
                    matches!(columns[k], Column::Fixed(c) if c < KEY_COLUMNS)
                        || cells.iter().any(|r| !r[k].is_empty())
                })
                .collect();
            let widths: Vec<usize> = keep
                .iter()
                .map(|&k| {
                    cells
                        .iter()
                        .map(|r| r[k].chars().count())
                        .chain([columns[k].header().chars().count()])
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
            out.push_str(&line(keep.iter().map(|&k| columns[k].header()).collect()));
            for r in &cells {
                out.push_str(&line(keep.iter().map(|&k| r[k].as_str()).collect()));
            }
            Ok(out)
        }
    }
}

/// Renders a sweep's correlations as a table, CSV (the columns of `correlations.csv`) or JSON.
pub fn render_correlations(c: &pb::CorrelationsResponse, format: Format) -> Result<String> {
    render_correlations_of(c, None, format)
}

/// [`render_correlations`] of the correlations of metric `proxy` in place of each
/// family's main proxy (`asdsweep correlations --proxy NAME`): the table and JSON name it.
pub fn render_correlations_of(
    c: &pb::CorrelationsResponse,
    proxy: Option<&str>,
    format: Format,
) -> Result<String> {
    match format {
        Format::Csv => report::correlations_csv(&c.lines, c.provisional)
            .map_err(|e| Error::Render(e.to_string())),
        Format::Json => {
            let lines: Vec<report::CorrelationLine> =
                c.lines.iter().map(report::CorrelationLine::from).collect();
            let v = serde_json::json!({
                "sweep_id": c.sweep_id, "name": c.name, "provisional": c.provisional, "open_jobs": c.open_jobs,
                "proxy": proxy, "rows_used": c.rows_used, "rows_without_proxy": c.rows_without_proxy,
                "tests": lines,
            });
            serde_json::to_string_pretty(&v)
                .map(|s| s + "\n")
                .map_err(|e| Error::Render(e.to_string()))
        }
        Format::Table => {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "sweep {} \"{}\": {} result rows{}{}",
                c.sweep_id,
                c.name,
                c.rows_used,
                proxy.map_or(String::new(), |p| format!(" with metric {p} as the proxy")),
                match (c.rows_without_proxy, proxy) {
                    (0, _) => String::new(),
                    (n, None) => format!(" ({n} without a proxy value, left out)"),
                    (n, Some(p)) => format!(" ({n} without a value of {p}, left out)"),
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
    fn workers_are_listed_live_then_lost_with_their_job_and_last_heartbeat() {
        let worker = |name: &str, live: bool, job: Option<&str>, seen_s_ago: i64| pb::WorkerInfo {
            worker_id: format!("w-{name}"),
            name: name.into(),
            backend: "flex".into(),
            device: "cpu".into(),
            last_seen_ms: 1_000_000 - 1000 * seen_s_ago,
            current_job: job.map(String::from),
            live,
            registered_at_ms: 0,
        };
        let r = pb::WorkersResponse {
            workers: vec![
                worker("gpu-a", true, Some("ae/c1/fan/train"), 2),
                worker("gpu-b", false, None, 7300),
            ],
        };
        let out = render_workers(&r, 1_000_000);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "1 live, 1 lost (no heartbeat for a minute)");
        assert!(
            lines[1].starts_with("NAME   ID       STATE  BACKEND"),
            "{out}"
        );
        assert!(
            lines[2].contains("live")
                && lines[2].contains("ae/c1/fan/train")
                && lines[2].ends_with("2s ago"),
            "{out}"
        );
        assert!(
            lines[3].contains("lost")
                && lines[3].contains(" - ")
                && lines[3].ends_with("2h01m ago"),
            "{out}"
        );
        let json = workers_json(&r);
        assert_eq!(json[1]["live"], false);
        assert_eq!(json[0]["current_job"], "ae/c1/fan/train");
        assert_eq!(
            render_workers(&pb::WorkersResponse::default(), 0),
            "0 live, 0 lost (no heartbeat for a minute)\n"
        );
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
            metric: Some("md_auc".parse().unwrap()),
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

    /// A separation result: SI-SDR as its proxy, two further metrics, one without a value.
    fn separation_row(config: &str, sdr_5db: Option<f64>) -> pb::ResultRow {
        let named =
            |name: &str, value: Option<f64>, direction: pb::MetricDirection| pb::NamedMetric {
                name: name.into(),
                value,
                direction: direction as i32,
            };
        pb::ResultRow {
            job_key: format!("sep/{config}/fan/s1/eval"),
            family: "sep".into(),
            config: config.into(),
            device: "fan".into(),
            state: "succeeded".into(),
            metrics: Some(pb::JobMetrics {
                proxy_metric: "si_sdr".into(),
                proxy_value: Some(7.5),
                proxy_direction: pb::MetricDirection::HigherIsBetter as i32,
                md_auc: Some(0.8),
                metrics: vec![
                    named("si_sdr_5db", sdr_5db, pb::MetricDirection::HigherIsBetter),
                    named("mixtures", Some(120.0), pb::MetricDirection::Unspecified),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn json_rows_carry_the_proxy_direction_and_the_further_metrics() {
        let rows = [separation_row("a", Some(9.25)), row("dead", None, "boom")];
        let v: serde_json::Value =
            serde_json::from_str(&render_results(&rows, Format::Json).unwrap()).unwrap();
        assert_eq!(v[0]["proxy_metric"], "si_sdr");
        assert_eq!(v[0]["proxy_direction"], "higher_is_better");
        assert_eq!(
            v[0]["metrics"],
            serde_json::json!({
                "si_sdr_5db": {"value": 9.25, "direction": "higher_is_better"},
                "mixtures": {"value": 120.0, "direction": null},
            })
        );
        assert!(v[1]["proxy_direction"].is_null());
        assert_eq!(v[1]["metrics"], serde_json::json!({}));
        // CSV: the direction, then one column per further metric, sorted.
        let csv = render_results(&rows, Format::Csv).unwrap();
        assert!(
            csv.lines()
                .next()
                .unwrap()
                .ends_with(",md_pauc,error,proxy_direction,mixtures,si_sdr_5db"),
            "{csv}"
        );
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .ends_with(",higher_is_better,120.000000,9.250000"),
            "{csv}"
        );
    }

    #[test]
    fn a_further_metric_or_a_proxy_metric_can_be_selected_by_name() {
        let rows = [
            separation_row("a", Some(9.25)),
            separation_row("b", None),
            metric_row("ae", "fan", Some(0.9)),
        ];
        let only = |name: &str| ResultFilter {
            metric: Some(name.parse().unwrap()),
            ..Default::default()
        };
        let out = render_filtered_results(&rows, &only("si_sdr_5db"), Format::Csv).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "job,state,attempts,family,config,device,seed,stage,proxy_metric,si_sdr_5db,error",
            "{out}"
        );
        assert_eq!(
            lines.len(),
            2,
            "b has no value and ae no such metric: {out}"
        );
        assert!(lines[1].starts_with("sep/a/fan/s1/eval,") && lines[1].contains(",9.250000,"));
        let table = render_filtered_results(&rows, &only("si_sdr_5db"), Format::Table).unwrap();
        assert!(
            table.contains("si_sdr_5db") && table.contains("9.250000") && !table.contains("md_auc"),
            "{table}"
        );
        // A proxy metric's name selects its value in the rows whose proxy it is.
        let out = render_filtered_results(&rows, &only("ae_l1"), Format::Csv).unwrap();
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            out.lines()
                .next()
                .unwrap()
                .ends_with(",proxy_metric,ae_l1,error")
        );
        assert!(out.lines().nth(1).unwrap().contains(",0.250000,"), "{out}");
        // A column that is no metric is refused.
        let err = "job".parse::<Metric>().unwrap_err();
        assert!(err.contains("no metric") && err.contains("md_auc"), "{err}");
    }

    #[test]
    fn json_output_parses_back_with_nulls_for_missing_metrics() {
        let out = render_results(&[row("dead", None, "boom")], Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["error"], "boom");
        assert!(v[0]["md_auc"].is_null());
    }
}
