//! Chaos with real processes: one `asdsweep serve` and four `asdsweep worker` processes
//! run 2,000 noop jobs while workers are SIGKILLed and restarted at random and the
//! coordinator is restarted twice (once killed, once stopped). Every job must succeed
//! exactly once: none lost, none with two results. Runs on SQLite and on Postgres and
//! prints its figures.

mod common;
mod processes;

use common::*;
use processes::{BIN, Proc, asdsweep, free_port, text};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JOBS: i64 = 2_000;
const WORKERS: usize = 4;

fn serve(h: &Harness, addr: &str) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", addr, "--db", &h.db_url])
        .args(["--heartbeat-ms", "200", "--reap-ms", "100"])
        .arg("--artifacts")
        .arg(h.dir.path().join("artifacts"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(schema) = &h.schema {
        cmd.args(["--db-schema", schema]);
    }
    let p = Proc(cmd.spawn().unwrap());
    let end = Instant::now() + Duration::from_secs(30);
    while asdsweep(&["status", "--coordinator", addr]).status.code() != Some(0) {
        assert!(Instant::now() < end, "serve did not come up on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

fn worker(addr: &str, name: &str, log: &Path) -> Proc {
    let child = Command::new(BIN)
        .args(["worker", "--coordinator", addr, "--name", name])
        .args(["--patience-s", "120"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Proc(child)
}

fn kill(p: &mut Proc, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(p.0.id() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
    p.0.wait().unwrap();
}

async fn two_thousand_jobs_survive_killed_workers_and_two_coordinator_restarts(h: &Harness) {
    use nix::sys::signal::Signal;
    let started = Instant::now();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut coordinator = serve(h, &addr);
    // 40 configs × 50 machine types = 2,000 single-stage jobs of 2 ms each; a lease lives
    // 1 s, so a killed worker's job goes back to the queue within about a second.
    let spec = h.dir.path().join("chaos.toml");
    std::fs::write(
        &spec,
        noop_spec(
            "chaos",
            40,
            50,
            ", sleep_ms = 2",
            "max_attempts = 50\nlease_ttl_ms = 1000\nbackoff_base_ms = 10\nbackoff_max_ms = 100",
        ),
    )
    .unwrap();
    let out = asdsweep(&["launch", spec.to_str().unwrap(), "--coordinator", &addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let log = |i: usize, n: usize| h.dir.path().join(format!("worker-{i}-{n}.log"));
    let mut restarts = [0usize; WORKERS];
    let mut workers: Vec<Proc> = (0..WORKERS)
        .map(|i| worker(&addr, &format!("chaos-{i}"), &log(i, 0)))
        .collect();
    let seed: u64 = rand::random();
    println!("chaos seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let store = h.store().await;
    let succeeded = || {
        count(
            &store,
            "SELECT COUNT(*) AS n FROM jobs WHERE state = 'succeeded'",
        )
    };
    let (mut kills, mut coordinator_restarts) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = succeeded().await;
        if done == JOBS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {JOBS} jobs succeeded after 300 s"
        );
        // The coordinator goes down at a third and at two thirds of the way.
        if coordinator_restarts < 2 && done >= JOBS * (coordinator_restarts as i64 + 1) / 3 {
            let signal = if coordinator_restarts == 0 {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            kill(&mut coordinator, signal);
            tokio::time::sleep(Duration::from_millis(500)).await;
            coordinator = serve(h, &addr);
            coordinator_restarts += 1;
            println!("coordinator restarted ({signal}) at {done} jobs");
        }
        // A random worker is killed mid-job and comes back.
        let i = rng.random_range(0..WORKERS);
        kill(&mut workers[i], Signal::SIGKILL);
        kills += 1;
        restarts[i] += 1;
        workers[i] = worker(&addr, &format!("chaos-{i}"), &log(i, restarts[i]));
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
    }
    let wall = started.elapsed().as_secs_f64();
    drop(workers);

    let n = |sql: &'static str| count(&store, sql);
    assert_eq!(n("SELECT COUNT(*) AS n FROM jobs").await, JOBS);
    assert_eq!(
        n("SELECT COUNT(*) AS n FROM jobs WHERE state <> 'succeeded'").await,
        0,
        "every job succeeded"
    );
    assert_eq!(
        n("SELECT COUNT(*) AS n FROM results").await,
        JOBS,
        "one result per job"
    );
    assert_eq!(
        n("SELECT COUNT(DISTINCT job_id) AS n FROM results").await,
        JOBS,
        "no job has two results"
    );
    let re_leased = n("SELECT COUNT(*) AS n FROM jobs WHERE attempts > 1").await;
    let attempts = n("SELECT SUM(attempts) AS n FROM jobs").await;
    let status = asdsweep(&["status", "chaos", "--coordinator", &addr]);
    assert!(
        text(&status.stdout).contains("[finished]"),
        "{}",
        text(&status.stdout)
    );
    println!(
        "chaos ({}): {JOBS} jobs succeeded once each in {wall:.1} s; {kills} worker kills, \
         {coordinator_restarts} coordinator restarts, {re_leased} jobs leased again \
         ({attempts} attempts in all)",
        if h.schema.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    drop(coordinator);
    store.close().await.unwrap();
}

on_sqlite_and_postgres!(two_thousand_jobs_survive_killed_workers_and_two_coordinator_restarts);

#[test]
fn json_logs_of_a_worker_carry_the_sweep_job_and_lease_of_each_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = processes::serve(dir.path());
    let spec = dir.path().join("logs.toml");
    std::fs::write(&spec, noop_spec("logs", 1, 2, "", "")).unwrap();
    let out = asdsweep(&["launch", spec.to_str().unwrap(), "--coordinator", &addr]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = Command::new(BIN)
        .args(["worker", "--coordinator", &addr, "--log-format", "json"])
        .args(["--exit-when-idle-s", "1"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let running: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "running")
        .collect();
    assert_eq!(running.len(), 2, "{lines:#?}");
    for line in running {
        let span = &line["span"];
        assert_eq!(span["name"], "job", "{line}");
        assert!(span["sweep_id"].as_i64().is_some_and(|id| id > 0), "{line}");
        assert!(span["job_id"].as_i64().is_some_and(|id| id > 0), "{line}");
        assert!(span["lease"].as_i64().is_some_and(|t| t > 0), "{line}");
        assert!(
            span["job"].as_str().is_some_and(|k| k.starts_with("noop/")),
            "{line}"
        );
    }
}
