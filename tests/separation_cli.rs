//! The separation family end to end through real processes: `asdsweep synth` makes a small
//! dataset of two machine types, `serve` runs on a temporary SQLite, a `worker --data`
//! process trains a tiny separator for one epoch per target machine type on mixtures with
//! the other type, then evaluates each checkpoint: SI-SDR per SNR and of the unprocessed
//! mixtures, every probe metric, provenance. `asdsweep mix` and `asdsweep separate` then
//! run a mixture through one of the uploaded checkpoints.

mod processes;

use processes::{asdsweep, assert_probed, results, serve, synth, text, wait_finished, worker};
use std::time::Duration;

#[test]
fn a_tiny_separator_trains_per_machine_type_then_reports_si_sdr_and_every_probe_metric() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fingerprint = synth(&data, "3", "1.0");
    let spec = dir.path().join("sep.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
version = 1
name = "sep-e2e"
devices = ["pump", "fan"]
[queue]
lease_ttl_ms = 20000
[dataset]
path = "synth"
fingerprint = "{fingerprint}"
[[family]]
kind = "separation"
epochs = 1
batch_size = 4
checkpoint_every = 1
proxy_mixtures = 2
configs = [{{ name = "c4-cb1", channels = 4, blocks = 1 }}]
"#
        ),
    )
    .unwrap();
    let (_server, addr) = serve(dir.path());
    let out = asdsweep(&["launch", spec.to_str().unwrap(), "--coordinator", &addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(4 jobs)"),
        "{}",
        text(&out.stdout)
    );
    let log = dir.path().join("w.log");
    let _w = worker(&addr, &data, &dir.path().join("cache"), &log);
    wait_finished(&addr, "sep-e2e", Duration::from_secs(600), &[log]);

    let rows = results(&addr, "sep-e2e");
    assert_eq!(rows.len(), 4, "{rows:#?}");
    for r in &rows {
        assert_eq!(r["state"], "succeeded", "{r:#}");
        let p = &r["provenance"];
        assert_eq!(p["dataset_fingerprint"], fingerprint.as_str(), "{r:#}");
        for key in [
            "spec_hash",
            "seed",
            "backend",
            "device",
            "code_version",
            "epochs_run",
            "best_loss",
            "checkpoint",
        ] {
            assert!(!p[key].is_null(), "provenance.{key} missing in {r:#}");
        }
    }
    for machine in ["fan", "pump"] {
        let train = rows
            .iter()
            .find(|r| r["stage"] == "train" && r["device"] == machine)
            .unwrap_or_else(|| panic!("a training job for {machine}: {rows:#?}"));
        assert!(
            train["extra"]["train_clips"].as_u64() >= Some(6),
            "{train:#}"
        );
        assert_eq!(train["extra"]["interferer_types"], 1, "{train:#}");
        let eval = rows
            .iter()
            .find(|r| r["stage"] == "eval" && r["device"] == machine)
            .unwrap();
        assert_eq!(
            eval["provenance"]["checkpoint"], train["provenance"]["checkpoint"],
            "{eval:#}"
        );
        assert_eq!(eval["proxy_metric"], "si_sdr", "{eval:#}");
        assert_eq!(eval["proxy_direction"], "higher_is_better", "{eval:#}");
        let sdr = eval["proxy_value"].as_f64().expect("an SI-SDR");
        let per_snr: Vec<f64> = ["si_sdr_m5db", "si_sdr_0db", "si_sdr_5db"]
            .iter()
            .map(|m| {
                eval["metrics"][m]["value"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{m} in {eval:#}"))
            })
            .collect();
        assert!(
            (sdr - per_snr.iter().sum::<f64>() / 3.0).abs() < 1e-9,
            "the proxy is the mean of the three SNRs: {eval:#}"
        );
        let unprocessed = eval["metrics"]["si_sdr_unprocessed"]["value"]
            .as_f64()
            .expect("the unprocessed mixtures' SI-SDR");
        assert!(unprocessed.is_finite() && sdr.is_finite(), "{eval:#}");
        assert_probed(eval);
    }

    // A person listens: mix a pump clip with a fan clip, separate it with the pump's checkpoint.
    let clips = |machine: &str| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = walk(&data.join("synth").join(machine))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("train"))
            .collect();
        v.sort();
        v
    };
    let mixture = dir.path().join("mix.wav");
    let target = dir.path().join("target.wav");
    let out = asdsweep(&[
        "mix",
        clips("pump")[0].to_str().unwrap(),
        clips("fan")[0].to_str().unwrap(),
        "--snr",
        "-3",
        "--out",
        mixture.to_str().unwrap(),
        "--target-out",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sha = rows
        .iter()
        .find(|r| r["stage"] == "train" && r["device"] == "pump")
        .unwrap()["provenance"]["checkpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let estimate = dir.path().join("estimate.wav");
    let out = asdsweep(&[
        "separate",
        "--checkpoint",
        &sha,
        "--artifacts",
        dir.path().join("artifacts").to_str().unwrap(),
        mixture.to_str().unwrap(),
        "--out",
        estimate.to_str().unwrap(),
        "--reference",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("SI-SDR against") && said.contains("estimate"),
        "{said}"
    );
    let written = std::fs::metadata(&estimate).unwrap().len();
    let mixed = std::fs::metadata(&mixture).unwrap().len();
    assert_eq!(written, mixed, "the estimate is as long as the mixture");

    // A sha without --artifacts, and a file that is no checkpoint, are named.
    let out = asdsweep(&[
        "separate",
        "--checkpoint",
        &sha,
        mixture.to_str().unwrap(),
        "--out",
        estimate.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--artifacts"),
        "{}",
        text(&out.stderr)
    );
    let out = asdsweep(&[
        "separate",
        "--checkpoint",
        mixture.to_str().unwrap(),
        mixture.to_str().unwrap(),
        "--out",
        estimate.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("checkpoint"),
        "{}",
        text(&out.stderr)
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "wav") {
            out.push(path);
        }
    }
    out
}
