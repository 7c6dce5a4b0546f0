//! `cmwq-bench [--json] [WORKLOAD...]`: runs the benchmark workloads (all if none is named)
//! against the peers and prints a table, or one JSON object per record with `--json`.
//! Progress goes to standard error.

use std::process::ExitCode;

const USAGE: &str =
    "usage: cmwq-bench [--json] [WORKLOAD...]   (workloads: b1 b2 b3 b4 b5 b6-k0 b6-k1 b6-k4 b7 b8 b9 b11 kdoc s1 s2)";

fn main() -> ExitCode {
    let mut json = false;
    let mut workloads = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            a if a.starts_with('-') => {
                eprintln!("cmwq-bench: unknown option {a:?}\n{USAGE}");
                return ExitCode::from(2);
            }
            _ => workloads.push(arg),
        }
    }
    let records = match cmwq_bench::run(&workloads, &mut |line| eprintln!("{line}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cmwq-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        for r in &records {
            println!("{}", cmwq_bench::to_json_line(r));
        }
    } else {
        print!("{}", cmwq_bench::table(&records));
    }
    // Returning from main ends the process, with any threads of leaked (hung) pools.
    ExitCode::SUCCESS
}
