//! The probes every family's evaluation ends with: Mahalanobis and both linear probes on
//! a machine type's clip embeddings, reported with the family's proxy metrics.

use super::skeleton::Measured;
use crate::registry::JobOutput;
use asdsweep_shared::probe::linear::LinearProbeConfig;
use asdsweep_shared::probe::report::{ClipEmbedding, ProbeOptions, run_probes};
use asdsweep_shared::proto::{MetricDirection, NamedMetric};
use serde_json::json;

/// Runs the Mahalanobis and both linear probes on a machine type's clip embeddings and
/// reports them with the family's proxy metrics (`measured`: the main one first, the
/// others as further named metrics, each with its declared direction). A probe or a proxy
/// that cannot be computed on this data (say, one section only: no leave-one-section-out)
/// leaves its value empty and says why in `extra.problems`; the others still report.
pub(crate) fn probe_all(
    clips: &[ClipEmbedding],
    seed: u64,
    measured: &[Measured],
    n_train: usize,
    n_test: usize,
) -> JobOutput {
    let none = ProbeOptions {
        mahalanobis: false,
        linear_in_domain: false,
        linear_out_of_domain: false,
        linear: LinearProbeConfig {
            seed,
            ..LinearProbeConfig::default()
        },
        ..ProbeOptions::default()
    };
    let mut problems = serde_json::Map::new();
    let mut note = |name: &str, e: String| {
        tracing::warn!(probe = name, error = %e, "probe not run");
        problems.insert(name.to_owned(), e.into());
    };
    let mut out = JobOutput::default();
    for (i, (metric, value)) in measured.iter().enumerate() {
        let direction = MetricDirection::from(metric.direction) as i32;
        let value = match value {
            Ok(v) => Some(*v),
            Err(e) => {
                note(metric.name, e.clone());
                None
            }
        };
        if i == 0 {
            out.proxy_metric = metric.name.to_owned();
            out.proxy_direction = direction;
            out.proxy_value = value;
        } else {
            out.metrics.push(NamedMetric {
                name: metric.name.to_owned(),
                value,
                direction,
            });
        }
    }
    let mut md_hmean = None;
    match run_probes(
        clips,
        &ProbeOptions {
            mahalanobis: true,
            ..none.clone()
        },
    ) {
        Ok(r) => {
            if let Some(md) = r.mahalanobis {
                out.md_auc = md.evaluation.mean.auc;
                out.md_pauc = md.evaluation.mean.pauc;
                md_hmean = Some(md.evaluation.hmean);
            }
        }
        Err(e) => note("mahalanobis", e.to_string()),
    }
    match run_probes(
        clips,
        &ProbeOptions {
            linear_in_domain: true,
            ..none.clone()
        },
    ) {
        Ok(r) => {
            if let Some(lp) = r.linear_in_domain {
                out.lp_in_auc = Some(lp.auc);
                out.lp_in_pauc = Some(lp.pauc);
            }
        }
        Err(e) => note("linear_in_domain", e.to_string()),
    }
    match run_probes(
        clips,
        &ProbeOptions {
            linear_out_of_domain: true,
            ..none
        },
    ) {
        Ok(r) => {
            if let Some(lp) = r.linear_out_of_domain {
                out.lp_out_auc = Some(lp.auc);
                out.lp_out_pauc = Some(lp.pauc);
            }
        }
        Err(e) => note("linear_out_of_domain", e.to_string()),
    }
    out.extra_json = json!({
        "md_hmean_auc": md_hmean.and_then(|h| h.auc),
        "md_hmean_pauc": md_hmean.and_then(|h| h.pauc),
        "train_clips": n_train,
        "test_clips": n_test,
        "pauc": "McClish-standardised, max FPR 0.1",
        "problems": problems,
    })
    .to_string();
    out
}
