//! `cmwq bench`: runs the workloads of the `cmwq-bench` crate and prints the records, as a
//! table or (`--json`) as one JSON object per line on stdout, with progress on stderr.

use std::io::Write;

/// Runs the named workloads (all when empty).
pub fn run(workloads: &[String], json: bool, list: bool) -> Result<(), String> {
    if list {
        for w in cmwq_bench::WORKLOADS {
            println!("{w}");
        }
        return Ok(());
    }
    if let Some(bad) = workloads.iter().find(|w| !cmwq_bench::WORKLOADS.iter().any(|k| k.eq_ignore_ascii_case(w))) {
        return Err(format!("unknown workload {bad:?}; known: {}", cmwq_bench::WORKLOADS.join(", ")));
    }
    let mut progress = |msg: &str| {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{msg}");
    };
    let records = cmwq_bench::run(workloads, &mut progress)?;
    let mut out = std::io::stdout().lock();
    if json {
        for r in &records {
            let _ = writeln!(out, "{}", cmwq_bench::to_json_line(r));
        }
    } else {
        let _ = write!(out, "{}", cmwq_bench::table(&records));
    }
    let _ = out.flush();
    Ok(())
}
