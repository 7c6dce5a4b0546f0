//! Finders of one pool in a runtime's introspection snapshot (`Runtime::pools`).

use cmwq::{PoolInfo, Runtime};

/// A snapshot of the normal (not highpri) per-CPU pool of CPU `cpu`, the pool that
/// `queue_on(cpu, ..)` of a per-CPU workqueue uses.
///
/// # Panics
///
/// If the runtime has no such pool (`cpu` is not below its CPU count).
#[track_caller]
pub fn cpu_pool(rt: &Runtime, cpu: usize) -> PoolInfo {
    rt.pools()
        .into_iter()
        .find(|p| p.cpu == Some(cpu) && !p.highpri)
        .unwrap_or_else(|| panic!("the runtime has no normal pool for CPU {cpu}"))
}

/// A snapshot of the runtime's first unbound pool (of the pools that exist: one appears with
/// the first unbound workqueue of its attributes).
///
/// # Panics
///
/// If the runtime has no unbound pool.
#[track_caller]
pub fn unbound_pool(rt: &Runtime) -> PoolInfo {
    rt.pools().into_iter().find(|p| p.cpu.is_none()).expect("the runtime has no unbound pool")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_pools() {
        let rt = Runtime::builder().cpus(2).build();
        let p = cpu_pool(&rt, 1);
        assert_eq!((p.cpu, p.highpri), (Some(1), false));
        let _wq = rt.workqueue("testkit-unbound").unbound().build().unwrap();
        assert_eq!(unbound_pool(&rt).cpu, None);
    }
}
