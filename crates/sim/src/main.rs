//! `paybridge-sim`: runs the simulation (see `paybridge_sim`) over many seeds, or
//! replays one.
//!
//!     paybridge-sim --seeds 1000000            # seeds 0..1,000,000
//!     paybridge-sim --from 5000000 --seeds 1000
//!     paybridge-sim --seed 4242                # replay one, saying what happened

use std::process::ExitCode;

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.replace('_', "").parse().ok())
}

fn main() -> ExitCode {
    if let Some(seed) = arg("--seed") {
        return match paybridge_sim::run(seed) {
            Ok(s) => {
                println!("seed {seed}: ok, {s:?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let from = arg("--from").unwrap_or(0);
    let seeds = arg("--seeds").unwrap_or(100_000);
    let started = std::time::Instant::now();
    match paybridge_sim::run_many(from, seeds) {
        Ok(t) => {
            println!(
                "{seeds} seeds from {from}: all hold ({} steps, {} crashes, {} duplicate deliveries, {} refunds) in {:.1} s",
                t.steps,
                t.crashes,
                t.duplicates_applied,
                t.refunds,
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}\nreplay it with: paybridge-sim --seed <seed>");
            ExitCode::FAILURE
        }
    }
}
