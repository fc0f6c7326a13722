//! The event queue: events ordered by (virtual time, insertion sequence), so equal times run
//! in the order they were scheduled and a run is reproducible. Start at [`Queue::push`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use controllers::Moment;

/// A min-queue of `(time, seq) -> T`.
pub struct Queue<T> {
    heap: BinaryHeap<Reverse<(Moment, u64, Slot<T>)>>,
    seq: u64,
}

/// Wraps the payload so the heap orders by `(time, seq)` only.
struct Slot<T>(T);

impl<T> PartialEq for Slot<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<T> Eq for Slot<T> {}
impl<T> PartialOrd for Slot<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Slot<T> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> Queue<T> {
    /// Schedule `item` at `at`.
    pub fn push(&mut self, at: Moment, item: T) {
        let seq = self.reserve();
        self.push_at(at, seq, item);
    }

    /// Take the next sequence number without scheduling anything: a driver that keeps some
    /// events in its own per-target FIFO (sorted by `(time, seq)`) and has only the head of
    /// each in the queue ([`Queue::push_at`]) runs them in the very order `push` would have.
    pub fn reserve(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Schedule `item` at `at` with a sequence number taken earlier by [`Queue::reserve`].
    pub fn push_at(&mut self, at: Moment, seq: u64, item: T) {
        self.heap.push(Reverse((at, seq, Slot(item))));
    }

    /// The earliest event's time.
    pub fn peek_time(&self) -> Option<Moment> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Take the earliest event.
    pub fn pop(&mut self) -> Option<(Moment, T)> {
        self.pop_keyed().map(|(t, _, item)| (t, item))
    }

    /// Take the earliest event with its sequence number: `(time, seq)` is its place in the
    /// run's order, which a driver's side FIFO of deferred work ([`Queue::reserve`]) compares
    /// against.
    pub fn pop_keyed(&mut self) -> Option<(Moment, u64, T)> {
        self.heap
            .pop()
            .map(|Reverse((t, seq, Slot(item)))| (t, seq, item))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// The head of a side FIFO of `(time, queue seq, item)` entries if it sorts before `current`
/// (the running event's `(time, seq)`): the entries a watcher must apply before that event.
pub fn pop_before<T>(
    fifo: &mut std::collections::VecDeque<(Moment, u64, T)>,
    current: (Moment, u64),
) -> Option<(Moment, T)> {
    if fifo
        .front()
        .is_some_and(|(at, seq, _)| (*at, *seq) < current)
    {
        fifo.pop_front().map(|(at, _, item)| (at, item))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_insertion_order() {
        let mut q = Queue::default();
        q.push(Moment::from_millis(5), "b");
        q.push(Moment::from_millis(3), "a");
        q.push(Moment::from_millis(5), "c");
        q.push(Moment::from_millis(1), "z");
        let order: Vec<_> =
            std::iter::from_fn(|| q.pop().map(|(t, e)| (t.as_millis(), e))).collect();
        assert_eq!(order, vec![(1, "z"), (3, "a"), (5, "b"), (5, "c")]);
    }

    #[test]
    fn a_reserved_sequence_keeps_its_place_among_later_pushes() {
        let mut q = Queue::default();
        let early = q.reserve();
        q.push(Moment::from_millis(5), "pushed after the reservation");
        q.push(Moment::from_millis(4), "earlier time");
        q.push_at(Moment::from_millis(5), early, "reserved first");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, e)| e).collect();
        assert_eq!(
            order,
            [
                "earlier time",
                "reserved first",
                "pushed after the reservation"
            ]
        );
    }
}
