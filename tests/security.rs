//! TLS (certificates made here with rcgen), the two token roles on every service, and the
//! Prometheus metrics of a coordinator and a worker, scraped and parsed.

mod common;

use asdsweep_coordinator::operator;
use asdsweep_coordinator::server::ServerTls;
use asdsweep_shared::auth::{Bearer, Secret, Tokens};
use asdsweep_shared::proto::{
    self as pb, artifact_service_client::ArtifactServiceClient,
    sweep_service_client::SweepServiceClient, worker_service_client::WorkerServiceClient,
};
use asdsweep_shared::remote::{ClientTls, endpoint};
use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::Code;

const WORKER_TOKEN: &str = "worker-t0ken";
const OPERATOR_TOKEN: &str = "operator-t0ken";

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn two_roles() -> Tokens {
    Tokens::new(
        Some(&Secret::new(WORKER_TOKEN)),
        Some(&Secret::new(OPERATOR_TOKEN)),
    )
    .unwrap()
}

/// A CA and the certificates it signs, as PEM files in `dir`.
struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), cert.pem()).unwrap();
        Pki {
            dir: dir.to_owned(),
            issuer: Issuer::new(params, key),
        }
    }

    fn ca(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-ca.pem"))
    }

    /// A certificate for `names`, signed by this CA: (cert, key) files.
    fn sign(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

async fn status_call(url: &str, tls: &ClientTls, token: Option<&str>) -> Result<(), tonic::Status> {
    let mut client = operator::connect(url, token, tls)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    client
        .status(pb::StatusRequest::default())
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_round_trip_with_client_certificates_and_everything_else_refused() {
    let h = Harness::sqlite();
    let pki = Pki::new(h.dir.path(), "real");
    let rogue = Pki::new(h.dir.path(), "rogue");
    let (server_cert, server_key) = pki.sign("server", &["localhost", "127.0.0.1"]);
    let (client_cert, client_key) = pki.sign("client", &["worker-1"]);
    let (rogue_cert, rogue_key) = rogue.sign("rogue-client", &["intruder"]);

    let mut cfg = h.config(any_port());
    cfg.tls = Some(ServerTls {
        cert: server_cert,
        key: server_key,
        client_ca: Some(pki.ca("real")),
    });
    cfg.tokens = two_roles();
    cfg.health_listen = Some(any_port());
    let coord = asdsweep_coordinator::Coordinator::start(cfg).await.unwrap();
    let url = coord.url();
    assert!(url.starts_with("https://"), "{url}");
    let good = ClientTls {
        ca: Some(pki.ca("real")),
        cert: Some(client_cert.clone()),
        key: Some(client_key.clone()),
        domain: Some("localhost".into()),
    };

    // The whole way: an operator launches over mutual TLS, a worker runs the jobs over it.
    let mut op = operator::connect(&url, Some(OPERATOR_TOKEN), &good)
        .await
        .unwrap();
    let launched = op
        .launch(pb::LaunchRequest {
            spec_toml: noop_spec("tls", 2, 1, "", ""),
            force_new: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut wcfg = worker_config(&url, "tls-worker");
    wcfg.token = Some(WORKER_TOKEN.into());
    wcfg.tls = good.clone();
    let (worker, _) = spawn_worker(wcfg, asdsweep_worker::families::builtin());
    assert_eq!(worker.await.unwrap().succeeded, 2);
    let rows = op
        .results(pb::ResultsRequest {
            sweep: launched.sweep_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert!(rows.iter().all(|r| r.state == "succeeded"), "{rows:?}");

    // Plain text to a TLS server: no answer.
    let plain = status_call(
        &url.replace("https://", "http://"),
        &ClientTls::default(),
        Some(OPERATOR_TOKEN),
    )
    .await;
    assert!(plain.is_err(), "a plain-text client got through");
    // TLS without a client certificate, with one from another CA, trusting another CA.
    let no_cert = ClientTls {
        cert: None,
        key: None,
        ..good.clone()
    };
    let foreign_cert = ClientTls {
        cert: Some(rogue_cert),
        key: Some(rogue_key),
        ..good.clone()
    };
    let wrong_ca = ClientTls {
        ca: Some(rogue.ca("rogue")),
        ..good.clone()
    };
    let wrong_name = ClientTls {
        domain: Some("elsewhere.example".into()),
        ..good.clone()
    };
    for (what, tls) in [
        ("no client certificate", &no_cert),
        ("a client certificate of another CA", &foreign_cert),
        ("a server CA that did not sign the server", &wrong_ca),
        ("a server name the certificate does not carry", &wrong_name),
    ] {
        let r = status_call(&url, tls, Some(OPERATOR_TOKEN)).await;
        assert!(r.is_err(), "a client with {what} got through");
    }
    // The right certificate still needs the right role.
    let denied = status_call(&url, &good, Some(WORKER_TOKEN))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // Probes get plain-text health on the health address.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", coord.health_addr().unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    coord.shutdown().await;
}

on_sqlite_and_postgres!(
    each_service_refuses_a_missing_or_wrong_token_and_the_other_role_by_name,
    metrics_of_the_coordinator_and_a_worker_are_scraped_and_parse,
);

/// A client channel that sends `token`.
async fn channel(url: &str, token: Option<&str>) -> pb::AuthChannel {
    let ch = endpoint(url, &ClientTls::default())
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic::service::interceptor::InterceptedService::new(ch, Bearer::new(token).unwrap())
}

/// Asserts how a call with each of no token, an unknown token, and the worker and
/// operator tokens ends: `Ok` for admitted roles, else the code and the role named.
fn check(
    call: &str,
    results: [(Option<&str>, Result<(), tonic::Status>); 4],
    admitted: &[&str],
    needs: &str,
) {
    for (token, r) in results {
        let name = token.unwrap_or("no token");
        match r {
            Ok(()) => assert!(
                token.is_some_and(|t| admitted.contains(&t)),
                "{call} admitted {name}"
            ),
            Err(s) => {
                assert!(
                    !token.is_some_and(|t| admitted.contains(&t)),
                    "{call} refused {name}: {s:?}"
                );
                let expected = match token {
                    Some(WORKER_TOKEN) | Some(OPERATOR_TOKEN) => Code::PermissionDenied,
                    _ => Code::Unauthenticated,
                };
                assert_eq!(s.code(), expected, "{call} with {name}: {s:?}");
                assert!(
                    s.message().contains(needs),
                    "{call} with {name}: {}",
                    s.message()
                );
            }
        }
    }
}

const TOKENS: [Option<&str>; 4] = [
    None,
    Some("not-a-token"),
    Some(WORKER_TOKEN),
    Some(OPERATOR_TOKEN),
];

async fn each_service_refuses_a_missing_or_wrong_token_and_the_other_role_by_name(h: &Harness) {
    let mut cfg = h.config(any_port());
    cfg.tokens = two_roles();
    let coord = asdsweep_coordinator::Coordinator::start(cfg).await.unwrap();
    let url = coord.url();
    let mut results = Vec::new();
    for token in TOKENS {
        let r = WorkerServiceClient::new(channel(&url, token).await)
            .register(pb::RegisterRequest {
                name: "w".into(),
                ..Default::default()
            })
            .await;
        results.push((token, r.map(|_| ())));
    }
    check(
        "WorkerService/Register",
        results.try_into().unwrap(),
        &[WORKER_TOKEN],
        "needs the worker token",
    );

    let mut results = Vec::new();
    for token in TOKENS {
        let r = SweepServiceClient::new(channel(&url, token).await)
            .status(pb::StatusRequest::default())
            .await;
        results.push((token, r.map(|_| ())));
    }
    check(
        "SweepService/Status",
        results.try_into().unwrap(),
        &[OPERATOR_TOKEN],
        "needs the operator token",
    );

    let mut results = Vec::new();
    for token in TOKENS {
        let r = SweepServiceClient::new(channel(&url, token).await)
            .launch(pb::LaunchRequest {
                spec_toml: noop_spec("roles", 1, 1, "", ""),
                force_new: false,
            })
            .await;
        results.push((token, r.map(|_| ())));
    }
    check(
        "SweepService/Launch",
        results.try_into().unwrap(),
        &[OPERATOR_TOKEN],
        "needs the operator token",
    );

    // Downloads: either role (an unknown artifact is NOT_FOUND once past the check).
    let missing = "0".repeat(64);
    let mut results = Vec::new();
    for token in TOKENS {
        let r = ArtifactServiceClient::new(channel(&url, token).await)
            .get(pb::GetRequest {
                sha256: missing.clone(),
            })
            .await;
        let r = match r {
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(s),
            Ok(_) => panic!("artifact {missing} does not exist"),
        };
        results.push((token, r));
    }
    check(
        "ArtifactService/Get",
        results.try_into().unwrap(),
        &[WORKER_TOKEN, OPERATOR_TOKEN],
        "needs the worker or operator token",
    );
    // Uploads: workers only.
    let mut results = Vec::new();
    for token in TOKENS {
        let chunk = pb::PutChunk {
            header: Some(pb::PutHeader {
                sha256: missing.clone(),
                size: 1,
                kind: "test".into(),
            }),
            data: vec![0],
        };
        let r = ArtifactServiceClient::new(channel(&url, token).await)
            .put(futures::stream::iter([chunk]))
            .await;
        let r = match r {
            // Past the role check, the wrong digest is refused.
            Err(s) if s.code() == Code::InvalidArgument || s.code() == Code::DataLoss => Ok(()),
            Err(s) => Err(s),
            Ok(_) => panic!("a blob whose digest is not {missing} was stored"),
        };
        results.push((token, r));
    }
    // No or an unknown token: refused by the service ("the worker or operator token");
    // the operator's: by the upload itself ("needs the worker token").
    check(
        "ArtifactService/Put",
        results.try_into().unwrap(),
        &[WORKER_TOKEN],
        "needs the worker",
    );
    coord.shutdown().await;
}

/// `GET /metrics` over plain HTTP/1.1, parsed as Prometheus text.
async fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text format")
}

/// The value of `name` with `labels`, if exported.
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

async fn metrics_of_the_coordinator_and_a_worker_are_scraped_and_parse(h: &Harness) {
    let mut cfg = h.config(any_port());
    cfg.metrics_listen = Some(any_port());
    let coord = asdsweep_coordinator::Coordinator::start(cfg).await.unwrap();
    let metrics = coord.metrics_addr().unwrap();
    let url = coord.url();
    let mut op = SweepServiceClient::new(channel(&url, None).await);
    op.launch(pb::LaunchRequest {
        spec_toml: noop_spec("metrics", 3, 1, ", sleep_ms = 400", ""),
        force_new: false,
    })
    .await
    .unwrap();
    let before = scrape(metrics).await;
    assert_eq!(
        value(
            &before,
            "asdsweep_jobs",
            &[("family", "noop"), ("state", "pending")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &before,
            "asdsweep_jobs",
            &[("family", "noop"), ("state", "succeeded")]
        ),
        Some(0.0)
    );

    let worker_metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut wcfg = worker_config(&url, "metered");
    wcfg.metrics_listen = Some(worker_metrics);
    let (worker, _) = spawn_worker(wcfg, asdsweep_worker::families::builtin());
    // While a job runs, the worker names it.
    wait_until(
        Duration::from_secs(10),
        "the worker to export its running job",
        || async {
            match tokio::net::TcpStream::connect(worker_metrics).await {
                Ok(_) => {
                    value(
                        &scrape(worker_metrics).await,
                        "asdsweep_worker_job",
                        &[("family", "noop")],
                    ) == Some(1.0)
                }
                Err(_) => false,
            }
        },
    )
    .await;
    let during = scrape(metrics).await;
    assert_eq!(value(&during, "asdsweep_workers_live", &[]), Some(1.0));
    assert_eq!(
        value(
            &during,
            "asdsweep_jobs",
            &[("family", "noop"), ("state", "leased")]
        ),
        Some(1.0)
    );
    assert_eq!(worker.await.unwrap().succeeded, 3);

    let after = scrape(metrics).await;
    assert_eq!(
        value(
            &after,
            "asdsweep_jobs",
            &[("family", "noop"), ("state", "succeeded")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &after,
            "asdsweep_jobs",
            &[("family", "noop"), ("state", "pending")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&after, "asdsweep_leases_granted_total", &[]),
        Some(3.0)
    );
    assert_eq!(
        value(&after, "asdsweep_stale_completions_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&after, "asdsweep_stale_heartbeats_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&after, "asdsweep_leases_expired_total", &[]),
        Some(0.0)
    );
    // Three results, each after its 400 ms sleep.
    let run = [("family", "noop"), ("stage", "run")];
    assert_eq!(
        value(&after, "asdsweep_job_duration_seconds_count", &run),
        Some(3.0)
    );
    assert_eq!(
        value(&after, "asdsweep_job_duration_seconds", &run),
        Some(3.0)
    );
    let sum = value(&after, "asdsweep_job_duration_seconds_sum", &run).unwrap();
    assert!(sum >= 1.2, "three jobs of 400 ms took {sum} s");
    assert!(value(&after, "asdsweep_db_seconds", &[("op", "lease")]).unwrap() >= 3.0);
    assert!(value(&after, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    coord.shutdown().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
