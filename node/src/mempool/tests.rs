use super::*;
use chatpay_proto::{Output, SecretKey, Signature, Transfer};

const CHAIN: Hash = Hash([3; 32]);

fn key(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n;
    SecretKey::from_slice(&b).unwrap()
}

fn tx(from: u8, nonce: u64, amount: u64) -> SignedTransfer {
    tx_with(from, nonce, amount, 10, CHAIN, 0)
}

fn tx_with(
    from: u8,
    nonce: u64,
    amount: u64,
    fee: u64,
    chain: Hash,
    memo: usize,
) -> SignedTransfer {
    let out = Output {
        recipient: key(99).public_key().clone(),
        amount,
    };
    Transfer::new(
        chain,
        key(from).public_key().clone(),
        nonce,
        fee,
        vec![out],
        vec![0; memo],
    )
    .unwrap()
    .sign(&key(from))
}

fn rich() -> Option<Account> {
    Some(Account {
        balance: 1_000_000,
        nonce: 0,
        ..Account::default()
    })
}

fn pool(max_txs: usize, max_per_sender: usize) -> Mempool {
    let config = MempoolConfig {
        max_txs,
        max_bytes: 1 << 20,
        max_per_sender,
        max_parked: max_txs,
    };
    Mempool::new(config, CHAIN, 10)
}

/// A pool of `max_txs` holding at most `max_parked` behind nonce gaps.
fn parking(max_txs: usize, max_parked: usize) -> Mempool {
    let config = MempoolConfig {
        max_txs,
        max_bytes: 1 << 20,
        max_per_sender: 64,
        max_parked,
    };
    Mempool::new(config, CHAIN, 10)
}

fn held(m: &Mempool, from: u8, nonce: u64) -> bool {
    m.get(&tx(from, nonce, 5).tx_id()).is_some()
}

#[test]
fn admits_once_and_dedupes_by_id() {
    let mut m = pool(10, 4);
    let t = tx(1, 1, 5);
    assert_eq!(m.admit(t.clone(), rich(), None), Ok(Admission::Admitted));
    assert_eq!(
        m.admit(t.clone(), rich(), None),
        Ok(Admission::AlreadyPending)
    );
    // Same content, another signature: same transaction.
    let resigned = SignedTransfer::new(t.transfer().clone(), Signature([3; 64]));
    assert_eq!(
        m.admit(resigned.clone(), rich(), None),
        Ok(Admission::AlreadyPending)
    );
    assert_eq!(m.len(), 1);
    assert!(m.get(&t.tx_id()).is_some());
    // The signature checked on admission is remembered, for execution.
    assert_eq!(m.signatures().len(), 1);
    assert!(m.signatures().is_valid(&t));
    assert!(!m.signatures().is_valid(&resigned));
    assert_eq!(m.signatures().len(), 1);
}

#[test]
fn each_refusal_has_its_reason() {
    let mut m = pool(10, 4);
    m.admit(tx(1, 1, 5), rich(), None).unwrap();
    let forged = SignedTransfer::new(tx(1, 2, 5).transfer().clone(), Signature([1; 64]));
    let wrong_key = {
        let t = tx(1, 2, 5);
        SignedTransfer::new(t.transfer().clone(), key(2).sign_digest(&t.tx_id()))
    };
    let poor = Some(Account {
        balance: 100,
        nonce: 0,
        ..Account::default()
    });
    let cases: Vec<(SignedTransfer, Option<Account>, Option<u64>, &str)> = vec![
        (tx(1, 1, 6), rich(), None, "nonce_taken"),
        (tx(3, 1, 5), rich(), Some(4), "already_committed"),
        (
            tx_with(1, 2, 5, 10, Hash([4; 32]), 0),
            rich(),
            None,
            "wrong_chain",
        ),
        (forged, rich(), None, "bad_signature"),
        (wrong_key, rich(), None, "bad_signature"),
        (tx(1, 2, 0), rich(), None, "zero_amount"),
        (tx_with(1, 2, 5, 9, CHAIN, 0), rich(), None, "fee_too_low"),
        (
            tx_with(1, 2, u64::MAX, 10, CHAIN, 0),
            rich(),
            None,
            "amount_overflow",
        ),
        (tx(2, 1, 5), None, None, "unknown_sender"),
        (
            tx(2, 3, 5),
            Some(Account {
                balance: 100,
                nonce: 3,
                ..Account::default()
            }),
            None,
            "stale_nonce",
        ),
        (
            tx(2, 6, 5),
            Some(Account {
                balance: 100,
                nonce: 1,
                ..Account::default()
            }),
            None,
            "nonce_too_far_ahead",
        ),
        (tx(2, 1, 91), poor, None, "insufficient_funds"),
    ];
    for (t, acct, committed, reason) in cases {
        let err = m.admit(t, acct, committed).unwrap_err();
        assert_eq!(err.reason(), reason, "{err}");
    }
    assert_eq!(m.len(), 1, "nothing refused was admitted");
}

#[test]
fn funds_are_counted_across_a_senders_pending_transfers() {
    let mut m = pool(10, 4);
    let acct = Some(Account {
        balance: 100,
        nonce: 0,
        ..Account::default()
    });
    m.admit(tx(1, 1, 40), acct, None).unwrap(); // debit 50
    m.admit(tx(1, 2, 40), acct, None).unwrap(); // debit 50, total 100
    let err = m.admit(tx(1, 3, 1), acct, None).unwrap_err();
    assert_eq!(err.reason(), "insufficient_funds");
}

#[test]
fn bounded_by_count_bytes_and_sender() {
    let mut m = pool(3, 2);
    m.admit(tx(1, 1, 5), rich(), None).unwrap();
    m.admit(tx(1, 2, 5), rich(), None).unwrap();
    assert_eq!(
        m.admit(tx(1, 3, 5), rich(), None).unwrap_err().reason(),
        "nonce_too_far_ahead"
    );
    let two_ahead = Some(Account {
        balance: 1_000_000,
        nonce: 0,
        ..Account::default()
    });
    m.admit(tx(2, 1, 5), two_ahead, None).unwrap();
    assert_eq!(
        m.admit(tx(3, 1, 5), rich(), None).unwrap_err().reason(),
        "mempool_full"
    );
    assert_eq!(m.len(), 3);

    let config = MempoolConfig {
        max_txs: 100,
        max_bytes: 600,
        max_per_sender: 100,
        max_parked: 100,
    };
    let mut m = Mempool::new(config, CHAIN, 10);
    m.admit(tx_with(1, 1, 5, 10, CHAIN, 256), rich(), None)
        .unwrap();
    assert!(m.bytes() > 300);
    let err = m
        .admit(tx_with(1, 2, 5, 10, CHAIN, 256), rich(), None)
        .unwrap_err();
    assert_eq!(err.reason(), "mempool_full");

    let config = MempoolConfig {
        max_txs: 100,
        max_bytes: 1 << 20,
        max_per_sender: 2,
        max_parked: 100,
    };
    let mut m = Mempool::new(config, CHAIN, 10);
    // Window of 2 above committed nonce 5: nonces 6 and 7.
    let at5 = Some(Account {
        balance: 1_000_000,
        nonce: 5,
        ..Account::default()
    });
    m.admit(tx(1, 6, 5), at5, None).unwrap();
    m.admit(tx(1, 7, 5), at5, None).unwrap();
    assert_eq!(
        m.admit(tx(1, 8, 5), at5, None).unwrap_err().reason(),
        "nonce_too_far_ahead"
    );
}

#[test]
fn batch_keeps_each_senders_nonces_consecutive() {
    let mut m = pool(100, 10);
    // Arrival: alice 2, bob 1, alice 1, alice 4 (gap at 3), carol 1.
    for t in [
        tx(1, 2, 5),
        tx(2, 1, 5),
        tx(1, 1, 5),
        tx(1, 4, 5),
        tx(3, 1, 5),
    ] {
        m.admit(t, rich(), None).unwrap();
    }
    let mut next = |_: &PublicKey| 1;
    let got: Vec<(u8, u64)> = m
        .batch(10, 1 << 20, &BTreeSet::new(), &mut next)
        .iter()
        .map(|t| {
            let from = (1..=3)
                .find(|i| key(*i).public_key() == t.transfer().sender())
                .unwrap();
            (from, t.transfer().nonce())
        })
        .collect();
    assert_eq!(got, vec![(2, 1), (1, 1), (1, 2), (3, 1)]);
    // Limits and exclusions.
    assert_eq!(m.batch(2, 1 << 20, &BTreeSet::new(), &mut next).len(), 2);
    let excluded: BTreeSet<TxId> = [tx(2, 1, 5).tx_id()].into();
    let rest = m.batch(10, 1 << 20, &excluded, &mut next);
    assert_eq!(rest.len(), 3);
    assert!(rest.iter().all(|t| t.tx_id() != tx(2, 1, 5).tx_id()));
    let one = size_of(&tx(1, 1, 5));
    assert_eq!(m.batch(10, one, &BTreeSet::new(), &mut next).len(), 1);
}

#[test]
fn commit_drops_included_and_stale() {
    let mut m = pool(100, 10);
    for t in [tx(1, 1, 5), tx(1, 2, 5), tx(1, 3, 5), tx(2, 1, 5)] {
        m.admit(t, rich(), None).unwrap();
    }
    // A block included alice's nonce 1 and 2 (say, via another validator's
    // copy of nonce 2 with other content): alice's pending 2 is now stale.
    let other2 = tx(1, 2, 6);
    let mut committed = |k: &PublicKey| if k == key(1).public_key() { 2 } else { 0 };
    m.on_commit(&[tx(1, 1, 5), other2], &mut committed);
    assert_eq!(m.len(), 2);
    assert!(m.get(&tx(1, 3, 5).tx_id()).is_some());
    assert!(m.get(&tx(2, 1, 5).tx_id()).is_some());
    assert_eq!(m.bytes(), 2 * size_of(&tx(1, 3, 5)));
}

/// `check` answers what `admit` would, but for the signature, and changes
/// nothing: a caller checks the signature in between without the mempool.
#[test]
fn check_answers_as_admit_would_and_changes_nothing() {
    let mut m = pool(2, 4);
    let t = tx(1, 1, 5);
    assert_eq!(m.check(&t, rich(), None), Ok(true));
    assert!(m.is_empty());
    assert!(m.signatures().is_empty(), "check verifies no signature");
    // A forgery passes the cheap rules; only admit refuses it.
    let forged = SignedTransfer::new(tx(1, 1, 6).transfer().clone(), Signature([1; 64]));
    assert_eq!(m.check(&forged, rich(), None), Ok(true));
    assert!(matches!(
        m.admit(forged, rich(), None),
        Err(AdmitError::BadSignature(_))
    ));
    assert_eq!(m.admit(t.clone(), rich(), None), Ok(Admission::Admitted));
    assert_eq!(m.check(&t, rich(), None), Ok(false));
    assert_eq!(
        m.check(&tx(1, 1, 7), rich(), None),
        Err(AdmitError::NonceTaken {
            nonce: 1,
            pending: t.tx_id(),
            replace_fee: 20,
        })
    );
    assert_eq!(
        m.check(&tx(2, 1, 5), rich(), Some(9)),
        Err(AdmitError::AlreadyCommitted { height: 9 })
    );
    m.admit(tx(2, 1, 5), rich(), None).unwrap();
    assert!(matches!(
        m.check(&tx(3, 1, 5), rich(), None),
        Err(AdmitError::PoolFull { count: 2, .. })
    ));
    assert_eq!(m.len(), 2);
}

/// Transfers behind a nonce gap cannot be ordered until it fills: they give
/// way to ones that can, so funded accounts that skip a nonce cannot keep
/// everyone else out with `mempool_full`.
#[test]
fn transfers_behind_a_gap_never_keep_out_orderable_ones() {
    let mut m = parking(4, 4);
    // Sender 1 skips nonce 1: 2, 3 and 4 wait behind the gap, and say so.
    for n in 2..=4 {
        assert_eq!(m.admit(tx(1, n, 5), rich(), None), Ok(Admission::Parked));
    }
    assert_eq!(m.parked(), 3);
    m.admit(tx(2, 1, 5), rich(), None).unwrap();
    assert_eq!((m.len(), m.parked()), (4, 3));
    // Full: each orderable one takes the room of the oldest parked one.
    m.admit(tx(3, 1, 5), rich(), None).unwrap();
    assert!(!held(&m, 1, 2) && held(&m, 1, 3));
    m.admit(tx(4, 1, 5), rich(), None).unwrap();
    m.admit(tx(5, 1, 5), rich(), None).unwrap();
    assert_eq!((m.len(), m.parked()), (4, 0));
    assert_eq!(m.bytes(), 4 * size_of(&tx(2, 1, 5)));
    // Full of orderable ones: refused, parked or not.
    for nonce in [1, 2] {
        let err = m.admit(tx(6, nonce, 5), rich(), None).unwrap_err();
        assert_eq!(err.reason(), "mempool_full");
    }
}

#[test]
fn parked_transfers_have_their_own_bound() {
    let mut m = parking(100, 2);
    for from in 1..=3 {
        m.admit(tx(from, 3, 5), rich(), None).unwrap();
    }
    // The oldest parked one made room for the third.
    assert_eq!((m.len(), m.parked()), (2, 2));
    assert!(!held(&m, 1, 3) && held(&m, 2, 3) && held(&m, 3, 3));
    // Orderable ones are not held to it.
    for from in 10..20 {
        m.admit(tx(from, 1, 5), rich(), None).unwrap();
    }
    assert_eq!((m.len(), m.parked()), (12, 2));
}

#[test]
fn closing_a_gap_unparks_what_follows_it() {
    let mut m = parking(100, 3);
    for nonce in [2, 3, 5] {
        m.admit(tx(1, nonce, 5), rich(), None).unwrap();
    }
    assert_eq!(m.parked(), 3);
    m.admit(tx(1, 1, 5), rich(), None).unwrap();
    // 1, 2, 3 are a run now; 5 still waits for 4.
    assert_eq!(m.parked(), 1);
    let mut next = |_: &PublicKey| 1;
    assert_eq!(m.batch(10, 1 << 20, &BTreeSet::new(), &mut next).len(), 3);
    // Unparked ones no longer give way to parked ones: the third newcomer
    // behind a gap takes the room of nonce 5, the oldest still parked.
    for from in 2..=4 {
        m.admit(tx(from, 2, 5), rich(), None).unwrap();
    }
    assert!(held(&m, 1, 2) && held(&m, 1, 3) && !held(&m, 1, 5));
    assert_eq!((m.len(), m.parked()), (6, 3));
}

#[test]
fn a_commit_that_closes_a_gap_unparks() {
    let mut m = parking(100, 10);
    m.admit(tx(1, 2, 5), rich(), None).unwrap();
    m.admit(tx(1, 3, 5), rich(), None).unwrap();
    assert_eq!(m.parked(), 2);
    // Nonce 1 reached a block through another validator, never this one.
    let mut committed = |k: &PublicKey| u64::from(k == key(1).public_key());
    m.on_commit(&[tx(1, 1, 7)], &mut committed);
    assert_eq!((m.len(), m.parked()), (2, 0));
}

/// A pending transfer is not checked again when a block orders it, even
/// once the signature cache has forgotten it; anything else is checked.
#[test]
fn what_the_mempool_holds_is_not_checked_again() {
    let mut m = parking(100, 100);
    // A cache of one, as if admissions had turned it over.
    m.signatures = Arc::new(SignatureCache::new(1));
    let (a, b) = (tx(1, 1, 5), tx(2, 1, 5));
    m.admit(a.clone(), rich(), None).unwrap();
    m.admit(b.clone(), rich(), None).unwrap();
    let cache = m.signatures().clone();
    assert!(!cache.remembers(&a) && cache.remembers(&b));
    let pool = Mutex::new(m);
    assert!(signature_valid(&cache, &pool, &a));
    assert!(
        !cache.remembers(&a),
        "held by the mempool: not checked again"
    );
    // Same transfer, forged signature: not what the mempool holds; checked.
    let forged = SignedTransfer::new(a.transfer().clone(), Signature([1; 64]));
    assert!(!pool.lock().unwrap().holds(&forged));
    assert!(!signature_valid(&cache, &pool, &forged));
    // Neither remembered nor pending: checked, and remembered.
    let c = tx(3, 1, 5);
    assert!(signature_valid(&cache, &pool, &c));
    assert!(cache.remembers(&c));
}

/// Whatever arrives, in whatever order, and whatever commits: a transfer
/// is parked exactly when its sender lacks an earlier nonce above the
/// committed one, and the pool stays within both bounds.
mod parking_invariant {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Admit { from: u8, nonce: u64 },
        Commit { from: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u8..=4, 1u64..=8).prop_map(|(from, nonce)| Op::Admit { from, nonce }),
            1 => (1u8..=4).prop_map(|from| Op::Commit { from }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 100, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn parked_is_exactly_what_waits_behind_a_gap(ops in proptest::collection::vec(op(), 1..60)) {
            let mut m = parking(10, 3);
            let mut committed = [0u64; 5];
            for op in ops {
                match op {
                    Op::Admit { from, nonce } => {
                        let account = Some(Account { balance: 1_000_000, nonce: committed[from as usize], ..Account::default() });
                        let _ = m.admit(tx(from, nonce, 5), account, None);
                    }
                    Op::Commit { from } => {
                        // The sender's next nonce commits (from this pool or
                        // another validator's copy).
                        let next = committed[from as usize] + 1;
                        committed[from as usize] = next;
                        let mut nonce_of = |k: &PublicKey| {
                            (1..=4u8).find(|i| key(*i).public_key() == k).map_or(0, |i| committed[i as usize])
                        };
                        m.on_commit(&[tx(from, next, 5)], &mut nonce_of);
                    }
                }
                prop_assert!(m.len() <= 10 && m.parked() <= 3);
                let mut parked = 0;
                for from in 1..=4u8 {
                    let Some(nonces) = m.by_sender.get(key(from).public_key()) else { continue };
                    let mut next = committed[from as usize] + 1;
                    for (nonce, (id, _)) in nonces {
                        let gap = *nonce != next;
                        if !gap {
                            next += 1;
                        }
                        let seq = m.by_id[id].seq;
                        prop_assert_eq!(m.parked.contains_key(&seq), gap, "sender {} nonce {}", from, nonce);
                        parked += usize::from(gap);
                    }
                }
                prop_assert_eq!(parked, m.parked());
                let parked_bytes: usize = m.parked.values().map(|id| m.by_id[id].bytes).sum();
                prop_assert_eq!(parked_bytes, m.parked_bytes);
            }
        }
    }
}

/// A transfer with a pending one's nonce replaces it when its fee is at
/// least the pending fee plus the minimum fee (a wallet's cancel): the old
/// one is gone from the pool, and the sender's other pending transfers
/// must still be covered.
#[test]
fn a_higher_fee_replaces_a_pending_transfer_of_the_same_nonce() {
    let mut m = pool(100, 64);
    let first = tx(1, 1, 5);
    let second = tx(1, 2, 5);
    m.admit(first.clone(), rich(), None).unwrap();
    m.admit(second.clone(), rich(), None).unwrap();
    // The same fee, or one minimum fee too little: refused, naming the fee
    // that would do.
    for fee in [10, 19] {
        assert_eq!(
            m.admit(tx_with(1, 1, 6, fee, CHAIN, 0), rich(), None),
            Err(AdmitError::NonceTaken {
                nonce: 1,
                pending: first.tx_id(),
                replace_fee: 20,
            })
        );
    }
    let cancel = tx_with(1, 1, 1, 20, CHAIN, 0);
    assert_eq!(
        m.admit(cancel.clone(), rich(), None),
        Ok(Admission::Admitted)
    );
    assert!(m.get(&first.tx_id()).is_none() && m.get(&cancel.tx_id()).is_some());
    assert!(m.get(&second.tx_id()).is_some());
    assert_eq!(m.len(), 2);
    // A replacement the balance cannot carry beside the later transfer.
    let poor = Some(Account {
        balance: 40,
        nonce: 0,
        ..Account::default()
    });
    let greedy = tx_with(1, 1, 1, 30, CHAIN, 0);
    assert!(matches!(
        m.admit(greedy, poor, None),
        Err(AdmitError::InsufficientFunds { .. })
    ));
}

#[test]
fn expired_transfers_are_refused_and_dropped_by_the_chain_time() {
    let mut m = pool(100, 16);
    let expiring = |nonce, at| {
        tx(1, nonce, 5)
            .transfer()
            .clone()
            .with_expiry(at)
            .sign(&key(1))
    };
    m.admit(expiring(1, 1_000), rich(), None).unwrap();
    m.admit(expiring(2, 5_000), rich(), None).unwrap();
    m.admit(tx(1, 3, 5), rich(), None).unwrap();
    m.admit(tx(2, 1, 5), rich(), None).unwrap();
    m.expire(1_000);
    assert_eq!(m.len(), 4, "valid up to and at its expiry");
    // Nonce 1 expires: 2 and 3 can never be ordered without it, and go
    // too (kept, they would hold room for free); another sender's stays.
    m.expire(1_001);
    assert_eq!(m.len(), 1);
    assert!(m.get(&tx(2, 1, 5).tx_id()).is_some());
    assert_eq!(m.bytes(), size_of(&tx(2, 1, 5)));
    let err = m.admit(expiring(3, 1_000), rich(), None).unwrap_err();
    assert_eq!(err.reason(), "expired");
    m.expire(999); // the clock never goes back
    assert_eq!(
        m.admit(expiring(3, 1_000), rich(), None)
            .unwrap_err()
            .reason(),
        "expired"
    );
}
