//! The worker's dataset root (`asdsweep worker --data DIR`): a spec's dataset path is
//! resolved under it and never outside it, each dataset is scanned once per worker (its
//! manifest and fingerprint kept), a job whose expected fingerprint differs is refused,
//! and log-mel spectrograms are kept in a bounded memory cache and on disk, since the
//! train and evaluation jobs of one machine type read the same clips again and again.
//!
//! The disk cache (default `<data>/.asdsweep/logmel`, `worker --feature-cache DIR`) holds
//! one `.npy` per clip under `<dataset fingerprint>/<settings>/`: changed files give another
//! fingerprint and changed settings another directory, so a stale entry is never read. It
//! is shared by every worker of a machine (or of a shared filesystem): an entry is written
//! under a temporary name and renamed into place, so a reader sees it whole or not at all,
//! and workers that compute the same clip at once each rename the same bytes.

use asdsweep_shared::dataset::{self, Entry, Layout, Manifest};
use asdsweep_shared::logmel::{self, LogMelConfig};
use asdsweep_shared::npy;
use asdsweep_shared::spec::DatasetSpec;
use ndarray::Array2;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Log-mel bytes kept in memory per worker before the oldest are dropped.
const FEATURE_CACHE_BYTES: usize = 1 << 30;

/// Why a job's data could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The `--data` root or a dataset directory is missing or unreadable.
    #[error("dataset directory {}: {source}", path.display())]
    Missing {
        /// The directory.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The spec's path leads outside the worker's root.
    #[error("dataset path \"{path}\" resolves to {}, outside this worker's --data root {}", resolved.display(), root.display())]
    OutsideRoot {
        /// The path from the spec.
        path: String,
        /// Where it leads.
        resolved: PathBuf,
        /// The root.
        root: PathBuf,
    },
    /// The layout name is not one we read.
    #[error("dataset layout: {0}")]
    Layout(String),
    /// The scan failed as a whole.
    #[error(transparent)]
    Scan(#[from] dataset::DatasetError),
    /// The files differ from those the sweep was launched for.
    #[error("dataset {} has fingerprint {found}, but the sweep expects {expected}: this worker holds different data", dir.display())]
    Fingerprint {
        /// The dataset directory.
        dir: PathBuf,
        /// What the sweep expects.
        expected: String,
        /// What this worker's files give.
        found: String,
    },
    /// A clip could not be decoded or turned into a log-mel spectrogram.
    #[error("{}: {source}", path.display())]
    Clip {
        /// The clip.
        path: PathBuf,
        /// The decoding error.
        source: logmel::LogMelError,
    },
}

/// A scanned dataset: its manifest and fingerprint.
pub struct Dataset {
    /// Every machine sound with its metadata.
    pub manifest: Manifest,
    /// [`Manifest::fingerprint`], computed once.
    pub fingerprint: String,
}

/// Log-mels by (fingerprint, n_mels, clip path), oldest dropped first beyond a byte budget.
#[derive(Default)]
struct FeatureCache {
    entries: HashMap<(String, usize, String), Arc<Array2<f32>>>,
    order: VecDeque<(String, usize, String)>,
    bytes: usize,
}

impl FeatureCache {
    fn insert(&mut self, key: (String, usize, String), value: Arc<Array2<f32>>) {
        let size = value.len() * size_of::<f32>();
        if self.entries.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            self.bytes += size;
        }
        while self.bytes > FEATURE_CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(v) = self.entries.remove(&old) {
                self.bytes -= v.len() * size_of::<f32>();
            }
        }
    }
}

/// Scanned datasets by (directory, layout asked for).
type DatasetCache = HashMap<(PathBuf, Option<Layout>), Arc<Dataset>>;

/// How a worker's log-mels were obtained since its root was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeatureCounts {
    /// Decoded and computed.
    pub computed: u64,
    /// Read from the disk cache.
    pub from_disk: u64,
    /// Found in memory.
    pub from_memory: u64,
}

#[derive(Default)]
struct Counters {
    computed: AtomicU64,
    from_disk: AtomicU64,
    from_memory: AtomicU64,
}

/// Version of the disk cache's layout and content: bump it when the log-mel code changes
/// its output, so that old entries are no longer read.
const FEATURE_CACHE_VERSION: u32 = 1;

/// The directory of one feature setting: `v1-` and 16 hex digits of a digest of it.
fn settings_dir(cfg: &LogMelConfig) -> String {
    let text = serde_json::to_string(cfg).expect("log-mel settings serialise");
    let digest = Sha256::digest(text.as_bytes());
    format!("v{FEATURE_CACHE_VERSION}-{}", hex::encode(&digest[..8]))
}

/// The dataset root of a worker, with its caches.
pub struct DataRoot {
    root: PathBuf,
    views: PathBuf,
    /// The log-mel disk cache (`None`: memory only).
    feature_dir: Option<PathBuf>,
    datasets: Mutex<DatasetCache>,
    features: Mutex<FeatureCache>,
    counts: Counters,
    /// Set once a disk-cache write failed (warned about once, then memory only).
    disk_failed: AtomicBool,
}

impl DataRoot {
    /// Opens a root directory (it must exist).
    pub fn open(root: &Path) -> Result<DataRoot, DataError> {
        let root = root.canonicalize().map_err(|source| DataError::Missing {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(DataRoot {
            views: root.join(".asdsweep").join("views"),
            feature_dir: Some(root.join(".asdsweep").join("logmel")),
            root,
            datasets: Mutex::default(),
            features: Mutex::default(),
            counts: Counters::default(),
            disk_failed: AtomicBool::new(false),
        })
    }

    /// Keeps log-mels on disk under `dir` instead of `<root>/.asdsweep/logmel` (for a
    /// read-only data mount), or not at all (`None`).
    pub fn with_feature_cache(mut self, dir: Option<PathBuf>) -> DataRoot {
        self.feature_dir = dir;
        self
    }

    /// How log-mels were obtained so far.
    pub fn feature_counts(&self) -> FeatureCounts {
        FeatureCounts {
            computed: self.counts.computed.load(Ordering::Relaxed),
            from_disk: self.counts.from_disk.load(Ordering::Relaxed),
            from_memory: self.counts.from_memory.load(Ordering::Relaxed),
        }
    }

    /// The root directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keeps augmented views (the contrastive family's) under `dir` instead of the default
    /// `<root>/.asdsweep/views`: for a read-only data mount, or a faster local disk.
    pub fn with_view_cache(mut self, dir: PathBuf) -> DataRoot {
        self.views = dir;
        self
    }

    /// Where augmented views are kept (see [`DataRoot::with_view_cache`]).
    pub fn view_cache(&self) -> &Path {
        &self.views
    }

    /// The directory a spec's `dataset.path` names, resolved (links followed) and checked to lie under the root.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, DataError> {
        let joined = self.root.join(path);
        let resolved = joined.canonicalize().map_err(|source| DataError::Missing {
            path: joined,
            source,
        })?;
        if !resolved.starts_with(&self.root) {
            return Err(DataError::OutsideRoot {
                path: path.to_owned(),
                resolved,
                root: self.root.clone(),
            });
        }
        Ok(resolved)
    }

    /// The dataset a job names, scanned once per worker; refused if its fingerprint is not the expected one.
    /// Blocks (reads and hashes every file on first use): call it off the async runtime.
    pub fn dataset(&self, spec: &DatasetSpec) -> Result<Arc<Dataset>, DataError> {
        let dir = self.resolve(&spec.path)?;
        let layout = spec
            .layout
            .as_deref()
            .map(str::parse::<Layout>)
            .transpose()
            .map_err(DataError::Layout)?;
        let key = (dir.clone(), layout);
        let cached = self
            .datasets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let ds = match cached {
            Some(ds) => ds,
            None => {
                let manifest = dataset::scan(&dir, layout)?;
                let fingerprint = manifest.fingerprint();
                tracing::info!(dir = %dir.display(), layout = %manifest.layout, clips = manifest.entries.len(), %fingerprint, "dataset scanned");
                let ds = Arc::new(Dataset {
                    manifest,
                    fingerprint,
                });
                self.datasets
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, ds.clone());
                ds
            }
        };
        match &spec.fingerprint {
            Some(expected) if *expected != ds.fingerprint => Err(DataError::Fingerprint {
                dir,
                expected: expected.clone(),
                found: ds.fingerprint.clone(),
            }),
            _ => Ok(ds),
        }
    }

    /// Log-mel spectrograms (`n_mels` bands, the reference front end) of `clips`, in order.
    /// Blocks (decodes in parallel): call it off the async runtime.
    pub fn logmels(
        &self,
        ds: &Dataset,
        clips: &[&Entry],
        n_mels: usize,
    ) -> Result<Vec<Arc<Array2<f32>>>, DataError> {
        use rayon::prelude::*;
        let key = |e: &Entry| (ds.fingerprint.clone(), n_mels, e.path.clone());
        let mut out: Vec<Option<Arc<Array2<f32>>>> = {
            let cache = self.features.lock().unwrap_or_else(|p| p.into_inner());
            clips
                .iter()
                .map(|e| cache.entries.get(&key(e)).cloned())
                .collect()
        };
        let in_memory = out.iter().filter(|lm| lm.is_some()).count();
        self.counts
            .from_memory
            .fetch_add(in_memory as u64, Ordering::Relaxed);
        let cfg = LogMelConfig {
            n_mels,
            ..LogMelConfig::default()
        };
        let disk = self
            .feature_dir
            .as_ref()
            .map(|d| d.join(&ds.fingerprint).join(settings_dir(&cfg)));
        let entry = |e: &Entry| disk.as_ref().map(|d| d.join(format!("{}.npy", e.path)));
        // The disk cache next: an unreadable entry (say, cut short by a full disk) is
        // computed again and rewritten.
        let missing: Vec<usize> = (0..clips.len()).filter(|&i| out[i].is_none()).collect();
        let read: Vec<Option<Array2<f32>>> = missing
            .par_iter()
            .map(|&i| entry(clips[i]).and_then(|p| npy::read_f32(&p).ok()))
            .collect();
        let mut to_compute = Vec::new();
        {
            let mut cache = self.features.lock().unwrap_or_else(|p| p.into_inner());
            for (i, lm) in missing.into_iter().zip(read) {
                match lm {
                    Some(lm) if lm.nrows() == n_mels => {
                        self.counts.from_disk.fetch_add(1, Ordering::Relaxed);
                        let lm = Arc::new(lm);
                        cache.insert(key(clips[i]), lm.clone());
                        out[i] = Some(lm);
                    }
                    _ => to_compute.push(i),
                }
            }
        }
        let paths: Vec<PathBuf> = to_compute
            .iter()
            .map(|&i| ds.manifest.full_path(clips[i]))
            .collect();
        let computed = logmel::logmel_files(&paths, &cfg, &|| {});
        self.counts
            .computed
            .fetch_add(paths.len() as u64, Ordering::Relaxed);
        let mut fresh = Vec::with_capacity(paths.len());
        for ((i, path), result) in to_compute.into_iter().zip(paths).zip(computed) {
            let lm = Arc::new(result.map_err(|source| DataError::Clip { path, source })?);
            fresh.push((i, lm));
        }
        fresh.par_iter().for_each(|(i, lm)| {
            if let Some(p) = entry(clips[*i]) {
                self.store_on_disk(&p, lm);
            }
        });
        let mut cache = self.features.lock().unwrap_or_else(|p| p.into_inner());
        for (i, lm) in fresh {
            cache.insert(key(clips[i]), lm.clone());
            out[i] = Some(lm);
        }
        Ok(out
            .into_iter()
            .map(|lm| lm.expect("every clip was either cached or computed"))
            .collect())
    }

    /// Writes a log-mel to the disk cache under a temporary name, then renames it into
    /// place. A failure is logged once and the cache left alone from then on.
    fn store_on_disk(&self, path: &Path, lm: &Array2<f32>) {
        if self.disk_failed.load(Ordering::Relaxed) {
            return;
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tmp = path.with_extension(format!(
            "npy.tmp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|()| npy::write_f32(&tmp, lm.view()).map_err(|e| e.to_string()))
            .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            if !self.disk_failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the log-mel disk cache; keeping log-mels in memory only (worker --feature-cache DIR puts it elsewhere)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_path_may_not_leave_the_root_even_through_a_link() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("inside")).unwrap();
        std::fs::create_dir_all(outer.path().join("secret")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outer.path().join("secret"), root.join("link")).unwrap();
        let data = DataRoot::open(&root).unwrap();
        assert!(data.resolve("inside").unwrap().ends_with("inside"));
        let err = data.resolve("../secret").unwrap_err().to_string();
        assert!(err.contains("outside this worker's --data root"), "{err}");
        #[cfg(unix)]
        {
            let err = data.resolve("link").unwrap_err().to_string();
            assert!(err.contains("outside"), "{err}");
        }
        let err = data.resolve("nowhere").unwrap_err().to_string();
        assert!(err.contains("nowhere"), "{err}");
    }

    #[test]
    fn a_dataset_with_another_fingerprint_is_refused_and_log_mels_are_computed_once() {
        use asdsweep_shared::synth::{self, Machine, SynthConfig};
        let root = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            devices: vec![Machine::Fan],
            sections: 1,
            train: 2,
            test: 1,
            seconds: 0.2,
            ..SynthConfig::default()
        };
        synth::generate(&cfg, &root.path().join("d"), &|| {}).unwrap();
        let data = DataRoot::open(root.path()).unwrap();
        let spec = DatasetSpec {
            path: "d".into(),
            ..DatasetSpec::default()
        };
        let ds = data.dataset(&spec).unwrap();
        assert_eq!(ds.fingerprint.len(), 64);
        let same = DatasetSpec {
            fingerprint: Some(ds.fingerprint.clone()),
            ..spec.clone()
        };
        assert!(
            Arc::ptr_eq(&ds, &data.dataset(&same).unwrap()),
            "scanned once"
        );
        let other = DatasetSpec {
            fingerprint: Some("0".repeat(64)),
            ..spec
        };
        let err = data.dataset(&other).err().unwrap().to_string();
        assert!(
            err.contains(&ds.fingerprint)
                && err.contains(&"0".repeat(64))
                && err.contains("different data"),
            "{err}"
        );
        let clips: Vec<&Entry> = ds.manifest.entries.iter().take(2).collect();
        let a = data.logmels(&ds, &clips, 64).unwrap();
        let b = data.logmels(&ds, &clips, 64).unwrap();
        assert!(Arc::ptr_eq(&a[1], &b[1]), "the second call reads the cache");
        assert_eq!(a[0].nrows(), 64);
    }

    /// A small synthetic dataset under `root/d` (seeded) and its spec.
    fn small_dataset(root: &Path, seed: u64) -> DatasetSpec {
        use asdsweep_shared::synth::{self, Machine, SynthConfig};
        let cfg = SynthConfig {
            devices: vec![Machine::Fan],
            sections: 1,
            train: 2,
            test: 1,
            seconds: 0.2,
            seed,
            ..SynthConfig::default()
        };
        synth::generate(&cfg, &root.join("d"), &|| {}).unwrap();
        DatasetSpec {
            path: "d".into(),
            ..DatasetSpec::default()
        }
    }

    /// Log-mels of every clip through a fresh root (another worker process, as it were).
    fn logmels_of(
        root: &Path,
        spec: &DatasetSpec,
        n_mels: usize,
    ) -> (Vec<Array2<f32>>, FeatureCounts) {
        let data = DataRoot::open(root).unwrap();
        let ds = data.dataset(spec).unwrap();
        let clips: Vec<&Entry> = ds.manifest.entries.iter().collect();
        let lms = data.logmels(&ds, &clips, n_mels).unwrap();
        (
            lms.iter().map(|l| (**l).clone()).collect(),
            data.feature_counts(),
        )
    }

    fn temporaries(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.to_string_lossy().contains(".tmp-") {
                    found.push(p);
                }
            }
        }
        found
    }

    #[test]
    fn log_mels_are_computed_once_per_machine_and_again_when_the_data_or_settings_change() {
        let root = tempfile::tempdir().unwrap();
        let spec = small_dataset(root.path(), 1);
        let counted = |computed, from_disk| FeatureCounts {
            computed,
            from_disk,
            from_memory: 0,
        };
        // The first worker computes every clip (and writes them to disk).
        let (first, n) = logmels_of(root.path(), &spec, 64);
        let clips = first.len() as u64;
        assert!(clips >= 4);
        assert_eq!(n, counted(clips, 0));
        // The next computes none: it reads what the first wrote, bit for bit.
        let (second, n) = logmels_of(root.path(), &spec, 64);
        assert_eq!(n, counted(0, clips));
        assert_eq!(first, second);
        // Other settings are other entries.
        let (fewer_bands, n) = logmels_of(root.path(), &spec, 32);
        assert_eq!(n, counted(clips, 0));
        assert_eq!(fewer_bands[0].nrows(), 32);
        // Other files (another seed: every clip differs) give another fingerprint.
        let spec = small_dataset(root.path(), 2);
        let (changed, n) = logmels_of(root.path(), &spec, 64);
        assert_eq!(n, counted(changed.len() as u64, 0));
        assert_ne!(changed[..first.len()], first[..]);
        // Without a disk cache nothing is written or read.
        let plain = DataRoot::open(root.path())
            .unwrap()
            .with_feature_cache(None);
        let ds = plain.dataset(&spec).unwrap();
        let all: Vec<&Entry> = ds.manifest.entries.iter().collect();
        plain.logmels(&ds, &all, 48).unwrap();
        plain.logmels(&ds, &all, 48).unwrap();
        assert_eq!(
            plain.feature_counts(),
            FeatureCounts {
                computed: all.len() as u64,
                from_disk: 0,
                from_memory: all.len() as u64
            }
        );
        let cache = root.path().join(".asdsweep").join("logmel");
        let settings: Vec<_> = std::fs::read_dir(cache.join(&ds.fingerprint))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            settings.len(),
            1,
            "only the 64-band entries of the new data: {settings:?}"
        );
        assert!(temporaries(&cache).is_empty());
    }

    #[test]
    fn workers_writing_the_same_entries_at_once_leave_them_whole() {
        let root = tempfile::tempdir().unwrap();
        let spec = small_dataset(root.path(), 3);
        let start = std::sync::Barrier::new(6);
        let results: Vec<(Vec<Array2<f32>>, FeatureCounts)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        logmels_of(root.path(), &spec, 64)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (lms, _) in &results[1..] {
            assert_eq!(lms, &results[0].0);
        }
        // Whatever raced, every entry on disk is whole and the same as computed.
        let (again, n) = logmels_of(root.path(), &spec, 64);
        assert_eq!(n.computed, 0, "{n:?}");
        assert_eq!(again, results[0].0);
        assert!(temporaries(root.path()).is_empty());
    }

    #[test]
    fn a_missing_root_is_named() {
        let err = DataRoot::open(Path::new("/no/such/asdsweep/root"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/no/such/asdsweep/root"), "{err}");
    }
}
