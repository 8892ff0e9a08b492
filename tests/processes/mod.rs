//! Real processes for end-to-end tests: the `asdsweep` binary as a coordinator, workers
//! and CLI, on a temporary SQLite and a synthetic dataset.

#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_asdsweep");

pub fn asdsweep(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("asdsweep runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, however it ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn serve(dir: &Path) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let db = format!("sqlite://{}?mode=rwc", dir.join("queue.db").display());
    let child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &addr,
            "--db",
            &db,
            "--heartbeat-ms",
            "200",
            "--reap-ms",
            "100",
        ])
        .arg("--artifacts")
        .arg(dir.join("artifacts"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Proc(child);
    let end = Instant::now() + Duration::from_secs(20);
    while asdsweep(&["status", "--coordinator", &addr]).status.code() != Some(0) {
        assert!(Instant::now() < end, "serve did not come up on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, addr)
}

/// A worker on `data` logging to `log` (info level).
pub fn worker(addr: &str, data: &Path, cache: &Path, log: &Path) -> Proc {
    let child = Command::new(BIN)
        .args(["worker", "--coordinator", addr])
        .arg("--data")
        .arg(data)
        .arg("--cache-dir")
        .arg(cache)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap();
    Proc(child)
}

/// Synthesises a small DCASE-style dataset under `root/synth` and returns its fingerprint.
pub fn synth(root: &Path, train: &str, seconds: &str) -> String {
    let dir = root.join("synth");
    let out = asdsweep(&[
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--devices",
        "fan,pump",
        "--sections",
        "2",
        "--train",
        train,
        "--test",
        "2",
        "--seconds",
        seconds,
        "--seed",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let check = asdsweep(&[
        "data",
        "check",
        dir.to_str().unwrap(),
        "--json",
        "--headers-only",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&check.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&check.stderr)));
    report["fingerprint"]
        .as_str()
        .expect("data check prints the fingerprint")
        .to_owned()
}

pub fn results(addr: &str, sweep: &str) -> Vec<serde_json::Value> {
    let out = asdsweep(&["results", sweep, "--format", "json", "--coordinator", addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

pub fn wait_finished(addr: &str, sweep: &str, timeout: Duration, logs: &[PathBuf]) {
    let end = Instant::now() + timeout;
    loop {
        let status = text(&asdsweep(&["status", sweep, "--coordinator", addr]).stdout);
        if status.contains("[finished]") {
            return;
        }
        if Instant::now() > end {
            let logs: Vec<String> = logs
                .iter()
                .map(|l| std::fs::read_to_string(l).unwrap_or_default())
                .collect();
            panic!(
                "sweep {sweep} did not finish in {timeout:?}:\n{status}\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `log` shows `uploads` checkpoint uploads, then kills `worker` with SIGKILL.
/// With two, the first has surely been reported (a worker heartbeats a new checkpoint at
/// once, long before the next epoch ends). Panics if the job finished before the kill.
pub fn kill_after_uploads(worker: &mut Proc, log: &Path, uploads: usize) {
    let read = || std::fs::read_to_string(log).unwrap_or_default();
    let end = Instant::now() + Duration::from_secs(120);
    while read().matches("checkpoint uploaded").count() < uploads {
        assert!(Instant::now() < end, "no checkpoints: {}", read());
        assert!(
            worker.0.try_wait().unwrap().is_none(),
            "worker exited: {}",
            read()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.0.kill().unwrap(); // SIGKILL
    worker.0.wait().unwrap();
    let killed = read();
    assert!(
        !killed.contains("reported"),
        "the job finished before the kill; make it longer:\n{killed}"
    );
}

/// The epoch named by the one `resuming JOB from epoch N (checkpoint …)` line of `log`.
pub fn resumed_epoch(log: &str, job: &str) -> usize {
    let line = log
        .lines()
        .find(|l| l.contains(&format!("resuming {job} from epoch")))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("(checkpoint "), "{line}");
    assert_eq!(log.matches("resuming ").count(), 1, "{log}");
    line.split("from epoch ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

/// An evaluation result has every probe metric (linear probes in and out of domain,
/// Mahalanobis; AUC and pAUC) in [0, 1], and no problems.
pub fn assert_probed(r: &serde_json::Value) {
    for key in [
        "lp_in_auc",
        "lp_in_pauc",
        "lp_out_auc",
        "lp_out_pauc",
        "md_auc",
        "md_pauc",
    ] {
        let v = r[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing in {r:#}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v} in {r:#}");
    }
    assert_eq!(r["extra"]["problems"], serde_json::json!({}), "{r:#}");
}
