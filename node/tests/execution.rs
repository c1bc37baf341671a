//! Execution through the ledger on both stores: per-rule receipts, and
//! property tests over thousands of random valid and invalid transfers.

use chatpay_node::execution::{check_signature, state_tree};
use chatpay_node::genesis::{AccountFile, Genesis, GenesisFile, ValidatorFile};
use chatpay_node::ledger::{Ledger, LedgerError};
use chatpay_node::mempool::SignatureCache;
use chatpay_node::storage::{MemoryStore, RocksStore, Store};
use chatpay_proto::{
    Address, Output, PublicKey, ReceiptCode, SecretKey, Signature, SignedTransfer, Transfer,
};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

const FEE: u64 = 10;
const CHAIN: &str = "chatpay-test";

fn key(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n;
    SecretKey::from_slice(&b).unwrap()
}

fn genesis(balances: &[u64]) -> Arc<Genesis> {
    let accounts = balances
        .iter()
        .enumerate()
        .map(|(i, b)| (key(i as u8 + 1).public_key().clone(), *b));
    genesis_of(accounts)
}

/// A genesis of one validator funding `accounts`.
fn genesis_of(accounts: impl Iterator<Item = (PublicKey, u64)>) -> Arc<Genesis> {
    let file = GenesisFile {
        chain_id: CHAIN.into(),
        hrp: "cp".into(),
        decimals: 6,
        symbol: "CPY".into(),
        fee_per_transfer: FEE,
        genesis_time_ms: 0,
        validators: vec![ValidatorFile {
            public_key: hex::encode(key(200).public_key().as_bytes()),
            network_address: "127.0.0.1:1".into(),
        }],
        accounts: accounts
            .map(|(k, balance)| AccountFile {
                address: Address::new("cp", k).unwrap().to_string(),
                balance,
            })
            .collect(),
    };
    let genesis = Arc::new(Genesis::from_file(file).unwrap());
    NETWORK.with(|n| n.set(genesis.hash()));
    genesis
}

thread_local! {
    /// The genesis hash of the chain this test made last: what [`pay`]
    /// signs for (each test runs on its own thread).
    static NETWORK: std::cell::Cell<chatpay_proto::Hash> = const {
        std::cell::Cell::new(chatpay_proto::Hash([0; 32]))
    };
}

/// The network [`pay`] signs for.
fn network() -> chatpay_proto::Hash {
    NETWORK.with(std::cell::Cell::get)
}

fn pay(from: u8, nonce: u64, fee: u64, outputs: &[(u8, u64)]) -> SignedTransfer {
    let outs = outputs
        .iter()
        .map(|(to, amount)| Output {
            recipient: key(*to).public_key().clone(),
            amount: *amount,
        })
        .collect();
    Transfer::new(
        network(),
        key(from).public_key().clone(),
        nonce,
        fee,
        outs,
        b"memo".to_vec(),
    )
    .unwrap()
    .sign(&key(from))
}

fn commit(ledger: &Ledger, txs: Vec<SignedTransfer>) -> Vec<ReceiptCode> {
    let header = ledger.build_block(1, 0, 0, &txs).unwrap();
    let block = ledger.commit(header, txs, None).unwrap();
    block.receipts.iter().map(|r| r.code).collect()
}

/// What a leader would commit of `txs`: those that leave the block valid,
/// with their receipts.
fn commit_valid(
    ledger: &Ledger,
    txs: Vec<SignedTransfer>,
) -> (Vec<SignedTransfer>, Vec<ReceiptCode>) {
    let (_, kept) = ledger
        .execute_for_proposal(&[], 0, &txs, &check_signature)
        .unwrap();
    let codes = commit(ledger, kept.clone());
    (kept, codes)
}

fn supply(store: &dyn Store) -> u128 {
    let mut sum = 0u128;
    store
        .for_each_account(&mut |_, a| sum += u128::from(a.balance))
        .unwrap();
    sum + u128::from(store.burned().unwrap())
}

#[test]
fn a_block_that_burns_a_payment_with_a_bad_signature_or_nonce_is_invalid() {
    let g = genesis(&[1_000, 50, u64::MAX - 2_000]);
    let ledger = Ledger::open(Arc::new(MemoryStore::new_empty()), g).unwrap();
    let other_chain = {
        let out = Output {
            recipient: key(2).public_key().clone(),
            amount: 1,
        };
        Transfer::new(
            chatpay_proto::Hash([0xee; 32]),
            key(1).public_key().clone(),
            1,
            FEE,
            vec![out],
            vec![],
        )
        .unwrap()
        .sign(&key(1))
    };
    let forged = SignedTransfer::new(
        pay(1, 1, FEE, &[(2, 1)]).transfer().clone(),
        Signature([1; 64]),
    );
    let wrong_signer = {
        let t = pay(1, 1, FEE, &[(2, 2)]);
        SignedTransfer::new(t.transfer().clone(), key(2).sign_digest(&t.tx_id()))
    };
    // Each of these makes a block that includes it invalid: a leader that
    // included someone's payment this way would burn its tx id.
    let invalid = vec![
        (other_chain, ReceiptCode::WrongChain),
        (forged, ReceiptCode::BadSignature),
        (wrong_signer, ReceiptCode::BadSignature),
        (pay(1, 1, FEE, &[(2, 0)]), ReceiptCode::BadOutputs),
        (pay(9, 1, FEE, &[(2, 1)]), ReceiptCode::UnknownSender),
        (pay(1, 2, FEE, &[(2, 1)]), ReceiptCode::BadNonce),
        (pay(1, 0, FEE, &[(2, 1)]), ReceiptCode::BadNonce),
        (pay(1, 1, FEE - 1, &[(2, 1)]), ReceiptCode::FeeTooLow),
    ];
    let fine = pay(3, 1, FEE, &[(2, 5)]);
    for (tx, code) in invalid {
        let block = vec![tx.clone(), fine.clone()];
        match ledger.execute_on(&[], 0, &block, &check_signature) {
            Err(LedgerError::InvalidTransfer {
                index,
                tx_id,
                code: got,
            }) => {
                assert_eq!((index, tx_id, got), (0, tx.tx_id(), code));
            }
            other => panic!("{code:?}: a block holding it executed: {other:?}"),
        }
        // A leader leaves it out and keeps the rest.
        let (_, kept) = ledger
            .execute_for_proposal(&[], 0, &block, &check_signature)
            .unwrap();
        assert_eq!(kept, vec![fine.clone()], "{code:?}");
    }
    // These depend on what others paid the sender: receipts that spend
    // the nonce and change nothing else.
    let cases = vec![
        (
            pay(1, 1, FEE, &[(2, u64::MAX), (4, 1)]),
            ReceiptCode::Overflow,
        ),
        (pay(1, 2, FEE, &[(2, 991)]), ReceiptCode::InsufficientFunds),
        // Credit overflow: account 3 holds almost u64::MAX... but supply bounds
        // make that impossible to reach, so the last check is a success path.
        (pay(1, 3, FEE, &[(2, 990)]), ReceiptCode::Success),
    ];
    let (txs, want): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
    assert_eq!(commit(&ledger, txs), want);
    // Another transfer with the now used nonce is invalid too.
    let late = pay(1, 2, FEE, &[(2, 989)]);
    assert!(matches!(
        ledger.execute_on(&[], 0, &[late], &check_signature),
        Err(LedgerError::InvalidTransfer {
            code: ReceiptCode::BadNonce,
            ..
        })
    ));
    let store = ledger.store();
    let alice = store.account(key(1).public_key()).unwrap().unwrap();
    assert_eq!((alice.balance, alice.nonce), (0, 3));
    assert_eq!(
        store.account(key(2).public_key()).unwrap().unwrap().balance,
        50 + 990
    );
    assert_eq!(store.burned().unwrap(), FEE);
    assert_eq!(
        supply(store.as_ref()),
        u128::from(ledger.genesis().total_supply)
    );
}

#[test]
fn a_signature_vouched_for_is_not_checked_again_and_every_other_is() {
    let g = genesis(&[1_000, 50]);
    let ledger = Ledger::open(Arc::new(MemoryStore::new_empty()), g).unwrap();
    let good = pay(1, 1, FEE, &[(2, 5)]);
    let forged = SignedTransfer::new(good.transfer().clone(), Signature([1; 64]));
    let code = |tx: &SignedTransfer, signature_valid: &dyn Fn(&SignedTransfer) -> bool| match ledger
        .execute_on(&[], 0, std::slice::from_ref(tx), signature_valid)
    {
        Ok(out) => out.receipts[0].code,
        Err(LedgerError::InvalidTransfer { code, .. }) => code,
        Err(e) => panic!("{e}"),
    };
    // Execution takes the verifier's word, even for a forgery: it checks
    // nothing itself, so a cache of checked signatures really saves work.
    let vouch = |t: &SignedTransfer| t.signature() == forged.signature();
    assert_eq!(code(&forged, &vouch), ReceiptCode::Success);
    assert_eq!(code(&forged, &check_signature), ReceiptCode::BadSignature);
    assert_eq!(code(&good, &check_signature), ReceiptCode::Success);
    // A validator's cache answers as a fresh check would, remembered or not.
    let cache = SignatureCache::new(16);
    let cached = |t: &SignedTransfer| cache.is_valid(t);
    for _ in 0..2 {
        assert_eq!(code(&good, &cached), ReceiptCode::Success);
        assert_eq!(code(&forged, &cached), ReceiptCode::BadSignature);
    }
    assert_eq!(cache.len(), 1);
}

#[test]
fn split_bill_self_transfer_and_new_accounts() {
    let g = genesis(&[1_000]);
    let ledger = Ledger::open(Arc::new(MemoryStore::new_empty()), g).unwrap();
    // Three-way split to two new accounts and to self (counts as a payment to self).
    let codes = commit(
        &ledger,
        vec![pay(1, 1, FEE, &[(5, 100), (6, 200), (1, 300)])],
    );
    assert_eq!(codes, vec![ReceiptCode::Success]);
    let s = ledger.store();
    assert_eq!(
        s.account(key(1).public_key()).unwrap().unwrap().balance,
        1_000 - 300 - FEE
    );
    assert_eq!(
        s.account(key(5).public_key()).unwrap().unwrap().balance,
        100
    );
    assert_eq!(s.account(key(6).public_key()).unwrap().unwrap().nonce, 0);
    // A new account can spend what it received.
    assert_eq!(
        commit(&ledger, vec![pay(5, 1, FEE, &[(6, 90)])]),
        vec![ReceiptCode::Success]
    );
    assert_eq!(s.account(key(5).public_key()).unwrap().unwrap().balance, 0);
}

#[test]
fn commit_refuses_a_header_that_lies() {
    let ledger = Ledger::open(Arc::new(MemoryStore::new_empty()), genesis(&[1_000])).unwrap();
    let txs = vec![pay(1, 1, FEE, &[(2, 5)])];
    let good = ledger.build_block(1, 0, 0, &txs).unwrap();
    let mut bad_digest = good.clone();
    bad_digest.state_root = chatpay_proto::sha256(b"lie");
    assert!(ledger.commit(bad_digest, txs.clone(), None).is_err());
    let mut bad_root = good.clone();
    bad_root.tx_root = chatpay_proto::sha256(b"lie");
    assert!(ledger.commit(bad_root, txs.clone(), None).is_err());
    assert!(ledger.commit(good.clone(), vec![], None).is_err());
    assert_eq!(ledger.store().committed_height().unwrap(), Some(0));
    ledger.commit(good, txs, None).unwrap();
    assert_eq!(ledger.store().committed_height().unwrap(), Some(1));
}

#[test]
fn subscribers_hear_of_a_commit_after_the_callers_update_and_once_it_is_durable() {
    let ledger = Ledger::open(Arc::new(MemoryStore::new_empty()), genesis(&[1_000])).unwrap();
    let mut events = ledger.subscribe();
    let txs = vec![pay(1, 1, FEE, &[(2, 5)])];
    let header = ledger.build_block(1, 0, 0, &txs).unwrap();
    let out = ledger.execute_on(&[], 0, &txs, &check_signature).unwrap();
    let mut updated = None;
    ledger
        .commit_executed_then(header, txs, None, out, |block| {
            // Durable, and not yet announced.
            assert_eq!(ledger.store().committed_height().unwrap(), Some(1));
            assert!(events.try_recv().is_err(), "announced before the update");
            updated = Some(block.header.height);
        })
        .unwrap();
    assert_eq!(updated, Some(1));
    assert_eq!(events.try_recv().unwrap().header.height, 1);
}

#[test]
fn a_transaction_executes_at_most_once() {
    let ledger = Ledger::open(Arc::new(MemoryStore::new_empty()), genesis(&[1_000])).unwrap();
    // Fails for lack of funds and spends its nonce: included again once
    // funds arrive, it is a wrong nonce, with no lookup of its id.
    let poor = pay(1, 1, FEE, &[(2, 5_000)]);
    assert_eq!(
        commit(&ledger, vec![poor.clone()]),
        vec![ReceiptCode::InsufficientFunds]
    );
    let alice = ledger
        .store()
        .account(key(1).public_key())
        .unwrap()
        .unwrap();
    assert_eq!((alice.balance, alice.nonce), (1_000, 1));
    let again = ledger
        .build_block(2, 0, 0, std::slice::from_ref(&poor))
        .unwrap_err();
    assert!(again.to_string().contains("bad_nonce"), "{again}");
    let twice = vec![pay(1, 2, FEE, &[(2, 5)]), pay(1, 2, FEE, &[(2, 5)])];
    let err = ledger.build_block(2, 0, 0, &twice).unwrap_err();
    assert!(err.to_string().contains("repeated"), "{err}");
    // A header built elsewhere does not get around it.
    let header = ledger.build_block(2, 0, 0, &twice[..1]).unwrap();
    assert!(ledger.commit(header, twice, None).is_err());
    assert_eq!(ledger.store().committed_height().unwrap(), Some(1));
}

#[test]
fn executing_on_an_uncommitted_branch_matches_executing_after_commit() {
    use chatpay_node::ledger::Speculative;
    let ledger = Ledger::open(Arc::new(MemoryStore::new_empty()), genesis(&[1_000])).unwrap();
    // A funds a new account (key 5); B spends from it, so B only succeeds if
    // it sees A's effects.
    let a_txs = vec![pay(1, 1, FEE, &[(5, 300)])];
    let b_txs = vec![pay(5, 1, FEE, &[(6, 100)]), pay(1, 2, FEE, &[(6, 1)])];
    let a_header = ledger.build_block(1, 0, 0, &a_txs).unwrap();
    let a = Speculative {
        output: ledger.execute_on(&[], 0, &a_txs, &check_signature).unwrap(),
        header: a_header.clone(),
        transactions: a_txs.clone(),
    };
    assert_eq!(a.output.state_root, a_header.state_root);
    let on_branch = ledger
        .execute_on(&[&a], 0, &b_txs, &check_signature)
        .unwrap();
    assert!(
        on_branch.receipts.iter().all(|r| r.is_success()),
        "{:?}",
        on_branch.receipts
    );
    // Nothing was written by speculation.
    assert_eq!(ledger.store().committed_height().unwrap(), Some(0));
    assert_eq!(ledger.store().account(key(5).public_key()).unwrap(), None);
    // A transaction of the branch cannot be included again on top of it.
    let err = ledger
        .execute_on(&[&a], 0, &a_txs, &check_signature)
        .unwrap_err();
    assert!(err.to_string().contains("already in the branch"), "{err}");
    // A branch that does not extend the committed head is refused.
    let mut stray = a.clone();
    stray.header.parent_hash = chatpay_proto::sha256(b"elsewhere");
    assert!(
        ledger
            .execute_on(&[&stray], 0, &b_txs, &check_signature)
            .is_err()
    );

    ledger.commit(a_header, a_txs, None).unwrap();
    let after_commit = ledger.execute_on(&[], 0, &b_txs, &check_signature).unwrap();
    assert_eq!(
        after_commit, on_branch,
        "same receipts, accounts, burned, tx root and digest"
    );
}

#[test]
fn ledger_refuses_a_database_of_another_genesis() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(RocksStore::open(dir.path()).unwrap());
        Ledger::open(store, genesis(&[1])).unwrap();
    }
    let store = Arc::new(RocksStore::open(dir.path()).unwrap());
    let err = Ledger::open(store, genesis(&[2])).err().unwrap();
    assert!(err.to_string().contains("genesis"), "{err}");
}

#[test]
fn pruning_the_state_tree_keeps_every_version_above_the_bound_whole() {
    for store in [
        Arc::new(MemoryStore::new_empty()) as Arc<dyn Store>,
        Arc::new(RocksStore::open(tempfile::tempdir().unwrap().keep().as_path()).unwrap()),
    ] {
        let ledger = Ledger::open(store.clone(), genesis(&[1_000, 1_000, 1_000])).unwrap();
        for nonce in 1..=20 {
            commit(&ledger, vec![pay(1, nonce, FEE, &[(2, 1), (3, 1)])]);
        }
        let root_at = |v| state_tree::root_at(store.as_ref(), v).unwrap();
        assert!(root_at(5).is_some());
        // Every block replaces its parent's root: nodes of versions up to
        // 15 that later versions replaced go.
        let mut pruned = 0;
        loop {
            let n = store.prune_state_tree(15, 7).unwrap();
            assert!(n <= 7);
            pruned += n;
            if n < 7 {
                break;
            }
        }
        assert!(pruned > 15, "{pruned} nodes pruned");
        assert_eq!(store.prune_state_tree(15, 7).unwrap(), 0);
        assert!(root_at(5).is_none());
        assert!(root_at(14).is_none());
        // The sender's leaf values go with its replaced leaves, but for the
        // one live at 15: every version from 15 on still reads its own.
        let sender = chatpay_proto::state::account_key(key(1).public_key());
        let balance_at = |v| {
            store
                .state_value(&sender, v)
                .unwrap()
                .and_then(|leaf| chatpay_proto::state::decode_account_leaf(&leaf))
                .map(|a| a.balance)
        };
        for v in 15..=20 {
            assert_eq!(balance_at(v), Some(1_000 - (2 + FEE) * v), "version {v}");
        }
        assert_eq!(balance_at(14), None, "pruned");
        // Versions 15 to 20 are whole: the head's root is the root of the
        // same accounts built from nothing, and the chain goes on.
        for v in 15..=20 {
            assert!(root_at(v).is_some(), "version {v}");
        }
        let head = ledger.last_header().unwrap();
        let mut accounts = Vec::new();
        store
            .for_each_account(&mut |k, a| accounts.push((k.clone(), *a)))
            .unwrap();
        accounts.sort_by(|a, b| a.0.cmp(&b.0));
        let burned = store.burned().unwrap();
        let fresh = state_tree::update(&state_tree::EmptyTree, 0, &accounts, burned).unwrap();
        assert_eq!(fresh.root, head.state_root);
        commit(&ledger, vec![pay(2, 1, FEE, &[(1, 1)])]);
    }
}

/// A random transfer: mostly plausible, often wrong in one way.
#[derive(Debug, Clone)]
struct RandomTx {
    from: u8,
    nonce_offset: i8,
    fee: u64,
    outputs: Vec<(u8, u64)>,
    corrupt_signature: bool,
}

fn random_tx() -> impl Strategy<Value = RandomTx> {
    let amount =
        prop_oneof![4 => 0u64..2_000, 1 => Just(0u64), 1 => Just(u64::MAX), 1 => any::<u64>()];
    (
        1u8..=7, // key 7 is never funded
        prop_oneof![8 => Just(0i8), 1 => -2i8..=2],
        prop_oneof![8 => Just(FEE), 1 => 0..FEE, 1 => FEE..1_000],
        proptest::collection::vec((1u8..=7, amount), 1..4),
        proptest::bool::weighted(0.05),
    )
        .prop_map(
            |(from, nonce_offset, fee, outputs, corrupt_signature)| RandomTx {
                from,
                nonce_offset,
                fee,
                outputs,
                corrupt_signature,
            },
        )
}

fn run_random(blocks: &[Vec<RandomTx>], balances: &[u64]) {
    let g = genesis(balances);
    let dir = tempfile::tempdir().unwrap();
    let rocks = Ledger::open(Arc::new(RocksStore::open(dir.path()).unwrap()), g.clone()).unwrap();
    let memory = Ledger::open(Arc::new(MemoryStore::new_empty()), g.clone()).unwrap();
    // Nonces as the sender would pick them, from its view of committed state.
    let mut next_nonce: HashMap<u8, u64> = HashMap::new();
    let mut last_nonce: HashMap<PublicKey, u64> = HashMap::new();
    // Ids already included: a block may not repeat them (the mempool never
    // offers them again).
    let mut included = std::collections::HashSet::new();
    for block in blocks {
        let txs: Vec<SignedTransfer> = block
            .iter()
            .map(|r| {
                let n = next_nonce.entry(r.from).or_insert(1);
                let nonce = n.saturating_add_signed(i64::from(r.nonce_offset));
                if r.nonce_offset == 0 {
                    *n += 1;
                }
                let tx = pay(r.from, nonce, r.fee, &r.outputs);
                if r.corrupt_signature {
                    SignedTransfer::new(tx.transfer().clone(), key(r.from + 100).sign(b"x"))
                } else {
                    tx
                }
            })
            .filter(|tx| included.insert(tx.tx_id()))
            .collect();
        let (txs, a) = commit_valid(&rocks, txs);
        let (kept, b) = commit_valid(&memory, txs.clone());
        assert_eq!(kept, txs, "both stores keep the same transactions");
        assert_eq!(a, b, "both stores give the same receipts");
        assert_eq!(a.len(), txs.len(), "one receipt per transaction");
        let (ha, hb) = (rocks.last_header().unwrap(), memory.last_header().unwrap());
        assert_eq!(
            ha.state_root, hb.state_root,
            "same state digest on both stores"
        );
        assert_eq!(ha.hash(), hb.hash());
        // Every included transfer spends its nonce, failed or not.
        for tx in &txs {
            let t = tx.transfer();
            let last = last_nonce.entry(t.sender().clone()).or_insert(0);
            assert_eq!(t.nonce(), *last + 1, "nonces strictly sequential");
            *last = t.nonce();
        }
        // A failed nonce leaves the sender's view behind: resync it.
        for from in 1u8..=7 {
            let acct = rocks.store().account(key(from).public_key()).unwrap();
            next_nonce.insert(from, acct.map_or(1, |a| a.nonce + 1));
        }
        for ledger in [&rocks, &memory] {
            assert_eq!(
                supply(ledger.store().as_ref()),
                u128::from(g.total_supply),
                "supply conserved"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_transfers_keep_the_ledger_sound(
        balances in proptest::collection::vec(0u64..10_000, 6),
        blocks in proptest::collection::vec(proptest::collection::vec(random_tx(), 0..25), 1..12),
    ) {
        run_random(&blocks, &balances);
    }
}

/// The commit time of a block of 2 000 transfers on a tree of a million
/// accounts, on RocksDB (`cargo test --release -p chatpay-node --test
/// execution -- --ignored --nocapture a_block_on_a_million_accounts`;
/// minutes, and about 2 GiB of memory, so not in `make test`).
#[test]
#[ignore]
fn a_block_on_a_million_accounts() {
    const ACCOUNTS: usize = 1_000_000;
    const BLOCK: usize = 2_000;
    let secret = |i: usize| {
        let mut b = [0u8; 32];
        b[24..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        SecretKey::from_slice(&b).unwrap()
    };
    let started = std::time::Instant::now();
    let keys: Vec<SecretKey> = (0..ACCOUNTS).map(secret).collect();
    let genesis = genesis_of(keys.iter().map(|k| (k.public_key().clone(), 1_000)));
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path()).unwrap());
    let ledger = Ledger::open(store, genesis).unwrap();
    println!(
        "genesis of {ACCOUNTS} accounts written in {:?}",
        started.elapsed()
    );
    for round in 0..3u64 {
        // Each transfer from one account to another, all distinct.
        let txs: Vec<SignedTransfer> = (0..BLOCK)
            .map(|i| {
                let from = (round as usize * 2 * BLOCK + 2 * i) * 97 % ACCOUNTS;
                let to = (from + 1) % ACCOUNTS;
                let out = Output {
                    recipient: keys[to].public_key().clone(),
                    amount: 1,
                };
                Transfer::new(
                    network(),
                    keys[from].public_key().clone(),
                    1,
                    FEE,
                    vec![out],
                    vec![],
                )
                .unwrap()
                .sign(&keys[from])
            })
            .collect();
        let t = std::time::Instant::now();
        let header = ledger.build_block(1, 0, 0, &txs).unwrap();
        let executed = t.elapsed();
        let out = ledger.execute_on(&[], 0, &txs, &|_| true).unwrap();
        ledger.commit_executed(header, txs, None, out).unwrap();
        println!(
            "block {}: executed in {executed:?} (signatures checked), executed again and committed in {:?}",
            round + 1,
            t.elapsed() - executed
        );
    }
}

#[test]
fn each_account_leaf_counts_and_chains_the_transfers_that_moved_it() {
    use chatpay_proto::state::{Direction, HistoryEntry, chain_history};
    let g = genesis(&[1_000, 30]);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new_empty());
    let ledger = Ledger::open(store.clone(), g).unwrap();
    // Block 1: 1 pays 3 (and itself); 2 pays 3 more than it has (a receipt,
    // no entry); 1 pays 2 and 3 in one transfer.
    let codes = commit(
        &ledger,
        vec![
            pay(1, 1, FEE, &[(3, 100), (1, 5)]),
            pay(2, 1, FEE, &[(3, 500)]),
            pay(1, 2, FEE, &[(2, 7), (3, 8)]),
        ],
    );
    use ReceiptCode::{InsufficientFunds, Success};
    assert_eq!(codes, [Success, InsufficientFunds, Success]);
    // Block 2: 3 pays 1 back.
    assert_eq!(commit(&ledger, vec![pay(3, 1, FEE, &[(1, 50)])]), [Success]);
    let block1: Vec<SignedTransfer> = {
        let b = store.block(1).unwrap().unwrap();
        b.tx_ids
            .iter()
            .map(|id| store.transaction(id).unwrap().unwrap().transaction)
            .collect()
    };
    let back = pay(3, 1, FEE, &[(1, 50)]);
    let expect = |who: u8, entries: &[(u64, u32, &SignedTransfer, Direction, u64)]| {
        let me = key(who).public_key().clone();
        let account = store.account(&me).unwrap().unwrap();
        let mut hash = chatpay_proto::Hash::default();
        for (height, index, tx, direction, amount) in entries {
            let e = HistoryEntry::of(tx.transfer(), tx.tx_id(), &me, *height, *index).unwrap();
            assert_eq!(
                (e.direction, e.amount),
                (*direction, *amount),
                "account {who}"
            );
            hash = chain_history(&hash, &e);
        }
        assert_eq!(
            (account.history_count, account.history_hash),
            (entries.len() as u64, hash),
            "account {who}"
        );
        // The stored history is the same entries, newest first, each with
        // its number and the running hash before it.
        let stored = store.history_before(&me, None, 100).unwrap();
        assert_eq!(stored.len(), entries.len(), "account {who}");
        for (n, (s, e)) in stored.iter().rev().zip(entries).enumerate() {
            assert_eq!(
                (s.position, s.tx_id, s.number),
                ((e.0, e.1), e.2.tx_id(), n as u64 + 1)
            );
        }
    };
    // 1 sent 100 + fee (its own 5 come back) and 7 + 8 + fee; received 50.
    expect(
        1,
        &[
            (1, 0, &block1[0], Direction::Sent, 100 + FEE),
            (1, 2, &block1[2], Direction::Sent, 15 + FEE),
            (2, 0, &back, Direction::Received, 50),
        ],
    );
    // 2's failed transfer moved nothing and is not in its history.
    expect(2, &[(1, 2, &block1[2], Direction::Received, 7)]);
    expect(
        3,
        &[
            (1, 0, &block1[0], Direction::Received, 100),
            (1, 2, &block1[2], Direction::Received, 8),
            (2, 0, &back, Direction::Sent, 50 + FEE),
        ],
    );
}

mod snapshot {
    //! State sync: a snapshot served chunk by chunk and imported into an
    //! empty store gives the same state, and every forgery is refused.
    use super::*;
    use chatpay_node::state_sync::{Chunk, Restore, SnapshotError, Trust, serve_chunk};
    use chatpay_proto::{BlockHeader, ChainBinding, Hash, QuorumCertificate, ValidatorSignature};

    fn many(i: u32) -> SecretKey {
        let mut b = [0u8; 32];
        b[0] = 1;
        b[28..].copy_from_slice(&i.to_be_bytes());
        SecretKey::from_slice(&b).unwrap()
    }

    fn certify(header: &BlockHeader) -> QuorumCertificate {
        let chain = ChainBinding::genesis(header.genesis_hash);
        let bytes =
            chatpay_proto::vote_signing_bytes(&chain, &header.hash(), header.round, header.height);
        QuorumCertificate {
            block_hash: header.hash(),
            round: header.round,
            height: header.height,
            signatures: vec![ValidatorSignature {
                validator: 0,
                signature: key(200).sign(&bytes),
            }],
        }
    }

    /// A chain of `blocks` blocks of transfers among 400 funded accounts
    /// (some to new accounts), one round per height, each certified, so
    /// every block but the newest is shown committed.
    fn chain(blocks: u32) -> (Arc<Genesis>, Ledger) {
        let g = genesis_of((0..400).map(|i| (many(i).public_key().clone(), 1_000_000)));
        let ledger = Ledger::open(Arc::new(MemoryStore::new_empty()), g.clone()).unwrap();
        for b in 0..blocks {
            let txs: Vec<SignedTransfer> = (0..50u32)
                .map(|i| {
                    let from = b * 50 + i;
                    let to = many(from * 7 % 700 + 100).public_key().clone();
                    let t = Transfer::new(
                        g.hash(),
                        many(from % 400).public_key().clone(),
                        u64::from(from / 400 + 1),
                        FEE,
                        vec![Output {
                            recipient: to,
                            amount: 1 + u64::from(i),
                        }],
                        vec![],
                    )
                    .unwrap();
                    t.sign(&many(from % 400))
                })
                .collect();
            let round = ledger.last_header().unwrap().height + 1;
            let header = ledger.build_block(round, 0, 0, &txs).unwrap();
            let qc = certify(&header);
            ledger.commit(header, txs, Some(qc)).unwrap();
        }
        (g, ledger)
    }

    fn trust(g: &Genesis) -> Trust {
        Trust {
            genesis_hash: g.hash(),
            validators: g.validator_keys(),
        }
    }

    /// Imports from `source` through `tamper` (which may change each
    /// chunk), `limit` leaves a chunk.
    fn import(
        g: &Genesis,
        source: &dyn Store,
        limit: usize,
        tamper: &mut dyn FnMut(usize, &mut Chunk),
    ) -> Result<(Arc<dyn Store>, BlockHeader), SnapshotError> {
        let target: Arc<dyn Store> = Arc::new(MemoryStore::new_empty());
        let offer = serve_chunk(source, 0, &Hash::default(), 0)
            .unwrap()
            .unwrap();
        let mut restore = Restore::start(target.clone(), &trust(g), &offer)?;
        let height = restore.header().height;
        let mut n = 0;
        while let Some(from) = restore.next() {
            let mut chunk = serve_chunk(source, height, &from, limit).unwrap().unwrap();
            tamper(n, &mut chunk);
            restore.add(chunk)?;
            n += 1;
        }
        let header = restore.finish(&g.header())?;
        Ok((target, header))
    }

    fn accounts(store: &dyn Store) -> Vec<(PublicKey, chatpay_proto::Account)> {
        let mut all = Vec::new();
        store
            .for_each_account(&mut |k, a| all.push((k.clone(), *a)))
            .unwrap();
        all
    }

    #[test]
    fn an_imported_snapshot_is_the_state_and_the_chain_goes_on_from_it() {
        let (g, ledger) = chain(6);
        let source = ledger.store();
        let (target, header) = import(&g, source.as_ref(), 64, &mut |_, _| {}).unwrap();
        // The newest block shown committed is the one below the head.
        assert_eq!(header.height, 5);
        assert_eq!(target.committed_height().unwrap(), Some(5));
        assert_eq!(target.first_full_height().unwrap(), 6);
        assert_eq!(target.burned().unwrap(), 5 * 50 * FEE);
        // Every account as the source had it at height 5: the source's own
        // leaves at that version.
        let imported = accounts(target.as_ref());
        let at_5 = accounts(source.as_ref())
            .iter()
            .filter(|(k, _)| {
                let key = chatpay_proto::state::account_key(k);
                source.state_value(&key, 5).unwrap().is_some()
            })
            .count();
        assert!(at_5 > 400, "transfers created accounts");
        assert_eq!(imported.len(), at_5);
        for (k, a) in &imported {
            let leaf = source
                .state_value(&chatpay_proto::state::account_key(k), 5)
                .unwrap()
                .unwrap();
            assert_eq!(chatpay_proto::state::decode_account_leaf(&leaf), Some(*a));
        }
        assert!(target.block(3).unwrap().is_none(), "no blocks below it");
        // The ledger opens on it and executes the next block as the
        // source did: the same header.
        let restored = Ledger::open(target.clone(), g.clone()).unwrap();
        let block6 = source.block(6).unwrap().unwrap();
        let txs: Vec<SignedTransfer> = block6
            .tx_ids
            .iter()
            .map(|id| source.transaction(id).unwrap().unwrap().transaction)
            .collect();
        let h = &block6.header;
        let rebuilt = restored
            .build_block(h.round, h.proposer, h.timestamp_ms, &txs)
            .unwrap();
        assert_eq!(rebuilt.hash(), h.hash());
        restored.commit(rebuilt, txs, None).unwrap();
        assert_eq!(
            state_tree::root_at(target.as_ref(), 6).unwrap(),
            Some(h.state_root)
        );
        // A store with a committed block takes no snapshot.
        let offer = serve_chunk(source.as_ref(), 0, &Hash::default(), 0)
            .unwrap()
            .unwrap();
        let mut again = Restore::start(target.clone(), &trust(&g), &offer).unwrap();
        let chunk = serve_chunk(source.as_ref(), 5, &Hash::default(), 8)
            .unwrap()
            .unwrap();
        assert!(matches!(again.add(chunk), Err(SnapshotError::Store(_))));
    }

    #[test]
    fn forgotten_blocks_are_not_served_and_the_chain_goes_on() {
        use chatpay_node::consensus::sync::{committed_block, committed_range};
        let (g, ledger) = chain(8);
        let store = ledger.store().clone();
        let some_tx = store.block(2).unwrap().unwrap().tx_ids[0];
        let payer = many(0).public_key().clone();
        let all_history = store.history_before(&payer, None, 100).unwrap();
        // Keep blocks from 6 on whole, and 5 as their parent.
        assert_eq!(store.prune_blocks(6, 2).unwrap(), 2, "at most 2 a call");
        assert_eq!(store.first_full_height().unwrap(), 3);
        while store.prune_blocks(6, 2).unwrap() > 0 {}
        assert_eq!(store.first_full_height().unwrap(), 6);
        for h in 1..5 {
            assert!(store.block(h).unwrap().is_none(), "block {h}");
        }
        assert!(store.block(0).unwrap().is_some(), "genesis stays");
        assert!(store.block(5).unwrap().is_some(), "the parent stays");
        assert!(store.transaction(&some_tx).unwrap().is_none());
        let kept = store.history_before(&payer, None, 100).unwrap();
        assert!(kept.len() < all_history.len());
        assert!(kept.iter().all(|e| e.position.0 >= 5));
        // Catch-up serves from the first full height on, and nothing below.
        assert!(committed_block(store.as_ref(), 5).unwrap().is_none());
        let served = committed_range(store.as_ref(), 6, 8).unwrap();
        assert_eq!(served.len(), 3);
        assert!(committed_range(store.as_ref(), 2, 8).unwrap().is_empty());
        // A snapshot is still served, and the chain goes on.
        let (target, header) = import(&g, store.as_ref(), 512, &mut |_, _| {}).unwrap();
        assert_eq!(header.height, 7);
        assert_eq!(target.committed_height().unwrap(), Some(7));
        let next = ledger.build_block(9, 0, 0, &[]).unwrap();
        ledger.commit(next, vec![], None).unwrap();
        // Never past the head.
        assert_eq!(store.prune_blocks(u64::MAX, 100).unwrap(), 3);
        assert_eq!(store.first_full_height().unwrap(), 9);
        assert!(store.block(8).unwrap().is_some());
    }

    #[test]
    fn a_forged_snapshot_is_refused() {
        let (g, ledger) = chain(3);
        let source = ledger.store().clone();
        let mut case = 0;
        let mut refused = |tamper: &mut dyn FnMut(usize, &mut Chunk)| {
            case += 1;
            match import(&g, source.as_ref(), 64, tamper) {
                Err(SnapshotError::Refused(why)) => why,
                Ok((_, h)) => panic!("forgery {case} was imported at height {}", h.height),
                Err(e) => panic!("{e}"),
            }
        };
        let richer = |leaf: &[u8]| {
            let mut a = chatpay_proto::state::decode_account_leaf(leaf).unwrap();
            a.balance += 1;
            chatpay_proto::state::account_leaf(&a)
        };
        // A balance changed in the third chunk.
        let why = refused(&mut |n, c| {
            if n == 2 {
                c.entries[5].leaf = richer(&c.entries[5].leaf);
            }
        });
        assert!(why.contains("does not verify"), "{why}");
        // A leaf left out of the middle of a chunk.
        let why = refused(&mut |n, c| {
            if n == 1 {
                c.entries.remove(10);
            }
        });
        assert!(why.contains("does not verify"), "{why}");
        // A made-up account added (in key order).
        let why = refused(&mut |n, c| {
            if n == 1 {
                let owner = many(9_999).public_key().clone();
                let key = chatpay_proto::state::account_key(&owner);
                let leaf = chatpay_proto::state::account_leaf(&chatpay_proto::Account {
                    balance: 1_000_000_000,
                    ..Default::default()
                });
                let at = c.entries.partition_point(|e| e.key < key);
                c.entries.insert(
                    at,
                    chatpay_node::storage::StateEntry {
                        key,
                        owner: Some(*owner.as_bytes()),
                        leaf,
                    },
                );
            }
        });
        assert!(why.contains("does not verify"), "{why}");
        // A leaf under another owner's key (balances moved between keys).
        let why = refused(&mut |n, c| {
            if n == 0 {
                c.entries[3].owner = c.entries[4].owner;
            }
        });
        assert!(why.contains("not its owner's"), "{why}");
        // The end claimed early: the leaves do not make the root.
        let why = refused(&mut |n, c| {
            if n == 3 {
                c.last = true;
            }
        });
        assert!(why.contains("root"), "{why}");
        // A chunk of another height.
        let why = refused(&mut |n, c| {
            if n == 1 {
                c.commit = serve_chunk(source.as_ref(), 1, &Hash::default(), 0)
                    .unwrap()
                    .unwrap()
                    .commit;
            }
        });
        assert!(why.contains("another height"), "{why}");
        // A header this chain's validators did not commit.
        let other = genesis_of((0..3).map(|i| (many(i).public_key().clone(), 5)));
        let offer = serve_chunk(source.as_ref(), 0, &Hash::default(), 0)
            .unwrap()
            .unwrap();
        let target: Arc<dyn Store> = Arc::new(MemoryStore::new_empty());
        assert!(matches!(
            Restore::start(target.clone(), &trust(&other), &offer),
            Err(SnapshotError::Refused(_))
        ));
        let mut unsigned = offer.clone();
        unsigned.commit.commit_certificate.signatures.clear();
        assert!(matches!(
            Restore::start(target, &trust(&g), &unsigned),
            Err(SnapshotError::Refused(_))
        ));
    }
}

/// Rule 1a: a transfer is valid in a block whose timestamp is at most its
/// expiry; past it, the block is invalid, and a leader leaves it out.
#[test]
fn an_expired_transfer_makes_its_block_invalid_and_a_leader_leaves_it_out() {
    let g = genesis(&[1_000_000]);
    let ledger = Ledger::open(Arc::new(MemoryStore::new_empty()), g).unwrap();
    let t = pay(1, 1, FEE, &[(2, 5)]);
    let expiring = t.transfer().clone().with_expiry(1_000).sign(&key(1));
    let txs = [expiring];
    assert!(
        ledger
            .execute_on(&[], 1_000, &txs, &check_signature)
            .is_ok()
    );
    match ledger.execute_on(&[], 1_001, &txs, &check_signature) {
        Err(LedgerError::InvalidTransfer { code, .. }) => assert_eq!(code, ReceiptCode::Expired),
        other => panic!("an expired transfer executed: {other:?}"),
    }
    let (_, kept) = ledger
        .execute_for_proposal(&[], 1_001, &txs, &check_signature)
        .unwrap();
    assert!(kept.is_empty());
    // No expiry: valid at any time.
    assert!(
        ledger
            .execute_on(&[], u64::MAX, &[t], &check_signature)
            .is_ok()
    );
}
