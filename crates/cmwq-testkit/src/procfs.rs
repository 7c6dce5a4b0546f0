//! This process's threads, as `/proc/self/task` lists them, and `/proc/self/status`.
//!
//! A thread is listed from its start (its name, `comm`, is set once it runs) until it has
//! exited, which may be a moment after a join of it returned: a check that a thread is gone
//! waits for it with a deadline instead of asserting at once.

use std::path::PathBuf;
use std::time::Duration;

/// One thread of this process: an entry of `/proc/self/task`.
#[derive(Debug, Clone)]
pub struct Task {
    tid: u32,
    dir: PathBuf,
}

impl Task {
    /// The thread id (`gettid`).
    pub fn tid(&self) -> u32 {
        self.tid
    }

    /// The thread's name (`comm`: at most 15 bytes of it), `None` once the thread is gone.
    pub fn name(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("comm")).ok().map(|c| c.trim_end().to_owned())
    }

    /// The thread's scheduler state (the field after the name in `stat`: `R`, `S`, `D`, ...),
    /// `None` once the thread is gone.
    pub fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(self.dir.join("stat")).ok()?;
        // The name, in parentheses, may itself hold spaces and parentheses: the state follows
        // the last ')'.
        stat.rfind(')').and_then(|p| stat[p + 1..].trim_start().chars().next())
    }

    /// CPU time the thread has used (the first field of `schedstat`), `None` once it is gone.
    pub fn cpu_time(&self) -> Option<Duration> {
        let s = std::fs::read_to_string(self.dir.join("schedstat")).ok()?;
        s.split_ascii_whitespace().next()?.parse().ok().map(Duration::from_nanos)
    }
}

/// The threads of this process now (none if `/proc/self/task` cannot be read).
pub fn tasks() -> Vec<Task> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten().filter_map(|e| Some(Task { tid: e.file_name().to_str()?.parse().ok()?, dir: e.path() })).collect()
}

/// Whether a thread of this process has exactly this name (as `comm` holds it: at most 15
/// bytes).
pub fn thread_exists(name: &str) -> bool {
    tasks().iter().any(|t| t.name().is_some_and(|n| n == name))
}

/// How many threads of this process have a name starting with `prefix`.
pub fn count_threads(prefix: &str) -> usize {
    tasks().iter().filter(|t| t.name().is_some_and(|n| n.starts_with(prefix))).count()
}

/// CPU time used so far by this process's live threads whose name starts with `prefix`
/// (from `/proc/self/task/*/{comm,schedstat}`).
pub fn threads_cpu_time(prefix: &str) -> Duration {
    tasks()
        .iter()
        .filter(|t| t.name().is_some_and(|n| n.starts_with(prefix)))
        .map(|t| t.cpu_time().unwrap_or(Duration::ZERO))
        .sum()
}

/// The number in the line `key:` of `/proc/self/status` (`Threads`, `VmSize` in kB, ...),
/// `None` if there is no such line or it cannot be read.
pub fn status_field(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
}

/// Threads of this process now (`Threads:` of `/proc/self/status`), 0 if unreadable.
pub fn thread_count() -> usize {
    status_field("Threads").unwrap_or(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_this_thread_and_a_named_one() {
        let me = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        let mine = tasks().into_iter().find(|t| t.tid() == me).expect("this thread in /proc/self/task");
        assert_eq!(mine.state(), Some('R'));
        // schedstat is brought up to date when the thread is switched out.
        crate::burn_cpu(Duration::from_millis(2));
        std::thread::sleep(Duration::from_millis(1));
        assert!(mine.cpu_time().is_some_and(|t| t > Duration::ZERO));
        assert!(thread_count() >= 1);
        assert!(status_field("VmSize").is_some_and(|kb| kb > 0));

        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::Builder::new().name("testkit-probe".into()).spawn(move || rx.recv()).unwrap();
        assert!(crate::poll_until(crate::DEADLINE, Duration::from_millis(1), || thread_exists("testkit-probe")));
        assert_eq!(count_threads("testkit-pro"), 1);
        drop(tx);
        assert!(crate::poll_until(crate::DEADLINE, Duration::from_millis(1), || h.is_finished()));
        let _ = h.join();
        assert!(crate::poll_until(crate::DEADLINE, Duration::from_millis(1), || !thread_exists("testkit-probe")));
    }
}
