//! The autoencoder family end to end through real processes: `asdsweep synth` makes a
//! small dataset, `serve` runs on a temporary SQLite, `worker --data` processes train
//! and evaluate, and a worker killed with SIGKILL mid-training leaves a checkpoint that
//! the next attempt resumes from.

mod processes;

use processes::{
    asdsweep, assert_probed, kill_after_uploads, results, resumed_epoch, serve, synth, text,
    wait_finished, worker,
};
use std::time::Duration;

#[test]
fn two_configs_on_two_machine_types_train_then_evaluate_with_every_metric() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fingerprint = synth(&data, "3", "1.0");
    let spec = dir.path().join("ae.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
version = 1
name = "ae-e2e"
devices = ["fan", "pump"]
[queue]
lease_ttl_ms = 20000
[dataset]
path = "synth"
fingerprint = "{fingerprint}"
[[family]]
kind = "autoencoder"
epochs = 2
batch_size = 32
checkpoint_every = 1
configs = [{{ name = "h16-l4", hidden = 16, latent = 4 }}, {{ name = "h24-l8", hidden = 24, latent = 8 }}]
"#
        ),
    )
    .unwrap();
    let (_server, addr) = serve(dir.path());
    let out = asdsweep(&["launch", spec.to_str().unwrap(), "--coordinator", &addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(8 jobs)"),
        "{}",
        text(&out.stdout)
    );
    let logs = [dir.path().join("w1.log"), dir.path().join("w2.log")];
    let cache = dir.path().join("cache");
    let _w1 = worker(&addr, &data, &cache, &logs[0]);
    let _w2 = worker(&addr, &data, &cache, &logs[1]);
    wait_finished(&addr, "ae-e2e", Duration::from_secs(240), &logs);

    let rows = results(&addr, "ae-e2e");
    assert_eq!(rows.len(), 8);
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
            "best_epoch",
            "wall_s",
            "checkpoint",
        ] {
            assert!(!p[key].is_null(), "provenance.{key} missing in {r:#}");
        }
        assert_eq!(p["epochs_run"], 2, "{r:#}");
        assert_eq!(p["backend"], "flex");
    }
    let mut cells = Vec::new();
    for r in rows.iter().filter(|r| r["stage"] == "eval") {
        cells.push((
            r["config"].as_str().unwrap().to_owned(),
            r["device"].as_str().unwrap().to_owned(),
        ));
        assert_eq!(r["proxy_metric"], "ae_l1", "{r:#}");
        let l1 = r["proxy_value"]
            .as_f64()
            .unwrap_or_else(|| panic!("no proxy value in {r:#}"));
        assert!(l1.is_finite() && l1 > 0.0, "{r:#}");
        assert_probed(r);
    }
    cells.sort();
    assert_eq!(
        cells,
        [
            ("h16-l4", "fan"),
            ("h16-l4", "pump"),
            ("h24-l8", "fan"),
            ("h24-l8", "pump")
        ]
        .map(|(c, d)| (c.to_owned(), d.to_owned()))
    );
    for r in rows.iter().filter(|r| r["stage"] == "train") {
        assert_eq!(
            r["extra"]["losses"].as_array().map(Vec::len),
            Some(2),
            "{r:#}"
        );
        assert_eq!(r["extra"]["resumed_from_epoch"], 0, "{r:#}");
    }
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
name = "ae-kill"
devices = ["fan"]
[queue]
max_attempts = 3
lease_ttl_ms = 1000
backoff_base_ms = 0
backoff_max_ms = 0
[dataset]
path = "synth"
[[family]]
kind = "autoencoder"
epochs = {epochs}
batch_size = 16
checkpoint_every = 1
configs = [{{ name = "h32-l4", hidden = 32, latent = 4 }}]
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
    let cache = dir.path().join("cache");
    let first_log = dir.path().join("first.log");
    let mut first = worker(&addr, &data, &cache, &first_log);

    kill_after_uploads(&mut first, &first_log, 2);

    let second_log = dir.path().join("second.log");
    let _second = worker(&addr, &data, &dir.path().join("cache2"), &second_log);
    wait_finished(
        &addr,
        "ae-kill",
        Duration::from_secs(240),
        std::slice::from_ref(&second_log),
    );

    let log = std::fs::read_to_string(&second_log).unwrap();
    let epoch = resumed_epoch(&log, "ae/h32-l4/fan/s1/train");
    assert!(epoch >= 1 && epoch < epochs, "{log}");

    let rows = results(&addr, "ae-kill");
    assert_eq!(rows.len(), 2, "{rows:#?}");
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
    let eval = rows.iter().find(|r| r["stage"] == "eval").unwrap();
    assert_eq!(eval["state"], "succeeded", "{eval:#}");
    assert_eq!(
        eval["provenance"]["checkpoint"],
        train["provenance"]["checkpoint"]
    );
    assert_eq!(log.matches("resuming ").count(), 1, "{log}");
}
