//! The gRPC services. Handlers only translate between the wire and
//! [`crate::store`]; errors become statuses in `impl From<Error> for Status`.

use crate::artifact::ArtifactStore;
use crate::entity::{job, worker};
use crate::error::Error;
use crate::ids::{FencingToken, JobId, SweepId, WorkerId};
use crate::metrics::Metrics;
use crate::queue::SweepState;
use crate::store::{
    HeartbeatOutcome, JobResult, NamedMetric, NewResult, NewWorker, Store, SweepProgress, now_ms,
};
use asdsweep_shared::analysis::Direction;
use asdsweep_shared::auth::Role;
use asdsweep_shared::proto::{
    self as pb, artifact_service_server::ArtifactService, sweep_service_server::SweepService,
    worker_service_server::WorkerService,
};
use asdsweep_shared::spec::Spec;
use futures::StreamExt;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status, Streaming};

/// How long an idle worker waits before asking for work again.
const IDLE_RETRY_MS: u32 = 200;
/// A worker is "live" if it called within this window.
pub(crate) const LIVE_WINDOW_MS: i64 = 60_000;
/// How far back `Workers` lists lost workers unless asked otherwise: a day.
const LOST_WINDOW_MS: i64 = 24 * 3_600_000;

/// A worker as operators see it: live when seen since `live_since`.
fn worker_info(w: worker::Model, current_job: Option<String>, live_since: i64) -> pb::WorkerInfo {
    pb::WorkerInfo {
        live: w.last_seen_ms >= live_since,
        worker_id: w.id.0,
        name: w.name,
        backend: w.backend,
        device: w.device,
        last_seen_ms: w.last_seen_ms,
        registered_at_ms: w.registered_at_ms,
        current_job,
    }
}
/// Size of the chunks artifacts are streamed in.
const CHUNK_BYTES: usize = 256 * 1024;

/// Shared state of the services.
#[derive(Clone)]
pub struct Services {
    store: Store,
    artifacts: ArtifactStore,
    heartbeat_interval_ms: u32,
    /// Largest artifact accepted, in bytes.
    max_artifact_bytes: u64,
    /// Spec hashes never change once a sweep exists, so leases need not re-read them.
    spec_hashes: Arc<Mutex<HashMap<SweepId, String>>>,
    metrics: Metrics,
}

impl Services {
    /// Services over a store and an artifact directory, accepting artifacts of up to
    /// `max_artifact_bytes`, counting what they do in `metrics`.
    pub fn new(
        store: Store,
        artifacts: ArtifactStore,
        heartbeat_interval_ms: u32,
        max_artifact_bytes: u64,
        metrics: Metrics,
    ) -> Services {
        Services {
            store,
            artifacts,
            heartbeat_interval_ms,
            max_artifact_bytes,
            spec_hashes: Arc::default(),
            metrics,
        }
    }

    /// Counts a refused completion or failure report of a stale lease before passing the
    /// error on.
    fn stale(&self, e: Error) -> Error {
        count_stale(&self.metrics.stale_completions, e)
    }

    async fn spec_hash(&self, sweep_id: SweepId) -> Result<String, Error> {
        if let Some(h) = self
            .spec_hashes
            .lock()
            .expect("spec hash cache lock poisoned")
            .get(&sweep_id)
        {
            return Ok(h.clone());
        }
        let hash = self
            .store
            .resolve_sweep(&sweep_id.to_string())
            .await?
            .spec_hash;
        self.spec_hashes
            .lock()
            .expect("spec hash cache lock poisoned")
            .insert(sweep_id, hash.clone());
        Ok(hash)
    }
}

fn json_or_empty(text: &str, what: &str) -> Result<serde_json::Value, Status> {
    if text.trim().is_empty() {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_str(text)
        .map_err(|e| Status::invalid_argument(format!("{what} is not valid JSON: {e}")))
}

/// A direction on the wire; a value this build does not know is refused, not dropped.
fn wire_direction(value: i32, what: &str) -> Result<Option<Direction>, Status> {
    pb::MetricDirection::try_from(value)
        .map(pb::MetricDirection::direction)
        .map_err(|_| Status::invalid_argument(format!("{what}: unknown metric direction {value}")))
}

/// A direction as sent on the wire.
fn direction_to_wire(d: Option<Direction>) -> i32 {
    d.map_or(pb::MetricDirection::Unspecified, pb::MetricDirection::from) as i32
}

fn metrics_to_result(m: pb::JobMetrics) -> Result<NewResult, Status> {
    for sha in &m.artifacts {
        crate::artifact::check_sha256(sha)?;
    }
    let mut metrics: Vec<NamedMetric> = Vec::with_capacity(m.metrics.len());
    for n in m.metrics {
        if let Some(problem) = crate::report::metric_name_problem(&n.name) {
            return Err(Status::invalid_argument(format!(
                "metric \"{}\": {problem}",
                n.name.escape_debug()
            )));
        }
        if n.name == m.proxy_metric || metrics.iter().any(|x| x.name == n.name) {
            return Err(Status::invalid_argument(format!(
                "metric \"{}\" is reported twice (a further metric must not repeat another or the proxy metric)",
                n.name
            )));
        }
        metrics.push(NamedMetric {
            direction: wire_direction(n.direction, &format!("metric \"{}\"", n.name))?,
            name: n.name,
            value: n.value,
        });
    }
    Ok(NewResult {
        proxy_direction: wire_direction(m.proxy_direction, "proxy_direction")?,
        metrics,
        proxy_metric: m.proxy_metric,
        proxy_value: m.proxy_value,
        lp_in_auc: m.lp_in_auc,
        lp_in_pauc: m.lp_in_pauc,
        lp_out_auc: m.lp_out_auc,
        lp_out_pauc: m.lp_out_pauc,
        md_auc: m.md_auc,
        md_pauc: m.md_pauc,
        extra: json_or_empty(&m.extra_json, "extra_json")?,
        provenance: json_or_empty(&m.provenance_json, "provenance_json")?,
        artifacts: m.artifacts,
    })
}

/// A stored result and its further metrics as wire metrics.
pub fn result_to_metrics(JobResult { result: r, metrics }: &JobResult) -> pb::JobMetrics {
    pb::JobMetrics {
        proxy_metric: r.proxy_metric.clone(),
        proxy_value: r.proxy_value,
        lp_in_auc: r.lp_in_auc,
        lp_in_pauc: r.lp_in_pauc,
        lp_out_auc: r.lp_out_auc,
        lp_out_pauc: r.lp_out_pauc,
        md_auc: r.md_auc,
        md_pauc: r.md_pauc,
        extra_json: r.extra.to_string(),
        provenance_json: r.provenance.to_string(),
        artifacts: serde_json::from_value(r.artifacts.clone()).unwrap_or_default(),
        proxy_direction: direction_to_wire(r.declared_direction()),
        metrics: metrics
            .iter()
            .map(|m| pb::NamedMetric {
                name: m.name.clone(),
                value: m.value,
                direction: direction_to_wire(m.direction),
            })
            .collect(),
    }
}

fn job_to_wire(j: &job::Model, input_artifacts: Vec<String>, spec_hash: String) -> pb::Job {
    pb::Job {
        job_id: j.id.0,
        job_key: j.job_key.clone(),
        sweep_id: j.sweep_id.0,
        kind: j.kind.clone(),
        stage: j.stage.clone(),
        family: j.family.clone(),
        config: j.config.clone(),
        device: j.device.clone(),
        seed: j.seed,
        params_json: j.params.to_string(),
        attempt: j.attempts.max(0) as u32,
        max_attempts: j.max_attempts.max(0) as u32,
        input_artifacts,
        spec_hash,
        resume_checkpoint: j.checkpoint.clone(),
    }
}

fn progress_to_wire(p: SweepProgress) -> pb::SweepStatus {
    pb::SweepStatus {
        sweep_id: p.sweep.id.0,
        name: p.sweep.name.clone(),
        state: if p.is_finished() && p.sweep.state == SweepState::Active {
            "finished".into()
        } else {
            p.sweep.state.as_str().into()
        },
        spec_hash: p.sweep.spec_hash.clone(),
        counts: p
            .counts
            .iter()
            .map(|(s, n)| pb::StateCount {
                state: s.as_str().into(),
                count: *n,
            })
            .collect(),
        total: p.total(),
        throughput_per_s: p.throughput_per_s,
        eta_s: p.eta_s,
        dead: p
            .dead
            .iter()
            .map(|(k, a, e)| pb::DeadJob {
                job_key: k.clone(),
                attempts: (*a).max(0) as u32,
                error: e.clone(),
            })
            .collect(),
        created_at_ms: p.sweep.created_at_ms,
        families: Vec::new(),
        backend_needs: Vec::new(),
    }
}

#[tonic::async_trait]
impl WorkerService for Services {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = req.into_inner();
        let caps = r.capabilities.unwrap_or_default();
        let worker_id = self
            .store
            .register_worker(NewWorker {
                name: r.name,
                backend: caps.backend,
                device: caps.device,
                memory_bytes: caps.memory_bytes,
                labels: caps.labels,
                kinds: caps.kinds,
                version: r.version,
            })
            .await?;
        tracing::info!(%worker_id, "worker registered");
        Ok(Response::new(pb::RegisterResponse {
            worker_id: worker_id.0,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
        }))
    }

    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let worker_id = WorkerId(req.into_inner().worker_id);
        let claimed = {
            let _t = self.metrics.db("lease");
            self.store.claim(&worker_id).await?
        };
        let Some(c) = claimed else {
            return Ok(Response::new(pb::LeaseResponse {
                lease: None,
                retry_after_ms: IDLE_RETRY_MS,
            }));
        };
        let spec_hash = self.spec_hash(c.job.sweep_id).await?;
        let job = &c.job;
        self.metrics.leased(job.id.0, &job.family, &job.stage);
        tracing::debug!(sweep_id = job.sweep_id.0, job_id = job.id.0, job = %job.job_key, lease = job.lease_token.0, worker = %worker_id, "leased");
        let lease = pb::Lease {
            token: job.lease_token.0,
            expires_at_ms: job.lease_expires_at_ms.unwrap_or_default(),
            ttl_ms: job.lease_ttl_ms.clamp(0, u32::MAX as i64) as u32,
            job: Some(job_to_wire(job, c.input_artifacts.clone(), spec_hash)),
        };
        Ok(Response::new(pb::LeaseResponse {
            lease: Some(lease),
            retry_after_ms: 0,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let checkpoint = match r.progress.as_ref().and_then(|p| p.checkpoint.clone()) {
            Some(sha) => Some(crate::artifact::check_sha256(&sha).map(|_| sha)?),
            None => None,
        };
        let progress = r.progress.map(|p| {
            serde_json::json!({"epoch": p.epoch, "epochs": p.epochs, "loss": p.loss, "steps_per_s": p.steps_per_s, "message": p.message, "checkpoint": p.checkpoint})
        });
        let out = {
            let _t = self.metrics.db("heartbeat");
            self.store
                .heartbeat(
                    &WorkerId(r.worker_id),
                    JobId(r.job_id),
                    FencingToken(r.token),
                    progress,
                    checkpoint,
                )
                .await
                .map_err(|e| count_stale(&self.metrics.stale_heartbeats, e))?
        };
        Ok(Response::new(match out {
            HeartbeatOutcome::Extended(expires_at_ms) => pb::HeartbeatResponse {
                expires_at_ms,
                cancelled: false,
            },
            HeartbeatOutcome::Cancelled => pb::HeartbeatResponse {
                expires_at_ms: 0,
                cancelled: true,
            },
        }))
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let r = req.into_inner();
        let metrics = metrics_to_result(r.metrics.unwrap_or_default())?;
        {
            let _t = self.metrics.db("complete");
            self.store
                .complete(
                    &WorkerId(r.worker_id),
                    JobId(r.job_id),
                    FencingToken(r.token),
                    metrics,
                )
                .await
                .map_err(|e| self.stale(e))?;
        }
        self.metrics.ended(r.job_id, true);
        tracing::debug!(job_id = r.job_id, lease = r.token, "result accepted");
        Ok(Response::new(pb::CompleteResponse {}))
    }

    async fn fail(
        &self,
        req: Request<pb::FailRequest>,
    ) -> Result<Response<pb::FailResponse>, Status> {
        let r = req.into_inner();
        let state = {
            let _t = self.metrics.db("fail");
            self.store
                .fail(
                    &WorkerId(r.worker_id),
                    JobId(r.job_id),
                    FencingToken(r.token),
                    &r.error,
                    r.retryable,
                    r.release,
                )
                .await
                .map_err(|e| self.stale(e))?
        };
        self.metrics.ended(r.job_id, false);
        tracing::info!(job_id = r.job_id, lease = r.token, %state, release = r.release, error = %r.error, "attempt ended without result");
        Ok(Response::new(pb::FailResponse {
            state: state.as_str().into(),
        }))
    }
}

#[tonic::async_trait]
impl SweepService for Services {
    async fn launch(
        &self,
        req: Request<pb::LaunchRequest>,
    ) -> Result<Response<pb::LaunchResponse>, Status> {
        let r = req.into_inner();
        let spec = Spec::from_toml(&r.spec_toml).map_err(Error::from)?;
        let l = self.store.launch(&spec, &r.spec_toml, r.force_new).await?;
        tracing::info!(sweep = l.sweep.id.0, name = %l.sweep.name, created = l.created, jobs = l.sweep.job_count, "launch");
        Ok(Response::new(pb::LaunchResponse {
            sweep_id: l.sweep.id.0,
            name: l.sweep.name,
            created: l.created,
            jobs: l.sweep.job_count.max(0) as u32,
        }))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let r = req.into_inner();
        let sweeps = if r.sweep.is_empty() {
            self.store.sweeps().await?
        } else {
            vec![self.store.resolve_sweep(&r.sweep).await?]
        };
        let mut out = pb::StatusResponse::default();
        for s in &sweeps {
            let mut status = progress_to_wire(self.store.progress(s).await?);
            status.families = crate::report::family_progress(&self.store, s.id).await?;
            status.backend_needs = self
                .store
                .pending_by_backends(s.id)
                .await?
                .into_iter()
                .map(|(backends, pending)| pb::BackendNeed { backends, pending })
                .collect();
            out.sweeps.push(status);
        }
        let live_since = now_ms() - LIVE_WINDOW_MS;
        out.live_workers = self
            .store
            .workers_seen_since(live_since)
            .await?
            .into_iter()
            .map(|(w, job)| worker_info(w, job, live_since))
            .collect();
        Ok(Response::new(out))
    }

    async fn workers(
        &self,
        req: Request<pb::WorkersRequest>,
    ) -> Result<Response<pb::WorkersResponse>, Status> {
        let within = match req.into_inner().lost_within_ms {
            0 => LOST_WINDOW_MS,
            ms if ms > 0 => ms.max(LIVE_WINDOW_MS),
            ms => {
                return Err(Status::invalid_argument(format!(
                    "lost_within_ms is {ms}: expected 0 (one day) or a positive number of milliseconds"
                )));
            }
        };
        let now = now_ms();
        let live_since = now - LIVE_WINDOW_MS;
        let mut workers: Vec<pb::WorkerInfo> = self
            .store
            .workers_seen_since(now - within)
            .await?
            .into_iter()
            .map(|(w, job)| worker_info(w, job, live_since))
            .collect();
        // Live first; the store already sorts by name.
        workers.sort_by_key(|w| !w.live);
        Ok(Response::new(pb::WorkersResponse { workers }))
    }

    async fn results(
        &self,
        req: Request<pb::ResultsRequest>,
    ) -> Result<Response<pb::ResultsResponse>, Status> {
        let sweep = self.store.resolve_sweep(&req.into_inner().sweep).await?;
        let rows = self
            .store
            .results(sweep.id)
            .await?
            .into_iter()
            .map(|(j, r)| pb::ResultRow {
                job_key: j.job_key,
                kind: j.kind,
                stage: j.stage,
                family: j.family,
                config: j.config,
                device: j.device,
                seed: j.seed,
                state: j.state.as_str().into(),
                attempts: j.attempts.max(0) as u32,
                error: j.last_error.unwrap_or_default(),
                metrics: r.as_ref().map(result_to_metrics),
                worker: r
                    .map(|r| r.result.worker_id)
                    .or(j.worker_id.map(|w| w.0))
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::ResultsResponse { rows }))
    }

    async fn correlations(
        &self,
        req: Request<pb::CorrelationsRequest>,
    ) -> Result<Response<pb::CorrelationsResponse>, Status> {
        let r = req.into_inner();
        let sweep = self.store.resolve_sweep(&r.sweep).await?;
        let proxy = (!r.proxy.is_empty()).then_some(r.proxy.as_str());
        Ok(Response::new(
            crate::report::correlations(&self.store, &sweep, proxy).await?,
        ))
    }

    async fn cancel(
        &self,
        req: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        let sweep = self.store.resolve_sweep(&req.into_inner().sweep).await?;
        let cancelled = self.store.cancel(sweep.id).await?;
        tracing::info!(sweep = sweep.id.0, cancelled, "cancel");
        Ok(Response::new(pb::CancelResponse { cancelled }))
    }

    async fn retry(
        &self,
        req: Request<pb::RetryRequest>,
    ) -> Result<Response<pb::RetryResponse>, Status> {
        let r = req.into_inner();
        let sweep = self.store.resolve_sweep(&r.sweep).await?;
        let requeued = self.store.retry(sweep.id, r.dead).await?;
        tracing::info!(sweep = sweep.id.0, requeued, "retry");
        Ok(Response::new(pb::RetryResponse { requeued }))
    }
}

type ChunkStream =
    Pin<Box<dyn futures::Stream<Item = Result<pb::GetChunk, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl ArtifactService for Services {
    async fn put(
        &self,
        req: Request<Streaming<pb::PutChunk>>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        // Operators may download artifacts; only workers upload them.
        asdsweep_shared::auth::require(&req, Role::Worker, "ArtifactService/Put")?;
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("artifact upload sent no message"))??;
        let header = first
            .header
            .ok_or_else(|| Status::invalid_argument("artifact upload must start with a header"))?;
        crate::artifact::check_sha256(&header.sha256)?;
        let cap = self.max_artifact_bytes;
        let too_big = |bytes: u64| {
            Status::resource_exhausted(format!(
                "artifact {} is {bytes} bytes or more: the coordinator accepts at most {cap} (serve --max-artifact-mb)",
                header.sha256
            ))
        };
        if header.size > cap {
            return Err(too_big(header.size));
        }
        let mut blob = self.artifacts.begin().await?;
        let mut data = first.data;
        // Written to disk chunk by chunk and counted as it comes: an upload beyond the cap
        // (whatever its header said) is cut off there, never held in memory.
        let mut received = 0u64;
        loop {
            received += data.len() as u64;
            if received > cap {
                blob.discard().await;
                return Err(too_big(received));
            }
            if let Err(e) = blob.write(&data).await {
                blob.discard().await;
                return Err(e.into());
            }
            match stream.next().await {
                Some(Ok(chunk)) => data = chunk.data,
                Some(Err(e)) => {
                    blob.discard().await;
                    return Err(e);
                }
                None => break,
            }
        }
        let (size, new) = blob
            .finish(&self.artifacts, &header.sha256, header.size)
            .await?;
        self.store
            .record_artifact(&header.sha256, size, &header.kind)
            .await?;
        Ok(Response::new(pb::PutResponse {
            sha256: header.sha256,
            size,
            stored: new,
        }))
    }

    type GetStream = ChunkStream;

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<ChunkStream>, Status> {
        let sha = req.into_inner().sha256;
        let (mut file, size) = self.artifacts.open_blob(&sha).await?;
        let stream = async_stream::try_stream! {
            let mut first = true;
            loop {
                let mut buf = vec![0u8; CHUNK_BYTES];
                let n = file.read(&mut buf).await.map_err(|e| Status::unavailable(format!("reading artifact {sha}: {e}")))?;
                if n == 0 && !first {
                    break;
                }
                buf.truncate(n);
                yield pb::GetChunk { data: buf, size: if first { size } else { 0 } };
                first = false;
                if n == 0 {
                    break;
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Counts `e` on `counter` when it refuses a stale lease's call; passes it on.
fn count_stale(counter: &prometheus::IntCounter, e: Error) -> Error {
    if matches!(e, Error::StaleLease { .. }) {
        counter.inc();
    }
    e
}
