//! Starting and stopping a coordinator: migrate, serve the three gRPC
//! services, and reap expired leases in the background.

use crate::artifact::ArtifactStore;
use crate::error::Result;
use crate::service::Services;
use crate::store::Store;
use asdsweep_shared::auth::RequireBearer;
use asdsweep_shared::proto::{
    artifact_service_server::ArtifactServiceServer, sweep_service_server::SweepServiceServer,
    worker_service_server::WorkerServiceServer,
};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Bearer token every call must carry (`None`: no authentication).
    pub token: Option<String>,
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
            token: None,
            health_interval: Duration::from_secs(5),
            max_artifact_bytes: DEFAULT_MAX_ARTIFACT_BYTES,
        }
    }
}

/// A running coordinator.
pub struct Coordinator {
    addr: SocketAddr,
    store: Store,
    stop: CancellationToken,
    server: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    reaper: JoinHandle<()>,
    health: JoinHandle<()>,
}

impl Coordinator {
    /// Migrates the database and starts serving.
    pub async fn start(cfg: CoordinatorConfig) -> Result<Coordinator> {
        let store = Store::open(&cfg.db_url, cfg.db_schema.as_deref()).await?;
        let artifacts = ArtifactStore::open(&cfg.artifact_dir)?;
        let socket = if cfg.listen.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        };
        let io = |source| crate::error::Error::Io {
            path: format!("listen address {}", cfg.listen),
            source,
        };
        let socket = socket.map_err(io)?;
        // A restarted coordinator can take its old port straight back.
        socket.set_reuseaddr(true).map_err(io)?;
        socket.bind(cfg.listen).map_err(io)?;
        let listener = socket.listen(1024).map_err(io)?;
        let addr = listener.local_addr().map_err(io)?;
        let heartbeat_ms = cfg
            .heartbeat_interval
            .as_millis()
            .clamp(100, u32::MAX as u128) as u32;
        let services = Services::new(
            store.clone(),
            artifacts,
            heartbeat_ms,
            cfg.max_artifact_bytes,
        );
        let stop = CancellationToken::new();
        let auth = RequireBearer::new(cfg.token.clone());
        let (reporter, health_service) = tonic_health::server::health_reporter();
        // The database just answered (it was migrated): every service is known and serving
        // from the first call on, before the health loop's first ping.
        for name in HEALTH_NAMES {
            reporter
                .set_service_status(name, tonic_health::ServingStatus::Serving)
                .await;
        }
        let server = tokio::spawn({
            let stop = stop.clone();
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                // Probes (Kubernetes, load balancers) carry no token: health is open to all.
                .add_service(health_service)
                .add_service(InterceptedService::new(
                    WorkerServiceServer::new(services.clone())
                        .max_decoding_message_size(MAX_MESSAGE_BYTES),
                    auth.clone(),
                ))
                .add_service(InterceptedService::new(
                    SweepServiceServer::new(services.clone())
                        .max_decoding_message_size(MAX_MESSAGE_BYTES),
                    auth.clone(),
                ))
                .add_service(InterceptedService::new(
                    ArtifactServiceServer::new(services)
                        .max_decoding_message_size(MAX_MESSAGE_BYTES),
                    auth,
                ))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                )
        });
        let reaper = tokio::spawn(reap_loop(store.clone(), cfg.reap_interval, stop.clone()));
        let health = tokio::spawn(health_loop(
            store.clone(),
            reporter,
            cfg.health_interval,
            stop.clone(),
        ));
        tracing::info!(%addr, db = %redact(&cfg.db_url), "coordinator serving");
        Ok(Coordinator {
            addr,
            store,
            stop,
            server,
            reaper,
            health,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The queue store it serves.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops serving (in-flight calls finish), waits for the tasks to end and closes the
    /// database ([`Store::close`]).
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.reaper.await;
        let _ = self.health.await;
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

/// The reaper: returns expired leases to the queue, forever.
async fn reap_loop(store: Store, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = store.reap_expired().await {
            tracing::warn!(error = %e, "reaping expired leases failed; will retry");
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
