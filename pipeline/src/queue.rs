//! A bounded frame queue with a drop-oldest policy.
//!
//! Video must never queue up: when the consumer falls behind, the oldest
//! waiting frame is discarded and counted, so the consumer always gets the
//! freshest picture and latency stays bounded by `capacity` frame intervals.
//! The queue's storage is allocated once; pushing and popping allocate nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Default number of frames a stream's queue holds: 4, 400 ms at 10 fps
/// and 133 ms at 30 fps behind the detectors at worst. Near a node's
/// capacity the detectors fall behind for a moment now and then (another
/// process takes the core); with 2 the queue dropped frames in those
/// moments, so at 14 int8 cameras on two cores the node lost 27-152 frames
/// in 30 s where 4 and 6 lost none in most runs, at the same CPU (session
/// 27, docs/benchmarks.md "Cameras sustained").
pub const DEFAULT_QUEUE_CAPACITY: usize = 4;

/// A bounded multi-producer, multi-consumer queue that drops the oldest item
/// when full.
#[derive(Debug)]
pub struct DropOldestQueue<T> {
    items: Mutex<VecDeque<T>>,
    ready: Condvar,
    space: Condvar,
    capacity: usize,
    dropped: AtomicU64,
}

impl<T> DropOldestQueue<T> {
    /// A queue of `capacity` items (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        DropOldestQueue {
            items: Mutex::new(VecDeque::with_capacity(capacity)),
            ready: Condvar::new(),
            space: Condvar::new(),
            capacity,
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        // A panic while holding this lock cannot leave the deque inconsistent
        // (push/pop are atomic operations on it), so poisoning is ignored.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `item`; when full, removes and returns the oldest item (the
    /// caller drops it outside the lock) and counts the drop.
    pub fn push(&self, item: T) -> Option<T> {
        let mut q = self.lock();
        let evicted = if q.len() >= self.capacity {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            q.pop_front()
        } else {
            None
        };
        q.push_back(item);
        drop(q);
        self.ready.notify_one();
        evicted
    }

    /// Appends `item`, waiting for space while the queue is full (back-pressure,
    /// for offline sources that must not lose frames). `give_up` is polled every
    /// 50 ms; when it returns true the push falls back to dropping the oldest.
    pub fn push_wait(&self, item: T, give_up: impl Fn() -> bool) -> Option<T> {
        let mut q = self.lock();
        while q.len() >= self.capacity {
            if give_up() {
                drop(q);
                return self.push(item);
            }
            q = self
                .space
                .wait_timeout(q, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        q.push_back(item);
        drop(q);
        self.ready.notify_one();
        None
    }

    /// Takes the oldest item, if any, without waiting.
    pub fn try_pop(&self) -> Option<T> {
        let item = self.lock().pop_front();
        if item.is_some() {
            self.space.notify_one();
        }
        item
    }

    /// Takes the oldest item, waiting up to `timeout` for one.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut q = self.lock();
        loop {
            if let Some(item) = q.pop_front() {
                drop(q);
                self.space.notify_one();
                return Some(item);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            q = self
                .ready
                .wait_timeout(q, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Items waiting now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity given at construction.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items dropped since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Wakes every waiting consumer and producer (used at shutdown).
    pub fn wake_all(&self) {
        self.ready.notify_all();
        self.space.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn drops_oldest_when_full_and_counts() {
        let q = DropOldestQueue::new(2);
        assert_eq!(q.push(1), None);
        assert_eq!(q.push(2), None);
        assert_eq!(q.push(3), Some(1));
        assert_eq!(q.push(4), Some(2));
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.len(), 2);
        assert_eq!(q.try_pop(), Some(3));
        assert_eq!(q.try_pop(), Some(4));
        assert_eq!(q.try_pop(), None);
    }

    #[test]
    fn push_wait_blocks_until_space_or_give_up() {
        let q = Arc::new(DropOldestQueue::new(1));
        q.push(1u32);
        let c = Arc::clone(&q);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            c.try_pop()
        });
        assert_eq!(q.push_wait(2, || false), None, "waited for the consumer");
        assert_eq!(t.join().ok().flatten(), Some(1));
        assert_eq!(q.dropped(), 0);
        assert_eq!(
            q.push_wait(3, || true),
            Some(2),
            "gives up by dropping the oldest"
        );
    }

    #[test]
    fn pop_waits_for_a_producer() {
        let q = Arc::new(DropOldestQueue::new(1));
        let p = Arc::clone(&q);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            p.push(7u32);
        });
        assert_eq!(q.pop_timeout(Duration::from_secs(5)), Some(7));
        assert_eq!(q.pop_timeout(Duration::from_millis(10)), None);
        assert!(t.join().is_ok());
    }
}
