//! The artifact service over gRPC: streamed, content-addressed, verified.

mod common;

use asdsweep_shared::proto::{self as pb, artifact_service_client::ArtifactServiceClient};
use common::Harness;
use sha2::{Digest, Sha256};
use tonic::Code;

fn chunks(data: &[u8], sha: &str) -> Vec<pb::PutChunk> {
    let mut out: Vec<pb::PutChunk> = data.chunks(100_000).map(|c| pb::PutChunk { header: None, data: c.to_vec() }).collect();
    out[0].header = Some(pb::PutHeader { sha256: sha.into(), size: data.len() as u64, kind: "checkpoint".into() });
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_blob_round_trips_and_a_corrupt_upload_is_refused() {
    let h = Harness::sqlite();
    let coord = h.coordinator().await;
    let mut client = ArtifactServiceClient::connect(coord.url()).await.unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let sha = hex::encode(Sha256::digest(&data));

    let put = client.put(futures::stream::iter(chunks(&data, &sha))).await.unwrap().into_inner();
    assert_eq!((put.size, put.stored), (data.len() as u64, true));
    let again = client.put(futures::stream::iter(chunks(&data, &sha))).await.unwrap().into_inner();
    assert!(!again.stored, "the same content is stored once");

    let mut stream = client.get(pb::GetRequest { sha256: sha.clone() }).await.unwrap().into_inner();
    let mut back = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        back.extend(chunk.data);
    }
    assert_eq!(back, data);

    let mut corrupt = data.clone();
    corrupt[12_345] ^= 1;
    let err = client.put(futures::stream::iter(chunks(&corrupt, &sha))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("does not match"), "{}", err.message());

    let missing = client.get(pb::GetRequest { sha256: "0".repeat(64) }).await;
    let err = match missing {
        Ok(resp) => resp.into_inner().message().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.code(), Code::NotFound);
    let bad = client.get(pb::GetRequest { sha256: "../../etc/passwd".into() }).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    coord.shutdown().await;
    h.cleanup().await;
}
