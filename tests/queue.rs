//! Queue scenarios, each run on SQLite and on Postgres, with an in-process
//! coordinator on an ephemeral port and real gRPC workers.

mod common;

use asdsweep_coordinator::ids::{FencingToken, JobId, SweepId, WorkerId};
use asdsweep_coordinator::queue::JobState;
use asdsweep_coordinator::store::NewSweep;
use asdsweep_shared::grid::{JobSpec, Stage};
use asdsweep_shared::proto::{
    self as pb, sweep_service_client::SweepServiceClient,
    worker_service_client::WorkerServiceClient,
};
use asdsweep_shared::spec::{QueueSpec, Spec};
use common::*;
use std::time::{Duration, Instant};
use tonic::Code;

on_sqlite_and_postgres!(
    thousand_jobs_eight_workers_each_job_succeeds_exactly_once,
    a_job_of_a_killed_worker_is_leased_again_after_the_ttl_and_succeeds,
    a_completion_with_an_expired_token_is_rejected_and_the_newer_result_kept,
    a_restarted_coordinator_finishes_the_sweep_without_rerunning_succeeded_jobs,
    retries_succeed_within_max_attempts_and_exhausted_jobs_end_dead_with_their_error,
    after_cancel_no_job_of_the_sweep_is_leased_again,
    bad_specs_and_unknown_kinds_fail_clearly,
    a_failed_training_job_ends_its_evaluation_jobs_with_a_reason,
    evaluation_jobs_leased_together_each_get_their_own_training_artifacts,
    higher_priority_jobs_are_leased_first,
    a_reported_checkpoint_is_handed_to_the_next_attempt_and_a_malformed_one_refused,
    jobs_are_leased_only_to_workers_with_a_backend_their_family_allows,
    further_metrics_and_the_proxy_direction_are_stored_with_their_result_all_or_nothing,
    workers_lists_live_workers_with_their_job_and_lost_ones_within_the_window,
    the_health_service_serves_while_the_database_answers_and_not_after,
    a_drained_worker_reports_the_checkpoint_of_its_last_epoch_and_the_next_attempt_resumes_from_it,
);

/// A training job's stand-in: at each epoch it reports progress; drained, it "finishes the
/// epoch" and reports a checkpoint, as `EpochReporter` does; resumed, it records the
/// checkpoint it was handed and succeeds.
#[derive(Clone, Default)]
struct Draining {
    started: std::sync::Arc<tokio::sync::Notify>,
    runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    resumed_from: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

const DRAINED_CHECKPOINT: &str = "cd";

impl asdsweep_worker::JobKind for Draining {
    fn kind(&self) -> asdsweep_shared::family::Kind {
        asdsweep_shared::family::noop::KIND
    }
    fn run(
        &self,
        ctx: asdsweep_worker::JobContext,
    ) -> futures::future::BoxFuture<
        'static,
        Result<asdsweep_worker::JobOutput, asdsweep_worker::JobError>,
    > {
        let me = self.clone();
        Box::pin(async move {
            if me.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                *me.resumed_from.lock().unwrap() = ctx.job.resume_checkpoint.clone();
                return Ok(asdsweep_worker::JobOutput {
                    proxy_metric: "count".into(),
                    ..Default::default()
                });
            }
            ctx.progress.send_modify(|p| {
                p.epoch = 1;
                p.epochs = 10;
            });
            me.started.notify_one();
            ctx.drain.cancelled().await;
            tokio::time::sleep(Duration::from_millis(200)).await; // the rest of the epoch
            ctx.progress.send_modify(|p| {
                p.epoch = 2;
                p.checkpoint = Some(DRAINED_CHECKPOINT.repeat(32));
            });
            Err(asdsweep_worker::JobError::retryable("drained"))
        })
    }
}

async fn a_drained_worker_reports_the_checkpoint_of_its_last_epoch_and_the_next_attempt_resumes_from_it(
    h: &Harness,
) {
    let coord = h.coordinator().await;
    launch(&coord.url(), &noop_spec("drain", 1, 1, "", "")).await;
    let kind = Draining::default();
    let registry = || asdsweep_worker::Registry::new().with(kind.clone());
    let (first, stop) = spawn_worker(worker_config(&coord.url(), "preempted"), registry());
    kind.started.notified().await;
    stop.cancel(); // SIGTERM
    let summary = first.await.unwrap();
    assert_eq!((summary.released, summary.succeeded), (1, 0), "{summary:?}");
    let (second, _) = spawn_worker(worker_config(&coord.url(), "next"), registry());
    assert_eq!(second.await.unwrap().succeeded, 1);
    assert_eq!(
        kind.resumed_from.lock().unwrap().as_deref(),
        Some(DRAINED_CHECKPOINT.repeat(32).as_str()),
        "the next attempt resumes from the checkpoint the drained job saved"
    );
    coord.shutdown().await;
}

async fn the_health_service_serves_while_the_database_answers_and_not_after(h: &Harness) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut cfg = h.config(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.tokens = asdsweep_shared::auth::Tokens::shared(&asdsweep_shared::auth::Secret::new(
        "operators-only",
    ));
    let coord = asdsweep_coordinator::Coordinator::start(cfg).await.unwrap();
    // No token: probes carry none.
    let channel = tonic::transport::Channel::from_shared(coord.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel);
    let status = |service: &str| {
        let mut health = health.clone();
        let service = service.to_owned();
        async move {
            health
                .check(HealthCheckRequest { service })
                .await
                .map(|r| r.into_inner().status())
        }
    };
    for service in ["", "asdsweep.v1.SweepService", "asdsweep.v1.WorkerService"] {
        assert_eq!(
            status(service).await.unwrap(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = status("no.such.Service").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    // The database goes away: within a few checks the coordinator says so.
    coord.store().close().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = status("").await.unwrap();
        if s == ServingStatus::NotServing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {s:?} after the database closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status("asdsweep.v1.SweepService").await.unwrap(),
        ServingStatus::NotServing
    );
    coord.shutdown().await;
}

async fn workers_lists_live_workers_with_their_job_and_lost_ones_within_the_window(h: &Harness) {
    use sea_orm::ConnectionTrait;
    let coord = h.coordinator().await;
    launch(&coord.url(), &noop_spec("w", 1, 1, "", "")).await;
    let mut client = WorkerServiceClient::connect(coord.url()).await.unwrap();
    let mut register = async |name: &str| {
        client
            .register(pb::RegisterRequest {
                name: name.into(),
                capabilities: Some(pb::Capabilities {
                    backend: "flex".into(),
                    device: "cpu".into(),
                    kinds: vec!["noop".into()],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .worker_id
    };
    let (busy, gone, ancient) = (
        register("busy").await,
        register("gone").await,
        register("ancient").await,
    );
    let mut client = WorkerServiceClient::connect(coord.url()).await.unwrap();
    let lease = client
        .lease(pb::LeaseRequest {
            worker_id: busy.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .lease
        .expect("the one job");
    let store = h.store().await;
    for (id, hours) in [(&gone, 2), (&ancient, 72)] {
        store
            .connection()
            .execute_unprepared(&format!(
                "UPDATE workers SET last_seen_ms = last_seen_ms - {} WHERE id = '{id}'",
                hours * 3_600_000
            ))
            .await
            .unwrap();
    }
    let mut sweeps = SweepServiceClient::connect(coord.url()).await.unwrap();
    let listed = |within: i64| {
        let mut sweeps = sweeps.clone();
        async move {
            sweeps
                .workers(pb::WorkersRequest {
                    lost_within_ms: within,
                })
                .await
                .unwrap()
                .into_inner()
                .workers
        }
    };
    let day = listed(0).await;
    let names: Vec<(&str, bool)> = day.iter().map(|w| (w.name.as_str(), w.live)).collect();
    assert_eq!(names, [("busy", true), ("gone", false)]);
    assert_eq!(
        day[0].current_job.as_deref(),
        Some(lease.job.unwrap().job_key.as_str())
    );
    assert_eq!(
        (day[0].backend.as_str(), day[0].device.as_str()),
        ("flex", "cpu")
    );
    assert_eq!(day[1].current_job, None);
    assert!(day[1].last_seen_ms < day[0].last_seen_ms - 7_000_000);
    let names: Vec<String> = listed(4 * 24 * 3_600_000)
        .await
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["busy", "ancient", "gone"]);
    let err = sweeps
        .workers(pb::WorkersRequest { lost_within_ms: -1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("lost_within_ms"),
        "{}",
        err.message()
    );
    coord.shutdown().await;
}

async fn further_metrics_and_the_proxy_direction_are_stored_with_their_result_all_or_nothing(
    h: &Harness,
) {
    let coord = h.coordinator().await;
    let sweep = launch(&coord.url(), &noop_spec("named", 2, 1, "", "")).await;
    let mut client = WorkerServiceClient::connect(coord.url()).await.unwrap();
    let w = client
        .register(pb::RegisterRequest::default())
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let mut leases = Vec::new();
    for _ in 0..2 {
        let lease = client
            .lease(pb::LeaseRequest {
                worker_id: w.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .lease
            .unwrap();
        leases.push((lease.job.unwrap().job_id, lease.token));
    }
    let named = |name: &str, value: Option<f64>, direction: pb::MetricDirection| pb::NamedMetric {
        name: name.into(),
        value,
        direction: direction as i32,
    };
    let complete =
        |(job_id, token): (i64, i64), metrics: Vec<pb::NamedMetric>| pb::CompleteRequest {
            worker_id: w.clone(),
            job_id,
            token,
            metrics: Some(pb::JobMetrics {
                proxy_metric: "si_sdr".into(),
                proxy_value: Some(7.5),
                proxy_direction: pb::MetricDirection::HigherIsBetter as i32,
                metrics,
                ..Default::default()
            }),
        };
    let good = vec![
        named(
            "si_sdr_5db",
            Some(9.25),
            pb::MetricDirection::HigherIsBetter,
        ),
        named("mixtures", Some(120.0), pb::MetricDirection::Unspecified),
        named("si_sdr_m5db", None, pb::MetricDirection::HigherIsBetter),
    ];
    // Malformed metrics are refused before anything is stored.
    let mut unknown_direction = named("x", Some(1.0), pb::MetricDirection::Unspecified);
    unknown_direction.direction = 7;
    for bad in [
        vec![named("md_auc", Some(1.0), pb::MetricDirection::Unspecified)],
        vec![named("si_sdr", Some(1.0), pb::MetricDirection::Unspecified)],
        vec![good[0].clone(), good[0].clone()],
        vec![unknown_direction],
    ] {
        let err = client.complete(complete(leases[1], bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    // A completion whose metrics the database refuses (the same name twice, past the
    // service's check) stores nothing; the other completion, perhaps in the same batch, is kept.
    let store = coord.store();
    let twice = asdsweep_coordinator::store::NamedMetric {
        name: "dup".into(),
        value: Some(1.0),
        direction: None,
    };
    let refused = asdsweep_coordinator::store::NewResult {
        proxy_metric: "si_sdr".into(),
        metrics: vec![twice.clone(), twice],
        ..Default::default()
    };
    let mut grpc = client.clone();
    let worker = WorkerId(w.clone());
    let (kept, failed) = tokio::join!(
        grpc.complete(complete(leases[0], good.clone())),
        store.complete(
            &worker,
            JobId(leases[1].0),
            FencingToken(leases[1].1),
            refused
        ),
    );
    kept.unwrap();
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM results").await,
        1,
        "the refused completion left no result"
    );
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM result_metrics").await,
        3
    );
    // Its lease still holds: completed again without further metrics, it succeeds.
    client
        .complete(pb::CompleteRequest {
            metrics: Some(pb::JobMetrics {
                proxy_metric: "count".into(),
                ..Default::default()
            }),
            ..complete(leases[1], vec![])
        })
        .await
        .unwrap();

    let rows = store.results(SweepId(sweep.sweep_id)).await.unwrap();
    let first = rows
        .iter()
        .find(|(j, _)| j.id == JobId(leases[0].0))
        .and_then(|(_, r)| r.as_ref())
        .unwrap();
    assert_eq!(
        first.result.proxy_direction.as_deref(),
        Some("higher_is_better")
    );
    let names: Vec<&str> = first.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["mixtures", "si_sdr_5db", "si_sdr_m5db"],
        "sorted by name"
    );
    let second = rows
        .iter()
        .find(|(j, _)| j.id == JobId(leases[1].0))
        .and_then(|(_, r)| r.as_ref())
        .unwrap();
    assert!(second.metrics.is_empty() && second.result.proxy_direction.is_none());

    // The results call hands them back as they were sent.
    let mut sweeps = SweepServiceClient::connect(coord.url()).await.unwrap();
    let wire = sweeps
        .results(pb::ResultsRequest {
            sweep: sweep.sweep_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    let m = wire
        .iter()
        .find_map(|r| r.metrics.clone().filter(|m| m.proxy_metric == "si_sdr"))
        .unwrap();
    assert_eq!(m.proxy_direction(), pb::MetricDirection::HigherIsBetter);
    let mut sent = good.clone();
    sent.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(m.metrics, sent);
    let other = wire
        .iter()
        .find_map(|r| r.metrics.clone().filter(|m| m.proxy_metric == "count"))
        .unwrap();
    assert_eq!(other.proxy_direction(), pb::MetricDirection::Unspecified);
    assert!(other.metrics.is_empty());
    coord.shutdown().await;
}

async fn jobs_are_leased_only_to_workers_with_a_backend_their_family_allows(h: &Harness) {
    let coord = h.coordinator().await;
    let spec = "version = 1\nname = \"gpu\"\ndevices = [\"fan\", \"pump\"]\n\
                [[family]]\nkind = \"noop\"\nname = \"big\"\npriority = 5\nbackends = [\"cuda\", \"tch\"]\nconfigs = [{ name = \"a\" }]\n\
                [[family]]\nkind = \"noop\"\nname = \"small\"\nconfigs = [{ name = \"a\" }]\n";
    let sweep = launch(&coord.url(), spec).await.sweep_id;
    let mut client = WorkerServiceClient::connect(coord.url()).await.unwrap();
    let register = |backend: &str| pb::RegisterRequest {
        name: backend.into(),
        capabilities: Some(pb::Capabilities {
            backend: backend.into(),
            device: "cpu".into(),
            ..Default::default()
        }),
        version: String::new(),
    };
    let drain = async |client: &mut WorkerServiceClient<tonic::transport::Channel>,
                       worker_id: &str| {
        let mut families = Vec::new();
        while let Some(l) = client
            .lease(pb::LeaseRequest {
                worker_id: worker_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .lease
        {
            families.push(l.job.unwrap().family);
        }
        families
    };
    // A CPU worker gets only the family that allows any backend, despite the other's priority.
    let flex = client
        .register(register("flex"))
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    assert_eq!(drain(&mut client, &flex).await, ["small", "small"]);
    let mut sweeps = SweepServiceClient::connect(coord.url()).await.unwrap();
    let status = sweeps
        .status(pb::StatusRequest {
            sweep: sweep.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.sweeps[0].backend_needs,
        [pb::BackendNeed {
            backends: "cuda,tch".into(),
            pending: 2
        }]
    );
    let shown = asdsweep_coordinator::operator::render_status(&status);
    assert!(
        shown.contains(
            "2 pending job(s) need a worker with backend cuda or tch: no live worker has one"
        ),
        "{shown}"
    );
    // A libtorch worker gets them.
    let tch = client
        .register(register("tch"))
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    assert_eq!(drain(&mut client, &tch).await, ["big", "big"]);
    // A backend name that is not a plain name is refused at registration.
    let err = client.register(register("%")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("backend \"%\""), "{}", err.message());
    coord.shutdown().await;
}

async fn a_reported_checkpoint_is_handed_to_the_next_attempt_and_a_malformed_one_refused(
    h: &Harness,
) {
    let coord = h.coordinator().await;
    launch(
        &coord.url(),
        &noop_spec(
            "ckpt",
            1,
            1,
            "",
            "lease_ttl_ms = 1000\nbackoff_base_ms = 0\nbackoff_max_ms = 0",
        ),
    )
    .await;
    let mut client = WorkerServiceClient::connect(coord.url()).await.unwrap();
    let w = client
        .register(pb::RegisterRequest::default())
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let lease = client
        .lease(pb::LeaseRequest {
            worker_id: w.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .lease
        .unwrap();
    let job = lease.job.unwrap();
    assert_eq!(
        job.resume_checkpoint, None,
        "a first attempt has nothing to resume"
    );
    let sha = "ab".repeat(32);
    let beat = |checkpoint: Option<&str>| pb::HeartbeatRequest {
        worker_id: w.clone(),
        job_id: job.job_id,
        token: lease.token,
        progress: Some(pb::Progress {
            epoch: 3,
            epochs: 9,
            checkpoint: checkpoint.map(str::to_owned),
            ..Default::default()
        }),
    };
    client.heartbeat(beat(Some(&sha))).await.unwrap();
    client.heartbeat(beat(None)).await.unwrap(); // a beat without one keeps the last
    let err = client
        .heartbeat(beat(Some("../../etc/passwd")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // The worker goes silent: the lease expires and the next attempt gets the checkpoint.
    let end = Instant::now() + Duration::from_secs(15);
    let again = loop {
        if let Some(l) = client
            .lease(pb::LeaseRequest {
                worker_id: w.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .lease
        {
            break l.job.unwrap();
        }
        assert!(
            Instant::now() < end,
            "the expired job was never leased again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((again.job_id, again.attempt), (job.job_id, 2));
    assert_eq!(again.resume_checkpoint, Some(sha));
    coord.shutdown().await;
}

async fn higher_priority_jobs_are_leased_first(h: &Harness) {
    let coord = h.coordinator().await;
    let spec = "version = 1\nname = \"prio\"\ndevices = [\"fan\", \"pump\"]\n\
                [[family]]\nkind = \"noop\"\nname = \"low\"\nconfigs = [{ name = \"a\" }]\n\
                [[family]]\nkind = \"noop\"\nname = \"high\"\npriority = 5\nconfigs = [{ name = \"a\" }]\n";
    launch(&coord.url(), spec).await;
    let mut client = WorkerServiceClient::connect(coord.url()).await.unwrap();
    let w = client
        .register(pb::RegisterRequest::default())
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let mut order = Vec::new();
    while let Some(l) = client
        .lease(pb::LeaseRequest {
            worker_id: w.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .lease
    {
        order.push(l.job.unwrap().family);
    }
    assert_eq!(order, ["high", "high", "low", "low"]);
    coord.shutdown().await;
}

/// A `noop` job of family `f` with no dependencies.
fn noop_job(key: &str) -> JobSpec {
    JobSpec {
        key: key.into(),
        kind: "noop".into(),
        stage: Stage::Run,
        family: "f".into(),
        config: "c".into(),
        device: "d".into(),
        seed: 1,
        params: serde_json::json!({}),
        depends_on: vec![],
        priority: 0,
        backends: vec![],
    }
}

async fn launch(url: &str, spec_toml: &str) -> pb::LaunchResponse {
    let mut c = SweepServiceClient::connect(url.to_owned()).await.unwrap();
    c.launch(pb::LaunchRequest {
        spec_toml: spec_toml.into(),
        force_new: false,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn sweep_status(url: &str, sweep: i64) -> pb::SweepStatus {
    let mut c = SweepServiceClient::connect(url.to_owned()).await.unwrap();
    c.status(pb::StatusRequest {
        sweep: sweep.to_string(),
    })
    .await
    .unwrap()
    .into_inner()
    .sweeps
    .remove(0)
}

fn state_count(s: &pb::SweepStatus, state: JobState) -> u64 {
    s.counts
        .iter()
        .find(|c| c.state == state.as_str())
        .map(|c| c.count)
        .unwrap_or(0)
}

async fn thousand_jobs_eight_workers_each_job_succeeds_exactly_once(h: &Harness) {
    let coord = h.coordinator().await;
    let sweep = launch(&coord.url(), &noop_spec("a", 100, 10, "", "")).await;
    assert_eq!(sweep.jobs, 1000);
    let kind = Counting::default();
    let workers: Vec<_> = (0..8)
        .map(|i| {
            spawn_worker(
                worker_config(&coord.url(), &format!("w{i}")),
                kind.registry(),
            )
        })
        .collect();
    let mut accepted = 0;
    for (w, _) in workers {
        accepted += w.await.unwrap().succeeded;
    }
    assert_eq!(accepted, 1000, "completions accepted by the coordinator");
    assert_eq!(kind.total_runs(), 1000);
    assert_eq!(kind.max_runs(), 1, "a job ran twice");
    let store = coord.store();
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM results").await,
        1000
    );
    assert_eq!(
        count(store, "SELECT COUNT(DISTINCT job_id) AS n FROM results").await,
        1000
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) AS n FROM jobs WHERE state = 'succeeded' AND attempts = 1"
        )
        .await,
        1000
    );
    coord.shutdown().await;
}

async fn a_job_of_a_killed_worker_is_leased_again_after_the_ttl_and_succeeds(h: &Harness) {
    let coord = h.coordinator().await;
    let spec = noop_spec(
        "b",
        1,
        1,
        ", sleep_ms = 1500",
        "lease_ttl_ms = 1000\nbackoff_base_ms = 10",
    );
    let sweep = launch(&coord.url(), &spec).await;
    // A real worker process, killed with SIGKILL in the middle of the job.
    let mut victim = std::process::Command::new(env!("CARGO_BIN_EXE_asdsweep"))
        .args(["worker", "--coordinator", &coord.url(), "--name", "victim"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let store = coord.store().clone();
    wait_until(
        Duration::from_secs(20),
        "the victim to lease the job",
        || {
            let store = store.clone();
            async move {
                count(
                    &store,
                    "SELECT COUNT(*) AS n FROM jobs WHERE state = 'leased'",
                )
                .await
                    == 1
            }
        },
    )
    .await;
    victim.kill().unwrap();
    victim.wait().unwrap();
    let kind = Counting::sleeping(50);
    let mut cfg = worker_config(&coord.url(), "rescuer");
    cfg.exit_when_idle = Some(Duration::from_secs(5));
    let (w, _) = spawn_worker(cfg, kind.registry());
    wait_until(Duration::from_secs(20), "the job to succeed", || {
        let url = coord.url();
        async move {
            state_count(
                &sweep_status(&url, sweep.sweep_id).await,
                JobState::Succeeded,
            ) == 1
        }
    })
    .await;
    assert_eq!(w.await.unwrap().succeeded, 1);
    assert_eq!(
        count(&store, "SELECT CAST(attempts AS BIGINT) AS n FROM jobs").await,
        2,
        "the killed attempt counts"
    );
    assert_eq!(count(&store, "SELECT COUNT(*) AS n FROM results").await, 1);
    coord.shutdown().await;
}

async fn a_completion_with_an_expired_token_is_rejected_and_the_newer_result_kept(h: &Harness) {
    let coord = h.coordinator().await;
    let spec = noop_spec("c", 1, 1, "", "lease_ttl_ms = 1000\nbackoff_base_ms = 10");
    launch(&coord.url(), &spec).await;
    let mut client = WorkerServiceClient::connect(coord.url()).await.unwrap();
    let register = |name: &str| pb::RegisterRequest {
        name: name.into(),
        ..Default::default()
    };
    let old = client
        .register(register("old"))
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let new = client
        .register(register("new"))
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let first = client
        .lease(pb::LeaseRequest {
            worker_id: old.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .lease
        .unwrap();
    let job = first.job.clone().unwrap();
    // The old lease expires, is reaped, and the job goes to the new worker.
    let second = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(l) = client
            .lease(pb::LeaseRequest {
                worker_id: new.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .lease
        {
            break l;
        }
    };
    assert_eq!(second.job.as_ref().unwrap().job_id, job.job_id);
    assert!(second.token > first.token, "fencing tokens increase");
    let metrics = |v: f64| {
        Some(pb::JobMetrics {
            proxy_metric: "m".into(),
            md_auc: Some(v),
            ..Default::default()
        })
    };
    let late = pb::CompleteRequest {
        worker_id: old.clone(),
        job_id: job.job_id,
        token: first.token,
        metrics: metrics(0.1),
    };
    let err = client.complete(late.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains(&job.job_key) && err.message().contains("stale lease"),
        "{}",
        err.message()
    );
    let hb = pb::HeartbeatRequest {
        worker_id: old.clone(),
        job_id: job.job_id,
        token: first.token,
        progress: None,
    };
    assert_eq!(
        client.heartbeat(hb).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let fresh = pb::CompleteRequest {
        worker_id: new.clone(),
        job_id: job.job_id,
        token: second.token,
        metrics: metrics(0.9),
    };
    client.complete(fresh.clone()).await.unwrap();
    // A retried completion of the accepted lease is harmless; the late one stays rejected.
    client.complete(fresh).await.unwrap();
    assert_eq!(
        client.complete(late).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let rows = coord.store().results(SweepId(job.sweep_id)).await.unwrap();
    let result = &rows[0].1.as_ref().expect("a result").result;
    assert_eq!(
        (result.md_auc, result.worker_id.as_str(), result.lease_token),
        (Some(0.9), new.as_str(), second.token)
    );
    assert_eq!(
        count(coord.store(), "SELECT COUNT(*) AS n FROM results").await,
        1
    );
    coord.shutdown().await;
}

async fn a_restarted_coordinator_finishes_the_sweep_without_rerunning_succeeded_jobs(h: &Harness) {
    let first = h.coordinator().await;
    let addr = first.addr();
    let url = first.url();
    let sweep = launch(&url, &noop_spec("d", 20, 10, "", "lease_ttl_ms = 2000")).await;
    let kind = Counting::sleeping(20);
    let workers: Vec<_> = (0..4)
        .map(|i| spawn_worker(worker_config(&url, &format!("w{i}")), kind.registry()))
        .collect();
    wait_until(Duration::from_secs(30), "some jobs to succeed", || {
        let url = url.clone();
        async move {
            state_count(
                &sweep_status(&url, sweep.sweep_id).await,
                JobState::Succeeded,
            ) >= 40
        }
    })
    .await;
    first.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = h.coordinator_at(addr).await;
    for (w, _) in workers {
        w.await.unwrap();
    }
    let status = sweep_status(&url, sweep.sweep_id).await;
    assert_eq!(state_count(&status, JobState::Succeeded), 200, "{status:?}");
    assert_eq!(
        count(second.store(), "SELECT COUNT(*) AS n FROM results").await,
        200
    );
    assert_eq!(kind.max_runs(), 1, "a succeeded job ran again");
    second.shutdown().await;
}

async fn retries_succeed_within_max_attempts_and_exhausted_jobs_end_dead_with_their_error(
    h: &Harness,
) {
    let coord = h.coordinator().await;
    let spec = "version = 1\nname = \"e\"\ndevices = [\"fan\"]\n[queue]\nmax_attempts = 3\nbackoff_base_ms = 20\nbackoff_max_ms = 100\n\
                [[family]]\nkind = \"noop\"\nconfigs = [{ name = \"flaky\", fail_times = 2 }, { name = \"broken\", fail_times = 99 }]\n";
    let sweep = launch(&coord.url(), spec).await;
    let (w, _) = spawn_worker(
        worker_config(&coord.url(), "w"),
        asdsweep_worker::families::builtin(),
    );
    let summary = w.await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (1, 5));
    let status = sweep_status(&coord.url(), sweep.sweep_id).await;
    assert_eq!(
        (
            state_count(&status, JobState::Succeeded),
            state_count(&status, JobState::Dead)
        ),
        (1, 1)
    );
    assert_eq!(status.dead.len(), 1);
    assert_eq!(status.dead[0].job_key, "noop/broken/fan/s1/run");
    assert_eq!(status.dead[0].attempts, 3);
    assert!(
        status.dead[0].error.contains("attempt 3/3")
            && status.dead[0].error.contains("injected failure"),
        "{:?}",
        status.dead[0]
    );
    let mut c = SweepServiceClient::connect(coord.url()).await.unwrap();
    let rows = c
        .results(pb::ResultsRequest { sweep: "e".into() })
        .await
        .unwrap()
        .into_inner()
        .rows;
    let flaky = rows.iter().find(|r| r.config == "flaky").unwrap();
    assert_eq!((flaky.state.as_str(), flaky.attempts), ("succeeded", 3));
    assert!(flaky.metrics.is_some());
    let broken = rows.iter().find(|r| r.config == "broken").unwrap();
    assert_eq!(broken.state, "dead");
    assert!(
        broken.error.contains("injected failure on attempt 3"),
        "{}",
        broken.error
    );
    // `retry --dead` gives the dead job a fresh budget.
    let requeued = c
        .retry(pb::RetryRequest {
            sweep: "e".into(),
            dead: true,
        })
        .await
        .unwrap()
        .into_inner()
        .requeued;
    assert_eq!(requeued, 1);
    assert_eq!(
        state_count(
            &sweep_status(&coord.url(), sweep.sweep_id).await,
            JobState::Pending
        ),
        1
    );
    coord.shutdown().await;
}

async fn after_cancel_no_job_of_the_sweep_is_leased_again(h: &Harness) {
    let coord = h.coordinator().await;
    let sweep = launch(&coord.url(), &noop_spec("g", 10, 10, "", "")).await;
    let kind = Counting::sleeping(100);
    let workers: Vec<_> = (0..2)
        .map(|i| {
            spawn_worker(
                worker_config(&coord.url(), &format!("w{i}")),
                kind.registry(),
            )
        })
        .collect();
    wait_until(Duration::from_secs(20), "a few jobs to succeed", || {
        let url = coord.url();
        async move {
            state_count(
                &sweep_status(&url, sweep.sweep_id).await,
                JobState::Succeeded,
            ) >= 4
        }
    })
    .await;
    let mut c = SweepServiceClient::connect(coord.url()).await.unwrap();
    let cancelled = c
        .cancel(pb::CancelRequest {
            sweep: sweep.sweep_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .cancelled;
    let at = Instant::now();
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(cancelled > 0);
    let mut abandoned = 0;
    for (w, _) in workers {
        abandoned += w.await.unwrap().abandoned;
    }
    // The coordinator leased nothing after the cancel returned.
    let leased_after = format!("SELECT COUNT(*) AS n FROM jobs WHERE started_at_ms > {at_ms}");
    assert_eq!(
        count(coord.store(), &leased_after).await,
        0,
        "jobs leased after the cancel"
    );
    // A worker may still start the one job leased to it just before the cancel, whose
    // answer was on its way: at most one per worker.
    let late_starts = kind
        .starts
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, t)| *t > at)
        .count();
    assert!(
        late_starts <= 2,
        "{late_starts} jobs started after the cancel"
    );
    let status = sweep_status(&coord.url(), sweep.sweep_id).await;
    assert_eq!(status.state, "cancelled");
    assert_eq!(
        state_count(&status, JobState::Succeeded) + state_count(&status, JobState::Cancelled),
        100,
        "{status:?}"
    );
    assert_eq!(
        state_count(&status, JobState::Succeeded) as u32 + abandoned as u32,
        kind.total_runs()
    );
    coord.shutdown().await;
}

async fn bad_specs_and_unknown_kinds_fail_clearly(h: &Harness) {
    let coord = h.coordinator().await;
    let mut c = SweepServiceClient::connect(coord.url()).await.unwrap();
    let good = noop_spec("h", 1, 1, "", "");
    for (bad, names) in [
        (
            good.replace("devices", "machines"),
            vec!["machines", "devices"],
        ),
        (
            good.replace("kind = \"noop\"", "kind = \"autoencodr\""),
            vec!["autoencodr", "autoencoder", "classifier", "noop"],
        ),
        (
            good.replace("[queue]", "[queue]\nmax_attempts = 0"),
            vec!["queue.max_attempts", "1..=100"],
        ),
    ] {
        let err = c
            .launch(pb::LaunchRequest {
                spec_toml: bad,
                force_new: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        for n in names {
            assert!(
                err.message().contains(n),
                "{n} missing from: {}",
                err.message()
            );
        }
    }
    assert_eq!(
        count(coord.store(), "SELECT COUNT(*) AS n FROM jobs").await,
        0,
        "a bad spec created jobs"
    );

    // A job of a kind this worker does not know fails at once with the reason.
    let job = JobSpec {
        kind: "mystery".into(),
        family: "mystery".into(),
        config: "x".into(),
        device: "fan".into(),
        ..noop_job("mystery/x/fan/s1/run")
    };
    let queue = QueueSpec::default();
    let new = NewSweep {
        name: "mystery",
        spec_hash: "h",
        sweep_key: "mystery-key",
        spec_toml: "",
        queue: &queue,
        jobs: &[job],
    };
    let sweep = coord.store().launch_jobs(new).await.unwrap().sweep;
    let (w, _) = spawn_worker(
        worker_config(&coord.url(), "w"),
        asdsweep_worker::families::builtin(),
    );
    assert_eq!(w.await.unwrap().failed, 1);
    let status = sweep_status(&coord.url(), sweep.id.0).await;
    assert_eq!(status.dead.len(), 1);
    assert_eq!(status.dead[0].attempts, 1, "an unknown kind is not retried");
    assert!(
        status.dead[0]
            .error
            .contains("unknown job kind \"mystery\"")
            && status.dead[0].error.contains("noop"),
        "{:?}",
        status.dead
    );
    coord.shutdown().await;
}

async fn a_failed_training_job_ends_its_evaluation_jobs_with_a_reason(h: &Harness) {
    let coord = h.coordinator().await;
    let spec = "version = 1\nname = \"deps\"\ndevices = [\"fan\", \"pump\"]\n[queue]\nmax_attempts = 1\n\
                [[family]]\nkind = \"noop\"\ntraining = \"global\"\nconfigs = [{ name = \"ok\" }, { name = \"bad\", fail_times = 1 }]\n";
    let sweep = launch(&coord.url(), spec).await;
    assert_eq!(sweep.jobs, 6);
    let (w, _) = spawn_worker(
        worker_config(&coord.url(), "w"),
        asdsweep_worker::families::builtin(),
    );
    let summary = w.await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (3, 1));
    let status = sweep_status(&coord.url(), sweep.sweep_id).await;
    assert_eq!(
        (
            state_count(&status, JobState::Succeeded),
            state_count(&status, JobState::Dead)
        ),
        (3, 3)
    );
    let evals: Vec<_> = status
        .dead
        .iter()
        .filter(|d| d.job_key.ends_with("/eval"))
        .collect();
    assert_eq!(evals.len(), 2);
    for d in evals {
        assert_eq!(d.attempts, 0, "a dependent never ran");
        assert!(
            d.error
                .contains("dependency noop/bad/*/s1/train ended dead"),
            "{}",
            d.error
        );
    }
    coord.shutdown().await;
}

/// Evaluation jobs leased at the same moment (so, mostly, in one claim batch, whose inputs
/// are read in one query) each get the artifacts of their own training job.
async fn evaluation_jobs_leased_together_each_get_their_own_training_artifacts(h: &Harness) {
    let coord = h.coordinator().await;
    let configs = 4;
    let spec = noop_spec("inputs", configs, 2, "", "").replace(
        "kind = \"noop\"\n",
        "kind = \"noop\"\ntraining = \"global\"\n",
    );
    assert_eq!(launch(&coord.url(), &spec).await.jobs as usize, 3 * configs);
    let mut client = WorkerServiceClient::connect(coord.url()).await.unwrap();
    let register = |mut c: WorkerServiceClient<_>| async move {
        c.register(pb::RegisterRequest::default())
            .await
            .unwrap()
            .into_inner()
            .worker_id
    };
    // The training jobs are the only ready ones: lease them all, then complete each with an
    // artifact of its own (an evaluation job is ready as soon as its training succeeds).
    let w = register(client.clone()).await;
    let mut trains = Vec::new();
    for _ in 0..configs {
        let lease = client
            .lease(pb::LeaseRequest {
                worker_id: w.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .lease
            .expect("a training job");
        assert_eq!(lease.job.as_ref().unwrap().stage, "train", "{lease:?}");
        trains.push(lease);
    }
    let mut sha_of_config = std::collections::HashMap::new();
    for (i, lease) in trains.into_iter().enumerate() {
        let job = lease.job.unwrap();
        let sha = format!("{:02x}", 0xa0 + i).repeat(32);
        client
            .complete(pb::CompleteRequest {
                worker_id: w.clone(),
                job_id: job.job_id,
                token: lease.token,
                metrics: Some(pb::JobMetrics {
                    proxy_metric: "count".into(),
                    proxy_value: Some(1.0),
                    artifacts: vec![sha.clone()],
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        sha_of_config.insert(job.config, sha);
    }
    // Every evaluation job at once, one worker each.
    let mut workers = Vec::new();
    for _ in 0..2 * configs {
        workers.push(register(client.clone()).await);
    }
    let leases = futures::future::join_all(workers.into_iter().map(|worker_id| {
        let mut c = client.clone();
        async move {
            c.lease(pb::LeaseRequest { worker_id })
                .await
                .unwrap()
                .into_inner()
                .lease
        }
    }))
    .await;
    let mut seen = std::collections::HashSet::new();
    for lease in leases {
        let job = lease
            .expect("an evaluation job for every worker")
            .job
            .unwrap();
        assert_eq!(job.stage, "eval", "{job:?}");
        assert!(seen.insert(job.job_id), "job {} leased twice", job.job_id);
        assert_eq!(
            job.input_artifacts,
            vec![sha_of_config[&job.config].clone()],
            "{job:?}"
        );
    }
    coord.shutdown().await;
}

/// Two coordinators on one Postgres database serve workers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_on_one_postgres_never_run_a_job_twice() {
    let h = Harness::postgres("two_coordinators");
    let a = h.coordinator().await;
    let b = h.coordinator().await;
    let spec = noop_spec("f", 50, 10, "", "");
    let sweep = launch(&a.url(), &spec).await;
    assert!(
        !launch(&b.url(), &spec).await.created,
        "the same spec is the same sweep on every coordinator"
    );
    let kind = Counting::default();
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let url = if i % 2 == 0 { a.url() } else { b.url() };
            spawn_worker(worker_config(&url, &format!("w{i}")), kind.registry())
        })
        .collect();
    let mut per_coordinator = [0u64; 2];
    for (i, (w, _)) in workers.into_iter().enumerate() {
        per_coordinator[i % 2] += w.await.unwrap().succeeded;
    }
    assert_eq!(per_coordinator.iter().sum::<u64>(), 500);
    assert!(
        per_coordinator.iter().all(|&n| n > 0),
        "both coordinators served: {per_coordinator:?}"
    );
    assert_eq!(kind.max_runs(), 1, "a job ran twice");
    assert_eq!(
        state_count(
            &sweep_status(&b.url(), sweep.sweep_id).await,
            JobState::Succeeded
        ),
        500
    );
    assert_eq!(
        count(a.store(), "SELECT COUNT(*) AS n FROM results").await,
        500
    );
    a.shutdown().await;
    b.shutdown().await;
    h.cleanup().await;
}

/// On Postgres the completions and heartbeats waiting together go to the database as one
/// batch each (several completions: one transaction). A completion whose result cannot be
/// stored fails alone; the rest of its batch is recorded.
#[tokio::test]
async fn on_postgres_a_completion_that_fails_in_its_batch_fails_alone() {
    use asdsweep_coordinator::store::{HeartbeatOutcome, NewResult, NewWorker};
    use sea_orm::ConnectionTrait;
    let h = Harness::postgres("completion_batch");
    let store = h.store().await;
    let jobs: Vec<JobSpec> = ["a", "b", "c", "d"].map(noop_job).into();
    let queue = QueueSpec::default();
    store
        .launch_jobs(NewSweep {
            name: "batch",
            spec_hash: "h",
            sweep_key: "batch-key",
            spec_toml: "",
            queue: &queue,
            jobs: &jobs,
        })
        .await
        .unwrap();
    let mut leased = Vec::new();
    for name in ["w1", "w2", "w3", "w4"] {
        let w = store
            .register_worker(NewWorker {
                name: name.into(),
                backend: "flex".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let job = store.claim(&w).await.unwrap().unwrap().job;
        leased.push((w, job));
    }
    let [(w1, a), (w2, b), (w3, c), (w4, d)] = <[_; 4]>::try_from(leased).unwrap();
    let db = store.connection();
    db.execute_unprepared(&format!(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN IF NEW.job_id = {} THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$",
        b.id
    ))
    .await
    .unwrap();
    db.execute_unprepared(
        "CREATE TRIGGER boom BEFORE INSERT ON results FOR EACH ROW EXECUTE FUNCTION boom()",
    )
    .await
    .unwrap();

    // On this single-threaded runtime the batchers run only once every call waits, so
    // the three completions form one batch and the two heartbeats another.
    let (done_a, done_b, done_c, beat_c, beat_d) = tokio::join!(
        store.complete(&w1, a.id, a.lease_token, NewResult::default()),
        store.complete(&w2, b.id, b.lease_token, NewResult::default()),
        store.complete(&w3, c.id, c.lease_token, NewResult::default()),
        store.heartbeat(&w3, c.id, c.lease_token, None, None),
        store.heartbeat(&w4, d.id, d.lease_token, None, None),
    );
    done_a.unwrap();
    assert!(
        done_b
            .as_ref()
            .is_err_and(|e| e.to_string().contains("boom")),
        "{done_b:?}"
    );
    done_c.unwrap();
    // c's beat came after its completion, in a batch of its own kind: either it found the
    // lease still open or it is refused as the job is done; d's lease is extended.
    assert!(
        matches!(beat_c, Ok(HeartbeatOutcome::Extended(_)) | Err(_)),
        "{beat_c:?}"
    );
    assert!(
        matches!(beat_d, Ok(HeartbeatOutcome::Extended(_))),
        "{beat_d:?}"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) AS n FROM jobs WHERE state = 'succeeded'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT COUNT(*) AS n FROM jobs WHERE state = 'leased' AND id = {}",
                b.id
            )
        )
        .await,
        1
    );
    assert_eq!(count(&store, "SELECT COUNT(*) AS n FROM results").await, 2);
    h.cleanup().await;
}

/// Coordinators started at the same moment on an empty Postgres schema all come up (the
/// Kubernetes manifest starts two replicas so): the migrations take turns under an advisory
/// lock instead of racing to create the same tables and types.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinators_started_at_once_on_an_empty_postgres_schema_all_come_up() {
    let h = Harness::postgres("migrate_at_once");
    let opened = futures::future::join_all(
        (0..4).map(|_| asdsweep_coordinator::store::Store::open(&h.db_url, h.schema.as_deref())),
    )
    .await;
    for (i, store) in opened.iter().enumerate() {
        if let Err(e) = store {
            panic!("store {i} failed to open: {e:#}");
        }
    }
    let store = opened.into_iter().next().unwrap().unwrap();
    let applied = count(&store, "SELECT COUNT(*) AS n FROM seaql_migrations").await;
    let sqlite = Harness::sqlite();
    let every = count(
        &sqlite.store().await,
        "SELECT COUNT(*) AS n FROM seaql_migrations",
    )
    .await;
    assert!(every > 0);
    assert_eq!(applied, every, "every migration applied, once");
    h.cleanup().await;
}

#[test]
fn the_demo_spec_in_the_repository_is_valid() {
    let spec = Spec::from_path(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sweeps/noop-demo.toml"
    )))
    .unwrap();
    assert_eq!(asdsweep_shared::grid::expand(&spec).len(), 24);
}
