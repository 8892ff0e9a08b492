//! The asdsweep command line: parse, call the library, print.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Distributed sweep orchestrator for anomalous sound detection proxy-task studies.
#[derive(Debug, Parser)]
#[command(name = "asdsweep", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log-mel spectrograms (librosa-exact) of a WAV file or a directory of WAVs, as float32 .npy [128, frames].
    Features(cli::audio::FeaturesArgs),
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Generate a synthetic DCASE 2022-style machine-sound dataset.
    Synth(cli::audio::SynthArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Per device/section/split/label counts, durations and rates, and every problem with its path.
    Check(cli::audio::DataCheckArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Clips per second of the log-mel front end on synthetic clips.
    Features(cli::audio::BenchFeaturesArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Features(a) => cli::audio::run_features(a),
        Command::Data {
            command: DataCommand::Check(a),
        } => cli::audio::run_data_check(a),
        Command::Synth(a) => cli::audio::run_synth(a),
        Command::Bench {
            command: BenchCommand::Features(a),
        } => cli::audio::run_bench_features(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
