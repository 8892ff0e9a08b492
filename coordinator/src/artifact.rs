//! Content-addressed blob store on a directory (local disk or a shared
//! filesystem): `ROOT/ab/cd/<sha256>`. A blob is written to `ROOT/tmp`,
//! hashed while it streams in, checked against the announced hash and size,
//! and only then renamed into place, so a reader never sees a partial blob.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Largest blob accepted (a ResNet-152 checkpoint is about 240 MB).
pub const MAX_BLOB_BYTES: u64 = 8 << 30;

/// A directory of content-addressed blobs.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

/// A blob being written.
pub struct PendingBlob {
    file: tokio::fs::File,
    tmp: PathBuf,
    hasher: Sha256,
    size: u64,
}

/// Checks that a string is a sha256 in lowercase hex (and so a safe file name).
pub fn check_sha256(sha: &str) -> Result<()> {
    if sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "\"{sha}\" is not a sha256 (64 lowercase hex digits)"
        )))
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

impl ArtifactStore {
    /// Opens (and creates) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<ArtifactStore> {
        let root = root.into();
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        Ok(ArtifactStore { root })
    }

    /// Where a blob lives (whether or not it exists).
    pub fn path_of(&self, sha: &str) -> Result<PathBuf> {
        check_sha256(sha)?;
        Ok(self.root.join(&sha[..2]).join(&sha[2..4]).join(sha))
    }

    /// Starts writing a new blob.
    pub async fn begin(&self) -> Result<PendingBlob> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{:016x}.part", rand::random::<u64>()));
        let file = tokio::fs::File::create(&tmp).await.map_err(io_err(&tmp))?;
        Ok(PendingBlob {
            file,
            tmp,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Opens a stored blob for reading.
    pub async fn open_blob(&self, sha: &str) -> Result<(tokio::fs::File, u64)> {
        let path = self.path_of(sha)?;
        match tokio::fs::File::open(&path).await {
            Ok(f) => {
                let size = f.metadata().await.map_err(io_err(&path))?.len();
                Ok((f, size))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
                what: format!("artifact {sha}"),
            }),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

impl PendingBlob {
    /// Appends data.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.size += data.len() as u64;
        if self.size > MAX_BLOB_BYTES {
            return Err(Error::InvalidArgument(format!(
                "artifact larger than {MAX_BLOB_BYTES} bytes"
            )));
        }
        self.hasher.update(data);
        self.file.write_all(data).await.map_err(io_err(&self.tmp))
    }

    /// Verifies hash and size and moves the blob into place. Returns its size
    /// and whether it was new.
    pub async fn finish(self, store: &ArtifactStore, sha: &str, size: u64) -> Result<(u64, bool)> {
        let dest = store.path_of(sha)?;
        let actual = hex::encode(self.hasher.clone().finalize());
        if actual != sha || self.size != size {
            let received = self.size;
            self.discard().await;
            return Err(Error::InvalidArgument(format!(
                "artifact content does not match its header: announced {sha} ({size} bytes), received {actual} ({received} bytes)"
            )));
        }
        self.file.sync_all().await.map_err(io_err(&self.tmp))?;
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            self.discard().await;
            return Ok((size, false));
        }
        let dir = dest
            .parent()
            .expect("a blob path always has a parent directory");
        tokio::fs::create_dir_all(dir).await.map_err(io_err(dir))?;
        tokio::fs::rename(&self.tmp, &dest)
            .await
            .map_err(io_err(&dest))?;
        Ok((size, true))
    }

    /// Drops a partial blob.
    pub async fn discard(self) {
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_blob_is_stored_under_its_hash_and_a_mismatch_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let data = b"checkpoint bytes";
        let sha = hex::encode(Sha256::digest(data));
        let mut blob = store.begin().await.unwrap();
        blob.write(data).await.unwrap();
        assert_eq!(
            blob.finish(&store, &sha, data.len() as u64).await.unwrap(),
            (16, true)
        );
        assert_eq!(std::fs::read(store.path_of(&sha).unwrap()).unwrap(), data);

        let mut blob = store.begin().await.unwrap();
        blob.write(b"other").await.unwrap();
        let err = blob.finish(&store, &sha, 5).await.unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "partial blob left behind"
        );
    }

    #[test]
    fn only_hex_hashes_become_paths() {
        let store = ArtifactStore {
            root: PathBuf::from("/x"),
        };
        assert!(store.path_of("../../etc/passwd").is_err());
        assert!(store.path_of(&"A".repeat(64)).is_err());
        assert!(store.path_of(&"a".repeat(64)).is_ok());
    }
}
