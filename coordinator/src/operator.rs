//! The operator's side of the sweep service: the calls behind `asdsweep
//! launch/status/results/cancel/retry` and how their answers are printed.

use asdsweep_shared::grid;
use asdsweep_shared::auth::Bearer;
use asdsweep_shared::proto::{self as pb, AuthChannel, sweep_service_client::SweepServiceClient};
use asdsweep_shared::spec::Spec;
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
    #[error("cannot reach coordinator {addr}: {source} (start one with `asdsweep serve`, or set --coordinator / ASDSWEEP_COORDINATOR)")]
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
    let url = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
    let endpoint = Channel::from_shared(url.clone())
        .map_err(|e| Error::Render(format!("bad coordinator address \"{addr}\": {e}")))?
        .connect_timeout(std::time::Duration::from_secs(5));
    let bearer = Bearer::new(token).map_err(Error::Render)?;
    let channel = endpoint.connect().await.map_err(|source| Error::Connect { addr: url, source })?;
    Ok(SweepServiceClient::with_interceptor(channel, bearer))
}

/// Renders what a spec would launch, without launching it.
pub fn dry_run(spec: &Spec) -> String {
    let jobs = grid::expand(spec);
    let mut out = String::new();
    let _ = writeln!(out, "{:<48} {:<6} {:<8} {:<10} {:<12} {:>5}  depends on", "job", "stage", "kind", "config", "device", "seed");
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
    out
}

/// Renders a status answer for people.
pub fn render_status(s: &pb::StatusResponse) -> String {
    let mut out = String::new();
    if s.sweeps.is_empty() {
        out.push_str("no sweeps\n");
    }
    for sw in &s.sweeps {
        let counts: Vec<String> = sw.counts.iter().filter(|c| c.count > 0).map(|c| format!("{} {}", c.count, c.state)).collect();
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
        for d in &sw.dead {
            let _ = writeln!(out, "  dead: {} after {} attempts: {}", d.job_key, d.attempts, d.error);
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
            w.current_job.as_deref().map(|j| format!("running {j}")).unwrap_or_else(|| "idle".into())
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

const RESULT_COLUMNS: [&str; 17] = [
    "job", "state", "attempts", "family", "config", "device", "seed", "stage", "proxy_metric", "proxy_value", "lp_in_auc",
    "lp_in_pauc", "lp_out_auc", "lp_out_pauc", "md_auc", "md_pauc", "error",
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
            serde_json::to_string_pretty(&v).map(|s| s + "\n").map_err(|e| Error::Render(e.to_string()))
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(RESULT_COLUMNS).map_err(|e| Error::Render(e.to_string()))?;
            for r in rows {
                w.write_record(result_cells(r)).map_err(|e| Error::Render(e.to_string()))?;
            }
            let bytes = w.into_inner().map_err(|e| Error::Render(e.to_string()))?;
            String::from_utf8(bytes).map_err(|e| Error::Render(e.to_string()))
        }
        Format::Table => {
            let cells: Vec<Vec<String>> = rows.iter().map(result_cells).collect();
            // Drop metric columns that are empty in every row.
            let keep: Vec<usize> = (0..RESULT_COLUMNS.len()).filter(|&c| c < 8 || cells.iter().any(|r| !r[c].is_empty())).collect();
            let widths: Vec<usize> =
                keep.iter().map(|&c| cells.iter().map(|r| r[c].chars().count()).chain([RESULT_COLUMNS[c].len()]).max().unwrap_or(0)).collect();
            let mut out = String::new();
            let line = |vals: Vec<&str>| -> String {
                let mut l = vals.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect::<Vec<_>>().join("  ");
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

/// Reads and validates a spec file, returning it with its text.
pub fn read_spec(path: &Path) -> Result<(Spec, String)> {
    let spec = Spec::from_path(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::Render(format!("cannot read {}: {e}", path.display())))?;
    Ok((spec, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, md: Option<f64>, error: &str) -> pb::ResultRow {
        pb::ResultRow {
            job_key: "ae/c,1/fan/s1/eval".into(),
            state: state.into(),
            metrics: md.map(|m| pb::JobMetrics { proxy_metric: "ae_l1".into(), md_auc: Some(m), ..Default::default() }),
            error: error.into(),
            ..Default::default()
        }
    }

    #[test]
    fn csv_output_quotes_fields_and_keeps_every_column() {
        let out = render_results(&[row("succeeded", Some(0.75), "")], Format::Csv).unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next().unwrap().split(',').count(), RESULT_COLUMNS.len());
        let data = lines.next().unwrap();
        assert!(data.starts_with("\"ae/c,1/fan/s1/eval\",succeeded"), "{data}");
        assert!(data.contains("0.750000"));
    }

    #[test]
    fn the_table_hides_metric_columns_that_are_empty_everywhere_but_shows_errors() {
        let out = render_results(&[row("dead", None, "boom")], Format::Table).unwrap();
        assert!(!out.contains("md_auc"), "{out}");
        assert!(out.contains("error") && out.contains("boom"), "{out}");
    }

    #[test]
    fn json_output_parses_back_with_nulls_for_missing_metrics() {
        let out = render_results(&[row("dead", None, "boom")], Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["error"], "boom");
        assert!(v[0]["md_auc"].is_null());
    }
}
