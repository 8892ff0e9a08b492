//! The worker's side of the artifact service: uploads blobs (streamed, announced by
//! their sha256) and fetches them into a local content-addressed cache, verifying the
//! hash of every byte that arrives, so a job never reads a blob it did not ask for.

use asdsweep_shared::proto::{
    self as pb, AuthChannel, artifact_service_client::ArtifactServiceClient,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Size of the chunks blobs are streamed in.
const CHUNK_BYTES: usize = 256 * 1024;

/// Why a blob could not be stored or fetched.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The coordinator refused or could not be reached.
    #[error("artifact {sha256}: coordinator answered {status}")]
    Rpc {
        /// The blob.
        sha256: String,
        /// The answer.
        status: Box<tonic::Status>,
    },
    /// What arrived is not what was asked for.
    #[error(
        "artifact {sha256}: received {got_size} bytes hashing to {got}; the bytes do not match the requested hash"
    )]
    HashMismatch {
        /// The blob asked for.
        sha256: String,
        /// Hash of what arrived.
        got: String,
        /// Bytes that arrived.
        got_size: usize,
    },
    /// The name is not a sha256.
    #[error("\"{0}\" is not a sha256 (64 lowercase hex digits)")]
    BadHash(String),
    /// The local cache could not be read or written.
    #[error("artifact cache {}: {source}", path.display())]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
}

/// An artifact-service client with a local cache directory.
#[derive(Clone)]
pub struct Artifacts {
    client: ArtifactServiceClient<AuthChannel>,
    cache: PathBuf,
}

/// The sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn check_sha256(sha: &str) -> Result<(), ArtifactError> {
    if sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(ArtifactError::BadHash(sha.to_owned()))
    }
}

impl Artifacts {
    /// A client on `client`'s channel caching blobs under `cache`.
    pub fn new(client: ArtifactServiceClient<AuthChannel>, cache: PathBuf) -> Artifacts {
        Artifacts { client, cache }
    }

    /// Uploads `bytes` (a `kind` such as "checkpoint") and returns its sha256. Also keeps
    /// a copy in the local cache, so this worker never downloads what it made.
    pub async fn put(&self, bytes: Vec<u8>, kind: &str) -> Result<String, ArtifactError> {
        let sha = sha256_hex(&bytes);
        let header = pb::PutHeader {
            sha256: sha.clone(),
            size: bytes.len() as u64,
            kind: kind.to_owned(),
        };
        let mut chunks: Vec<pb::PutChunk> = bytes
            .chunks(CHUNK_BYTES)
            .map(|c| pb::PutChunk {
                header: None,
                data: c.to_vec(),
            })
            .collect();
        match chunks.first_mut() {
            Some(first) => first.header = Some(header),
            None => chunks.push(pb::PutChunk {
                header: Some(header),
                data: Vec::new(),
            }),
        }
        self.client
            .clone()
            .put(futures::stream::iter(chunks))
            .await
            .map_err(|status| ArtifactError::Rpc {
                sha256: sha.clone(),
                status: Box::new(status),
            })?;
        self.store_in_cache(&sha, &bytes)?;
        Ok(sha)
    }

    /// The blob named `sha256`: from the cache if it is there and intact, else from the
    /// coordinator (then cached). Every byte is checked against the name.
    pub async fn get(&self, sha256: &str) -> Result<Vec<u8>, ArtifactError> {
        check_sha256(sha256)?;
        let path = self.cache_path(sha256);
        if let Ok(bytes) = tokio::fs::read(&path).await {
            if sha256_hex(&bytes) == sha256 {
                return Ok(bytes);
            }
            tracing::warn!(path = %path.display(), "cached artifact is corrupt; fetching it again");
        }
        let rpc = |status: tonic::Status| ArtifactError::Rpc {
            sha256: sha256.to_owned(),
            status: Box::new(status),
        };
        let mut stream = self
            .client
            .clone()
            .get(pb::GetRequest {
                sha256: sha256.to_owned(),
            })
            .await
            .map_err(rpc)?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(rpc)? {
            bytes.extend_from_slice(&chunk.data);
        }
        let got = sha256_hex(&bytes);
        if got != sha256 {
            return Err(ArtifactError::HashMismatch {
                sha256: sha256.to_owned(),
                got,
                got_size: bytes.len(),
            });
        }
        self.store_in_cache(sha256, &bytes)?;
        Ok(bytes)
    }

    fn cache_path(&self, sha256: &str) -> PathBuf {
        self.cache.join(&sha256[..2]).join(sha256)
    }

    /// Writes a verified blob into the cache atomically (temporary file, then rename).
    fn store_in_cache(&self, sha256: &str, bytes: &[u8]) -> Result<(), ArtifactError> {
        let path = self.cache_path(sha256);
        if path.exists() {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ArtifactError::Cache { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = dir.join(format!(".{sha256}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }
}
