use super::*;
use crate::consensus::messages::TimeoutSignature;
use crate::storage::{MemoryStore, RocksStore};
use chatpay_proto::{BlockHeader, ValidatorSignature, sha256};

fn key(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n + 1;
    SecretKey::from_slice(&b).unwrap()
}

fn keys() -> Vec<SecretKey> {
    (0..4).map(key).collect()
}

fn validators() -> Vec<PublicKey> {
    keys().iter().map(|k| k.public_key().clone()).collect()
}

fn genesis_hash() -> Hash {
    sha256(b"genesis block")
}

fn chain() -> ChainBinding {
    ChainBinding::genesis(sha256(b"genesis"))
}

fn genesis_qc() -> QuorumCertificate {
    QuorumCertificate {
        block_hash: genesis_hash(),
        round: 0,
        height: 0,
        signatures: vec![],
    }
}

fn block(round: u64, height: u64, justify: QuorumCertificate, salt: u8) -> Block {
    let header = BlockHeader {
        genesis_hash: sha256(b"g"),
        height,
        round,
        parent_hash: justify.block_hash,
        proposer: (round % 4) as u32,
        timestamp_ms: u64::from(salt),
        tx_count: 0,
        tx_root: sha256(b""),
        state_root: sha256(&[salt]),
    };
    Block {
        header,
        transactions: vec![],
        justify,
    }
}

fn certify(b: &Block, signers: &[usize]) -> QuorumCertificate {
    let digest = Vote::digest(&chain(), &b.hash(), b.round(), b.header.height);
    QuorumCertificate {
        block_hash: b.hash(),
        round: b.round(),
        height: b.header.height,
        signatures: signers
            .iter()
            .map(|i| ValidatorSignature {
                validator: *i as u32,
                signature: key(*i as u8).sign_digest(&digest),
            })
            .collect(),
    }
}

fn tc(round: u64, high_qc_rounds: [u64; 3]) -> TimeoutCertificate {
    TimeoutCertificate {
        round,
        signatures: high_qc_rounds
            .iter()
            .enumerate()
            .map(|(i, hqc)| TimeoutSignature {
                sender: i as u32,
                high_qc_round: *hqc,
                signature: key(i as u8).sign_digest(&Timeout::digest(&chain(), round, *hqc)),
            })
            .collect(),
    }
}

fn rules(store: Arc<dyn Store>, me: u8) -> SafetyRules {
    SafetyRules::new(
        key(me),
        u32::from(me),
        validators(),
        genesis_hash(),
        chain(),
        store,
    )
    .unwrap()
}

#[test]
fn one_vote_per_round_and_the_same_vote_when_asked_again() {
    let mut sr = rules(Arc::new(MemoryStore::new_empty()), 0);
    let b1 = block(1, 1, genesis_qc(), 1);
    let v = sr.vote(&b1, None).unwrap();
    v.verify(&chain(), &validators()).unwrap();
    assert_eq!(
        sr.vote(&b1, None).unwrap(),
        v,
        "same block, same round: stored vote"
    );
    let twin = block(1, 1, genesis_qc(), 2);
    assert!(matches!(
        sr.vote(&twin, None),
        Err(SafetyError::RoundNotNew { .. })
    ));
    let b2 = block(2, 2, certify(&b1, &[0, 1, 2]), 1);
    sr.vote(&b2, None).unwrap();
    assert_eq!(sr.data().last_voted_round, 2);
    assert_eq!(sr.data().one_chain_round, 1);
    // Going back is refused.
    assert!(matches!(
        sr.vote(&twin, None),
        Err(SafetyError::RoundNotNew { .. })
    ));
}

#[test]
fn votes_only_after_the_right_certificate() {
    let mut sr = rules(Arc::new(MemoryStore::new_empty()), 1);
    let b1 = block(1, 1, genesis_qc(), 1);
    let qc1 = certify(&b1, &[0, 1, 3]);
    // Round 3 extending round 1 without a timeout certificate of round 2: unsafe.
    let gap = block(3, 2, qc1.clone(), 1);
    assert!(matches!(
        sr.vote(&gap, None),
        Err(SafetyError::UnsafeToVote { .. })
    ));
    // With a TC of round 2 whose signers saw at most round 1: safe.
    sr.vote(&gap, Some(&tc(2, [1, 0, 1]))).unwrap();
    // A TC naming a higher certificate than the block's: unsafe.
    let b4 = block(5, 3, qc1, 2);
    assert!(matches!(
        sr.vote(&b4, Some(&tc(4, [1, 3, 2]))),
        Err(SafetyError::UnsafeToVote { .. })
    ));
}

#[test]
fn refuses_forged_or_mismatched_certificates() {
    let mut sr = rules(Arc::new(MemoryStore::new_empty()), 2);
    let b1 = block(1, 1, genesis_qc(), 1);
    let weak = block(2, 2, certify(&b1, &[0, 1]), 1);
    assert!(matches!(
        sr.vote(&weak, None),
        Err(SafetyError::BadCertificate(_))
    ));
    let mut forged_qc = certify(&b1, &[0, 1, 2]);
    forged_qc.signatures[2].signature = key(3).sign(b"nope");
    assert!(matches!(
        sr.vote(&block(2, 2, forged_qc, 1), None),
        Err(SafetyError::BadCertificate(_))
    ));
    let mut orphan = block(2, 2, certify(&b1, &[0, 1, 2]), 1);
    orphan.header.parent_hash = sha256(b"elsewhere");
    assert!(matches!(
        sr.vote(&orphan, None),
        Err(SafetyError::WrongParent { .. })
    ));
    let fake_genesis = QuorumCertificate {
        block_hash: sha256(b"x"),
        ..genesis_qc()
    };
    assert!(matches!(
        sr.vote(&block(1, 1, fake_genesis, 1), None),
        Err(SafetyError::BadCertificate(_))
    ));
    let mut bad_tc = tc(2, [1, 1, 1]);
    bad_tc.signatures.pop();
    let gap = block(3, 2, certify(&b1, &[0, 1, 2]), 1);
    assert!(matches!(
        sr.vote(&gap, Some(&bad_tc)),
        Err(SafetyError::BadCertificate(_))
    ));
    assert_eq!(sr.data().last_voted_round, 0, "nothing was signed");
}

#[test]
fn no_vote_in_a_round_after_timing_out_of_it() {
    let mut sr = rules(Arc::new(MemoryStore::new_empty()), 3);
    let t = sr.timeout(1, &genesis_qc(), None).unwrap();
    t.verify(&chain(), &validators()).unwrap();
    assert!(matches!(
        sr.vote(&block(1, 1, genesis_qc(), 1), None),
        Err(SafetyError::RoundNotNew { .. })
    ));
    // Timing out of round 3 needs a way into round 3.
    assert!(matches!(
        sr.timeout(3, &genesis_qc(), None),
        Err(SafetyError::UnsafeToTimeout { .. })
    ));
    sr.timeout(2, &genesis_qc(), Some(&tc(1, [0, 0, 0])))
        .unwrap();
    assert_eq!(sr.data().highest_timeout_round, 2);
}

#[test]
fn one_proposal_per_round() {
    let mut sr = rules(Arc::new(MemoryStore::new_empty()), 1);
    let b = block(1, 1, genesis_qc(), 1);
    let s1 = sr.sign_proposal(&b, None).unwrap();
    assert_eq!(
        sr.sign_proposal(&b, None).unwrap(),
        s1,
        "the same block may be signed again"
    );
    let other = block(1, 1, genesis_qc(), 9);
    assert!(matches!(
        sr.sign_proposal(&other, None),
        Err(SafetyError::ProposalRoundNotNew { .. })
    ));
    let not_mine = block(2, 2, genesis_qc(), 1);
    assert!(matches!(
        sr.sign_proposal(&not_mine, None),
        Err(SafetyError::NotProposer { .. })
    ));
}

#[test]
fn the_record_survives_a_restart_on_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let b1 = block(1, 1, genesis_qc(), 1);
    let vote = {
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path()).unwrap());
        rules(store, 0).vote(&b1, None).unwrap()
    };
    let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path()).unwrap());
    let mut sr = rules(store, 0);
    assert_eq!(sr.data().last_voted_round, 1);
    assert_eq!(sr.vote(&b1, None).unwrap(), vote);
    assert!(matches!(
        sr.vote(&block(1, 1, genesis_qc(), 2), None),
        Err(SafetyError::RoundNotNew { .. })
    ));
}

#[test]
fn record_encoding_round_trips_and_rejects_garbage() {
    let mut sr = rules(Arc::new(MemoryStore::new_empty()), 0);
    sr.vote(&block(1, 1, genesis_qc(), 1), None).unwrap();
    let data = sr.data().clone();
    assert_eq!(SafetyData::decode(&data.encode(), 0).unwrap(), data);
    assert_eq!(
        SafetyData::decode(&SafetyData::default().encode(), 0).unwrap(),
        SafetyData::default()
    );
    let bytes = data.encode();
    for len in 0..bytes.len() {
        assert!(
            SafetyData::decode(&bytes[..len], 0).is_err(),
            "truncated to {len}"
        );
    }
}
