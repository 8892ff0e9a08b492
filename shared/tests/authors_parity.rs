//! `analyze --authors-summary` reproduces the study's own `analyze_proxy_correlations.py`
//! on a synthetic `results_summary.csv` (fixture made by `tests/fixtures/gen/authors_fixture.py`,
//! which runs the reference script; Pearson is scipy's on the script's aggregated inputs).

use std::path::PathBuf;

use asdsweep_shared::analysis::TestSettings;
use asdsweep_shared::analysis::authors::{AuthorsOptions, analyze_authors_summary};
use serde_json::Value;

fn close(got: f64, want: &Value, tol: f64, what: &str) {
    match want.as_f64() {
        None => assert!(got.is_nan(), "{what}: expected NaN, got {got}"),
        Some(w) => assert!((got - w).abs() <= tol, "{what}: got {got}, want {w}"),
    }
}

#[test]
fn the_reference_scripts_rows_are_reproduced() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/authors");
    let rows = analyze_authors_summary(
        &dir.join("results_summary.csv"),
        &AuthorsOptions::default(),
        &TestSettings::default(),
    )
    .expect("analysis runs");
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(rows.len(), expected.len());
    for (got, want) in rows.iter().zip(&expected) {
        let what = format!("{} / {}", want["family"], want["asd_metric"]);
        assert_eq!(got.family, want["family"].as_str().unwrap(), "{what}");
        assert_eq!(
            got.asd_metric,
            want["asd_metric"].as_str().unwrap(),
            "{what}"
        );
        assert_eq!(got.n as u64, want["n"].as_u64().unwrap(), "{what} n");
        close(
            got.pearson_r,
            &want["pearson_r"],
            1e-9,
            &format!("{what} pearson r"),
        );
        close(
            got.pearson_p,
            &want["pearson_p"],
            1e-9,
            &format!("{what} pearson p"),
        );
        close(
            got.spearman_rho,
            &want["spearman_rho"],
            1e-9,
            &format!("{what} spearman rho"),
        );
        close(
            got.spearman_p,
            &want["spearman_p"],
            1e-6,
            &format!("{what} spearman p"),
        );
        close(got.q, &want["q"], 1e-6, &format!("{what} q"));
    }
}
