//! The `asdsweep` binary end to end: real `serve`, `worker` and operator
//! processes talking over loopback gRPC.

mod processes;

use processes::{BIN, Proc, asdsweep, free_port, serve};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn demo_spec() -> String {
    format!("{}/sweeps/noop-demo.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn dry_run_prints_the_job_table_and_creates_nothing() {
    let out = asdsweep(&[
        "launch",
        &demo_spec(),
        "--dry-run",
        "--coordinator",
        "127.0.0.1:1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("noop/large/valve/s2/eval") && text.contains("noop/large/valve/s2/train"),
        "{text}"
    );
    assert!(text.contains("24 jobs — 12 train, 12 eval"), "{text}");
}

#[test]
fn a_spec_with_a_typo_fails_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(demo_spec())
            .unwrap()
            .replace("seeds =", "sedes ="),
    )
    .unwrap();
    let out = asdsweep(&["launch", bad.to_str().unwrap(), "--dry-run"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("sedes") && err.contains("seeds") && err.contains("bad.toml"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn operator_commands_explain_an_unreachable_coordinator() {
    let out = asdsweep(&[
        "status",
        "--coordinator",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach coordinator"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_worker_launch_status_and_results_work_together() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = serve(dir.path());
    let addr = addr.as_str();
    let out = asdsweep(&["launch", &demo_spec(), "--coordinator", addr]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("launched (24 jobs)"),
        "{}",
        stdout(&out)
    );
    let again = asdsweep(&["launch", &demo_spec(), "--coordinator", addr]);
    assert!(
        stdout(&again).contains("already launched"),
        "{}",
        stdout(&again)
    );

    let worker = asdsweep(&[
        "worker",
        "--coordinator",
        addr,
        "--slots",
        "2",
        "--exit-when-idle-s",
        "1.5",
    ]);
    assert!(worker.status.success(), "{}", stderr(&worker));

    let status = stdout(&asdsweep(&["status", "noop-demo", "--coordinator", addr]));
    assert!(
        status.contains("[finished]: 24 jobs: 24 succeeded"),
        "{status}"
    );
    let json = asdsweep(&[
        "results",
        "noop-demo",
        "--format",
        "json",
        "--coordinator",
        addr,
    ]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 24);
    assert!(
        rows.iter()
            .all(|r| r["state"] == "succeeded" && r["proxy_metric"] == "noop")
    );
    let retried: Vec<_> = rows.iter().filter(|r| r["attempts"] == 2).collect();
    assert_eq!(
        retried.len(),
        12,
        "every `large` job failed once on purpose and succeeded on retry"
    );
    let csv = stdout(&asdsweep(&[
        "results",
        "1",
        "--format",
        "csv",
        "--coordinator",
        addr,
    ]));
    assert_eq!(csv.lines().count(), 25);
    let missing = asdsweep(&["results", "nope", "--coordinator", addr]);
    assert!(
        !missing.status.success() && stderr(&missing).contains("sweep \"nope\" not found"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn sigterm_makes_a_worker_hand_its_lease_back_and_exit() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = serve(dir.path());
    let addr = addr.as_str();
    let spec = dir.path().join("slow.toml");
    std::fs::write(
        &spec,
        "version = 1\nname = \"slow\"\ndevices = [\"fan\"]\n[[family]]\nkind = \"noop\"\nconfigs = [{ name = \"c\", sleep_ms = 60000 }]\n",
    )
    .unwrap();
    assert!(
        asdsweep(&["launch", spec.to_str().unwrap(), "--coordinator", addr])
            .status
            .success()
    );
    let mut worker = Command::new(BIN)
        .args(["worker", "--coordinator", addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while !stdout(&asdsweep(&["status", "slow", "--coordinator", addr])).contains("1 leased") {
        assert!(Instant::now() < end, "the worker never leased the job");
        std::thread::sleep(Duration::from_millis(100));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let end = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(code) = worker.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < end, "worker did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "worker exit status {code}");
    let json = asdsweep(&["results", "slow", "--format", "json", "--coordinator", addr]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows[0]["state"], "pending", "the lease was handed back");
    assert_eq!(
        rows[0]["attempts"], 0,
        "a handed-back attempt does not count"
    );
}

#[test]
fn a_worker_waiting_for_an_unreachable_coordinator_stops_at_once_on_sigterm() {
    let mut worker = Command::new(BIN)
        .args([
            "worker",
            "--coordinator",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let end = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(code) = worker.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < end, "worker kept retrying after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "{code}");
}

#[test]
fn a_coordinator_with_a_token_refuses_calls_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("auth.db").display());
    // Killed when dropped, also when an assertion below fails.
    let _serve = Proc(
        Command::new(BIN)
            .args(["serve", "--listen", &addr, "--db", &db, "--token", "s3cret"])
            .arg("--artifacts")
            .arg(dir.path().join("artifacts"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let end = Instant::now() + Duration::from_secs(20);
    while !asdsweep(&["status", "--coordinator", &addr, "--token", "s3cret"])
        .status
        .success()
    {
        assert!(Instant::now() < end, "serve did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let denied = asdsweep(&["status", "--coordinator", &addr, "--token", "guess"]);
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains("needs the operator token"),
        "{}",
        stderr(&denied)
    );
    assert!(
        !asdsweep(&["status", "--coordinator", &addr])
            .status
            .success()
    );
}

#[test]
fn a_gpu_device_in_a_cpu_only_build_is_refused_naming_the_missing_feature() {
    let out = asdsweep(&[
        "worker",
        "--device",
        "cuda:0",
        "--coordinator",
        "127.0.0.1:1",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cuda:0") && err.contains("`cuda` or `tch` cargo feature"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
