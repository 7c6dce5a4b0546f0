//! The item kinds of the demo, and what they need to run: a simulated device that completes
//! pipe reads after a delay, and a calibrated CPU burner.
//!
//! An [`Item`] first blocks (in `thread::sleep`, or in a read on a Unix socket that the
//! [`Device`] thread writes to once the item's I/O delay has passed) and then burns a fixed
//! amount of CPU *work* (a calibrated number of loop iterations, not a wall-clock span), so the
//! same item costs the same CPU on any executor, however many threads share the CPUs.
//!
//! For the demo's memory-pressure phase, an item can also first allocate memory
//! ([`Block::Alloc`]): while [`Memory`] is short, that blocks (on a condition variable) until
//! memory comes back, as an allocation in direct reclaim waits for reclaim to make progress.
//!
//! None of this uses `cmwq::blocking`: cmwq must find out on its own that a worker sleeps.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How an item blocks before its CPU part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// No blocking.
    None,
    /// `thread::sleep` for this long (a synchronous wait, e.g. an fsync).
    Sleep(Duration),
    /// A blocking read on a Unix socket, answered by the device after this long.
    Pipe(Duration),
    /// Allocate memory (block while [`Memory`] is short), then a socket read like `Pipe`.
    Alloc(Duration),
}

/// One unit of demo work: block, then burn CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// The blocking part.
    pub block: Block,
    /// The CPU part, in microseconds of calibrated work.
    pub cpu_us: u32,
}

impl Item {
    /// Runs the item on the calling thread.
    pub fn run(&self, device: &Device, burner: &Burner, memory: &Memory) {
        match self.block {
            Block::None => {}
            Block::Sleep(d) => thread::sleep(d),
            Block::Pipe(d) => device.read_after(d),
            Block::Alloc(d) => {
                memory.allocate();
                device.read_after(d);
            }
        }
        burner.burn_us(self.cpu_us);
    }

    /// The item's own time if it ran alone on an idle CPU.
    pub fn nominal(&self) -> Duration {
        let b = match self.block {
            Block::None => Duration::ZERO,
            Block::Sleep(d) | Block::Pipe(d) | Block::Alloc(d) => d,
        };
        b + Duration::from_micros(u64::from(self.cpu_us))
    }
}

/// Simulated free memory: plenty, or short (allocations block until it is plenty again).
#[derive(Debug, Default)]
pub struct Memory {
    short: Mutex<bool>,
    back: Condvar,
}

impl Memory {
    /// Makes memory short (`true`) or gives it back (`false`), waking blocked allocations.
    pub fn set_short(&self, short: bool) {
        *self.short.lock().unwrap_or_else(PoisonError::into_inner) = short;
        if !short {
            self.back.notify_all();
        }
    }

    /// An allocation: returns at once unless memory is short, else when it comes back.
    pub fn allocate(&self) {
        let mut g = self.short.lock().unwrap_or_else(PoisonError::into_inner);
        while *g {
            g = self.back.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A CPU burner calibrated so that `burn_us(n)` does about `n` microseconds of work on an
/// idle CPU of this machine.
#[derive(Debug, Clone, Copy)]
pub struct Burner {
    iters_per_us: f64,
}

impl Burner {
    /// Measures this machine (about 30-60 ms, best of five rounds).
    pub fn calibrate() -> Burner {
        const N: u64 = 200_000;
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            std::hint::black_box(spin(N));
            best = best.min(t.elapsed());
        }
        let us = best.as_secs_f64() * 1e6;
        Burner { iters_per_us: (N as f64 / us.max(1e-3)).max(1.0) }
    }

    /// A burner with a given speed (for tests).
    #[cfg(test)]
    pub fn with_rate(iters_per_us: f64) -> Burner {
        Burner { iters_per_us }
    }

    /// Burns about `us` microseconds of CPU work.
    pub fn burn_us(&self, us: u32) {
        if us > 0 {
            std::hint::black_box(spin((f64::from(us) * self.iters_per_us) as u64));
        }
    }
}

/// The work loop: an xorshift chain the optimiser cannot shorten.
fn spin(n: u64) -> u64 {
    let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// A simulated device: a thread that completes "I/O requests" by writing one byte to the
/// requester's socket once the request's latency has passed.
#[derive(Debug)]
pub struct Device {
    tx: Option<mpsc::Sender<(Instant, UnixStream)>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Device {
    /// Starts the device thread.
    pub fn start() -> std::io::Result<Device> {
        let (tx, rx) = mpsc::channel::<(Instant, UnixStream)>();
        let thread = thread::Builder::new().name("demo-device".into()).spawn(move || device_loop(&rx))?;
        Ok(Device { tx: Some(tx), thread: Some(thread) })
    }

    /// Submits a request that completes after `latency` and blocks in `read` until it does.
    pub fn read_after(&self, latency: Duration) {
        let Ok((mut mine, theirs)) = UnixStream::pair() else {
            thread::sleep(latency);
            return;
        };
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send((Instant::now() + latency, theirs)).is_ok());
        if !sent {
            thread::sleep(latency);
            return;
        }
        let mut b = [0u8; 1];
        // EOF (device gone) or the byte: either way the request is over.
        let _ = mine.read(&mut b);
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn device_loop(rx: &mpsc::Receiver<(Instant, UnixStream)>) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut streams: HashMap<u64, UnixStream> = HashMap::new();
    let mut seq = 0u64;
    let mut open = true;
    loop {
        let now = Instant::now();
        while let Some(Reverse((due, id))) = heap.peek().copied() {
            if due > now {
                break;
            }
            heap.pop();
            if let Some(mut s) = streams.remove(&id) {
                let _ = s.write_all(b"x");
            }
        }
        if !open && heap.is_empty() {
            return;
        }
        let got = match heap.peek() {
            Some(Reverse((due, _))) if !open => {
                thread::sleep(due.saturating_duration_since(now));
                continue;
            }
            Some(Reverse((due, _))) => rx.recv_timeout(due.saturating_duration_since(now)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok((due, s)) => {
                seq += 1;
                heap.push(Reverse((due, seq)));
                streams.insert(seq, s);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_answers_after_the_latency() {
        let dev = Device::start().unwrap();
        let t = Instant::now();
        dev.read_after(Duration::from_millis(20));
        let e = t.elapsed();
        assert!(e >= Duration::from_millis(20), "{e:?}");
        assert!(e < Duration::from_secs(2), "{e:?}");
    }

    #[test]
    fn device_serves_concurrent_requests() {
        let dev = std::sync::Arc::new(Device::start().unwrap());
        let t = Instant::now();
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let dev = dev.clone();
                thread::spawn(move || dev.read_after(Duration::from_millis(30 - i)))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(t.elapsed() < Duration::from_millis(1000));
    }

    #[test]
    fn item_runs_block_then_cpu() {
        let dev = Device::start().unwrap();
        let b = Burner::with_rate(1.0);
        let it = Item { block: Block::Sleep(Duration::from_millis(5)), cpu_us: 100 };
        let t = Instant::now();
        it.run(&dev, &b, &Memory::default());
        assert!(t.elapsed() >= Duration::from_millis(5));
        assert_eq!(it.nominal(), Duration::from_micros(5100));
    }

    #[test]
    fn allocation_waits_while_memory_is_short() {
        let dev = Device::start().unwrap();
        let mem = std::sync::Arc::new(Memory::default());
        let it = Item { block: Block::Alloc(Duration::from_millis(1)), cpu_us: 0 };
        // Plenty of memory: no wait beyond the read.
        let t = Instant::now();
        it.run(&dev, &Burner::with_rate(1.0), &mem);
        assert!(t.elapsed() < Duration::from_secs(2));
        mem.set_short(true);
        // Asserted by order, not time: the allocation returns only after memory came back.
        let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m2, r2) = (mem.clone(), released.clone());
        let h = thread::spawn(move || {
            m2.allocate();
            r2.load(std::sync::atomic::Ordering::SeqCst)
        });
        thread::sleep(Duration::from_millis(50));
        assert!(!h.is_finished());
        released.store(true, std::sync::atomic::Ordering::SeqCst);
        mem.set_short(false);
        assert!(h.join().unwrap(), "the allocation returned while memory was short");
    }

    #[test]
    fn calibration_is_sane() {
        let b = Burner::calibrate();
        assert!(b.iters_per_us >= 1.0);
    }
}
