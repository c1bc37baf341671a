//! Signatures this validator checked lately, so each is checked once.
//!
//! A transfer reaches a validator up to three times: from its client or
//! forwarded by another validator (admission), and in the proposal that
//! orders it (execution), in either order. Whichever comes first checks the
//! signature and records (tx id, signature); the others find it here. The
//! tx id is the hash of everything signed, so a hit means this very
//! signature over this very content verified before: the answer is the one
//! a fresh check would give, and execution stays a pure function.

use chatpay_proto::{Signature, SignatureError, SignedTransfer, TxId};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Valid signatures checked lately, oldest forgotten first.
pub struct SignatureCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Looked up only, never iterated (the order is `order`'s).
    valid: HashMap<TxId, Signature>,
    order: VecDeque<TxId>,
}

impl SignatureCache {
    /// A cache remembering up to `capacity` valid signatures (about 200
    /// bytes each).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Checks `tx`'s signature unless this very signature over this tx id
    /// was found valid before; remembers it when valid.
    pub fn verify(&self, tx: &SignedTransfer) -> Result<(), SignatureError> {
        if self.remembers(tx) {
            return Ok(());
        }
        // Checked outside the lock: checks run in parallel.
        tx.verify()?;
        self.insert(tx);
        Ok(())
    }

    /// Whether `tx`'s signature is valid (checked now, or found here).
    pub fn is_valid(&self, tx: &SignedTransfer) -> bool {
        self.verify(tx).is_ok()
    }

    /// Valid signatures remembered now.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this very signature over `tx`'s id was found valid lately
    /// (nothing is checked).
    pub fn remembers(&self, tx: &SignedTransfer) -> bool {
        self.lock()
            .valid
            .get(&tx.tx_id())
            .is_some_and(|s| s == tx.signature())
    }

    fn insert(&self, tx: &SignedTransfer) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        let id = tx.tx_id();
        // One valid signature per tx id is enough: a second one (ECDSA
        // signatures are not unique) is simply checked each time.
        if inner.valid.contains_key(&id) {
            return;
        }
        if inner.order.len() >= self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.valid.remove(&oldest);
            }
        }
        inner.valid.insert(id, *tx.signature());
        inner.order.push_back(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::suite::key;
    use chatpay_proto::{Output, Transfer};

    fn tx(nonce: u64) -> SignedTransfer {
        let out = Output {
            recipient: key(2).public_key().clone(),
            amount: 5,
        };
        Transfer::new(
            chatpay_proto::Hash([3; 32]),
            key(1).public_key().clone(),
            nonce,
            1,
            vec![out],
            vec![],
        )
        .unwrap()
        .sign(&key(1))
    }

    #[test]
    fn only_the_signature_checked_is_vouched_for() {
        let cache = SignatureCache::new(8);
        let t = tx(1);
        assert!(cache.is_valid(&t));
        assert_eq!(cache.len(), 1);
        // Same content, a forged signature: checked, refused, not recorded.
        let forged = SignedTransfer::new(t.transfer().clone(), Signature([3; 64]));
        assert!(cache.verify(&forged).is_err());
        assert!(!cache.is_valid(&forged));
        assert_eq!(cache.len(), 1);
        assert!(cache.is_valid(&t));
    }

    #[test]
    fn the_oldest_is_forgotten_first_and_rechecked_correctly() {
        let cache = SignatureCache::new(3);
        let txs: Vec<SignedTransfer> = (1..=5).map(tx).collect();
        for t in &txs {
            assert!(cache.is_valid(t));
        }
        assert_eq!(cache.len(), 3);
        let inner = cache.lock();
        let kept: Vec<TxId> = inner.order.iter().copied().collect();
        drop(inner);
        let newest: Vec<TxId> = txs[2..].iter().map(SignedTransfer::tx_id).collect();
        assert_eq!(kept, newest);
        // Forgotten ones are checked again, with the same answer.
        assert!(cache.is_valid(&txs[0]));
        assert!(SignatureCache::new(0).is_valid(&txs[0]));
    }
}
