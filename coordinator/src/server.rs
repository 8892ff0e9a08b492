//! Starting and stopping a coordinator: migrate, serve the three gRPC
//! services (over TLS when configured, each admitting its roles' tokens), the health
//! service and `/metrics`, and reap expired leases in the background.

use crate::artifact::ArtifactStore;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::service::Services;
use crate::store::Store;
use asdsweep_shared::auth::{RequireRole, Role, Tokens};
use asdsweep_shared::proto::{
    artifact_service_server::ArtifactServiceServer, sweep_service_server::SweepServiceServer,
    worker_service_server::WorkerServiceServer,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

/// Largest gRPC message accepted (artifact chunks are far smaller).
const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Largest artifact accepted by default: 8 GiB (a ResNet-152 checkpoint with its optimiser
/// state and best weights is under 1 GiB).
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 8 << 30;

/// How a coordinator is run.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// sea-orm database URL.
    pub db_url: String,
    /// Postgres schema to use (created if missing).
    pub db_schema: Option<String>,
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Artifact store directory.
    pub artifact_dir: PathBuf,
    /// How often expired leases are reaped.
    pub reap_interval: Duration,
    /// How often workers are told to heartbeat.
    pub heartbeat_interval: Duration,
    /// The worker and operator tokens calls must carry (none: no authentication).
    pub tokens: Tokens,
    /// TLS for the gRPC services (`None`: plain text).
    pub tls: Option<ServerTls>,
    /// Where to serve `GET /metrics` (`None`: nowhere).
    pub metrics_listen: Option<SocketAddr>,
    /// A second, plain-text address serving only `grpc.health.v1`, for probes that cannot
    /// speak TLS (Kubernetes' gRPC probes).
    pub health_listen: Option<SocketAddr>,
    /// How often the health service (`grpc.health.v1`) checks that the database answers.
    pub health_interval: Duration,
    /// Largest artifact (checkpoint) accepted, in bytes; a larger upload is refused as it
    /// streams in.
    pub max_artifact_bytes: u64,
}

impl CoordinatorConfig {
    /// Defaults for a database URL: loopback on a free port, artifacts in `./artifacts`.
    pub fn new(db_url: impl Into<String>) -> CoordinatorConfig {
        CoordinatorConfig {
            db_url: db_url.into(),
            db_schema: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            artifact_dir: PathBuf::from("artifacts"),
            reap_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(5),
            tokens: Tokens::none(),
            tls: None,
            metrics_listen: None,
            health_listen: None,
            health_interval: Duration::from_secs(5),
            max_artifact_bytes: DEFAULT_MAX_ARTIFACT_BYTES,
        }
    }
}

/// The coordinator's certificate and key, and optionally the CA its clients'
/// certificates must be signed by (mutual TLS), all PEM files.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// CA of client certificates; when given, every client must present one.
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    fn config(&self) -> Result<tonic::transport::ServerTlsConfig> {
        use asdsweep_shared::remote::read;
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let tls = Error::Config;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
            read(&self.cert, "TLS certificate").map_err(tls)?,
            read(&self.key, "TLS key").map_err(tls)?,
        ));
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(
                read(ca, "TLS client CA certificate").map_err(tls)?,
            ));
        }
        Ok(config)
    }
}

type ServerTask = JoinHandle<std::result::Result<(), tonic::transport::Error>>;

/// A running coordinator.
pub struct Coordinator {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    health_addr: Option<SocketAddr>,
    tls: bool,
    store: Store,
    stop: CancellationToken,
    server: ServerTask,
    tasks: Vec<JoinHandle<()>>,
}

/// Binds a listening socket that a restarted coordinator can take straight back.
fn listen(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    let io = |source| Error::Io {
        path: format!("{what} {addr}"),
        source,
    };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(io)?;
    socket.set_reuseaddr(true).map_err(io)?;
    socket.bind(addr).map_err(io)?;
    socket.listen(1024).map_err(io)
}

impl Coordinator {
    /// Migrates the database and starts serving.
    pub async fn start(cfg: CoordinatorConfig) -> Result<Coordinator> {
        // Bad TLS files are named before anything else happens.
        let tls = cfg.tls.as_ref().map(ServerTls::config).transpose()?;
        let store = Store::open(&cfg.db_url, cfg.db_schema.as_deref()).await?;
        let artifacts = ArtifactStore::open(&cfg.artifact_dir)?;
        let listener = listen(cfg.listen, "listen address")?;
        let local = |l: &tokio::net::TcpListener, what: &str| {
            l.local_addr().map_err(|source| Error::Io {
                path: what.to_owned(),
                source,
            })
        };
        let addr = local(&listener, "listen address")?;
        let metrics = Metrics::new();
        let heartbeat_ms = cfg
            .heartbeat_interval
            .as_millis()
            .clamp(100, u32::MAX as u128) as u32;
        let services = Services::new(
            store.clone(),
            artifacts,
            heartbeat_ms,
            cfg.max_artifact_bytes,
            metrics.clone(),
        );
        let stop = CancellationToken::new();
        let tokens = Arc::new(cfg.tokens.clone());
        let role = |service: &'static str, roles: &'static [Role]| {
            RequireRole::new(tokens.clone(), service, roles)
        };
        let (reporter, health_service) = tonic_health::server::health_reporter();
        // The database just answered (it was migrated): every service is known and serving
        // from the first call on, before the health loop's first ping.
        for name in HEALTH_NAMES {
            reporter
                .set_service_status(name, tonic_health::ServingStatus::Serving)
                .await;
        }
        let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
        if let Some(tls) = tls {
            builder = builder
                .tls_config(tls)
                .map_err(|e| Error::Config(format!("TLS configuration: {e}")))?;
        }
        let server = tokio::spawn(
            builder
                // Probes (Kubernetes, load balancers) carry no token: health is open to all.
                .add_service(health_service.clone())
                .add_service(InterceptedService::new(
                    WorkerServiceServer::new(services.clone())
                        .max_decoding_message_size(MAX_MESSAGE_BYTES),
                    role("asdsweep.v1.WorkerService", &[Role::Worker]),
                ))
                .add_service(InterceptedService::new(
                    SweepServiceServer::new(services.clone())
                        .max_decoding_message_size(MAX_MESSAGE_BYTES),
                    role("asdsweep.v1.SweepService", &[Role::Operator]),
                ))
                .add_service(InterceptedService::new(
                    ArtifactServiceServer::new(services)
                        .max_decoding_message_size(MAX_MESSAGE_BYTES),
                    // Downloads for both; uploads for workers only (checked in `put`).
                    role(
                        "asdsweep.v1.ArtifactService",
                        &[Role::Worker, Role::Operator],
                    ),
                ))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
        let mut tasks = vec![
            tokio::spawn(reap_loop(
                store.clone(),
                metrics.clone(),
                cfg.reap_interval,
                stop.clone(),
            )),
            tokio::spawn(health_loop(
                store.clone(),
                reporter,
                cfg.health_interval,
                stop.clone(),
            )),
        ];
        let mut health_addr = None;
        if let Some(at) = cfg.health_listen {
            let l = listen(at, "health address")?;
            health_addr = Some(local(&l, "health address")?);
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let served = tonic::transport::Server::builder()
                    .add_service(health_service)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(l),
                        stop.cancelled_owned(),
                    )
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "the plain-text health server failed");
                }
            }));
        }
        let mut metrics_addr = None;
        if let Some(at) = cfg.metrics_listen {
            let l = listen(at, "metrics address")?;
            metrics_addr = Some(local(&l, "metrics address")?);
            let refresh: asdsweep_shared::telemetry::Refresh = {
                let (metrics, store) = (metrics.clone(), store.clone());
                Arc::new(move || {
                    let (metrics, store) = (metrics.clone(), store.clone());
                    Box::pin(async move { metrics.refresh(&store).await })
                })
            };
            let served = asdsweep_shared::telemetry::serve_metrics(
                l,
                metrics.registry().clone(),
                Some(refresh),
                stop.clone().cancelled_owned(),
            );
            tasks.push(tokio::spawn(async move {
                if let Err(e) = served.await {
                    tracing::error!(error = %e, "the metrics server failed");
                }
            }));
        }
        let tls = cfg.tls.is_some();
        tracing::info!(%addr, tls, auth = cfg.tokens.enabled(), metrics = ?metrics_addr, health = ?health_addr, db = %redact(&cfg.db_url), "coordinator serving");
        Ok(Coordinator {
            addr,
            metrics_addr,
            health_addr,
            tls,
            store,
            stop,
            server,
            tasks,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (`https://` with TLS), for clients.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The plain-text health address, if there is one.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    /// The queue store it serves.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops serving (in-flight calls finish), waits for the tasks to end and closes the
    /// database ([`Store::close`]).
    pub async fn shutdown(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        match self.server.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "server task failed"),
            Ok(Ok(())) => {}
        }
        if let Err(e) = self.store.close().await {
            tracing::warn!(error = %e, "closing the database failed");
        }
    }

    /// Serves until `stop` is cancelled, then shuts down.
    pub async fn run_until(self, stop: CancellationToken) {
        stop.cancelled().await;
        self.shutdown().await;
    }
}

/// Reaper ticks between two runs of the unblocking safety net ([`Store::unblock_ready`]).
const UNBLOCK_EVERY_TICKS: u64 = 10;

/// The reaper: returns expired leases to the queue and, every [`UNBLOCK_EVERY_TICKS`]
/// ticks, unblocks jobs whose dependencies have all succeeded, forever.
async fn reap_loop(store: Store, metrics: Metrics, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1u64.. {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.reap_expired().await {
            Ok(reaped) => metrics.expired(&reaped),
            Err(e) => tracing::warn!(error = %e, "reaping expired leases failed; will retry"),
        }
        if n % UNBLOCK_EVERY_TICKS == 0 {
            match store.unblock_ready().await {
                Ok(0) => {}
                Ok(moved) => tracing::warn!(
                    jobs = moved,
                    "unblocked jobs whose dependencies had all succeeded but were still blocked"
                ),
                Err(e) => tracing::warn!(error = %e, "unblocking ready jobs failed; will retry"),
            }
        }
    }
}

/// What the health service reports on: the server (`""`) and each of its services.
const HEALTH_NAMES: [&str; 4] = [
    "",
    <WorkerServiceServer<Services> as tonic::server::NamedService>::NAME,
    <SweepServiceServer<Services> as tonic::server::NamedService>::NAME,
    <ArtifactServiceServer<Services> as tonic::server::NamedService>::NAME,
];

/// The health service's statuses, kept to whether the database answers: every `every`,
/// a ping; SERVING for the server ("") and each of its services when it does, NOT_SERVING
/// when it does not (a readiness probe then takes the coordinator out of rotation).
async fn health_loop(
    store: Store,
    reporter: tonic_health::server::HealthReporter,
    every: Duration,
    stop: CancellationToken,
) {
    use tonic_health::ServingStatus;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // As `Coordinator::start` set them.
    let mut last = Some(ServingStatus::Serving);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ping = store.connection().ping().await;
        let status = match &ping {
            Ok(()) => ServingStatus::Serving,
            Err(_) => ServingStatus::NotServing,
        };
        if last != Some(status) {
            match &ping {
                Ok(()) => tracing::info!("database answers: serving"),
                Err(e) => tracing::warn!(error = %e, "database does not answer: not serving"),
            }
            for name in HEALTH_NAMES {
                reporter.set_service_status(name, status).await;
            }
            last = Some(status);
        }
    }
}

/// Hides a password in a database URL for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &url[..s + 3 + c], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden_in_logged_urls() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db?mode=rwc"), "sqlite://x.db?mode=rwc");
    }
}
