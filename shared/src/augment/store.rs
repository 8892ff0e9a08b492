//! The views of a dataset's training clips on disk, made once and shared by every job and
//! worker that can see the directory.
//!
//! Layout: `<cache>/views-<fingerprint[..16]>-<mode>-s<seed>/<clip path without .wav>/<view>.wav`,
//! 16-bit PCM at 16 kHz (the study stored its views as 16-bit WAV files too). A clip's 33
//! views are written into a private temporary directory and renamed into place in one step,
//! so a reader sees all of a clip's views or none, an interrupted run resumes at the first
//! clip without a directory, and two workers making the same clip at once both end with
//! one complete copy (the second rename finds the first's directory and drops its own).
//! Each clip's random draws are seeded by the store's seed and the clip's path, so which
//! worker makes a clip, and in which order, changes no byte.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{AugmentError, Augmentations, VIEWS_PER_CLIP, view_names, views};
use crate::audio::{self, AudioError};

/// The rate views are made and stored at.
pub const VIEW_RATE: u32 = 16_000;

/// Why views cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A clip cannot be read or decoded.
    #[error("training clip {clip}: {source}")]
    Clip {
        /// The clip's path in the dataset.
        clip: String,
        /// What went wrong.
        source: AudioError,
    },
    /// A clip's views cannot be made.
    #[error("augmenting {clip}: {source}")]
    Augment {
        /// The clip's path in the dataset.
        clip: String,
        /// What went wrong.
        source: AugmentError,
    },
    /// The store cannot be written or read.
    #[error("view store {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A view index beyond the 33.
    #[error("view {index} asked for; a clip has views 0 to {}", VIEWS_PER_CLIP - 1)]
    NoSuchView {
        /// The index asked for.
        index: usize,
    },
}

/// A training clip to augment: its path in the dataset (`/`-separated, the store's key) and
/// where to read it.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Path relative to the dataset root, e.g. `fan/train/normal_id_00_00000000.wav`.
    pub key: String,
    /// The file.
    pub path: PathBuf,
}

/// What [`ViewStore::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Made {
    /// Clips whose views this call computed and stored.
    pub computed: usize,
    /// Clips whose views were already there (or appeared meanwhile from another writer).
    pub reused: usize,
}

/// The views of one dataset under one augmentation setting.
#[derive(Debug, Clone)]
pub struct ViewStore {
    dir: PathBuf,
    mode: Augmentations,
    seed: u64,
}

impl ViewStore {
    /// The store for the dataset with manifest `fingerprint` under `cache`, for views made in
    /// `mode` from `seed`. Nothing is created until views are made.
    pub fn new(cache: &Path, fingerprint: &str, mode: Augmentations, seed: u64) -> ViewStore {
        let short = &fingerprint[..fingerprint.len().min(16)];
        ViewStore {
            dir: cache.join(format!("views-{short}-{}-s{seed}", mode.as_str())),
            mode,
            seed,
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes and stores the views of every clip that has none yet, clips in parallel;
    /// `on_clip` is called once per clip done (made or found), for a progress bar.
    /// Temporary directories a killed writer left behind (older than [`STALE`]) are removed.
    pub fn ensure(&self, clips: &[Clip], on_clip: &(dyn Fn() + Sync)) -> Result<Made, StoreError> {
        self.remove_stale(clips);
        let computed = AtomicUsize::new(0);
        clips.par_iter().try_for_each(|clip| {
            if !self.clip_dir(&clip.key).is_dir() && self.make(clip)? {
                computed.fetch_add(1, Ordering::Relaxed);
            }
            on_clip();
            Ok::<_, StoreError>(())
        })?;
        let computed = computed.into_inner();
        Ok(Made {
            computed,
            reused: clips.len() - computed,
        })
    }

    /// Whether every clip has its views in the store.
    pub fn is_complete(&self, clips: &[Clip]) -> bool {
        clips.iter().all(|c| self.clip_dir(&c.key).is_dir())
    }

    /// The file of view `index` (0 … 32, in [`view_names`] order) of clip `key`.
    pub fn view_path(&self, key: &str, index: usize) -> Result<PathBuf, StoreError> {
        let name = view_names()
            .get(index)
            .ok_or(StoreError::NoSuchView { index })?;
        Ok(self.clip_dir(key).join(format!("{name}.wav")))
    }

    /// View `index` of clip `key`, as stored (16-bit, 16 kHz).
    pub fn load(&self, key: &str, index: usize) -> Result<Vec<f32>, StoreError> {
        let path = self.view_path(key, index)?;
        audio::decode_wav_file(&path)
            .map(|a| a.samples)
            .map_err(|source| StoreError::Clip {
                clip: path.display().to_string(),
                source,
            })
    }

    /// Removes the temporary directories older than [`STALE`] beside `clips`' directories
    /// (best effort: one that cannot be removed stays, and harms nothing).
    fn remove_stale(&self, clips: &[Clip]) {
        let parents: BTreeSet<PathBuf> = clips
            .iter()
            .filter_map(|c| self.clip_dir(&c.key).parent().map(Path::to_path_buf))
            .collect();
        for entry in parents
            .iter()
            .filter_map(|p| std::fs::read_dir(p).ok())
            .flatten()
            .flatten()
        {
            let stale = entry.file_name().to_string_lossy().starts_with(TMP_PREFIX)
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE));
            if stale {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn clip_dir(&self, key: &str) -> PathBuf {
        let stem = key.strip_suffix(".wav").unwrap_or(key);
        stem.split('/')
            .fold(self.dir.clone(), |p, part| p.join(part))
    }

    /// The seed of one clip's draws: the store's seed and the clip's path, hashed.
    fn clip_seed(&self, key: &str) -> u64 {
        let digest = Sha256::new()
            .chain_update(self.seed.to_le_bytes())
            .chain_update(key.as_bytes())
            .finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    /// Makes one clip's views; false if another writer put them in place first.
    fn make(&self, clip: &Clip) -> Result<bool, StoreError> {
        let samples = audio::decode_wav_file_at(&clip.path, VIEW_RATE).map_err(|source| {
            StoreError::Clip {
                clip: clip.key.clone(),
                source,
            }
        })?;
        let made = views(&samples, self.mode, self.clip_seed(&clip.key)).map_err(|source| {
            StoreError::Augment {
                clip: clip.key.clone(),
                source,
            }
        })?;
        let target = self.clip_dir(&clip.key);
        let parent = target.parent().expect("a clip directory has a parent");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let tmp = tempfile_dir(parent).map_err(io(parent))?;
        for view in &made {
            let path = tmp.join(format!("{}.wav", view.name));
            std::fs::write(&path, audio::encode_wav_pcm16(&view.samples, VIEW_RATE, 1))
                .map_err(io(&path))?;
        }
        match std::fs::rename(&tmp, &target) {
            Ok(()) => Ok(true),
            Err(_) if target.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(false)
            }
            Err(source) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(StoreError::Io {
                    path: target,
                    source,
                })
            }
        }
    }
}

/// The name prefix of a clip's directory while it is being written.
const TMP_PREFIX: &str = ".tmp-";

/// Age beyond which a temporary directory is a dead writer's: making one clip's views takes
/// well under a second per 10 s of audio.
pub const STALE: Duration = Duration::from_secs(3600);

/// A new, uniquely named hidden directory in `parent`.
fn tempfile_dir(parent: &Path) -> std::io::Result<PathBuf> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three short synthetic clips (0.3 s at 16 kHz) in `dir`, two machine types.
    fn clips(dir: &Path) -> Vec<Clip> {
        ["fan/train/a.wav", "fan/train/b.wav", "pump/train/a.wav"]
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let samples: Vec<f32> = (0..4800)
                    .map(|n| 0.3 * (n as f32 * 0.05 * (i + 1) as f32).sin())
                    .collect();
                let path = dir.join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                audio::write_wav_pcm16(&path, &samples, VIEW_RATE, 1).unwrap();
                Clip {
                    key: key.to_string(),
                    path,
                }
            })
            .collect()
    }

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(dir).unwrap().display().to_string();
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn views_are_made_once_and_reused_by_a_second_job_and_a_second_worker() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let clips = clips(data.path());
        let store = ViewStore::new(
            cache.path(),
            "0123456789abcdef0123",
            Augmentations::Study,
            42,
        );
        let done = AtomicUsize::new(0);
        let first = store
            .ensure(&clips, &|| {
                done.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        assert_eq!(
            first,
            Made {
                computed: 3,
                reused: 0
            }
        );
        assert_eq!(done.into_inner(), 3, "progress once per clip");
        assert!(store.is_complete(&clips));
        let stored = files(store.dir());
        assert_eq!(stored.len(), 3 * VIEWS_PER_CLIP);
        assert!(store.dir().ends_with("views-0123456789abcdef-study-s42"));

        // The next job on this worker, and another worker (its own store value) on the same
        // directory: nothing is computed again.
        assert_eq!(
            store.ensure(&clips, &|| ()).unwrap(),
            Made {
                computed: 0,
                reused: 3
            }
        );
        let other = ViewStore::new(
            cache.path(),
            "0123456789abcdef0123",
            Augmentations::Study,
            42,
        );
        assert_eq!(
            other.ensure(&clips, &|| ()).unwrap(),
            Made {
                computed: 0,
                reused: 3
            }
        );

        let view = other.load("fan/train/b.wav", 17).unwrap();
        assert_eq!(view.len(), 6000, "ts0.8 of 4,800 samples");
        assert!(
            other
                .load("fan/train/b.wav", 33)
                .unwrap_err()
                .to_string()
                .contains("view 33")
        );

        // Another setting is another store.
        let named = ViewStore::new(
            cache.path(),
            "0123456789abcdef0123",
            Augmentations::AsNamed,
            42,
        );
        assert_eq!(named.ensure(&clips, &|| ()).unwrap().computed, 3);
        let reseeded = ViewStore::new(
            cache.path(),
            "0123456789abcdef0123",
            Augmentations::Study,
            43,
        );
        assert_ne!(reseeded.dir(), store.dir());
    }

    #[test]
    fn concurrent_writers_end_with_one_complete_identical_copy() {
        let data = tempfile::tempdir().unwrap();
        let clips = clips(data.path());
        let reference = tempfile::tempdir().unwrap();
        let single = ViewStore::new(reference.path(), "feed", Augmentations::Study, 7);
        single.ensure(&clips, &|| ()).unwrap();

        let cache = tempfile::tempdir().unwrap();
        let made: Vec<Made> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let store = ViewStore::new(cache.path(), "feed", Augmentations::Study, 7);
                    let clips = &clips;
                    s.spawn(move || store.ensure(clips, &|| ()).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let computed: usize = made.iter().map(|m| m.computed).sum();
        assert!((3..=9).contains(&computed), "{made:?}");
        let store = ViewStore::new(cache.path(), "feed", Augmentations::Study, 7);
        assert_eq!(
            files(store.dir()),
            files(single.dir()),
            "the same bytes as one writer alone, and no temporary directory left"
        );
    }

    #[test]
    fn an_interrupted_run_resumes_where_it_stopped() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let clips = clips(data.path());
        let store = ViewStore::new(cache.path(), "beef", Augmentations::Study, 1);
        store.ensure(&clips[..2], &|| ()).unwrap();
        // A writer killed half-way leaves only its hidden temporary directory.
        std::fs::create_dir_all(store.dir().join("pump/train/.tmp-1-0")).unwrap();
        assert!(!store.is_complete(&clips));
        assert_eq!(
            store.ensure(&clips, &|| ()).unwrap(),
            Made {
                computed: 1,
                reused: 2
            }
        );
        assert!(store.is_complete(&clips));
    }

    #[test]
    fn a_dead_writers_old_temporary_directory_is_removed_and_a_live_ones_kept() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let clips = clips(data.path());
        let store = ViewStore::new(cache.path(), "feed", Augmentations::Study, 1);
        let parent = store.dir().join("fan/train");
        let (dead, live) = (parent.join(".tmp-1-0"), parent.join(".tmp-2-0"));
        for d in [&dead, &live] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("np-3.0.wav"), b"half").unwrap();
        }
        let long_ago = std::time::SystemTime::now() - STALE - Duration::from_secs(60);
        std::fs::File::open(&dead)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        store.ensure(&clips[..1], &|| ()).unwrap();
        assert!(
            !dead.exists(),
            "a temporary directory older than STALE is removed"
        );
        assert!(
            live.join("np-3.0.wav").exists(),
            "a recent one is left alone"
        );
        assert!(store.is_complete(&clips[..1]));
    }

    #[test]
    fn a_corrupt_clip_is_named_and_nothing_half_written_stays() {
        let data = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let mut clips = clips(data.path());
        std::fs::write(&clips[1].path, b"RIFF not a wav").unwrap();
        clips.truncate(2);
        let store = ViewStore::new(cache.path(), "cafe", Augmentations::Study, 1);
        let err = store.ensure(&clips, &|| ()).unwrap_err().to_string();
        assert!(err.contains("fan/train/b.wav"), "{err}");
        assert!(!store.dir().join("fan/train/b").exists());
    }
}
