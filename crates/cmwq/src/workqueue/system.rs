//! The system workqueues of the global runtime (kernel-notes §1.2): `events` (per-CPU),
//! `events_unbound`, `events_highpri` and `events_long`. Created on first use, never
//! destroyed.

use super::Workqueue;
use crate::sync::global::OnceLock;

fn system_wq(cell: &'static OnceLock<Workqueue>, f: fn() -> Workqueue) -> Workqueue {
    cell.get_or_init(f).clone()
}

/// `system_wq` ("events"): per-CPU, for short items.
pub fn system() -> Workqueue {
    static WQ: OnceLock<Workqueue> = OnceLock::new();
    system_wq(&WQ, || Workqueue::builder("events").build().expect("cmwq: cannot create the events workqueue"))
}

/// `system_unbound_wq` ("events_unbound"): unbound, for items that may run long or block.
pub fn system_unbound() -> Workqueue {
    static WQ: OnceLock<Workqueue> = OnceLock::new();
    system_wq(&WQ, || {
        Workqueue::builder("events_unbound")
            .unbound()
            .max_active(super::builder::WQ_MAX_ACTIVE)
            .build()
            .expect("cmwq: cannot create the events_unbound workqueue")
    })
}

/// `system_highpri_wq` ("events_highpri"): per-CPU, highpri pools.
pub fn system_highpri() -> Workqueue {
    static WQ: OnceLock<Workqueue> = OnceLock::new();
    system_wq(&WQ, || {
        Workqueue::builder("events_highpri")
            .highpri()
            .build()
            .expect("cmwq: cannot create the events_highpri workqueue")
    })
}

/// `system_long_wq` ("events_long"): per-CPU, for items that may take long.
pub fn system_long() -> Workqueue {
    static WQ: OnceLock<Workqueue> = OnceLock::new();
    system_wq(&WQ, || Workqueue::builder("events_long").build().expect("cmwq: cannot create the events_long workqueue"))
}
