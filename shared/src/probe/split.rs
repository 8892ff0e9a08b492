//! The study's probe protocols on labelled test clips: in-domain half split (per section,
//! sorted names, first half of normals and of anomalies is the test set, one pooled probe)
//! and out-of-domain leave-one-section-out (pooled AUC over folds).

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayView1};
use serde::Serialize;

use super::ProbeError;
use super::linear::{LinearProbeConfig, train_linear_probe};
use crate::metrics::auc::{partial_auc, roc_auc};

/// One test clip for a probe: its file name, section, label and clip embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeClip {
    /// File name (sorting key within a section).
    pub name: String,
    /// Section name.
    pub section: String,
    /// True for an anomaly.
    pub is_anomaly: bool,
    /// One embedding vector per clip.
    pub embedding: ndarray::Array1<f64>,
}

/// How many clips of each class a section puts in the in-domain test set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HalfSplitRule {
    /// ⌊n/2⌋ of each class of each section (DESIGN.md).
    #[default]
    PerSection,
    /// The reference code's default: ⌊anomalies of the first sorted section / 2⌋ for every
    /// section and both classes.
    Legacy,
}

/// Indices of a probe's training and test clips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIndices {
    /// Name of the split (`half` or the held-out section).
    pub name: String,
    /// Clips the probe is trained on.
    pub train: Vec<usize>,
    /// Clips the probe scores.
    pub test: Vec<usize>,
}

/// Scores of one probe run: AUC/pAUC over its pooled test clips.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeOutcome {
    /// `half` or `loso`.
    pub protocol: String,
    /// Pooled ROC AUC.
    pub auc: f64,
    /// Pooled McClish pAUC at max FPR 0.1.
    pub pauc: f64,
    /// AUC of each fold (leave-one-section-out only), by held-out section.
    pub folds: Vec<(String, f64)>,
    /// Test clip indices with their P(anomaly).
    #[serde(skip)]
    pub scores: Vec<(usize, f64)>,
}

/// Sections with at least one normal and one anomalous clip; clip indices sorted by name.
fn valid_sections(clips: &[ProbeClip]) -> BTreeMap<&str, (Vec<usize>, Vec<usize>)> {
    let mut by: BTreeMap<&str, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, c) in clips.iter().enumerate() {
        let e = by.entry(c.section.as_str()).or_default();
        if c.is_anomaly {
            e.1.push(i)
        } else {
            e.0.push(i)
        }
    }
    by.retain(|_, (n, a)| !n.is_empty() && !a.is_empty());
    for (n, a) in by.values_mut() {
        n.sort_by(|&x, &y| clips[x].name.cmp(&clips[y].name));
        a.sort_by(|&x, &y| clips[x].name.cmp(&clips[y].name));
    }
    by
}

/// The in-domain half split; sections too small to give both halves of both classes are skipped.
pub fn half_split(clips: &[ProbeClip], rule: HalfSplitRule) -> Result<SplitIndices, ProbeError> {
    let sections = valid_sections(clips);
    let legacy_half = sections.values().next().map_or(0, |(_, a)| a.len() / 2);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (normals, anomalies) in sections.values() {
        let (hn, ha) = match rule {
            HalfSplitRule::PerSection => (normals.len() / 2, anomalies.len() / 2),
            HalfSplitRule::Legacy => (legacy_half, legacy_half),
        };
        if hn == 0 || ha == 0 || normals.len() <= hn || anomalies.len() <= ha {
            continue;
        }
        test.extend(&normals[..hn]);
        test.extend(&anomalies[..ha]);
        train.extend(&normals[hn..]);
        train.extend(&anomalies[ha..]);
    }
    if test.is_empty() {
        return Err(ProbeError::Split(
            "no section has at least 2 normal and 2 anomalous clips for the half split".into(),
        ));
    }
    Ok(SplitIndices {
        name: "half".into(),
        train,
        test,
    })
}

/// Leave-one-section-out folds over sections holding both classes (at least two such sections).
pub fn leave_one_section_out(clips: &[ProbeClip]) -> Result<Vec<SplitIndices>, ProbeError> {
    let sections = valid_sections(clips);
    if sections.len() < 2 {
        return Err(ProbeError::Split(format!(
            "leave-one-section-out needs at least 2 sections with both classes, found {}",
            sections.len()
        )));
    }
    Ok(sections
        .keys()
        .map(|held| {
            let mut train = Vec::new();
            let mut test = Vec::new();
            for (s, (n, a)) in &sections {
                let target = if s == held { &mut test } else { &mut train };
                target.extend(n);
                target.extend(a);
            }
            SplitIndices {
                name: (*held).to_string(),
                train,
                test,
            }
        })
        .collect())
}

fn stack(clips: &[ProbeClip], idx: &[usize]) -> Result<Array2<f64>, ProbeError> {
    let dim = clips[idx[0]].embedding.len();
    let mut out = Array2::zeros((idx.len(), dim));
    for (r, &i) in idx.iter().enumerate() {
        let e: ArrayView1<'_, f64> = clips[i].embedding.view();
        if e.len() != dim {
            return Err(ProbeError::DimensionMismatch {
                what: clips[i].name.clone(),
                got: e.len(),
                expected: dim,
            });
        }
        out.row_mut(r).assign(&e);
    }
    Ok(out)
}

fn run_split(
    clips: &[ProbeClip],
    split: &SplitIndices,
    config: &LinearProbeConfig,
) -> Result<Vec<(usize, f64)>, ProbeError> {
    let x = stack(clips, &split.train)?;
    let y: Vec<bool> = split.train.iter().map(|&i| clips[i].is_anomaly).collect();
    let head = train_linear_probe(x.view(), &y, config)?;
    let xt = stack(clips, &split.test)?;
    let p = head.anomaly_probability(xt.view());
    Ok(split.test.iter().copied().zip(p.iter().copied()).collect())
}

fn pooled(clips: &[ProbeClip], scores: &[(usize, f64)]) -> Result<(f64, f64), ProbeError> {
    let labels: Vec<bool> = scores.iter().map(|&(i, _)| clips[i].is_anomaly).collect();
    let s: Vec<f64> = scores.iter().map(|&(_, v)| v).collect();
    let auc = roc_auc(&labels, &s).map_err(|e| ProbeError::Split(e.to_string()))?;
    let p = partial_auc(&labels, &s, 0.1).map_err(|e| ProbeError::Split(e.to_string()))?;
    Ok((auc, p.mcclish))
}

/// In-domain linear probe: one probe on the pooled second halves, scored on the first halves.
pub fn linear_probe_in_domain(
    clips: &[ProbeClip],
    rule: HalfSplitRule,
    config: &LinearProbeConfig,
) -> Result<ProbeOutcome, ProbeError> {
    let split = half_split(clips, rule)?;
    let scores = run_split(clips, &split, config)?;
    let (auc, pauc) = pooled(clips, &scores)?;
    Ok(ProbeOutcome {
        protocol: "half".into(),
        auc,
        pauc,
        folds: Vec::new(),
        scores,
    })
}

/// Out-of-domain linear probe: leave one section out, pooled AUC over all held-out clips.
pub fn linear_probe_out_of_domain(
    clips: &[ProbeClip],
    config: &LinearProbeConfig,
) -> Result<ProbeOutcome, ProbeError> {
    let mut scores = Vec::new();
    let mut folds = Vec::new();
    for split in leave_one_section_out(clips)? {
        let fold = run_split(clips, &split, config)?;
        folds.push((split.name.clone(), pooled(clips, &fold)?.0));
        scores.extend(fold);
    }
    let (auc, pauc) = pooled(clips, &scores)?;
    Ok(ProbeOutcome {
        protocol: "loso".into(),
        auc,
        pauc,
        folds,
        scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn clip(name: &str, section: &str, is_anomaly: bool, v: f64) -> ProbeClip {
        ProbeClip {
            name: name.into(),
            section: section.into(),
            is_anomaly,
            embedding: array![v, 1.0 - v],
        }
    }

    fn clips() -> Vec<ProbeClip> {
        let mut out = Vec::new();
        for s in ["00", "01"] {
            for k in 0..4 {
                out.push(clip(
                    &format!("{s}_normal_{k}"),
                    s,
                    false,
                    0.1 * f64::from(k),
                ));
                out.push(clip(
                    &format!("{s}_anomaly_{k}"),
                    s,
                    true,
                    2.0 + 0.1 * f64::from(k),
                ));
            }
        }
        out
    }

    #[test]
    fn half_split_tests_on_the_first_sorted_half_of_each_class_and_section() {
        let c = clips();
        let s = half_split(&c, HalfSplitRule::PerSection).unwrap();
        let names: Vec<&str> = s.test.iter().map(|&i| c[i].name.as_str()).collect();
        assert_eq!(
            names,
            [
                "00_normal_0",
                "00_normal_1",
                "00_anomaly_0",
                "00_anomaly_1",
                "01_normal_0",
                "01_normal_1",
                "01_anomaly_0",
                "01_anomaly_1"
            ]
        );
        assert_eq!(s.train.len(), 8);
    }

    #[test]
    fn leave_one_section_out_holds_each_section_out_once() {
        let folds = leave_one_section_out(&clips()).unwrap();
        assert_eq!(folds.len(), 2);
        assert_eq!(folds[0].name, "00");
        assert_eq!(folds[0].test.len(), 8);
        assert_eq!(folds[0].train.len(), 8);
    }

    #[test]
    fn one_section_cannot_be_left_out() {
        let c: Vec<ProbeClip> = clips().into_iter().filter(|c| c.section == "00").collect();
        assert!(matches!(
            leave_one_section_out(&c),
            Err(ProbeError::Split(_))
        ));
    }

    #[test]
    fn probes_separate_separable_embeddings() {
        let cfg = LinearProbeConfig {
            epochs: 200,
            ..LinearProbeConfig::default()
        };
        let id = linear_probe_in_domain(&clips(), HalfSplitRule::PerSection, &cfg).unwrap();
        assert_eq!(id.auc, 1.0);
        let ood = linear_probe_out_of_domain(&clips(), &cfg).unwrap();
        assert_eq!(ood.auc, 1.0);
        assert_eq!(ood.folds.len(), 2);
    }
}
