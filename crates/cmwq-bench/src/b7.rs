//! B7, requeue storm and non-reentrancy: four producers queue the same item 1,000,000 times
//! in total (250,000 each) while it runs for 50 us (a wall-clock busy-wait). A work item is
//! one request slot, not a queue of calls: queueing an item that is already pending does
//! nothing (one atomic read-modify-write), so however hard it is hammered it runs far fewer
//! times than it is queued, never on two threads at once, and still once after every request
//! (DESIGN.md section 2, guarantees 1 and 2).
//!
//! Metrics, for every system:
//! * `queued`: queue calls made (peers stop submitting at their deadline);
//! * `executions`: times the item's body ran (for cmwq far fewer than `queued`);
//! * `overlaps`: executions that began while another execution of the same item was running
//!   (a counter of running executions, raised at entry: a nonzero previous value is an
//!   overlap). Must be 0 for cmwq;
//! * `ns_per_queue`: the producers' CPU time (their thread CPU clocks) per queue call, and
//!   `ns_per_queue_wall` the same in wall-clock time: 4 producers and the item share 2
//!   cores, so a call's wall time includes waiting for a core;
//! * `wall_ms`: from the start of the producers until the item is idle (cmwq) or the deadline
//!   (peers).
//!
//! cmwq only: `accepted` is the queue calls that returned `true` (each must give exactly one
//! execution: `executions_match_accepted`), and `ran_after_last_queue` is 1 if some execution
//! started after every producer's last queue call, i.e. no request was lost. Each producer
//! stores the sequence number of its call (Relaxed) just before making it; the item loads all
//! four at entry and keeps the maximum seen; the flag is 1 if it saw every producer's last
//! number. That is exactly the guarantee: an execution that starts after the call's atomic
//! (cmwq's queue/dequeue orderings, not the Relaxed store, make the number visible to it). An
//! execution may start before the call *returns* (the worker clears PENDING and starts while
//! the caller is still on its way out), so "started after the return" would be racy.
//! cmwq runs on a per-CPU workqueue (queueing goes to the caller's CPU's pool, so the
//! cross-pool redirect keeps the item on one thread); the `_unbound` metrics repeat the run on
//! an unbound workqueue.
//!
//! Peers have no pending state: every submission is a copy that runs (executions = queue
//! count), so they get the same 1,000,000 submissions of a closure doing the same 50 us
//! busy-wait, and copies run in parallel (`overlaps` > 0 is expected: that is the point of the
//! comparison). 1,000,000 x 50 us is 25 s on 2 cores, so a peer's run is cut at
//! `PEER_DEADLINE`: what it reached by then is reported, and later copies return at once.

use crate::measure::thread_cpu_time;
use crate::peers::{CmwqKind, Pool, SYSTEMS};
use crate::Report;
use cmwq::{Runtime, Work};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

const PRODUCERS: usize = 4;
/// Queue calls in total.
const QUEUES: u64 = 1_000_000;
const PER_PRODUCER: u64 = QUEUES / PRODUCERS as u64;
/// How long one execution busy-waits.
const RUN_FOR: Duration = Duration::from_micros(50);
/// A peer's run is cut here: submissions stop, and copies not started by then do nothing.
/// (Producers check it every 64 calls: under tokio's 512 spinning blocking threads one
/// `spawn_blocking` call can take a millisecond of wall time.)
const PEER_DEADLINE: Duration = Duration::from_secs(2);

/// A counter alone on its cache lines, so producers do not share one.
#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// What the item and the producers share for one run.
#[derive(Default)]
struct Shared {
    /// Per producer: the sequence number (from 1) of its latest queue call.
    issued: [Padded; PRODUCERS],
    /// Per producer: the largest sequence number an execution saw at its start.
    seen: [AtomicU64; PRODUCERS],
    /// Executions running now.
    running: AtomicUsize,
    executions: AtomicU64,
    overlaps: AtomicU64,
    /// Set at a peer's deadline: later copies return at once.
    stop: AtomicBool,
}

impl Shared {
    /// The item's body.
    fn execute(&self) {
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        for (seen, issued) in self.seen.iter().zip(&self.issued) {
            seen.fetch_max(issued.0.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        if self.running.fetch_add(1, Ordering::AcqRel) > 0 {
            self.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        self.executions.fetch_add(1, Ordering::Relaxed);
        let end = Instant::now() + RUN_FOR;
        while Instant::now() < end {
            std::hint::spin_loop();
        }
        self.running.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether executions saw every producer's last queue call.
    fn saw_every_last_call(&self) -> bool {
        self.seen.iter().all(|s| s.load(Ordering::Relaxed) == PER_PRODUCER)
    }
}

/// What one run measured.
struct Outcome {
    queued: u64,
    accepted: u64,
    executions: u64,
    overlaps: u64,
    ns_per_queue: f64,
    ns_per_queue_wall: f64,
    wall_ms: f64,
    ran_after_last_queue: bool,
}

pub(crate) fn run(r: &mut Report) -> Result<(), String> {
    for &sys in SYSTEMS {
        let o = if sys == "cmwq" { cmwq_run(r.ncpu, false)? } else { peer_run(sys, r.ncpu)? };
        r.say(&format!(
            "b7 {sys:<10} {:>7} queued  {:>7} executions  {:>6} overlaps  {:>6.1} ns/queue (cpu)  {:>7.1} ms",
            o.queued, o.executions, o.overlaps, o.ns_per_queue, o.wall_ms
        ));
        r.record("b7", sys, "queued", o.queued as f64);
        r.record("b7", sys, "executions", o.executions as f64);
        r.record("b7", sys, "overlaps", o.overlaps as f64);
        r.record("b7", sys, "ns_per_queue", o.ns_per_queue);
        r.record("b7", sys, "ns_per_queue_wall", o.ns_per_queue_wall);
        r.record("b7", sys, "wall_ms", o.wall_ms);
        if sys == "cmwq" {
            r.record("b7", sys, "accepted", o.accepted as f64);
            r.record("b7", sys, "executions_match_accepted", flag(o.executions == o.accepted));
            r.record("b7", sys, "ran_after_last_queue", flag(o.ran_after_last_queue));
            if o.executions != o.accepted || !o.ran_after_last_queue {
                r.say(&format!(
                    "b7 WARNING: cmwq accepted {} queueings but ran {} times; saw the last calls: {}",
                    o.accepted, o.executions, o.ran_after_last_queue
                ));
            }
        }
    }
    let u = cmwq_run(r.ncpu, true)?;
    r.say(&format!(
        "b7 cmwq (unbound) {:>7} executions  {:>6} overlaps  {:>6.1} ns/queue (cpu)  after last queue: {}",
        u.executions, u.overlaps, u.ns_per_queue, u.ran_after_last_queue
    ));
    r.record("b7", "cmwq", "executions_unbound", u.executions as f64);
    r.record("b7", "cmwq", "overlaps_unbound", u.overlaps as f64);
    r.record("b7", "cmwq", "ns_per_queue_unbound", u.ns_per_queue);
    r.record("b7", "cmwq", "ran_after_last_queue_unbound", flag(u.ran_after_last_queue));

    let overlaps = r.get("b7", "cmwq", "overlaps").unwrap_or(f64::NAN);
    let after = r.get("b7", "cmwq", "ran_after_last_queue").unwrap_or(0.0);
    r.record("b7", "cmwq", "meets_target", flag(overlaps == 0.0 && after == 1.0));
    Ok(())
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// cmwq: one item, queued by all producers, on a per-CPU or an unbound workqueue.
fn cmwq_run(ncpu: usize, unbound: bool) -> Result<Outcome, String> {
    let rt = Runtime::builder().cpus(ncpu).build();
    let b = rt.workqueue("b7");
    let wq = if unbound { b.unbound() } else { b }.build().map_err(|e| format!("cmwq: {e}"))?;
    let s: &'static Shared = Box::leak(Box::default());
    let w = Work::new(move |_| s.execute());
    let t0 = Instant::now();
    let p = produce(None, |p, seq| {
        s.issued[p].0.store(seq, Ordering::Relaxed);
        wq.queue(&w)
    });
    w.flush();
    let wall = t0.elapsed();
    drop(wq);
    drop(rt);
    Ok(Outcome {
        queued: p.calls,
        accepted: p.accepted,
        executions: s.executions.load(Ordering::Relaxed),
        overlaps: s.overlaps.load(Ordering::Relaxed),
        ns_per_queue: p.cpu.as_nanos() as f64 / p.calls as f64,
        ns_per_queue_wall: p.wall.as_nanos() as f64 / p.calls as f64,
        wall_ms: wall.as_secs_f64() * 1e3,
        ran_after_last_queue: s.saw_every_last_call(),
    })
}

/// A peer: every submission is a copy of the closure, run until the deadline.
fn peer_run(sys: &str, ncpu: usize) -> Result<Outcome, String> {
    let pool = Pool::new(sys, ncpu, CmwqKind::Unbound { max_active: 0 })?;
    let s: &'static Shared = Box::leak(Box::default());
    let t0 = Instant::now();
    let deadline = t0 + PEER_DEADLINE;
    let p = produce(Some(deadline), |p, seq| {
        s.issued[p].0.store(seq, Ordering::Relaxed);
        pool.spawn(move || s.execute());
        true
    });
    while Instant::now() < deadline && s.executions.load(Ordering::Relaxed) < p.calls {
        thread::sleep(Duration::from_millis(1));
    }
    s.stop.store(true, Ordering::Relaxed);
    let wall = t0.elapsed();
    let (executions, overlaps) = (s.executions.load(Ordering::Relaxed), s.overlaps.load(Ordering::Relaxed));
    // What is left returns at once.
    pool.finish(false);
    Ok(Outcome {
        queued: p.calls,
        accepted: p.calls,
        executions,
        overlaps,
        ns_per_queue: p.cpu.as_nanos() as f64 / p.calls as f64,
        ns_per_queue_wall: p.wall.as_nanos() as f64 / p.calls as f64,
        wall_ms: wall.as_secs_f64() * 1e3,
        ran_after_last_queue: s.saw_every_last_call(),
    })
}

/// The producers' totals.
#[derive(Default)]
struct Produced {
    calls: u64,
    accepted: u64,
    /// Summed over the producers.
    cpu: Duration,
    wall: Duration,
}

/// Runs `PRODUCERS` threads, each making `PER_PRODUCER` calls `queue(producer, seq)` with
/// `seq` from 1 (fewer if `deadline` passes); `queue` returns whether it was accepted.
fn produce<F>(deadline: Option<Instant>, queue: F) -> Produced
where
    F: Fn(usize, u64) -> bool + Sync,
{
    let start = Barrier::new(PRODUCERS);
    let (start, queue) = (&start, &queue);
    thread::scope(|sc| {
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                sc.spawn(move || {
                    start.wait();
                    let (c0, t0) = (thread_cpu_time(), Instant::now());
                    let mut out = Produced::default();
                    for seq in 1..=PER_PRODUCER {
                        if seq % 64 == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        out.accepted += u64::from(queue(p, seq));
                        out.calls += 1;
                    }
                    out.cpu = thread_cpu_time() - c0;
                    out.wall = t0.elapsed();
                    out
                })
            })
            .collect();
        handles.into_iter().fold(Produced::default(), |mut acc, h| {
            let o = h.join().expect("a producer panicked");
            acc.calls += o.calls;
            acc.accepted += o.accepted;
            acc.cpu += o.cpu;
            acc.wall += o.wall;
            acc
        })
    })
}
