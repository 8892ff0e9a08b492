//! `asdsweep evaluate-scores`, `asdsweep probe` and `asdsweep analyze`: parse, call the
//! `asdsweep_shared` metrics/probe/analysis functions, print a table (default) or JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use asdsweep_shared::analysis::alignment::{FamilyAlignment, alignment_report};
use asdsweep_shared::analysis::authors::{AuthorsOptions, AuthorsRow, analyze_authors_summary};
use asdsweep_shared::analysis::{
    CorrelationRow, Direction, TestSettings, aggregate_devices, correlate, read_long_csv,
};
use asdsweep_shared::metrics::sections::{SectionEvaluation, evaluate_sections, read_scores_csv};
use asdsweep_shared::probe::linear::LinearProbeConfig;
use asdsweep_shared::probe::mahalanobis::CovarianceEstimator;
use asdsweep_shared::probe::report::{
    ClipEmbedding, ProbeOptions, ProbeReport, read_probe_manifest, run_probes,
};
use asdsweep_shared::probe::split::HalfSplitRule;
use ndarray::{Array1, Array2, Ix1, Ix2};
use serde::Serialize;

/// Arguments of `asdsweep evaluate-scores`.
#[derive(Debug, clap::Args)]
pub struct EvaluateScoresArgs {
    /// CSV with header `section,label,score` (label 1 = anomaly, 0 = normal; higher score = more anomalous).
    pub csv: PathBuf,
    /// Maximum false-positive rate of the partial AUC (McClish-standardised `pauc` and raw `pauc_raw`).
    #[arg(long, default_value_t = 0.1)]
    pub max_fpr: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which probes `asdsweep probe` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeChoice {
    /// Mahalanobis distance to training normals.
    Md,
    /// In-domain linear probe (per-section half split).
    LpIn,
    /// Out-of-domain linear probe (leave one section out).
    LpOut,
    /// All three.
    All,
}

/// Covariance estimator for the Mahalanobis probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CovarianceChoice {
    /// Sample covariance, ddof 1 (the study's choice).
    Sample,
    /// scikit-learn's Ledoit–Wolf shrinkage.
    LedoitWolf,
}

/// Arguments of `asdsweep probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Directory holding one `.npy` per clip, named like the clip (`<file stem>.npy`); each is a
    /// 1-D vector or a 2-D (rows, dim) matrix, float32 or float64.
    #[arg(long)]
    pub embeddings: PathBuf,
    /// CSV with header `file,section,split,label`: split `train` or `test`, label 1 = anomaly.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Probes to run (repeatable).
    #[arg(long = "probe", value_enum, default_values_t = [ProbeChoice::All])]
    pub probes: Vec<ProbeChoice>,
    /// Covariance estimator of the Mahalanobis probe.
    #[arg(long, value_enum, default_value_t = CovarianceChoice::Sample)]
    pub covariance: CovarianceChoice,
    /// Use the reference code's legacy half split (half of the first section's anomalies for every section and class).
    #[arg(long)]
    pub legacy_half_split: bool,
    /// Seed of the linear probe (initial weights and shuffles).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Linear probe epochs.
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Linear probe batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Linear probe Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Maximum false-positive rate of the Mahalanobis pAUC.
    #[arg(long, default_value_t = 0.1)]
    pub max_fpr: f64,
    /// Also write the Mahalanobis test scores as a `section,label,score` CSV (input of `evaluate-scores`).
    #[arg(long)]
    pub scores_out: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `asdsweep analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Long-format CSV `family,config,device,proxy,<asd metric columns…>` (one row per config and machine type),
    /// or a sweep's `results.csv` (seeds averaged after machine types; rows without a proxy value left out).
    #[arg(
        required_unless_present = "authors_summary",
        conflicts_with = "authors_summary"
    )]
    pub csv: Option<PathBuf>,
    /// Analyse the reference pipeline's `results_summary.csv` as its `analyze_proxy_correlations.py` does.
    #[arg(long)]
    pub authors_summary: Option<PathBuf>,
    /// With --authors-summary: ASD metric columns to test.
    #[arg(long, num_args = 1.., default_values_t = ["linear_half_auc".to_string(), "linear_loso_auc".to_string(), "mah_train_auc".to_string()])]
    pub asd_metrics: Vec<String>,
    /// With --authors-summary: keep only these machine types.
    #[arg(long, num_args = 1..)]
    pub devices: Option<Vec<String>>,
    /// With --authors-summary: also test all families pooled (`All`, outside the BH family).
    #[arg(long)]
    pub include_all_group: bool,
    /// Long format: families whose proxy is lower-is-better (negated); default: the direction results.csv's
    /// proxy_direction column declares, else (a table that declares none) AE and contrastive family names.
    #[arg(long, num_args = 1..)]
    pub lower_is_better: Vec<String>,
    /// Long format: families whose proxy is higher-is-better, overriding the default.
    #[arg(long, num_args = 1..)]
    pub higher_is_better: Vec<String>,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Monte Carlo permutations of the Spearman p for n > 10 (exact below).
    #[arg(long, default_value_t = 99_999)]
    pub resamples: u64,
    /// Seed of the Monte Carlo permutations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "NaN".into(), |x| format!("{x:.4}"))
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v:.4}")
    }
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Writes to stdout; a closed pipe (`asdsweep … | head`) ends quietly instead of panicking.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn sections_table(ev: &SectionEvaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>8} {:>8} {:>9} {:>8} {:>9}  note",
        "section", "AUC", "pAUC", "pAUC_raw", "normal", "anomaly"
    );
    for s in &ev.sections {
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>8} {:>9} {:>8} {:>9}  {}",
            s.section,
            fmt_opt(s.auc),
            fmt_opt(s.pauc),
            fmt_opt(s.pauc_raw),
            s.n_normal,
            s.n_anomaly,
            s.note.as_deref().unwrap_or("")
        );
    }
    for (name, m) in [("mean", &ev.mean), ("hmean", &ev.hmean)] {
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>8}",
            name,
            fmt_opt(m.auc),
            fmt_opt(m.pauc)
        );
    }
    let _ = writeln!(
        out,
        "pAUC: McClish-standardised at max FPR {}; pAUC_raw: partial area / {}",
        ev.max_fpr, ev.max_fpr
    );
    out
}

/// `asdsweep evaluate-scores`: per-section AUC/pAUC of a scores CSV with their means.
pub fn run_evaluate_scores(args: &EvaluateScoresArgs) -> Result<()> {
    let clips = read_scores_csv(&args.csv)?;
    let ev = evaluate_sections(&clips, args.max_fpr)?;
    if args.json {
        print_json(&ev)
    } else {
        emit(&sections_table(&ev))
    }
}

fn load_embedding(path: &Path) -> Result<Array2<f64>> {
    fn as_2d<T: Copy + Into<f64>>(
        one: Option<Array1<T>>,
        two: Option<Array2<T>>,
    ) -> Option<Array2<f64>> {
        if let Some(v) = one {
            let n = v.len();
            return Array2::from_shape_vec((1, n), v.iter().map(|&x| x.into()).collect()).ok();
        }
        two.map(|m| m.mapv(Into::into))
    }
    let attempts = [
        as_2d::<f64>(
            ndarray_npy::read_npy::<_, ndarray::Array<f64, Ix1>>(path).ok(),
            None,
        ),
        as_2d::<f64>(
            None,
            ndarray_npy::read_npy::<_, ndarray::Array<f64, Ix2>>(path).ok(),
        ),
        as_2d::<f32>(
            ndarray_npy::read_npy::<_, ndarray::Array<f32, Ix1>>(path).ok(),
            None,
        ),
        as_2d::<f32>(
            None,
            ndarray_npy::read_npy::<_, ndarray::Array<f32, Ix2>>(path).ok(),
        ),
    ];
    if let Some(m) = attempts.into_iter().flatten().next() {
        return Ok(m);
    }
    if !path.exists() {
        bail!("embedding {} does not exist", path.display());
    }
    bail!(
        "embedding {} is not a 1-D or 2-D float32/float64 .npy array",
        path.display()
    )
}

fn probe_table(report: &ProbeReport) -> String {
    let mut out = String::new();
    if let Some(md) = &report.mahalanobis {
        let _ = writeln!(
            out,
            "Mahalanobis ({:?} covariance, shrinkage {:.4}, {} training rows)",
            md.covariance, md.shrinkage, md.train_rows
        );
        out.push_str(&sections_table(&md.evaluation));
    }
    for (label, outcome) in [
        (
            "Linear probe, in-domain (half split)",
            &report.linear_in_domain,
        ),
        (
            "Linear probe, out-of-domain (leave one section out)",
            &report.linear_out_of_domain,
        ),
    ] {
        if let Some(o) = outcome {
            let _ = writeln!(out, "{label}: AUC {} pAUC {}", fmt(o.auc), fmt(o.pauc));
            for (section, auc) in &o.folds {
                let _ = writeln!(out, "  held-out section {section}: AUC {}", fmt(*auc));
            }
        }
    }
    out
}

/// `asdsweep probe`: Mahalanobis and linear probes on embeddings from any model.
pub fn run_probe(args: &ProbeArgs) -> Result<()> {
    let entries = read_probe_manifest(&args.manifest)?;
    let mut clips = Vec::with_capacity(entries.len());
    for entry in entries {
        let path = args.embeddings.join(format!("{}.npy", entry.stem()));
        let rows = load_embedding(&path)
            .with_context(|| format!("{}:{}", args.manifest.display(), entry.line))?;
        clips.push(ClipEmbedding { entry, rows });
    }
    let all = args.probes.contains(&ProbeChoice::All);
    let options = ProbeOptions {
        mahalanobis: all || args.probes.contains(&ProbeChoice::Md),
        linear_in_domain: all || args.probes.contains(&ProbeChoice::LpIn),
        linear_out_of_domain: all || args.probes.contains(&ProbeChoice::LpOut),
        covariance: match args.covariance {
            CovarianceChoice::Sample => CovarianceEstimator::Sample,
            CovarianceChoice::LedoitWolf => CovarianceEstimator::LedoitWolf,
        },
        linear: LinearProbeConfig {
            lr: args.lr,
            batch_size: args.batch_size,
            epochs: args.epochs,
            seed: args.seed,
        },
        half_rule: if args.legacy_half_split {
            HalfSplitRule::Legacy
        } else {
            HalfSplitRule::PerSection
        },
        max_fpr: args.max_fpr,
    };
    let report = run_probes(&clips, &options)?;
    if let (Some(path), Some(md)) = (&args.scores_out, &report.mahalanobis) {
        let mut w = csv::Writer::from_path(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        w.write_record(["section", "label", "score"])?;
        for s in &md.scores {
            w.write_record([
                s.section.clone(),
                u8::from(s.is_anomaly).to_string(),
                format!("{:?}", s.score),
            ])?;
        }
        w.flush()?;
    }
    if args.json {
        print_json(&report)
    } else {
        emit(&probe_table(&report))
    }
}

fn authors_table(rows: &[AuthorsRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<30} {:<18} {:>3} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "family", "asd_metric", "n", "pearson_r", "pearson_p", "spearman", "perm_p", "q_bh"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<30} {:<18} {:>3} {:>9} {:>9} {:>9} {:>9} {:>9}",
            r.family,
            r.asd_metric,
            r.n,
            fmt(r.pearson_r),
            fmt(r.pearson_p),
            fmt(r.spearman_rho),
            fmt(r.spearman_p),
            fmt(r.q)
        );
    }
    out
}

fn long_table(rows: &[CorrelationRow], alignment: &[FamilyAlignment]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<16} {:>3} {:>8} {:>8} {:>8} {:>8} {:>17} {:>8} {:>8}",
        "family",
        "asd_metric",
        "n",
        "pearson",
        "p",
        "spearman",
        "perm_p",
        "rho 95% CI",
        "kendall",
        "q_bh"
    );
    for r in rows {
        let ci = format!("[{}, {}]", fmt(r.spearman_ci.low), fmt(r.spearman_ci.high));
        let _ = writeln!(
            out,
            "{:<16} {:<16} {:>3} {:>8} {:>8} {:>8} {:>8} {:>17} {:>8} {:>8}{}",
            r.family,
            r.asd_metric,
            r.n,
            fmt(r.pearson_r),
            fmt(r.pearson_p),
            fmt(r.spearman_rho),
            fmt(r.spearman_p),
            ci,
            fmt(r.kendall_tau),
            fmt(r.q),
            r.note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "\nAlignment report");
    for f in alignment {
        let _ = writeln!(
            out,
            "{}: difficulty {} — {}",
            f.family, f.difficulty.verdict, f.difficulty.detail
        );
        for m in &f.metrics {
            let _ = writeln!(
                out,
                "  {}: direction {} — {}; {} — {}",
                m.asd_metric,
                m.direction.verdict,
                m.direction.detail,
                m.significance.verdict,
                m.significance.detail
            );
        }
    }
    if let Some(f) = alignment.first() {
        let _ = writeln!(out, "\nRules:\n  difficulty: {}", f.difficulty.rule);
        if let Some(m) = f.metrics.first() {
            let _ = writeln!(
                out,
                "  direction: {}\n  significance: {}",
                m.direction.rule, m.significance.rule
            );
        }
    }
    out
}

/// JSON output of `analyze` on a long-format table.
#[derive(Debug, Serialize)]
struct LongOutput<'a> {
    tests: &'a [CorrelationRow],
    alignment: &'a [FamilyAlignment],
}

/// `asdsweep analyze`: proxy-vs-ASD correlations of a long table or of the reference summary.
pub fn run_analyze(args: &AnalyzeArgs) -> Result<()> {
    let settings = TestSettings {
        resamples: args.resamples,
        seed: args.seed,
        level: args.level,
    };
    if let Some(path) = &args.authors_summary {
        let options = AuthorsOptions {
            asd_metrics: args.asd_metrics.clone(),
            devices: args.devices.clone(),
            include_all_group: args.include_all_group,
            ..AuthorsOptions::default()
        };
        let rows = analyze_authors_summary(path, &options, &settings)?;
        return if args.json {
            print_json(&rows)
        } else {
            emit(&authors_table(&rows))
        };
    }
    let Some(path) = &args.csv else {
        bail!("give a long-format CSV or --authors-summary")
    };
    let table = read_long_csv(path)?;
    let direction = |family: &str| {
        if args.lower_is_better.iter().any(|f| f == family) {
            Direction::LowerIsBetter
        } else if args.higher_is_better.iter().any(|f| f == family) {
            Direction::HigherIsBetter
        } else {
            table.direction(family)
        }
    };
    let points = aggregate_devices(&table, direction);
    let rows = correlate(&points, &table.asd_metrics, &settings)?;
    let alignment = alignment_report(&points, &rows);
    if args.json {
        print_json(&LongOutput {
            tests: &rows,
            alignment: &alignment,
        })
    } else {
        emit(&long_table(&rows, &alignment))
    }
}
