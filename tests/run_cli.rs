//! `asdsweep run` end to end, through the real binary: a tiny autoencoder sweep on data
//! the run synthesises itself, its outputs, a rerun that only reports, an interrupted run
//! that resumes, and specs that fail before any job starts.

mod processes;

use asdsweep_coordinator::queue::JobState;
use processes::{BIN, text};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// AE only, 2 machine types, 3 configs, `epochs` epochs; 2 s synthetic clips.
fn tiny_spec(name: &str, epochs: u32) -> String {
    let configs: String = [("h8-l2", 8, 2), ("h16-l4", 16, 4), ("h32-l8", 32, 8)]
        .iter()
        .map(|(n, h, l)| {
            format!("\n[[family.configs]]\nname = \"{n}\"\nhidden = {h}\nlatent = {l}\n")
        })
        .collect();
    format!(
        "version = 1\nname = \"{name}\"\ndevices = [\"fan\", \"pump\"]\n\n\
         [synth]\nsections = 2\ntrain = 4\ntest = 3\nseconds = 1.0\n\n\
         [[family]]\nkind = \"autoencoder\"\nepochs = {epochs}\nbatch_size = 64\nlr = 1e-3\ncheckpoint_every = 1\n{configs}"
    )
}

fn run_cmd(dir: &Path, spec: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(["run", "--workers", "2", "--plain"])
        .arg(spec)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

fn run(dir: &Path, spec: &Path) -> Output {
    run_cmd(dir, spec).output().expect("asdsweep run starts")
}

fn write_spec(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("spec.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_tiny_sweep_runs_to_a_report_whose_correlations_are_what_analyze_computes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), &tiny_spec("tiny", 1));
    let out = run(dir.path(), &spec);
    assert!(
        out.status.success(),
        "run failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("finished: 12 jobs: 12 succeeded"),
        "{stdout}"
    );

    let sweep = dir.path().join("out/tiny");
    // The database file alone holds every result: the write-ahead log was written back.
    let wal = sweep.join("asdsweep.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "{} left with {} bytes",
        wal.display(),
        std::fs::metadata(&wal).map_or(0, |m| m.len())
    );
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(sweep.join("asdsweep.db"), copy.path().join("asdsweep.db")).unwrap();
    let jobs = attempts(&copy.path().join("asdsweep.db"));
    assert_eq!(jobs.len(), 12, "{jobs:?}");
    assert!(
        jobs.iter()
            .all(|(_, _, state)| *state == JobState::Succeeded),
        "{jobs:?}"
    );
    let mut rows = csv::Reader::from_path(sweep.join("results.csv")).unwrap();
    let header = rows.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 6, "3 configs × 2 machine types");
    for column in [
        "proxy_value",
        "lp_in_auc",
        "lp_in_pauc",
        "lp_out_auc",
        "lp_out_pauc",
        "md_auc",
        "md_pauc",
    ] {
        let i = header
            .iter()
            .position(|h| h == column)
            .unwrap_or_else(|| panic!("no column {column}"));
        for r in &rows {
            assert!(
                r[i].parse::<f64>().is_ok_and(f64::is_finite),
                "{column} empty or not a number in {r:?}"
            );
        }
    }

    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sweep.join("correlations.json")).unwrap()).unwrap();
    let analyze = Command::new(BIN)
        .arg("analyze")
        .arg(sweep.join("results.csv"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(analyze.status.success(), "{}", text(&analyze.stderr));
    let analyze: serde_json::Value = serde_json::from_slice(&analyze.stdout).unwrap();
    assert_eq!(written["tests"], analyze["tests"]);
    assert_eq!(
        written["tests"].as_array().unwrap().len(),
        6,
        "one row per family × ASD metric"
    );
    let html = std::fs::read_to_string(sweep.join("report.html")).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        6,
        "one panel per family × ASD metric"
    );

    // Again on the finished sweep: no work, the same report.
    let again = run(dir.path(), &spec);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("already finished"),
        "{}",
        text(&again.stdout)
    );
    let rewritten: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sweep.join("correlations.json")).unwrap()).unwrap();
    assert_eq!(rewritten["tests"], written["tests"]);
}

/// Every job's key, attempts and state, read from the run's database.
fn attempts(db: &Path) -> Vec<(String, i32, JobState)> {
    use asdsweep_coordinator::entity::job;
    use sea_orm::{Database, EntityTrait};
    let url = format!("sqlite://{}?mode=ro", db.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Ok(conn) = Database::connect(url).await else {
            return Vec::new();
        };
        let jobs = job::Entity::find().all(&conn).await.unwrap_or_default();
        jobs.into_iter()
            .map(|j| (j.job_key, j.attempts, j.state))
            .collect()
    })
}

#[test]
fn an_interrupted_run_resumes_without_rerunning_succeeded_jobs_and_reports_as_an_uninterrupted_one()
{
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), &tiny_spec("resume", 3));
    let child = run_cmd(dir.path(), &spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop it once some, not all, jobs have succeeded.
    let db = dir.path().join("out/resume/asdsweep.db");
    let deadline = Instant::now() + Duration::from_secs(240);
    let before = loop {
        assert!(Instant::now() < deadline, "no job succeeded in time");
        if db.exists() {
            let jobs = attempts(&db);
            let done = jobs.iter().filter(|j| j.2 == JobState::Succeeded).count();
            if done >= 2 && done < jobs.len() {
                break jobs;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let stopped = child.wait_with_output().unwrap();
    assert!(
        !stopped.status.success(),
        "an interrupted run exits non-zero"
    );
    assert!(
        text(&stopped.stderr).contains("run the same command again to resume"),
        "{}",
        text(&stopped.stderr)
    );

    let resumed = run(dir.path(), &spec);
    assert!(
        resumed.status.success(),
        "{}\n{}",
        text(&resumed.stdout),
        text(&resumed.stderr)
    );
    let after = attempts(&db);
    assert!(
        after.iter().all(|j| j.2 == JobState::Succeeded),
        "{after:?}"
    );
    for (key, tries, state) in before.iter().filter(|j| j.2 == JobState::Succeeded) {
        let now = after.iter().find(|j| &j.0 == key).unwrap();
        assert_eq!(
            (&now.1, &now.2),
            (tries, state),
            "{key} ran again after it had succeeded"
        );
    }

    // The same seeds without interruption give the same numbers.
    let other = tempfile::tempdir().unwrap();
    let spec2 = write_spec(other.path(), &tiny_spec("resume", 3));
    assert!(run(other.path(), &spec2).status.success());
    let metrics = |root: &Path| {
        let mut r = csv::Reader::from_path(root.join("out/resume/results.csv")).unwrap();
        let h = r.headers().unwrap().clone();
        let keep: Vec<usize> = [
            "family",
            "config",
            "device",
            "proxy_value",
            "lp_in_auc",
            "lp_out_auc",
            "md_auc",
        ]
        .iter()
        .map(|c| h.iter().position(|x| x == *c).unwrap())
        .collect();
        let mut rows: Vec<Vec<String>> = r
            .records()
            .map(|rec| {
                let rec = rec.unwrap();
                keep.iter().map(|&i| rec[i].to_owned()).collect()
            })
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(
        metrics(dir.path()),
        metrics(other.path()),
        "interrupted + resumed = uninterrupted"
    );
}

#[test]
fn bad_specs_and_missing_data_fail_before_any_job_starts() {
    let dir = tempfile::tempdir().unwrap();
    let good = tiny_spec("bad", 1);
    for (spec, names) in [
        (
            good.replace("batch_size", "batch_sise"),
            vec!["batch_sise", "batch_size"],
        ),
        (
            good.replace("kind = \"autoencoder\"", "kind = \"autoencodr\""),
            vec!["autoencodr", "autoencoder", "classifier"],
        ),
        (
            good.replace("[synth]", "[dataset]\npath = \"nowhere\"\n[synth]"),
            vec!["[synth]"],
        ),
        (
            good.replace(
                "[synth]\nsections = 2\ntrain = 4\ntest = 3\nseconds = 1.0\n",
                "[dataset]\npath = \"nowhere\"\n",
            ),
            vec!["nowhere", "--data"],
        ),
        (
            good.replace("\"pump\"", "\"blender\""),
            vec!["blender", "valve"],
        ),
        // Local workers run on flex (`--device cpu`): a family kept off it could never run.
        (
            good.replace(
                "kind = \"autoencoder\"",
                "kind = \"autoencoder\"\nbackends = [\"cuda\"]",
            ),
            vec!["family[0].backends", "cuda", "flex"],
        ),
        (
            good.replace(
                "kind = \"autoencoder\"",
                "kind = \"autoencoder\"\nbackends = [\"gpu\"]",
            ),
            vec!["gpu", "flex", "tch", "cuda"],
        ),
    ] {
        let path = write_spec(dir.path(), &spec);
        let out = run(dir.path(), &path);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{spec}");
        for n in names {
            assert!(err.contains(n), "error does not name {n}: {err}");
        }
        assert!(
            !dir.path().join("out").exists(),
            "a job store was created for a bad spec: {err}"
        );
    }
}
