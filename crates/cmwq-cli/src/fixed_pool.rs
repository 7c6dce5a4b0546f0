//! The baseline the demo compares cmwq with: a fixed pool of plain `std` threads taking boxed
//! jobs from one channel, the way most programs run background work. It never grows: a job
//! that blocks holds its thread, and the jobs behind it wait.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed pool of `n` threads over an `mpsc` channel.
#[derive(Debug)]
pub struct FixedPool {
    tx: Option<mpsc::Sender<Job>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl FixedPool {
    /// Starts `n` threads (at least one).
    pub fn new(n: usize) -> std::io::Result<FixedPool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..n.max(1))
            .map(|i| {
                let rx = rx.clone();
                thread::Builder::new().name(format!("fixed-{i}")).spawn(move || loop {
                    // Hold the lock only to take the next job.
                    let job = match rx.lock() {
                        Ok(g) => g.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(FixedPool { tx: Some(tx), threads })
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Queues a job.
    pub fn submit(&self, f: impl FnOnce() + Send + 'static) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Box::new(f));
        }
    }

    /// Runs every queued job, then stops and joins the threads.
    pub fn join(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for FixedPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn runs_every_job() {
        let pool = FixedPool::new(3).unwrap();
        assert_eq!(pool.threads(), 3);
        let n = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let n = n.clone();
            pool.submit(move || {
                n.fetch_add(1, Ordering::Relaxed);
            });
        }
        pool.join();
        assert_eq!(n.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn blocking_jobs_hold_threads() {
        let pool = FixedPool::new(2).unwrap();
        let t = Instant::now();
        for _ in 0..4 {
            pool.submit(|| thread::sleep(Duration::from_millis(50)));
        }
        pool.join();
        // Four 50 ms sleeps on two threads take two rounds.
        assert!(t.elapsed() >= Duration::from_millis(100));
    }
}
