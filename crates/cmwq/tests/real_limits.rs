//! Forward progress under real operating-system limits, in child processes (rlimits and user
//! ids are process-wide; spec/quality.md A11.4): once the workqueues and their rescuers exist,
//! the child caps thread creation for real, with `RLIMIT_NPROC` after dropping to an
//! unprivileged user (root is exempt from it), or with `RLIMIT_AS` so no thread stack can be
//! mapped. Then a chain of 8 waiters, each waiting for a signaller queued after it (b5's chain,
//! waiters and signallers on two workqueues as the kernel's rule for interdependent reclaim work
//! asks), must complete on `mem_reclaim` workqueues; on workqueues without `mem_reclaim` the
//! same chain is reported stuck. The parent re-runs this test binary for each child mode and
//! checks its verdict.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

use cmwq::{Runtime, Work, Workqueue};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const CHAIN: usize = 8;
/// How long the child gives the chain before it declares it stuck: without mem_reclaim it
/// never completes; with it, it completes in about 10 ms, but a loaded CI machine gets slack.
const STUCK_AFTER_PLAIN: Duration = Duration::from_secs(3);
const STUCK_AFTER_RECLAIM: Duration = Duration::from_secs(15);
const MODE_VAR: &str = "CMWQ_REAL_LIMIT_CHILD";

/// How the child caps thread creation.
#[derive(Clone, Copy, Debug)]
enum Cap {
    /// setuid(nobody) + RLIMIT_NPROC at the current thread count.
    Nproc,
    /// RLIMIT_AS just above the current address-space size.
    AddressSpace,
}

/// Runs this binary's `child` test in a new process with `mode`; returns (exit code, stdout).
fn run_child(mode: &str) -> (Option<i32>, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(MODE_VAR, mode)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("child {mode}: {:?}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    (out.status.code(), stdout)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn nproc_cap_mem_reclaim_chain_completes() {
    if !is_root() {
        eprintln!("SKIP: dropping to an unprivileged user needs root");
        return;
    }
    let (code, out) = run_child("nproc:reclaim");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("COMPLETED") && !out.contains("rescued=0 "), "the rescuers did not run: {out}");
}

#[test]
fn nproc_cap_plain_chain_is_reported_stuck() {
    if !is_root() {
        eprintln!("SKIP: dropping to an unprivileged user needs root");
        return;
    }
    let (code, out) = run_child("nproc:plain");
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("STUCK"), "{out}");
}

#[test]
// ThreadSanitizer's runtime allocates its per-thread traces from the same capped address space
// as the process, and a child stuck for seconds under a 1 MiB slack runs out of it (the TSan
// lane sets `--cfg cmwq_tsan`); the normal lanes run these, and the NPROC children run under TSan.
#[cfg_attr(cmwq_tsan, ignore = "ThreadSanitizer's traces need more address space than the cap leaves")]
fn address_space_cap_mem_reclaim_chain_completes() {
    let (code, out) = run_child("as:reclaim");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("COMPLETED") && !out.contains("rescued=0 "), "the rescuers did not run: {out}");
}

#[test]
// ThreadSanitizer's runtime allocates its per-thread traces from the same capped address space
// as the process, and a child stuck for seconds under a 1 MiB slack runs out of it (the TSan
// lane sets `--cfg cmwq_tsan`); the normal lanes run these, and the NPROC children run under TSan.
#[cfg_attr(cmwq_tsan, ignore = "ThreadSanitizer's traces need more address space than the cap leaves")]
fn address_space_cap_plain_chain_is_reported_stuck() {
    let (code, out) = run_child("as:plain");
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("STUCK"), "{out}");
}

/// The child: only runs when the parent asks for it.
#[test]
#[ignore = "run by the other tests of this file in a child process"]
fn child() {
    let Ok(mode) = std::env::var(MODE_VAR) else { return };
    let (cap, reclaim) = match mode.as_str() {
        "nproc:reclaim" => (Cap::Nproc, true),
        "nproc:plain" => (Cap::Nproc, false),
        "as:reclaim" => (Cap::AddressSpace, true),
        "as:plain" => (Cap::AddressSpace, false),
        m => panic!("unknown child mode {m}"),
    };
    if let Cap::Nproc = cap {
        // Drop to nobody first (while single-threaded enough): root ignores RLIMIT_NPROC.
        nix::unistd::setgid(nix::unistd::Gid::from_raw(65534)).expect("setgid");
        nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).expect("setuid");
    }
    let rt = Runtime::builder().cpus(1).create_cooldown(Duration::from_millis(20)).build();
    let build = |name: &str| {
        let b = rt.workqueue(name);
        if reclaim { b.mem_reclaim() } else { b }.build().unwrap()
    };
    let waiters = build("waiters");
    let signallers = build("signallers");
    // Everything this test needs exists. Let every thread get past its start-up (std maps each
    // thread's signal stack as it starts) before the cap, or a late starter dies of it.
    settle_threads();
    // From now on no thread can be created.
    let threads = cmwq_testkit::thread_count();
    match cap {
        Cap::Nproc => {
            let n = threads as u64;
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NPROC, n, n).expect("RLIMIT_NPROC");
        }
        Cap::AddressSpace => {
            let vm = vm_size_bytes() + (1 << 20);
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, vm, vm).expect("RLIMIT_AS");
        }
    }
    // Check the cap bites: a plain thread cannot be created any more.
    assert!(std::thread::Builder::new().spawn(|| {}).is_err(), "the cap does not stop thread creation");
    let t0 = Instant::now();
    let done = run_chain(&waiters, &signallers, if reclaim { STUCK_AFTER_RECLAIM } else { STUCK_AFTER_PLAIN });
    let (ws, ss) = (waiters.stats(), signallers.stats());
    let verdict = if done { "COMPLETED" } else { "STUCK" };
    println!(
        "{verdict} in {:?}; threads at the cap {threads}; rescued={} mayday={}; waiters {ws:?}; signallers {ss:?}",
        t0.elapsed(),
        ws.rescued + ss.rescued,
        ws.mayday + ss.mayday,
    );
    // Exit without joining anything: a stuck chain has threads that never finish.
    std::process::exit(if done { 0 } else { 3 });
}

/// Queues 8 waiters, then their 8 signallers; returns whether every waiter finished within
/// `stuck_after`.
fn run_chain(waiters: &Workqueue, signallers: &Workqueue, stuck_after: Duration) -> bool {
    type Flag = Arc<(Mutex<bool>, Condvar)>;
    let flags: Vec<Flag> = (0..CHAIN).map(|_| Flag::default()).collect();
    let finished: Arc<(Mutex<usize>, Condvar)> = Arc::default();
    for f in flags.iter().take(CHAIN) {
        let (f, finished) = (f.clone(), finished.clone());
        waiters.queue_on(
            0,
            &Work::new(move |_| {
                let mut g = f.0.lock().unwrap();
                while !*g {
                    g = f.1.wait(g).unwrap();
                }
                *finished.0.lock().unwrap() += 1;
                finished.1.notify_all();
            }),
        );
    }
    for f in flags.iter().take(CHAIN) {
        let f = f.clone();
        signallers.queue_on(
            0,
            &Work::new(move |_| {
                *f.0.lock().unwrap() = true;
                f.1.notify_all();
            }),
        );
    }
    let deadline = Instant::now() + stuck_after;
    let mut n = finished.0.lock().unwrap();
    while *n < CHAIN {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        n = finished.1.wait_timeout(n, left).unwrap().0;
    }
    true
}

/// Waits until every other thread of the process is asleep (state S), i.e. has started and
/// parked.
fn settle_threads() {
    let me = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all_asleep = cmwq_testkit::tasks().iter().all(|t| t.tid() == me || t.state().is_none_or(|s| s == 'S'));
        if all_asleep || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn vm_size_bytes() -> u64 {
    cmwq_testkit::status_field("VmSize").expect("VmSize in /proc/self/status") * 1024
}
