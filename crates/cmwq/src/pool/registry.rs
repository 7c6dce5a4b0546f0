//! The process-wide pool table (the kernel's `worker_pool_idr`): pool ids are stored in work
//! state words, and flush and cancel find an item's pool from its id. A work item may be
//! queued on workqueues of different runtimes, so the table is global, not per runtime.
//! Entries are weak: a table entry never keeps a pool alive.

use super::WorkerPool;
use crate::sync::global::OnceLock;
use crate::sync::{Arc, Weak};

/// The table. Process-wide, so the real lock in every build (crate::sync::global): it outlives
/// a model execution; a leaf lock, never held across a facade operation.
#[allow(clippy::disallowed_types)]
fn table() -> &'static crate::sync::global::Mutex<Vec<Weak<WorkerPool>>> {
    static TABLE: OnceLock<crate::sync::global::Mutex<Vec<Weak<WorkerPool>>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// Creates a pool with the next id and records it.
pub(super) fn register(make: impl FnOnce(u32) -> WorkerPool) -> Arc<WorkerPool> {
    let mut t = table().lock();
    let id = u32::try_from(t.len()).expect("pool ids exhausted");
    assert!(id < crate::work::state::POOL_NONE, "pool ids exhausted");
    let pool = Arc::new(make(id));
    t.push(Arc::downgrade(&pool));
    pool
}

/// The pool with this id, if it still exists.
pub(crate) fn lookup(id: u32) -> Option<Arc<WorkerPool>> {
    table().lock().get(id as usize)?.upgrade()
}
