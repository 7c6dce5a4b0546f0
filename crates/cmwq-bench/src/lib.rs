//! cmwq benchmarks: workloads B1-B9 of spec/peers.md section 6 and the rescuer series' claims
//! S1-S2, each run side by side against rayon, tokio (`spawn_blocking`), the threadpool crate
//! and a crossbeam-channel pool (or, where a workload compares semantics rather than pools, the
//! peers it names, or cmwq's own rescuer algorithms), in the same process and the same run,
//! with the targets of DESIGN.md section 6 as ratio metrics and `meets_target` flags.
//!
//! * B1 tiny-item throughput, B2 wake-up latency and idle cost, B3 blocking fan-out, B4 mixed
//!   CPU and blocking, B5 an item waiting on one queued behind it;
//! * B6 (`b6-k0`, `b6-k1`, `b6-k4`) forward progress with thread creation capped at K: B5's
//!   chain as waiters and signallers on two `mem_reclaim` workqueues, completed by the
//!   rescuers, against peers of max(K, 1) threads;
//! * B7 requeue storm: one item queued 1,000,000 times by 4 producers (coalescing,
//!   non-reentrancy, no lost request);
//! * B8 10,000 delayed items, half cancelled with `cancel_sync` (timer lateness, cancel
//!   latency, nothing running after a cancel returns);
//! * B9 1,000,000 items through an ordered workqueue against one consumer thread;
//! * S1 head-of-line blocking in the rescuer: 50 short items behind a rescued item that blocks
//!   for 2 s, once creation works again, with the cursor rescuer and the pre-2025 one;
//! * S2 the rescuer's scan cost over a worklist of 10,000 and 100,000 entries, with the cursor
//!   and with a rescan from the head for every item.
//!
//! Every measured run builds a fresh pool (a private `cmwq::Runtime` for cmwq), so thread
//! creation is measured alike for all, and systems run one after another, so process-wide
//! counters (threads, CPU time, context switches) belong to the system being measured.
//!
//! ```no_run
//! let records = cmwq_bench::run(&["b1".to_string()], &mut |line| eprintln!("{line}"))?;
//! println!("{}", cmwq_bench::table(&records));
//! # Ok::<(), String>(())
//! ```

mod b1;
mod b11;
mod b2;
mod b3;
mod b4;
mod b5;
mod b6;
mod b7;
mod b8;
mod b9;
mod kdoc;
pub mod measure;
pub mod peers;
mod s1;
mod s2;

use std::collections::BTreeMap;

/// The workloads, in the order a full run takes them.
pub const WORKLOADS: &[&str] =
    &["b1", "b2", "b3", "b4", "b5", "b6-k0", "b6-k1", "b6-k4", "b7", "b8", "b9", "b11", "kdoc", "s1", "s2"];

/// One measured number.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The workload (`"b1"`..`"b9"`, `"b6-k0"`, `"s1"`, ...).
    pub workload: String,
    /// The system (`"cmwq"`, `"rayon"`, `"tokio"`, `"threadpool"`, `"crossbeam"`).
    pub system: String,
    /// What was measured (`"items_per_s"`, `"p50_us"`, ...); booleans are 1 or 0.
    pub metric: String,
    /// The value.
    pub value: f64,
}

/// Where a workload puts its records and progress lines.
pub(crate) struct Report<'a> {
    /// The records so far.
    pub(crate) records: Vec<Record>,
    progress: &'a mut dyn FnMut(&str),
    /// CPUs of the machine: the size of the fixed pools and of cmwq's runtime.
    pub(crate) ncpu: usize,
}

impl Report<'_> {
    /// Adds a record.
    pub(crate) fn record(&mut self, workload: &str, system: &str, metric: &str, value: f64) {
        self.records.push(Record { workload: workload.into(), system: system.into(), metric: metric.into(), value });
    }

    /// Sends a progress line.
    pub(crate) fn say(&mut self, line: &str) {
        (self.progress)(line);
    }

    /// The value of a record already made, if any.
    pub(crate) fn get(&self, workload: &str, system: &str, metric: &str) -> Option<f64> {
        self.records
            .iter()
            .rev()
            .find(|r| r.workload == workload && r.system == system && r.metric == metric)
            .map(|r| r.value)
    }
}

/// Runs the named workloads (all if empty), in the given order, and returns their records;
/// `progress` receives human-readable progress lines. An unknown name is an error, reported
/// before anything runs.
pub fn run(workloads: &[String], progress: &mut dyn FnMut(&str)) -> Result<Vec<Record>, String> {
    let selected: Vec<&'static str> = if workloads.is_empty() {
        WORKLOADS.to_vec()
    } else {
        workloads
            .iter()
            .map(|w| {
                let w = w.trim().to_ascii_lowercase();
                WORKLOADS
                    .iter()
                    .copied()
                    .find(|k| *k == w)
                    .ok_or_else(|| format!("unknown workload {w:?}: expected one of {}", WORKLOADS.join(", ")))
            })
            .collect::<Result<_, _>>()?
    };
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut report = Report { records: Vec::new(), progress, ncpu };
    for w in selected {
        report.say(&format!("{w}: starting ({ncpu} CPUs)"));
        match w {
            "b1" => b1::run(&mut report)?,
            "b2" => b2::run(&mut report)?,
            "b3" => b3::run(&mut report)?,
            "b4" => b4::run(&mut report)?,
            "b5" => b5::run(&mut report)?,
            "b6-k0" => b6::run(&mut report, 0)?,
            "b6-k1" => b6::run(&mut report, 1)?,
            "b6-k4" => b6::run(&mut report, 4)?,
            "b7" => b7::run(&mut report)?,
            "b8" => b8::run(&mut report)?,
            "b9" => b9::run(&mut report)?,
            "b11" => b11::run(&mut report)?,
            "kdoc" => kdoc::run(&mut report)?,
            "s1" => s1::run(&mut report)?,
            "s2" => s2::run(&mut report)?,
            _ => unreachable!("validated above"),
        }
    }
    Ok(report.records)
}

/// One record as a JSON object on one line:
/// `{"workload":"b1","system":"cmwq","metric":"items_per_s","value":123.0}`.
/// A value that is not finite is written as `null`.
pub fn to_json_line(r: &Record) -> String {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let value = serde_json::Number::from_f64(r.value).map_or("null".into(), |n| n.to_string());
    format!(
        r#"{{"workload":{},"system":{},"metric":{},"value":{value}}}"#,
        text(&r.workload),
        text(&r.system),
        text(&r.metric),
    )
}

/// The records as one table per workload: a row per system, a column per metric.
pub fn table(records: &[Record]) -> String {
    // Workloads, systems and metrics in the order they first appear.
    let mut order: Vec<&str> = Vec::new();
    let mut by_workload: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for r in records {
        if !order.contains(&r.workload.as_str()) {
            order.push(&r.workload);
        }
        let (systems, metrics) = by_workload.entry(&r.workload).or_default();
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
        if !metrics.contains(&r.metric.as_str()) {
            metrics.push(&r.metric);
        }
    }
    let mut out = String::new();
    for w in order {
        let (systems, metrics) = &by_workload[w];
        let mut rows: Vec<Vec<String>> =
            vec![std::iter::once(w.to_string()).chain(metrics.iter().map(|m| m.to_string())).collect()];
        for s in systems {
            let mut row = vec![s.to_string()];
            for m in metrics {
                let v = records.iter().rev().find(|r| r.workload == w && r.system == *s && r.metric == *m);
                row.push(v.map_or_else(|| "-".to_string(), |r| format_value(r.value)));
            }
            rows.push(row);
        }
        let widths: Vec<usize> =
            (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, wd))| if c == 0 { format!("{cell:<wd$}") } else { format!("{cell:>wd$}") })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
            if i == 0 {
                let total = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

/// A number for the table: integers plainly, large values with few decimals, small ones
/// with three significant digits.
fn format_value(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(w: &str, s: &str, m: &str, v: f64) -> Record {
        Record { workload: w.into(), system: s.into(), metric: m.into(), value: v }
    }

    #[test]
    fn json_line_shape() {
        assert_eq!(
            to_json_line(&rec("b1", "cmwq", "items_per_s", 123.0)),
            r#"{"workload":"b1","system":"cmwq","metric":"items_per_s","value":123.0}"#
        );
        assert!(to_json_line(&rec("b1", "cmwq", "x", f64::NAN)).ends_with(r#""value":null}"#));
    }

    #[test]
    fn unknown_workload_is_an_error() {
        let err = run(&["b99".into()], &mut |_| {}).unwrap_err();
        assert!(err.contains("b99") && err.contains("b1, b2"), "{err}");
    }

    #[test]
    fn table_has_rows_and_columns() {
        let t = table(&[
            rec("b3", "cmwq", "makespan_ms", 42.5),
            rec("b3", "rayon", "makespan_ms", 5000.0),
            rec("b3", "cmwq", "peak_threads", 260.0),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("b3") && lines[0].contains("peak_threads"));
        assert!(lines[2].starts_with("cmwq") && lines[2].contains("42.500"));
        assert!(lines[3].starts_with("rayon") && lines[3].ends_with('-'));
    }
}
