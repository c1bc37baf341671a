//! One test suite, run against both stores.

use super::*;
use chatpay_proto::{Output, ReceiptCode, SecretKey, Transfer, sha256};

pub(crate) fn key(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n;
    SecretKey::from_slice(&b).unwrap()
}

fn header(height: u64, parent: Hash, tx_count: u32) -> BlockHeader {
    BlockHeader {
        genesis_hash: sha256(b"genesis"),
        height,
        round: height,
        parent_hash: parent,
        proposer: 0,
        timestamp_ms: 1_000 * height,
        tx_count,
        tx_root: sha256(&height.to_be_bytes()),
        state_root: sha256(&[height as u8; 3]),
    }
}

fn transfer(from: u8, to: u8, nonce: u64) -> SignedTransfer {
    let out = Output {
        recipient: key(to).public_key().clone(),
        amount: 10,
    };
    Transfer::new(
        Hash([3; 32]),
        key(from).public_key().clone(),
        nonce,
        1,
        vec![out],
        vec![],
    )
    .unwrap()
    .sign(&key(from))
}

fn genesis() -> BlockCommit {
    BlockCommit {
        header: header(0, Hash::default(), 0),
        certificate: None,
        transactions: vec![],
        receipts: vec![],
        accounts: vec![(
            key(1).public_key().clone(),
            Account {
                balance: 1_000,
                nonce: 0,
                ..Account::default()
            },
        )],
        burned: 0,
        tree_nodes: vec![(b"node".to_vec(), b"bytes".to_vec())],
        stale_tree_nodes: Vec::new(),
        history: Vec::new(),
    }
}

/// A history entry for every participant of every transfer (the store
/// keeps what it is given; execution computes numbers and hashes).
fn history_of(height: u64, txs: &[SignedTransfer]) -> Vec<(PublicKey, HistoryEntry)> {
    let mut out = Vec::new();
    for (i, tx) in txs.iter().enumerate() {
        for key in tx.transfer().participants() {
            out.push((
                key.clone(),
                HistoryEntry {
                    position: (height, i as u32),
                    tx_id: tx.tx_id(),
                    number: height,
                    hash_before: Hash([i as u8; 32]),
                },
            ));
        }
    }
    out
}

fn block(parent: &BlockHeader, txs: Vec<SignedTransfer>, burned: u64) -> BlockCommit {
    let n = txs.len() as u32;
    BlockCommit {
        header: header(parent.height + 1, parent.hash(), n),
        certificate: None,
        receipts: vec![
            Receipt {
                code: ReceiptCode::Success
            };
            txs.len()
        ],
        history: history_of(parent.height + 1, &txs),
        transactions: txs,
        accounts: vec![
            (
                key(1).public_key().clone(),
                Account {
                    balance: 900,
                    nonce: parent.height + 1,
                    ..Account::default()
                },
            ),
            (
                key(2).public_key().clone(),
                Account {
                    balance: 10 * (parent.height + 1),
                    nonce: 0,
                    ..Account::default()
                },
            ),
        ],
        burned,
        tree_nodes: Vec::new(),
        stale_tree_nodes: Vec::new(),
    }
}

pub(crate) fn empty_store(store: &dyn Store) {
    assert_eq!(store.committed_height().unwrap(), None);
    assert_eq!(store.last_header().unwrap(), None);
    assert_eq!(store.account(key(1).public_key()).unwrap(), None);
    assert_eq!(store.block(0).unwrap(), None);
    assert_eq!(store.burned().unwrap(), 0);
    assert_eq!(store.safety_data().unwrap(), None);
}

pub(crate) fn commits_and_reads_back(store: &dyn Store) {
    let g = genesis();
    store.commit_block(&g).unwrap();
    assert_eq!(store.committed_height().unwrap(), Some(0));
    // State tree nodes are written with the block.
    assert_eq!(store.tree_node(b"node").unwrap(), Some(b"bytes".to_vec()));
    assert_eq!(store.tree_node(b"other").unwrap(), None);
    let t1 = transfer(1, 2, 1);
    let b1 = block(&g.header, vec![t1.clone()], 1);
    store.commit_block(&b1).unwrap();
    assert_eq!(store.committed_height().unwrap(), Some(1));
    assert_eq!(store.last_header().unwrap(), Some(b1.header.clone()));
    assert_eq!(
        store.account(key(1).public_key()).unwrap(),
        Some(Account {
            balance: 900,
            nonce: 1,
            ..Account::default()
        })
    );
    assert_eq!(store.burned().unwrap(), 1);
    let stored = store.block(1).unwrap().unwrap();
    assert_eq!(stored.header, b1.header);
    assert_eq!(stored.tx_ids, vec![t1.tx_id()]);
    assert_eq!(store.height_of(&b1.header.hash()).unwrap(), Some(1));
    assert_eq!(store.height_of(&sha256(b"nope")).unwrap(), None);
    let rec = store.transaction(&t1.tx_id()).unwrap().unwrap();
    assert_eq!((rec.height, rec.index, rec.transaction), (1, 0, t1.clone()));
    assert_eq!(store.transaction(&sha256(b"unknown")).unwrap(), None);
    let mut seen = Vec::new();
    store
        .for_each_account(&mut |k, a| seen.push((k.clone(), *a)))
        .unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "key order");
}

pub(crate) fn history_pages_both_ways(store: &dyn Store) {
    let g = genesis();
    store.commit_block(&g).unwrap();
    let mut parent = g.header;
    let mut ids = Vec::new();
    for h in 1..=5u64 {
        let txs = vec![transfer(1, 2, 2 * h - 1), transfer(1, 3, 2 * h)];
        ids.extend(txs.iter().map(|t| t.tx_id()));
        let b = block(&parent, txs, h);
        store.commit_block(&b).unwrap();
        parent = b.header;
    }
    let alice = key(1).public_key().clone();
    // Newest first, in pages of 3, each page strictly before the cursor.
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.history_before(&alice, cursor, 3).unwrap();
        if page.is_empty() {
            break;
        }
        cursor = Some(page.last().unwrap().position);
        all.extend(page);
    }
    let got: Vec<TxId> = all.iter().map(|e| e.tx_id).collect();
    let want: Vec<TxId> = ids.iter().rev().copied().collect();
    assert_eq!(got, want);
    // Carol (key 3) only in odd positions; Bob (key 2) only in even ones.
    let carol = store
        .history_before(key(3).public_key(), None, 100)
        .unwrap();
    assert_eq!(carol.len(), 5);
    assert!(carol.iter().all(|e| e.position.1 == 1));
    // Oldest first from a height.
    let from3 = store.history_from(&alice, (3, 0), 100).unwrap();
    assert_eq!(
        from3.iter().map(|e| e.tx_id).collect::<Vec<_>>(),
        ids[4..].to_vec()
    );
    assert_eq!(store.history_from(&alice, (3, 0), 1).unwrap().len(), 1);
    assert!(
        store
            .history_before(&alice, Some((0, 0)), 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .history_before(key(9).public_key(), None, 10)
            .unwrap()
            .is_empty()
    );
}

pub(crate) fn refuses_commits_that_do_not_extend(store: &dyn Store) {
    let g = genesis();
    assert!(matches!(
        store.commit_block(&block(&g.header, vec![], 0)),
        Err(StoreError::InvalidCommit { height: 1, .. })
    ));
    store.commit_block(&g).unwrap();
    assert!(matches!(
        store.commit_block(&g),
        Err(StoreError::InvalidCommit { height: 0, .. })
    ));
    let mut skip = block(&g.header, vec![], 0);
    skip.header.height = 2;
    assert!(store.commit_block(&skip).is_err());
    let mut orphan = block(&g.header, vec![], 0);
    orphan.header.parent_hash = sha256(b"other");
    assert!(store.commit_block(&orphan).is_err());
    let mut no_receipt = block(&g.header, vec![transfer(1, 2, 1)], 0);
    no_receipt.receipts.clear();
    assert!(store.commit_block(&no_receipt).is_err());
    let mut wrong_count = block(&g.header, vec![transfer(1, 2, 1)], 0);
    wrong_count.header.tx_count = 2;
    assert!(store.commit_block(&wrong_count).is_err());
    // Nothing of the refused commits is visible.
    assert_eq!(store.committed_height().unwrap(), Some(0));
    assert_eq!(store.account(key(2).public_key()).unwrap(), None);
    assert_eq!(store.transaction(&transfer(1, 2, 1).tx_id()).unwrap(), None);
}

pub(crate) fn keeps_certificates_and_safety_data(store: &dyn Store) {
    let g = genesis();
    store.commit_block(&g).unwrap();
    let mut b = block(&g.header, vec![], 0);
    let qc = QuorumCertificate {
        block_hash: b.header.hash(),
        round: 1,
        height: 1,
        signatures: vec![chatpay_proto::ValidatorSignature {
            validator: 0,
            signature: key(1).sign(b"vote"),
        }],
    };
    b.certificate = Some(qc.clone());
    store.commit_block(&b).unwrap();
    assert_eq!(store.block(1).unwrap().unwrap().certificate, Some(qc));
    assert_eq!(store.block(0).unwrap().unwrap().certificate, None);
    store.put_safety_data(b"round 7").unwrap();
    store.put_safety_data(b"round 8").unwrap();
    assert_eq!(
        store.safety_data().unwrap().as_deref(),
        Some(&b"round 8"[..])
    );
    // The highest certificates sit beside the safety record, each its own.
    assert_eq!(store.high_qc().unwrap(), None);
    assert_eq!(store.high_tc().unwrap(), None);
    store.put_high_qc(b"qc 6").unwrap();
    store.put_high_tc(b"tc 7").unwrap();
    store.put_high_tc(b"tc 8").unwrap();
    assert_eq!(store.high_qc().unwrap().as_deref(), Some(&b"qc 6"[..]));
    assert_eq!(store.high_tc().unwrap().as_deref(), Some(&b"tc 8"[..]));
    assert_eq!(
        store.safety_data().unwrap().as_deref(),
        Some(&b"round 8"[..])
    );
}

pub(crate) fn prunes_pending_blocks_by_height(store: &dyn Store) {
    let hash = |n: u8| sha256(&[n]);
    store.put_pending_block(3, &hash(3), b"three").unwrap();
    store.put_pending_block(1, &hash(1), b"one").unwrap();
    store.put_pending_block(2, &hash(2), b"two").unwrap();
    store.put_pending_block(2, &hash(22), b"two'").unwrap();
    store.put_pending_block(256, &hash(9), b"256").unwrap();
    store
        .put_pending_block(u64::MAX, &Hash([0xff; 32]), b"last")
        .unwrap();
    // Height order (keys are big-endian heights), whatever the write order;
    // then hash order within a height.
    let twos = if hash(2) < hash(22) {
        [&b"two"[..], b"two'"]
    } else {
        [&b"two'"[..], b"two"]
    };
    assert_eq!(
        store.pending_blocks().unwrap(),
        [&b"one"[..], twos[0], twos[1], b"three", b"256", b"last"]
            .map(<[u8]>::to_vec)
            .to_vec()
    );
    store.prune_pending_blocks(2).unwrap();
    assert_eq!(
        store.pending_blocks().unwrap(),
        vec![b"three".to_vec(), b"256".to_vec(), b"last".to_vec()]
    );
    // Pruning again, or below what is left, removes nothing more.
    store.prune_pending_blocks(2).unwrap();
    store.prune_pending_blocks(0).unwrap();
    assert_eq!(store.pending_blocks().unwrap().len(), 3);
    store.prune_pending_blocks(u64::MAX).unwrap();
    assert!(store.pending_blocks().unwrap().is_empty());
}

pub(crate) fn state_values_by_version(store: &dyn Store) {
    let g = genesis();
    store.commit_block(&g).unwrap();
    let mut parent = g.header;
    // `block` writes accounts 1 and 2 at every height.
    for h in 1..=6u64 {
        let b = block(&parent, vec![transfer(1, 2, h)], h);
        store.commit_block(&b).unwrap();
        parent = b.header;
    }
    let tree_key = chatpay_proto::state::account_key(key(2).public_key());
    let balance_at = |v: u64| {
        store
            .state_value(&tree_key, v)
            .unwrap()
            .and_then(|leaf| chatpay_proto::state::decode_account_leaf(&leaf))
            .map(|a| a.balance)
    };
    // Account 2 appears at height 1: nothing before, then each version's,
    // and the newest above the head.
    assert_eq!(balance_at(0), None);
    assert_eq!(
        (balance_at(1), balance_at(4), balance_at(99)),
        (Some(10), Some(40), Some(60))
    );
}

macro_rules! store_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn empty_store() {
                let (_guard, store) = $make;
                super::super::suite::empty_store(&store);
            }
            #[test]
            fn commits_and_reads_back() {
                let (_guard, store) = $make;
                super::super::suite::commits_and_reads_back(&store);
            }
            #[test]
            fn state_values_by_version() {
                let (_guard, store) = $make;
                super::super::suite::state_values_by_version(&store);
            }
            #[test]
            fn history_pages_both_ways() {
                let (_guard, store) = $make;
                super::super::suite::history_pages_both_ways(&store);
            }
            #[test]
            fn refuses_commits_that_do_not_extend() {
                let (_guard, store) = $make;
                super::super::suite::refuses_commits_that_do_not_extend(&store);
            }
            #[test]
            fn prunes_pending_blocks_by_height() {
                let (_guard, store) = $make;
                super::super::suite::prunes_pending_blocks_by_height(&store);
            }
            #[test]
            fn keeps_certificates_and_safety_data() {
                let (_guard, store) = $make;
                super::super::suite::keeps_certificates_and_safety_data(&store);
            }
        }
    };
}

mod both {
    use super::super::{MemoryStore, RocksStore};

    store_suite!(memory, ((), MemoryStore::new_empty()));
    store_suite!(rocksdb, {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path()).unwrap();
        (dir, store)
    });
}

/// Commits that each set the balance of `keys` (and of account 1, the
/// sender of the block's one transfer) to `balance`.
fn setting(parent: &BlockHeader, keys: &[u8], balance: u64) -> BlockCommit {
    let mut commit = block(parent, vec![transfer(1, 2, parent.height + 1)], 1);
    commit.accounts = std::iter::once(1)
        .chain(keys.iter().copied())
        .map(|k| {
            let account = Account {
                balance,
                nonce: parent.height + 1,
                ..Account::default()
            };
            (key(k).public_key().clone(), account)
        })
        .collect();
    commit.accounts.sort_by(|a, b| a.0.cmp(&b.0));
    commit
}

#[test]
fn committed_accounts_read_back_through_the_cache_generations() {
    // Two accounts per generation: every few commits the recent generation
    // becomes the older one and the one before is dropped.
    let store = MemoryStore::empty_with_account_cache(2);
    let mut model: std::collections::BTreeMap<u8, Account> = Default::default();
    let mut last = genesis();
    store.commit_block(&last).unwrap();
    model.insert(1, last.accounts[0].1);
    let touched: [&[u8]; 8] = [&[2], &[3, 4], &[2], &[5], &[3], &[], &[2, 5], &[4]];
    for (i, keys) in touched.iter().enumerate() {
        let balance = 100 + i as u64;
        let commit = setting(&last.header, keys, balance);
        for (k, a) in &commit.accounts {
            let n = (1..=5).find(|n| key(*n).public_key() == k).unwrap();
            model.insert(n, *a);
        }
        store.commit_block(&commit).unwrap();
        last = commit;
        for n in 1..=5 {
            assert_eq!(
                store.account(key(n).public_key()).unwrap(),
                model.get(&n).copied(),
                "account {n} after commit {i}"
            );
        }
        assert!(store.cached_accounts() <= 4, "{}", store.cached_accounts());
        assert!(store.cached_accounts() > 0);
    }
    // A refused commit (not extending the head) changes nothing.
    let mut refused = setting(&last.header, &[2, 3], 7);
    refused.header.parent_hash = sha256(b"elsewhere");
    assert!(store.commit_block(&refused).is_err());
    for n in 1..=5 {
        assert_eq!(
            store.account(key(n).public_key()).unwrap(),
            model.get(&n).copied()
        );
    }
}

#[test]
fn an_unsafe_reset_keeps_only_the_safety_record_and_its_certificates() {
    let store = MemoryStore::new_empty();
    let genesis = genesis();
    store.commit_block(&genesis).unwrap();
    store
        .commit_block(&block(&genesis.header, vec![transfer(1, 2, 1)], 1))
        .unwrap();
    store.put_safety_data(b"voted").unwrap();
    store.put_high_tc(b"tc").unwrap();
    store.put_high_qc(b"qc").unwrap();
    store.put_pending_block(2, &sha256(b"b"), b"block").unwrap();
    assert!(store.cached_accounts() > 0);
    store.unsafe_reset();
    assert_eq!(store.safety_data().unwrap(), Some(b"voted".to_vec()));
    assert_eq!(store.high_tc().unwrap(), Some(b"tc".to_vec()));
    assert_eq!(store.high_qc().unwrap(), Some(b"qc".to_vec()));
    assert_eq!(store.cached_accounts(), 0);
    assert!(store.pending_blocks().unwrap().is_empty());
    // Everything else reads as a new store, also after a power cut.
    store.lose_unsynced();
    assert_eq!(store.committed_height().unwrap(), None);
    assert_eq!(store.account(key(1).public_key()).unwrap(), None);
    assert_eq!(store.account(key(2).public_key()).unwrap(), None);
    assert_eq!(store.block(1).unwrap(), None);
    assert_eq!(store.burned().unwrap(), 0);
    assert_eq!(store.safety_data().unwrap(), Some(b"voted".to_vec()));
    assert_eq!(store.high_qc().unwrap(), Some(b"qc".to_vec()));
}

#[test]
fn rocksdb_reopen_resumes_at_last_height() {
    use super::RocksStore;
    let dir = tempfile::tempdir().unwrap();
    let g = genesis();
    let b1 = block(&g.header, vec![transfer(1, 2, 1)], 1);
    {
        let store = RocksStore::open(dir.path()).unwrap();
        store.commit_block(&g).unwrap();
        store.commit_block(&b1).unwrap();
        store.put_safety_data(b"voted").unwrap();
    }
    let store = RocksStore::open(dir.path()).unwrap();
    assert_eq!(store.committed_height().unwrap(), Some(1));
    assert_eq!(store.last_header().unwrap(), Some(b1.header.clone()));
    assert_eq!(store.burned().unwrap(), 1);
    assert_eq!(store.safety_data().unwrap().as_deref(), Some(&b"voted"[..]));
    let b2 = block(&b1.header, vec![], 1);
    store.commit_block(&b2).unwrap();
    assert_eq!(store.committed_height().unwrap(), Some(2));
}
