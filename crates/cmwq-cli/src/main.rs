//! `cmwq`: the command-line tool of the cmwq project (the Linux kernel's concurrency-managed
//! workqueue in userspace Rust).
//!
//! * `cmwq demo` runs a realistic mix of blocking and CPU-bound work on cmwq with a live
//!   wq_monitor-style table, then a period of memory pressure in which no thread can be created
//!   (the rescuer keeps the `mem_reclaim` write-back moving), then the first phase's items on a
//!   fixed thread pool, and compares.
//! * `cmwq bench` runs the benchmark workloads of the `cmwq-bench` crate.

mod bench;
mod demo;
mod fixed_pool;
mod table;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// The Linux kernel's concurrency-managed workqueue (cmwq), in userspace Rust.
#[derive(Debug, Parser)]
#[command(name = "cmwq", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a realistic mix of blocking I/O and CPU work on cmwq with a live table, then a
    /// period in which no thread can be created, then the first items on a fixed pool of plain
    /// threads, and compare.
    ///
    /// Items: a write-back pipeline whose items block on a socket read answered by a simulated
    /// device, synchronous sleeps (fsync), reads with CPU post-processing (readahead), and
    /// CPU burns, some over the 10 ms CPU-intensive threshold; on per-CPU and unbound
    /// workqueues. The table has the columns of the kernel's tools/workqueue/wq_monitor.py:
    /// total (items started), infl (in flight), CPUtime (seconds), CPUitsv (items marked
    /// CPU-intensive), CMW (concurrency-management wake-ups), mayday (calls for the rescuer)
    /// and rescued (items the rescuer ran), the last two for mem_reclaim workqueues only. It is
    /// redrawn in place on a terminal and printed block after block otherwise.
    ///
    /// Then, on the same runtime, memory pressure for 3/8 of --duration (1 to 3 s): every new
    /// worker thread is refused and allocations block. Write-back items keep arriving on the
    /// mem_reclaim writeback workqueue and prefetch items (allocate, then read) on a per-CPU
    /// workqueue without mem_reclaim; the summary says how the rescuer kept write-back going
    /// and how long the prefetch items waited. The fixed pool does not get this period.
    Demo {
        /// Seconds during which items arrive (the whole demo takes about two to three times
        /// as long, for the fixed pool's run, plus the memory-pressure period).
        #[arg(long, value_name = "SECS", default_value_t = 8.0)]
        duration: f64,
        /// A short run for smoke tests (same as --duration 1).
        #[arg(long, conflicts_with = "duration")]
        quick: bool,
        /// CPUs modelled by the runtime, and threads of the fixed pool, 1 to 8192 (default:
        /// all).
        #[arg(long, value_name = "N")]
        cpus: Option<usize>,
        /// Seed of the workload generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print table blocks one after another even on a terminal.
        #[arg(long)]
        plain: bool,
    },
    /// Run benchmark workloads side by side with the peers (rayon, tokio, threadpool,
    /// a crossbeam-channel pool, ...) and print a table.
    Bench {
        /// Workloads to run (default: all). See --list.
        #[arg(value_name = "WORKLOAD")]
        workloads: Vec<String>,
        /// Print one JSON object per result line on stdout (progress goes to stderr).
        #[arg(long)]
        json: bool,
        /// List the workloads and exit.
        #[arg(long)]
        list: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Demo { duration, quick, cpus, seed, plain } => {
            let secs = if quick { 1.0 } else { duration };
            let cpus =
                cpus.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(cmwq::MAX_CPUS));
            if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
                Err(format!("--duration must be between 0 and 3600 seconds, not {secs}"))
            } else if !(1..=cmwq::MAX_CPUS).contains(&cpus) {
                Err(format!(
                    "--cpus must be between 1 and {} (the kernel's largest NR_CPUS), not {cpus}",
                    cmwq::MAX_CPUS
                ))
            } else {
                demo::run(&demo::Options {
                    duration: Duration::from_secs_f64(secs),
                    cpus,
                    seed,
                    live: plain.then_some(false),
                })
            }
        }
        Command::Bench { workloads, json, list } => bench::run(&workloads, json, list),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cmwq: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn quick_conflicts_with_duration() {
        assert!(Cli::try_parse_from(["cmwq", "demo", "--quick", "--duration", "3"]).is_err());
        assert!(Cli::try_parse_from(["cmwq", "demo", "--quick"]).is_ok());
        assert!(Cli::try_parse_from(["cmwq", "bench", "B1", "B3", "--json"]).is_ok());
    }
}
