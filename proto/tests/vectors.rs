//! Test vectors for signing bytes, tx ids, signatures and addresses.
//!
//! The files in `proto/testdata/` are generated from the code and checked
//! against it on every run, so they can never drift. After an intended change
//! to the layout, regenerate them with
//! `CHATPAY_UPDATE_VECTORS=1 cargo test -p chatpay-proto --test vectors`.
//! `proto/testdata/check_vectors.py` checks the same files with an
//! independent secp256k1, SHA-256 and bech32m implementation.

use bech32::primitives::iter::{ByteIterExt, Fe32IterExt};
use bech32::{Bech32, Bech32m, Fe32, Hrp};
use chatpay_proto::{
    Address, ENCRYPTED_MEMO_SCHEME, Hash, MEMO_HEADER_BYTES, MEMO_SLOT_BYTES, Memo, Output,
    PublicKey, SecretKey, Signature, SignedTransfer, Transfer, sha256,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct VectorOutput {
    to: String,
    amount: u64,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Vector {
    secret_key_hex: String,
    public_key_hex: String,
    address: String,
    hrp: String,
    genesis_hash_hex: String,
    nonce: u64,
    fee: u64,
    expires_at_ms: u64,
    reference_hex: String,
    outputs: Vec<VectorOutput>,
    memo_kind: String,
    memo_hex: String,
    signing_bytes_hex: String,
    tx_id_hex: String,
    signature_hex: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct InvalidAddress {
    description: String,
    address: String,
    hrp: String,
    error: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct InvalidSignature {
    description: String,
    public_key_hex: String,
    message_hex: String,
    signature_hex: String,
    error: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct InvalidVectors {
    addresses: Vec<InvalidAddress>,
    signatures: Vec<InvalidSignature>,
}

fn key(label: &str) -> SecretKey {
    SecretKey::from_slice(sha256(format!("chatpay test vector key {label}").as_bytes()).as_bytes())
        .expect("a SHA-256 output is a valid scalar with overwhelming probability")
}

struct Case {
    hrp: &'static str,
    /// The genesis hash is SHA-256 of this label (a stand-in network).
    network: &'static str,
    sender: &'static str,
    nonce: u64,
    fee: u64,
    expires_at_ms: u64,
    reference: Option<&'static str>,
    outputs: Vec<(&'static str, u64)>,
    memo: Memo,
}

fn genesis_hash(network: &str) -> Hash {
    sha256(format!("chatpay test vector genesis {network}").as_bytes())
}

/// A structurally valid encrypted memo envelope for `readers` readers:
/// deterministic filler bytes (the memo vectors hold real ciphertexts).
fn filler_envelope(readers: usize, padded: usize) -> Memo {
    let len = MEMO_HEADER_BYTES + readers * MEMO_SLOT_BYTES + padded + 16;
    let mut e: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    e[0] = ENCRYPTED_MEMO_SCHEME;
    e[MEMO_HEADER_BYTES - 1] = u8::try_from(readers).unwrap();
    Memo::Encrypted(e)
}

fn cases() -> Vec<Case> {
    let many: Vec<(&'static str, u64)> = (0..64)
        .map(|i| (["bob", "carol", "dave", "erin"][i % 4], 1 + i as u64))
        .collect();
    vec![
        // A plain payment with a UTF-8 chat memo.
        Case {
            hrp: "cp",
            network: "devnet",
            sender: "alice",
            nonce: 1,
            fee: 1_000,
            expires_at_ms: 0,
            reference: None,
            outputs: vec![("bob", 5_000_000)],
            memo: Memo::Public("lunch \u{1F355}".as_bytes().to_vec()),
        },
        // Empty memo.
        Case {
            hrp: "cp",
            network: "devnet",
            sender: "bob",
            nonce: 7,
            fee: 1_000,
            expires_at_ms: 0,
            reference: None,
            outputs: vec![("alice", 1)],
            memo: Memo::None,
        },
        // Maximum memo (256 bytes).
        Case {
            hrp: "cp",
            network: "devnet",
            sender: "carol",
            nonce: 2,
            fee: 1_000,
            expires_at_ms: 0,
            reference: None,
            outputs: vec![("alice", 250_000)],
            memo: Memo::Public((0..=255u8).collect()),
        },
        // Splitting a bill three ways.
        Case {
            hrp: "cp",
            network: "devnet",
            sender: "alice",
            nonce: 2,
            fee: 3_000,
            expires_at_ms: 0,
            reference: None,
            outputs: vec![
                ("bob", 12_500_000),
                ("carol", 12_500_000),
                ("dave", 12_500_000),
            ],
            memo: Memo::Public(b"dinner split".to_vec()),
        },
        // Maximum number of outputs (64).
        Case {
            hrp: "cp",
            network: "devnet",
            sender: "erin",
            nonce: 42,
            fee: 64_000,
            expires_at_ms: 0,
            reference: None,
            outputs: many,
            memo: Memo::Public(b"group pot".to_vec()),
        },
        // Largest amount, zero fee.
        Case {
            hrp: "cp",
            network: "devnet",
            sender: "dave",
            nonce: 1,
            fee: 0,
            expires_at_ms: 0,
            reference: None,
            outputs: vec![("alice", u64::MAX)],
            memo: Memo::None,
        },
        // Largest nonce and fee, two large outputs.
        Case {
            hrp: "cp",
            network: "devnet",
            sender: "bob",
            nonce: u64::MAX,
            fee: u64::MAX,
            expires_at_ms: 0,
            reference: None,
            outputs: vec![("carol", u64::MAX / 2), ("dave", u64::MAX / 2 + 1)],
            memo: Memo::Public(vec![0]),
        },
        // Another network: other hrp and genesis.
        Case {
            hrp: "tcp",
            network: "testnet-1",
            sender: "alice",
            nonce: 3,
            fee: 10,
            expires_at_ms: 0,
            reference: None,
            outputs: vec![("erin", 99)],
            memo: Memo::Public(b"test".to_vec()),
        },
        // A payment request paid: reference and expiry.
        Case {
            hrp: "cp",
            network: "devnet",
            sender: "bob",
            nonce: 8,
            fee: 1_000,
            expires_at_ms: 1_796_601_600_000,
            reference: Some("rent march"),
            outputs: vec![("alice", 12_500_000)],
            memo: Memo::Public(b"rent".to_vec()),
        },
        // An encrypted memo on a split bill (three readers: two payees and
        // the payer), the largest expiry.
        Case {
            hrp: "cp",
            network: "devnet",
            sender: "carol",
            nonce: 1,
            fee: 2_000,
            expires_at_ms: u64::MAX,
            reference: Some("dinner"),
            outputs: vec![("alice", 10), ("bob", 20), ("alice", 30)],
            memo: filler_envelope(3, 128),
        },
        // An encrypted memo with no reference and no expiry.
        Case {
            hrp: "cp",
            network: "devnet",
            sender: "dave",
            nonce: 5,
            fee: 1_000,
            expires_at_ms: 0,
            reference: None,
            outputs: vec![("erin", 7)],
            memo: filler_envelope(2, 64),
        },
        // The first case's transfer signed for another network: only the
        // genesis hash differs.
        Case {
            hrp: "cp",
            network: "devnet-reset",
            sender: "alice",
            nonce: 1,
            fee: 1_000,
            expires_at_ms: 0,
            reference: None,
            outputs: vec![("bob", 5_000_000)],
            memo: Memo::Public("lunch \u{1F355}".as_bytes().to_vec()),
        },
    ]
}

fn address(hrp: &str, who: &str) -> String {
    Address::new(hrp, key(who).public_key().clone())
        .unwrap()
        .to_string()
}

fn build_vectors() -> Vec<Vector> {
    cases()
        .into_iter()
        .map(|c| {
            let sk = key(c.sender);
            let outputs = c
                .outputs
                .iter()
                .map(|(to, amount)| Output {
                    recipient: key(to).public_key().clone(),
                    amount: *amount,
                })
                .collect();
            let reference = c
                .reference
                .map(|r| sha256(format!("reference {r}").as_bytes()));
            let t = Transfer::new(
                genesis_hash(c.network),
                sk.public_key().clone(),
                c.nonce,
                c.fee,
                outputs,
                c.memo.clone(),
            )
            .unwrap()
            .with_expiry(c.expires_at_ms)
            .with_reference(reference);
            let signing_bytes = t.signing_bytes();
            let signed = t.sign(&sk);
            Vector {
                secret_key_hex: hex::encode(sk.to_bytes()),
                public_key_hex: hex::encode(sk.public_key().as_bytes()),
                address: address(c.hrp, c.sender),
                hrp: c.hrp.to_owned(),
                genesis_hash_hex: genesis_hash(c.network).to_hex(),
                nonce: c.nonce,
                fee: c.fee,
                expires_at_ms: c.expires_at_ms,
                reference_hex: reference.map(|r| r.to_hex()).unwrap_or_default(),
                outputs: c
                    .outputs
                    .iter()
                    .map(|(to, amount)| VectorOutput {
                        to: address(c.hrp, to),
                        amount: *amount,
                    })
                    .collect(),
                memo_kind: ["none", "public", "encrypted"][usize::from(c.memo.kind())].into(),
                memo_hex: hex::encode(c.memo.bytes()),
                signing_bytes_hex: hex::encode(signing_bytes),
                tx_id_hex: signed.tx_id().to_hex(),
                signature_hex: hex::encode(signed.signature().as_bytes()),
            }
        })
        .collect()
}

fn encode_fes(hrp: &str, fes: Vec<Fe32>, bech32m: bool) -> String {
    let hrp = Hrp::parse(hrp).unwrap();
    if bech32m {
        fes.into_iter()
            .with_checksum::<Bech32m>(&hrp)
            .chars()
            .collect()
    } else {
        fes.into_iter()
            .with_checksum::<Bech32>(&hrp)
            .chars()
            .collect()
    }
}

fn fes(bytes: &[u8]) -> Vec<Fe32> {
    bytes.iter().copied().bytes_to_fes().collect()
}

fn build_invalid() -> InvalidVectors {
    let alice = key("alice");
    let pk = *alice.public_key().as_bytes();
    let good = address("cp", "alice");
    let mut typo: Vec<char> = good.chars().collect();
    typo[20] = if typo[20] == 'q' { 'p' } else { 'q' };
    let typo: String = typo.into_iter().collect();
    // The last of 53 characters carries 4 key bits and 1 padding bit; set it.
    let mut padded = fes(&pk);
    let last = padded.len() - 1;
    padded[last] = Fe32::try_from(padded[last].to_u8() | 1).unwrap();
    let mut off_curve = [0u8; 33];
    off_curve[0] = 0x02;
    off_curve[32] = 5; // x = 5: 5^3 + 7 is not a square mod p.
    let mut prefix04 = pk;
    prefix04[0] = 0x04;
    let mut long = pk.to_vec();
    long.push(0);
    let a = |description: &str, address: String, hrp: &str, error: &str| InvalidAddress {
        description: description.into(),
        address,
        hrp: hrp.into(),
        error: error.into(),
    };
    let addresses = vec![
        a("one character changed", typo, "cp", "bad_checksum"),
        a(
            "valid address of another network",
            address("tcp", "alice"),
            "cp",
            "wrong_hrp",
        ),
        a(
            "bech32 (BIP-173) checksum instead of bech32m",
            encode_fes("cp", fes(&pk), false),
            "cp",
            "wrong_variant",
        ),
        a(
            "32-byte payload",
            encode_fes("cp", fes(&pk[..32]), true),
            "cp",
            "wrong_length",
        ),
        a(
            "34-byte payload",
            encode_fes("cp", fes(&long), true),
            "cp",
            "wrong_length",
        ),
        a(
            "x coordinate not on the curve",
            encode_fes("cp", fes(&off_curve), true),
            "cp",
            "invalid_point",
        ),
        a(
            "uncompressed-point prefix 0x04",
            encode_fes("cp", fes(&prefix04), true),
            "cp",
            "invalid_point",
        ),
        a(
            "non-zero padding bit",
            encode_fes("cp", padded, true),
            "cp",
            "non_canonical",
        ),
        a(
            "mixed case",
            format!("{}{}", &good[..10], good[10..].to_uppercase()),
            "cp",
            "malformed",
        ),
        a("no separator", good.replace('1', ""), "cp", "malformed"),
        a(
            "character outside the bech32 alphabet",
            format!("{}b{}", &good[..8], &good[9..]),
            "cp",
            "malformed",
        ),
        a("empty data part", "cp1".into(), "cp", "malformed"),
    ];
    let msg = b"chatpay invalid signature vector".to_vec();
    let sig = alice.sign(&msg);
    let k = k256::ecdsa::Signature::from_slice(sig.as_bytes()).unwrap();
    let (r, s) = k.split_scalars();
    let high = k256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    let high: [u8; 64] = high.to_bytes().into();
    let mut flipped = *sig.as_bytes();
    flipped[40] ^= 0x01;
    let order_n =
        hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141").unwrap();
    let mut r_is_n = order_n.clone();
    r_is_n.extend_from_slice(&sig.as_bytes()[32..]);
    let s = |description: &str, public_key: &PublicKey, signature: &[u8], error: &str| {
        InvalidSignature {
            description: description.into(),
            public_key_hex: hex::encode(public_key.as_bytes()),
            message_hex: hex::encode(&msg),
            signature_hex: hex::encode(signature),
            error: error.into(),
        }
    };
    let signatures = vec![
        s(
            "high S (n - s of a valid signature)",
            alice.public_key(),
            &high,
            "high_s",
        ),
        s(
            "one bit of s flipped",
            alice.public_key(),
            &flipped,
            "invalid",
        ),
        s(
            "valid signature, other key",
            key("bob").public_key(),
            sig.as_bytes(),
            "invalid",
        ),
        s(
            "r = 0 and s = 0",
            alice.public_key(),
            &[0; 64],
            "malformed_signature",
        ),
        s(
            "r = n (not below the group order)",
            alice.public_key(),
            &r_is_n,
            "malformed_signature",
        ),
        s(
            "63 bytes",
            alice.public_key(),
            &sig.as_bytes()[..63],
            "signature_length",
        ),
        s(
            "65 bytes (DER or recovery id appended)",
            alice.public_key(),
            &[sig.as_bytes().as_slice(), &[1]].concat(),
            "signature_length",
        ),
    ];
    InvalidVectors {
        addresses,
        signatures,
    }
}

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// Writes the file when asked to, otherwise fails if it differs from `expected`.
fn check_file(name: &str, expected: String) {
    let path = testdata(name);
    let expected = expected + "\n";
    if std::env::var_os("CHATPAY_UPDATE_VECTORS").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        found == expected,
        "{} differs from what the code produces; if the change is intended, run \
         CHATPAY_UPDATE_VECTORS=1 cargo test -p chatpay-proto --test vectors",
        path.display()
    );
}

#[test]
fn transfer_vectors_match_the_code() {
    check_file(
        "transfer_vectors.json",
        serde_json::to_string_pretty(&build_vectors()).unwrap(),
    );
}

#[test]
fn invalid_vectors_match_the_code() {
    check_file(
        "invalid_vectors.json",
        serde_json::to_string_pretty(&build_invalid()).unwrap(),
    );
}

/// Reads the committed file and checks every vector through the public API
/// only, as a client of the crate would.
#[test]
fn transfer_vectors_verify() {
    let text = std::fs::read_to_string(testdata("transfer_vectors.json")).unwrap();
    let vectors: Vec<Vector> = serde_json::from_str(&text).unwrap();
    assert!(vectors.len() >= 8);
    for v in vectors {
        let sk = SecretKey::from_slice(&hex::decode(&v.secret_key_hex).unwrap()).unwrap();
        assert_eq!(hex::encode(sk.public_key().as_bytes()), v.public_key_hex);
        let from = Address::parse(&v.address, &v.hrp).unwrap();
        assert_eq!(from.public_key(), sk.public_key());
        let outputs = v
            .outputs
            .iter()
            .map(|o| Output {
                recipient: Address::parse(&o.to, &v.hrp).unwrap().into_public_key(),
                amount: o.amount,
            })
            .collect();
        let bytes = hex::decode(&v.memo_hex).unwrap();
        let memo = match v.memo_kind.as_str() {
            "none" => Memo::None,
            "public" => Memo::Public(bytes),
            "encrypted" => Memo::Encrypted(bytes),
            other => panic!("memo kind {other}"),
        };
        let genesis = Hash::from_slice(&hex::decode(&v.genesis_hash_hex).unwrap()).unwrap();
        let reference = (!v.reference_hex.is_empty())
            .then(|| Hash::from_slice(&hex::decode(&v.reference_hex).unwrap()).unwrap());
        let t = Transfer::new(
            genesis,
            from.into_public_key(),
            v.nonce,
            v.fee,
            outputs,
            memo,
        )
        .unwrap()
        .with_expiry(v.expires_at_ms)
        .with_reference(reference);
        assert_eq!(hex::encode(t.signing_bytes()), v.signing_bytes_hex);
        assert_eq!(
            hex::encode(sha256(&t.signing_bytes()).as_bytes()),
            v.tx_id_hex
        );
        let sig = Signature::from_slice(&hex::decode(&v.signature_hex).unwrap()).unwrap();
        let signed = SignedTransfer::new(t, sig);
        signed.verify().unwrap();
        assert_eq!(signed.tx_id().to_hex(), v.tx_id_hex);
    }
}

#[test]
fn invalid_vectors_are_rejected_with_their_error() {
    let text = std::fs::read_to_string(testdata("invalid_vectors.json")).unwrap();
    let vectors: InvalidVectors = serde_json::from_str(&text).unwrap();
    for a in vectors.addresses {
        let err = Address::parse(&a.address, &a.hrp).unwrap_err();
        assert_eq!(err.code(), a.error, "{}: {err}", a.description);
    }
    for s in vectors.signatures {
        let pk = PublicKey::from_slice(&hex::decode(&s.public_key_hex).unwrap()).unwrap();
        let msg = hex::decode(&s.message_hex).unwrap();
        let err = Signature::from_slice(&hex::decode(&s.signature_hex).unwrap())
            .and_then(|sig| pk.verify(&msg, &sig))
            .unwrap_err();
        assert_eq!(err.code(), s.error, "{}: {err}", s.description);
    }
}

/// `account_proof_vectors.json` (written by the node's API test from the
/// proofs it serves): each account verifies against its proof, or, marked
/// invalid, does not.
#[test]
fn account_proof_vectors_verify() {
    use chatpay_proto::{
        Account, AccountProof, BlockHeader, CommitProof, Hash, QuorumCertificate,
        ValidatorSignature, state::StateProof,
    };
    use serde_json::Value;
    let text = std::fs::read_to_string(testdata("account_proof_vectors.json")).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    let hash = |v: &Value| Hash::from_slice(&hex::decode(v.as_str().unwrap()).unwrap()).unwrap();
    let num = |v: &Value| v.as_u64().unwrap();
    let header = |h: &Value| BlockHeader {
        genesis_hash: hash(&h["genesis_hash_hex"]),
        height: num(&h["height"]),
        round: num(&h["round"]),
        parent_hash: hash(&h["parent_hash_hex"]),
        proposer: num(&h["proposer"]) as u32,
        timestamp_ms: num(&h["timestamp_ms"]),
        tx_count: num(&h["tx_count"]) as u32,
        tx_root: hash(&h["tx_root_hex"]),
        state_root: hash(&h["state_root_hex"]),
    };
    let c = &file["commit"];
    let qc = &c["commit_certificate"];
    let commit = CommitProof {
        header: header(&c["header"]),
        commit_path: c["commit_path"]
            .as_array()
            .unwrap()
            .iter()
            .map(header)
            .collect(),
        commit_header: header(&c["commit_header"]),
        commit_certificate: QuorumCertificate {
            block_hash: hash(&qc["block_hash_hex"]),
            round: num(&qc["round"]),
            height: num(&qc["height"]),
            signatures: qc["signatures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| ValidatorSignature {
                    validator: num(&s["validator"]) as u32,
                    signature: Signature::from_slice(
                        &hex::decode(s["signature_hex"].as_str().unwrap()).unwrap(),
                    )
                    .unwrap(),
                })
                .collect(),
        },
    };
    let validators: Vec<PublicKey> = file["validators_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| PublicKey::from_slice(&hex::decode(k.as_str().unwrap()).unwrap()).unwrap())
        .collect();
    let genesis = hash(&file["genesis_hash_hex"]);
    for a in file["accounts"].as_array().unwrap() {
        let key =
            PublicKey::from_slice(&hex::decode(a["public_key_hex"].as_str().unwrap()).unwrap())
                .unwrap();
        let leaf_key = a["leaf_key_hex"].as_str().unwrap();
        let proof = AccountProof {
            state: StateProof {
                leaf: (!leaf_key.is_empty())
                    .then(|| (hash(&a["leaf_key_hex"]), hash(&a["leaf_value_hash_hex"]))),
                siblings: a["siblings_hex"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(hash)
                    .collect(),
            },
            commit: commit.clone(),
        };
        let account = Account {
            balance: num(&a["balance"]),
            nonce: num(&a["nonce"]),
            history_count: num(&a["history_count"]),
            history_hash: hash(&a["history_hash_hex"]),
        };
        let present = account != Account::default();
        let got = proof.verify(&key, present.then_some(&account), &genesis, &validators);
        let description = a["description"].as_str().unwrap();
        assert_eq!(
            got.is_ok(),
            a["valid"].as_bool().unwrap(),
            "{description}: {got:?}"
        );
    }
}
