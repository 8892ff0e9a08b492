//! `data check`: per device/section/split/label counts, durations and rates, and every problem with its path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rayon::prelude::*;

use super::{DatasetError, Label, Layout, Manifest, Problem, ProblemKind, Split, scan};

/// Counts and durations of one device/section/split/label group.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupSummary {
    /// Device.
    pub device: String,
    /// Section.
    pub section: u32,
    /// Split.
    pub split: Split,
    /// Label.
    pub label: Label,
    /// Number of files.
    pub files: usize,
    /// Total duration in seconds.
    pub total_s: f64,
    /// Shortest file in seconds.
    pub min_s: f64,
    /// Longest file in seconds.
    pub max_s: f64,
    /// Distinct sample rates.
    pub rates: Vec<u32>,
    /// Distinct channel counts.
    pub channels: Vec<u16>,
}

/// The result of checking a dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// Layout used.
    pub layout: Layout,
    /// Manifest fingerprint.
    pub fingerprint: String,
    /// One row per device/section/split/label.
    pub groups: Vec<GroupSummary>,
    /// Every problem, sorted by path.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Plain-text rendering: a table of groups, then one line per problem.
    pub fn to_text(&self) -> String {
        let mut s = format!("layout {}  fingerprint {}\n", self.layout, self.fingerprint);
        s.push_str(&format!(
            "{:<14} {:>7} {:<5} {:<7} {:>6} {:>10} {:>8} {:>8} {:<12} {}\n",
            "device",
            "section",
            "split",
            "label",
            "files",
            "total_s",
            "min_s",
            "max_s",
            "rates",
            "channels"
        ));
        for g in &self.groups {
            let rates: Vec<String> = g.rates.iter().map(u32::to_string).collect();
            let ch: Vec<String> = g.channels.iter().map(u16::to_string).collect();
            s.push_str(&format!(
                "{:<14} {:>7} {:<5} {:<7} {:>6} {:>10.1} {:>8.2} {:>8.2} {:<12} {}\n",
                g.device,
                g.section,
                g.split,
                g.label,
                g.files,
                g.total_s,
                g.min_s,
                g.max_s,
                rates.join(","),
                ch.join(",")
            ));
        }
        if self.problems.is_empty() {
            s.push_str("no problems\n");
        } else {
            s.push_str(&format!("{} problem(s):\n", self.problems.len()));
            for p in &self.problems {
                let kind = serde_json::to_value(p.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                s.push_str(&format!("  {kind:<12} {}: {}\n", p.path, p.message));
            }
        }
        s
    }
}

/// Checks the dataset at `root`: scan, full decode of every file when `decode`, rate and split checks.
///
/// `expected_rate`: every file must have this rate; `None` flags files whose rate differs
/// from the most common rate of their device.
pub fn check(
    root: &Path,
    layout: Option<Layout>,
    expected_rate: Option<u32>,
    decode: bool,
) -> Result<CheckReport, DatasetError> {
    let m = scan(root, layout)?;
    Ok(check_manifest(&m, expected_rate, decode))
}

/// Checks an already scanned manifest (see [`check`]).
pub fn check_manifest(m: &Manifest, expected_rate: Option<u32>, decode: bool) -> CheckReport {
    let mut problems = m.problems.clone();
    let mut bad: BTreeSet<&str> = BTreeSet::new();
    if decode {
        let failed: Vec<Problem> = m
            .entries
            .par_iter()
            .filter_map(|e| {
                crate::audio::decode_wav_file(&m.full_path(e))
                    .err()
                    .map(|err| Problem {
                        kind: ProblemKind::Unreadable,
                        path: e.path.clone(),
                        message: err.to_string(),
                    })
            })
            .collect();
        problems.extend(failed);
    }
    for p in &problems {
        bad.insert(p.path.as_str());
    }
    let problem_paths: BTreeSet<String> = bad.iter().map(|s| s.to_string()).collect();
    // Most common rate per device.
    let mut rates: BTreeMap<&str, BTreeMap<u32, usize>> = BTreeMap::new();
    for e in &m.entries {
        *rates
            .entry(&e.device)
            .or_default()
            .entry(e.sample_rate)
            .or_default() += 1;
    }
    for e in &m.entries {
        let want = expected_rate.unwrap_or_else(|| {
            let r = &rates[e.device.as_str()];
            // Highest count, ties to the higher rate, deterministic.
            r.iter()
                .max_by_key(|(rate, n)| (**n, **rate))
                .map(|(rate, _)| *rate)
                .unwrap_or(e.sample_rate)
        });
        if e.sample_rate != want {
            problems.push(Problem {
                kind: ProblemKind::WrongRate,
                path: e.path.clone(),
                message: format!("sample rate {} Hz, expected {want} Hz", e.sample_rate),
            });
        }
    }
    // Groups and empty splits.
    let mut groups: BTreeMap<(String, u32, Split, Label), Vec<&super::Entry>> = BTreeMap::new();
    let mut sections: BTreeMap<(String, u32), BTreeSet<Split>> = BTreeMap::new();
    for e in m
        .entries
        .iter()
        .filter(|e| !problem_paths.contains(&e.path))
    {
        groups
            .entry((e.device.clone(), e.section, e.split, e.label))
            .or_default()
            .push(e);
        sections
            .entry((e.device.clone(), e.section))
            .or_default()
            .insert(e.split);
    }
    for ((device, section), splits) in &sections {
        for need in [Split::Train, Split::Test] {
            if !splits.contains(&need) {
                problems.push(Problem {
                    kind: ProblemKind::EmptySplit,
                    path: format!("{device}/section {section:02}"),
                    message: format!("no readable {need} files"),
                });
            }
        }
    }
    let groups = groups
        .into_iter()
        .map(|((device, section, split, label), es)| GroupSummary {
            device,
            section,
            split,
            label,
            files: es.len(),
            total_s: es.iter().map(|e| e.duration_s).sum(),
            min_s: es
                .iter()
                .map(|e| e.duration_s)
                .fold(f64::INFINITY, f64::min),
            max_s: es.iter().map(|e| e.duration_s).fold(0.0, f64::max),
            rates: es
                .iter()
                .map(|e| e.sample_rate)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            channels: es
                .iter()
                .map(|e| e.channels)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        })
        .collect();
    problems.sort_by(|a, b| (&a.path, a.kind).cmp(&(&b.path, b.kind)));
    CheckReport {
        layout: m.layout,
        fingerprint: m.fingerprint(),
        groups,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::put;
    use super::*;

    #[test]
    fn counts_are_grouped_and_a_wrong_rate_and_an_empty_split_are_reported() {
        let d = tempfile::tempdir().unwrap();
        put(
            d.path(),
            "pump/train/section_00_source_train_normal_0000.wav",
            16000,
            1,
        );
        put(
            d.path(),
            "pump/train/section_00_source_train_normal_0001.wav",
            16000,
            1,
        );
        put(
            d.path(),
            "pump/train/section_00_source_train_normal_0002.wav",
            22050,
            1,
        );
        put(
            d.path(),
            "pump/test/section_00_source_test_anomaly_0000.wav",
            16000,
            1,
        );
        put(
            d.path(),
            "pump/train/section_01_source_train_normal_0000.wav",
            16000,
            2,
        );
        let r = check(d.path(), None, None, true).unwrap();
        let g = &r.groups[0];
        assert_eq!(
            (g.section, g.split, g.label, g.files),
            (0, Split::Train, Label::Normal, 3)
        );
        assert_eq!(g.rates, vec![16000, 22050]);
        assert!((g.total_s - 0.3).abs() < 1e-6);
        let kinds: Vec<(ProblemKind, &str)> = r
            .problems
            .iter()
            .map(|p| (p.kind, p.path.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (ProblemKind::EmptySplit, "pump/section 01"),
                (
                    ProblemKind::WrongRate,
                    "pump/train/section_00_source_train_normal_0002.wav"
                ),
            ]
        );
        let text = r.to_text();
        assert!(
            text.contains("2 problem(s)") && text.contains("wrong_rate"),
            "{text}"
        );
    }

    #[test]
    fn a_truncated_file_is_unreadable_and_an_expected_rate_flags_every_other_rate() {
        let d = tempfile::tempdir().unwrap();
        put(d.path(), "fan/train/normal_id_00_00000000.wav", 16000, 1);
        put(d.path(), "fan/test/normal_id_00_00000001.wav", 16000, 1);
        let p = d.path().join("fan/test/normal_id_00_00000001.wav");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 10]).unwrap();
        let r = check(d.path(), None, Some(48000), true).unwrap();
        let unreadable: Vec<&Problem> = r
            .problems
            .iter()
            .filter(|p| p.kind == ProblemKind::Unreadable)
            .collect();
        assert_eq!(unreadable.len(), 1);
        assert!(
            unreadable[0].message.contains("truncated"),
            "{}",
            unreadable[0].message
        );
        assert_eq!(
            r.problems
                .iter()
                .filter(|p| p.kind == ProblemKind::WrongRate)
                .count(),
            1
        );
        // The only test file is unreadable, so the section has no test split.
        assert!(
            r.problems
                .iter()
                .any(|p| p.kind == ProblemKind::EmptySplit && p.message.contains("test"))
        );
    }
}
