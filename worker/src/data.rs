//! The worker's dataset root (`asdsweep worker --data DIR`): a spec's dataset path is
//! resolved under it and never outside it, each dataset is scanned once per worker (its
//! manifest and fingerprint kept), a job whose expected fingerprint differs is refused,
//! and log-mel spectrograms are kept in a bounded memory cache, since the train and
//! evaluation jobs of one machine type read the same clips again and again.

use asdsweep_shared::dataset::{self, Entry, Layout, Manifest};
use asdsweep_shared::logmel::{self, LogMelConfig};
use asdsweep_shared::spec::DatasetSpec;
use ndarray::Array2;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
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

/// The dataset root of a worker, with its caches.
pub struct DataRoot {
    root: PathBuf,
    views: PathBuf,
    datasets: Mutex<DatasetCache>,
    features: Mutex<FeatureCache>,
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
            root,
            datasets: Mutex::default(),
            features: Mutex::default(),
        })
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
        let key = |e: &Entry| (ds.fingerprint.clone(), n_mels, e.path.clone());
        let mut out: Vec<Option<Arc<Array2<f32>>>> = {
            let cache = self.features.lock().unwrap_or_else(|p| p.into_inner());
            clips
                .iter()
                .map(|e| cache.entries.get(&key(e)).cloned())
                .collect()
        };
        let missing: Vec<usize> = (0..clips.len()).filter(|&i| out[i].is_none()).collect();
        let paths: Vec<PathBuf> = missing
            .iter()
            .map(|&i| ds.manifest.full_path(clips[i]))
            .collect();
        let cfg = LogMelConfig {
            n_mels,
            ..LogMelConfig::default()
        };
        let computed = logmel::logmel_files(&paths, &cfg, &|| {});
        let mut cache = self.features.lock().unwrap_or_else(|p| p.into_inner());
        for ((i, path), result) in missing.into_iter().zip(paths).zip(computed) {
            let lm = Arc::new(result.map_err(|source| DataError::Clip { path, source })?);
            cache.insert(key(clips[i]), lm.clone());
            out[i] = Some(lm);
        }
        Ok(out
            .into_iter()
            .map(|lm| lm.expect("every clip was either cached or computed"))
            .collect())
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

    #[test]
    fn a_missing_root_is_named() {
        let err = DataRoot::open(Path::new("/no/such/asdsweep/root"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/no/such/asdsweep/root"), "{err}");
    }
}
