//! `asdsweep run`: a whole sweep on one machine. The coordinator runs in this
//! process on SQLite; N worker processes (this same binary, `asdsweep worker`)
//! talk to it over loopback gRPC exactly as remote workers would. The database
//! lives in the output directory, so running the same command again resumes
//! the sweep and does only the work that is left.

use crate::entity::{job, sweep};
use crate::ids::{SweepId, WorkerId};
use crate::queue::JobState;
use crate::report::{self, ReportSummary};
use crate::server::{Coordinator, CoordinatorConfig};
use crate::store::{Store, SweepProgress, now_ms};
use crate::{Error, Result};
use asdsweep_shared::dataset;
use asdsweep_shared::spec::{DatasetSpec, Spec};
use asdsweep_shared::synth::{self, Machine, SynthConfig};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// How `run` shows progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars when stderr is a terminal, log lines otherwise.
    Auto,
    /// Plain log lines (CI, files).
    Lines,
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Local worker processes.
    pub workers: usize,
    /// Database URL; default `sqlite://<out>/asdsweep.db?mode=rwc`.
    pub db_url: Option<String>,
    /// The sweep's output directory (`out/<sweep name>`).
    pub out_dir: PathBuf,
    /// Dataset root handed to the workers.
    pub data_dir: PathBuf,
    /// The `asdsweep` binary to start workers with.
    pub worker_exe: PathBuf,
    /// Extra arguments for every worker (e.g. `--device cpu`).
    pub worker_args: Vec<String>,
    /// How often workers heartbeat (and so how fresh the progress lines are).
    pub heartbeat: Duration,
    /// Progress display.
    pub progress: ProgressMode,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The sweep as stored.
    pub sweep: sweep::Model,
    /// Final counts.
    pub progress: SweepProgress,
    /// True when the run was stopped (Ctrl-C) before the sweep finished.
    pub interrupted: bool,
    /// True when the sweep had finished before this run started.
    pub already_finished: bool,
    /// The files written (none when the run was stopped early).
    pub report: Option<ReportSummary>,
}

/// Runs a sweep to its end (or until `stop`): starts the coordinator, launches
/// the spec (idempotent: a relaunch is the same sweep), starts the workers,
/// shows progress, then stops the workers (they hand their leases back) and
/// the coordinator.
pub async fn run(cfg: RunConfig, spec: &Spec, stop: CancellationToken) -> Result<RunOutcome> {
    if spec.name.chars().all(|c| c == '.') {
        return Err(Error::InvalidArgument(format!(
            "sweep name \"{}\" cannot name an output directory",
            spec.name
        )));
    }
    std::fs::create_dir_all(cfg.out_dir.join("logs")).map_err(|source| Error::Io {
        path: cfg.out_dir.display().to_string(),
        source,
    })?;
    let db_url = cfg.db_url.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            cfg.out_dir.join("asdsweep.db").display()
        )
    });
    let mut ccfg = CoordinatorConfig::new(db_url);
    ccfg.listen = "127.0.0.1:0".parse().expect("a literal socket address");
    ccfg.artifact_dir = cfg.out_dir.join("artifacts");
    ccfg.heartbeat_interval = cfg.heartbeat;
    ccfg.reap_interval = Duration::from_millis(500);
    let coordinator = Coordinator::start(ccfg).await?;
    let outcome = drive(&cfg, spec, &coordinator, stop).await;
    coordinator.shutdown().await;
    outcome
}

async fn drive(
    cfg: &RunConfig,
    spec: &Spec,
    coordinator: &Coordinator,
    stop: CancellationToken,
) -> Result<RunOutcome> {
    let store = coordinator.store();
    // Stored as run: with the data it pinned.
    let text = toml::to_string(spec)
        .map_err(|e| Error::InvalidArgument(format!("spec cannot be written back as TOML: {e}")))?;
    let launched = store.launch(spec, &text, false).await?;
    let sweep = launched.sweep;
    let before = store.progress(&sweep).await?;
    if before.is_finished() {
        let report = Some(report::write_report(store, &sweep, &cfg.out_dir).await?);
        return Ok(RunOutcome {
            sweep,
            progress: before,
            interrupted: false,
            already_finished: true,
            report,
        });
    }
    if !launched.created {
        tracing::info!(sweep = %sweep.name, left = before.total() - done(&before), "resuming the sweep");
    }
    let mut workers = Vec::with_capacity(cfg.workers);
    for i in 0..cfg.workers {
        workers.push(spawn_worker(cfg, &coordinator.url(), i)?);
    }
    let mut display = Display::new(cfg.progress, before.total());
    let started = Instant::now();
    let mut interrupted = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let progress = loop {
        tokio::select! {
            _ = stop.cancelled() => { interrupted = true; }
            _ = tick.tick() => {}
        }
        let progress = store.progress(&sweep).await?;
        display.update(
            &progress,
            &running(store, sweep.id).await?,
            started.elapsed(),
        );
        if interrupted || progress.is_finished() {
            break progress;
        }
        if let Some(i) = exited(&mut workers) {
            display.finish();
            stop_workers(&mut workers).await;
            return Err(Error::InvalidArgument(format!(
                "local worker {i} exited before the sweep finished; its log is {}",
                log_path(cfg, i).display()
            )));
        }
    };
    display.finish();
    stop_workers(&mut workers).await;
    if interrupted {
        // Jobs handed back by the stopped workers are pending again: count them so.
        let progress = store.progress(&sweep).await?;
        return Ok(RunOutcome {
            sweep,
            progress,
            interrupted,
            already_finished: false,
            report: None,
        });
    }
    let report = Some(report::write_report(store, &sweep, &cfg.out_dir).await?);
    Ok(RunOutcome {
        sweep,
        progress,
        interrupted,
        already_finished: false,
        report,
    })
}

/// What a finished (or stopped) run prints.
pub fn summary(out: &RunOutcome) -> String {
    use std::fmt::Write;
    let p = &out.progress;
    let mut text = String::new();
    let state = if out.interrupted {
        "stopped"
    } else if out.already_finished {
        "already finished"
    } else {
        "finished"
    };
    let counts: Vec<String> = p
        .counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    let _ = writeln!(
        text,
        "sweep {} \"{}\" {state}: {} jobs: {}",
        out.sweep.id,
        out.sweep.name,
        p.total(),
        counts.join(", ")
    );
    match &out.report {
        Some(report) => {
            let _ = write!(text, "{report}");
        }
        None => {
            for (key, attempts, error) in &p.dead {
                let _ = writeln!(text, "  dead: {key} after {attempts} attempts: {error}");
            }
        }
    }
    text
}

/// Jobs in a final state.
fn done(p: &SweepProgress) -> u64 {
    p.counts
        .iter()
        .filter(|(s, _)| s.is_final())
        .map(|(_, n)| n)
        .sum()
}

fn log_path(cfg: &RunConfig, i: usize) -> PathBuf {
    cfg.out_dir.join("logs").join(format!("worker-{i}.log"))
}

fn spawn_worker(cfg: &RunConfig, url: &str, i: usize) -> Result<Child> {
    let log = log_path(cfg, i);
    let io = |source| Error::Io {
        path: log.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io)?;
    let err = file.try_clone().map_err(io)?;
    Command::new(&cfg.worker_exe)
        .arg("worker")
        .args([
            "--coordinator",
            url,
            "--name",
            &format!("local-{i}"),
            "--patience-s",
            "30",
        ])
        .arg("--data")
        .arg(&cfg.data_dir)
        .args(&cfg.worker_args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        // The whole process group gets a terminal's Ctrl-C; we stop the workers ourselves.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Io {
            path: cfg.worker_exe.display().to_string(),
            source,
        })
}

/// The index of a worker that has exited, if any.
fn exited(workers: &mut [Child]) -> Option<usize> {
    workers
        .iter_mut()
        .position(|w| matches!(w.try_wait(), Ok(Some(_))))
}

/// Asks every worker to stop (SIGTERM: each hands its lease back) and waits;
/// a worker still running after the grace period is killed (its lease expires).
async fn stop_workers(workers: &mut [Child]) {
    for w in workers.iter() {
        if let Some(pid) = w.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for w in workers.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(20), w.wait())
            .await
            .is_err()
        {
            tracing::warn!(pid = ?w.id(), "worker did not stop within 20 s; killing it");
            let _ = w.kill().await;
        }
    }
}

/// What a running job reports, by worker name.
#[derive(Debug, Clone, PartialEq)]
struct Running {
    worker: String,
    job: String,
    progress: Option<serde_json::Value>,
}

async fn running(store: &Store, sweep_id: SweepId) -> Result<Vec<Running>> {
    let db = store.connection();
    let jobs = job::Entity::find()
        .filter(job::Column::SweepId.eq(sweep_id))
        .filter(job::Column::State.eq(JobState::Leased))
        .all(db)
        .await?;
    let names: BTreeMap<WorkerId, String> = crate::entity::worker::Entity::find()
        .filter(crate::entity::worker::Column::LastSeenMs.gte(now_ms() - 3_600_000))
        .all(db)
        .await?
        .into_iter()
        .map(|w| (w.id, w.name))
        .collect();
    let mut out: Vec<Running> = jobs
        .into_iter()
        .map(|j| Running {
            worker: j
                .worker_id
                .as_ref()
                .and_then(|w| names.get(w).cloned())
                .unwrap_or_else(|| "?".into()),
            job: j.job_key,
            progress: j.progress,
        })
        .collect();
    out.sort_by(|a, b| a.worker.cmp(&b.worker));
    Ok(out)
}

/// `epoch 3/10 loss 0.0123`, from a job's progress JSON.
fn describe(progress: Option<&serde_json::Value>) -> String {
    let Some(p) = progress else {
        return "starting".into();
    };
    let mut parts = Vec::new();
    if let (Some(e), Some(n)) = (p["epoch"].as_u64(), p["epochs"].as_u64())
        && n > 0
    {
        parts.push(format!("epoch {e}/{n}"));
    }
    if let Some(l) = p["loss"].as_f64() {
        parts.push(format!("loss {l:.4}"));
    }
    if let Some(m) = p["message"].as_str().filter(|m| !m.is_empty()) {
        parts.push(m.to_owned());
    }
    if parts.is_empty() {
        "running".into()
    } else {
        parts.join(" · ")
    }
}

/// `3 leased, 12 pending, 1 dead`.
fn counts_line(p: &SweepProgress) -> String {
    let parts: Vec<String> = p
        .counts
        .iter()
        .filter(|(s, n)| *n > 0 && *s != JobState::Succeeded)
        .map(|(s, n)| format!("{n} {}", s.as_str()))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        parts.join(", ")
    }
}

/// Progress bars on a terminal, a line every few seconds elsewhere.
struct Display {
    bars: Option<(MultiProgress, ProgressBar, Vec<ProgressBar>)>,
    last_line: Option<Instant>,
}

impl Display {
    fn new(mode: ProgressMode, total: u64) -> Display {
        let tty =
            mode == ProgressMode::Auto && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bars = tty.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            let main = multi.add(ProgressBar::new(total));
            main.set_style(
                ProgressStyle::with_template("{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} jobs · {per_sec} · ETA {eta} · {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            main.set_prefix("sweep");
            (multi, main, Vec::new())
        });
        Display {
            bars,
            last_line: None,
        }
    }

    fn update(&mut self, p: &SweepProgress, running: &[Running], elapsed: Duration) {
        match &mut self.bars {
            Some((multi, main, lines)) => {
                main.set_length(p.total());
                main.set_position(done(p));
                let counts = counts_line(p);
                main.set_message(if counts.is_empty() {
                    "all done".to_owned()
                } else {
                    counts
                });
                while lines.len() < running.len() {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} {msg}")
                            .expect("a valid template"),
                    );
                    lines.push(bar);
                }
                for (i, bar) in lines.iter().enumerate() {
                    match running.get(i) {
                        Some(r) => {
                            bar.set_message(format!(
                                "{}: {} · {}",
                                r.worker,
                                r.job,
                                describe(r.progress.as_ref())
                            ));
                            bar.tick();
                        }
                        None => bar.set_message(String::new()),
                    }
                }
            }
            None => {
                let due = self
                    .last_line
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
                    || p.is_finished();
                if !due {
                    return;
                }
                self.last_line = Some(Instant::now());
                let mut line = format!(
                    "[{:>6.0}s] {}/{} jobs done",
                    elapsed.as_secs_f64(),
                    done(p),
                    p.total()
                );
                let counts = counts_line(p);
                if !counts.is_empty() {
                    line.push_str(&format!(" ({counts})"));
                }
                if let Some(eta) = p.eta_s.filter(|e| *e > 0.0) {
                    line.push_str(&format!(", ETA {:.0}s", eta));
                }
                eprintln!("{line}");
                for r in running {
                    eprintln!(
                        "    {}: {} · {}",
                        r.worker,
                        r.job,
                        describe(r.progress.as_ref())
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Some((multi, main, lines)) = &self.bars {
            for bar in lines {
                bar.finish_and_clear();
            }
            main.finish();
            let _ = multi.clear();
        }
    }
}

/// Finds or makes the data a local run reads, and pins it in `spec` before the
/// spec is launched, so that every job carries the data's fingerprint.
///
/// A spec with a `[dataset]` reads it under `data_root`; a path that does not
/// exist there is an error naming it. A spec without one gets the synthetic data
/// set of its `[synth]` settings (defaults if absent) for its `devices`, generated
/// once under `cache_root/synth-<hash of the settings>` and reused by later runs.
/// Returns the root to hand the workers (`asdsweep worker --data`).
pub fn prepare_data(spec: &mut Spec, data_root: &Path, cache_root: &Path) -> Result<PathBuf> {
    if let Some(d) = &spec.dataset {
        let dir = data_root.join(&d.path);
        if !dir.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "dataset.path \"{}\" does not exist under the data root {} (looked for {}); give the root with --data",
                d.path,
                data_root.display(),
                dir.display()
            )));
        }
        return Ok(data_root.to_path_buf());
    }
    let s = spec.synth.clone().unwrap_or_default();
    let devices = spec
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            d.parse::<Machine>().map_err(|_| {
                Error::InvalidArgument(format!(
                    "devices[{i}] is \"{d}\": without a [dataset], asdsweep run synthesises the data, and the \
                     synthetic machine types are {}",
                    Machine::ALL.map(Machine::name).join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let cfg = SynthConfig {
        devices,
        sections: s.sections,
        train: s.train,
        test: s.test,
        seconds: s.seconds,
        seed: s.seed,
        sample_rate: s.sample_rate,
    };
    cfg.validate()
        .map_err(|e| Error::InvalidArgument(format!("[synth]: {e}")))?;
    let dir = synth_cache_dir(cache_root, &cfg);
    // `synth.json` is written last: its presence marks a complete data set.
    if !dir.join("synth.json").is_file() {
        let partial = dir.with_extension("partial");
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Io { path, source }
        };
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        eprintln!(
            "synthesising {} clips into {}",
            cfg.n_clips(),
            dir.display()
        );
        let bar = ProgressBar::new(cfg.n_clips() as u64);
        bar.set_style(
            ProgressStyle::with_template("synth [{bar:30}] {pos}/{len} clips · ETA {eta}")
                .expect("a valid template"),
        );
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        synth::generate(&cfg, &partial, &|| bar.inc(1))
            .map_err(|e| Error::InvalidArgument(format!("synthesising data: {e}")))?;
        bar.finish_and_clear();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::rename(&partial, &dir).map_err(io(&dir))?;
    }
    let manifest = dataset::scan(&dir, None)
        .map_err(|e| Error::InvalidArgument(format!("synthetic data in {}: {e}", dir.display())))?;
    spec.dataset = Some(DatasetSpec {
        fingerprint: Some(manifest.fingerprint()),
        ..DatasetSpec::default()
    });
    Ok(dir)
}

/// Where `run` caches a synthesised data set: `<cache root>/synth-<hash of its settings>`.
fn synth_cache_dir(cache_root: &Path, settings: &impl serde::Serialize) -> PathBuf {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(settings).expect("settings serialise to JSON");
    cache_root.join(format!(
        "synth-{}",
        &hex::encode(Sha256::digest(json))[..12]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_name_epoch_loss_and_message() {
        let p = serde_json::json!({"epoch": 3, "epochs": 10, "loss": 0.012345, "message": ""});
        assert_eq!(describe(Some(&p)), "epoch 3/10 · loss 0.0123");
        assert_eq!(describe(None), "starting");
        assert_eq!(
            describe(Some(
                &serde_json::json!({"epoch": 0, "epochs": 0, "loss": null, "message": "embedding"})
            )),
            "embedding"
        );
    }

    #[test]
    fn the_synth_cache_follows_the_settings() {
        let a = synth_cache_dir(
            Path::new("data"),
            &serde_json::json!({"devices": ["fan"], "seed": 1}),
        );
        let b = synth_cache_dir(
            Path::new("data"),
            &serde_json::json!({"devices": ["fan"], "seed": 1}),
        );
        let c = synth_cache_dir(
            Path::new("data"),
            &serde_json::json!({"devices": ["fan"], "seed": 2}),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(
            a.starts_with("data")
                && a.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("synth-")
        );
    }
}
