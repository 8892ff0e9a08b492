//! The queue benchmark without building the worker's training stack:
//! `cargo run --release -p asdsweep-coordinator --example bench_queue -- JOBS WORKERS DB_URL`.
//! Same function as `asdsweep bench queue --json`.

use asdsweep_coordinator::bench::{BenchConfig, queue};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let jobs = args
        .first()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let workers = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(16);
    let db_url = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "sqlite://bench.db?mode=rwc".into());
    let report = queue(BenchConfig {
        jobs,
        workers,
        db_url,
        deadline: Duration::from_secs(600),
    })
    .await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
