//! `catalogd-bench`: the benchmark runner behind `scripts/bench.sh`. Each figure (F1–F9 of
//! issue 6, F10 of issue 12) starts the real components it needs on loopback, measures catalogd and its peer
//! or baseline in the same run, and returns table rows; the runner prints one line per row
//! (`figure, ours, peer/baseline, ratio`) and writes the table into BENCHMARKS.md.
//!
//! Tiers: `smoke` (N = 2,000, seconds per figure: CI checks the runner works, not the
//! figures), `quick` (≤ 10 minutes), `full` (100k and 1M integrations).

mod figures;
mod report;
mod seed;
mod services;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tier {
    Smoke,
    Quick,
    Full,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Smoke => "smoke",
            Tier::Quick => "quick",
            Tier::Full => "full",
        }
    }
}

#[derive(Debug, Parser)]
#[command(about = "catalogd benchmarks (issues 6 and 12): F1–F10 against peers and baselines")]
struct Args {
    #[arg(long, value_enum, default_value = "quick")]
    tier: Tier,
    /// Run only these figures (e.g. `--only F1,F4`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Write the table into this file (between the runner's markers).
    #[arg(long)]
    write: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let versions = sys::versions();
    println!("# catalogd-bench, tier {}", args.tier.name());
    for (name, version) in &versions.0 {
        println!("# {name}: {version}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut failed = false;
    for figure in figures::ALL {
        if !args.only.is_empty() && !args.only.iter().any(|o| o.eq_ignore_ascii_case(figure.id)) {
            continue;
        }
        let started = Instant::now();
        println!("# {} {}…", figure.id, figure.title);
        match runtime.block_on((figure.run)(args.tier)) {
            Ok(outcome) => {
                for row in &outcome.rows {
                    println!("{}", row.line());
                }
                for note in &outcome.notes {
                    println!("# note: {note}");
                }
                rows.extend(outcome.rows);
                notes.extend(
                    outcome
                        .notes
                        .into_iter()
                        .map(|n| format!("{}: {n}", figure.id)),
                );
            }
            Err(e) => {
                failed = true;
                println!("# {} FAILED: {e:#}", figure.id);
                notes.push(format!("{}: failed: {e:#}", figure.id));
            }
        }
        println!(
            "# {} took {:.1} s",
            figure.id,
            started.elapsed().as_secs_f64()
        );
    }
    // Seeded databases (SQLite templates and copies) are the runner's to remove.
    seed::cleanup();
    if let Some(path) = &args.write {
        if let Err(e) = report::write_table(path, args.tier.name(), &versions, &rows, &notes) {
            println!("# could not write {}: {e}", path.display());
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
