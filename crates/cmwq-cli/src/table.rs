//! Rendering of workqueue statistics in the columns of the kernel's
//! `tools/workqueue/wq_monitor.py` (`total infl CPUtime CPUitsv CMW mayday rescued`), plus the
//! demo's progress line. Pure functions over snapshots, so they are unit-tested here.
//!
//! As in wq_monitor, `CPUitsv` and `CMW` are shown as `-` for unbound workqueues: they have no
//! concurrency management (the kernel shows its repatriation count in that column instead,
//! which cmwq does not have); `mayday` and `rescued` are shown only for `mem_reclaim`
//! workqueues (the ones with a rescuer), `-` for the others.

use std::fmt::Write as _;
use std::time::Duration;

/// One workqueue's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WqRow {
    /// The workqueue's name.
    pub name: String,
    /// Whether it is unbound (no concurrency management).
    pub unbound: bool,
    /// Whether it is `mem_reclaim` (has a rescuer).
    pub mem_reclaim: bool,
    /// Items started (`total`).
    pub started: u64,
    /// Items completed.
    pub completed: u64,
    /// CPU time of its items (`CPUtime`).
    pub cpu_time: Duration,
    /// Times an item was marked CPU-intensive (`CPUitsv`).
    pub cpu_intensive: u64,
    /// Concurrency-management wake-ups (`CMW`).
    pub cm_wakeup: u64,
    /// Times a pool called this workqueue's rescuer (`mayday`).
    pub mayday: u64,
    /// Items the rescuer ran (`rescued`).
    pub rescued: u64,
}

impl WqRow {
    /// A row from a workqueue's stats.
    pub fn from_stats(name: &str, unbound: bool, mem_reclaim: bool, s: &cmwq::WqStats) -> WqRow {
        WqRow {
            name: name.to_owned(),
            unbound,
            mem_reclaim,
            started: s.started,
            completed: s.completed,
            cpu_time: s.cpu_time,
            cpu_intensive: s.cpu_intensive,
            cm_wakeup: s.cm_wakeup,
            mayday: s.mayday,
            rescued: s.rescued,
        }
    }

    /// Items started and not finished (`infl`).
    pub fn in_flight(&self) -> u64 {
        self.started.saturating_sub(self.completed)
    }
}

/// The header line, aligned like wq_monitor's.
pub fn header() -> String {
    format!(
        "{:>24} {:>8} {:>5} {:>8} {:>7} {:>7} {:>7} {:>7}",
        "", "total", "infl", "CPUtime", "CPUitsv", "CMW", "mayday", "rescued"
    )
}

/// The last 24 characters of a name, as wq_monitor's `name[-24:]`.
fn tail24(name: &str) -> &str {
    let n = name.chars().count();
    match name.char_indices().nth(n.saturating_sub(24)) {
        Some((i, _)) if n > 24 => &name[i..],
        _ => name,
    }
}

/// One row.
pub fn row(r: &WqRow) -> String {
    let (itsv, cmw) = if r.unbound {
        ("-".to_owned(), "-".to_owned())
    } else {
        (r.cpu_intensive.to_string(), r.cm_wakeup.to_string())
    };
    let (mayday, rescued) =
        if r.mem_reclaim { (r.mayday.to_string(), r.rescued.to_string()) } else { ("-".to_owned(), "-".to_owned()) };
    format!(
        "{:<24} {:>8} {:>5} {:>8.1} {:>7} {:>7} {:>7} {:>7}",
        tail24(&r.name),
        r.started,
        r.in_flight(),
        r.cpu_time.as_secs_f64(),
        itsv,
        cmw,
        mayday,
        rescued
    )
}

/// The header and one line per workqueue, each ending in a newline.
pub fn render(rows: &[WqRow]) -> String {
    let mut s = header();
    s.push('\n');
    for r in rows {
        s.push_str(&row(r));
        s.push('\n');
    }
    s
}

/// What the progress line shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Time since the workload started.
    pub elapsed: Duration,
    /// The workload's planned length (arrivals).
    pub total: Duration,
    /// Items finished.
    pub done: u64,
    /// Items in the whole workload.
    pub items: u64,
    /// Worker threads alive now.
    pub workers: usize,
    /// The most worker threads alive at once so far.
    pub peak_workers: usize,
}

/// `[  3.0s /  10.0s]  items 1234/5000 done  workers 12 (peak 40)`.
pub fn progress_line(p: &Progress) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "[{:>5.1}s / {:>5.1}s]  items {}/{} done  workers {} alive (peak {})",
        p.elapsed.as_secs_f64(),
        p.total.as_secs_f64(),
        p.done,
        p.items,
        p.workers,
        p.peak_workers
    );
    s
}

/// `12.3 ms`, `1.50 s`: a duration for humans.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} us", s * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, unbound: bool) -> WqRow {
        WqRow {
            name: name.into(),
            unbound,
            mem_reclaim: false,
            started: 18545,
            completed: 18540,
            cpu_time: Duration::from_millis(6150),
            cpu_intensive: 3,
            cm_wakeup: 42,
            mayday: 7,
            rescued: 19,
        }
    }

    #[test]
    fn header_matches_wq_monitor_layout() {
        let h = header();
        assert_eq!(h.len(), 24 + 1 + 8 + 1 + 5 + 1 + 8 + 1 + 7 + 1 + 7 + 1 + 7 + 1 + 7);
        assert!(h.ends_with("   total  infl  CPUtime CPUitsv     CMW  mayday rescued"), "{h:?}");
    }

    #[test]
    fn percpu_row() {
        let line = row(&r("events", false));
        assert_eq!(line, "events                      18545     5      6.2       3      42       -       -");
        assert_eq!(line.len(), header().len());
    }

    #[test]
    fn mem_reclaim_row_shows_rescuer_counters() {
        let mut x = r("writeback", false);
        x.mem_reclaim = true;
        let line = row(&x);
        assert!(line.ends_with("      42       7      19"), "{line:?}");
        assert_eq!(line.len(), header().len());
        x.unbound = true;
        assert!(row(&x).ends_with("      -       -       7      19"), "{:?}", row(&x));
    }

    #[test]
    fn unbound_row_dashes() {
        let line = row(&r("events_unbound", true));
        assert!(line.ends_with("      -       -       -       -"), "{line:?}");
        assert_eq!(line.len(), header().len());
    }

    #[test]
    fn long_names_keep_their_tail() {
        let line = row(&r("a_very_long_workqueue_name_indeed", false));
        assert!(line.starts_with("ng_workqueue_name_indeed "), "{line:?}");
        assert_eq!(tail24("abc"), "abc");
        assert_eq!(tail24(&"x".repeat(30)).len(), 24);
    }

    #[test]
    fn infl_never_negative() {
        let mut x = r("q", false);
        x.completed = x.started + 1;
        assert_eq!(x.in_flight(), 0);
    }

    #[test]
    fn render_has_header_and_rows() {
        let s = render(&[r("a", false), r("b", true)]);
        assert_eq!(s.lines().count(), 3);
    }

    #[test]
    fn from_stats_copies_counters() {
        let mut s = cmwq::WqStats::default();
        s.started = 7;
        s.completed = 5;
        s.cm_wakeup = 2;
        s.mayday = 3;
        s.rescued = 4;
        let row = WqRow::from_stats("w", false, true, &s);
        assert_eq!(row.in_flight(), 2);
        assert_eq!(row.cm_wakeup, 2);
        assert_eq!((row.mem_reclaim, row.mayday, row.rescued), (true, 3, 4));
    }

    #[test]
    fn progress_and_human() {
        let p = Progress {
            elapsed: Duration::from_millis(3000),
            total: Duration::from_secs(10),
            done: 12,
            items: 50,
            workers: 4,
            peak_workers: 9,
        };
        assert_eq!(progress_line(&p), "[  3.0s /  10.0s]  items 12/50 done  workers 4 alive (peak 9)");
        assert_eq!(human(Duration::from_millis(1500)), "1.50 s");
        assert_eq!(human(Duration::from_micros(12300)), "12.3 ms");
        assert_eq!(human(Duration::from_micros(12)), "12 us");
    }
}
