//! The asdsweep binary: parses the command line and calls library functions.

mod cli;

use clap::{Parser, Subcommand};

/// asdsweep: sweeps of proxy-task models for anomalous sound detection, and their statistics.
#[derive(Debug, Parser)]
#[command(name = "asdsweep", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Per-section AUC and pAUC (McClish and raw) of a `section,label,score` CSV.
    EvaluateScores(cli::analysis::EvaluateScoresArgs),
    /// Mahalanobis and linear probes on per-clip embeddings (`.npy`) listed in a manifest.
    Probe(cli::analysis::ProbeArgs),
    /// Proxy-vs-ASD correlations (Pearson, Spearman, Kendall, BH) and the alignment report.
    Analyze(cli::analysis::AnalyzeArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::EvaluateScores(args) => cli::analysis::run_evaluate_scores(&args),
        Command::Probe(args) => cli::analysis::run_probe(&args),
        Command::Analyze(args) => cli::analysis::run_analyze(&args),
    }
}
