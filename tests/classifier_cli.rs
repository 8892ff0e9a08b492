//! The classification family end to end through real processes: `asdsweep synth` makes a
//! small dataset, `serve` runs on a temporary SQLite, `worker --data` processes train a
//! tiny ResNet-18 once across both machine types (cross-entropy and ArcFace), then
//! evaluate its embeddings on each machine type; a worker killed mid-training leaves a
//! checkpoint that the next attempt resumes from.

mod processes;

use processes::{
    asdsweep, assert_probed, kill_after_uploads, results, resumed_epoch, serve, synth, text,
    wait_finished, worker,
};
use std::time::Duration;

#[test]
fn a_tiny_resnet_trains_once_for_both_machine_types_then_each_is_evaluated_with_every_metric() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fingerprint = synth(&data, "4", "1.0");
    let spec = dir.path().join("cls.toml");
    let family = |head: &str| {
        format!(
            r#"
[[family]]
kind = "classifier"
head = "{head}"
epochs = 2
batch_size = 8
lr = 1e-3
checkpoint_every = 1
crop_frames = 24
n_mels = 64
held_out_fraction = 0.2
configs = [{{ name = "r18-w16", depth = 18, width_multiplier = 0.0625 }}, {{ name = "r18-w16-d05", depth = 18, width_multiplier = 0.0625, depth_multiplier = 0.5 }}]
"#
        )
    };
    std::fs::write(
        &spec,
        format!(
            r#"
version = 1
name = "cls-e2e"
devices = ["pump", "fan"]
[queue]
lease_ttl_ms = 20000
[dataset]
path = "synth"
fingerprint = "{fingerprint}"
{}{}"#,
            family("cross_entropy"),
            family("arcface")
        ),
    )
    .unwrap();
    let (_server, addr) = serve(dir.path());
    let out = asdsweep(&["launch", spec.to_str().unwrap(), "--coordinator", &addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(12 jobs)"),
        "{}",
        text(&out.stdout)
    );
    let logs = [dir.path().join("w1.log"), dir.path().join("w2.log")];
    let cache = dir.path().join("cache");
    let _w1 = worker(&addr, &data, &cache, &logs[0]);
    let _w2 = worker(&addr, &data, &cache, &logs[1]);
    wait_finished(&addr, "cls-e2e", Duration::from_secs(300), &logs);

    let rows = results(&addr, "cls-e2e");
    assert_eq!(rows.len(), 12);
    for r in &rows {
        assert_eq!(r["state"], "succeeded", "{r:#}");
        assert_eq!(r["proxy_metric"], "macro_f1", "{r:#}");
        let f1 = r["proxy_value"]
            .as_f64()
            .unwrap_or_else(|| panic!("no proxy value in {r:#}"));
        assert!((0.0..=1.0).contains(&f1), "{r:#}");
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
            "best_epoch",
            "wall_s",
            "checkpoint",
        ] {
            assert!(!p[key].is_null(), "provenance.{key} missing in {r:#}");
        }
        assert_eq!(p["epochs_run"], 2, "{r:#}");
    }
    let mut cells = Vec::new();
    for train in rows.iter().filter(|r| r["stage"] == "train") {
        assert_eq!(train["device"], "*", "{train:#}");
        assert_eq!(
            train["extra"]["machine_types"],
            serde_json::json!(["fan", "pump"]),
            "{train:#}"
        );
        assert_eq!(
            train["extra"]["losses"].as_array().map(Vec::len),
            Some(2),
            "{train:#}"
        );
        let evals: Vec<_> = rows
            .iter()
            .filter(|r| {
                r["stage"] == "eval"
                    && r["family"] == train["family"]
                    && r["config"] == train["config"]
            })
            .collect();
        assert_eq!(evals.len(), 2, "one evaluation per machine type");
        for r in evals {
            cells.push(format!(
                "{}/{}/{}",
                r["family"].as_str().unwrap(),
                r["config"].as_str().unwrap(),
                r["device"].as_str().unwrap()
            ));
            assert_eq!(
                r["proxy_value"], train["proxy_value"],
                "the checkpoint carries the proxy: {r:#}"
            );
            assert_eq!(
                r["provenance"]["checkpoint"], train["provenance"]["checkpoint"],
                "{r:#}"
            );
            assert_probed(r);
        }
    }
    cells.sort();
    assert_eq!(
        cells,
        [
            "arcface/r18-w16-d05/fan",
            "arcface/r18-w16-d05/pump",
            "arcface/r18-w16/fan",
            "arcface/r18-w16/pump",
            "ce/r18-w16-d05/fan",
            "ce/r18-w16-d05/pump",
            "ce/r18-w16/fan",
            "ce/r18-w16/pump",
        ]
    );
}

#[test]
fn a_worker_killed_mid_training_leaves_a_checkpoint_the_next_attempt_resumes_from() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synth(&data, "12", "2.0");
    let spec = dir.path().join("kill.toml");
    let epochs = 40;
    std::fs::write(
        &spec,
        format!(
            r#"
version = 1
name = "cls-kill"
devices = ["fan", "pump"]
[queue]
max_attempts = 3
lease_ttl_ms = 1000
backoff_base_ms = 0
backoff_max_ms = 0
[dataset]
path = "synth"
[[family]]
kind = "classifier"
head = "arcface"
epochs = {epochs}
batch_size = 8
lr = 1e-3
checkpoint_every = 1
crop_frames = 48
n_mels = 64
configs = [{{ name = "r18-w16", depth = 18, width_multiplier = 0.0625 }}]
"#
        ),
    )
    .unwrap();
    let (_server, addr) = serve(dir.path());
    assert!(
        asdsweep(&["launch", spec.to_str().unwrap(), "--coordinator", &addr])
            .status
            .success()
    );
    let first_log = dir.path().join("first.log");
    let mut first = worker(&addr, &data, &dir.path().join("cache"), &first_log);
    kill_after_uploads(&mut first, &first_log, 2);

    let second_log = dir.path().join("second.log");
    let _second = worker(&addr, &data, &dir.path().join("cache2"), &second_log);
    wait_finished(
        &addr,
        "cls-kill",
        Duration::from_secs(240),
        std::slice::from_ref(&second_log),
    );
    let log = std::fs::read_to_string(&second_log).unwrap();
    let epoch = resumed_epoch(&log, "arcface/r18-w16/*/s1/train");
    assert!(epoch >= 1 && epoch < epochs, "{log}");

    let rows = results(&addr, "cls-kill");
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let train = rows.iter().find(|r| r["stage"] == "train").unwrap();
    assert_eq!(train["state"], "succeeded", "{train:#}");
    assert_eq!(
        train["attempts"], 2,
        "one killed attempt, one that resumed: {train:#}"
    );
    assert_eq!(train["extra"]["resumed_from_epoch"], epoch, "{train:#}");
    assert_eq!(
        train["extra"]["losses"].as_array().map(Vec::len),
        Some(epochs),
        "the curve keeps the killed attempt's epochs"
    );
    for eval in rows.iter().filter(|r| r["stage"] == "eval") {
        assert_eq!(eval["state"], "succeeded", "{eval:#}");
        assert_eq!(
            eval["provenance"]["checkpoint"],
            train["provenance"]["checkpoint"]
        );
        assert_eq!(eval["proxy_value"], train["proxy_value"], "{eval:#}");
    }
}
