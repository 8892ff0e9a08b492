//! End-to-end tests of `asdsweep evaluate-scores`, `probe` and `analyze` through the binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn asdsweep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asdsweep"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn close(got: &Value, want: &Value, tol: f64, what: &str) {
    match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= tol, "{what}: got {g}, want {w}"),
        (None, None) => {}
        _ => panic!("{what}: got {got}, want {want}"),
    }
}

#[test]
fn evaluate_scores_json_matches_scikit_learn() {
    let csv = fixtures().join("metrics/scores.csv");
    let got = json(&asdsweep(&[
        "evaluate-scores",
        csv.to_str().unwrap(),
        "--max-fpr",
        "0.1",
        "--json",
    ]));
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("metrics/scores_expected.json")).unwrap(),
    )
    .unwrap();
    let (gs, ws) = (
        got["sections"].as_array().unwrap(),
        want["sections"].as_array().unwrap(),
    );
    assert_eq!(gs.len(), ws.len());
    for (g, w) in gs.iter().zip(ws) {
        assert_eq!(g["section"], w["section"]);
        assert_eq!(g["n_normal"], w["n_normal"]);
        assert_eq!(g["n_anomaly"], w["n_anomaly"]);
        for k in ["auc", "pauc", "pauc_raw"] {
            close(&g[k], &w[k], 1e-9, k);
        }
    }
    for agg in ["mean", "hmean"] {
        for k in ["auc", "pauc"] {
            close(&got[agg][k], &want[agg][k], 1e-9, &format!("{agg} {k}"));
        }
    }
}

#[test]
fn evaluate_scores_prints_a_table_by_default() {
    let csv = fixtures().join("metrics/scores.csv");
    let out = asdsweep(&["evaluate-scores", csv.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("section") && text.contains("hmean") && text.contains("McClish"),
        "{text}"
    );
}

#[test]
fn a_malformed_scores_row_fails_with_its_line_number() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "section,label,score\n00,0,0.1\n00,1,oops").unwrap();
    let out = asdsweep(&["evaluate-scores", f.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":3:") && err.contains("not a number") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn a_section_without_anomalies_is_labelled_not_fatal() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "section,label,score\n00,0,0.1\n00,1,0.9\n01,0,0.2\n01,0,0.4"
    )
    .unwrap();
    let got = json(&asdsweep(&[
        "evaluate-scores",
        f.path().to_str().unwrap(),
        "--json",
    ]));
    assert!(got["sections"][1]["auc"].is_null());
    assert!(
        got["sections"][1]["note"]
            .as_str()
            .unwrap()
            .contains("one class")
    );
    assert_eq!(got["mean"]["auc"], 1.0);
}

#[test]
fn analyze_authors_summary_reproduces_the_reference_script() {
    let dir = fixtures().join("authors");
    let got = json(&asdsweep(&[
        "analyze",
        "--authors-summary",
        dir.join("results_summary.csv").to_str().unwrap(),
        "--json",
    ]));
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let (g, w) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(g.len(), w.len());
    for (gr, wr) in g.iter().zip(w) {
        assert_eq!(gr["family"], wr["family"]);
        assert_eq!(gr["asd_metric"], wr["asd_metric"]);
        assert_eq!(gr["n"], wr["n"]);
        for (k, tol) in [
            ("pearson_r", 1e-9),
            ("pearson_p", 1e-9),
            ("spearman_rho", 1e-9),
            ("spearman_p", 1e-6),
            ("q", 1e-6),
        ] {
            close(
                &gr[k],
                &wr[k],
                tol,
                &format!("{} {} {k}", wr["family"], wr["asd_metric"]),
            );
        }
    }
}

#[test]
fn analyze_long_table_labels_too_few_configs_and_reports_alignment() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let mut text = String::from("family,config,device,proxy,lp_auc,md_auc\n");
    for (k, cfg) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        for (d, dev) in ["fan", "pump"].iter().enumerate() {
            let x = k as f64 + 0.01 * d as f64;
            text += &format!(
                "sep,{cfg},{dev},{x},{},{}\n",
                0.6 + 0.05 * x,
                0.9 - 0.03 * x
            );
        }
    }
    text += "ce,a,fan,0.5,0.7,0.6\nce,b,fan,0.6,0.8,0.5\n";
    write!(f, "{text}").unwrap();
    let got = json(&asdsweep(&[
        "analyze",
        f.path().to_str().unwrap(),
        "--json",
    ]));
    let tests = got["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 4);
    let ce = tests.iter().find(|t| t["family"] == "ce").unwrap();
    assert!(ce["pearson_r"].is_null() && ce["note"].as_str().unwrap().contains("< 3"));
    let sep_lp = tests
        .iter()
        .find(|t| t["family"] == "sep" && t["asd_metric"] == "lp_auc")
        .unwrap();
    close(&sep_lp["spearman_rho"], &Value::from(1.0), 1e-12, "rho");
    close(
        &sep_lp["spearman_p"],
        &Value::from(2.0 / 120.0),
        1e-12,
        "exact p",
    );
    let sep = got["alignment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["family"] == "sep")
        .unwrap();
    assert_eq!(sep["difficulty"]["verdict"], "discriminative");
    assert!(
        sep["metrics"][0]["direction"]["rule"]
            .as_str()
            .unwrap()
            .contains("Fisher")
    );
}

fn write_probe_data(dir: &Path, identical_train: bool) -> PathBuf {
    let manifest = dir.join("manifest.csv");
    let mut m = String::from("file,section,split,label\n");
    for s in ["00", "01"] {
        for k in 0..6 {
            let v = k as f64 * 0.1;
            let train = if identical_train {
                ndarray::array![[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
            } else {
                ndarray::array![[v, 1.0 - v, v * v], [v + 0.05, 0.9 - v, 0.3]]
            };
            let name = format!("sec{s}_train_normal_{k}");
            ndarray_npy::write_npy(dir.join(format!("{name}.npy")), &train).unwrap();
            m += &format!("{name}.wav,{s},train,0\n");
            let normal = ndarray::array![v as f32, 1.0 - v as f32, 0.1f32];
            let name = format!("sec{s}_test_normal_{k}");
            ndarray_npy::write_npy(dir.join(format!("{name}.npy")), &normal).unwrap();
            m += &format!("{name}.wav,{s},test,0\n");
            let anomaly = ndarray::array![[5.0 + v, -4.0, 3.0]];
            let name = format!("sec{s}_test_anomaly_{k}");
            ndarray_npy::write_npy(dir.join(format!("{name}.npy")), &anomaly).unwrap();
            m += &format!("{name}.wav,{s},test,1\n");
        }
    }
    std::fs::write(&manifest, m).unwrap();
    manifest
}

#[test]
fn probe_scores_npy_embeddings_and_writes_a_scores_csv() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_probe_data(dir.path(), false);
    let scores = dir.path().join("scores.csv");
    let got = json(&asdsweep(&[
        "probe",
        "--embeddings",
        dir.path().to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--scores-out",
        scores.to_str().unwrap(),
        "--lr",
        "0.01",
        "--json",
    ]));
    assert_eq!(got["mahalanobis"]["evaluation"]["mean"]["auc"], 1.0);
    assert_eq!(got["linear_in_domain"]["auc"], 1.0);
    assert_eq!(got["linear_out_of_domain"]["auc"], 1.0);
    let again = json(&asdsweep(&[
        "evaluate-scores",
        scores.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(again["mean"]["auc"], 1.0);
}

#[test]
fn probe_with_identical_training_rows_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_probe_data(dir.path(), true);
    let out = asdsweep(&[
        "probe",
        "--embeddings",
        dir.path().to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--probe",
        "md",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("covariance") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn probe_names_a_missing_embedding() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_probe_data(dir.path(), false);
    std::fs::remove_file(dir.path().join("sec00_test_anomaly_3.npy")).unwrap();
    let out = asdsweep(&[
        "probe",
        "--embeddings",
        dir.path().to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sec00_test_anomaly_3.npy") && err.contains("does not exist"),
        "{err}"
    );
}
