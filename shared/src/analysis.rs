//! Proxy-vs-ASD analysis as the reference study does it: average each config's metrics over
//! machine types, negate lower-is-better proxies, one test per (proxy family × ASD metric),
//! Benjamini–Hochberg over that family of tests; plus readers for a long-format table and
//! for the reference pipeline's own `results_summary.csv`, and the alignment verdicts.

pub mod alignment;
pub mod authors;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::stats::bh::benjamini_hochberg;
use crate::stats::correlation::{PValueMethod, kendall_tau_b, pearson, spearman};
use crate::stats::interval::{Interval, pearson_fisher_interval, spearman_fisher_interval};

/// Why an analysis input could not be read or analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The file could not be opened or parsed as CSV.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Underlying error.
        source: csv::Error,
    },
    /// The header lacks required columns.
    #[error("{path}: {problem}")]
    Header {
        /// The file.
        path: String,
        /// What is missing.
        problem: String,
    },
    /// A data row is malformed.
    #[error("{path}:{line}: {problem}")]
    Row {
        /// The file.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// Nothing is left to analyse.
    #[error("{0}")]
    Empty(String),
    /// A statistic could not be computed.
    #[error("statistics: {0}")]
    Stats(#[from] crate::stats::StatsError),
}

/// Whether a larger proxy value means a better proxy-task result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger is better (F1, SI-SDR, mAP).
    HigherIsBetter,
    /// Smaller is better (reconstruction error, uniformity); negated before correlating.
    LowerIsBetter,
}

/// The study's direction for a family name: AE losses and contrastive uniformity are
/// lower-is-better, everything else higher-is-better.
pub fn default_direction(family: &str) -> Direction {
    let f = family.to_lowercase();
    let is_ae = f == "ae"
        || f.starts_with("ae_")
        || f.starts_with("ae-")
        || f.contains("auto-encoder")
        || f.contains("autoencoder");
    let is_contrastive = ["contrastive", "simclr", "simsiam", "uniformity"]
        .iter()
        .any(|k| f.contains(k));
    if is_ae || is_contrastive {
        Direction::LowerIsBetter
    } else {
        Direction::HigherIsBetter
    }
}

/// One row of the long-format table: a config's proxy and ASD metrics on one machine type.
#[derive(Debug, Clone, PartialEq)]
pub struct LongRow {
    /// Proxy family.
    pub family: String,
    /// Config (checkpoint) name within the family.
    pub config: String,
    /// Machine type.
    pub device: String,
    /// Raw proxy metric.
    pub proxy: f64,
    /// ASD metrics in the table's column order (NaN when missing).
    pub asd: Vec<f64>,
}

/// A long-format table `family,config,device,proxy,<asd metric columns>`.
#[derive(Debug, Clone, PartialEq)]
pub struct LongTable {
    /// Names of the ASD metric columns.
    pub asd_metrics: Vec<String>,
    /// Data rows.
    pub rows: Vec<LongRow>,
}

fn parse_optional(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") || t.eq_ignore_ascii_case("na") {
        return Some(f64::NAN);
    }
    t.parse::<f64>().ok()
}

/// Reads a long-format CSV; malformed rows are reported with their line number.
pub fn read_long_csv(path: &Path) -> Result<LongTable, AnalysisError> {
    let shown = path.display().to_string();
    let io = |source| AnalysisError::Io {
        path: shown.clone(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(path)
        .map_err(io)?;
    let header: Vec<String> = reader
        .headers()
        .map_err(io)?
        .iter()
        .map(str::to_string)
        .collect();
    if header.len() < 5 || header[..4] != ["family", "config", "device", "proxy"] {
        return Err(AnalysisError::Header {
            path: shown,
            problem: format!(
                "header must start with `family,config,device,proxy` and name at least one ASD metric column, found `{}`",
                header.join(",")
            ),
        });
    }
    let asd_metrics = header[4..].to_vec();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(io)?;
        let line = record.position().map_or(0, |p| p.line());
        let row_err = |problem: String| AnalysisError::Row {
            path: shown.clone(),
            line,
            problem,
        };
        if record.len() != header.len() {
            return Err(row_err(format!(
                "expected {} fields, found {}",
                header.len(),
                record.len()
            )));
        }
        for (k, name) in ["family", "config", "device"].iter().enumerate() {
            if record[k].is_empty() {
                return Err(row_err(format!("empty {name}")));
            }
        }
        let proxy = record[3]
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| row_err(format!("proxy `{}` is not a finite number", &record[3])))?;
        let mut asd = Vec::with_capacity(asd_metrics.len());
        for (k, name) in asd_metrics.iter().enumerate() {
            let v = parse_optional(&record[4 + k])
                .filter(|v| !v.is_infinite())
                .ok_or_else(|| row_err(format!("{name} `{}` is not a number", &record[4 + k])))?;
            asd.push(v);
        }
        rows.push(LongRow {
            family: record[0].to_string(),
            config: record[1].to_string(),
            device: record[2].to_string(),
            proxy,
            asd,
        });
    }
    if rows.is_empty() {
        return Err(AnalysisError::Empty(format!("{shown}: no data rows")));
    }
    Ok(LongTable { asd_metrics, rows })
}

/// A config's metrics averaged over machine types.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigPoint {
    /// Proxy family.
    pub family: String,
    /// Config name.
    pub config: String,
    /// Number of machine types averaged.
    pub n_devices: usize,
    /// Mean raw proxy metric.
    pub proxy_raw: f64,
    /// Mean proxy metric with lower-is-better proxies negated (higher = better).
    pub proxy_quality: f64,
    /// Standard deviation (ddof 1) of the raw proxy across machine types (NaN for one).
    pub proxy_device_sd: f64,
    /// Mean of each ASD metric over machine types where it is present (NaN if none).
    pub asd: Vec<f64>,
}

fn nan_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Averages every (family, config) over its machine types, keeping first-appearance order,
/// and negates the proxy of lower-is-better families (`direction`).
pub fn aggregate_devices(
    table: &LongTable,
    direction: impl Fn(&str) -> Direction,
) -> Vec<ConfigPoint> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<&LongRow>> = BTreeMap::new();
    for row in &table.rows {
        let key = (row.family.clone(), row.config.clone());
        let entry = groups.entry(key.clone()).or_default();
        if entry.is_empty() {
            order.push(key);
        }
        entry.push(row);
    }
    order
        .into_iter()
        .map(|key| {
            let rows = &groups[&key];
            let n = rows.len();
            let proxy_raw = rows.iter().map(|r| r.proxy).sum::<f64>() / n as f64;
            let proxy_device_sd = if n < 2 {
                f64::NAN
            } else {
                (rows
                    .iter()
                    .map(|r| (r.proxy - proxy_raw).powi(2))
                    .sum::<f64>()
                    / (n as f64 - 1.0))
                    .sqrt()
            };
            let sign = match direction(&key.0) {
                Direction::HigherIsBetter => 1.0,
                Direction::LowerIsBetter => -1.0,
            };
            let asd = (0..table.asd_metrics.len())
                .map(|k| nan_mean(rows.iter().map(|r| r.asd[k])))
                .collect();
            ConfigPoint {
                family: key.0,
                config: key.1,
                n_devices: n,
                proxy_raw,
                proxy_quality: sign * proxy_raw,
                proxy_device_sd,
                asd,
            }
        })
        .collect()
}

/// Settings of the correlation tests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TestSettings {
    /// Monte Carlo permutations for Spearman when n > 10.
    pub resamples: u64,
    /// Seed of the Monte Carlo permutations.
    pub seed: u64,
    /// Confidence level of the intervals.
    pub level: f64,
}

impl Default for TestSettings {
    fn default() -> Self {
        Self {
            resamples: 99_999,
            seed: 0,
            level: 0.95,
        }
    }
}

/// One proxy family × ASD metric test with every statistic the study reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorrelationRow {
    /// Proxy family.
    pub family: String,
    /// ASD metric column.
    pub asd_metric: String,
    /// Configs with both values.
    pub n: usize,
    /// Pearson r of proxy quality vs ASD metric.
    pub pearson_r: f64,
    /// Its two-sided t-test p.
    pub pearson_p: f64,
    /// Fisher-z interval of r.
    pub pearson_ci: Interval,
    /// Spearman ρ (average ranks).
    pub spearman_rho: f64,
    /// Its two-sided permutation p.
    pub spearman_p: f64,
    /// How `spearman_p` was computed.
    pub spearman_p_method: PValueMethod,
    /// Fisher-z (Fieller) interval of ρ.
    pub spearman_ci: Interval,
    /// Kendall τ-b.
    pub kendall_tau: f64,
    /// Its asymptotic two-sided p.
    pub kendall_p: f64,
    /// Benjamini–Hochberg q of `spearman_p` over all rows of the analysis.
    pub q: f64,
    /// Why statistics are NaN, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Runs one test per (family × ASD metric) on the aggregated points, families sorted by
/// name within each metric, metrics in `asd_metrics` order, and adds BH q-values of the
/// Spearman p-values over all of them (the reference study's family of tests).
pub fn correlate(
    points: &[ConfigPoint],
    asd_metrics: &[String],
    settings: &TestSettings,
) -> Result<Vec<CorrelationRow>, AnalysisError> {
    let mut families: Vec<&str> = points.iter().map(|p| p.family.as_str()).collect();
    families.sort_unstable();
    families.dedup();
    let mut rows = Vec::new();
    for (k, metric) in asd_metrics.iter().enumerate() {
        for family in &families {
            let (x, y): (Vec<f64>, Vec<f64>) = points
                .iter()
                .filter(|p| {
                    p.family == *family && p.proxy_quality.is_finite() && p.asd[k].is_finite()
                })
                .map(|p| (p.proxy_quality, p.asd[k]))
                .unzip();
            rows.push(test_pair(family, metric, &x, &y, settings)?);
        }
    }
    apply_bh(&mut rows);
    Ok(rows)
}

/// All statistics of one (family, metric) pair; q is filled in by [`apply_bh`].
pub fn test_pair(
    family: &str,
    metric: &str,
    x: &[f64],
    y: &[f64],
    settings: &TestSettings,
) -> Result<CorrelationRow, AnalysisError> {
    let p = pearson(x, y)?;
    let s = spearman(x, y, settings.resamples, settings.seed)?;
    let k = kendall_tau_b(x, y)?;
    Ok(CorrelationRow {
        family: family.to_string(),
        asd_metric: metric.to_string(),
        n: x.len(),
        pearson_r: p.estimate,
        pearson_p: p.p_value,
        pearson_ci: pearson_fisher_interval(p.estimate, x.len(), settings.level)?,
        spearman_rho: s.estimate,
        spearman_p: s.p_value,
        spearman_p_method: s.method,
        spearman_ci: spearman_fisher_interval(s.estimate, x.len(), settings.level)?,
        kendall_tau: k.estimate,
        kendall_p: k.p_value,
        q: f64::NAN,
        note: s.note.or(p.note),
    })
}

/// Sets each row's q to the BH adjustment of the Spearman p-values over all rows.
pub fn apply_bh(rows: &mut [CorrelationRow]) {
    let p: Vec<f64> = rows.iter().map(|r| r.spearman_p).collect();
    for (row, q) in rows.iter_mut().zip(benjamini_hochberg(&p)) {
        row.q = q;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn table(text: &str) -> Result<LongTable, AnalysisError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(f, "{text}").unwrap();
        read_long_csv(f.path())
    }

    #[test]
    fn configs_are_averaged_over_devices_and_lower_is_better_proxies_negated() {
        let t = table("family,config,device,proxy,lp_auc\nae,a,fan,1.0,0.6\nae,a,pump,3.0,0.8\nce,b,fan,0.5,0.7\n").unwrap();
        let pts = aggregate_devices(&t, default_direction);
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].proxy_raw, 2.0);
        assert_eq!(pts[0].proxy_quality, -2.0);
        assert!((pts[0].asd[0] - 0.7).abs() < 1e-15);
        assert!((pts[0].proxy_device_sd - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(pts[1].proxy_quality, 0.5);
        assert!(pts[1].proxy_device_sd.is_nan());
    }

    #[test]
    fn study_family_names_get_the_study_directions() {
        assert_eq!(default_direction("Auto-Encoder"), Direction::LowerIsBetter);
        assert_eq!(
            default_direction("Contrastive learning(SimCLR)"),
            Direction::LowerIsBetter
        );
        assert_eq!(default_direction("ae"), Direction::LowerIsBetter);
        assert_eq!(default_direction("Separation"), Direction::HigherIsBetter);
        assert_eq!(
            default_direction("Classification (ArcFace)"),
            Direction::HigherIsBetter
        );
        assert_eq!(default_direction("Pre-trained"), Direction::HigherIsBetter);
    }

    #[test]
    fn a_malformed_long_row_names_its_line() {
        let err = table("family,config,device,proxy,lp_auc\nae,a,fan,x,0.6\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2:") && err.contains("proxy"), "{err}");
        assert!(table("family,config,proxy\n").is_err());
    }

    #[test]
    fn fewer_than_three_configs_give_labelled_nan_rows_and_nan_q() {
        let t = table("family,config,device,proxy,lp\nce,a,fan,1,0.6\nce,b,fan,2,0.7\nsep,a,fan,1,0.5\nsep,b,fan,2,0.6\nsep,c,fan,3,0.9\n").unwrap();
        let pts = aggregate_devices(&t, default_direction);
        let rows = correlate(&pts, &t.asd_metrics, &TestSettings::default()).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].pearson_r.is_nan() && rows[0].q.is_nan());
        assert!(rows[0].note.as_deref().unwrap().contains("< 3"));
        assert!((rows[1].spearman_rho - 1.0).abs() < 1e-15);
        assert!(
            (rows[1].q - rows[1].spearman_p).abs() < 1e-15,
            "a family of one test has q = p"
        );
    }
}
