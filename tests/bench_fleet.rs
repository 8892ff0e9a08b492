//! `asdsweep bench fleet` on a small fleet: the coordinator runs as a process of this
//! build's binary, the simulated workers in the test; the report must be complete and sane.

use asdsweep_coordinator::fleet::{FleetConfig, FleetReport, fleet};
use sea_orm::{ConnectionTrait, Database, Statement};
use std::path::PathBuf;
use std::time::Duration;

fn small() -> FleetConfig {
    let mut cfg = FleetConfig::new(PathBuf::from(env!("CARGO_BIN_EXE_asdsweep")));
    cfg.workers = 20;
    cfg.seconds = 2.0;
    cfg.warmup = Duration::from_millis(1_000);
    cfg.ramp = Duration::from_millis(500);
    // About two heartbeats per job, so that all three calls are measured.
    cfg.job_ms_mean = 250.0;
    cfg.heartbeat_ms = 100;
    cfg
}

fn check(r: &FleetReport) {
    let json = serde_json::to_string(r).unwrap();
    assert_eq!(r.registered, 20, "{json}");
    assert_eq!(r.errors_total, 0, "{json}");
    assert!(r.errors.is_empty(), "{json}");
    assert_eq!(r.heartbeat_ms, 100, "{json}");
    assert_eq!(r.lease_empty, 0, "the queue ran dry: {json}");
    assert!(r.jobs_per_s > 0.0 && r.complete_calls > 0, "{json}");
    assert!(r.lease_calls > 0 && r.heartbeat_calls > 0, "{json}");
    for (call, p) in [
        (
            "lease",
            [
                r.lease_p50_ms,
                r.lease_p90_ms,
                r.lease_p99_ms,
                r.lease_max_ms,
            ],
        ),
        (
            "heartbeat",
            [
                r.heartbeat_p50_ms,
                r.heartbeat_p90_ms,
                r.heartbeat_p99_ms,
                r.heartbeat_max_ms,
            ],
        ),
        (
            "complete",
            [
                r.complete_p50_ms,
                r.complete_p90_ms,
                r.complete_p99_ms,
                r.complete_max_ms,
            ],
        ),
    ] {
        assert!(
            p[0] > 0.0 && p[0] <= p[1] && p[1] <= p[2] && p[2] <= p[3],
            "{call} percentiles out of order: {json}"
        );
    }
    assert_eq!(r.seconds, 2.0, "{json}");
    assert!(r.coordinator_cpu_cores > 0.0, "{json}");
    assert!(
        r.machine_cpu_cores >= r.coordinator_cpu_cores * 0.9,
        "{json}"
    );
    assert!(r.coordinator_peak_rss_mib > 1.0, "{json}");
    assert!(
        r.coordinator_peak_rss_mib >= r.coordinator_rss_mib,
        "{json}"
    );
    assert!(r.db_queue_ops_per_s > 0.0, "{json}");
    // Every measured call is one queue operation at the coordinator, give or take the
    // calls in flight at the window's edges.
    let calls = (r.lease_calls + r.heartbeat_calls + r.complete_calls) as f64 / r.seconds;
    assert!(
        (r.db_queue_ops_per_s - calls).abs() <= 0.2 * calls + 20.0,
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_on_sqlite() {
    let r = fleet(small()).await.expect("the fleet benchmark runs");
    assert_eq!(r.db, "sqlite");
    assert_eq!(r.pg_xact_commit_per_s, None);
    check(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_on_postgres() {
    let url = std::env::var("ASDSWEEP_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("t_fleet_{:08x}", rand::random::<u32>());
    let mut cfg = small();
    cfg.db_url = Some(url.clone());
    cfg.db_schema = Some(schema.clone());
    let r = fleet(cfg).await.expect("the fleet benchmark runs");
    assert_eq!(r.db, "postgres");
    assert!(r.pg_xact_commit_per_s.is_some_and(|x| x > 0.0), "{r:?}");
    check(&r);
    // The benchmark's schema is gone.
    let db = Database::connect(&url).await.unwrap();
    let left = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT 1 AS one FROM pg_namespace WHERE nspname = '{schema}'"),
        ))
        .await
        .unwrap();
    assert!(left.is_none(), "schema {schema} was left behind");
}

#[tokio::test]
async fn an_existing_schema_is_refused_not_dropped() {
    let url = std::env::var("ASDSWEEP_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("t_fleet_keep_{:08x}", rand::random::<u32>());
    let db = Database::connect(&url).await.unwrap();
    db.execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
        .await
        .unwrap();
    let mut cfg = small();
    cfg.db_url = Some(url);
    cfg.db_schema = Some(schema.clone());
    let err = fleet(cfg).await.expect_err("an existing schema is refused");
    assert!(err.to_string().contains("exists"), "{err}");
    let kept = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT 1 AS one FROM pg_namespace WHERE nspname = '{schema}'"),
        ))
        .await
        .unwrap();
    db.execute_unprepared(&format!("DROP SCHEMA \"{schema}\""))
        .await
        .unwrap();
    assert!(kept.is_some());
}
