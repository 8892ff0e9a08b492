//! Reader for the reference pipeline's `results_summary.csv` (written by the study's
//! `evaluate_proxy_asd.py`), reproducing what its `analyze_proxy_correlations.py` reports:
//! family inference, config ids, proxy/ASD column mapping (AUCs ≤ 1.5 scaled to percent),
//! checkpoint selection (`best_or_min_loss`), sign flips of lower-is-better families, mean over
//! machine types, exact Spearman per family × ASD metric and BH over all those tests.
//! Pearson r and its p are added on the same aggregated points.
//!
//! Behaviour follows shin3875/asd-proxy-task-analysis (commit 4d6f47b):
//! `plot_proxy_asd_summary.py` (`build_proxy_asd_plot_dataframe`, `infer_task_group`,
//! `infer_config_id`, `proxy_from_row`, `asd_from_row`, `select_one_checkpoint`),
//! `analyze_proxy_correlations.py` (`add_proxy_quality`, `aggregate_devices`,
//! `correlation_rows`, `main`) and `analysis_utils.py` (`exact_spearman`, `benjamini_hochberg`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::{AnalysisError, Direction, TestSettings, test_pair};
use crate::stats::bh::benjamini_hochberg;

/// Options of the reference analysis (its command-line defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorsOptions {
    /// ASD metric columns, one correlation table each.
    pub asd_metrics: Vec<String>,
    /// Keep only these machine types (case-insensitive), as `--devices`.
    pub devices: Option<Vec<String>>,
    /// AE proxy alias or column (`--ae_proxy`).
    pub ae_proxy: String,
    /// Classification proxy alias (`--classification_proxy`).
    pub classification_proxy: String,
    /// Separation proxy environment (`--sep_proxy_env`).
    pub sep_proxy_env: String,
    /// Contrastive proxy: `uniformity` or `alignment` (`--unsup_proxy`).
    pub unsup_proxy: String,
    /// Also test all families pooled as family `All` (not in the BH family), as `--include_all_group`.
    pub include_all_group: bool,
}

impl Default for AuthorsOptions {
    fn default() -> Self {
        Self {
            asd_metrics: ["linear_half_auc", "linear_loso_auc", "mah_train_auc"]
                .map(String::from)
                .to_vec(),
            devices: None,
            ae_proxy: "test_normal_l1".into(),
            classification_proxy: "global_macro_f1".into(),
            sep_proxy_env: "test_normal".into(),
            unsup_proxy: "uniformity".into(),
            include_all_group: false,
        }
    }
}

/// One row of the reference script's output, with Pearson added.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthorsRow {
    /// `Task_Group` (proxy family) or `All`.
    pub family: String,
    /// ASD metric column.
    pub asd_metric: String,
    /// Aggregated configs in the family.
    pub n: usize,
    /// Pearson r of proxy quality vs ASD (percent).
    pub pearson_r: f64,
    /// Its t-test p.
    pub pearson_p: f64,
    /// Spearman ρ.
    pub spearman_rho: f64,
    /// Exact permutation p (Monte Carlo above n = 10, see `stats::correlation`).
    pub spearman_p: f64,
    /// BH q over all non-`All` rows (`q_value_bh`).
    pub q: f64,
}

/// The study's families and their proxy directions (`METRIC_TYPES`).
pub const METRIC_TYPES: [(&str, Direction); 7] = [
    ("Auto-Encoder", Direction::LowerIsBetter),
    ("Classification (CE)", Direction::HigherIsBetter),
    ("Classification (ArcFace)", Direction::HigherIsBetter),
    ("Separation", Direction::HigherIsBetter),
    ("Pre-trained", Direction::HigherIsBetter),
    ("Contrastive learning(SimCLR)", Direction::LowerIsBetter),
    ("Contrastive learning(SimSiam)", Direction::LowerIsBetter),
];

const CHECKPOINT_SELECTION_KEYS: [&str; 18] = [
    "Task_Group",
    "target_device",
    "config_id",
    "task",
    "phase",
    "trained_target",
    "backbone_name",
    "margin",
    "feature_index",
    "segment_frames_from_name",
    "frame_stack",
    "batch_size_from_name",
    "arch",
    "comp_feat",
    "lin_feat",
    "channel_size",
    "cb",
    "unsup_mode",
];

const AGG_KEYS: [&str; 15] = [
    "Task_Group",
    "config_id",
    "proxy_metric_name",
    "asd_metric_name",
    "task",
    "phase",
    "model_type",
    "unsup_mode",
    "arch",
    "comp_feat",
    "lin_feat",
    "channel_size",
    "cb",
    "backbone_name",
    "margin",
];

const PANDAS_NA: [&str; 18] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan",
];

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("invariant: the reference patterns are valid regexes")
}

/// A summary row: its cells by column name (pandas NA markers count as missing).
#[derive(Debug, Clone)]
struct Row {
    cells: HashMap<String, String>,
}

impl Row {
    /// The cell, `None` when the column is absent or the value is NA.
    fn value(&self, col: &str) -> Option<&str> {
        self.cells
            .get(col)
            .map(String::as_str)
            .filter(|v| !PANDAS_NA.contains(v))
    }

    fn has(&self, col: &str) -> bool {
        self.cells.contains_key(col)
    }

    /// `str(row.get(col, ''))`: absent → "", NA → "nan".
    fn text(&self, col: &str) -> String {
        match self.cells.get(col) {
            None => String::new(),
            Some(v) if PANDAS_NA.contains(&v.as_str()) => "nan".into(),
            Some(v) => v.clone(),
        }
    }

    fn float(&self, col: &str) -> f64 {
        self.value(col).and_then(parse_float).unwrap_or(f64::NAN)
    }

    fn set(&mut self, col: &str, value: impl Into<String>) {
        self.cells.insert(col.to_string(), value.into());
    }
}

fn parse_float(text: &str) -> Option<f64> {
    let t = text.trim();
    t.parse::<f64>()
        .ok()
        .or_else(|| match t.to_lowercase().as_str() {
            "inf" | "+inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        })
}

fn read_rows(path: &Path) -> Result<(Vec<String>, Vec<Row>), AnalysisError> {
    let shown = path.display().to_string();
    let io = |source| AnalysisError::Io {
        path: shown.clone(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(io)?;
    let header: Vec<String> = reader
        .headers()
        .map_err(io)?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(io)?;
        if record.len() != header.len() {
            let line = record.position().map_or(0, |p| p.line());
            return Err(AnalysisError::Row {
                path: shown.clone(),
                line,
                problem: format!("expected {} fields, found {}", header.len(), record.len()),
            });
        }
        let mut cells: HashMap<String, String> = header
            .iter()
            .cloned()
            .zip(record.iter().map(str::to_string))
            .collect();
        cells.insert("source_csv".into(), shown.clone());
        rows.push(Row { cells });
    }
    let mut columns = header;
    columns.push("source_csv".into());
    Ok((columns, rows))
}

fn safe_name(text: &str) -> String {
    static NON_SAFE: LazyLock<Regex> = LazyLock::new(|| re(r"[^A-Za-z0-9_.-]+"));
    let replaced = NON_SAFE
        .replace_all(&text.replace('+', "plus"), "_")
        .to_string();
    let trimmed = replaced.trim_matches('_');
    if trimmed.is_empty() {
        "model".into()
    } else {
        trimmed.to_string()
    }
}

/// `_format_key_value`: NA → "na", integral numbers without a decimal point, else a safe name.
fn format_key_value(value: Option<&str>) -> String {
    match value {
        None => "na".into(),
        Some(v) => match parse_float(v) {
            Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => {
                format!("{}", f as i64)
            }
            _ => safe_name(v),
        },
    }
}

fn first_value(row: &Row, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| row.value(n).map(str::to_string))
}

fn row_name_text(row: &Row) -> String {
    ["model_name", "model_id", "model", "source_csv"]
        .iter()
        .map(|n| row.text(n))
        .collect::<Vec<_>>()
        .join(" ")
}

fn value_or_parsed(row: &Row, column: &str, patterns: &[&str]) -> Option<String> {
    if let Some(v) = row.value(column) {
        return Some(v.to_string());
    }
    let text = row_name_text(row).to_lowercase();
    patterns
        .iter()
        .find_map(|p| re(p).captures(&text).map(|c| c[1].to_string()))
}

fn arch_from_row(row: &Row) -> Option<String> {
    if let Some(v) = first_value(row, &["arch", "backbone_name", "model_type"]) {
        return Some(v);
    }
    let text = row_name_text(row).to_lowercase();
    [
        (r"resnet\s*152|resnet152|r152", "resnet152"),
        (r"resnet\s*101|resnet101|r101", "resnet101"),
        (r"resnet\s*50|resnet50|r50", "resnet50"),
        (r"resnet\s*34|resnet34|r34", "resnet34"),
        (r"resnet\s*18|resnet18|r18", "resnet18"),
    ]
    .iter()
    .find(|(p, _)| re(p).is_match(&text))
    .map(|(_, a)| (*a).to_string())
}

fn unsup_mode_from_row(row: &Row) -> Option<String> {
    if let Some(v) = first_value(row, &["unsup_mode", "task"]) {
        return Some(v);
    }
    let text = row_name_text(row).to_lowercase();
    if text.contains("simsiam") {
        Some("simsiam".into())
    } else if text.contains("simclr") {
        Some("simclr".into())
    } else {
        None
    }
}

/// `infer_task_group`: the study's family of a summary row, `None` when unknown.
fn infer_task_group(row: &Row) -> Option<&'static str> {
    let task = row.text("task").to_lowercase();
    let phase = row.text("phase").to_lowercase();
    let model_type = row.text("model_type").to_lowercase();
    let either = |set: &[&str]| set.contains(&task.as_str()) || set.contains(&phase.as_str());
    if ["pretrained", "pretrain"].contains(&task.as_str())
        || ["pretrained", "pretrain"].contains(&model_type.as_str())
    {
        return Some("Pre-trained");
    }
    if either(&["ae"]) {
        return Some("Auto-Encoder");
    }
    if either(&["sep", "sep_direct", "sep_mask"]) {
        return Some("Separation");
    }
    if either(&["ce"]) {
        return Some("Classification (CE)");
    }
    if either(&["arcface"]) {
        return Some("Classification (ArcFace)");
    }
    if either(&["simclr"]) {
        return Some("Contrastive learning(SimCLR)");
    }
    if either(&["simsiam"]) {
        return Some("Contrastive learning(SimSiam)");
    }
    let name = ["model_name", "model_id", "model"]
        .iter()
        .find(|c| row.has(c))
        .map_or(String::new(), |c| row.text(c))
        .to_lowercase();
    let unsup_mode = row.text("unsup_mode").to_lowercase();
    static AE_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"[_\-]ae\d"));
    if model_type == "ae" || name.contains("auto-encoder") || AE_NAME.is_match(&name) {
        return Some("Auto-Encoder");
    }
    if model_type == "separation" || (name.contains("sep") && name.contains("snr")) {
        return Some("Separation");
    }
    if model_type == "classification" {
        if name.contains("arcface") || name.contains("arc") {
            return Some("Classification (ArcFace)");
        }
        if name.contains("pre") || name.contains("imagenet") {
            return Some("Pre-trained");
        }
        return Some("Classification (CE)");
    }
    if model_type == "unsup" {
        if name.contains("simsiam") || unsup_mode == "simsiam" {
            return Some("Contrastive learning(SimSiam)");
        }
        return Some("Contrastive learning(SimCLR)");
    }
    if name.contains("beat") || name.contains("ced") || name.contains("eat") {
        return Some("Pre-trained");
    }
    if name.contains("pre-trained") || name.contains("pretrained") {
        return Some("Pre-trained");
    }
    None
}

/// `infer_config_id`: the config a checkpoint belongs to, shared across machine types.
fn infer_config_id(row: &Row, group: &str) -> String {
    let key = |v: Option<String>| format_key_value(v.as_deref());
    match group {
        "Auto-Encoder" => {
            let comp = value_or_parsed(row, "comp_feat", &[r"comp(\d+)lin\d+", r"l(\d+)h\d+"]);
            let lin = value_or_parsed(row, "lin_feat", &[r"comp\d+lin(\d+)", r"l\d+h(\d+)"]);
            format!("ae_comp{}_lin{}", key(comp), key(lin))
        }
        "Separation" => {
            let cb = value_or_parsed(row, "cb", &[r"(\d+)cb"]);
            let channel = value_or_parsed(row, "channel_size", &[r"(\d+)ch"]);
            if cb.is_some() || channel.is_some() {
                format!("sep_cb{}_ch{}", key(cb), key(channel))
            } else {
                format!(
                    "sep_shared_{}",
                    key(first_value(row, &["backbone_name", "arch", "model_type"]))
                )
            }
        }
        "Classification (CE)" => format!("ce_{}", key(arch_from_row(row))),
        "Classification (ArcFace)" => {
            let margin = value_or_parsed(
                row,
                "margin",
                &[
                    r"margin[_-]?([+\-]?\d+(?:\.\d+)?)",
                    r"_m([+\-]?\d+(?:\.\d+)?)",
                ],
            );
            format!("arcface_{}_m{}", key(arch_from_row(row)), key(margin))
        }
        "Contrastive learning(SimCLR)" | "Contrastive learning(SimSiam)" => {
            format!(
                "{}_{}",
                key(unsup_mode_from_row(row)),
                key(arch_from_row(row))
            )
        }
        "Pre-trained" => format!(
            "pretrained_{}",
            safe_name(
                &first_value(row, &["model_name", "model_id", "model"])
                    .unwrap_or_else(|| "na".into())
            )
        ),
        _ => key(Some(
            first_value(row, &["model_id", "model_name"]).unwrap_or_else(|| "unknown".into()),
        )),
    }
}

const PRETRAIN_AS2M_MAP: [(&str, f64); 9] = [
    ("eatlarge", 49.5),
    ("eatbase", 48.9),
    ("eatbaseepoch30pretrain", 48.9),
    ("beatsiter3", 48.0),
    ("beatsiter3plus", 48.6),
    ("cedbase", 50.0),
    ("cedmini", 49.0),
    ("cedsmall", 49.6),
    ("cedtiny", 48.1),
];

fn lookup_pretrain_map(name: &str) -> f64 {
    static NON_ALNUM: LazyLock<Regex> = LazyLock::new(|| re(r"[^a-z0-9]+"));
    let key = NON_ALNUM
        .replace_all(&name.replace('+', "plus").to_lowercase(), "")
        .to_string();
    if let Some((_, v)) = PRETRAIN_AS2M_MAP.iter().find(|(k, _)| *k == key) {
        return *v;
    }
    let mut aliases = PRETRAIN_AS2M_MAP.to_vec();
    aliases.sort_by_key(|a| std::cmp::Reverse(a.0.len()));
    aliases
        .iter()
        .find(|(k, _)| key.contains(k))
        .map_or(f64::NAN, |(_, v)| *v)
}

/// `normalize_pretrain_summary`: turns the pretrained evaluator's `model,device,auc,pauc` table
/// into summary rows (Mahalanobis AUCs, AudioSet mAP looked up by model name).
fn normalize_pretrain(columns: &[String], rows: Vec<Row>) -> Vec<Row> {
    let has = |c: &str| columns.iter().any(|x| x == c);
    if !(has("model") && has("device") && has("auc") && has("pauc")) || has("target_device") {
        return rows;
    }
    let scoped = has("scope") && has("group");
    rows.into_iter()
        .filter(|r| {
            !scoped
                || (r.text("scope").to_lowercase() == "overall"
                    && r.text("group").to_lowercase() == "all")
        })
        .map(|mut r| {
            let model = r.text("model");
            r.set("model_id", safe_name(&model));
            r.set("model_name", model.clone());
            r.set("model_type", "pretrained");
            r.set("task", "pretrained");
            r.set("target_device", r.text("device"));
            let (auc, pauc) = (r.text("auc"), r.text("pauc"));
            r.set("mah_train_auc", auc.clone());
            r.set("mah_train_pauc", pauc.clone());
            r.set("pretrain_asd_auc", auc);
            r.set("pretrain_asd_pauc", pauc);
            if !has("pretrain_map") {
                r.set("pretrain_map", lookup_pretrain_map(&model).to_string());
            }
            if !has("mAP") {
                r.set("mAP", r.text("pretrain_map"));
            }
            r
        })
        .collect()
}

fn parse_train_loss_from_name(name: &str) -> f64 {
    static PATTERNS: LazyLock<[Regex; 3]> = LazyLock::new(|| {
        [
            re(r"(?i)(?:^|[_\-])loss([+\-]?\d+(?:\.\d+)?(?:e[+\-]?\d+)?)"),
            re(r"(?i)(?:^|[_\-])ae([+\-]?\d+(?:\.\d+)?(?:e[+\-]?\d+)?)"),
            re(r"(?i)(?:^|[_\-])sep([+\-]?\d+(?:\.\d+)?(?:e[+\-]?\d+)?)"),
        ]
    });
    for p in PATTERNS.iter() {
        if let Some(c) = p.captures(name)
            && let Some(v) = parse_float(c[1].trim_end_matches('.'))
        {
            return v;
        }
    }
    f64::NAN
}

fn mean_existing(row: &Row, columns: &[String]) -> (f64, String) {
    let (mut values, mut used) = (Vec::new(), Vec::new());
    for c in columns {
        if !row.has(c) {
            continue;
        }
        let v = row.float(c);
        if v.is_finite() {
            values.push(v);
            used.push(c.as_str());
        }
    }
    if values.is_empty() {
        return (f64::NAN, String::new());
    }
    (
        values.iter().sum::<f64>() / values.len() as f64,
        used.join("+"),
    )
}

fn first_existing(row: &Row, columns: &[&str]) -> (f64, String) {
    for c in columns {
        if !row.has(c) {
            continue;
        }
        let v = row.float(c);
        if v.is_finite() {
            return (v, (*c).to_string());
        }
    }
    (f64::NAN, String::new())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

/// `proxy_from_row`: the raw proxy value of a row and the column(s) it came from.
fn proxy_from_row(row: &Row, group: &str, o: &AuthorsOptions) -> (f64, String) {
    match group {
        "Auto-Encoder" => {
            let columns = match o.ae_proxy.as_str() {
                "test_normal_l2" => {
                    strings(&["ae_l2_test_normal_mean", "proxy_ae_l2_test_normal_mean"])
                }
                "test_anomaly_l2" => {
                    strings(&["ae_l2_test_anomaly_mean", "proxy_ae_l2_test_anomaly_mean"])
                }
                "test_mean_l2" => strings(&["ae_l2_test_mean", "proxy_ae_l2_test_mean"]),
                "train_normal_l2" => {
                    strings(&["ae_l2_train_normal_mean", "proxy_ae_l2_train_normal_mean"])
                }
                "train_mean_l2" => strings(&["ae_l2_train_mean", "proxy_ae_l2_train_mean"]),
                "test_normal_l1" => {
                    strings(&["ae_l1_test_normal_mean", "proxy_ae_l1_test_normal_mean"])
                }
                "test_mean_l1" => strings(&["ae_l1_test_mean", "proxy_ae_l1_test_mean"]),
                "train_normal_l1" => {
                    strings(&["ae_l1_train_normal_mean", "proxy_ae_l1_train_normal_mean"])
                }
                "train_mean_l1" => strings(&["ae_l1_train_mean", "proxy_ae_l1_train_mean"]),
                other => vec![other.to_string()],
            };
            mean_existing(row, &columns)
        }
        "Separation" => {
            let cols: Vec<String> = ["-5", "0", "5"]
                .iter()
                .map(|s| format!("sep_si_sdr_mean_{}_snr{s}", o.sep_proxy_env))
                .collect();
            let (v, used) = mean_existing(row, &cols);
            if v.is_finite() {
                return (v, used);
            }
            let (v, used) = mean_existing(
                row,
                &strings(&["sep_direct_l1_snr_mean", "sep_direct_l1_mean"]),
            );
            if v.is_finite() {
                (-v, format!("negative_{used}"))
            } else {
                (v, used)
            }
        }
        "Classification (CE)" | "Classification (ArcFace)" => {
            let priority: &[&str] = match o.classification_proxy.as_str() {
                "all_macro_f1" => &[
                    "clf_all_macro_f1",
                    "clf_global_macro_f1",
                    "clf_proxy_macro_f1",
                ],
                "proxy_macro_f1" => &[
                    "clf_proxy_macro_f1",
                    "clf_global_macro_f1",
                    "clf_all_macro_f1",
                ],
                "global_micro_f1" => &[
                    "clf_global_micro_f1",
                    "clf_all_micro_f1",
                    "clf_proxy_micro_f1",
                    "clf_target_total_micro_f1",
                ],
                "all_micro_f1" => &[
                    "clf_all_micro_f1",
                    "clf_global_micro_f1",
                    "clf_proxy_micro_f1",
                    "clf_target_total_micro_f1",
                ],
                "proxy_micro_f1" => &[
                    "clf_proxy_micro_f1",
                    "clf_global_micro_f1",
                    "clf_all_micro_f1",
                    "clf_target_total_micro_f1",
                ],
                "target_total_micro_f1" => &[
                    "clf_target_total_micro_f1",
                    "clf_global_micro_f1",
                    "clf_all_micro_f1",
                    "clf_proxy_micro_f1",
                ],
                _ => &[
                    "clf_global_macro_f1",
                    "clf_all_macro_f1",
                    "clf_proxy_macro_f1",
                ],
            };
            let (mut v, mut used) = first_existing(row, priority);
            if !v.is_finite() {
                (v, used) = first_existing(
                    row,
                    &[
                        "clf_global_macro_f1",
                        "clf_all_macro_f1",
                        "clf_proxy_macro_f1",
                        "clf_global_micro_f1",
                        "clf_proxy_micro_f1",
                        "clf_target_total_micro_f1",
                        "clf_all_micro_f1",
                        "clf_condition_normal_true_micro_f1",
                        "clf_condition_normal_micro_f1",
                    ],
                );
            }
            if v.is_finite() && v <= 1.5 {
                v *= 100.0;
            }
            (v, used)
        }
        "Pre-trained" => {
            let (mut v, used) =
                first_existing(row, &["pretrain_map", "pretrained_map", "mAP", "map"]);
            if v.is_finite() && v <= 1.5 {
                v *= 100.0;
            }
            (v, used)
        }
        "Contrastive learning(SimCLR)" | "Contrastive learning(SimSiam)" => {
            if o.unsup_proxy == "alignment" {
                mean_existing(row, &strings(&["unsup_alignment"]))
            } else {
                mean_existing(row, &strings(&["unsup_uniformity"]))
            }
        }
        _ => (f64::NAN, String::new()),
    }
}

/// `asd_from_row`: the ASD value (AUCs ≤ 1.5 scaled to percent) and the column used.
fn asd_from_row(row: &Row, metric: &str) -> (f64, String) {
    static SECTION_COL: LazyLock<Regex> = LazyLock::new(|| re(r"^linear_loso_auc_section_\d+$"));
    let (mut value, used) = if metric == "linear_loso_auc_section_mean" {
        let mut cols: Vec<String> = row
            .cells
            .keys()
            .filter(|c| SECTION_COL.is_match(c))
            .cloned()
            .collect();
        cols.sort();
        mean_existing(row, &cols)
    } else {
        if !row.has(metric) {
            return (f64::NAN, metric.to_string());
        }
        (row.float(metric), metric.to_string())
    };
    let lower = metric.to_lowercase();
    if value.is_finite() && lower.contains("auc") && value <= 1.5 {
        value *= 100.0;
    }
    (value, used)
}

fn contains_best(row: &Row) -> bool {
    static BEST: LazyLock<Regex> = LazyLock::new(|| re(r"(^|[_\-])best([_\-.]|$)"));
    let text = format!("{} {}", row.text("model_id"), row.text("model_name")).to_lowercase();
    BEST.is_match(&text) || text.contains("_best_") || text.contains("best_epoch")
}

/// A row after family, config, proxy and ASD mapping.
#[derive(Debug, Clone)]
struct Mapped {
    row: Row,
    proxy_raw: f64,
    asd: f64,
    train_loss: f64,
    epoch: f64,
}

impl Mapped {
    fn key(&self, columns: &[&str]) -> Vec<Option<String>> {
        columns
            .iter()
            .map(|c| self.row.value(c).map(str::to_string))
            .collect()
    }
}

/// Sorts by (train loss, epoch) ascending with NaN last, stably, as `sort_values(na_position="last")`.
fn sort_by_loss(candidates: &mut [&Mapped]) {
    let key = |v: f64| if v.is_nan() { (1u8, 0.0) } else { (0u8, v) };
    candidates.sort_by(|a, b| {
        let (ka, kb) = (
            (key(a.train_loss), key(a.epoch)),
            (key(b.train_loss), key(b.epoch)),
        );
        ka.0.0
            .cmp(&kb.0.0)
            .then(ka.0.1.total_cmp(&kb.0.1))
            .then(ka.1.0.cmp(&kb.1.0))
            .then(ka.1.1.total_cmp(&kb.1.1))
    });
}

/// `select_one_checkpoint(policy="best_or_min_loss")`; `None` when the group cannot choose.
fn select_checkpoint<'a>(group: &[&'a Mapped]) -> Option<&'a Mapped> {
    let mut best: Vec<&Mapped> = group
        .iter()
        .copied()
        .filter(|m| contains_best(&m.row))
        .collect();
    if !best.is_empty() {
        sort_by_loss(&mut best);
        return Some(best[0]);
    }
    let mut with_loss: Vec<&Mapped> = group
        .iter()
        .copied()
        .filter(|m| m.train_loss.is_finite())
        .collect();
    if with_loss.is_empty() {
        return (group.len() == 1).then(|| group[0]);
    }
    sort_by_loss(&mut with_loss);
    Some(with_loss[0])
}

/// The aggregated (family, proxy quality, ASD) points of one ASD metric, as the reference
/// `proxy_correlation_input_<metric>.csv` holds them.
pub fn aggregated_points(
    path: &Path,
    metric: &str,
    options: &AuthorsOptions,
) -> Result<Vec<(String, f64, f64)>, AnalysisError> {
    let shown = path.display().to_string();
    let (columns, rows) = read_rows(path)?;
    let rows = normalize_pretrain(&columns, rows);
    let mut mapped = Vec::new();
    for mut row in rows {
        let Some(group) = infer_task_group(&row) else {
            continue;
        };
        let config_id = infer_config_id(&row, group);
        row.set("Task_Group", group);
        row.set("config_id", config_id);
        if let Some(devices) = &options.devices {
            let device = row.text("target_device").to_lowercase();
            if !devices.iter().any(|d| d.to_lowercase() == device) {
                continue;
            }
        }
        let (proxy_raw, proxy_name) = proxy_from_row(&row, group, options);
        let (asd, asd_name) = asd_from_row(&row, metric);
        row.set("proxy_metric_name", proxy_name);
        row.set("asd_metric_name", asd_name);
        if !proxy_raw.is_finite() || !asd.is_finite() {
            continue;
        }
        let name_source = ["model_name", "model_id"]
            .iter()
            .find(|c| row.has(c))
            .map_or(String::new(), |c| row.text(c));
        let loss_column = row.float("loss_from_name");
        let train_loss = if loss_column.is_nan() {
            parse_train_loss_from_name(&name_source)
        } else {
            loss_column
        };
        let epoch = row.float("epoch_from_name");
        mapped.push(Mapped {
            row,
            proxy_raw,
            asd,
            train_loss,
            epoch,
        });
    }
    if mapped.is_empty() {
        return Err(AnalysisError::Empty(format!(
            "{shown}: no row has both a proxy value and `{metric}` after family and metric mapping"
        )));
    }
    let present = |keys: &[&'static str]| -> Vec<&'static str> {
        keys.iter()
            .copied()
            .filter(|k| mapped.iter().any(|m| m.row.has(k)))
            .collect()
    };
    let selection_keys = present(&CHECKPOINT_SELECTION_KEYS);
    let selected: Vec<Mapped> = super::ordered_groups(mapped.iter(), |m| m.key(&selection_keys))
        .iter()
        .filter_map(|g| select_checkpoint(g).cloned())
        .collect();
    let agg_keys = present(&AGG_KEYS);
    let direction = |family: &str| {
        METRIC_TYPES
            .iter()
            .find(|(f, _)| *f == family)
            .map_or(Direction::HigherIsBetter, |(_, d)| *d)
    };
    Ok(super::ordered_groups(selected.iter(), |m| m.key(&agg_keys))
        .iter()
        .map(|g| {
            let family = g[0].row.text("Task_Group");
            let sign = if direction(&family) == Direction::LowerIsBetter {
                -1.0
            } else {
                1.0
            };
            let n = g.len() as f64;
            let quality = g.iter().map(|m| sign * m.proxy_raw).sum::<f64>() / n;
            let asd = g.iter().map(|m| m.asd).sum::<f64>() / n;
            (family, quality, asd)
        })
        .collect())
}

/// Runs the reference analysis on a `results_summary.csv` and returns its rows (ASD metrics
/// in option order, families sorted, `All` first when requested), q = BH over non-`All` rows.
pub fn analyze_authors_summary(
    path: &Path,
    options: &AuthorsOptions,
    settings: &TestSettings,
) -> Result<Vec<AuthorsRow>, AnalysisError> {
    let mut rows = Vec::new();
    for metric in &options.asd_metrics {
        let points = aggregated_points(path, metric, options)?;
        let mut families: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for (family, q, a) in &points {
            let e = families.entry(family.as_str()).or_default();
            e.0.push(*q);
            e.1.push(*a);
        }
        let mut groups: Vec<(&str, Vec<f64>, Vec<f64>)> = Vec::new();
        if options.include_all_group {
            groups.push((
                "All",
                points.iter().map(|p| p.1).collect(),
                points.iter().map(|p| p.2).collect(),
            ));
        }
        groups.extend(families.into_iter().map(|(f, (x, y))| (f, x, y)));
        for (family, x, y) in groups {
            let t = test_pair(family, metric, &x, &y, settings)?;
            rows.push(AuthorsRow {
                family: family.to_string(),
                asd_metric: metric.clone(),
                n: x.len(),
                pearson_r: t.pearson_r,
                pearson_p: t.pearson_p,
                spearman_rho: t.spearman_rho,
                spearman_p: t.spearman_p,
                q: f64::NAN,
            });
        }
    }
    let in_family: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].family != "All")
        .collect();
    let p: Vec<f64> = in_family.iter().map(|&i| rows[i].spearman_p).collect();
    for (&i, q) in in_family.iter().zip(benjamini_hochberg(&p)) {
        rows[i].q = q;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> Row {
        Row {
            cells: pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    #[test]
    fn families_are_inferred_from_task_phase_and_names() {
        assert_eq!(
            infer_task_group(&row(&[("task", "ae")])),
            Some("Auto-Encoder")
        );
        assert_eq!(
            infer_task_group(&row(&[("phase", "arcface")])),
            Some("Classification (ArcFace)")
        );
        assert_eq!(
            infer_task_group(&row(&[
                ("model_type", "unsup"),
                ("model_name", "x_simsiam")
            ])),
            Some("Contrastive learning(SimSiam)")
        );
        assert_eq!(
            infer_task_group(&row(&[("model_name", "pump_sep_snr0")])),
            Some("Separation")
        );
        assert_eq!(infer_task_group(&row(&[("model_name", "mystery")])), None);
    }

    #[test]
    fn config_ids_follow_the_reference_formats() {
        let ae = row(&[("comp_feat", "64.0"), ("lin_feat", "8")]);
        assert_eq!(infer_config_id(&ae, "Auto-Encoder"), "ae_comp64_lin8");
        let ae_named = row(&[("model_name", "pump_comp32lin4_best")]);
        assert_eq!(infer_config_id(&ae_named, "Auto-Encoder"), "ae_comp32_lin4");
        let arc = row(&[("arch", "resnet18"), ("margin", "0.5")]);
        assert_eq!(
            infer_config_id(&arc, "Classification (ArcFace)"),
            "arcface_resnet18_m0.5"
        );
        let sep = row(&[("cb", ""), ("channel_size", "")]);
        assert_eq!(infer_config_id(&sep, "Separation"), "sep_shared_na");
    }

    #[test]
    fn best_checkpoints_win_then_the_lowest_loss() {
        let mk = |name: &str, loss: f64| Mapped {
            row: row(&[("model_id", name)]),
            proxy_raw: 1.0,
            asd: 1.0,
            train_loss: loss,
            epoch: f64::NAN,
        };
        let (a, b, c) = (
            mk("m_epoch10", 0.1),
            mk("m_best.pth", 0.5),
            mk("m_epoch20", 0.05),
        );
        assert_eq!(
            select_checkpoint(&[&a, &b, &c])
                .unwrap()
                .row
                .text("model_id"),
            "m_best.pth"
        );
        assert_eq!(
            select_checkpoint(&[&a, &c]).unwrap().row.text("model_id"),
            "m_epoch20"
        );
        let (d, e) = (mk("x", f64::NAN), mk("y", f64::NAN));
        assert!(select_checkpoint(&[&d, &e]).is_none());
        assert_eq!(
            parse_train_loss_from_name("pump_epoch185_loss0.292_sep0.292.pth"),
            0.292
        );
    }

    #[test]
    fn auc_fractions_become_percent_and_pretrained_maps_are_looked_up() {
        let r = row(&[("mah_train_auc", "0.75")]);
        assert_eq!(asd_from_row(&r, "mah_train_auc").0, 75.0);
        assert_eq!(lookup_pretrain_map("BEATs_iter3+"), 48.6);
        assert!(lookup_pretrain_map("unknown").is_nan());
    }
}
