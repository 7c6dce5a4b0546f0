//! End-to-end tests of the `cmwq` binary: `--help` lists the subcommands, and
//! `demo --quick` finishes within a deadline, exits 0 and prints its summary.

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
    let result =
        out.lines().find(|l| l.starts_with("result: cmwq")).unwrap_or_else(|| panic!("no result line in:\n{out}"));
    assert!(result.contains("fixed pool"), "{result}");
    // Not a terminal: no cursor-movement escapes in the output.
    assert!(!out.contains('\u{1b}'), "escape codes in non-terminal output");
}
