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
