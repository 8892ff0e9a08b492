//! A sweep's outputs: `results.csv` (one row per family × config × machine type × seed),
//! `correlations.csv` and `correlations.json` (one test per family × ASD metric), and
//! `report.html` (one self-contained page with inline SVG scatter panels).
//!
//! The statistics are not computed here. `results.csv` is rendered first and the
//! correlations are computed from those very bytes with [`parse_long_csv`],
//! [`aggregate_devices`], [`correlate`] and [`alignment_report`] — the path
//! `asdsweep analyze results.csv` takes — so the report always agrees with a
//! re-analysis of its own `results.csv`. Correlations of another proxy metric
//! (`asdsweep correlations --proxy NAME`) take the same path through a `results.csv`
//! whose proxy columns hold that metric ([`with_proxy`]).

pub mod html;

use crate::entity::{job, sweep};
use crate::error::{Error, Result};
use crate::ids::SweepId;
use crate::queue::{JobState, SweepState};
use crate::store::{JobResult, NamedMetric, Store, now_ms};
use asdsweep_shared::analysis::alignment::{FamilyAlignment, alignment_report};
use asdsweep_shared::analysis::{
    AnalysisError, ConfigPoint, CorrelationRow, Direction, LongTable, SWEEP_ASD_METRICS,
    SWEEP_DIRECTION_COLUMN, SWEEP_KEY_COLUMNS, TestSettings, aggregate_devices, correlate,
    parse_long_csv,
};
use asdsweep_shared::proto as pb;
use sea_orm::{FromQueryResult, Statement};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Provenance columns of `results.csv`: (column, key in the result's provenance JSON).
pub const PROVENANCE_COLUMNS: [(&str, &str); 6] = [
    ("spec_hash", "spec_hash"),
    ("dataset_fingerprint", "dataset_fingerprint"),
    ("backend", "backend"),
    ("compute_device", "device"),
    ("code_version", "code_version"),
    ("wall_s", "wall_s"),
];

/// Columns after the provenance: which job and worker produced the row.
pub const TRACE_COLUMNS: [&str; 2] = ["job", "worker"];

/// Longest name of a further metric, in bytes.
pub const MAX_METRIC_NAME_BYTES: usize = 128;

/// Why a further metric may not have this name, if it may not: a name must be 1 to
/// [`MAX_METRIC_NAME_BYTES`] bytes without whitespace or control characters, and no
/// column of `results.csv` or of `asdsweep results` (each further metric becomes a
/// column of its own there, and `--metric NAME` must name one thing).
pub fn metric_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_METRIC_NAME_BYTES {
        return Some(format!(
            "a metric name has 1 to {MAX_METRIC_NAME_BYTES} bytes"
        ));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("a metric name has no whitespace or control characters".into());
    }
    let taken = SWEEP_KEY_COLUMNS
        .iter()
        .chain(&SWEEP_ASD_METRICS)
        .chain(PROVENANCE_COLUMNS.iter().map(|(c, _)| c))
        .chain(&TRACE_COLUMNS)
        .chain(&[SWEEP_DIRECTION_COLUMN])
        .chain(&crate::operator::RESULT_COLUMNS)
        .chain(&crate::operator::RESULT_JSON_KEYS)
        .any(|c| *c == name);
    taken.then(|| "the name of a column of results.csv or of `asdsweep results`".into())
}

/// The file names a report writes into its directory.
pub const RESULTS_CSV: &str = "results.csv";
/// See [`RESULTS_CSV`].
pub const CORRELATIONS_CSV: &str = "correlations.csv";
/// See [`RESULTS_CSV`].
pub const CORRELATIONS_JSON: &str = "correlations.json";
/// See [`RESULTS_CSV`].
pub const REPORT_HTML: &str = "report.html";

/// One row of `results.csv`: the metrics of one evaluation (or single-stage) job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultLine {
    /// Proxy family.
    pub family: String,
    /// Config (checkpoint) name.
    pub config: String,
    /// Machine type.
    pub device: String,
    /// Seed.
    pub seed: i64,
    /// Name of the proxy metric.
    pub proxy_metric: String,
    /// Proxy metric value.
    pub proxy_value: Option<f64>,
    /// The proxy metric's declared direction.
    pub proxy_direction: Option<Direction>,
    /// Further named metrics, by name.
    pub metrics: Vec<NamedMetric>,
    /// The six ASD metrics in [`SWEEP_ASD_METRICS`] order.
    pub asd: [Option<f64>; 6],
    /// Provenance values in [`PROVENANCE_COLUMNS`] order (empty when absent).
    pub provenance: Vec<String>,
    /// Job key.
    pub job: String,
    /// Worker that produced the result.
    pub worker: String,
}

/// The metric rows of a sweep: succeeded `eval` and `run` jobs with their results, in job order.
pub fn result_lines(jobs: &[(job::Model, Option<JobResult>)]) -> Vec<ResultLine> {
    jobs.iter()
        .filter(|(j, _)| j.stage == "eval" || j.stage == "run")
        .filter_map(|(j, r)| r.as_ref().map(|r| (j, r)))
        .map(|(j, JobResult { result: r, metrics })| ResultLine {
            family: j.family.clone(),
            config: j.config.clone(),
            device: j.device.clone(),
            seed: j.seed,
            proxy_metric: r.proxy_metric.clone(),
            proxy_value: r.proxy_value,
            proxy_direction: r.declared_direction(),
            metrics: metrics.clone(),
            asd: [
                r.lp_in_auc,
                r.lp_in_pauc,
                r.lp_out_auc,
                r.lp_out_pauc,
                r.md_auc,
                r.md_pauc,
            ],
            provenance: PROVENANCE_COLUMNS
                .iter()
                .map(|(_, key)| provenance_text(&r.provenance, key))
                .collect(),
            job: j.job_key.clone(),
            worker: r.worker_id.clone(),
        })
        .collect()
}

/// A provenance value as CSV text: strings as they are, numbers and booleans printed, other JSON compact.
fn provenance_text(provenance: &serde_json::Value, key: &str) -> String {
    match provenance.get(key) {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A number as CSV text: shortest exact form, empty when missing or not finite.
fn csv_number(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => String::new(),
    }
}

/// The names of the further metrics of some lines, sorted, each once.
pub fn metric_names(lines: &[ResultLine]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| l.metrics.iter().map(|m| m.name.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Renders `results.csv`: the columns of asdsweep 0.1 in their order (key and proxy,
/// ASD metrics, provenance, job and worker), then `proxy_direction` (empty when the row
/// declares none) and one column per further metric name of the sweep, sorted (empty
/// where a row lacks it or has no value). A reader that takes columns by position or by
/// name keeps working; the further metrics' directions are in `asdsweep results --format json`.
pub fn results_csv(lines: &[ResultLine]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let names = metric_names(lines);
    let header: Vec<&str> = SWEEP_KEY_COLUMNS
        .iter()
        .chain(SWEEP_ASD_METRICS.iter())
        .copied()
        .chain(PROVENANCE_COLUMNS.iter().map(|(c, _)| *c))
        .chain(TRACE_COLUMNS)
        .chain([SWEEP_DIRECTION_COLUMN])
        .chain(names.iter().map(String::as_str))
        .collect();
    let csv_err = |e: csv::Error| Error::Report(format!("rendering {RESULTS_CSV}: {e}"));
    w.write_record(&header).map_err(csv_err)?;
    for l in lines {
        let mut record = vec![
            l.family.clone(),
            l.config.clone(),
            l.device.clone(),
            l.seed.to_string(),
            l.proxy_metric.clone(),
            csv_number(l.proxy_value),
        ];
        record.extend(l.asd.iter().map(|v| csv_number(*v)));
        record.extend(l.provenance.iter().cloned());
        record.push(l.job.clone());
        record.push(l.worker.clone());
        record.push(
            l.proxy_direction
                .map(|d| d.as_str().to_owned())
                .unwrap_or_default(),
        );
        record.extend(names.iter().map(|name| {
            csv_number(
                l.metrics
                    .iter()
                    .find(|m| &m.name == name)
                    .and_then(|m| m.value),
            )
        }));
        w.write_record(&record).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Report(format!("rendering {RESULTS_CSV}: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Report(format!("rendering {RESULTS_CSV}: {e}")))
}

/// The correlation analysis of a `results.csv`, exactly as `asdsweep analyze` computes it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Analysis {
    /// Test settings (the defaults of `asdsweep analyze`).
    pub settings: Option<TestSettings>,
    /// Rows of `results.csv` used (with a proxy value).
    pub rows_used: usize,
    /// Rows left out for lack of a proxy value.
    pub rows_without_proxy: usize,
    /// Per-config points (machine types, then seeds, averaged).
    pub points: Vec<ConfigPoint>,
    /// One test per family × ASD metric.
    pub tests: Vec<CorrelationRow>,
    /// The alignment verdicts.
    pub alignment: Vec<FamilyAlignment>,
    /// Each family's proxy direction.
    pub directions: BTreeMap<String, Direction>,
}

/// Analyses the text of a `results.csv`. A file without any row that has a proxy value
/// gives an empty analysis (nothing to correlate yet), not an error.
pub fn analyse(results_csv: &str) -> Result<Analysis> {
    let table: LongTable = match parse_long_csv(results_csv.as_bytes(), RESULTS_CSV) {
        Ok(t) => t,
        Err(AnalysisError::Empty(_)) => {
            let rows_without_proxy = csv::Reader::from_reader(results_csv.as_bytes())
                .records()
                .count();
            return Ok(Analysis {
                rows_without_proxy,
                ..Analysis::default()
            });
        }
        Err(e) => return Err(Error::Report(e.to_string())),
    };
    let settings = TestSettings::default();
    let points = aggregate_devices(&table, |f| table.direction(f));
    let tests = correlate(&points, &table.asd_metrics, &settings)
        .map_err(|e| Error::Report(e.to_string()))?;
    let alignment = alignment_report(&points, &tests);
    let directions = points
        .iter()
        .map(|p| (p.family.clone(), table.direction(&p.family)))
        .collect();
    Ok(Analysis {
        settings: Some(settings),
        rows_used: table.rows.len(),
        rows_without_proxy: table.skipped_without_proxy,
        points,
        tests,
        alignment,
        directions,
    })
}

/// One line of `correlations.csv`: a test with its interval bounds and alignment verdicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorrelationLine {
    /// Proxy family.
    pub family: String,
    /// ASD metric.
    pub asd_metric: String,
    /// Configs with both values.
    pub n: usize,
    /// Pearson r.
    pub pearson_r: f64,
    /// Its t-test p.
    pub pearson_p: f64,
    /// Lower bound of r's interval.
    pub pearson_ci_low: f64,
    /// Upper bound of r's interval.
    pub pearson_ci_high: f64,
    /// Spearman ρ.
    pub spearman_rho: f64,
    /// Its permutation p.
    pub spearman_p: f64,
    /// How `spearman_p` was computed.
    pub spearman_p_method: String,
    /// Lower bound of ρ's interval.
    pub spearman_ci_low: f64,
    /// Upper bound of ρ's interval.
    pub spearman_ci_high: f64,
    /// Kendall τ-b.
    pub kendall_tau: f64,
    /// Its p.
    pub kendall_p: f64,
    /// BH q of `spearman_p`.
    pub q_bh: f64,
    /// Confidence level of the intervals.
    pub ci_level: f64,
    /// Stage 1 verdict of the family.
    pub difficulty: String,
    /// Stage 2 verdict.
    pub direction: String,
    /// Stage 3 verdict.
    pub significance: String,
    /// Why statistics are NaN, when they are.
    pub note: String,
}

/// Flattens the tests and their verdicts into lines.
pub fn correlation_lines(analysis: &Analysis) -> Vec<CorrelationLine> {
    analysis
        .tests
        .iter()
        .map(|t| {
            let family = analysis.alignment.iter().find(|a| a.family == t.family);
            let metric =
                family.and_then(|a| a.metrics.iter().find(|m| m.asd_metric == t.asd_metric));
            CorrelationLine {
                family: t.family.clone(),
                asd_metric: t.asd_metric.clone(),
                n: t.n,
                pearson_r: t.pearson_r,
                pearson_p: t.pearson_p,
                pearson_ci_low: t.pearson_ci.low,
                pearson_ci_high: t.pearson_ci.high,
                spearman_rho: t.spearman_rho,
                spearman_p: t.spearman_p,
                spearman_p_method: serde_json::to_value(t.spearman_p_method)
                    .ok()
                    .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
                    .unwrap_or_default(),
                spearman_ci_low: t.spearman_ci.low,
                spearman_ci_high: t.spearman_ci.high,
                kendall_tau: t.kendall_tau,
                kendall_p: t.kendall_p,
                q_bh: t.q,
                ci_level: t.spearman_ci.level,
                difficulty: family
                    .map(|a| a.difficulty.verdict.clone())
                    .unwrap_or_default(),
                direction: metric
                    .map(|m| m.direction.verdict.clone())
                    .unwrap_or_default(),
                significance: metric
                    .map(|m| m.significance.verdict.clone())
                    .unwrap_or_default(),
                note: t.note.clone().unwrap_or_default(),
            }
        })
        .collect()
}

impl From<&CorrelationLine> for pb::CorrelationLine {
    fn from(l: &CorrelationLine) -> Self {
        pb::CorrelationLine {
            family: l.family.clone(),
            asd_metric: l.asd_metric.clone(),
            n: l.n as u64,
            pearson_r: l.pearson_r,
            pearson_p: l.pearson_p,
            pearson_ci_low: l.pearson_ci_low,
            pearson_ci_high: l.pearson_ci_high,
            spearman_rho: l.spearman_rho,
            spearman_p: l.spearman_p,
            spearman_p_method: l.spearman_p_method.clone(),
            spearman_ci_low: l.spearman_ci_low,
            spearman_ci_high: l.spearman_ci_high,
            kendall_tau: l.kendall_tau,
            kendall_p: l.kendall_p,
            q_bh: l.q_bh,
            difficulty: l.difficulty.clone(),
            direction: l.direction.clone(),
            significance: l.significance.clone(),
            note: l.note.clone(),
            ci_level: l.ci_level,
        }
    }
}

impl From<&pb::CorrelationLine> for CorrelationLine {
    fn from(l: &pb::CorrelationLine) -> Self {
        CorrelationLine {
            family: l.family.clone(),
            asd_metric: l.asd_metric.clone(),
            n: l.n as usize,
            pearson_r: l.pearson_r,
            pearson_p: l.pearson_p,
            pearson_ci_low: l.pearson_ci_low,
            pearson_ci_high: l.pearson_ci_high,
            spearman_rho: l.spearman_rho,
            spearman_p: l.spearman_p,
            spearman_p_method: l.spearman_p_method.clone(),
            spearman_ci_low: l.spearman_ci_low,
            spearman_ci_high: l.spearman_ci_high,
            kendall_tau: l.kendall_tau,
            kendall_p: l.kendall_p,
            q_bh: l.q_bh,
            ci_level: l.ci_level,
            difficulty: l.difficulty.clone(),
            direction: l.direction.clone(),
            significance: l.significance.clone(),
            note: l.note.clone(),
        }
    }
}

/// Column names of `correlations.csv` (and of `asdsweep correlations --format csv`).
pub const CORRELATION_COLUMNS: [&str; 20] = [
    "family",
    "asd_metric",
    "n",
    "pearson_r",
    "pearson_p",
    "pearson_ci_low",
    "pearson_ci_high",
    "spearman_rho",
    "spearman_p",
    "spearman_p_method",
    "spearman_ci_low",
    "spearman_ci_high",
    "kendall_tau",
    "kendall_p",
    "q_bh",
    "ci_level",
    "difficulty",
    "direction",
    "significance",
    "note",
];

/// The cells of one correlation line in [`CORRELATION_COLUMNS`] order (NaN printed empty).
pub fn correlation_cells(l: &pb::CorrelationLine) -> Vec<String> {
    let num = |v: f64| csv_number(Some(v));
    vec![
        l.family.clone(),
        l.asd_metric.clone(),
        l.n.to_string(),
        num(l.pearson_r),
        num(l.pearson_p),
        num(l.pearson_ci_low),
        num(l.pearson_ci_high),
        num(l.spearman_rho),
        num(l.spearman_p),
        l.spearman_p_method.clone(),
        num(l.spearman_ci_low),
        num(l.spearman_ci_high),
        num(l.kendall_tau),
        num(l.kendall_p),
        num(l.q_bh),
        num(l.ci_level),
        l.difficulty.clone(),
        l.direction.clone(),
        l.significance.clone(),
        l.note.clone(),
    ]
}

/// Renders correlation lines as CSV with a `provisional` column.
pub fn correlations_csv(lines: &[pb::CorrelationLine], provisional: bool) -> Result<String> {
    let csv_err = |e: csv::Error| Error::Report(format!("rendering {CORRELATIONS_CSV}: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CORRELATION_COLUMNS.iter().copied().chain(["provisional"]))
        .map_err(csv_err)?;
    for l in lines {
        let mut cells = correlation_cells(l);
        cells.push(provisional.to_string());
        w.write_record(&cells).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Report(format!("rendering {CORRELATIONS_CSV}: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|e| Error::Report(format!("rendering {CORRELATIONS_CSV}: {e}")))
}

/// A dead job as the report lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadJob {
    /// Job key.
    pub job: String,
    /// Attempts made.
    pub attempts: i32,
    /// Its last error.
    pub error: String,
}

/// What the report says about the sweep itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepFacts {
    /// Sweep id.
    pub id: i64,
    /// Sweep name.
    pub name: String,
    /// Spec hash.
    pub spec_hash: String,
    /// `active` or `cancelled`.
    pub state: String,
    /// Launch time, ms since the epoch.
    pub created_at_ms: i64,
    /// When the report was made, ms since the epoch.
    pub generated_at_ms: i64,
    /// Jobs per state (every state listed).
    pub jobs_by_state: BTreeMap<String, u64>,
    /// Jobs not yet final (blocked, pending, leased).
    pub open_jobs: u64,
    /// Seeds of the sweep's jobs.
    pub seeds: Vec<i64>,
    /// Distinct dataset fingerprints of the results.
    pub dataset_fingerprints: Vec<String>,
    /// Distinct code versions of the results.
    pub code_versions: Vec<String>,
    /// Distinct training backends of the results.
    pub backends: Vec<String>,
    /// Dead jobs with their errors.
    pub dead: Vec<DeadJob>,
}

impl SweepFacts {
    /// True while jobs can still finish: the correlations will change.
    pub fn provisional(&self) -> bool {
        self.open_jobs > 0
    }
}

/// Collects the facts from a sweep and its jobs.
pub fn sweep_facts(
    sweep: &sweep::Model,
    jobs: &[(job::Model, Option<JobResult>)],
    lines: &[ResultLine],
) -> SweepFacts {
    let mut jobs_by_state: BTreeMap<String, u64> = JobState::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    for (j, _) in jobs {
        *jobs_by_state
            .entry(j.state.as_str().to_owned())
            .or_default() += 1;
    }
    let open_jobs = jobs.iter().filter(|(j, _)| !j.state.is_final()).count() as u64;
    let distinct = |column: &str| -> Vec<String> {
        let k = PROVENANCE_COLUMNS
            .iter()
            .position(|(c, _)| *c == column)
            .expect("a column of PROVENANCE_COLUMNS");
        lines
            .iter()
            .map(|l| l.provenance[k].clone())
            .filter(|v| !v.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    SweepFacts {
        id: sweep.id.0,
        name: sweep.name.clone(),
        spec_hash: sweep.spec_hash.clone(),
        // The store keeps a sweep "active" until cancelled; a report says when nothing is left to run.
        state: if sweep.state == SweepState::Active && open_jobs == 0 {
            "finished".to_owned()
        } else {
            sweep.state.as_str().to_owned()
        },
        created_at_ms: sweep.created_at_ms,
        generated_at_ms: now_ms(),
        jobs_by_state,
        open_jobs,
        seeds: jobs
            .iter()
            .map(|(j, _)| j.seed)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        dataset_fingerprints: distinct("dataset_fingerprint"),
        code_versions: distinct("code_version"),
        backends: distinct("backend"),
        dead: jobs
            .iter()
            .filter(|(j, _)| j.state == JobState::Dead)
            .map(|(j, _)| DeadJob {
                job: j.job_key.clone(),
                attempts: j.attempts,
                error: j.last_error.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// Everything a report holds, computed without touching the disk.
#[derive(Debug, Clone)]
pub struct Report {
    /// The sweep.
    pub facts: SweepFacts,
    /// Rows of `results.csv`.
    pub lines: Vec<ResultLine>,
    /// The text of `results.csv`.
    pub results_csv: String,
    /// The analysis of that text.
    pub analysis: Analysis,
    /// The tests with their verdicts.
    pub correlations: Vec<pb::CorrelationLine>,
}

/// Builds a report from a sweep and its jobs with their results (the pure part of [`write_report`]).
pub fn build_report(
    sweep: &sweep::Model,
    jobs: &[(job::Model, Option<JobResult>)],
) -> Result<Report> {
    build_report_with_proxy(sweep, jobs, None)
}

/// The lines with each row's proxy replaced by its metric `name` and that metric's
/// declared direction: the row's proxy metric if it is `name`, else its further metric
/// `name`. A row without it, or whose value is missing, keeps no proxy value (the
/// analysis leaves it out and counts it). Refused: a name that no row reports at all
/// (when there are rows), and a metric that no row with a value declares a direction
/// for (it is no proxy metric).
pub fn with_proxy(lines: &[ResultLine], name: &str) -> Result<Vec<ResultLine>> {
    let mut reported = false;
    let mut declared = false;
    let out: Vec<ResultLine> = lines
        .iter()
        .map(|l| {
            let (value, direction) = if l.proxy_metric == name {
                reported = true;
                (l.proxy_value, l.proxy_direction)
            } else if let Some(m) = l.metrics.iter().find(|m| m.name == name) {
                reported = true;
                (m.value, m.direction)
            } else {
                (None, None)
            };
            declared |= value.is_some() && direction.is_some();
            ResultLine {
                proxy_metric: name.to_owned(),
                proxy_value: value,
                proxy_direction: direction,
                ..l.clone()
            }
        })
        .collect();
    if !reported && !lines.is_empty() {
        let mut known: BTreeSet<&str> = lines.iter().map(|l| l.proxy_metric.as_str()).collect();
        known.extend(
            lines
                .iter()
                .flat_map(|l| l.metrics.iter().map(|m| m.name.as_str())),
        );
        return Err(Error::InvalidArgument(format!(
            "no result reports a metric \"{name}\" (reported: {})",
            known.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    if reported && !declared && out.iter().any(|l| l.proxy_value.is_some()) {
        return Err(Error::InvalidArgument(format!(
            "metric \"{name}\" has no declared direction: it is no proxy metric to correlate"
        )));
    }
    Ok(out)
}

/// [`build_report`] with each row's proxy replaced by its metric `proxy` ([`with_proxy`]);
/// `None`: each family's main proxy. The report's `lines` and `results_csv` are then the
/// replaced ones, the text its analysis read.
pub fn build_report_with_proxy(
    sweep: &sweep::Model,
    jobs: &[(job::Model, Option<JobResult>)],
    proxy: Option<&str>,
) -> Result<Report> {
    let mut lines = result_lines(jobs);
    if let Some(name) = proxy {
        lines = with_proxy(&lines, name)?;
    }
    let facts = sweep_facts(sweep, jobs, &lines);
    let results_csv = results_csv(&lines)?;
    let analysis = analyse(&results_csv)?;
    let correlations = correlation_lines(&analysis)
        .iter()
        .map(pb::CorrelationLine::from)
        .collect();
    Ok(Report {
        facts,
        lines,
        results_csv,
        analysis,
        correlations,
    })
}

/// The JSON document of `correlations.json`: the sweep, whether the numbers are
/// provisional, and `tests` / `alignment` exactly as `asdsweep analyze --json` prints them.
#[derive(Debug, Serialize)]
struct CorrelationsDocument<'a> {
    sweep: &'a SweepFacts,
    provisional: bool,
    rows_used: usize,
    rows_without_proxy: usize,
    settings: Option<TestSettings>,
    directions: &'a BTreeMap<String, Direction>,
    tests: &'a [CorrelationRow],
    alignment: &'a [FamilyAlignment],
    points: &'a [ConfigPoint],
}

impl Report {
    /// The text of `correlations.json`.
    pub fn correlations_json(&self) -> Result<String> {
        let doc = CorrelationsDocument {
            sweep: &self.facts,
            provisional: self.facts.provisional(),
            rows_used: self.analysis.rows_used,
            rows_without_proxy: self.analysis.rows_without_proxy,
            settings: self.analysis.settings,
            directions: &self.analysis.directions,
            tests: &self.analysis.tests,
            alignment: &self.analysis.alignment,
            points: &self.analysis.points,
        };
        serde_json::to_string_pretty(&doc)
            .map(|s| s + "\n")
            .map_err(|e| Error::Report(format!("rendering {CORRELATIONS_JSON}: {e}")))
    }

    /// The answer of the `Correlations` call.
    pub fn correlations_response(&self) -> pb::CorrelationsResponse {
        pb::CorrelationsResponse {
            sweep_id: self.facts.id,
            name: self.facts.name.clone(),
            provisional: self.facts.provisional(),
            open_jobs: self.facts.open_jobs,
            rows_used: self.analysis.rows_used as u64,
            rows_without_proxy: self.analysis.rows_without_proxy as u64,
            lines: self.correlations.clone(),
        }
    }
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportSummary {
    /// The directory written.
    pub out_dir: PathBuf,
    /// `results.csv`.
    pub results_csv: PathBuf,
    /// `correlations.csv`.
    pub correlations_csv: PathBuf,
    /// `correlations.json`.
    pub correlations_json: PathBuf,
    /// `report.html`.
    pub report_html: PathBuf,
    /// Rows in `results.csv`.
    pub result_rows: usize,
    /// Tests in `correlations.csv`.
    pub tests: usize,
    /// True while jobs are still open.
    pub provisional: bool,
    /// Dead jobs with their errors.
    pub dead: Vec<DeadJob>,
}

impl std::fmt::Display for ReportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "report{}: {} ({} result rows, {} tests)",
            if self.provisional {
                " (provisional: jobs still open)"
            } else {
                ""
            },
            self.report_html.display(),
            self.result_rows,
            self.tests
        )?;
        for p in [
            &self.results_csv,
            &self.correlations_csv,
            &self.correlations_json,
        ] {
            writeln!(f, "  {}", p.display())?;
        }
        for d in &self.dead {
            writeln!(
                f,
                "  dead: {} after {} attempts: {}",
                d.job, d.attempts, d.error
            )?;
        }
        Ok(())
    }
}

/// Writes a file through a temporary name in the same directory, so a reader never sees half of it.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes the four output files of a built report into `out_dir` (created if missing).
pub fn write_report_files(report: &Report, out_dir: &Path) -> Result<ReportSummary> {
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Io {
        path: out_dir.display().to_string(),
        source,
    })?;
    let summary = ReportSummary {
        out_dir: out_dir.to_path_buf(),
        results_csv: out_dir.join(RESULTS_CSV),
        correlations_csv: out_dir.join(CORRELATIONS_CSV),
        correlations_json: out_dir.join(CORRELATIONS_JSON),
        report_html: out_dir.join(REPORT_HTML),
        result_rows: report.lines.len(),
        tests: report.correlations.len(),
        provisional: report.facts.provisional(),
        dead: report.facts.dead.clone(),
    };
    write_atomically(&summary.results_csv, &report.results_csv)?;
    write_atomically(
        &summary.correlations_csv,
        &correlations_csv(&report.correlations, report.facts.provisional())?,
    )?;
    write_atomically(&summary.correlations_json, &report.correlations_json()?)?;
    write_atomically(&summary.report_html, &html::render(report)?)?;
    Ok(summary)
}

/// The directory of a sweep's outputs under `base`: `base/<sweep name>`. Names are checked
/// at launch (letters, digits, `-`, `_`, `.`); one that is only dots is refused here.
pub fn sweep_dir(base: &Path, sweep: &sweep::Model) -> Result<PathBuf> {
    if sweep.name.is_empty()
        || sweep.name.chars().all(|c| c == '.')
        || sweep.name.contains(['/', '\\'])
    {
        return Err(Error::Report(format!(
            "sweep name \"{}\" cannot name an output directory",
            sweep.name
        )));
    }
    Ok(base.join(&sweep.name))
}

/// Builds a sweep's report from the store and writes `results.csv`, `correlations.csv`,
/// `correlations.json` and `report.html` into `out_dir`.
pub async fn write_report(
    store: &Store,
    sweep: &sweep::Model,
    out_dir: &Path,
) -> Result<ReportSummary> {
    let jobs = store.results(sweep.id).await?;
    write_report_files(&build_report(sweep, &jobs)?, out_dir)
}

/// A sweep's correlations so far, for `asdsweep correlations`: of each family's main proxy,
/// or with `proxy`, of that metric ([`with_proxy`]).
pub async fn correlations(
    store: &Store,
    sweep: &sweep::Model,
    proxy: Option<&str>,
) -> Result<pb::CorrelationsResponse> {
    let jobs = store.results(sweep.id).await?;
    Ok(build_report_with_proxy(sweep, &jobs, proxy)?.correlations_response())
}

#[derive(Debug, FromQueryResult)]
struct FamilyStateCount {
    family: String,
    state: JobState,
    n: i64,
}

/// Jobs by state per family of a sweep, families sorted by name (every state listed).
pub async fn family_progress(store: &Store, sweep_id: SweepId) -> Result<Vec<pb::FamilyProgress>> {
    let db = store.connection();
    let rows = FamilyStateCount::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT family, state, COUNT(*) AS n FROM jobs WHERE sweep_id = $1 GROUP BY family, state",
        vec![sweep_id.into()],
    ))
    .all(db)
    .await?;
    let mut by_family: BTreeMap<String, BTreeMap<JobState, u64>> = BTreeMap::new();
    for r in rows {
        *by_family
            .entry(r.family)
            .or_default()
            .entry(r.state)
            .or_default() += r.n.max(0) as u64;
    }
    Ok(by_family
        .into_iter()
        .map(|(family, counts)| pb::FamilyProgress {
            total: counts.values().sum(),
            counts: JobState::ALL
                .iter()
                .map(|s| pb::StateCount {
                    state: s.as_str().to_owned(),
                    count: counts.get(s).copied().unwrap_or(0),
                })
                .collect(),
            family,
        })
        .collect())
}

/// Formats milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::new();
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{FencingToken, JobId};

    pub(crate) fn job(
        id: i64,
        stage: &str,
        family: &str,
        config: &str,
        device: &str,
        seed: i64,
        state: JobState,
    ) -> job::Model {
        job::Model {
            id: JobId(id),
            sweep_id: SweepId(1),
            job_key: format!("{family}/{config}/{device}/s{seed}/{stage}"),
            kind: "ae".into(),
            stage: stage.into(),
            family: family.into(),
            config: config.into(),
            device: device.into(),
            seed,
            params: serde_json::json!({}),
            state,
            priority: 0,
            attempts: 1,
            max_attempts: 3,
            lease_ttl_ms: 30_000,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            lease_token: FencingToken(1),
            lease_expires_at_ms: None,
            worker_id: Some("w-1".into()),
            not_before_ms: 0,
            last_error: None,
            dependents: 0,
            progress: None,
            checkpoint: None,
            backends: None,
            created_at_ms: 0,
            started_at_ms: None,
            finished_at_ms: None,
        }
    }

    /// A result as a worker reports it: `ae_l1` declared lower-is-better, `macro_f1`
    /// higher-is-better, anything else undeclared; no further metrics.
    pub(crate) fn result(
        job_id: i64,
        proxy_metric: &str,
        proxy: Option<f64>,
        auc: f64,
    ) -> JobResult {
        let direction = match proxy_metric {
            "ae_l1" => Some(Direction::LowerIsBetter),
            "macro_f1" => Some(Direction::HigherIsBetter),
            _ => None,
        };
        let result = crate::entity::result::Model {
            id: job_id,
            job_id,
            sweep_id: 1,
            proxy_metric: proxy_metric.into(),
            proxy_value: proxy,
            proxy_direction: direction.map(|d| d.as_str().to_owned()),
            lp_in_auc: Some(auc),
            lp_in_pauc: Some(auc - 0.1),
            lp_out_auc: Some(auc - 0.05),
            lp_out_pauc: None,
            md_auc: Some(1.0 - auc / 2.0),
            md_pauc: Some(0.5),
            extra: serde_json::json!({}),
            provenance: serde_json::json!({
                "spec_hash": "abc", "dataset_fingerprint": "fp1", "backend": "flex", "device": "cpu",
                "code_version": "0.1.0", "wall_s": 1.5, "seed": 1
            }),
            artifacts: serde_json::json!([]),
            worker_id: "w-1".into(),
            lease_token: 1,
            created_at_ms: 0,
        };
        JobResult {
            result,
            metrics: Vec::new(),
        }
    }

    pub(crate) fn sweep() -> sweep::Model {
        sweep::Model {
            id: SweepId(1),
            sweep_key: "k".into(),
            name: "demo".into(),
            spec_hash: "abc".into(),
            spec_toml: String::new(),
            state: SweepState::Active,
            job_count: 0,
            created_at_ms: 1_764_064_800_000,
        }
    }

    /// Two families × 4 configs × 2 machine types; AE's loss falls as its AUC rises.
    pub(crate) fn synthetic_jobs() -> Vec<(job::Model, Option<JobResult>)> {
        let mut jobs = Vec::new();
        let mut id = 0;
        for (family, metric) in [("ae", "ae_l1"), ("ce", "macro_f1")] {
            for (c, config) in ["c1", "c2", "c3", "c4"].iter().enumerate() {
                id += 1;
                jobs.push((
                    job(id, "train", family, config, "*", 1, JobState::Succeeded),
                    Some(result(id, "train_loss", Some(9.0), 0.0)),
                ));
                for (d, device) in ["fan", "pump"].iter().enumerate() {
                    id += 1;
                    let quality = c as f64 + 0.1 * d as f64;
                    let proxy = if family == "ae" {
                        1.0 / (1.0 + quality)
                    } else {
                        0.5 + quality / 10.0
                    };
                    let auc = 0.6 + 0.05 * quality + 0.01 * (c % 2) as f64;
                    jobs.push((
                        job(id, "eval", family, config, device, 1, JobState::Succeeded),
                        Some(result(id, metric, Some(proxy), auc)),
                    ));
                }
            }
        }
        jobs
    }

    #[test]
    fn a_sweep_with_nothing_left_to_run_is_reported_finished() {
        let mut jobs = synthetic_jobs();
        for (j, _) in jobs.iter_mut() {
            j.state = JobState::Succeeded;
        }
        assert_eq!(sweep_facts(&sweep(), &jobs, &[]).state, "finished");
        jobs[0].0.state = JobState::Pending;
        assert_eq!(sweep_facts(&sweep(), &jobs, &[]).state, "active");
    }

    #[test]
    fn results_csv_has_one_row_per_eval_job_with_provenance_and_no_training_rows() {
        let lines = result_lines(&synthetic_jobs());
        assert_eq!(lines.len(), 16);
        let text = results_csv(&lines).unwrap();
        let mut rows = text.lines();
        let header = rows.next().unwrap();
        assert!(header.starts_with("family,config,device,seed,proxy_metric,proxy_value,lp_in_auc,lp_in_pauc,lp_out_auc,lp_out_pauc,md_auc,md_pauc,"));
        assert!(header.ends_with("spec_hash,dataset_fingerprint,backend,compute_device,code_version,wall_s,job,worker,proxy_direction"), "{header}");
        let first: Vec<&str> = rows.next().unwrap().split(',').collect();
        assert_eq!(&first[..5], ["ae", "c1", "fan", "1", "ae_l1"]);
        assert_eq!(first[9], "", "a missing metric is an empty cell");
        assert_eq!(
            &first[12..18],
            ["abc", "fp1", "flex", "cpu", "0.1.0", "1.5"]
        );
    }

    #[test]
    fn the_analysis_negates_the_ae_loss_and_finds_the_built_in_correlations() {
        let report = build_report(&sweep(), &synthetic_jobs()).unwrap();
        assert_eq!(report.correlations.len(), 2 * 6);
        assert_eq!(report.analysis.directions["ae"], Direction::LowerIsBetter);
        let ae_lp = report
            .correlations
            .iter()
            .find(|l| l.family == "ae" && l.asd_metric == "lp_in_auc")
            .unwrap();
        assert_eq!(ae_lp.n, 4);
        assert!(
            ae_lp.spearman_rho > 0.7,
            "lower loss goes with higher AUC: {ae_lp:?}"
        );
        let ae_md = report
            .correlations
            .iter()
            .find(|l| l.family == "ae" && l.asd_metric == "md_auc")
            .unwrap();
        assert!(ae_md.spearman_rho < -0.7, "{ae_md:?}");
        assert!(
            !ae_lp.direction.is_empty()
                && !ae_lp.difficulty.is_empty()
                && !ae_lp.significance.is_empty()
        );
        let undefined = report
            .correlations
            .iter()
            .find(|l| l.asd_metric == "lp_out_pauc")
            .unwrap();
        assert_eq!(undefined.n, 0);
        assert!(undefined.spearman_rho.is_nan() && !undefined.note.is_empty());
    }

    #[test]
    fn open_jobs_make_the_report_provisional_and_dead_jobs_are_listed() {
        let mut jobs = synthetic_jobs();
        assert!(!build_report(&sweep(), &jobs).unwrap().facts.provisional());
        jobs[1].0.state = JobState::Leased;
        jobs[1].1 = None;
        jobs[2].0.state = JobState::Dead;
        jobs[2].0.last_error = Some("attempt 3/3: <boom>".into());
        jobs[2].1 = None;
        let report = build_report(&sweep(), &jobs).unwrap();
        assert!(report.facts.provisional());
        assert_eq!(report.facts.open_jobs, 1);
        assert_eq!(
            report.facts.dead,
            vec![DeadJob {
                job: "ae/c1/pump/s1/eval".into(),
                attempts: 1,
                error: "attempt 3/3: <boom>".into()
            }]
        );
        assert_eq!(report.lines.len(), 14);
        let csv = correlations_csv(&report.correlations, true).unwrap();
        assert!(csv.lines().nth(1).unwrap().ends_with(",true"));
    }

    #[test]
    fn a_sweep_without_results_gives_an_empty_analysis_not_an_error() {
        let jobs = vec![(
            job(1, "eval", "ae", "c1", "fan", 1, JobState::Pending),
            None,
        )];
        let report = build_report(&sweep(), &jobs).unwrap();
        assert!(report.correlations.is_empty() && report.facts.provisional());
        assert_eq!(report.results_csv.lines().count(), 1);
    }

    #[test]
    fn the_four_files_are_written_and_a_dot_name_gets_no_directory() {
        let dir = tempfile::tempdir().unwrap();
        let report = build_report(&sweep(), &synthetic_jobs()).unwrap();
        let out = sweep_dir(dir.path(), &sweep()).unwrap();
        assert_eq!(out, dir.path().join("demo"));
        let summary = write_report_files(&report, &out).unwrap();
        for p in [
            &summary.results_csv,
            &summary.correlations_csv,
            &summary.correlations_json,
            &summary.report_html,
        ] {
            assert!(std::fs::metadata(p).unwrap().len() > 0, "{}", p.display());
        }
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            4,
            "no temporary file is left"
        );
        assert_eq!(
            std::fs::read_to_string(&summary.results_csv).unwrap(),
            report.results_csv
        );
        let mut dots = sweep();
        dots.name = "..".into();
        assert!(
            sweep_dir(dir.path(), &dots)
                .unwrap_err()
                .to_string()
                .contains("\"..\"")
        );
    }

    /// [`synthetic_jobs`] where each CE evaluation also reports `xent`, a cross-entropy
    /// declared lower-is-better that falls as the config's AUC rises, and `clips`, a
    /// count with no direction; AE's rows report neither.
    fn jobs_with_further_metrics() -> Vec<(job::Model, Option<JobResult>)> {
        let mut jobs = synthetic_jobs();
        for (j, r) in jobs.iter_mut() {
            let Some(r) = r.as_mut().filter(|_| j.family == "ce" && j.stage == "eval") else {
                continue;
            };
            let quality = (r.result.proxy_value.unwrap() - 0.5) * 10.0;
            r.metrics = vec![
                NamedMetric {
                    name: "clips".into(),
                    value: Some(40.0),
                    direction: None,
                },
                NamedMetric {
                    name: "xent".into(),
                    value: Some(2.0 - quality / 5.0),
                    direction: Some(Direction::LowerIsBetter),
                },
            ];
        }
        jobs
    }

    #[test]
    fn results_csv_appends_the_proxy_direction_and_one_column_per_further_metric() {
        let text = results_csv(&result_lines(&jobs_with_further_metrics())).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            header[..20].join(","),
            "family,config,device,seed,proxy_metric,proxy_value,lp_in_auc,lp_in_pauc,lp_out_auc,lp_out_pauc,md_auc,md_pauc,spec_hash,dataset_fingerprint,backend,compute_device,code_version,wall_s,job,worker"
        );
        assert_eq!(header[20..], ["proxy_direction", "clips", "xent"]);
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        let ae = rows.iter().find(|r| &r[0] == "ae").unwrap();
        assert_eq!((&ae[20], &ae[21], &ae[22]), ("lower_is_better", "", ""));
        let ce = rows.iter().find(|r| &r[0] == "ce").unwrap();
        assert_eq!((&ce[20], &ce[21], &ce[22]), ("higher_is_better", "40", "2"));
        // The analysis reads the declared directions back.
        let analysis = analyse(&text).unwrap();
        assert_eq!(analysis.directions["ae"], Direction::LowerIsBetter);
        assert_eq!(analysis.directions["ce"], Direction::HigherIsBetter);
    }

    #[test]
    fn correlations_of_a_named_proxy_use_that_metric_and_its_declared_direction() {
        let jobs = jobs_with_further_metrics();
        let main = build_report(&sweep(), &jobs).unwrap();
        let xent = build_report_with_proxy(&sweep(), &jobs, Some("xent")).unwrap();
        assert_eq!(main.correlations.len(), 2 * 6);
        assert_eq!(
            xent.correlations.len(),
            6,
            "only CE reports xent: one family"
        );
        assert!(xent.correlations.iter().all(|l| l.family == "ce"));
        let response = xent.correlations_response();
        assert_eq!((response.rows_used, response.rows_without_proxy), (8, 8));
        // CE's name says higher-is-better; xent declares lower, and is negated.
        assert_eq!(xent.analysis.directions["ce"], Direction::LowerIsBetter);
        let rho = |r: &Report, family: &str| {
            r.correlations
                .iter()
                .find(|l| l.family == family && l.asd_metric == "lp_in_auc")
                .unwrap()
                .spearman_rho
        };
        assert!(rho(&xent, "ce") > 0.7, "lower xent goes with higher AUC");
        assert!((rho(&xent, "ce") - rho(&main, "ce")).abs() < 1e-12);
        assert!(
            xent.results_csv.contains(",xent,"),
            "the analysed text names it"
        );

        // A main proxy may be named too: only the families whose proxy it is.
        let f1 = build_report_with_proxy(&sweep(), &jobs, Some("macro_f1")).unwrap();
        assert_eq!(f1.analysis.rows_used, 8);
        assert!(f1.correlations.iter().all(|l| l.family == "ce"));

        let unknown = build_report_with_proxy(&sweep(), &jobs, Some("xnet"))
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("\"xnet\"") && unknown.contains("ae_l1, clips, macro_f1, xent"),
            "{unknown}"
        );
        let count = build_report_with_proxy(&sweep(), &jobs, Some("clips"))
            .unwrap_err()
            .to_string();
        assert!(count.contains("no declared direction"), "{count}");
    }

    #[test]
    fn further_metric_names_must_not_take_a_column_name() {
        assert_eq!(metric_name_problem("si_sdr_0db"), None);
        for taken in [
            "md_auc",
            "worker",
            "proxy_direction",
            "state",
            "metrics",
            "job",
        ] {
            assert!(metric_name_problem(taken).is_some(), "{taken}");
        }
        assert!(metric_name_problem("").is_some());
        assert!(metric_name_problem("a b").is_some());
        assert!(metric_name_problem(&"x".repeat(MAX_METRIC_NAME_BYTES + 1)).is_some());
    }

    #[test]
    fn utc_times_are_civil_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(1_764_064_800_000), "2025-11-25 10:00:00 UTC");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
