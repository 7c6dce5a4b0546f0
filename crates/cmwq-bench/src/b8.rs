//! B8, cancel and flush semantics and latency: 10,000 delayed items, each due 1-100 ms after it
//! is queued (seeded RNG, the same plan for every system). Half of them are cancelled by one
//! canceller thread, each at a random moment: half of those anywhere between queueing and the
//! due time (mostly an armed timer to take away), the other half within +-200 us of the due
//! time (racing the timer, the hand-off to a worker and the item itself). Once every due time
//! has passed, the rest are flushed. Each execution busy-waits 5 us, so a cancel can find the
//! item running. This is what `cancel_delayed_work_sync` promises the kernel's users (a
//! driver's teardown relies on it): on return the item is neither armed, nor queued, nor
//! running.
//!
//! Metrics:
//! * `late_p50_us`, `late_p99_us`, `late_max_us`: timer lateness, measured inside the item as
//!   its start instant minus its due instant (the instant taken just before the queue call
//!   plus the delay), over every execution;
//! * `cancel_sync_p50_us`, `cancel_sync_p99_us`: latency of the cancel call;
//! * `ran_after_cancel`: items that started after their cancel returned (a per-item flag set
//!   right after the cancel call returns, checked at the item's entry). Must be 0;
//! * `running_at_cancel_return`: items still running when their cancel returned (the item
//!   raises a `running` flag at entry and the canceller checks it after raising `cancelled`;
//!   both SeqCst, so at least one side sees the other). Must be 0 for a synchronous cancel;
//! * `completed`: executions; `lost`: items never cancelled that never ran (must be 0);
//! * `fired_early`: executions that started before their due time (must be 0: nothing is
//!   flushed before every due time has passed).
//!
//! cmwq (per-CPU workqueue, `queue_delayed`, `DelayedWork::cancel_sync`, `DelayedWork::flush`)
//! also records `cancelled_pending` (cancels that took a pending instance away) and
//! `accounted` (1 if every item either ran exactly once or was cancelled while pending, never
//! both). Peers: `tokio` is an async task `sleep_until(due)` that then `spawn_blocking`s the
//! body, cancelled with `JoinHandle::abort` (which cannot stop a blocking body already handed
//! off; its ran_after_cancel is counted honestly, and its timer has 1 ms granularity);
//! `crossbeam` is a DIY timer: one thread sleeps until each due instant of the sorted plan and
//! sends the item to the crossbeam-channel pool, and cancel sets an AtomicBool the job checks
//! before running (not synchronous either). Their cancel latency is that of `abort()` and of
//! the store.

use crate::measure::{quantile, Latch, SplitMix64};
use crate::peers::{CmwqKind, Pool};
use crate::Report;
use cmwq::{DelayedWork, Runtime};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const ITEMS: usize = 10_000;
const CANCELLED: usize = ITEMS / 2;
const MIN_DELAY_US: u64 = 1_000;
const MAX_DELAY_US: u64 = 100_000;
/// Cancels racing the due time land within this many microseconds of it.
const RACE_US: u64 = 200;
/// How long one execution busy-waits.
const BODY: Duration = Duration::from_micros(5);
const SEED: u64 = 0x00b8_5eed;
/// Give up waiting for flushes after this long.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The systems of this workload.
const B8_SYSTEMS: &[&str] = &["cmwq", "tokio", "crossbeam"];

/// One item's plan and record.
#[derive(Default)]
struct Item {
    delay: Duration,
    /// When to cancel it, relative to its due instant (in microseconds), if it is cancelled.
    cancel_at_us: Option<i64>,
    due: OnceLock<Instant>,
    /// DIY cancel (crossbeam): checked by the job before running.
    cancel_req: AtomicBool,
    /// Set right after the cancel call returned.
    cancelled: AtomicBool,
    /// Whether the cancel call said it took a pending instance away.
    took_pending: AtomicBool,
    running: AtomicBool,
    started_after_cancel: AtomicBool,
    runs: AtomicU32,
    /// Start minus due, in nanoseconds, of the last execution.
    late_ns: AtomicI64,
}

/// Everything one run shares.
struct Shared {
    items: Vec<Item>,
    /// Counts down once per execution of an item that is never cancelled.
    kept: Latch,
    running_at_return: AtomicU64,
}

impl Shared {
    fn new() -> Shared {
        // A seeded generator, so every system gets the same plan.
        let mut rng = SplitMix64::new(SEED);
        let mut items: Vec<Item> = (0..ITEMS)
            .map(|_| Item { delay: Duration::from_micros(rng.range(MIN_DELAY_US, MAX_DELAY_US)), ..Item::default() })
            .collect();
        // Partial Fisher-Yates: the first CANCELLED of a shuffled index list are cancelled.
        let mut idx: Vec<usize> = (0..ITEMS).collect();
        for k in 0..CANCELLED {
            let j = rng.range(k as u64, (ITEMS - 1) as u64) as usize;
            idx.swap(k, j);
            let it = &mut items[idx[k]];
            let delay_us = it.delay.as_micros() as u64;
            it.cancel_at_us = Some(if k % 2 == 0 {
                -(rng.range(0, delay_us) as i64)
            } else {
                rng.range(0, 2 * RACE_US) as i64 - RACE_US as i64
            });
        }
        Shared { items, kept: Latch::counting(ITEMS - CANCELLED), running_at_return: AtomicU64::new(0) }
    }

    /// Records the due instant of item `i`, just before it is queued.
    fn arm(&self, i: usize) -> Instant {
        let due = Instant::now() + self.items[i].delay;
        self.items[i].due.set(due).expect("an item is queued once");
        due
    }

    /// The item's body.
    fn execute(&self, i: usize) {
        let now = Instant::now();
        let it = &self.items[i];
        it.running.store(true, Ordering::SeqCst);
        if it.cancelled.load(Ordering::SeqCst) {
            it.started_after_cancel.store(true, Ordering::Relaxed);
        }
        it.runs.fetch_add(1, Ordering::Relaxed);
        let due = *it.due.get().expect("due set before queueing");
        let late = if now >= due { (now - due).as_nanos() as i64 } else { -((due - now).as_nanos() as i64) };
        it.late_ns.store(late, Ordering::Relaxed);
        let end = now + BODY;
        while Instant::now() < end {
            std::hint::spin_loop();
        }
        it.running.store(false, Ordering::SeqCst);
        if it.cancel_at_us.is_none() {
            self.kept.count_down();
        }
    }

    /// The cancel schedule, in time order: (instant, item).
    fn cancel_order(&self) -> Vec<(Instant, usize)> {
        let mut v: Vec<(Instant, usize)> = self
            .items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| {
                let off = it.cancel_at_us?;
                let due = *it.due.get()?;
                let d = Duration::from_micros(off.unsigned_abs());
                Some((if off >= 0 { due + d } else { due.checked_sub(d).unwrap_or(due) }, i))
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Cancels every planned item at its moment with `cancel` (which returns whether it took a
    /// pending instance away); returns the cancel calls' latencies.
    fn cancel_all(&self, cancel: impl Fn(usize) -> bool) -> Vec<Duration> {
        let mut lat = Vec::with_capacity(CANCELLED);
        for (at, i) in self.cancel_order() {
            let now = Instant::now();
            if now < at {
                thread::sleep(at - now);
            }
            let it = &self.items[i];
            let c0 = Instant::now();
            let took = cancel(i);
            lat.push(c0.elapsed());
            it.cancelled.store(true, Ordering::SeqCst);
            if it.running.load(Ordering::SeqCst) {
                self.running_at_return.fetch_add(1, Ordering::Relaxed);
            }
            it.took_pending.store(took, Ordering::Relaxed);
        }
        lat
    }

    /// Cancels the planned items on a thread of its own (see `cancel_all`) while this thread
    /// sleeps until every due instant has passed; returns the cancel latencies.
    fn cancel_while_due(&self, cancel: impl Fn(usize) -> bool + Send + Sync) -> Vec<Duration> {
        thread::scope(|sc| {
            let canceller = sc.spawn(|| self.cancel_all(cancel));
            self.wait_all_due();
            canceller.join().expect("the canceller panicked")
        })
    }

    /// Sleeps until every due instant has passed.
    fn wait_all_due(&self) {
        let last = self.items.iter().filter_map(|it| it.due.get().copied()).max();
        if let Some(last) = last {
            let now = Instant::now();
            if now < last {
                thread::sleep(last - now);
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// What one run measured.
struct Outcome {
    late_p50_us: f64,
    late_p99_us: f64,
    late_max_us: f64,
    cancel_p50_us: f64,
    cancel_p99_us: f64,
    ran_after_cancel: u64,
    running_at_cancel_return: u64,
    completed: u64,
    lost: u64,
    fired_early: u64,
    cancelled_pending: u64,
    accounted: bool,
}

fn outcome(s: &Shared, mut cancel_lat: Vec<Duration>) -> Outcome {
    let us = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
    let mut late = Vec::new();
    let (mut ran_after, mut completed, mut lost, mut early, mut took, mut accounted) = (0, 0, 0, 0, 0, true);
    for it in &s.items {
        let runs = it.runs.load(Ordering::Relaxed);
        let took_pending = it.took_pending.load(Ordering::Relaxed);
        completed += u64::from(runs);
        took += u64::from(took_pending);
        ran_after += u64::from(it.started_after_cancel.load(Ordering::Relaxed));
        lost += u64::from(runs == 0 && it.cancel_at_us.is_none());
        accounted &= if took_pending { runs == 0 } else { runs == 1 };
        if runs > 0 {
            let l = it.late_ns.load(Ordering::Relaxed);
            if l < 0 {
                early += 1;
            }
            late.push(Duration::from_nanos(l.max(0) as u64));
        }
    }
    Outcome {
        late_p50_us: us(quantile(&mut late, 0.5)),
        late_p99_us: us(quantile(&mut late, 0.99)),
        late_max_us: us(quantile(&mut late, 1.0)),
        cancel_p50_us: us(quantile(&mut cancel_lat, 0.5)),
        cancel_p99_us: us(quantile(&mut cancel_lat, 0.99)),
        ran_after_cancel: ran_after,
        running_at_cancel_return: s.running_at_return.load(Ordering::Relaxed),
        completed,
        lost,
        fired_early: early,
        cancelled_pending: took,
        accounted,
    }
}

pub(crate) fn run(r: &mut Report) -> Result<(), String> {
    for &sys in B8_SYSTEMS {
        let o = match sys {
            "cmwq" => cmwq_run(r.ncpu)?,
            "tokio" => tokio_run(r.ncpu)?,
            _ => crossbeam_run(r.ncpu)?,
        };
        r.say(&format!(
            "b8 {sys:<10} late p50 {:>7.1} us p99 {:>7.1} us  cancel p50 {:>6.1} us p99 {:>6.1} us  \
             ran after cancel {}  running at return {}  completed {}  lost {}",
            o.late_p50_us,
            o.late_p99_us,
            o.cancel_p50_us,
            o.cancel_p99_us,
            o.ran_after_cancel,
            o.running_at_cancel_return,
            o.completed,
            o.lost
        ));
        r.record("b8", sys, "late_p50_us", o.late_p50_us);
        r.record("b8", sys, "late_p99_us", o.late_p99_us);
        r.record("b8", sys, "late_max_us", o.late_max_us);
        r.record("b8", sys, "cancel_sync_p50_us", o.cancel_p50_us);
        r.record("b8", sys, "cancel_sync_p99_us", o.cancel_p99_us);
        r.record("b8", sys, "ran_after_cancel", o.ran_after_cancel as f64);
        r.record("b8", sys, "running_at_cancel_return", o.running_at_cancel_return as f64);
        r.record("b8", sys, "completed", o.completed as f64);
        r.record("b8", sys, "lost", o.lost as f64);
        r.record("b8", sys, "fired_early", o.fired_early as f64);
        if sys == "cmwq" {
            r.record("b8", sys, "cancelled_pending", o.cancelled_pending as f64);
            r.record("b8", sys, "accounted", f64::from(u8::from(o.accounted)));
            let ok = o.ran_after_cancel == 0 && o.running_at_cancel_return == 0;
            r.record("b8", sys, "meets_target", f64::from(u8::from(ok)));
            if !(ok && o.accounted && o.lost == 0 && o.fired_early == 0) {
                r.say("b8 WARNING: cmwq broke a cancel/flush guarantee (see the metrics)");
            }
        }
    }
    Ok(())
}

fn cmwq_run(ncpu: usize) -> Result<Outcome, String> {
    let rt = Runtime::builder().cpus(ncpu).build();
    let wq = rt.workqueue("b8").build().map_err(|e| format!("cmwq: {e}"))?;
    let s = Arc::new(Shared::new());
    let items: Vec<DelayedWork> = (0..ITEMS)
        .map(|i| {
            let s = s.clone();
            DelayedWork::new(move |_| s.execute(i))
        })
        .collect();
    for (i, d) in items.iter().enumerate() {
        s.arm(i);
        if !wq.queue_delayed(d, s.items[i].delay) {
            return Err(format!("b8: cmwq refused delayed item {i}"));
        }
    }
    let lat = s.cancel_while_due(|i| items[i].cancel_sync());
    for (d, it) in items.iter().zip(&s.items) {
        if it.cancel_at_us.is_none() {
            d.flush();
        }
    }
    // Anything wrongly still queued runs now and is counted.
    wq.flush();
    drop(wq);
    drop(rt);
    Ok(outcome(&s, lat))
}

fn tokio_run(ncpu: usize) -> Result<Outcome, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(ncpu)
        .enable_time()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    let s = Arc::new(Shared::new());
    let handles: Vec<tokio::task::JoinHandle<()>> = (0..ITEMS)
        .map(|i| {
            let due = tokio::time::Instant::from_std(s.arm(i));
            let s = s.clone();
            rt.spawn(async move {
                tokio::time::sleep_until(due).await;
                drop(tokio::task::spawn_blocking(move || s.execute(i)));
            })
        })
        .collect();
    let lat = s.cancel_while_due(|i| {
        handles[i].abort();
        false
    });
    s.kept.wait_until(Instant::now() + FLUSH_TIMEOUT);
    // Stragglers of aborted items that were already handed off get a moment to show up.
    thread::sleep(Duration::from_millis(20));
    rt.shutdown_timeout(Duration::from_secs(5));
    Ok(outcome(&s, lat))
}

fn crossbeam_run(ncpu: usize) -> Result<Outcome, String> {
    let pool = Pool::new("crossbeam", ncpu, CmwqKind::PerCpuLocal)?;
    let s = Arc::new(Shared::new());
    for i in 0..ITEMS {
        s.arm(i);
    }
    let mut timers: Vec<(Instant, usize)> =
        s.items.iter().enumerate().map(|(i, it)| (*it.due.get().expect("armed"), i)).collect();
    timers.sort_unstable();
    let lat = thread::scope(|sc| {
        let pool = &pool;
        let s2 = s.clone();
        sc.spawn(move || {
            for (due, i) in timers {
                let now = Instant::now();
                if now < due {
                    thread::sleep(due - now);
                }
                let s = s2.clone();
                pool.spawn(move || {
                    if !s.items[i].cancel_req.load(Ordering::SeqCst) {
                        s.execute(i);
                    }
                });
            }
        });
        let lat = s.cancel_while_due(|i| {
            s.items[i].cancel_req.store(true, Ordering::SeqCst);
            false
        });
        s.kept.wait_until(Instant::now() + FLUSH_TIMEOUT);
        lat
    });
    thread::sleep(Duration::from_millis(20));
    pool.finish(false);
    Ok(outcome(&s, lat))
}
