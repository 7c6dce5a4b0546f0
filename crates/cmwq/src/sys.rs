//! Operating-system calls, all through the safe APIs of well-kept crates (rustix, nix): thread
//! CPU clocks and states (for the monitor), CPU affinity and the current CPU (per-CPU pools),
//! and thread priorities (highpri pools, rescuers, the monitor).
//!
//! Under `--cfg shuttle` every modelled thread runs on the one OS thread of the test, so these
//! calls would read or change that host thread, not the modelled one, and the readings (CPU
//! clocks, the current CPU) would make schedules unreplayable. There, and only there:
//! * [`ThreadProbe::open_current`] returns `None` (no CPU clock, no `/proc` state): the monitor
//!   samples nothing, so sleeps are never detected and no item is ever marked CPU-intensive by
//!   the monitor; concurrency is managed by the `blocking` hint alone, as on a system without
//!   these files (the monitor's documented fallback);
//! * pinning, unpinning and nice are no-ops;
//! * [`current_cpu`] is the modelled thread's shuttle task id folded onto the modelled CPUs,
//!   so the per-CPU pool a `queue` picks is a function of the schedule.

use nix::time::ClockId;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Run-time probe of one thread.
#[derive(Debug)]
pub(crate) struct ThreadProbe {
    /// The thread's CPU-time clock, readable from any thread of the process.
    clock: ClockId,
    /// `/proc/thread-self/stat`: the third field is the thread state (concurrency-managed
    /// pools only).
    stat: Option<File>,
}

impl ThreadProbe {
    /// Opens the calling thread's probe.
    /// `with_state`: also open the thread's state (needed only where sleeps are detected, on
    /// concurrency-managed pools; opening a /proc file is the costly part of a worker's start).
    pub(crate) fn open_current(with_state: bool) -> Option<ThreadProbe> {
        if cfg!(shuttle) {
            return None; // See the module docs.
        }
        let stat = if with_state { Some(File::open("/proc/thread-self/stat").ok()?) } else { None };
        let probe = ThreadProbe { clock: thread_cpu_clock(rustix::thread::gettid().as_raw_nonzero().get()), stat };
        probe.runtime_ns().map(|_| probe)
    }

    /// Total CPU time of the thread in nanoseconds. This clock includes the time of the
    /// current slice (the kernel updates the runtime before answering), unlike
    /// `/proc/*/schedstat`, which lags by up to a scheduler tick.
    pub(crate) fn runtime_ns(&self) -> Option<u64> {
        let t = nix::time::clock_gettime(self.clock).ok()?;
        Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
    }

    /// Whether the thread is sleeping (state S) or in uninterruptible sleep (D).
    pub(crate) fn is_sleeping(&self) -> bool {
        let mut buf = [0u8; 512];
        let Some(stat) = &self.stat else { return false };
        let Ok(n) = stat.read_at(&mut buf, 0) else {
            return false;
        };
        let buf = &buf[..n];
        // The state follows the last ')' (the command name may contain spaces and parens).
        let Some(p) = buf.iter().rposition(|&b| b == b')') else {
            return false;
        };
        matches!(buf.get(p + 2), Some(b'S') | Some(b'D'))
    }
}

/// The CPU-time clock of thread `tid`: Linux encodes it as `(!tid << 3) | CPUCLOCK_SCHED (2) |
/// CPUCLOCK_PERTHREAD_MASK (4)` (`MAKE_THREAD_CPUCLOCK`, include/linux/posix-timers.h), which is
/// what `pthread_getcpuclockid` returns for that thread.
fn thread_cpu_clock(tid: i32) -> ClockId {
    ClockId::from_raw((!tid << 3) | 6)
}

/// The CPUs the process may use, as the first thread that pins itself found them (threads
/// inherit the mask of the thread that created them, and cmwq never narrows a non-worker's).
fn allowed_cpus() -> &'static [usize] {
    use rustix::thread::{sched_getaffinity, CpuSet};
    static ALLOWED: crate::sync::global::OnceLock<Vec<usize>> = crate::sync::global::OnceLock::new();
    ALLOWED.get_or_init(|| match sched_getaffinity(None) {
        Ok(set) => (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect(),
        Err(_) => Vec::new(),
    })
}

/// Pins the calling thread to `cpu` (modulo the CPUs the process may use).
pub(crate) fn pin_current_thread(cpu: usize) {
    use rustix::thread::{sched_setaffinity, CpuSet};
    if cfg!(shuttle) {
        return; // See the module docs.
    }
    let cpus = allowed_cpus();
    if cpus.is_empty() {
        return;
    }
    let mut set = CpuSet::new();
    set.set(cpus[cpu % cpus.len()]);
    let _ = sched_setaffinity(None, &set);
}

/// Lets the calling thread run on every CPU the process may use again.
pub(crate) fn unpin_current_thread() {
    use rustix::thread::{sched_setaffinity, CpuSet};
    if cfg!(shuttle) {
        return; // See the module docs.
    }
    let cpus = allowed_cpus();
    if cpus.is_empty() {
        return;
    }
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    let _ = sched_setaffinity(None, &set);
}

/// The CPU the calling thread runs on, folded onto `nr_cpus` modelled CPUs.
///
/// rustix is built with `use-libc`, so this is glibc's `sched_getcpu`, which reads the CPU
/// from the thread's registered `rseq` area (one load) and falls back to the vDSO or the
/// system call. rustix's own backend reads the vDSO through the auxiliary vector, which
/// crashed the process under valgrind (no vDSO there).
#[cfg(not(shuttle))]
pub(crate) fn current_cpu(nr_cpus: usize) -> usize {
    rustix::thread::sched_getcpu() % nr_cpus
}

/// Under shuttle: the modelled thread's task id, folded (see the module docs).
#[cfg(shuttle)]
pub(crate) fn current_cpu(nr_cpus: usize) -> usize {
    usize::from(shuttle::current::me()) % nr_cpus
}

/// The nice level of highpri workers and rescuers (`HIGHPRI_NICE_LEVEL`, `RESCUER_NICE_LEVEL`
/// = `MIN_NICE`), and of the monitor, which stands in for scheduler hooks.
pub(crate) const HIGH_NICE: i32 = -20;

/// Sets the calling thread's nice level (on Linux, nice is per thread). Without the privilege
/// to raise priority (CAP_SYS_NICE) this quietly does nothing: the thread keeps its own.
pub(crate) fn set_current_nice(nice: i32) {
    // Under loom or shuttle every modelled thread runs on the test's own OS thread: leave it
    // as it is (see the module docs).
    #[cfg(not(any(loom, shuttle)))]
    let _ = rustix::process::setpriority_process(None, nice);
    #[cfg(any(loom, shuttle))]
    let _ = nice;
}

/// `vm.max_map_count`: how many memory mappings the process may have.
pub(crate) fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()
}
