//! The alignment report: for each proxy family, three stages in the spirit of the study's
//! conclusions — (1) difficulty: does the proxy metric still separate the configs, or is it
//! saturated within its noise; (2) direction: does feature quality (the ASD metrics) move with
//! the proxy; (3) significance after Benjamini–Hochberg. Each verdict carries the rule used.

use serde::Serialize;

use super::{ConfigPoint, CorrelationRow};

/// Rule of stage 1.
pub const DIFFICULTY_RULE: &str = "saturated if the range of the config means of the proxy is below 2 × the pooled \
standard error of a config mean (sqrt of the mean over configs of sd²/n across machine types); unknown without \
at least 2 configs and one config measured on 2 or more machine types";
/// Rule of stage 2.
pub const DIRECTION_RULE: &str = "aligned if the Fisher-z interval of Spearman rho (proxy quality vs ASD metric) \
lies above 0, opposed if below 0, else inconclusive; size strong |rho| >= 0.7, moderate >= 0.4, else weak";
/// Rule of stage 3.
pub const SIGNIFICANCE_RULE: &str = "significant if the Benjamini-Hochberg q of the Spearman permutation p over all \
family x ASD-metric tests is below 0.05";

/// BH threshold of stage 3.
pub const Q_THRESHOLD: f64 = 0.05;

/// One stage's verdict with the numbers behind it and the rule applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageVerdict {
    /// Short verdict word.
    pub verdict: String,
    /// The numbers behind it.
    pub detail: String,
    /// The rule applied.
    pub rule: &'static str,
}

/// Stages 2 and 3 for one ASD metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricAlignment {
    /// ASD metric column.
    pub asd_metric: String,
    /// Stage 2.
    pub direction: StageVerdict,
    /// Stage 3.
    pub significance: StageVerdict,
}

/// The three-stage verdict of one proxy family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyAlignment {
    /// Proxy family.
    pub family: String,
    /// Stage 1.
    pub difficulty: StageVerdict,
    /// Stages 2 and 3, one per ASD metric.
    pub metrics: Vec<MetricAlignment>,
}

/// Stage 1 for one family's aggregated configs.
pub fn difficulty(points: &[&ConfigPoint]) -> StageVerdict {
    let means: Vec<f64> = points.iter().map(|p| p.proxy_raw).collect();
    let replicated: Vec<f64> = points
        .iter()
        .filter(|p| p.n_devices >= 2 && p.proxy_device_sd.is_finite())
        .map(|p| p.proxy_device_sd.powi(2) / p.n_devices as f64)
        .collect();
    if means.len() < 2 || replicated.is_empty() {
        return StageVerdict {
            verdict: "unknown".into(),
            detail: format!(
                "{} configs, {} with replicates",
                means.len(),
                replicated.len()
            ),
            rule: DIFFICULTY_RULE,
        };
    }
    let range = means.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - means.iter().copied().fold(f64::INFINITY, f64::min);
    let se = (replicated.iter().sum::<f64>() / replicated.len() as f64).sqrt();
    let verdict = if range < 2.0 * se {
        "saturated"
    } else {
        "discriminative"
    };
    StageVerdict {
        verdict: verdict.into(),
        detail: format!(
            "range of config means {range:.4} vs pooled SE {se:.4} (ratio {:.2})",
            range / se
        ),
        rule: DIFFICULTY_RULE,
    }
}

/// Stage 2 for one test row.
pub fn direction(row: &CorrelationRow) -> StageVerdict {
    let rho = row.spearman_rho;
    let (lo, hi) = (row.spearman_ci.low, row.spearman_ci.high);
    if !rho.is_finite() {
        return StageVerdict {
            verdict: "undefined".into(),
            detail: row
                .note
                .clone()
                .unwrap_or_else(|| "rho is undefined".into()),
            rule: DIRECTION_RULE,
        };
    }
    let size = if rho.abs() >= 0.7 {
        "strong"
    } else if rho.abs() >= 0.4 {
        "moderate"
    } else {
        "weak"
    };
    let sign = if lo > 0.0 {
        "aligned"
    } else if hi < 0.0 {
        "opposed"
    } else {
        "inconclusive"
    };
    StageVerdict {
        verdict: format!("{sign} ({size})"),
        detail: format!(
            "rho {rho:.3}, {:.0}% CI [{lo:.3}, {hi:.3}], n {}",
            row.spearman_ci.level * 100.0,
            row.n
        ),
        rule: DIRECTION_RULE,
    }
}

/// Stage 3 for one test row.
pub fn significance(row: &CorrelationRow) -> StageVerdict {
    let verdict = if !row.q.is_finite() {
        "untestable"
    } else if row.q < Q_THRESHOLD {
        "significant"
    } else {
        "not significant"
    };
    StageVerdict {
        verdict: verdict.into(),
        detail: format!("p {:.4}, q {:.4}", row.spearman_p, row.q),
        rule: SIGNIFICANCE_RULE,
    }
}

/// The report: one entry per family (sorted), stage 1 from `points`, stages 2–3 from `rows`.
pub fn alignment_report(points: &[ConfigPoint], rows: &[CorrelationRow]) -> Vec<FamilyAlignment> {
    let mut families: Vec<&str> = points.iter().map(|p| p.family.as_str()).collect();
    families.sort_unstable();
    families.dedup();
    families
        .into_iter()
        .map(|family| {
            let pts: Vec<&ConfigPoint> = points.iter().filter(|p| p.family == family).collect();
            FamilyAlignment {
                family: family.to_string(),
                difficulty: difficulty(&pts),
                metrics: rows
                    .iter()
                    .filter(|r| r.family == family)
                    .map(|r| MetricAlignment {
                        asd_metric: r.asd_metric.clone(),
                        direction: direction(r),
                        significance: significance(r),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{TestSettings, test_pair};

    fn point(config: &str, proxy: f64, sd: f64) -> ConfigPoint {
        ConfigPoint {
            family: "f".into(),
            config: config.into(),
            n_devices: 4,
            n_seeds: 1,
            proxy_raw: proxy,
            proxy_quality: proxy,
            proxy_device_sd: sd,
            asd: vec![],
        }
    }

    #[test]
    fn a_proxy_that_moves_less_than_its_noise_is_saturated() {
        let pts = [
            point("a", 0.90, 0.1),
            point("b", 0.91, 0.1),
            point("c", 0.92, 0.1),
        ];
        let refs: Vec<&ConfigPoint> = pts.iter().collect();
        assert_eq!(difficulty(&refs).verdict, "saturated");
        let pts = [
            point("a", 0.5, 0.01),
            point("b", 0.7, 0.01),
            point("c", 0.9, 0.01),
        ];
        let refs: Vec<&ConfigPoint> = pts.iter().collect();
        assert_eq!(difficulty(&refs).verdict, "discriminative");
    }

    #[test]
    fn no_replicates_make_difficulty_unknown() {
        let mut p = point("a", 0.5, f64::NAN);
        p.n_devices = 1;
        assert_eq!(difficulty(&[&p, &p]).verdict, "unknown");
    }

    #[test]
    fn direction_and_significance_follow_their_rules() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|v| v * 2.0 + 1.0).collect();
        let mut row = test_pair("f", "lp", &x, &y, &TestSettings::default()).unwrap();
        row.q = 0.01;
        assert_eq!(direction(&row).verdict, "aligned (strong)");
        assert_eq!(significance(&row).verdict, "significant");
        let y_rev: Vec<f64> = y.iter().rev().copied().collect();
        let mut row = test_pair("f", "lp", &x, &y_rev, &TestSettings::default()).unwrap();
        row.q = 0.2;
        assert_eq!(direction(&row).verdict, "opposed (strong)");
        assert_eq!(significance(&row).verdict, "not significant");
        let short = test_pair("f", "lp", &x[..2], &y[..2], &TestSettings::default()).unwrap();
        assert_eq!(direction(&short).verdict, "undefined");
        assert_eq!(significance(&short).verdict, "untestable");
    }
}
