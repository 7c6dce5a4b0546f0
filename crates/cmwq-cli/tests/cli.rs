//! End-to-end tests of the `cmwq` binary: `--help` lists the subcommands, and
//! `demo --quick` finishes within a deadline, exits 0 and prints its table (with the rescuer's
//! columns) and its summary, including the no-thread phase.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cmwq");

/// Runs the binary with `args`, killing it (and failing) after `deadline`.
fn run_with_deadline(args: &[&str], deadline: Duration) -> (i32, String, String) {
    let mut child =
        Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn cmwq");
    // Drain the pipes on threads so a full pipe cannot block the child.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cmwq {args:?} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (to.join().unwrap(), te.join().unwrap());
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn help_lists_subcommands() {
    let (code, out, err) = run_with_deadline(&["--help"], Duration::from_secs(30));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("demo"), "{out}");
    assert!(out.contains("bench"), "{out}");
}

#[test]
fn demo_quick_finishes_with_summary() {
    let (code, out, err) = run_with_deadline(&["demo", "--quick"], Duration::from_secs(60));
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("CPUitsv") && out.contains("CMW"), "{out}");
    assert!(out.contains("summary"), "{out}");
    // The wq_monitor columns of the rescuer: numbers for the mem_reclaim workqueue, '-' for
    // the others.
    let header = out.lines().find(|l| l.contains("total") && l.contains("CMW")).expect("table header");
    assert!(header.trim_end().ends_with("CMW  mayday rescued"), "{header}");
    let cols = |name: &str| -> Vec<String> {
        let row = out.lines().rfind(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} row"));
        row.split_whitespace().map(str::to_owned).collect()
    };
    let wb = cols("writeback ");
    assert_eq!(wb.len(), 8, "{wb:?}");
    assert!(wb[6].parse::<u64>().is_ok() && wb[7].parse::<u64>().is_ok(), "{wb:?}");
    let pf = cols("prefetch ");
    assert_eq!(&pf[6..], ["-", "-"], "{pf:?}");
    // The memory-pressure phase ran and is summed up.
    assert!(out.contains("phase 2: memory pressure"), "{out}");
    assert!(out.contains("NO THREAD CAN BE CREATED"), "{out}");
    let line = |start: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no '{start}' line in:\n{out}"))
    };
    assert!(line("memory pressure in cmwq").contains("no thread could be created"), "{out}");
    assert!(line("worker creation refused").contains("times"), "{out}");
    let wb = line("writeback (mem_reclaim): mayday");
    assert!(wb.contains("rescued") && wb.contains("completed") && wb.contains("longest wait"), "{wb}");
    assert!(wb.contains(" all "), "a mem_reclaim item queued without threads did not complete: {wb}");
    let pf = line("prefetch (no mem_reclaim");
    assert!(pf.contains("longest wait"), "{pf}");
    assert!(line("memory and thread creation came back").contains("workers alive"), "{out}");
    let result =
        out.lines().find(|l| l.starts_with("result: cmwq")).unwrap_or_else(|| panic!("no result line in:\n{out}"));
    assert!(result.contains("fixed pool"), "{result}");
    // Not a terminal: no cursor-movement escapes in the output.
    assert!(!out.contains('\u{1b}'), "escape codes in non-terminal output");
}

/// Issue 9, bug 8: `demo --cpus` outside 1..=8192 (the kernel's largest NR_CPUS) is refused
/// with one clear line and a non-zero exit, at once. Before the fix `--cpus 100000` started
/// creating 200,000 pools' workers until the process aborted, and `--cpus 0` ran as 1 CPU.
#[test]
fn demo_refuses_absurd_cpu_counts() {
    for n in ["0", "8193", "100000"] {
        let (code, out, err) = run_with_deadline(&["demo", "--quick", "--cpus", n], Duration::from_secs(30));
        assert_eq!(code, 1, "--cpus {n}: stdout: {out}\nstderr: {err}");
        assert_eq!(
            err.trim(),
            format!("cmwq: --cpus must be between 1 and 8192 (the kernel's largest NR_CPUS), not {n}")
        );
        assert!(out.is_empty(), "--cpus {n}: nothing runs: {out}");
    }
}
