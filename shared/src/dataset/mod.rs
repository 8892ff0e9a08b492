//! ASD datasets on disk: layouts, the manifest that every sweep reads, its fingerprint, and `data check`.
//!
//! [`scan`] walks a dataset root, interprets every `.wav` under the [`Layout`] (detected or
//! given), reads each header, hashes each file and returns a [`Manifest`]: one [`Entry`] per
//! machine sound plus the [`Problem`]s found on the way. [`Manifest::fingerprint`] pins the
//! exact files (names, sizes, SHA-256 of contents) so a worker can refuse different data.
//! [`check`] adds a full decode of every file, rate and empty-split checks, and per-group counts.

pub mod check;
pub mod layout;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

pub use check::{CheckReport, GroupSummary, check};
pub use layout::{Layout, Parsed, detect, parse_path};

/// Errors that stop a scan as a whole (a bad file is a [`Problem`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The root is missing or unreadable.
    #[error("{}: cannot read dataset directory: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// No layout could be recognised and none was given.
    #[error("{}: cannot detect the dataset layout (expected <device>/train|test|aug, <type>/id_XX or <toy>/caseN folders); pass one of: dcase2020, dcase2021, merged, mimii, toyadmos", path.display())]
    UnknownLayout {
        /// The root.
        path: PathBuf,
    },
}

/// Source (the machine as trained) or target (shifted operating condition) domain.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// The domain with plenty of training data.
    Source,
    /// The shifted domain (few or no training files).
    Target,
}

/// Which part of a dataset a file belongs to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training normals.
    Train,
    /// Evaluation files (normal and anomalous).
    Test,
    /// Extra training data of the merged layout (`aug/`).
    Aug,
}

/// Normal or anomalous sound.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// A machine working as it should.
    Normal,
    /// A machine with a fault.
    Anomaly,
}

macro_rules! display_as_serde {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
                f.write_str(v.as_str().unwrap_or_default())
            }
        }
    )*};
}
display_as_serde!(Domain, Split, Label);

/// One machine sound of a dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// Machine type / device folder.
    pub device: String,
    /// Section (machine id, case).
    pub section: u32,
    /// Source or target domain.
    pub domain: Domain,
    /// Train, test or aug.
    pub split: Split,
    /// Normal or anomaly.
    pub label: Label,
    /// Path relative to the dataset root, `/`-separated.
    pub path: String,
    /// Attribute suffix of the name (DCASE) or microphone (ToyADMOS).
    pub attributes: String,
    /// Duration in seconds.
    pub duration_s: f64,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
    /// File size in bytes.
    pub size: u64,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
}

/// What kind of problem a file or group has.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The file cannot be read or decoded (corrupt, truncated, unsupported).
    Unreadable,
    /// The path does not follow the layout's naming.
    UnknownName,
    /// The sample rate differs from the expected one.
    WrongRate,
    /// A device/section has no training or no test files.
    EmptySplit,
}

/// A problem found in a dataset, with the path it concerns.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The file (or `device/section` group) it concerns, relative to the root.
    pub path: String,
    /// Human-readable explanation.
    pub message: String,
}

/// A file seen by the scan (machine sound or not), as the fingerprint covers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    /// Path relative to the root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
}

/// Every machine sound of a dataset with its metadata, plus what was wrong on the way.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The dataset root as given.
    pub root: PathBuf,
    /// The layout used.
    pub layout: Layout,
    /// Machine sounds, sorted by path.
    pub entries: Vec<Entry>,
    /// Every `.wav` file seen, sorted by path (what the fingerprint covers).
    pub files: Vec<FileRecord>,
    /// Problems found while scanning.
    pub problems: Vec<Problem>,
}

impl Manifest {
    /// SHA-256 (hex) over the sorted `path, size, sha256` of every `.wav` file and the layout name.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"asdsweep-manifest-v1\n");
        h.update(self.layout.name().as_bytes());
        h.update(b"\n");
        for f in &self.files {
            h.update(format!("{}\t{}\t{}\n", f.path, f.size, f.sha256).as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// Absolute path of an entry.
    pub fn full_path(&self, e: &Entry) -> PathBuf {
        self.root
            .join(e.path.replace('/', std::path::MAIN_SEPARATOR_STR))
    }
}

/// Every `.wav` file under `root` (case-insensitive extension, hidden files skipped), as sorted `/`-separated relative paths.
pub fn list_wavs(root: &Path) -> Result<Vec<String>, DatasetError> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let ft = e.file_type()?;
            if ft.is_dir() {
                walk(&e.path(), &rel, out)?;
            } else if Path::new(&name)
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("wav"))
            {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, "", &mut out).map_err(|source| DatasetError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    out.sort();
    Ok(out)
}

/// Scans the dataset at `root` into a [`Manifest`] (layout detected when `layout` is `None`).
///
/// Reads each file once (in parallel): header validated, SHA-256 computed. Files whose
/// name does not fit the layout or whose header is broken become [`Problem`]s.
pub fn scan(root: &Path, layout: Option<Layout>) -> Result<Manifest, DatasetError> {
    let layout = match layout {
        Some(l) => l,
        None => detect(root).ok_or_else(|| DatasetError::UnknownLayout {
            path: root.to_path_buf(),
        })?,
    };
    let rels = list_wavs(root)?;
    enum Outcome {
        Entry(Box<Entry>, Option<Split>),
        Skip,
        Problem(Problem),
    }
    let results: Vec<(Option<FileRecord>, Outcome)> = rels
        .par_iter()
        .map(|rel| {
            let full = root.join(rel.replace('/', std::path::MAIN_SEPARATOR_STR));
            let bytes = match std::fs::read(&full) {
                Ok(b) => b,
                Err(e) => {
                    let msg = format!("cannot read: {e}");
                    return (
                        None,
                        Outcome::Problem(Problem {
                            kind: ProblemKind::Unreadable,
                            path: rel.clone(),
                            message: msg,
                        }),
                    );
                }
            };
            let record = FileRecord {
                path: rel.clone(),
                size: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(&bytes)),
            };
            let outcome = match parse_path(layout, rel) {
                None => Outcome::Problem(Problem {
                    kind: ProblemKind::UnknownName,
                    path: rel.clone(),
                    message: format!("name does not follow the {layout} layout"),
                }),
                Some(None) => Outcome::Skip,
                Some(Some(p)) => match crate::audio::parse_wav_header(&bytes, &full) {
                    Err(e) => Outcome::Problem(Problem {
                        kind: ProblemKind::Unreadable,
                        path: rel.clone(),
                        message: e.to_string(),
                    }),
                    Ok(info) => Outcome::Entry(
                        Box::new(Entry {
                            device: p.device,
                            section: p.section,
                            domain: p.domain,
                            split: p.split.unwrap_or(Split::Train),
                            label: p.label,
                            path: rel.clone(),
                            attributes: p.attributes,
                            duration_s: info.duration_s(),
                            sample_rate: info.sample_rate,
                            channels: info.channels,
                            size: record.size,
                            sha256: record.sha256.clone(),
                        }),
                        p.split,
                    ),
                },
            };
            (Some(record), outcome)
        })
        .collect();
    let mut files = Vec::new();
    let mut entries = Vec::new();
    let mut open_split = Vec::new();
    let mut problems = Vec::new();
    for (record, outcome) in results {
        files.extend(record);
        match outcome {
            Outcome::Entry(e, split) => {
                if split.is_none() {
                    open_split.push(entries.len());
                }
                entries.push(*e);
            }
            Outcome::Skip => {}
            Outcome::Problem(p) => problems.push(p),
        }
    }
    assign_splits(&mut entries, &open_split);
    Ok(Manifest {
        root: root.to_path_buf(),
        layout,
        entries,
        files,
        problems,
    })
}

/// Decides train/test for layouts without a split (MIMII, ToyADMOS), as DCASE 2020 built its test sets.
///
/// Per device and section: every anomaly is a test file; of the normals, sorted by path,
/// the first as many as there are anomalies are test files and the rest are training files.
pub fn assign_splits(entries: &mut [Entry], open: &[usize]) {
    let mut groups: BTreeMap<(String, u32), Vec<usize>> = BTreeMap::new();
    for &i in open {
        groups
            .entry((entries[i].device.clone(), entries[i].section))
            .or_default()
            .push(i);
    }
    for idx in groups.values() {
        let n_anomaly = idx
            .iter()
            .filter(|&&i| entries[i].label == Label::Anomaly)
            .count();
        let mut normals: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| entries[i].label == Label::Normal)
            .collect();
        normals.sort_by(|&a, &b| entries[a].path.cmp(&entries[b].path));
        for &i in idx {
            if entries[i].label == Label::Anomaly {
                entries[i].split = Split::Test;
            }
        }
        for (k, &i) in normals.iter().enumerate() {
            entries[i].split = if k < n_anomaly {
                Split::Test
            } else {
                Split::Train
            };
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a short 16-bit WAV with `channels` channels at `rate` to `root/rel`.
    pub(crate) fn put(root: &Path, rel: &str, rate: u32, channels: u16) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let n = (rate / 10) as usize * usize::from(channels);
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 31 % 17) as f32 / 17.0 - 0.5) * 0.1)
            .collect();
        crate::audio::write_wav_pcm16(&p, &x, rate, channels).unwrap();
    }

    fn count(m: &Manifest, split: Split, label: Label) -> usize {
        m.entries
            .iter()
            .filter(|e| e.split == split && e.label == label)
            .count()
    }

    #[test]
    fn a_dcase_2020_tree_is_detected_and_every_file_is_listed() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "fan/train/normal_id_00_00000000.wav", 16000, 1);
        put(d.path(), "fan/train/normal_id_02_00000001.wav", 16000, 1);
        put(d.path(), "fan/test/anomaly_id_02_00000000.wav", 16000, 1);
        let m = scan(d.path(), None).unwrap();
        assert_eq!(m.layout, Layout::Dcase2020);
        assert_eq!(m.entries.len(), 3);
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        let a = &m.entries[0];
        assert_eq!(
            (a.section, a.split, a.label),
            (2, Split::Test, Label::Anomaly)
        );
        assert!((a.duration_s - 0.1).abs() < 1e-9);
    }

    #[test]
    fn a_dcase_2022_tree_keeps_domains_and_attributes() {
        let d = tempfile::tempdir().unwrap();
        put(
            d.path(),
            "gearbox/train/section_01_source_train_normal_0000_volt_1.0.wav",
            16000,
            1,
        );
        put(
            d.path(),
            "gearbox/train/section_01_target_train_normal_0000_volt_1.3.wav",
            16000,
            1,
        );
        put(
            d.path(),
            "gearbox/test/section_01_target_test_anomaly_0000_volt_1.3.wav",
            16000,
            1,
        );
        let m = scan(d.path(), None).unwrap();
        assert_eq!(m.layout, Layout::Dcase2021);
        let t = m.entries.iter().find(|e| e.split == Split::Test).unwrap();
        assert_eq!(
            (t.domain, t.label, t.attributes.as_str()),
            (Domain::Target, Label::Anomaly, "volt_1.3")
        );
    }

    #[test]
    fn a_merged_tree_with_aug_is_detected() {
        let d = tempfile::tempdir().unwrap();
        put(
            d.path(),
            "slider/train/section_00_source_train_normal_0000.wav",
            16000,
            1,
        );
        put(
            d.path(),
            "slider/aug/section_00_source_train_normal_0001_mix.wav",
            16000,
            1,
        );
        put(
            d.path(),
            "slider/test/section_00_source_test_anomaly_0000.wav",
            16000,
            1,
        );
        let m = scan(d.path(), None).unwrap();
        assert_eq!(m.layout, Layout::Merged);
        assert_eq!(count(&m, Split::Aug, Label::Normal), 1);
    }

    #[test]
    fn a_mimii_tree_puts_as_many_normals_as_anomalies_into_test() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..5 {
            put(
                d.path(),
                &format!("valve/id_04/normal/{i:08}.wav"),
                16000,
                8,
            );
        }
        for i in 0..2 {
            put(
                d.path(),
                &format!("valve/id_04/abnormal/{i:08}.wav"),
                16000,
                8,
            );
        }
        let m = scan(d.path(), None).unwrap();
        assert_eq!(m.layout, Layout::Mimii);
        assert_eq!(
            (
                count(&m, Split::Train, Label::Normal),
                count(&m, Split::Test, Label::Normal)
            ),
            (3, 2)
        );
        assert_eq!(count(&m, Split::Test, Label::Anomaly), 2);
        assert!(m.entries.iter().all(|e| e.channels == 8 && e.section == 4));
        let test_normals: Vec<&str> = m
            .entries
            .iter()
            .filter(|e| e.split == Split::Test && e.label == Label::Normal)
            .map(|e| e.path.as_str())
            .collect();
        assert_eq!(
            test_normals,
            [
                "valve/id_04/normal/00000000.wav",
                "valve/id_04/normal/00000001.wav"
            ]
        );
    }

    #[test]
    fn a_toyadmos_tree_maps_cases_to_sections_and_skips_environment_noise() {
        let d = tempfile::tempdir().unwrap();
        for ch in 1..=2 {
            put(
                d.path(),
                &format!("ToyTrain/case2/NormalSound_IND/in_ch{ch}_0001.wav"),
                48000,
                1,
            );
            put(
                d.path(),
                &format!("ToyTrain/case2/NormalSound_CNT/cn_ch{ch}_0001.wav"),
                48000,
                1,
            );
            put(
                d.path(),
                &format!("ToyTrain/case2/AnomalousSound_IND/ab_ch{ch}_0001.wav"),
                48000,
                1,
            );
            put(
                d.path(),
                &format!("ToyTrain/case2/EnvironmentalNoise_CNT/env_ch{ch}_0001.wav"),
                48000,
                1,
            );
        }
        let m = scan(d.path(), None).unwrap();
        assert_eq!(m.layout, Layout::ToyAdmos);
        assert_eq!(m.entries.len(), 6);
        assert_eq!(
            m.files.len(),
            8,
            "the fingerprint still covers the noise files"
        );
        assert!(
            m.entries
                .iter()
                .all(|e| e.section == 2 && e.sample_rate == 48000)
        );
        assert_eq!(count(&m, Split::Test, Label::Anomaly), 2);
        assert_eq!(count(&m, Split::Train, Label::Normal), 2);
        assert!(m.entries.iter().any(|e| e.attributes == "mic_2"));
    }

    #[test]
    fn the_fingerprint_changes_with_content_and_names_but_not_with_rescanning() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "fan/train/normal_id_00_00000000.wav", 16000, 1);
        put(d.path(), "fan/test/anomaly_id_00_00000000.wav", 16000, 1);
        let f1 = scan(d.path(), None).unwrap().fingerprint();
        assert_eq!(f1, scan(d.path(), None).unwrap().fingerprint());
        assert_eq!(f1.len(), 64);
        // Same size, one byte different.
        let p = d.path().join("fan/train/normal_id_00_00000000.wav");
        let mut b = std::fs::read(&p).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&p, &b).unwrap();
        let f2 = scan(d.path(), None).unwrap().fingerprint();
        assert_ne!(f1, f2);
        std::fs::rename(&p, d.path().join("fan/train/normal_id_00_00000001.wav")).unwrap();
        assert_ne!(f2, scan(d.path(), None).unwrap().fingerprint());
    }

    #[test]
    fn renamed_and_corrupt_files_become_problems_with_their_paths() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "fan/train/normal_id_00_00000000.wav", 16000, 1);
        put(d.path(), "fan/train/normal_id_00_00000001.wav", 16000, 1);
        std::fs::rename(
            d.path().join("fan/train/normal_id_00_00000001.wav"),
            d.path().join("fan/train/my_renamed_file.wav"),
        )
        .unwrap();
        std::fs::write(
            d.path().join("fan/train/normal_id_00_00000002.wav"),
            b"RIFF\x10\0\0\0WAVEjunk",
        )
        .unwrap();
        let m = scan(d.path(), Some(Layout::Dcase2020)).unwrap();
        assert_eq!(m.entries.len(), 1);
        let kinds: Vec<(ProblemKind, &str)> = m
            .problems
            .iter()
            .map(|p| (p.kind, p.path.as_str()))
            .collect();
        assert!(
            kinds.contains(&(ProblemKind::UnknownName, "fan/train/my_renamed_file.wav")),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&(
                ProblemKind::Unreadable,
                "fan/train/normal_id_00_00000002.wav"
            )),
            "{kinds:?}"
        );
    }

    #[test]
    fn an_unrecognisable_tree_is_an_error_that_lists_the_layouts() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "whatever/x.wav", 16000, 1);
        let err = scan(d.path(), None).unwrap_err().to_string();
        assert!(
            err.contains("cannot detect") && err.contains("mimii"),
            "{err}"
        );
    }
}
