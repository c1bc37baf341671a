//! What the client API keeps between calls, each bounded.
//!
//! A finality proof needs the Merkle leaves of its whole block (one store
//! read per transaction) and `GetBlock` reads every transaction of a block:
//! without these caches one client asking again and again for a proof or a
//! block of 2 000 transfers would make the validator read 2 000 records per
//! call. Committed blocks never change, so an entry never goes stale.

use chatpay_proto::Hash;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Blocks whose Merkle leaves are kept (32 bytes per transaction: at most
/// 64 × 2 000 × 32 bytes = 4 MiB).
pub const LEAF_BLOCKS: usize = 64;
/// `GetBlock` answers kept (each at most `max_block_bytes` plus receipts).
pub const BLOCK_ANSWERS: usize = 8;
/// Most open `SubscribeAccount` streams on one connection.
pub const SUBSCRIPTIONS_PER_CONNECTION: usize = 10_000;
/// Most open `SubscribeAccount` streams in all.
pub const SUBSCRIPTIONS: usize = 50_000;

/// The last `capacity` values by height, oldest evicted first.
pub struct ByHeight<T> {
    entries: Mutex<VecDeque<(u64, Arc<T>)>>,
    capacity: usize,
}

impl<T> ByHeight<T> {
    /// An empty cache of `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
        }
    }

    /// The value for `height`, computing and keeping it on a miss.
    pub fn get_or_try<E>(
        &self,
        height: u64,
        compute: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if let Some(hit) = self.lock().iter().find(|(h, _)| *h == height) {
            return Ok(hit.1.clone());
        }
        let value = Arc::new(compute()?);
        let mut entries = self.lock();
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back((height, value.clone()));
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Arc<T>)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Merkle leaves of committed blocks.
pub type Leaves = ByHeight<Vec<Hash>>;

/// Open subscriptions, per connection and in all.
#[derive(Debug, Default)]
pub struct Subscriptions {
    open: Mutex<(usize, HashMap<Option<SocketAddr>, usize>)>,
}

/// One open subscription; dropping it closes the slot.
#[derive(Debug)]
pub struct SubscriptionSlot {
    owner: Arc<Subscriptions>,
    peer: Option<SocketAddr>,
}

impl Subscriptions {
    /// A slot for a subscription from `peer`, or why there is none.
    pub fn open(self: &Arc<Self>, peer: Option<SocketAddr>) -> Result<SubscriptionSlot, String> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= SUBSCRIPTIONS {
            return Err(format!(
                "{SUBSCRIPTIONS} subscriptions are open on this validator"
            ));
        }
        let here = open.1.entry(peer).or_default();
        if *here >= SUBSCRIPTIONS_PER_CONNECTION {
            return Err(format!(
                "{SUBSCRIPTIONS_PER_CONNECTION} subscriptions are open on this connection"
            ));
        }
        *here += 1;
        open.0 += 1;
        Ok(SubscriptionSlot {
            owner: self.clone(),
            peer,
        })
    }

    /// Subscriptions open now.
    pub fn count(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_computes_once_per_height_and_keeps_its_bound() {
        let cache = ByHeight::new(2);
        let mut computed = 0;
        for h in [1, 1, 2, 1, 3, 1] {
            cache
                .get_or_try::<()>(h, || {
                    computed += 1;
                    Ok(h * 10)
                })
                .unwrap();
        }
        // 1, 2, 3 computed; 1 again after 3 evicted it.
        assert_eq!(computed, 4);
        assert_eq!(cache.lock().len(), 2);
    }

    #[test]
    fn subscriptions_are_bounded_per_connection_and_slots_free_on_drop() {
        let subs = Arc::new(Subscriptions::default());
        let peer: Option<SocketAddr> = "127.0.0.1:9".parse().ok();
        let slots: Vec<_> = (0..SUBSCRIPTIONS_PER_CONNECTION)
            .map(|_| subs.open(peer).unwrap())
            .collect();
        assert!(subs.open(peer).unwrap_err().contains("this connection"));
        // Another connection still gets one.
        let other = subs.open("127.0.0.1:10".parse().ok()).unwrap();
        drop(slots);
        assert_eq!(subs.count(), 1);
        drop(other);
        assert_eq!(subs.count(), 0);
        assert!(subs.open(peer).is_ok());
    }
}
