//! The calling thread's CPU clock, and a CPU burner on it.

use std::time::Duration;

/// CPU time used by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Spins until the calling thread has used `d` more CPU time (not wall time: the same amount
/// of work whether the thread has a core to itself or shares one, and preemption does not
/// shorten it). The thread stays runnable throughout (state R).
pub fn burn_cpu(d: Duration) {
    let start = thread_cpu_time();
    while thread_cpu_time().saturating_sub(start) < d {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_uses_cpu_time() {
        let t0 = thread_cpu_time();
        burn_cpu(Duration::from_millis(3));
        assert!(thread_cpu_time() - t0 >= Duration::from_millis(3));
    }
}
