//! `asdsweep bench queue`: a real coordinator on a loopback port, W gRPC
//! clients that lease, heartbeat once and complete J diagnostic no-op jobs,
//! and an audit of the database afterwards (duplicates, lost jobs).

use crate::ids::SweepId;
use crate::server::{Coordinator, CoordinatorConfig};
use crate::store::{NewSweep, Store};
use asdsweep_shared::grid::{JobSpec, Stage};
use asdsweep_shared::proto::{self as pb, worker_service_client::WorkerServiceClient};
use asdsweep_shared::spec::QueueSpec;
use sea_orm::{ConnectionTrait, FromQueryResult, Statement};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Jobs to run.
    pub jobs: u32,
    /// Concurrent worker clients.
    pub workers: u32,
    /// Database URL.
    pub db_url: String,
    /// Give up after this long (what is unfinished then counts as lost).
    pub deadline: Duration,
}

/// The benchmark's answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BenchReport {
    /// Jobs run.
    pub jobs: u32,
    /// Worker clients.
    pub workers: u32,
    /// Wall time from the first lease to the last completion.
    pub seconds: f64,
    /// Completed jobs per second.
    pub jobs_per_s: f64,
    /// Median Lease call latency, ms.
    pub lease_p50_ms: f64,
    /// 99th percentile Lease call latency, ms.
    pub lease_p99_ms: f64,
    /// Jobs completed (accepted) more than once, by the clients' count or the database's.
    pub duplicates: u64,
    /// Jobs without a recorded result at the end.
    pub lost: u64,
}

#[derive(FromQueryResult)]
struct JobResults {
    n: i64,
}

/// Runs the queue benchmark.
pub async fn queue(cfg: BenchConfig) -> crate::Result<BenchReport> {
    let scratch = tempfile::tempdir().map_err(|source| crate::Error::Io {
        path: "temporary directory".into(),
        source,
    })?;
    // Postgres runs get a schema of their own, dropped afterwards.
    let schema = cfg
        .db_url
        .starts_with("postgres")
        .then(|| format!("bench_{:012x}", rand::random::<u64>() >> 16));
    let mut ccfg = CoordinatorConfig::new(cfg.db_url.clone());
    ccfg.db_schema = schema.clone();
    ccfg.artifact_dir = scratch.path().join("artifacts");
    let coordinator = Coordinator::start(ccfg).await?;
    let store = coordinator.store().clone();
    let jobs: Vec<JobSpec> = (0..cfg.jobs)
        .map(|i| JobSpec {
            key: format!("bench/{i:08}"),
            kind: "noop".into(),
            stage: Stage::Run,
            family: "bench".into(),
            config: "noop".into(),
            device: "none".into(),
            seed: 1,
            params: serde_json::json!({}),
            depends_on: vec![],
            priority: 0,
            backends: vec![],
        })
        .collect();
    let key = format!("bench-{:016x}", rand::random::<u64>());
    let queue = QueueSpec::default();
    let new = NewSweep {
        name: "bench",
        spec_hash: "bench",
        sweep_key: &key,
        spec_toml: "",
        queue: &queue,
        jobs: &jobs,
    };
    let sweep = store.launch_jobs(new).await?.sweep;
    let first_id = crate::entity::job::Entity::find_first_id(&store, sweep.id).await?;

    let counts: Arc<Vec<AtomicU32>> = Arc::new((0..cfg.jobs).map(|_| AtomicU32::new(0)).collect());
    let completed = Arc::new(AtomicU64::new(0));
    let endpoint = Channel::from_shared(coordinator.url())
        .map_err(|e| crate::Error::InvalidArgument(e.to_string()))?
        .tcp_nodelay(true);
    let start = Instant::now();
    let deadline = start + cfg.deadline;
    let clients: Vec<_> = (0..cfg.workers)
        .map(|w| {
            // A connection of its own, as a worker process has.
            let mut client = WorkerServiceClient::new(endpoint.connect_lazy());
            let (counts, completed, total) = (counts.clone(), completed.clone(), cfg.jobs as u64);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let reg = pb::RegisterRequest {
                    name: format!("bench-{w}"),
                    ..Default::default()
                };
                let Ok(worker_id) = client.register(reg).await.map(|r| r.into_inner().worker_id)
                else {
                    return latencies;
                };
                while completed.load(Ordering::SeqCst) < total && Instant::now() < deadline {
                    let t = Instant::now();
                    let Ok(resp) = client
                        .lease(pb::LeaseRequest {
                            worker_id: worker_id.clone(),
                        })
                        .await
                    else {
                        continue;
                    };
                    let Some(lease) = resp.into_inner().lease else {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    };
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                    let job_id = lease.job.map(|j| j.job_id).unwrap_or_default();
                    let hb = pb::HeartbeatRequest {
                        worker_id: worker_id.clone(),
                        job_id,
                        token: lease.token,
                        progress: None,
                    };
                    let _ = client.heartbeat(hb).await;
                    let done = pb::CompleteRequest {
                        worker_id: worker_id.clone(),
                        job_id,
                        token: lease.token,
                        metrics: None,
                    };
                    if client.complete(done).await.is_ok() {
                        if let Some(c) = counts.get((job_id - first_id) as usize) {
                            c.fetch_add(1, Ordering::SeqCst);
                        }
                        completed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(c.await.unwrap_or_default());
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if latencies.is_empty() {
            f64::NAN
        } else {
            latencies[((latencies.len() - 1) as f64 * p).round() as usize]
        }
    };

    // Audit the database, not just the clients' view.
    let db = store.connection();
    let per_job = JobResults::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT COUNT(*) AS n FROM results WHERE sweep_id = $1 GROUP BY job_id HAVING COUNT(*) > 1",
        vec![sweep.id.into()],
    ))
    .all(db)
    .await?;
    let recorded = JobResults::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT COUNT(DISTINCT job_id) AS n FROM results WHERE sweep_id = $1",
        vec![sweep.id.into()],
    ))
    .one(db)
    .await?
    .map(|r| r.n as u64)
    .unwrap_or(0);
    let client_dupes = counts
        .iter()
        .filter(|c| c.load(Ordering::SeqCst) > 1)
        .count() as u64;
    let done = completed.load(Ordering::SeqCst);
    // Before the shutdown, which closes the connections.
    if let Some(schema) = schema {
        let _ = db
            .execute_unprepared(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .await;
    }
    coordinator.shutdown().await;
    Ok(BenchReport {
        jobs: cfg.jobs,
        workers: cfg.workers,
        seconds,
        jobs_per_s: done as f64 / seconds,
        lease_p50_ms: pct(0.50),
        lease_p99_ms: pct(0.99),
        duplicates: client_dupes.max(per_job.len() as u64),
        lost: (cfg.jobs as u64).saturating_sub(recorded),
    })
}

impl crate::entity::job::Entity {
    /// Smallest job id of a sweep (the benchmark indexes jobs from it).
    async fn find_first_id(store: &Store, sweep_id: SweepId) -> crate::Result<i64> {
        let db = store.connection();
        Ok(
            JobResults::find_by_statement(Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT MIN(id) AS n FROM jobs WHERE sweep_id = $1",
                vec![sweep_id.into()],
            ))
            .one(db)
            .await?
            .map(|r| r.n)
            .unwrap_or(0),
        )
    }
}
