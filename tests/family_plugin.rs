//! The family contract, proved from outside: a family that exists only in this test
//! ("echo": nothing to train, clip embeddings = mean log-mel, two proxy metrics) is
//! declared to the spec parser, expanded, leased, run through the job skeleton by a real
//! worker process (this test binary, started again as a worker) and reported by the CLI,
//! without an edit anywhere else in the code.

mod common;
mod processes;

use asdsweep_shared::dataset::Entry;
use asdsweep_shared::family::{
    self, Declaration, Direction, Family, GridContext, Kind, ProxyMetric, params_json,
};
use asdsweep_shared::probe::report::{ClipEmbedding, Split};
use asdsweep_shared::spec::{Backend, DatasetSpec, Spec, SpecError, TrainingScope};
use asdsweep_shared::synth::{self, Machine, SynthConfig};
use asdsweep_worker::JobError;
use asdsweep_worker::families::skeleton::{EvalInput, Evaluate, Measured, Pretrained, Untrained};
use burn::tensor::Device;
use common::{Harness, wait_until, worker_config};
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const KIND: Kind = Kind::new("echo");
const LOUDNESS: ProxyMetric = ProxyMetric {
    name: "echo_loudness",
    direction: Direction::HigherIsBetter,
};
const SPREAD: ProxyMetric = ProxyMetric {
    name: "echo_spread",
    direction: Direction::LowerIsBetter,
};

/// The spec section: `[[family]] kind = "echo"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Echo {
    configs: Vec<EchoConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoConfig {
    name: String,
    /// Mel bands of the embedding.
    n_mels: usize,
}

/// A job's parameters: what the grid writes and the worker reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoParams {
    n_mels: usize,
    dataset: DatasetSpec,
}

impl Family for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    fn priority(&self) -> i32 {
        0
    }
    fn backends(&self) -> &[Backend] {
        &[]
    }
    fn training(&self) -> TrainingScope {
        TrainingScope::None
    }
    fn proxies(&self) -> Vec<ProxyMetric> {
        vec![LOUDNESS, SPREAD]
    }
    fn config_names(&self) -> Vec<&str> {
        self.configs.iter().map(|c| c.name.as_str()).collect()
    }
    fn validate(&self, key: &str) -> Result<(), SpecError> {
        match self.configs.iter().position(|c| c.n_mels < 8) {
            Some(j) => Err(SpecError::Invalid {
                key: format!("{key}.configs[{j}].n_mels"),
                problem: "is below 8".into(),
            }),
            None => Ok(()),
        }
    }
    fn jobs(&self, grid: &GridContext<'_>) -> Vec<(String, serde_json::Value)> {
        self.configs
            .iter()
            .map(|c| {
                let p = EchoParams {
                    n_mels: c.n_mels,
                    dataset: grid.dataset.clone(),
                };
                (c.name.clone(), params_json(&p))
            })
            .collect()
    }
}

/// The worker's side: embeds each clip as its mean log-mel frame.
#[derive(Clone)]
struct EchoHooks;

impl Evaluate for EchoHooks {
    type Params = EchoParams;
    type Model = ();
    const KIND: Kind = KIND;

    fn dataset(p: &EchoParams) -> &DatasetSpec {
        &p.dataset
    }
    fn proxies(&self, _: &EchoParams) -> Vec<ProxyMetric> {
        vec![LOUDNESS, SPREAD]
    }
    fn embed(
        &self,
        input: &EvalInput<'_, EchoParams>,
        _: &(),
        set: &[&Entry],
    ) -> Result<Vec<Array2<f64>>, JobError> {
        let logmels = input
            .data
            .logmels(input.ds, set, input.params.n_mels)
            .map_err(|e| JobError::permanent(e.to_string()))?;
        Ok(logmels
            .iter()
            .map(|lm| {
                let mean = lm.mean_axis(Axis(1)).expect("frames").mapv(f64::from);
                mean.insert_axis(Axis(0))
            })
            .collect())
    }
    fn measure(
        &self,
        _: &EvalInput<'_, EchoParams>,
        _: &(),
        clips: &[ClipEmbedding],
    ) -> Vec<Measured> {
        let test: Vec<f64> = clips
            .iter()
            .filter(|c| c.entry.split == Split::Test)
            .map(|c| c.rows.mean().unwrap_or(f64::NAN))
            .collect();
        let n = test.len() as f64;
        let mean = test.iter().sum::<f64>() / n;
        let sd = (test.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        vec![(LOUDNESS, Ok(mean)), (SPREAD, Ok(sd))]
    }
}

impl Pretrained for EchoHooks {
    fn load(&self, _: &EchoParams, _: &Device) -> Result<(), String> {
        Ok(())
    }
}

const COORDINATOR: &str = "ASDSWEEP_ECHO_COORDINATOR";
const DATA: &str = "ASDSWEEP_ECHO_DATA";

/// The worker process the plugin test starts: the built-in kinds plus echo.
#[test]
#[ignore = "entry point of the worker process that echo_family_runs_end_to_end starts"]
fn echo_worker_process() {
    let (Ok(url), Ok(data)) = (std::env::var(COORDINATOR), std::env::var(DATA)) else {
        panic!("started without {COORDINATOR} and {DATA}");
    };
    let mut cfg = worker_config(&url, "echo-worker");
    cfg.data_root = Some(data.into());
    let registry = asdsweep_worker::families::builtin().with(Untrained(EchoHooks));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let summary = rt
        .block_on(asdsweep_worker::run_worker(
            cfg,
            registry,
            tokio_util::sync::CancellationToken::new(),
        ))
        .expect("worker runs");
    println!("echo worker: {summary:?}");
}

fn dataset(root: &Path) {
    let cfg = SynthConfig {
        devices: vec![Machine::Fan, Machine::Pump],
        sections: 2,
        train: 4,
        test: 2,
        seconds: 0.5,
        ..SynthConfig::default()
    };
    synth::generate(&cfg, &root.join("d"), &|| {}).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_family_runs_end_to_end() {
    family::register(Declaration::of::<Echo>(KIND));
    let spec_text = r#"
        version = 1
        name = "echo-sweep"
        devices = ["fan", "pump"]
        [dataset]
        path = "d"
        [[family]]
        kind = "echo"
        configs = [{ name = "m16", n_mels = 16 }, { name = "m32", n_mels = 32 }]
    "#;
    let bad = Spec::from_toml(&spec_text.replace("n_mels = 16", "n_mels = 4")).unwrap_err();
    assert!(
        bad.to_string().contains("family[0].configs[0].n_mels"),
        "{bad}"
    );
    let spec = Spec::from_toml(spec_text).unwrap();
    assert_eq!(spec.families[0].kind(), KIND);
    assert_eq!(spec.families[0].proxies(), [LOUDNESS, SPREAD]);

    let h = Harness::sqlite();
    dataset(h.dir.path());
    let coord = h.coordinator().await;
    let launched = coord.store().launch(&spec, spec_text, false).await.unwrap();
    assert!(launched.created);

    let worker = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "echo_worker_process", "--ignored", "--nocapture"])
        .env(COORDINATOR, coord.url())
        .env(DATA, h.dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut worker = processes::Proc(worker);
    let store = coord.store().clone();
    let sweep_id = launched.sweep.id;
    wait_until(Duration::from_secs(120), "the echo jobs to finish", || {
        let store = store.clone();
        async move {
            let rows = store.results(sweep_id).await.unwrap();
            rows.iter().all(|(_, r)| r.is_some())
        }
    })
    .await;
    let status = worker.0.wait().unwrap();
    assert!(status.success(), "the worker process failed: {status}");

    let addr = coord.url();
    let rows = tokio::task::spawn_blocking(move || processes::results(&addr, "echo-sweep"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4, "2 configs x 2 machine types: {rows:?}");
    for row in &rows {
        assert_eq!(row["state"], "succeeded", "{row}");
        assert_eq!(row["proxy_metric"], "echo_loudness", "{row}");
        assert!(
            row["proxy_value"].as_f64().is_some_and(f64::is_finite),
            "{row}"
        );
        assert_eq!(row["proxy_direction"], "higher_is_better", "{row}");
        let spread = &row["metrics"]["echo_spread"];
        assert_eq!(spread["direction"], "lower_is_better", "{row}");
        assert!(spread["value"].as_f64().is_some_and(|v| v >= 0.0), "{row}");
        assert!(row["md_auc"].as_f64().is_some(), "the probes ran: {row}");
    }
    // The further proxy can be correlated in place of the main one.
    let addr = coord.url();
    let out = tokio::task::spawn_blocking(move || {
        processes::asdsweep(&[
            "correlations",
            "echo-sweep",
            "--proxy",
            "echo_spread",
            "--format",
            "json",
            "--coordinator",
            &addr,
        ])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", processes::text(&out.stderr));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["proxy"], "echo_spread", "{c}");
    coord.shutdown().await;
}
