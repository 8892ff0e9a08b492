//! The contrastive family end to end through real processes: `asdsweep synth` makes a
//! small dataset, `serve` runs on a temporary SQLite, two `worker --data` processes train a
//! tiny ResNet-18 with SimCLR and with SimSiam once across both machine types — making the
//! 33 views of every training clip once between them — then evaluate each on each machine
//! type with every probe metric.

mod processes;

use processes::{asdsweep, assert_probed, results, serve, synth, text, wait_finished, worker};
use std::time::Duration;

#[test]
fn simclr_and_simsiam_train_on_views_made_once_and_report_uniformity_and_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fingerprint = synth(&data, "4", "1.0");
    let spec = dir.path().join("ssl.toml");
    let family = |mode: &str| {
        format!(
            r#"
[[family]]
kind = "contrastive"
mode = "{mode}"
epochs = 1
batch_size = 4
checkpoint_every = 1
crop_frames = 24
n_mels = 64
configs = [{{ name = "r18-w16", depth = 18, width_multiplier = 0.0625 }}]
"#
        )
    };
    std::fs::write(
        &spec,
        format!(
            r#"
version = 1
name = "ssl-e2e"
devices = ["pump", "fan"]
[queue]
lease_ttl_ms = 20000
[dataset]
path = "synth"
fingerprint = "{fingerprint}"
{}{}"#,
            family("simclr"),
            family("simsiam")
        ),
    )
    .unwrap();
    let (_server, addr) = serve(dir.path());
    let out = asdsweep(&["launch", spec.to_str().unwrap(), "--coordinator", &addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(6 jobs)"),
        "{}",
        text(&out.stdout)
    );
    let logs = [dir.path().join("w1.log"), dir.path().join("w2.log")];
    let cache = dir.path().join("cache");
    let _w1 = worker(&addr, &data, &cache, &logs[0]);
    let _w2 = worker(&addr, &data, &cache, &logs[1]);
    wait_finished(&addr, "ssl-e2e", Duration::from_secs(300), &logs);

    let rows = results(&addr, "ssl-e2e");
    assert_eq!(rows.len(), 6);
    let mut computed = 0;
    for r in &rows {
        assert_eq!(r["state"], "succeeded", "{r:#}");
        assert_eq!(r["proxy_metric"], "uniformity", "{r:#}");
        let u = r["proxy_value"]
            .as_f64()
            .unwrap_or_else(|| panic!("no proxy value in {r:#}"));
        assert!(
            (-4.0..=0.0).contains(&u),
            "uniformity lies in [-4, 0]: {r:#}"
        );
        let p = &r["provenance"];
        assert_eq!(p["dataset_fingerprint"], fingerprint.as_str(), "{r:#}");
        for key in [
            "spec_hash",
            "seed",
            "backend",
            "code_version",
            "checkpoint",
            "best_epoch",
        ] {
            assert!(!p[key].is_null(), "provenance.{key} missing in {r:#}");
        }
        if r["stage"] == "train" {
            let extra = &r["extra"];
            assert_eq!(extra["train_clips"], 20, "{r:#}");
            let a = extra["alignment"]
                .as_f64()
                .unwrap_or_else(|| panic!("no alignment in {r:#}"));
            assert!((0.0..=4.0).contains(&a), "{r:#}");
            let (c, reused) = (
                extra["views_computed"].as_u64().unwrap(),
                extra["views_reused"].as_u64().unwrap(),
            );
            assert_eq!(c + reused, 20, "{r:#}");
            computed += c;
        } else {
            assert_probed(r);
            let train = rows
                .iter()
                .find(|t| t["stage"] == "train" && t["family"] == r["family"])
                .expect("its training job");
            assert_eq!(r["proxy_value"], train["proxy_value"], "{r:#}");
        }
    }
    assert_eq!(
        computed, 20,
        "each clip's views are made once, by one of the two jobs"
    );
    let mut families: Vec<_> = rows.iter().map(|r| r["family"].as_str().unwrap()).collect();
    families.dedup();
    families.sort();
    families.dedup();
    assert_eq!(families, ["simclr", "simsiam"]);
    let views = data.join(".asdsweep").join("views");
    let stores: Vec<_> = std::fs::read_dir(&views).unwrap().collect();
    assert_eq!(stores.len(), 1, "one store for the dataset and setting");
}

/// Every `.wav` file under `dir`.
fn wavs_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .map(|p| match p.is_dir() {
                    true => wavs_under(&p),
                    false => usize::from(p.extension().is_some_and(|x| x == "wav")),
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn asdsweep_views_makes_the_workers_views_ahead_resumes_and_names_a_bad_machine_type() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fingerprint = synth(&data, "2", "0.5");
    let root = data.to_str().unwrap();
    let store = data
        .join(".asdsweep")
        .join("views")
        .join(format!("views-{}-study-s42", &fingerprint[..16]));

    // Six training normals per machine type (two sections of two source clips and one target).
    let out = asdsweep(&["views", "synth", "--data", root, "--machine-types", "fan"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.contains("6 clips of fan (33 views each): 6 made, 0 already there"),
        "{printed}"
    );
    assert!(printed.contains(store.to_str().unwrap()), "{printed}");
    assert_eq!(wavs_under(&store.join("fan")), 6 * 33);
    assert_eq!(wavs_under(&store.join("pump")), 0);

    // All machine types: fan's views are found, pump's made.
    let out = asdsweep(&["views", "synth", "--data", root, "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.contains("12 clips of fan, pump (33 views each): 6 made, 6 already there"),
        "{printed}"
    );
    assert_eq!(wavs_under(&store), 12 * 33);

    // Another cache directory and setting: a store of its own there.
    let elsewhere = dir.path().join("views");
    let out = asdsweep(&[
        "views",
        "synth",
        "--data",
        root,
        "--machine-types",
        "pump",
        "--augmentations",
        "as_named",
        "--view-seed",
        "7",
        "--view-cache",
        elsewhere.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let other = elsewhere.join(format!("views-{}-as_named-s7", &fingerprint[..16]));
    assert_eq!(wavs_under(&other), 6 * 33);

    let out = asdsweep(&["views", "synth", "--data", root, "--machine-types", "fann"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("machine type \"fann\"") && err.contains("machine types there: fan, pump"),
        "{err}"
    );
    let out = asdsweep(&["views", "../outside", "--data", root]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("../outside"),
        "{}",
        text(&out.stderr)
    );

    // A dataset without any clips is an error, not "0 clips".
    std::fs::create_dir_all(data.join("empty")).unwrap();
    let out = asdsweep(&["views", "empty", "--data", root, "--layout", "dcase2020"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no training clips") && err.contains("empty"),
        "{err}"
    );
}
