//! Context-switch records: what a worker's switch ring says about it (kernel-notes §4.3,
//! docs/design.md §4.2).
//!
//! Each per-CPU worker opens a software perf event on itself (`sys::SwitchEvent`) that asks
//! the kernel for a `PERF_RECORD_SWITCH` record each time the thread is switched out or in.
//! This module turns those records into what concurrency management needs: is the thread
//! blocked (switched out and not runnable), preempted (switched out but still runnable: it
//! keeps counting as running), or running. It is plain parsing and a small state machine, no
//! system call, so it is unit-tested on recorded sequences and run under Miri.
//!
//! The record layout (perf_event_open(2)): a `perf_event_header` (`type: u32`, `misc: u16`,
//! `size: u16`) and, with `sample_id_all` and `sample_type = PERF_SAMPLE_TIME` as the event is
//! opened, a trailing `u64` time (CLOCK_MONOTONIC, `use_clockid`). A `PERF_RECORD_LOST` record
//! carries `id: u64, lost: u64` before it: records were dropped because the ring was full, so
//! the latest state is unknown until the next switch record.

/// `PERF_RECORD_LOST` (include/uapi/linux/perf_event.h).
const PERF_RECORD_LOST: u32 = 2;
/// `PERF_RECORD_SWITCH`.
const PERF_RECORD_SWITCH: u32 = 14;
/// `PERF_RECORD_MISC_SWITCH_OUT`: the thread was switched out (else in).
const MISC_SWITCH_OUT: u16 = 1 << 13;
/// `PERF_RECORD_MISC_SWITCH_OUT_PREEMPT`: switched out while still runnable (preempted).
const MISC_SWITCH_OUT_PREEMPT: u16 = 1 << 14;
/// Size of `perf_event_header`.
const HEADER: usize = 8;

use crate::sync::Mutex;
use crate::sys::{Poller, SwitchEvent, ThreadProbe, SWITCH_RING_BYTES};

/// One record of a switch ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SwitchRecord {
    /// Switched out; `preempted` if it was still runnable.
    Out { preempted: bool, time_ns: Option<u64> },
    /// Switched in.
    In { time_ns: Option<u64> },
    /// `count` records were lost (the ring was full).
    Lost { count: u64 },
    /// Any other record type (ignored).
    Other,
}

impl SwitchRecord {
    /// Parses one record from its header's `ty` and `misc` and its body (the bytes after the
    /// header). A body too short for its type is read as far as it goes: a switch without its
    /// time, a loss of unknown size (counted as one).
    fn parse(ty: u32, misc: u16, body: &[u8]) -> SwitchRecord {
        match ty {
            PERF_RECORD_SWITCH => {
                let time_ns = read_u64(body, 0);
                if misc & MISC_SWITCH_OUT != 0 {
                    SwitchRecord::Out { preempted: misc & MISC_SWITCH_OUT_PREEMPT != 0, time_ns }
                } else {
                    SwitchRecord::In { time_ns }
                }
            }
            PERF_RECORD_LOST => SwitchRecord::Lost { count: read_u64(body, 8).unwrap_or(1).max(1) },
            _ => SwitchRecord::Other,
        }
    }
}

/// The native-endian `u64` at byte `at` of `body`, if the body holds it.
fn read_u64(body: &[u8], at: usize) -> Option<u64> {
    let b = body.get(at..at + 8)?;
    Some(u64::from_ne_bytes(b.try_into().ok()?))
}

/// Parses a contiguous run of records (headers included), as they lie in a ring between its
/// tail and head once unwrapped; stops at a header that is truncated or claims a size smaller
/// than a header (a corrupt ring: the rest is unreadable). Returns the records and the number
/// of bytes consumed. (The worker's ring is read record by record through `perf-event2`; this
/// reads recorded sequences in the tests.)
#[cfg(test)]
fn parse_stream(bytes: &[u8], out: &mut Vec<SwitchRecord>) -> usize {
    let mut at = 0;
    while let Some(h) = bytes.get(at..at + HEADER) {
        let ty = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]);
        let misc = u16::from_ne_bytes([h[4], h[5]]);
        let size = u16::from_ne_bytes([h[6], h[7]]) as usize;
        if size < HEADER {
            break;
        }
        let Some(body) = bytes.get(at + HEADER..at + size) else { break };
        out.push(SwitchRecord::parse(ty, misc, body));
        at += size;
    }
    at
}

/// What the records say about the thread now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Seen {
    /// No record yet, or records were lost since the last one: the detector cannot tell, and
    /// the sampling monitor decides for this worker until the next switch record.
    #[default]
    Unknown,
    /// Switched in: on a CPU.
    Running,
    /// Switched out while runnable: it still counts as running (the kernel's hooks do not
    /// fire on preemption either).
    Preempted,
    /// Switched out and not runnable: blocked or sleeping (`wq_worker_sleeping`).
    Blocked,
}

/// A worker's switch state: the last record's verdict and when it blocked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SwitchState {
    /// What the last record said.
    pub(super) seen: Seen,
    /// The time of the last blocking switch-out (CLOCK_MONOTONIC ns), if it had one.
    blocked_at: Option<u64>,
    /// Records lost over the ring's life.
    lost: u64,
}

impl SwitchState {
    /// Applies one record, in ring order.
    fn apply(&mut self, r: SwitchRecord) {
        match r {
            SwitchRecord::Out { preempted: true, .. } => self.seen = Seen::Preempted,
            SwitchRecord::Out { preempted: false, time_ns } => {
                self.seen = Seen::Blocked;
                self.blocked_at = time_ns;
            }
            SwitchRecord::In { .. } => self.seen = Seen::Running,
            SwitchRecord::Lost { count } => {
                self.seen = Seen::Unknown;
                self.lost += count;
            }
            SwitchRecord::Other => {}
        }
    }
}

/// What concurrency management does with a busy worker, given its switch state and whether it
/// is marked sleeping by the monitor now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Blocked and not yet marked: `worker_sleeping`.
    Sleeping,
    /// Marked sleeping but on a CPU again (running or preempted): `worker_running`.
    Running,
    /// Nothing to change.
    Keep,
    /// The records cannot tell: let the sampling monitor decide for this worker.
    Sample,
}

/// The detector's decision (one transition, whatever the source: docs/design.md §4).
pub(crate) fn verdict(seen: Seen, marked_sleeping: bool) -> Verdict {
    match (seen, marked_sleeping) {
        (Seen::Unknown, _) => Verdict::Sample,
        (Seen::Blocked, false) => Verdict::Sleeping,
        (Seen::Running | Seen::Preempted, true) => Verdict::Running,
        _ => Verdict::Keep,
    }
}

/// A worker's switch event as the monitor holds it: the ring, what its records said so far,
/// and whether the monitor's poller is armed for it. Opened by the worker for itself when it
/// starts ([`Monitor::open_switch`](super::Monitor::open_switch)), closed when it exits.
#[derive(Debug)]
pub(crate) struct WorkerSwitch {
    /// I: the worker's token in the monitor's poller.
    pub(super) token: u64,
    /// The ring lock: taken by the worker when it goes idle (it drains its ring so that
    /// records of short items never fill it), by the monitor when it looks and arms, and by
    /// the detector thread when it reads and disarms.
    ring: Mutex<RingLocked>,
}

/// What the ring lock guards.
#[derive(Debug)]
struct RingLocked {
    event: SwitchEvent,
    state: SwitchState,
    /// Whether the poller is armed for this event (changed only with the lock held, so the
    /// monitor and the detector thread agree).
    armed: bool,
}

/// A drain that read this close to a whole ring may have met a full one: records after it
/// were dropped and the `PERF_RECORD_LOST` that says so comes only with the next record.
const FULL_SLACK: usize = 64;

impl WorkerSwitch {
    pub(super) fn new(event: SwitchEvent, token: u64) -> WorkerSwitch {
        WorkerSwitch { token, ring: Mutex::new(RingLocked { event, state: SwitchState::default(), armed: false }) }
    }

    /// Applies every record the ring holds and returns the state now. A drain that may have
    /// met a full ring leaves the state unknown (sampling decides) until the next record.
    pub(crate) fn drain(&self) -> SwitchState {
        let mut l = self.ring.lock();
        let RingLocked { event, state, .. } = &mut *l;
        let mut bytes = 0;
        event.drain(|ty, misc, body| {
            bytes += HEADER + body.len();
            state.apply(SwitchRecord::parse(ty, misc, body));
        });
        if bytes + FULL_SLACK >= SWITCH_RING_BYTES {
            state.seen = Seen::Unknown;
        }
        *state
    }

    /// Watches this worker: enables its event (so its switches are recorded from now on),
    /// reads its thread state once (a block before the enable leaves no record: `probe` says
    /// S or D), and arms the poller, so its records wake the detector thread. A no-op if armed.
    /// An event that cannot be enabled leaves the state unknown: sampling decides.
    pub(super) fn set_armed(&self, poller: &Poller, probe: &ThreadProbe) {
        use std::os::fd::AsFd;
        let mut l = self.ring.lock();
        if l.armed {
            return;
        }
        let RingLocked { event, state, armed } = &mut *l;
        if event.set_enabled(true).is_err() {
            return;
        }
        // Enabled first, looked second: a block after the enable leaves a record, one before
        // it is seen in the state (and a record after the look, if any, comes later in order).
        event.drain(|_, _, _| {});
        *state = SwitchState { seen: if probe.is_sleeping() { Seen::Blocked } else { Seen::Running }, ..*state };
        poller.arm(event.as_fd(), self.token, true);
        *armed = true;
    }

    /// Stops watching this worker: disarms the poller and disables the event, so an idle or
    /// unwatched worker's switches cost nothing (no record is written, no one is woken).
    pub(super) fn disarm(&self, poller: &Poller) {
        use std::os::fd::AsFd;
        let mut l = self.ring.lock();
        if !l.armed {
            return;
        }
        let RingLocked { event, state, armed } = &mut *l;
        poller.arm(event.as_fd(), self.token, false);
        let _ = event.set_enabled(false);
        state.seen = Seen::Unknown;
        *armed = false;
    }

    /// Calls `f` with the event's fd (for the poller), under the ring lock.
    pub(super) fn with_fd<R>(&self, f: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> R) -> R {
        use std::os::fd::AsFd;
        f(self.ring.lock().event.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(out: &mut Vec<u8>, ty: u32, misc: u16, body: &[u8]) {
        out.extend_from_slice(&ty.to_ne_bytes());
        out.extend_from_slice(&misc.to_ne_bytes());
        out.extend_from_slice(&((HEADER + body.len()) as u16).to_ne_bytes());
        out.extend_from_slice(body);
    }

    fn switch_out(out: &mut Vec<u8>, preempt: bool, t: u64) {
        let misc = MISC_SWITCH_OUT | if preempt { MISC_SWITCH_OUT_PREEMPT } else { 0 };
        rec(out, PERF_RECORD_SWITCH, misc, &t.to_ne_bytes());
    }

    fn switch_in(out: &mut Vec<u8>, t: u64) {
        rec(out, PERF_RECORD_SWITCH, 0, &t.to_ne_bytes());
    }

    fn lost(out: &mut Vec<u8>, n: u64) {
        let mut body = 7u64.to_ne_bytes().to_vec();
        body.extend_from_slice(&n.to_ne_bytes());
        body.extend_from_slice(&99u64.to_ne_bytes());
        rec(out, PERF_RECORD_LOST, 0, &body);
    }

    fn run(bytes: &[u8]) -> (SwitchState, Vec<SwitchRecord>) {
        let mut recs = Vec::new();
        assert_eq!(parse_stream(bytes, &mut recs), bytes.len());
        let mut st = SwitchState::default();
        for r in &recs {
            st.apply(*r);
        }
        (st, recs)
    }

    #[test]
    fn a_blocking_switch_out_is_blocked_and_a_switch_in_runs_again() {
        let mut b = Vec::new();
        switch_out(&mut b, false, 1_000);
        let (st, recs) = run(&b);
        assert_eq!(recs, vec![SwitchRecord::Out { preempted: false, time_ns: Some(1_000) }]);
        assert_eq!(st.seen, Seen::Blocked);
        assert_eq!(st.blocked_at, Some(1_000));
        assert_eq!(verdict(st.seen, false), Verdict::Sleeping);
        assert_eq!(verdict(st.seen, true), Verdict::Keep);
        switch_in(&mut b, 6_000);
        let (st, _) = run(&b);
        assert_eq!(st.seen, Seen::Running);
        assert_eq!(verdict(st.seen, true), Verdict::Running);
        assert_eq!(verdict(st.seen, false), Verdict::Keep);
    }

    #[test]
    fn a_preempted_worker_keeps_counting() {
        let mut b = Vec::new();
        switch_in(&mut b, 1);
        switch_out(&mut b, true, 2);
        let (st, _) = run(&b);
        assert_eq!(st.seen, Seen::Preempted);
        assert_eq!(verdict(st.seen, false), Verdict::Keep, "preemption is not sleeping");
        // Marked sleeping earlier (it blocked), now preempted after waking: it runs again.
        assert_eq!(verdict(st.seen, true), Verdict::Running);
    }

    #[test]
    fn lost_records_hand_the_worker_to_sampling_until_the_next_switch() {
        let mut b = Vec::new();
        switch_out(&mut b, false, 1);
        lost(&mut b, 12);
        let (st, recs) = run(&b);
        assert_eq!(recs[1], SwitchRecord::Lost { count: 12 });
        assert_eq!(st.seen, Seen::Unknown);
        assert_eq!(st.lost, 12);
        assert_eq!(verdict(st.seen, false), Verdict::Sample);
        assert_eq!(verdict(st.seen, true), Verdict::Sample);
        switch_in(&mut b, 3);
        let (st, _) = run(&b);
        assert_eq!(st.seen, Seen::Running);
        assert_eq!(st.lost, 12);
    }

    #[test]
    fn the_last_record_decides() {
        let mut b = Vec::new();
        for i in 0..50 {
            switch_out(&mut b, i % 3 == 0, i);
            switch_in(&mut b, i);
        }
        switch_out(&mut b, false, 77);
        let (st, recs) = run(&b);
        assert_eq!(recs.len(), 101);
        assert_eq!(st.seen, Seen::Blocked);
        assert_eq!(st.blocked_at, Some(77));
    }

    #[test]
    fn other_records_and_short_bodies_are_tolerated() {
        let mut b = Vec::new();
        rec(&mut b, 9, 0, &[0; 24]); // a PERF_RECORD_SAMPLE: ignored
        rec(&mut b, PERF_RECORD_SWITCH, MISC_SWITCH_OUT, &[]); // no time
        let (st, recs) = run(&b);
        assert_eq!(recs[0], SwitchRecord::Other);
        assert_eq!(recs[1], SwitchRecord::Out { preempted: false, time_ns: None });
        assert_eq!(st.seen, Seen::Blocked);
        assert_eq!(st.blocked_at, None);
        assert_eq!(SwitchRecord::parse(PERF_RECORD_LOST, 0, &[1, 2]), SwitchRecord::Lost { count: 1 });
    }

    #[test]
    fn a_corrupt_or_truncated_ring_stops_the_parse() {
        let mut b = Vec::new();
        switch_in(&mut b, 5);
        let good = b.len();
        rec(&mut b, PERF_RECORD_SWITCH, 0, &[]);
        b[good + 6] = 3; // size 3 < header
        let mut recs = Vec::new();
        assert_eq!(parse_stream(&b, &mut recs), good);
        assert_eq!(recs.len(), 1);
        // A record whose size runs past the end is not read.
        let mut t = Vec::new();
        switch_out(&mut t, false, 1);
        t.truncate(t.len() - 1);
        recs.clear();
        assert_eq!(parse_stream(&t, &mut recs), 0);
        assert!(recs.is_empty());
        assert_eq!(parse_stream(&[], &mut recs), 0);
    }
}
