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

/// The nice level of the switch detector (`MAX_NICE`): it runs when a CPU is free, which is
/// when a blocked worker leaves one, and never preempts the workers whose switches wake it.
pub(crate) const LOW_NICE: i32 = 19;

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

/// A worker's context-switch event (`monitor::switch`): a software perf event on the calling
/// thread (`PERF_COUNT_SW_DUMMY`, `context_switch = 1`, user space only) whose small ring
/// receives a `PERF_RECORD_SWITCH` on every switch out and in, stamped with CLOCK_MONOTONIC,
/// and wakes a poller of its fd at every record (`watermark`, `wakeup_watermark = 1`; the
/// kernel does not wake for these records with `wakeup_events`). Opened and read through the
/// safe API of the `perf-event2` crate; closed with the worker's record.
pub(crate) struct SwitchEvent {
    sampler: perf_event::Sampler,
}

impl std::fmt::Debug for SwitchEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchEvent").finish_non_exhaustive()
    }
}

/// Bytes of a switch ring's data area: 256 records of 16 bytes. A ring fills only if its
/// worker switches 256 times between two reads (the monitor drains busy workers' rings at
/// least every `cm_tick`); a full ring drops records and says so (`PERF_RECORD_LOST`).
pub(crate) const SWITCH_RING_BYTES: usize = 4096;

impl SwitchEvent {
    /// Opens the calling thread's event. Fails where perf events are refused
    /// (`perf_event_paranoid` 3 or more, seccomp, ENOSYS), out of file descriptors, or over
    /// the locked-memory limit for rings (`perf_event_mlock_kb`); the worker is then watched by
    /// sampling.
    pub(crate) fn open_current() -> std::io::Result<SwitchEvent> {
        if cfg!(any(loom, shuttle)) {
            // Modelled threads share the test's OS thread (see the module docs).
            return Err(std::io::Error::from(std::io::ErrorKind::Unsupported));
        }
        use perf_event::events::Software;
        use perf_event::{Builder, Clock, SampleFlag};
        let sampler = Builder::new(Software::DUMMY)
            .observe_self()
            .any_cpu()
            .exclude_kernel(true)
            .exclude_hv(true)
            .context_switch(true)
            .sample_id_all(true)
            .sample(SampleFlag::TIME)
            .clockid(Clock::MONOTONIC)
            .wakeup_watermark(1)
            .enabled(false)
            .build()?
            .sampled(SWITCH_RING_BYTES)?;
        Ok(SwitchEvent { sampler })
    }

    /// Turns recording on or off (`PERF_EVENT_IOC_ENABLE` / `DISABLE`): a disabled event
    /// writes no record and wakes no one, so its thread's switches cost next to nothing.
    pub(crate) fn set_enabled(&mut self, on: bool) -> std::io::Result<()> {
        if on {
            self.sampler.enable()
        } else {
            self.sampler.disable()
        }
    }

    /// Reads every record the ring holds, oldest first, as `(type, misc, body)`, and frees
    /// their space.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(u32, u16, &[u8])) {
        while let Some(r) = self.sampler.next_record() {
            f(r.ty(), r.misc(), &r.to_contiguous());
        }
    }
}

impl std::os::fd::AsFd for SwitchEvent {
    /// The event's fd, to register with a [`Poller`]. `perf-event2` offers only `AsRawFd`.
    #[allow(unsafe_code)]
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsRawFd;
        // SAFETY: the fd is the sampler's own `File`, open for as long as the sampler lives,
        // and the borrow is tied to `&self`, so it cannot outlive the fd or see it reused.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.sampler.as_raw_fd()) }
    }
}

/// The monitor's wait when switch events are on: an epoll set of the watched workers' switch
/// events plus an eventfd that [`Poller::wake`] writes (note_busy, note_waiting, stop).
/// Every fd is registered once, disarmed (no events), and armed only while its worker is
/// watched, so records of a worker nobody watches wake no one.
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: std::os::fd::OwnedFd,
    wake: std::os::fd::OwnedFd,
}

/// The waiter's buffer for [`Poller::wait`], reused from wait to wait (a wait allocates nothing).
pub(crate) struct PollBuf {
    events: Vec<rustix::event::epoll::Event>,
}

impl std::fmt::Debug for PollBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollBuf").field("capacity", &self.events.capacity()).finish()
    }
}

impl Default for PollBuf {
    fn default() -> Self {
        PollBuf { events: Vec::with_capacity(32) }
    }
}

/// The eventfd's token in the epoll set.
const WAKE_TOKEN: u64 = u64::MAX;

impl Poller {
    pub(crate) fn new() -> std::io::Result<Poller> {
        use rustix::event::{epoll, eventfd, EventfdFlags};
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &wake, epoll::EventData::new_u64(WAKE_TOKEN), epoll::EventFlags::IN)?;
        Ok(Poller { epoll, wake })
    }

    /// Registers `fd` under `token`, disarmed.
    pub(crate) fn add(&self, fd: std::os::fd::BorrowedFd<'_>, token: u64) -> std::io::Result<()> {
        use rustix::event::epoll;
        Ok(epoll::add(&self.epoll, fd, epoll::EventData::new_u64(token), epoll::EventFlags::empty())?)
    }

    /// Arms (readable wakes the waiter) or disarms `fd`.
    pub(crate) fn arm(&self, fd: std::os::fd::BorrowedFd<'_>, token: u64, on: bool) {
        use rustix::event::epoll;
        let flags = if on { epoll::EventFlags::IN } else { epoll::EventFlags::empty() };
        // Fails only if the fd was closed (its worker exited): nothing to watch then.
        let _ = epoll::modify(&self.epoll, fd, epoll::EventData::new_u64(token), flags);
    }

    /// Removes `fd` (before it is closed, so the set never names a reused fd).
    pub(crate) fn remove(&self, fd: std::os::fd::BorrowedFd<'_>) {
        let _ = rustix::event::epoll::delete(&self.epoll, fd);
    }

    /// Wakes a waiter.
    pub(crate) fn wake(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Waits until a registered fd is readable, [`Poller::wake`] is called, or `timeout`
    /// passes; returns the ready tokens in `out` (the wake token consumed and left out).
    /// An interrupted wait returns with nothing ready; any other error is returned.
    pub(crate) fn wait(
        &self,
        timeout: Option<std::time::Duration>,
        buf: &mut PollBuf,
        out: &mut Vec<u64>,
    ) -> std::io::Result<()> {
        use rustix::event::epoll;
        out.clear();
        let ts = timeout.map(|d| rustix::time::Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: d.subsec_nanos() as _,
        });
        let events = &mut buf.events;
        events.clear();
        match epoll::wait(&self.epoll, rustix::buffer::spare_capacity(events), ts.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        for e in events.iter() {
            let t = e.data.u64();
            if t == WAKE_TOKEN {
                let mut buf = [0u8; 8];
                let _ = rustix::io::read(&self.wake, &mut buf);
            } else {
                out.push(t);
            }
        }
        Ok(())
    }
}
