//! Per-section AUC/pAUC with arithmetic and harmonic means over sections, and the
//! `section,label,score` CSV reader behind `asdsweep evaluate-scores`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::MetricsError;
use super::auc::{partial_auc, roc_auc};

/// One scored clip: its section, whether it is anomalous, and its anomaly score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredClip {
    /// Section name as written in the input (e.g. `"00"`).
    pub section: String,
    /// True for an anomaly (label 1), false for a normal clip (label 0).
    pub is_anomaly: bool,
    /// Anomaly score (higher = more anomalous).
    pub score: f64,
}

/// AUC and pAUC of one section; `None` values come with a `note` saying why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SectionResult {
    /// Section name.
    pub section: String,
    /// ROC AUC, or `None` when undefined (see `note`).
    pub auc: Option<f64>,
    /// McClish-standardised pAUC at the requested max FPR.
    pub pauc: Option<f64>,
    /// Raw DCASE pAUC (partial area / max FPR).
    pub pauc_raw: Option<f64>,
    /// Number of normal clips.
    pub n_normal: usize,
    /// Number of anomalous clips.
    pub n_anomaly: usize,
    /// Why the metrics are undefined, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// AUC and McClish pAUC summarised over sections.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AucSummary {
    /// Summary of the section AUCs (`None` when no section has one).
    pub auc: Option<f64>,
    /// Summary of the section McClish pAUCs.
    pub pauc: Option<f64>,
}

/// The result of `evaluate-scores`: per-section values and their means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SectionEvaluation {
    /// Sections in sorted order.
    pub sections: Vec<SectionResult>,
    /// Arithmetic mean over sections with a defined value.
    pub mean: AucSummary,
    /// Harmonic mean over sections with a defined value (`scipy.stats.hmean`; 0 if any value is 0).
    pub hmean: AucSummary,
    /// The max FPR used for pAUC.
    pub max_fpr: f64,
}

/// Arithmetic mean, `None` for no values.
pub fn arithmetic_mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Harmonic mean as `scipy.stats.hmean` of non-negative values (0 when any value is 0).
pub fn harmonic_mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    if values.contains(&0.0) {
        return Some(0.0);
    }
    Some(values.len() as f64 / values.iter().map(|v| 1.0 / v).sum::<f64>())
}

/// Evaluates every section of `clips` at `max_fpr`; a section with a single class gets
/// `None` metrics and a note, and is left out of the means.
pub fn evaluate_sections(
    clips: &[ScoredClip],
    max_fpr: f64,
) -> Result<SectionEvaluation, MetricsError> {
    if !(max_fpr > 0.0 && max_fpr <= 1.0) {
        return Err(MetricsError::InvalidParameter {
            name: "max_fpr",
            value: max_fpr,
            allowed: "must lie in (0, 1]",
        });
    }
    let mut by_section: BTreeMap<&str, (Vec<bool>, Vec<f64>)> = BTreeMap::new();
    for clip in clips {
        let entry = by_section.entry(clip.section.as_str()).or_default();
        entry.0.push(clip.is_anomaly);
        entry.1.push(clip.score);
    }
    let mut sections = Vec::with_capacity(by_section.len());
    for (name, (labels, scores)) in by_section {
        let n_anomaly = labels.iter().filter(|&&a| a).count();
        let n_normal = labels.len() - n_anomaly;
        let result = match (
            roc_auc(&labels, &scores),
            partial_auc(&labels, &scores, max_fpr),
        ) {
            (Ok(auc), Ok(p)) => SectionResult {
                section: name.to_string(),
                auc: Some(auc),
                pauc: Some(p.mcclish),
                pauc_raw: Some(p.raw),
                n_normal,
                n_anomaly,
                note: None,
            },
            (Err(e @ MetricsError::SingleClass { .. }), _) => SectionResult {
                section: name.to_string(),
                auc: None,
                pauc: None,
                pauc_raw: None,
                n_normal,
                n_anomaly,
                note: Some(e.to_string()),
            },
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        sections.push(result);
    }
    let aucs: Vec<f64> = sections.iter().filter_map(|s| s.auc).collect();
    let paucs: Vec<f64> = sections.iter().filter_map(|s| s.pauc).collect();
    Ok(SectionEvaluation {
        mean: AucSummary {
            auc: arithmetic_mean(&aucs),
            pauc: arithmetic_mean(&paucs),
        },
        hmean: AucSummary {
            auc: harmonic_mean(&aucs),
            pauc: harmonic_mean(&paucs),
        },
        sections,
        max_fpr,
    })
}

/// Why a scores CSV could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScoresCsvError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Underlying error.
        source: csv::Error,
    },
    /// The header is not `section,label,score`.
    #[error("{path}: header must be `section,label,score`, found `{found}`")]
    Header {
        /// The file.
        path: String,
        /// The header found.
        found: String,
    },
    /// A row is malformed.
    #[error("{path}:{line}: {problem}")]
    Row {
        /// The file.
        path: String,
        /// 1-based line number in the file.
        line: u64,
        /// What is wrong with the row.
        problem: String,
    },
    /// The file holds no data rows.
    #[error("{path}: no data rows")]
    Empty {
        /// The file.
        path: String,
    },
}

/// Reads a `section,label,score` CSV (label 1 = anomaly, 0 = normal); every malformed
/// row is reported with its line number.
pub fn read_scores_csv(path: &Path) -> Result<Vec<ScoredClip>, ScoresCsvError> {
    let shown = path.display().to_string();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(path)
        .map_err(|source| ScoresCsvError::Io {
            path: shown.clone(),
            source,
        })?;
    let header = reader
        .headers()
        .map_err(|source| ScoresCsvError::Io {
            path: shown.clone(),
            source,
        })?
        .clone();
    let names: Vec<&str> = header.iter().collect();
    if names != ["section", "label", "score"] {
        return Err(ScoresCsvError::Header {
            path: shown,
            found: names.join(","),
        });
    }
    let mut clips = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|source| ScoresCsvError::Io {
            path: shown.clone(),
            source,
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let row_err = |problem: String| ScoresCsvError::Row {
            path: shown.clone(),
            line,
            problem,
        };
        if record.len() != 3 {
            return Err(row_err(format!(
                "expected 3 fields, found {}",
                record.len()
            )));
        }
        let section = record[0].to_string();
        if section.is_empty() {
            return Err(row_err("empty section".into()));
        }
        let is_anomaly = match &record[1] {
            "0" => false,
            "1" => true,
            other => return Err(row_err(format!("label must be 0 or 1, found `{other}`"))),
        };
        let score: f64 = record[2]
            .parse()
            .map_err(|_| row_err(format!("score `{}` is not a number", &record[2])))?;
        if !score.is_finite() {
            return Err(row_err(format!("score `{}` is not finite", &record[2])));
        }
        clips.push(ScoredClip {
            section,
            is_anomaly,
            score,
        });
    }
    if clips.is_empty() {
        return Err(ScoresCsvError::Empty { path: shown });
    }
    Ok(clips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn clip(section: &str, is_anomaly: bool, score: f64) -> ScoredClip {
        ScoredClip {
            section: section.into(),
            is_anomaly,
            score,
        }
    }

    #[test]
    fn a_section_without_anomalies_is_labelled_and_left_out_of_the_means() {
        let clips = vec![
            clip("00", false, 0.1),
            clip("00", true, 0.9),
            clip("01", false, 0.2),
            clip("01", false, 0.3),
        ];
        let ev = evaluate_sections(&clips, 0.1).unwrap();
        assert_eq!(ev.sections.len(), 2);
        assert_eq!(ev.sections[1].auc, None);
        assert!(
            ev.sections[1]
                .note
                .as_deref()
                .unwrap()
                .contains("one class")
        );
        assert_eq!(ev.mean.auc, Some(1.0));
        assert_eq!(ev.hmean.auc, Some(1.0));
    }

    #[test]
    fn harmonic_mean_is_zero_when_a_value_is_zero_and_below_the_mean_otherwise() {
        assert_eq!(harmonic_mean(&[0.0, 1.0]), Some(0.0));
        let h = harmonic_mean(&[0.5, 1.0]).unwrap();
        assert!((h - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(harmonic_mean(&[]), None);
    }

    #[test]
    fn a_malformed_row_is_reported_with_its_line_number() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "section,label,score\n00,0,0.1\n00,2,0.3").unwrap();
        let err = read_scores_csv(f.path()).unwrap_err().to_string();
        assert!(err.contains(":3:"), "{err}");
        assert!(err.contains("label must be 0 or 1"), "{err}");
    }

    #[test]
    fn a_wrong_header_is_rejected() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "sec,label,score\n00,0,0.1").unwrap();
        assert!(matches!(
            read_scores_csv(f.path()),
            Err(ScoresCsvError::Header { .. })
        ));
    }
}
