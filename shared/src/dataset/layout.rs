//! The on-disk layouts of ASD datasets: detection and the meaning of each file's path.

use std::path::Path;

use super::{Domain, Label, Split};

/// A dataset layout that asdsweep reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// DCASE 2020 Task 2 development: `<type>/{train,test}/{normal,anomaly}_id_XX_NNNNNNNN.wav`.
    Dcase2020,
    /// DCASE 2021–2023: `<type>/{train,test}/section_XX_{source,target}_{train,test}_{normal,anomaly}_NNNN[_attrs].wav`.
    Dcase2021,
    /// The reference pipeline's merged tree: `<device>/{train,test,aug}/<2020- or 2021-style name>`.
    Merged,
    /// MIMII: `<type>/id_XX/{normal,abnormal}/NNNNNNNN.wav` (8 channels).
    Mimii,
    /// ToyADMOS: `<toy>/caseN/{NormalSound,AnomalousSound}_{IND,CNT}/…chM….wav` (48 kHz, per-microphone files).
    ToyAdmos,
}

impl Layout {
    /// Every layout, in detection order.
    pub const ALL: [Layout; 5] = [
        Layout::Merged,
        Layout::Mimii,
        Layout::ToyAdmos,
        Layout::Dcase2021,
        Layout::Dcase2020,
    ];

    /// The name used in specs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Dcase2020 => "dcase2020",
            Layout::Dcase2021 => "dcase2021",
            Layout::Merged => "merged",
            Layout::Mimii => "mimii",
            Layout::ToyAdmos => "toyadmos",
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layout::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown layout '{s}'; allowed: {}",
                    Layout::ALL
                        .iter()
                        .map(|l| l.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

/// What a path inside a dataset says about its file (the split may be decided later, see [`Parsed::split`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Machine type or device folder.
    pub device: String,
    /// Section (DCASE), machine id (DCASE 2020, MIMII) or case (ToyADMOS).
    pub section: u32,
    /// Source or target domain.
    pub domain: Domain,
    /// Split, or `None` where the layout has none (MIMII, ToyADMOS): decided by [`super::assign_splits`].
    pub split: Option<Split>,
    /// Normal or anomalous.
    pub label: Label,
    /// Anything after the file index (DCASE attributes, ToyADMOS microphone).
    pub attributes: String,
}

fn number(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn split_of(s: &str) -> Option<Split> {
    match s {
        "train" => Some(Split::Train),
        "test" => Some(Split::Test),
        "aug" => Some(Split::Aug),
        _ => None,
    }
}

/// Parses a DCASE 2020 file name `{normal,anomaly}_id_XX_NNNNNNNN`.
fn parse_2020_name(stem: &str) -> Option<(u32, Label)> {
    let parts: Vec<&str> = stem.split('_').collect();
    match parts[..] {
        [label, "id", id, index] if digits(index) => {
            let label = match label {
                "normal" => Label::Normal,
                "anomaly" => Label::Anomaly,
                _ => return None,
            };
            Some((number(id)?, label))
        }
        _ => None,
    }
}

/// Parses a DCASE 2021–2023 file name `section_XX_{source,target}_{train,test}_{normal,anomaly}_NNNN[_attrs]`.
fn parse_2021_name(stem: &str) -> Option<(u32, Domain, Split, Label, String)> {
    let parts: Vec<&str> = stem.split('_').collect();
    if parts.len() < 6 || parts[0] != "section" {
        return None;
    }
    let section = number(parts[1])?;
    let domain = match parts[2] {
        "source" => Domain::Source,
        "target" => Domain::Target,
        _ => return None,
    };
    let split = match parts[3] {
        "train" => Split::Train,
        "test" => Split::Test,
        _ => return None,
    };
    let label = match parts[4] {
        "normal" => Label::Normal,
        "anomaly" => Label::Anomaly,
        _ => return None,
    };
    if !digits(parts[5]) {
        return None;
    }
    Some((section, domain, split, label, parts[6..].join("_")))
}

/// Interprets the path of a `.wav` file (relative to the dataset root, `/`-separated) under `layout`.
///
/// `None` means the path does not follow the layout's naming (reported as "unknown name
/// pattern"); `Some(None)` means a file the layout knows but that is no machine sound
/// (ToyADMOS environmental noise), which is skipped.
pub fn parse_path(layout: Layout, rel: &str) -> Option<Option<Parsed>> {
    let parts: Vec<&str> = rel.split('/').collect();
    let stem = Path::new(parts.last()?).file_stem()?.to_str()?;
    match (layout, &parts[..]) {
        (Layout::Dcase2020, [device, folder, _]) => {
            let (section, label) = parse_2020_name(stem)?;
            let split = split_of(folder).filter(|s| *s != Split::Aug)?;
            Some(Some(Parsed {
                device: device.to_string(),
                section,
                domain: Domain::Source,
                split: Some(split),
                label,
                attributes: String::new(),
            }))
        }
        (Layout::Dcase2021, [device, folder, _]) => {
            let (section, domain, split, label, attributes) = parse_2021_name(stem)?;
            // The folder and the name must agree on the split.
            (split_of(folder)? == split).then_some(())?;
            Some(Some(Parsed {
                device: device.to_string(),
                section,
                domain,
                split: Some(split),
                label,
                attributes,
            }))
        }
        (Layout::Merged, [device, folder, _]) => {
            let split = split_of(folder)?;
            if let Some((section, domain, _, label, attributes)) = parse_2021_name(stem) {
                return Some(Some(Parsed {
                    device: device.to_string(),
                    section,
                    domain,
                    split: Some(split),
                    label,
                    attributes,
                }));
            }
            let (section, label) = parse_2020_name(stem)?;
            Some(Some(Parsed {
                device: device.to_string(),
                section,
                domain: Domain::Source,
                split: Some(split),
                label,
                attributes: String::new(),
            }))
        }
        (Layout::Mimii, [device, id, label, _]) => {
            let section = number(id.strip_prefix("id_")?)?;
            let label = match *label {
                "normal" => Label::Normal,
                "abnormal" => Label::Anomaly,
                _ => return None,
            };
            digits(stem).then_some(())?;
            Some(Some(Parsed {
                device: device.to_string(),
                section,
                domain: Domain::Source,
                split: None,
                label,
                attributes: String::new(),
            }))
        }
        (Layout::ToyAdmos, [device, case, kind, _]) => {
            let section = number(case.strip_prefix("case")?)?;
            let (what, _mode) = kind.split_once('_')?;
            let label = match what {
                "NormalSound" => Label::Normal,
                "AnomalousSound" => Label::Anomaly,
                "EnvironmentalNoise" => return Some(None),
                _ => return None,
            };
            let mic = stem
                .split('_')
                .find(|t| t.len() > 2 && t.starts_with("ch") && digits(&t[2..]))
                .map(|t| format!("mic_{}", &t[2..]))
                .unwrap_or_default();
            Some(Some(Parsed {
                device: device.to_string(),
                section,
                domain: Domain::Source,
                split: None,
                label,
                attributes: mic,
            }))
        }
        _ => None,
    }
}

/// Guesses the layout of a dataset rooted at `root` from its folder names and file names.
///
/// Looks at `root/<device>/<child>`: an `aug` folder means merged, `id_XX` MIMII, `caseN`
/// ToyADMOS; `train`/`test` folders then tell DCASE 2021+ (`section_…` names) from
/// DCASE 2020 (`normal_id_…`). `None` if nothing matches.
pub fn detect(root: &Path) -> Option<Layout> {
    let mut children: Vec<(String, std::path::PathBuf)> = Vec::new();
    for dev in sorted_dirs(root) {
        for child in sorted_dirs(&dev) {
            let name = child.file_name()?.to_string_lossy().into_owned();
            children.push((name, child));
        }
    }
    if children.iter().any(|(n, _)| n == "aug") {
        return Some(Layout::Merged);
    }
    if children
        .iter()
        .any(|(n, _)| n.strip_prefix("id_").is_some_and(digits))
    {
        return Some(Layout::Mimii);
    }
    if children
        .iter()
        .any(|(n, _)| n.strip_prefix("case").is_some_and(digits))
    {
        return Some(Layout::ToyAdmos);
    }
    for (name, dir) in &children {
        if name != "train" && name != "test" {
            continue;
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            if n.starts_with("section_") {
                return Some(Layout::Dcase2021);
            }
            if n.starts_with("normal_id_") || n.starts_with("anomaly_id_") {
                return Some(Layout::Dcase2020);
            }
        }
    }
    None
}

fn sorted_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(layout: Layout, rel: &str) -> Parsed {
        parse_path(layout, rel)
            .unwrap_or_else(|| panic!("{rel} should parse"))
            .unwrap()
    }

    #[test]
    fn dcase_2020_names_give_id_as_section_and_folder_as_split() {
        let p = parsed(Layout::Dcase2020, "fan/test/anomaly_id_04_00000012.wav");
        assert_eq!(
            (p.device.as_str(), p.section, p.split, p.label),
            ("fan", 4, Some(Split::Test), Label::Anomaly)
        );
        assert!(parse_path(Layout::Dcase2020, "fan/test/anomaly_id_4x_00000012.wav").is_none());
        assert!(parse_path(Layout::Dcase2020, "fan/valid/normal_id_04_00000012.wav").is_none());
    }

    #[test]
    fn dcase_2021_names_keep_their_attribute_suffix() {
        let p = parsed(
            Layout::Dcase2021,
            "ToyCar/train/section_02_target_train_normal_0007_car_A1_spd_28V_mic_1.wav",
        );
        assert_eq!(p.section, 2);
        assert_eq!(p.domain, Domain::Target);
        assert_eq!(p.split, Some(Split::Train));
        assert_eq!(p.attributes, "car_A1_spd_28V_mic_1");
        // The folder must agree with the name.
        assert!(
            parse_path(
                Layout::Dcase2021,
                "ToyCar/test/section_02_target_train_normal_0007.wav"
            )
            .is_none()
        );
        assert!(
            parse_path(
                Layout::Dcase2021,
                "ToyCar/train/section_02_target_train_broken_0007.wav"
            )
            .is_none()
        );
    }

    #[test]
    fn merged_trees_take_the_split_from_the_folder_including_aug() {
        let p = parsed(
            Layout::Merged,
            "valve/aug/section_00_source_train_normal_0001_x.wav",
        );
        assert_eq!(p.split, Some(Split::Aug));
        let p = parsed(Layout::Merged, "valve/test/normal_id_06_00000001.wav");
        assert_eq!((p.section, p.split), (6, Some(Split::Test)));
    }

    #[test]
    fn mimii_and_toyadmos_leave_the_split_open_and_skip_environmental_noise() {
        let p = parsed(Layout::Mimii, "pump/id_02/abnormal/00000031.wav");
        assert_eq!((p.section, p.label, p.split), (2, Label::Anomaly, None));
        let p = parsed(
            Layout::ToyAdmos,
            "ToyCar/case3/AnomalousSound_IND/ab01_ch2_toycar_1.wav",
        );
        assert_eq!(
            (p.section, p.label, p.attributes.as_str()),
            (3, Label::Anomaly, "mic_2")
        );
        assert_eq!(
            parse_path(
                Layout::ToyAdmos,
                "ToyCar/case3/EnvironmentalNoise_CNT/ch1_x.wav"
            ),
            Some(None)
        );
        assert!(parse_path(Layout::ToyAdmos, "ToyCar/case3/Other_CNT/ch1_x.wav").is_none());
    }

    #[test]
    fn layout_names_parse_and_unknown_ones_list_the_allowed_values() {
        assert_eq!("mimii".parse::<Layout>().unwrap(), Layout::Mimii);
        let err = "dcase2099".parse::<Layout>().unwrap_err();
        assert!(
            err.contains("dcase2020") && err.contains("toyadmos"),
            "{err}"
        );
    }
}
