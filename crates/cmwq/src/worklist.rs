//! Doubly linked lists with stable positions, the userspace `list_head`.
//!
//! A pool keeps every entry (work items, flush barriers, rescuer cursors) in one arena of
//! nodes, addressed by a `u32` index that stays valid while the entry is linked; each list (the
//! pool worklist, every pwq's inactive list) is a head/tail pair over that arena. This gives
//! what the kernel's lists give and a `VecDeque` cannot: O(1) removal of an entry from the
//! middle (cancel), O(1) insertion right after a given entry (a flush barrier behind its
//! target) and O(1) "move before n" (the rescuer cursor). Freed slots are reused, so a pool in
//! steady state allocates nothing.

/// "No node": the end of a list.
pub(crate) const NIL: u32 = u32::MAX;

/// Nodes per arena chunk (`1 << CHUNK_SHIFT`). Under Miri, where each step is thousands of
/// times slower, chunks are small so that the unit tests cross chunk boundaries within a few
/// hundred nodes (the index arithmetic is the same for any shift).
const CHUNK_SHIFT: u32 = if cfg!(miri) { 3 } else { 12 };
const CHUNK: usize = 1 << CHUNK_SHIFT;

#[derive(Debug)]
struct Node<T> {
    prev: u32,
    next: u32,
    val: T,
}

/// One slot of the arena.
#[derive(Debug)]
enum Slot<T> {
    /// Free; the next free slot (`NIL` at the end of the free list).
    Free(u32),
    Used(Node<T>),
}

/// The arena all of a pool's lists live in: chunks of `CHUNK` slots, so that growing it
/// never moves (copies, and touches twice) what it holds, as one doubling vector would: a
/// flood of a million items grows it to tens of megabytes, and the copies and first touches
/// of that growth were four fifths of B1's page faults. Freed slots are reused (LIFO) before
/// a new one is taken; chunks are kept until the pool goes.
#[derive(Debug)]
pub(crate) struct Nodes<T> {
    /// Every chunk but the last holds `CHUNK` slots; the last fills up one slot at a time
    /// (its capacity is reserved, so it never reallocates).
    chunks: Vec<Vec<Slot<T>>>,
    /// The most recently freed slot, head of the free list (`NIL` if none).
    free: u32,
}

impl<T> Nodes<T> {
    pub(crate) fn new() -> Self {
        Nodes { chunks: Vec::new(), free: NIL }
    }

    fn slot(&self, idx: u32) -> &Slot<T> {
        &self.chunks[(idx >> CHUNK_SHIFT) as usize][idx as usize & (CHUNK - 1)]
    }

    fn slot_mut(&mut self, idx: u32) -> &mut Slot<T> {
        &mut self.chunks[(idx >> CHUNK_SHIFT) as usize][idx as usize & (CHUNK - 1)]
    }

    fn node(&self, idx: u32) -> &Node<T> {
        match self.slot(idx) {
            Slot::Used(n) => n,
            Slot::Free(_) => panic!("worklist node {idx} is free"),
        }
    }

    fn node_mut(&mut self, idx: u32) -> &mut Node<T> {
        match self.slot_mut(idx) {
            Slot::Used(n) => n,
            Slot::Free(_) => panic!("worklist node {idx} is free"),
        }
    }

    pub(crate) fn get(&self, idx: u32) -> &T {
        &self.node(idx).val
    }

    pub(crate) fn get_mut(&mut self, idx: u32) -> &mut T {
        &mut self.node_mut(idx).val
    }

    /// Number of live nodes, over all lists.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.chunks.iter().flatten().filter(|s| matches!(s, Slot::Used(_))).count()
    }

    fn alloc(&mut self, val: T) -> u32 {
        let node = Node { prev: NIL, next: NIL, val };
        if self.free != NIL {
            let idx = self.free;
            let slot = self.slot_mut(idx);
            let Slot::Free(next) = *slot else { unreachable!("the free list holds a used slot") };
            *slot = Slot::Used(node);
            self.free = next;
            return idx;
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let ci = self.chunks.len() - 1;
        let chunk = &mut self.chunks[ci];
        let idx = ci * CHUNK + chunk.len();
        assert!(idx < NIL as usize, "worklist arena overflow");
        chunk.push(Slot::Used(node));
        idx as u32
    }

    /// Frees slot `idx` (unlinked already), returning its value.
    fn take(&mut self, idx: u32) -> T {
        let free = self.free;
        match std::mem::replace(self.slot_mut(idx), Slot::Free(free)) {
            Slot::Used(n) => {
                self.free = idx;
                n.val
            }
            Slot::Free(_) => panic!("worklist node {idx} freed twice"),
        }
    }
}

/// One list over a [`Nodes`] arena.
#[derive(Debug, Clone, Copy)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for List {
    fn default() -> Self {
        List { head: NIL, tail: NIL, len: 0 }
    }
}

impl List {
    pub(crate) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn front(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    pub(crate) fn next<T>(&self, nodes: &Nodes<T>, idx: u32) -> Option<u32> {
        let n = nodes.node(idx).next;
        (n != NIL).then_some(n)
    }

    /// Appends a new entry; returns its index.
    pub(crate) fn push_back<T>(&mut self, nodes: &mut Nodes<T>, val: T) -> u32 {
        let idx = nodes.alloc(val);
        self.link_before(nodes, idx, NIL);
        idx
    }

    /// Inserts a new entry right after `at` (which must be on this list).
    #[cfg(test)]
    fn insert_after<T>(&mut self, nodes: &mut Nodes<T>, at: u32, val: T) -> u32 {
        let idx = nodes.alloc(val);
        let next = nodes.node(at).next;
        self.link_before(nodes, idx, next);
        idx
    }

    /// Inserts a new entry before `before` (`NIL` = at the tail).
    pub(crate) fn insert_before<T>(&mut self, nodes: &mut Nodes<T>, before: u32, val: T) -> u32 {
        let idx = nodes.alloc(val);
        self.link_before(nodes, idx, before);
        idx
    }

    /// Unlinks `idx` from this list and frees its node, returning the value.
    pub(crate) fn remove<T>(&mut self, nodes: &mut Nodes<T>, idx: u32) -> T {
        self.unlink(nodes, idx);
        nodes.take(idx)
    }

    /// Unlinks `idx` from this list and links it into `dst` before `before` (`NIL` = tail), the
    /// node keeping its index (`list_move_tail`).
    pub(crate) fn move_to<T>(&mut self, nodes: &mut Nodes<T>, idx: u32, dst: &mut List, before: u32) {
        self.unlink(nodes, idx);
        dst.link_before(nodes, idx, before);
    }

    /// Moves `idx`, already on this list, to just before `before` (`NIL` = the tail).
    pub(crate) fn move_before<T>(&mut self, nodes: &mut Nodes<T>, idx: u32, before: u32) {
        if idx == before {
            return;
        }
        self.unlink(nodes, idx);
        self.link_before(nodes, idx, before);
    }

    /// Indices in order (allocates; for tests).
    #[cfg(test)]
    pub(crate) fn indices<T>(&self, nodes: &Nodes<T>) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.len);
        let mut cur = self.head;
        while cur != NIL {
            v.push(cur);
            cur = nodes.node(cur).next;
        }
        v
    }

    fn link_before<T>(&mut self, nodes: &mut Nodes<T>, idx: u32, before: u32) {
        let prev = if before == NIL { self.tail } else { nodes.node(before).prev };
        {
            let n = nodes.node_mut(idx);
            n.prev = prev;
            n.next = before;
        }
        if prev == NIL {
            self.head = idx;
        } else {
            nodes.node_mut(prev).next = idx;
        }
        if before == NIL {
            self.tail = idx;
        } else {
            nodes.node_mut(before).prev = idx;
        }
        self.len += 1;
    }

    fn unlink<T>(&mut self, nodes: &mut Nodes<T>, idx: u32) {
        let (prev, next) = {
            let n = nodes.node(idx);
            (n.prev, n.next)
        };
        if prev == NIL {
            debug_assert_eq!(self.head, idx, "unlink of a node not on this list");
            self.head = next;
        } else {
            nodes.node_mut(prev).next = next;
        }
        if next == NIL {
            debug_assert_eq!(self.tail, idx, "unlink of a node not on this list");
            self.tail = prev;
        } else {
            nodes.node_mut(next).prev = prev;
        }
        let n = nodes.node_mut(idx);
        n.prev = NIL;
        n.next = NIL;
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(l: &List, n: &Nodes<u32>) -> Vec<u32> {
        l.indices(n).into_iter().map(|i| *n.get(i)).collect()
    }

    #[test]
    fn push_remove_insert_move() {
        let mut n = Nodes::new();
        let mut a = List::default();
        let i1 = a.push_back(&mut n, 1);
        let i2 = a.push_back(&mut n, 2);
        let i3 = a.push_back(&mut n, 3);
        assert_eq!(vals(&a, &n), [1, 2, 3]);
        a.insert_after(&mut n, i1, 10);
        assert_eq!(vals(&a, &n), [1, 10, 2, 3]);
        assert_eq!(a.remove(&mut n, i2), 2);
        assert_eq!(vals(&a, &n), [1, 10, 3]);
        a.move_before(&mut n, i3, i1);
        assert_eq!(vals(&a, &n), [3, 1, 10]);
        a.move_before(&mut n, i3, NIL);
        assert_eq!(vals(&a, &n), [1, 10, 3]);
        let mut b = List::default();
        a.move_to(&mut n, i1, &mut b, NIL);
        assert_eq!(vals(&a, &n), [10, 3]);
        assert_eq!(vals(&b, &n), [1]);
        assert_eq!((a.len(), b.len(), n.len()), (2, 1, 3));
        // Freed slots are reused: no growth in steady state.
        let r = a.push_back(&mut n, 4);
        assert_eq!(r, i2);
    }

    /// A small deterministic generator (xorshift64*), so a failing sequence is replayed from
    /// its seed, which the assertion messages name.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
    }

    /// Slots handed out so far (used or free): the arena's footprint.
    fn slots<T>(n: &Nodes<T>) -> usize {
        n.chunks.iter().map(Vec::len).sum()
    }

    /// Every link of `l` agrees with its neighbour's: forwards and backwards it visits the
    /// same nodes, head and tail have no outer neighbour, and `len` counts them.
    fn check_links(l: &List, n: &Nodes<u32>, seed: u64) {
        let fwd = l.indices(n);
        let mut bwd = Vec::new();
        let mut cur = l.tail;
        while cur != NIL {
            bwd.push(cur);
            cur = n.node(cur).prev;
        }
        bwd.reverse();
        assert_eq!(fwd, bwd, "seed {seed}: backward links disagree with forward links");
        assert_eq!(l.len(), fwd.len(), "seed {seed}: len");
        assert_eq!(l.is_empty(), fwd.is_empty(), "seed {seed}: is_empty");
        assert_eq!(l.front(), fwd.first().copied(), "seed {seed}: front");
        if let (Some(&h), Some(&t)) = (fwd.first(), fwd.last()) {
            assert_eq!((n.node(h).prev, n.node(t).next), (NIL, NIL), "seed {seed}: ends");
        }
    }

    /// Random sequences of every list operation over two lists sharing one arena, against a
    /// `VecDeque` model of each list: after every step both lists hold the model's values in
    /// its order, their links are consistent both ways, every live node is on a list, and the
    /// arena never holds more slots than the most nodes ever live at once (freed slots are
    /// reused before a new one is taken).
    #[test]
    fn random_operations_match_a_vecdeque_model() {
        use std::collections::VecDeque;
        let (seeds, steps, cap): (u64, usize, usize) = if cfg!(miri) { (2, 150, 10) } else { (40, 3000, 64) };
        for seed in 1..=seeds {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut n: Nodes<u32> = Nodes::new();
            let mut lists = [List::default(), List::default()];
            // The model: per list, the (index, value) pairs in order.
            let mut model: [VecDeque<(u32, u32)>; 2] = [VecDeque::new(), VecDeque::new()];
            let (mut next_val, mut peak) = (0u32, 0usize);
            for step in 0..steps {
                let which = rng.below(2);
                let len = model[which].len();
                let val = next_val;
                // Grow while short, so that removals from the middle and moves have room;
                // shrink while long, so that steps stay cheap and the ends are often met.
                let op = match len {
                    0..3 => rng.below(3),
                    _ if len > cap => 3 + rng.below(4),
                    _ => rng.below(7),
                };
                match op {
                    0 => {
                        let i = lists[which].push_back(&mut n, val);
                        model[which].push_back((i, val));
                    }
                    1 if len > 0 => {
                        let at = rng.below(len);
                        let i = lists[which].insert_after(&mut n, model[which][at].0, val);
                        model[which].insert(at + 1, (i, val));
                    }
                    2 => {
                        let at = rng.below(len + 1);
                        let before = model[which].get(at).map_or(NIL, |e| e.0);
                        let i = lists[which].insert_before(&mut n, before, val);
                        model[which].insert(at, (i, val));
                    }
                    3 | 4 => {
                        let at = rng.below(len);
                        let (i, v) = model[which].remove(at).unwrap();
                        assert_eq!(lists[which].remove(&mut n, i), v, "seed {seed} step {step}: removed value");
                    }
                    5 => {
                        let (from, to) = (rng.below(len), rng.below(len + 1));
                        let i = model[which][from].0;
                        let before = model[which].get(to).map_or(NIL, |e| e.0);
                        lists[which].move_before(&mut n, i, before);
                        let e = model[which].remove(from).unwrap();
                        // `to` named a position before the removal; it shifts if it was after.
                        let to = if to > from { to - 1 } else { to };
                        model[which].insert(to, e);
                    }
                    6 => {
                        let other = 1 - which;
                        let at = rng.below(len);
                        let to = rng.below(model[other].len() + 1);
                        let before = model[other].get(to).map_or(NIL, |e| e.0);
                        let (l, r) = lists.split_at_mut(1);
                        let (src, dst) = if which == 0 { (&mut l[0], &mut r[0]) } else { (&mut r[0], &mut l[0]) };
                        let i = model[which][at].0;
                        src.move_to(&mut n, i, dst, before);
                        let e = model[which].remove(at).unwrap();
                        model[other].insert(to, e);
                    }
                    _ => continue,
                }
                if matches!(op, 0..=2) {
                    next_val += 1;
                }
                let live = model[0].len() + model[1].len();
                peak = peak.max(live);
                for k in 0..2 {
                    check_links(&lists[k], &n, seed);
                    let got: Vec<(u32, u32)> = lists[k].indices(&n).into_iter().map(|i| (i, *n.get(i))).collect();
                    assert!(got.iter().eq(model[k].iter()), "seed {seed} step {step}: list {k} is {got:?}");
                }
                assert_eq!(n.len(), live, "seed {seed} step {step}: live nodes");
                assert_eq!(slots(&n), peak, "seed {seed} step {step}: a freed slot was not reused");
            }
        }
    }

    /// Indices past the first chunk address the right slots, a full chunk is never grown (the
    /// next one starts), and once everything is freed a refill takes no new slot.
    #[test]
    fn arena_spans_chunks_and_reuses_every_slot() {
        let mut n: Nodes<u32> = Nodes::new();
        let mut l = List::default();
        let count = CHUNK + CHUNK / 2;
        let idx: Vec<u32> = (0..count as u32).map(|v| l.push_back(&mut n, v)).collect();
        assert_eq!(idx, (0..count as u32).collect::<Vec<_>>(), "fresh slots are taken in order");
        assert_eq!(n.chunks.len(), 2);
        assert!(n.chunks.iter().all(|c| c.capacity() == CHUNK), "a chunk never reallocates");
        assert!((0..count as u32).all(|i| *n.get(i) == i));
        // Free every other node, then all; each refill reuses freed slots, most recent first.
        for &i in idx.iter().step_by(2) {
            assert_eq!(l.remove(&mut n, i), i);
        }
        let last_freed = *idx.iter().step_by(2).next_back().unwrap();
        assert_eq!(l.push_back(&mut n, u32::MAX), last_freed, "LIFO reuse");
        assert_eq!(l.remove(&mut n, last_freed), u32::MAX);
        while let Some(i) = l.front() {
            l.remove(&mut n, i);
        }
        assert!(l.is_empty() && n.len() == 0);
        let again: Vec<u32> = (0..count as u32).map(|v| l.push_back(&mut n, v)).collect();
        let mut sorted = again.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, idx, "a refill takes exactly the freed slots");
        assert_eq!(slots(&n), count, "no slot was added");
        assert_eq!(l.indices(&n), again, "and links them in queueing order");
    }

    #[test]
    #[should_panic(expected = "freed twice")]
    fn freeing_a_node_twice_is_caught() {
        let mut n: Nodes<u32> = Nodes::new();
        let mut l = List::default();
        let i = l.push_back(&mut n, 1);
        l.remove(&mut n, i);
        n.take(i);
    }
}
