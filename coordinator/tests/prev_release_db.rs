//! A database written by asdsweep 0.1 — before results declared their proxy's direction
//! and carried further metrics — opens with the current store, which migrates it.
//!
//! The fixture `tests/fixtures/db/asdsweep-0.1-prev.db` is made by [`make_the_fixture`]:
//!
//! ```sh
//! ASDSWEEP_WRITE_FIXTURE=1 cargo test -p asdsweep-coordinator --test prev_release_db -- --ignored
//! ```
//!
//! Its schema is exactly asdsweep 0.1's: the first three migrations of `Migrator`
//! (through `m20261203_000003_job_backends`, the last of that release). Its rows are
//! written in SQL as asdsweep 0.1's store wrote them: one sweep of an autoencoder family
//! (trained per machine type), a classifier family (trained once) and a noop family, its
//! jobs and dependencies, a worker, two checkpoints, and the results of every job but one
//! pending evaluation, each with the proxy metric its 0.1 worker reported (`ae_train_mse`
//! without a value for AE training, `ae_l1`, `macro_f1`, `noop`).

use asdsweep_coordinator::report::{build_report, result_lines};
use asdsweep_coordinator::store::{NamedMetric, NewResult, NewWorker, Store};
use asdsweep_migrations::{Migrator, MigratorTrait};
use asdsweep_shared::analysis::Direction;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, FromQueryResult, Statement};
use std::path::PathBuf;

/// The committed fixture.
fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/db/asdsweep-0.1-prev.db")
}

/// Migrations of asdsweep 0.1.
const PREVIOUS_MIGRATIONS: u32 = 3;

const SHA_AE_FAN: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const SHA_AE_PUMP: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const SHA_CE: &str = "3333333333333333333333333333333333333333333333333333333333333333";

/// A job: id, key, kind, stage, family, config, device, state, dependents, checkpoint.
type Job = (
    i64,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i32,
    Option<&'static str>,
);

#[rustfmt::skip]
const JOBS: &[Job] = &[
    (1, "ae/h16-l2/fan/s1/train", "autoencoder", "train", "ae", "h16-l2", "fan", "succeeded", 1, Some(SHA_AE_FAN)),
    (2, "ae/h16-l2/fan/s1/eval", "autoencoder", "eval", "ae", "h16-l2", "fan", "succeeded", 0, None),
    (3, "ae/h16-l2/pump/s1/train", "autoencoder", "train", "ae", "h16-l2", "pump", "succeeded", 1, Some(SHA_AE_PUMP)),
    (4, "ae/h16-l2/pump/s1/eval", "autoencoder", "eval", "ae", "h16-l2", "pump", "pending", 0, None),
    (5, "ce/r18/*/s1/train", "classifier", "train", "ce", "r18", "*", "succeeded", 1, Some(SHA_CE)),
    (6, "ce/r18/fan/s1/eval", "classifier", "eval", "ce", "r18", "fan", "succeeded", 0, None),
    (7, "noop/c0/fan/s1/run", "noop", "run", "noop", "c0", "fan", "succeeded", 0, None),
];

/// A result: its job, proxy metric, proxy value, the six ASD metrics, artifact.
type ResultRow = (
    i64,
    &'static str,
    Option<f64>,
    [Option<f64>; 6],
    Option<&'static str>,
);

/// The proxy metric each 0.1 worker reported: AE training reports `ae_train_mse` without
/// a value, the classifier `macro_f1` at training and at evaluation.
#[rustfmt::skip]
const RESULTS: &[ResultRow] = &[
    (1, "ae_train_mse", None, [None; 6], Some(SHA_AE_FAN)),
    (2, "ae_l1", Some(0.0421), [Some(0.71), Some(0.55), Some(0.64), Some(0.52), Some(0.68), Some(0.54)], None),
    (3, "ae_train_mse", None, [None; 6], Some(SHA_AE_PUMP)),
    (5, "macro_f1", Some(0.83), [None; 6], Some(SHA_CE)),
    (6, "macro_f1", Some(0.83), [Some(0.77), Some(0.6), Some(0.7), Some(0.58), Some(0.74), Some(0.59)], None),
    (7, "noop", None, [None; 6], None),
];

/// The rows, as asdsweep 0.1's store wrote them (times are fixed).
fn rows() -> Vec<String> {
    let spec = "version = 1\nname = \"prev\"\ndevices = [\"fan\", \"pump\"]\n\n\
                [[family]]\nkind = \"autoencoder\"\nname = \"ae\"\nepochs = 2\nconfigs = [{ name = \"h16-l2\", hidden = 16, latent = 2 }]\n\n\
                [[family]]\nkind = \"classifier\"\nname = \"ce\"\nepochs = 2\nconfigs = [{ name = \"r18\" }]\n\n\
                [[family]]\nkind = \"noop\"\nconfigs = [{ name = \"c0\" }]\n";
    let hash = "9f2c4e1b7a3d5c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a";
    let t = 1_764_756_000_000_i64;
    let mut out = vec![format!(
        "INSERT INTO sweeps (id, sweep_key, name, spec_hash, spec_toml, state, job_count, created_at_ms) \
         VALUES (1, '{hash}', 'prev', '{hash}', '{}', 'active', 7, {t})",
        spec.replace('\'', "''")
    )];
    let worker = "w-00000000000000a1";
    for &(id, key, kind, stage, family, config, device, state, dependents, checkpoint) in JOBS {
        let done = state == "succeeded";
        let params = match kind {
            "autoencoder" => r#"{"epochs":2,"hidden":16,"latent":2}"#,
            "classifier" => r#"{"epochs":2}"#,
            _ => "{}",
        };
        out.push(format!(
            "INSERT INTO jobs (id, sweep_id, job_key, kind, stage, family, config, device, seed, params, state, \
             priority, attempts, max_attempts, lease_ttl_ms, backoff_base_ms, backoff_max_ms, lease_token, \
             lease_expires_at_ms, worker_id, not_before_ms, last_error, dependents, progress, created_at_ms, \
             started_at_ms, finished_at_ms, checkpoint, backends) \
             VALUES ({id}, 1, '{key}', '{kind}', '{stage}', '{family}', '{config}', '{device}', 1, '{params}', '{state}', \
             0, {attempts}, 3, 60000, 1000, 60000, {attempts}, NULL, {worker_id}, 0, NULL, {dependents}, {progress}, {t}, \
             {started}, {finished}, {checkpoint}, NULL)",
            attempts = i32::from(done),
            worker_id = if done { format!("'{worker}'") } else { "NULL".into() },
            progress = if done && stage == "train" {
                r#"'{"checkpoint":null,"epoch":2,"epochs":2,"loss":0.0123,"message":""}'"#
            } else {
                "NULL"
            },
            started = if done { (t + 1_000 * id).to_string() } else { "NULL".into() },
            finished = if done { (t + 1_000 * id + 900).to_string() } else { "NULL".into() },
            checkpoint = checkpoint.map_or("NULL".into(), |c| format!("'{c}'")),
        ));
    }
    for (job, dep) in [(2, 1), (4, 3), (6, 5)] {
        out.push(format!(
            "INSERT INTO job_deps (job_id, dep_id) VALUES ({job}, {dep})"
        ));
    }
    let provenance = r#"{"backend":"flex","code_version":"0.1.0","dataset_fingerprint":"fp-prev","device":"cpu","seed":1,"spec_hash":"9f2c4e1b7a3d5c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a","wall_s":0.9}"#;
    let sql = |v: Option<f64>| v.map_or("NULL".to_owned(), |x| x.to_string());
    for &(job, metric, proxy, asd, artifact) in RESULTS {
        let extra = if metric == "ae_train_mse" {
            r#"{"best_epoch":2,"best_loss":0.0123,"epochs":2,"final_loss":0.0123,"losses":[0.02,0.0123],"resumed_from_epoch":null,"train_clips":40}"#
        } else if metric == "noop" {
            r#"{"attempt":1,"slept_ms":0}"#
        } else {
            "{}"
        };
        out.push(format!(
            "INSERT INTO results (id, job_id, sweep_id, proxy_metric, proxy_value, lp_in_auc, lp_in_pauc, lp_out_auc, \
             lp_out_pauc, md_auc, md_pauc, extra, provenance, artifacts, worker_id, lease_token, created_at_ms) \
             VALUES ({job}, {job}, 1, '{metric}', {}, {}, '{extra}', '{provenance}', '{}', '{worker}', 1, {})",
            sql(proxy),
            asd.map(sql).join(", "),
            artifact.map_or("[]".to_owned(), |a| format!("[\"{a}\"]")),
            t + 1_000 * job + 900,
        ));
    }
    for sha in [SHA_AE_FAN, SHA_AE_PUMP, SHA_CE] {
        out.push(format!(
            "INSERT INTO artifacts (sha256, size, kind, created_at_ms) VALUES ('{sha}', 4096, 'checkpoint', {t})"
        ));
    }
    out.push(format!(
        "INSERT INTO workers (id, name, backend, device, memory_bytes, labels, kinds, version, registered_at_ms, last_seen_ms) \
         VALUES ('{worker}', 'host-a', 'flex', 'cpu', 8589934592, '[]', '[\"autoencoder\",\"classifier\",\"noop\"]', '0.1.0', {t}, {})",
        t + 8_000
    ));
    out
}

/// Writes the fixture (only with ASDSWEEP_WRITE_FIXTURE=1, so that a plain `--ignored`
/// run does not rewrite it).
#[tokio::test]
#[ignore = "writes tests/fixtures/db/asdsweep-0.1-prev.db"]
async fn make_the_fixture() {
    if std::env::var_os("ASDSWEEP_WRITE_FIXTURE").is_none() {
        eprintln!(
            "set ASDSWEEP_WRITE_FIXTURE=1 to write {}",
            fixture().display()
        );
        return;
    }
    let path = fixture();
    let _ = std::fs::remove_file(&path);
    // One connection, in WAL mode as `asdsweep serve` keeps its file; closing it folds the
    // log back into the file, so the .db alone is the database.
    let mut opts = ConnectOptions::new(format!("sqlite://{}?mode=rwc", path.display()));
    opts.max_connections(1)
        .min_connections(1)
        .sqlx_logging(false);
    opts.map_sqlx_sqlite_opts(|o| o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal));
    let db = Database::connect(opts).await.unwrap();
    Migrator::up(&db, Some(PREVIOUS_MIGRATIONS)).await.unwrap();
    for statement in rows() {
        db.execute_unprepared(&statement).await.unwrap();
    }
    db.execute_unprepared("VACUUM").await.unwrap();
    db.close().await.unwrap();
}

#[derive(FromQueryResult)]
struct Name {
    version: String,
}

#[tokio::test]
async fn a_database_of_the_previous_release_is_migrated_and_its_results_read() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("prev.db");
    std::fs::copy(fixture(), &copy).unwrap();
    let store = Store::open(&format!("sqlite://{}?mode=rwc", copy.display()), None)
        .await
        .unwrap();
    let db = store.connection();
    let applied: Vec<String> = Name::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT version FROM seaql_migrations ORDER BY version",
    ))
    .all(db)
    .await
    .unwrap()
    .into_iter()
    .map(|n| n.version)
    .collect();
    assert_eq!(applied.len(), Migrator::migrations().len(), "{applied:?}");
    assert_eq!(
        applied.last().unwrap(),
        "m20261205_000005_heartbeats_in_place"
    );
    assert_eq!(
        applied[..PREVIOUS_MIGRATIONS as usize],
        [
            "m20261125_000001_create_queue",
            "m20261125_000002_job_checkpoint",
            "m20261203_000003_job_backends"
        ],
        "the fixture was made by the previous release's migrations"
    );

    // The old results read back with their proxies, the backfilled directions and no further metrics.
    let sweep = store.resolve_sweep("prev").await.unwrap();
    let jobs = store.results(sweep.id).await.unwrap();
    let found: Vec<(&str, &str, Option<Direction>, usize)> = jobs
        .iter()
        .filter_map(|(j, r)| r.as_ref().map(|r| (j, r)))
        .map(|(j, r)| {
            (
                j.job_key.as_str(),
                r.result.proxy_metric.as_str(),
                r.result.declared_direction(),
                r.metrics.len(),
            )
        })
        .collect();
    let (lower, higher) = (
        Some(Direction::LowerIsBetter),
        Some(Direction::HigherIsBetter),
    );
    assert_eq!(
        found,
        [
            ("ae/h16-l2/fan/s1/train", "ae_train_mse", None, 0),
            ("ae/h16-l2/fan/s1/eval", "ae_l1", lower, 0),
            ("ae/h16-l2/pump/s1/train", "ae_train_mse", None, 0),
            ("ce/r18/*/s1/train", "macro_f1", higher, 0),
            ("ce/r18/fan/s1/eval", "macro_f1", higher, 0),
            ("noop/c0/fan/s1/run", "noop", None, 0),
        ]
    );
    let ae = &jobs[1].1.as_ref().unwrap().result;
    assert_eq!((ae.proxy_value, ae.md_auc), (Some(0.0421), Some(0.68)));

    // A new result is completed on it: the pending evaluation, with a further metric.
    let worker = store
        .register_worker(NewWorker {
            name: "new".into(),
            backend: "flex".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let claimed = store
        .claim(&worker)
        .await
        .unwrap()
        .expect("the pending job");
    assert_eq!(claimed.job.job_key, "ae/h16-l2/pump/s1/eval");
    assert_eq!(claimed.input_artifacts, [SHA_AE_PUMP], "its old checkpoint");
    store
        .complete(
            &worker,
            claimed.job.id,
            claimed.job.lease_token,
            NewResult {
                proxy_metric: "ae_l1".into(),
                proxy_value: Some(0.05),
                proxy_direction: lower,
                metrics: vec![NamedMetric {
                    name: "ae_l1_p90".into(),
                    value: Some(0.09),
                    direction: lower,
                }],
                md_auc: Some(0.61),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let jobs = store.results(sweep.id).await.unwrap();
    let new = jobs[3].1.as_ref().expect("the new result");
    assert_eq!(new.result.declared_direction(), lower);
    assert_eq!(new.metrics[0].name, "ae_l1_p90");

    // The report reads old and new rows alike.
    let lines = result_lines(&jobs);
    assert_eq!(lines.len(), 4, "three evaluations and the noop run");
    let report = build_report(&sweep, &jobs).unwrap();
    assert_eq!(report.analysis.directions["ae"], Direction::LowerIsBetter);
    assert!(
        report
            .results_csv
            .lines()
            .next()
            .unwrap()
            .ends_with(",worker,proxy_direction,ae_l1_p90")
    );
}
