//! The `asdsweep bench features` measurement without building the whole binary:
//! `cargo run -p asdsweep-shared --no-default-features --release --example bench_features [CLIPS] [THREADS]`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let clips = args.next().map(|a| a.parse()).transpose()?.unwrap_or(400);
    let threads = args.next().map(|a| a.parse()).transpose()?.unwrap_or(0);
    let cfg = asdsweep_shared::throughput::BenchConfig {
        clips,
        seconds: 10.0,
        sample_rate: 16000,
        threads,
    };
    let report = asdsweep_shared::throughput::run(&cfg)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
