//! Parity with the reference libraries: fixtures in `tests/fixtures/metrics/` are made by
//! `tests/fixtures/gen/metrics_fixtures.py` with scikit-learn, scipy and torchmetrics' formulas.

use std::path::PathBuf;

use asdsweep_shared::metrics::auc::{partial_auc, roc_auc};
use asdsweep_shared::metrics::proxy::{macro_f1, mean_l1_error, si_sdr, uniformity};
use asdsweep_shared::metrics::sections::{evaluate_sections, read_scores_csv};
use asdsweep_shared::probe::linear::{Adam, LogisticHead, cross_entropy_gradient};
use asdsweep_shared::probe::mahalanobis::{
    CovarianceEstimator, Mahalanobis, ledoit_wolf, sample_covariance,
};
use asdsweep_shared::stats::bh::benjamini_hochberg;
use asdsweep_shared::stats::correlation::{PValueMethod, kendall_tau_b, pearson, spearman};
use asdsweep_shared::stats::interval::pearson_fisher_interval;
use ndarray::{Array1, Array2};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/metrics")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn vec_f(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(f).collect()
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = v.as_array().expect("rows").iter().map(vec_f).collect();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    if want.is_nan() {
        assert!(got.is_nan(), "{what}: expected NaN, got {got}");
    } else {
        assert!(
            (got - want).abs() <= tol,
            "{what}: got {got}, want {want} (tol {tol})"
        );
    }
}

#[test]
fn auc_and_both_paucs_match_scikit_learn_within_1e_9() {
    let fx = fixture("auc.json");
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let labels: Vec<bool> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64() == Some(1))
            .collect();
        let scores = vec_f(&case["scores"]);
        close(
            roc_auc(&labels, &scores).unwrap(),
            f(&case["auc"]),
            1e-9,
            &format!("{name} auc"),
        );
        for (p, want) in case["pauc"].as_object().unwrap() {
            let max_fpr: f64 = p.parse().unwrap();
            let got = partial_auc(&labels, &scores, max_fpr).unwrap();
            close(
                got.mcclish,
                f(&want["mcclish"]),
                1e-9,
                &format!("{name} pauc@{p}"),
            );
            close(
                got.raw,
                f(&want["raw"]),
                1e-9,
                &format!("{name} raw pauc@{p}"),
            );
        }
    }
}

#[test]
fn section_evaluation_of_the_scores_csv_matches_scikit_learn_and_scipy_hmean() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/metrics/scores.csv");
    let ev = evaluate_sections(&read_scores_csv(&path).unwrap(), 0.1).unwrap();
    let fx = fixture("scores_expected.json");
    for (got, want) in ev.sections.iter().zip(fx["sections"].as_array().unwrap()) {
        assert_eq!(got.section, want["section"].as_str().unwrap());
        close(got.auc.unwrap(), f(&want["auc"]), 1e-9, "section auc");
        close(got.pauc.unwrap(), f(&want["pauc"]), 1e-9, "section pauc");
        close(
            got.pauc_raw.unwrap(),
            f(&want["pauc_raw"]),
            1e-9,
            "section raw pauc",
        );
        assert_eq!(got.n_normal as u64, want["n_normal"].as_u64().unwrap());
    }
    close(
        ev.mean.auc.unwrap(),
        f(&fx["mean"]["auc"]),
        1e-9,
        "mean auc",
    );
    close(
        ev.hmean.pauc.unwrap(),
        f(&fx["hmean"]["pauc"]),
        1e-9,
        "hmean pauc",
    );
}

#[test]
fn pearson_spearman_and_kendall_match_scipy() {
    let fx = fixture("correlation.json");
    for (k, case) in fx["cases"].as_array().unwrap().iter().enumerate() {
        let (x, y) = (vec_f(&case["x"]), vec_f(&case["y"]));
        let p = pearson(&x, &y).unwrap();
        close(
            p.estimate,
            f(&case["pearson_r"]),
            1e-9,
            &format!("case {k} pearson r"),
        );
        close(
            p.p_value,
            f(&case["pearson_p"]),
            1e-9,
            &format!("case {k} pearson p"),
        );
        if let Some(ci) = case["pearson_ci"].as_array() {
            let got = pearson_fisher_interval(p.estimate, x.len(), 0.95).unwrap();
            close(got.low, f(&ci[0]), 1e-9, &format!("case {k} ci low"));
            close(got.high, f(&ci[1]), 1e-9, &format!("case {k} ci high"));
        }
        let s = spearman(&x, &y, 0, 0).unwrap();
        assert!(matches!(s.method, PValueMethod::ExactPermutation { .. }));
        close(
            s.estimate,
            f(&case["spearman_rho"]),
            1e-9,
            &format!("case {k} spearman rho"),
        );
        close(
            s.p_value,
            f(&case["spearman_exact_p"]),
            1e-6,
            &format!("case {k} spearman exact p"),
        );
        let t = kendall_tau_b(&x, &y).unwrap();
        close(
            t.estimate,
            f(&case["kendall_tau"]),
            1e-9,
            &format!("case {k} kendall tau"),
        );
        close(
            t.p_value,
            f(&case["kendall_p"]),
            1e-9,
            &format!("case {k} kendall p"),
        );
    }
}

#[test]
fn benjamini_hochberg_matches_scipy_within_1e_12() {
    let fx = fixture("bh.json");
    for case in fx["cases"].as_array().unwrap() {
        let q = benjamini_hochberg(&vec_f(&case["p"]));
        for (got, want) in q.iter().zip(vec_f(&case["q"])) {
            close(*got, want, 1e-12, "bh q");
        }
    }
}

#[test]
fn mahalanobis_with_pinv_and_ledoit_wolf_matches_numpy_and_scikit_learn_within_1e_6() {
    let fx = fixture("mahalanobis.json");
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (train, test) = (matrix(&case["train"]), matrix(&case["test"]));
        let rel = |got: f64, want: f64, what: &str| {
            close(
                got,
                want,
                1e-6 * want.abs().max(1.0),
                &format!("{name} {what}"),
            )
        };
        let (_, cov) = sample_covariance(train.view()).unwrap();
        for (g, w) in cov.iter().zip(matrix(&case["sample_cov"]).iter()) {
            rel(*g, *w, "sample cov");
        }
        let (_, lw, shrinkage) = ledoit_wolf(train.view()).unwrap();
        rel(shrinkage, f(&case["lw_shrinkage"]), "lw shrinkage");
        for (g, w) in lw.iter().zip(matrix(&case["lw_cov"]).iter()) {
            rel(*g, *w, "lw cov");
        }
        for (estimator, dist_key, clip_key) in [
            (
                CovarianceEstimator::Sample,
                "sample_sq_dist",
                "clip_score_sample",
            ),
            (
                CovarianceEstimator::LedoitWolf,
                "lw_sq_dist",
                "clip_score_lw",
            ),
        ] {
            let md = Mahalanobis::fit(train.view(), estimator).unwrap();
            let d = md.squared_distances(test.view()).unwrap();
            for (g, w) in d.iter().zip(vec_f(&case[dist_key])) {
                rel(*g, w, dist_key);
            }
            rel(
                md.clip_score(test.view()).unwrap(),
                f(&case[clip_key]),
                clip_key,
            );
        }
    }
}

#[test]
fn proxy_metrics_match_torchmetrics_formula_and_scikit_learn() {
    let fx = fixture("proxy.json");
    for case in fx["si_sdr"].as_array().unwrap() {
        let got = si_sdr(&vec_f(&case["estimate"]), &vec_f(&case["target"])).unwrap();
        close(got, f(&case["si_sdr"]), 1e-4, "si-sdr");
    }
    close(
        uniformity(matrix(&fx["uniformity"]["z"]).view()).unwrap(),
        f(&fx["uniformity"]["value"]),
        1e-9,
        "uniformity",
    );
    let ints = |v: &Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    let f1 = macro_f1(
        &ints(&fx["macro_f1"]["truth"]),
        &ints(&fx["macro_f1"]["pred"]),
    )
    .unwrap();
    close(f1, f(&fx["macro_f1"]["value"]), 1e-12, "macro f1");
    let l1 = mean_l1_error(
        matrix(&fx["l1"]["input"]).view(),
        matrix(&fx["l1"]["reconstruction"]).view(),
    )
    .unwrap();
    close(l1, f(&fx["l1"]["value"]), 1e-12, "l1");
}

#[test]
fn adam_steps_on_the_logistic_head_match_the_numpy_pytorch_formula() {
    let fx = fixture("adam.json");
    let mut head = LogisticHead {
        weight: matrix(&fx["init"]["weight"]),
        bias: Array1::from(vec_f(&fx["init"]["bias"])),
    };
    let mut adam = Adam::new(head.weight.ncols(), f(&fx["lr"]));
    for (t, step) in fx["steps"].as_array().unwrap().iter().enumerate() {
        let x = matrix(&step["x"]);
        let y: Array1<usize> = step["y"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let (loss, gw, gb, _) = cross_entropy_gradient(&head, x.view(), y.view());
        close(loss, f(&step["loss"]), 1e-12, &format!("step {t} loss"));
        adam.step(&mut head, &gw, &gb);
        for (g, w) in head.weight.iter().zip(matrix(&step["weight"]).iter()) {
            close(*g, *w, 1e-12, &format!("step {t} weight"));
        }
        for (g, w) in head.bias.iter().zip(vec_f(&step["bias"])) {
            close(*g, w, 1e-12, &format!("step {t} bias"));
        }
    }
}
