//! Work items: a function plus the atomic state word that makes queueing idempotent.
//!
//! Guarantees (DESIGN.md §2):
//! 1. Queueing an item that is already pending does nothing and returns `false`; the pending
//!    instance will run and covers the request. PENDING is cleared just before the function
//!    runs, so the function may queue its own item again.
//! 2. An item never runs on two threads at once, system-wide, while it is queued on one
//!    workqueue: a queueing that lands while the item runs is routed to the pool where it runs
//!    (the redirect in `Workqueue::queue`), and that pool hands it to the worker already
//!    running it (the collision check in `pool::worker`).
//!
//! A [`Work`] is a cheap handle (`Arc`): clones name the same item. Queueing an existing item
//! allocates nothing.

pub(crate) mod job;
pub(crate) mod state;

use crate::sync::{Arc, AtomicU32, Ordering};
use state::WorkState;
use std::any::Any;
use std::fmt;

/// The sentinel for "not on any pool list".
pub(crate) const NO_NODE: u32 = u32::MAX;

/// The shared part of a work item. `F` is unsized (`dyn Fn`) in every handle, so the state and
/// the closure share one allocation.
struct WorkInner<F: ?Sized> {
    /// The state word (PENDING, QUEUED, disable depth, last pool).
    state: WorkState,
    /// L (of the pool named in `state`): the item's slot in that pool's node arena while
    /// QUEUED, else `NO_NODE`. Written only under that pool's lock; `Relaxed` suffices because
    /// every reader holds the same lock.
    node: AtomicU32,
    /// I: the name warnings and dumps print with the item's id: the closure's type name
    /// (`std::any::type_name`) or the one given to [`Work::named`].
    pub(crate) name: &'static str,
    /// I: the timer of the delayed item this is the work of (`DelayedWork::from_work`, the
    /// kernel's `to_delayed_work`). The timer holds no handle on the item except while armed
    /// (its callback), so this makes no cycle that outlives an arming.
    /// Erased here so that the item does not name the workqueue layer that defines it.
    timer: Option<Arc<DelayedTimerAny>>,
    /// The work function.
    func: F,
}

/// What a delayed item's timer is erased to in its work (`workqueue::delayed::DelayedTimer`).
type DelayedTimerAny = dyn Any + Send + Sync;

/// The function type every work item is erased to.
type WorkFn = dyn Fn(&Work) + Send + Sync + 'static;

/// A work item: a function that workqueues run, at most once per queueing and never on two
/// threads at once. Clone it to get another handle to the same item.
///
/// ```
/// # let rt = cmwq::Runtime::builder().cpus(1).build();
/// # let wq = rt.workqueue("doc").build().unwrap();
/// let w = cmwq::Work::new(|_w: &cmwq::Work| println!("ran"));
/// assert!(wq.queue(&w));
/// ```
///
/// # Queueing itself again
///
/// The function receives its own item, and [`Work::requeue`] queues it again on the
/// workqueue of the item running (what the kernel's `queue_work(wq, work)` does from inside
/// `work`'s function). Do not capture a clone of the [`Workqueue`](crate::Workqueue) in the
/// closure instead: the workqueue would hold the item and the item the workqueue, so dropping
/// every handle would destroy nothing, and the runtime's threads would live on.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// let rt = cmwq::Runtime::builder().cpus(1).build();
/// let wq = rt.workqueue("chain").build()?;
/// let runs = Arc::new(AtomicUsize::new(0));
/// let r = runs.clone();
/// let w = cmwq::Work::new(move |w: &cmwq::Work| {
///     if r.fetch_add(1, Ordering::SeqCst) + 1 < 3 {
///         assert!(w.requeue()); // on the workqueue running it: three runs in all
///     }
/// });
/// assert!(wq.queue(&w));
/// drop(wq); // destroy waits for the chain, which ends
/// assert_eq!(runs.load(Ordering::SeqCst), 3);
/// # Ok::<(), cmwq::Error>(())
/// ```
///
/// # The kernel's `container_of`
///
/// A kernel work function finds the structure that embeds its `work_struct` with
/// `container_of`. In Rust the structure owns its item and the item's closure holds a
/// [`Weak`](std::sync::Weak) of the structure, made with [`Arc::new_cyclic`]: no cycle, and
/// dropping the structure drops the item.
///
/// ```
/// use std::sync::{Arc, Mutex, Weak};
/// struct Device {
///     events: Mutex<Vec<u32>>,
///     handled: Mutex<usize>,
///     work: cmwq::Work,
/// }
/// impl Device {
///     fn new() -> Arc<Device> {
///         Arc::new_cyclic(|me: &Weak<Device>| {
///             let me = me.clone();
///             let work = cmwq::Work::new(move |_w: &cmwq::Work| {
///                 // container_of: the device this item belongs to, while it exists.
///                 let Some(dev) = me.upgrade() else { return };
///                 let n = dev.events.lock().unwrap().drain(..).count();
///                 *dev.handled.lock().unwrap() += n;
///             });
///             Device { events: Mutex::default(), handled: Mutex::default(), work }
///         })
///     }
/// }
/// let rt = cmwq::Runtime::builder().cpus(1).build();
/// let wq = rt.workqueue("dev").build()?;
/// let dev = Device::new();
/// dev.events.lock().unwrap().extend([1, 2]);
/// wq.queue(&dev.work);
/// dev.work.flush();
/// assert_eq!(*dev.handled.lock().unwrap(), 2);
/// # Ok::<(), cmwq::Error>(())
/// ```
#[derive(Clone)]
pub struct Work {
    inner: Arc<WorkInner<WorkFn>>,
}

impl Work {
    /// A new idle work item running `f`. The function receives its own item, so it can queue
    /// itself again.
    pub fn new<F>(f: F) -> Work
    where
        F: Fn(&Work) + Send + Sync + 'static,
    {
        Work::named(std::any::type_name::<F>(), f)
    }

    /// Like [`Work::new`], with the name that warnings print for the item (with its id)
    /// instead of the closure's type name.
    pub fn named<F>(name: &'static str, f: F) -> Work
    where
        F: Fn(&Work) + Send + Sync + 'static,
    {
        Work::build(name, None, f)
    }

    /// A new idle item, the work of a delayed item if `timer` is given.
    pub(crate) fn build<F>(name: &'static str, timer: Option<Arc<DelayedTimerAny>>, f: F) -> Work
    where
        F: Fn(&Work) + Send + Sync + 'static,
    {
        let inner: Arc<WorkInner<WorkFn>> =
            Arc::new(WorkInner { state: WorkState::new(), node: AtomicU32::new(NO_NODE), name, timer, func: f });
        Work { inner }
    }

    /// The timer of the delayed item this is the work of, erased (`DelayedWork::from_work`).
    pub(crate) fn delayed_timer(&self) -> Option<&Arc<DelayedTimerAny>> {
        self.inner.timer.as_ref()
    }

    /// The item's name: the closure's type name, or the one given to [`Work::named`].
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// Whether the item is pending: queued and not yet started (advisory, like `work_pending`).
    pub fn is_pending(&self) -> bool {
        self.inner.state.load().is_pending()
    }

    /// The item's identity (its allocation's address): the busy table's key.
    #[inline]
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as *const u8 as usize
    }

    pub(crate) fn state(&self) -> &WorkState {
        &self.inner.state
    }

    pub(crate) fn node(&self) -> u32 {
        self.inner.node.load(Ordering::Relaxed)
    }

    pub(crate) fn set_node(&self, n: u32) {
        self.inner.node.store(n, Ordering::Relaxed)
    }

    pub(crate) fn run(&self) {
        (self.inner.func)(self)
    }

    /// Whether two handles name the same item.
    pub fn ptr_eq(&self, other: &Work) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// `name (id)`, as warnings print an item; a spawned closure (id 0) has no identity.
pub(crate) fn describe(name: &str, id: usize) -> String {
    if id == 0 {
        name.to_owned()
    } else {
        format!("{name} ({id:#x})")
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Work")
            .field("name", &self.inner.name)
            .field("id", &format_args!("{:#x}", self.id()))
            .field("state", &self.inner.state.load())
            .finish()
    }
}
