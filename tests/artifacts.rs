//! The artifact service over gRPC: streamed, content-addressed, verified.

mod common;

use asdsweep_shared::proto::{self as pb, artifact_service_client::ArtifactServiceClient};
use common::Harness;
use sha2::{Digest, Sha256};
use tonic::Code;

fn chunks(data: &[u8], sha: &str) -> Vec<pb::PutChunk> {
    let mut out: Vec<pb::PutChunk> = data
        .chunks(100_000)
        .map(|c| pb::PutChunk {
            header: None,
            data: c.to_vec(),
        })
        .collect();
    out[0].header = Some(pb::PutHeader {
        sha256: sha.into(),
        size: data.len() as u64,
        kind: "checkpoint".into(),
    });
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_blob_round_trips_and_a_corrupt_upload_is_refused() {
    let h = Harness::sqlite();
    let coord = h.coordinator().await;
    let mut client = ArtifactServiceClient::connect(coord.url()).await.unwrap();
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let sha = hex::encode(Sha256::digest(&data));

    let put = client
        .put(futures::stream::iter(chunks(&data, &sha)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((put.size, put.stored), (data.len() as u64, true));
    let again = client
        .put(futures::stream::iter(chunks(&data, &sha)))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.stored, "the same content is stored once");

    let mut stream = client
        .get(pb::GetRequest {
            sha256: sha.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut back = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        back.extend(chunk.data);
    }
    assert_eq!(back, data);

    let mut corrupt = data.clone();
    corrupt[12_345] ^= 1;
    let err = client
        .put(futures::stream::iter(chunks(&corrupt, &sha)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("does not match"),
        "{}",
        err.message()
    );

    let missing = client
        .get(pb::GetRequest {
            sha256: "0".repeat(64),
        })
        .await;
    let err = match missing {
        Ok(resp) => resp.into_inner().message().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.code(), Code::NotFound);
    let bad = client
        .get(pb::GetRequest {
            sha256: "../../etc/passwd".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    coord.shutdown().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_client_checks_every_fetched_byte_and_refetches_a_tampered_cache() {
    use asdsweep_worker::artifacts::Artifacts;
    let h = Harness::sqlite();
    let coord = h.coordinator().await;
    let channel = tonic::transport::Channel::from_shared(coord.url())
        .unwrap()
        .connect_lazy();
    let client = ArtifactServiceClient::with_interceptor(
        channel,
        asdsweep_shared::auth::Bearer::new(None).unwrap(),
    );
    let data = b"checkpoint bytes ".repeat(40_000);
    let sha = Artifacts::new(client.clone(), h.dir.path().join("cache1"))
        .put(data.clone(), "checkpoint")
        .await
        .unwrap();
    assert_eq!(sha, hex::encode(Sha256::digest(&data)));

    let other = Artifacts::new(client, h.dir.path().join("cache2"));
    assert_eq!(
        other.get(&sha).await.unwrap(),
        data,
        "fetched from the coordinator"
    );
    let cached = h.dir.path().join("cache2").join(&sha[..2]).join(&sha);
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        data,
        "and cached under its hash"
    );
    std::fs::write(&cached, b"tampered").unwrap();
    assert_eq!(
        other.get(&sha).await.unwrap(),
        data,
        "a corrupt cached copy is fetched again"
    );

    let err = other.get(&"0".repeat(64)).await.unwrap_err().to_string();
    assert!(
        err.contains(&"0".repeat(64)) && err.contains("not found"),
        "{err}"
    );
    let err = other.get("../../etc/passwd").await.unwrap_err().to_string();
    assert!(err.contains("not a sha256"), "{err}");
    coord.shutdown().await;
    h.cleanup().await;
}

/// This process's resident memory in bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Regular files under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_beyond_the_cap_is_refused_while_it_streams_in_bounded_memory() {
    use futures::StreamExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const MB: u64 = 1 << 20;
    let h = Harness::sqlite();
    let mut cfg = h.config(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.max_artifact_bytes = 10 * MB;
    let coord = asdsweep_coordinator::Coordinator::start(cfg).await.unwrap();
    let mut client = ArtifactServiceClient::connect(coord.url()).await.unwrap();
    let header = |size: u64| pb::PutHeader {
        sha256: "ef".repeat(32),
        size,
        kind: "checkpoint".into(),
    };

    // A header that announces 100 MB is refused before any byte is stored.
    let err = client
        .put(futures::stream::iter([pb::PutChunk {
            header: Some(header(100 * MB)),
            data: Vec::new(),
        }]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("at most 10485760"),
        "{}",
        err.message()
    );

    // One that understates its size: 100 MB made lazily, 1 MB a chunk, cut off at the cap.
    let made = Arc::new(AtomicU64::new(0));
    let chunks = {
        let made = made.clone();
        futures::stream::iter(0..100u64).map(move |i| {
            made.fetch_add(1, Ordering::SeqCst);
            pb::PutChunk {
                header: (i == 0).then(|| header(MB)),
                data: vec![i as u8; MB as usize],
            }
        })
    };
    let (stop, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(rss_bytes(), Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let before = rss_bytes();
    let err = client.put(chunks).await.unwrap_err();
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let grew = peak.load(Ordering::SeqCst).saturating_sub(before);
    let made = made.load(Ordering::SeqCst);
    println!(
        "upload cut off after {made} of 100 MB made; resident memory grew {} MB",
        grew / MB
    );
    assert!(made < 100, "the upload was cut off, not read to its end");
    assert!(grew < 48 * MB, "memory grew by {} MB", grew / MB);
    let left = files_under(&h.dir.path().join("artifacts"));
    assert!(
        left.is_empty(),
        "nothing of the refused uploads stays: {left:?}"
    );
    coord.shutdown().await;
}
