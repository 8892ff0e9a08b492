//! Test harness: a database (SQLite temp file or a fresh Postgres schema), an
//! in-process coordinator on an ephemeral port, and a counting job kind.

#![allow(dead_code)]

use asdsweep_coordinator::store::Store;
use asdsweep_coordinator::{Coordinator, CoordinatorConfig};
use asdsweep_shared::proto::Job;
use asdsweep_worker::{
    JobContext, JobError, JobKind, JobOutput, Registry, WorkerConfig, WorkerSummary, run_worker,
};
use futures::future::BoxFuture;
use sea_orm::{ConnectionTrait, FromQueryResult, Statement};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Postgres server for the tests (override with ASDSWEEP_TEST_PG).
pub fn pg_url() -> String {
    std::env::var("ASDSWEEP_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// One test's database.
pub struct Harness {
    pub db_url: String,
    pub schema: Option<String>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let db_url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("queue.db").display()
        );
        Harness {
            db_url,
            schema: None,
            dir,
        }
    }

    pub fn postgres(test: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let schema = format!(
            "t_{}_{:08x}",
            &test[..test.len().min(40)],
            rand::random::<u32>()
        );
        Harness {
            db_url: pg_url(),
            schema: Some(schema),
            dir,
        }
    }

    pub fn config(&self, listen: SocketAddr) -> CoordinatorConfig {
        let mut c = CoordinatorConfig::new(self.db_url.clone());
        c.db_schema = self.schema.clone();
        c.listen = listen;
        c.artifact_dir = self.dir.path().join("artifacts");
        c.reap_interval = Duration::from_millis(100);
        c.heartbeat_interval = Duration::from_millis(200);
        c.health_interval = Duration::from_millis(100);
        c
    }

    pub async fn coordinator(&self) -> Coordinator {
        self.coordinator_at(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
    }

    pub async fn coordinator_at(&self, addr: SocketAddr) -> Coordinator {
        Coordinator::start(self.config(addr))
            .await
            .expect("coordinator starts")
    }

    pub async fn store(&self) -> Store {
        Store::open(&self.db_url, self.schema.as_deref())
            .await
            .expect("store opens")
    }

    /// Drops the Postgres schema (SQLite's file goes with the temp dir).
    pub async fn cleanup(self) {
        if let Some(schema) = &self.schema {
            let store = self.store().await;
            store
                .connection()
                .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .unwrap();
        }
    }
}

/// Runs a test body once on SQLite and once on Postgres.
#[macro_export]
macro_rules! on_sqlite_and_postgres {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let h = $crate::common::Harness::sqlite();
                super::$name(&h).await;
                h.cleanup().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let h = $crate::common::Harness::postgres(stringify!($name));
                super::$name(&h).await;
                h.cleanup().await;
            }
        }
    )*};
}

/// A `noop` stand-in that counts how often each job key ran and when runs started.
#[derive(Clone, Default)]
pub struct Counting {
    pub runs: Arc<Mutex<HashMap<String, u32>>>,
    pub starts: Arc<Mutex<Vec<(String, Instant)>>>,
    pub sleep: Duration,
}

impl Counting {
    pub fn sleeping(ms: u64) -> Counting {
        Counting {
            sleep: Duration::from_millis(ms),
            ..Default::default()
        }
    }
    pub fn registry(&self) -> Registry {
        Registry::new().with(self.clone())
    }
    pub fn runs_of(&self, key: &str) -> u32 {
        self.runs.lock().unwrap().get(key).copied().unwrap_or(0)
    }
    pub fn total_runs(&self) -> u32 {
        self.runs.lock().unwrap().values().sum()
    }
    pub fn max_runs(&self) -> u32 {
        self.runs
            .lock()
            .unwrap()
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }
}

impl JobKind for Counting {
    fn kind(&self) -> asdsweep_shared::family::Kind {
        asdsweep_shared::family::noop::KIND
    }
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<JobOutput, JobError>> {
        let me = self.clone();
        Box::pin(async move {
            let Job { job_key, .. } = ctx.job.clone();
            *me.runs.lock().unwrap().entry(job_key.clone()).or_default() += 1;
            me.starts.lock().unwrap().push((job_key, Instant::now()));
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Err(JobError::retryable("cancelled")),
                _ = tokio::time::sleep(me.sleep) => {}
            }
            Ok(JobOutput {
                proxy_metric: "count".into(),
                md_auc: Some(0.5),
                ..Default::default()
            })
        })
    }
}

/// Worker defaults for tests: patient across coordinator restarts, exits when idle.
pub fn worker_config(url: &str, name: &str) -> WorkerConfig {
    let mut c = WorkerConfig::new(url);
    c.name = name.into();
    c.patience = Duration::from_secs(30);
    c.exit_when_idle = Some(Duration::from_millis(1500));
    c
}

pub fn spawn_worker(
    cfg: WorkerConfig,
    registry: Registry,
) -> (JoinHandle<WorkerSummary>, CancellationToken) {
    let stop = CancellationToken::new();
    let s = stop.clone();
    (
        tokio::spawn(async move { run_worker(cfg, registry, s).await.expect("worker runs") }),
        stop,
    )
}

/// Polls until `cond` holds or the timeout passes (then panics with `what`).
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(FromQueryResult)]
struct N {
    n: i64,
}

/// One number from SQL (`SELECT … AS n`).
pub async fn count(store: &Store, sql: &str) -> i64 {
    let db = store.connection();
    N::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .one(db)
    .await
    .unwrap()
    .map(|r| r.n)
    .unwrap_or(0)
}

/// A noop spec with `configs × devices` single-stage jobs.
pub fn noop_spec(
    name: &str,
    configs: usize,
    devices: usize,
    extra_config: &str,
    queue: &str,
) -> String {
    let devices: Vec<String> = (0..devices).map(|i| format!("\"m{i:02}\"")).collect();
    let configs: Vec<String> = (0..configs)
        .map(|i| format!("{{ name = \"c{i:03}\" {extra_config} }}"))
        .collect();
    format!(
        "version = 1\nname = \"{name}\"\ndevices = [{}]\n[queue]\n{queue}\n[[family]]\nkind = \"noop\"\nconfigs = [{}]\n",
        devices.join(", "),
        configs.join(", ")
    )
}
