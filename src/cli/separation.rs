//! `asdsweep separate` and `asdsweep mix`: listen to what a separation checkpoint does.
//!
//! Each only parses arguments, calls the worker's separation family and `asdsweep_shared`,
//! and writes a WAV.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use asdsweep_coordinator::artifact::{ArtifactStore, check_sha256};
use asdsweep_shared::audio::{decode_wav_file_at, write_wav_pcm16};
use asdsweep_shared::metrics::proxy::si_sdr_f32;
use asdsweep_shared::mixture::{crop_or_pad, level_db, mix};
use asdsweep_worker::families::separation::job::{SAMPLE_RATE, separate_with_checkpoint};

/// `asdsweep separate`: a mixture through a trained separator.
#[derive(Debug, clap::Args)]
pub struct SeparateArgs {
    /// The checkpoint: a file (as `train` jobs upload them), or the sha256 a result's
    /// `provenance.checkpoint` names, looked up in `--artifacts`.
    #[arg(long)]
    pub checkpoint: String,
    /// The coordinator's artifact directory, for a sha256 (`asdsweep run` keeps it in OUT/<sweep>/artifacts).
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
    /// The mixture (WAV; mono or the mean of its channels; resampled to 16 kHz if needed).
    pub mixture: PathBuf,
    /// Where to write the estimated target (16-bit WAV at 16 kHz, clipped to [-1, 1]).
    #[arg(long)]
    pub out: PathBuf,
    /// The clean target, if known: prints the SI-SDR of the mixture and of the estimate against it.
    #[arg(long)]
    pub reference: Option<PathBuf>,
}

/// `asdsweep mix`: a target and an interferer mixed at an SNR, as the family trains.
#[derive(Debug, clap::Args)]
pub struct MixArgs {
    /// The target (WAV).
    pub target: PathBuf,
    /// The interferer (WAV), scaled so that level(target) − level(interferer) is the SNR.
    pub interferer: PathBuf,
    /// Signal-to-noise ratio in dB (levels as 20·log10(rms) + 3).
    #[arg(long, allow_hyphen_values = true)]
    pub snr: f64,
    /// Where to write the mixture (16-bit WAV at 16 kHz).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the (peak-normalised) target here, to compare with `separate`'s estimate.
    #[arg(long)]
    pub target_out: Option<PathBuf>,
}

/// A WAV's samples at the separator's rate.
fn read(path: &Path) -> anyhow::Result<Vec<f32>> {
    decode_wav_file_at(path, SAMPLE_RATE)
        .with_context(|| format!("reading {} at {SAMPLE_RATE} Hz", path.display()))
}

fn checkpoint_bytes(args: &SeparateArgs) -> anyhow::Result<Vec<u8>> {
    let as_file = Path::new(&args.checkpoint);
    if as_file.is_file() {
        return std::fs::read(as_file).with_context(|| format!("reading {}", as_file.display()));
    }
    if check_sha256(&args.checkpoint).is_err() {
        bail!(
            "--checkpoint {}: no such file, and not a sha256 (64 lowercase hex digits)",
            args.checkpoint
        );
    }
    let Some(dir) = &args.artifacts else {
        bail!(
            "--checkpoint {} is a sha256: say where the artifacts are with --artifacts DIR (e.g. runs/quick/artifacts)",
            args.checkpoint
        );
    };
    let store = ArtifactStore::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let path = store.path_of(&args.checkpoint)?;
    std::fs::read(&path).with_context(|| {
        format!(
            "checkpoint {} is not in {} (looked for {})",
            args.checkpoint,
            dir.display(),
            path.display()
        )
    })
}

/// Runs `asdsweep separate`.
pub fn run_separate(args: &SeparateArgs) -> anyhow::Result<()> {
    let bytes = checkpoint_bytes(args)?;
    let mixture = read(&args.mixture)?;
    let estimate = separate_with_checkpoint(&bytes, &mixture)
        .map_err(|e| anyhow::anyhow!("--checkpoint {}: {e}", args.checkpoint))?;
    write_wav_pcm16(&args.out, &estimate, SAMPLE_RATE, 1)?;
    println!(
        "wrote {} ({:.2} s at {SAMPLE_RATE} Hz)",
        args.out.display(),
        estimate.len() as f64 / f64::from(SAMPLE_RATE)
    );
    if let Some(reference) = &args.reference {
        let target = crop_or_pad(&read(reference)?, 0, mixture.len());
        let f64s = |v: &[f32]| v.iter().copied().map(f64::from).collect::<Vec<f64>>();
        let t = f64s(&target);
        println!(
            "SI-SDR against {}: mixture {:.2} dB, estimate {:.2} dB",
            reference.display(),
            si_sdr_f32(&f64s(&mixture), &t)?,
            si_sdr_f32(&f64s(&estimate), &t)?
        );
    }
    Ok(())
}

/// Runs `asdsweep mix`: both clips are cut (or zero-padded) to the target's length.
pub fn run_mix(args: &MixArgs) -> anyhow::Result<()> {
    if !args.snr.is_finite() {
        bail!("--snr {}: expected a finite number of dB", args.snr);
    }
    let target = read(&args.target)?;
    if target.is_empty() {
        bail!("{}: the target has no samples", args.target.display());
    }
    let interferer = crop_or_pad(&read(&args.interferer)?, 0, target.len());
    let m = mix(&target, &interferer, args.snr);
    write_wav_pcm16(&args.out, &m.mixture, SAMPLE_RATE, 1)?;
    if let Some(path) = &args.target_out {
        write_wav_pcm16(path, &m.target, SAMPLE_RATE, 1)?;
    }
    println!(
        "wrote {} ({:.2} s; target {:.1} dB, interferer {:.1} dB after scaling)",
        args.out.display(),
        m.mixture.len() as f64 / f64::from(SAMPLE_RATE),
        level_db(&m.target),
        level_db(&m.interferer)
    );
    Ok(())
}
