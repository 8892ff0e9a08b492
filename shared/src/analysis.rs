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

impl Direction {
    /// The name `results.csv` and the coordinator's database use: `higher_is_better` or
    /// `lower_is_better` (as serialised).
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::HigherIsBetter => "higher_is_better",
            Direction::LowerIsBetter => "lower_is_better",
        }
    }

    /// The direction named by [`Direction::as_str`]; `None` for any other text.
    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "higher_is_better" => Some(Direction::HigherIsBetter),
            "lower_is_better" => Some(Direction::LowerIsBetter),
            _ => None,
        }
    }
}

/// The study's direction for a family name: AE losses and contrastive uniformity are
/// lower-is-better, everything else higher-is-better.
///
/// A guess from a name, for tables that declare no direction: a plain long-format table,
/// and a `results.csv` written before `proxy_direction` existed (asdsweep 0.1, or a row
/// whose worker declared none). A sweep's `results.csv` declares each row's direction as
/// its family states it, and [`LongTable::direction`] takes that instead. The study
/// authors' `results_summary.csv` has directions of its own (`authors::METRIC_TYPES`).
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
    /// Seed of the run (a sweep's `results.csv`); `None` in the plain long format.
    pub seed: Option<String>,
    /// Name of the proxy metric (a sweep's `results.csv`); `None` in the plain long format.
    pub proxy_metric: Option<String>,
    /// The proxy metric's direction as the row declares it (a sweep's `results.csv`,
    /// column `proxy_direction`); `None` when it declares none.
    pub proxy_direction: Option<Direction>,
    /// Raw proxy metric.
    pub proxy: f64,
    /// ASD metrics in the table's column order (NaN when missing).
    pub asd: Vec<f64>,
}

/// A long-format table: `family,config,device,proxy,<asd metric columns>`, or a sweep's
/// `results.csv` (`family,config,device,seed,proxy_metric,proxy_value,<the six ASD metrics>,…`).
#[derive(Debug, Clone, PartialEq)]
pub struct LongTable {
    /// Names of the ASD metric columns.
    pub asd_metrics: Vec<String>,
    /// Data rows.
    pub rows: Vec<LongRow>,
    /// Rows of a `results.csv` left out because they carry no proxy value.
    pub skipped_without_proxy: usize,
}

/// The six ASD metric columns of a sweep's `results.csv`, in order.
pub const SWEEP_ASD_METRICS: [&str; 6] = [
    "lp_in_auc",
    "lp_in_pauc",
    "lp_out_auc",
    "lp_out_pauc",
    "md_auc",
    "md_pauc",
];

/// The leading columns of a sweep's `results.csv`.
pub const SWEEP_KEY_COLUMNS: [&str; 6] = [
    "family",
    "config",
    "device",
    "seed",
    "proxy_metric",
    "proxy_value",
];

/// The optional column of a sweep's `results.csv` that declares each row's proxy direction
/// ([`Direction::as_str`], empty when undeclared); files of asdsweep 0.1 lack it.
pub const SWEEP_DIRECTION_COLUMN: &str = "proxy_direction";

impl LongTable {
    /// A family's proxy direction: the one its rows declare (they agree: see
    /// [`parse_long_csv`]), else [`default_direction`] of the family name, for a table
    /// that declares none.
    pub fn direction(&self, family: &str) -> Direction {
        self.rows
            .iter()
            .filter(|r| r.family == family)
            .find_map(|r| r.proxy_direction)
            .unwrap_or_else(|| default_direction(family))
    }
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
    let file = std::fs::File::open(path).map_err(|e| AnalysisError::Io {
        path: shown.clone(),
        source: csv::Error::from(e),
    })?;
    parse_long_csv(file, &shown)
}

/// Parses a long-format CSV (or a sweep's `results.csv`) from any reader; `shown` names
/// the source in errors. [`read_long_csv`] is this on a file. A `results.csv` whose rows
/// of one family declare opposite proxy directions is refused.
pub fn parse_long_csv(input: impl std::io::Read, shown: &str) -> Result<LongTable, AnalysisError> {
    let shown = shown.to_string();
    let io = |source| AnalysisError::Io {
        path: shown.clone(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(io)?
        .iter()
        .map(str::to_string)
        .collect();
    if header.len() >= SWEEP_KEY_COLUMNS.len()
        && header[..SWEEP_KEY_COLUMNS.len()] == SWEEP_KEY_COLUMNS
    {
        return read_sweep_results(reader, &header, &shown);
    }
    if header.len() < 5 || header[..4] != ["family", "config", "device", "proxy"] {
        return Err(AnalysisError::Header {
            path: shown,
            problem: format!(
                "header must start with `family,config,device,proxy` and name at least one ASD metric column \
                 (or be a sweep's results.csv: `{}`), found `{}`",
                SWEEP_KEY_COLUMNS.join(","),
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
            seed: None,
            proxy_metric: None,
            proxy_direction: None,
            proxy,
            asd,
        });
    }
    if rows.is_empty() {
        return Err(AnalysisError::Empty(format!("{shown}: no data rows")));
    }
    Ok(LongTable {
        asd_metrics,
        rows,
        skipped_without_proxy: 0,
    })
}

/// Reads the rows of a sweep's `results.csv` (header already read): the six ASD metric
/// columns and the optional [`SWEEP_DIRECTION_COLUMN`] are found by name, provenance and
/// further-metric columns are ignored, rows without a proxy value are counted and left
/// out. The rows of one family must not declare opposite directions.
fn read_sweep_results<R: std::io::Read>(
    mut reader: csv::Reader<R>,
    header: &[String],
    shown: &str,
) -> Result<LongTable, AnalysisError> {
    let mut columns = Vec::with_capacity(SWEEP_ASD_METRICS.len());
    for metric in SWEEP_ASD_METRICS {
        let k = header
            .iter()
            .position(|h| h == metric)
            .ok_or_else(|| AnalysisError::Header {
                path: shown.to_string(),
                problem: format!(
                    "results.csv header lacks the `{metric}` column (needs {})",
                    SWEEP_ASD_METRICS.join(", ")
                ),
            })?;
        columns.push(k);
    }
    let direction_column = header.iter().position(|h| h == SWEEP_DIRECTION_COLUMN);
    // Each family's first declared direction and its line.
    let mut declared: BTreeMap<String, (Direction, u64)> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut skipped = 0;
    for record in reader.records() {
        let record = record.map_err(|source| AnalysisError::Io {
            path: shown.to_string(),
            source,
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let row_err = |problem: String| AnalysisError::Row {
            path: shown.to_string(),
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
        if record[5].is_empty() {
            skipped += 1;
            continue;
        }
        let proxy = record[5]
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| {
                row_err(format!(
                    "proxy_value `{}` is not a finite number",
                    &record[5]
                ))
            })?;
        let mut asd = Vec::with_capacity(columns.len());
        for (&k, name) in columns.iter().zip(SWEEP_ASD_METRICS) {
            let v = parse_optional(&record[k])
                .filter(|v| !v.is_infinite())
                .ok_or_else(|| row_err(format!("{name} `{}` is not a number", &record[k])))?;
            asd.push(v);
        }
        let proxy_direction = match direction_column.map(|k| &record[k]) {
            None | Some("") => None,
            Some(text) => Some(Direction::parse(text).ok_or_else(|| {
                row_err(format!(
                    "{SWEEP_DIRECTION_COLUMN} `{text}` is neither higher_is_better nor lower_is_better"
                ))
            })?),
        };
        if let Some(d) = proxy_direction {
            let (first, first_line) = *declared.entry(record[0].to_string()).or_insert((d, line));
            if first != d {
                return Err(row_err(format!(
                    "family {} declares its proxy {} here but {} on line {first_line}: \
                     a family's rows must agree on their proxy's direction",
                    &record[0],
                    d.as_str(),
                    first.as_str()
                )));
            }
        }
        let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_string());
        rows.push(LongRow {
            family: record[0].to_string(),
            config: record[1].to_string(),
            device: record[2].to_string(),
            seed: non_empty(&record[3]),
            proxy_metric: non_empty(&record[4]),
            proxy_direction,
            proxy,
            asd,
        });
    }
    if rows.is_empty() {
        return Err(AnalysisError::Empty(format!(
            "{shown}: no rows with a proxy value ({skipped} without)"
        )));
    }
    Ok(LongTable {
        asd_metrics: SWEEP_ASD_METRICS.iter().map(|m| m.to_string()).collect(),
        rows,
        skipped_without_proxy: skipped,
    })
}

/// A config's metrics averaged over machine types (and then over seeds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigPoint {
    /// Proxy family.
    pub family: String,
    /// Config name.
    pub config: String,
    /// Number of machine types averaged.
    pub n_devices: usize,
    /// Number of seeds averaged (1 for a table without seeds).
    pub n_seeds: usize,
    /// Mean raw proxy metric.
    pub proxy_raw: f64,
    /// Mean proxy metric with lower-is-better proxies negated (higher = better).
    pub proxy_quality: f64,
    /// Standard deviation (ddof 1) of the raw proxy across machine types (each machine
    /// type's value averaged over seeds first; NaN for one machine type).
    pub proxy_device_sd: f64,
    /// Mean of each ASD metric over machine types where it is present (NaN if none),
    /// then over seeds.
    pub asd: Vec<f64>,
}

fn nan_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Groups items by a key, keeping the order in which keys first appear (pandas'
/// `groupby(sort=False, dropna=False)`, which the reference pipeline uses).
fn ordered_groups<'a, T, K: Ord + Clone>(
    items: impl Iterator<Item = &'a T>,
    key: impl Fn(&T) -> K,
) -> Vec<Vec<&'a T>>
where
    T: 'a,
{
    let mut index: BTreeMap<K, usize> = BTreeMap::new();
    let mut groups: Vec<Vec<&T>> = Vec::new();
    for item in items {
        let k = key(item);
        let slot = *index.entry(k).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[slot].push(item);
    }
    groups
}

/// Averages every (family, config) over its machine types, then over its seeds, keeping
/// first-appearance order, and negates the proxy of lower-is-better families (`direction`).
pub fn aggregate_devices(
    table: &LongTable,
    direction: impl Fn(&str) -> Direction,
) -> Vec<ConfigPoint> {
    let n_metrics = table.asd_metrics.len();
    ordered_groups(table.rows.iter(), |r| (r.family.clone(), r.config.clone()))
        .into_iter()
        .map(|rows| {
            let (family, config) = (rows[0].family.clone(), rows[0].config.clone());
            // Per seed: the mean over machine types.
            let per_seed: Vec<(f64, Vec<f64>)> =
                ordered_groups(rows.iter().copied(), |r| r.seed.clone())
                    .into_iter()
                    .map(|seed_rows| {
                        let proxy =
                            seed_rows.iter().map(|r| r.proxy).sum::<f64>() / seed_rows.len() as f64;
                        let asd = (0..n_metrics)
                            .map(|k| nan_mean(seed_rows.iter().map(|r| r.asd[k])))
                            .collect();
                        (proxy, asd)
                    })
                    .collect();
            // Per machine type: the proxy averaged over seeds, for its spread across machine types.
            let per_device: Vec<f64> = ordered_groups(rows.iter().copied(), |r| r.device.clone())
                .into_iter()
                .map(|dev_rows| {
                    dev_rows.iter().map(|r| r.proxy).sum::<f64>() / dev_rows.len() as f64
                })
                .collect();
            let n = per_device.len();
            let proxy_raw = per_seed.iter().map(|(p, _)| p).sum::<f64>() / per_seed.len() as f64;
            let device_mean = per_device.iter().sum::<f64>() / n as f64;
            let proxy_device_sd = if n < 2 {
                f64::NAN
            } else {
                (per_device
                    .iter()
                    .map(|p| (p - device_mean).powi(2))
                    .sum::<f64>()
                    / (n as f64 - 1.0))
                    .sqrt()
            };
            let sign = match direction(&family) {
                Direction::HigherIsBetter => 1.0,
                Direction::LowerIsBetter => -1.0,
            };
            let asd = (0..n_metrics)
                .map(|k| nan_mean(per_seed.iter().map(|(_, a)| a[k])))
                .collect();
            ConfigPoint {
                family,
                config,
                n_devices: n,
                n_seeds: per_seed.len(),
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
    fn a_sweep_results_csv_is_averaged_over_machine_types_then_seeds() {
        let t = table(
            "family,config,device,seed,proxy_metric,proxy_value,lp_in_auc,lp_in_pauc,lp_out_auc,lp_out_pauc,md_auc,md_pauc,spec_hash\n\
             ae,a,fan,1,ae_l1,1.0,0.6,,,,0.5,,h\n\
             ae,a,pump,1,ae_l1,3.0,0.8,,,,0.7,,h\n\
             ae,a,fan,2,ae_l1,2.0,0.7,,,,0.6,,h\n\
             ae,a,pump,2,ae_l1,,,,,,,,h\n\
             ae,b,fan,1,ae_l1,0.5,0.9,,,,0.9,,h\n",
        )
        .unwrap();
        assert_eq!(t.asd_metrics, SWEEP_ASD_METRICS);
        assert_eq!(t.skipped_without_proxy, 1);
        assert_eq!(t.direction("ae"), Direction::LowerIsBetter);
        let pts = aggregate_devices(&t, |f| t.direction(f));
        assert_eq!((pts[0].n_devices, pts[0].n_seeds), (2, 2));
        // seed 1: mean(1, 3) = 2; seed 2: 2 (pump had no proxy) -> 2.
        assert_eq!(pts[0].proxy_raw, 2.0);
        assert_eq!(pts[0].proxy_quality, -2.0);
        // lp_in_auc: seed 1 mean(0.6, 0.8) = 0.7, seed 2 0.7.
        assert!((pts[0].asd[0] - 0.7).abs() < 1e-15);
        assert!(pts[0].asd[1].is_nan());
        // per machine type over seeds: fan 1.5, pump 3 -> sd of (1.5, 3).
        assert!((pts[0].proxy_device_sd - (1.125f64).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn a_declared_proxy_direction_decides_over_the_family_name() {
        let t = table(
            "family,config,device,seed,proxy_metric,proxy_value,lp_in_auc,lp_in_pauc,lp_out_auc,lp_out_pauc,md_auc,md_pauc,job,proxy_direction\n\
             mymodel,a,fan,1,ae_l1,1.0,0.6,,,,,,j1,lower_is_better\n\
             ae,a,fan,1,score,0.5,0.6,,,,,,j2,higher_is_better\n\
             ae,b,fan,1,score,0.7,0.6,,,,,,j3,\n\
             odd,a,fan,1,whatever,0.5,0.6,,,,,,j4,\n",
        )
        .unwrap();
        assert_eq!(t.rows[0].proxy_direction, Some(Direction::LowerIsBetter));
        assert_eq!(t.direction("mymodel"), Direction::LowerIsBetter);
        assert_eq!(
            t.direction("ae"),
            Direction::HigherIsBetter,
            "a row that declares none takes its family's declared direction"
        );
        assert_eq!(t.direction("odd"), default_direction("odd"));
    }

    #[test]
    fn a_results_csv_that_declares_no_direction_falls_back_to_the_family_name() {
        // As asdsweep 0.1 wrote it: no proxy_direction column, and no guess from `ae_l1`.
        let t = table(
            "family,config,device,seed,proxy_metric,proxy_value,lp_in_auc,lp_in_pauc,lp_out_auc,lp_out_pauc,md_auc,md_pauc\n\
             mymodel,a,fan,1,ae_l1,1.0,0.6,,,,,\nae,a,fan,1,ae_l1,0.5,0.6,,,,,\n",
        )
        .unwrap();
        assert_eq!(t.rows[0].proxy_direction, None);
        assert_eq!(t.direction("mymodel"), Direction::HigherIsBetter);
        assert_eq!(t.direction("ae"), Direction::LowerIsBetter);
    }

    #[test]
    fn rows_of_a_family_that_declare_opposite_directions_are_refused() {
        let header = "family,config,device,seed,proxy_metric,proxy_value,lp_in_auc,lp_in_pauc,lp_out_auc,lp_out_pauc,md_auc,md_pauc,proxy_direction\n";
        let err = table(&format!(
            "{header}ae,a,fan,1,x,1,0.6,,,,,,lower_is_better\nae,b,fan,1,y,1,0.6,,,,,,higher_is_better\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(":3:") && err.contains("family ae") && err.contains("line 2"),
            "{err}"
        );
        let err = table(&format!("{header}ae,a,fan,1,x,1,0.6,,,,,,up\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2:") && err.contains("`up`"), "{err}");
        assert_eq!(
            Direction::parse("lower_is_better"),
            Some(Direction::LowerIsBetter)
        );
        assert_eq!(
            serde_json::to_value(Direction::HigherIsBetter).unwrap(),
            Direction::HigherIsBetter.as_str(),
            "the serialised name is the one results.csv uses"
        );
    }

    #[test]
    fn a_results_csv_without_an_asd_column_names_it() {
        let err = table("family,config,device,seed,proxy_metric,proxy_value,lp_in_auc\nae,a,fan,1,ae_l1,1,0.5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lp_in_pauc"), "{err}");
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
