//! Test vectors of encrypted memos (docs/protocol.md, "Encrypted memos"),
//! generated from the code and compared with `proto/testdata/memo_vectors.json`
//! on every run. `proto/testdata/check_memo_vectors.py` opens every one with
//! an independent implementation (coincurve and cryptography). Regenerate
//! after an intended change with
//! `CHATPAY_UPDATE_VECTORS=1 cargo test -p chatpay-wallet --test memo_vectors`.

use chatpay_proto::{Hash, Memo, Output, PublicKey, SecretKey, Transfer, sha256};
use chatpay_wallet::memo::{self, MemoSecrets};
use serde_json::{Value, json};

fn key(label: &str) -> SecretKey {
    SecretKey::from_slice(sha256(format!("chatpay memo vector key {label}").as_bytes()).as_bytes())
        .expect("a valid scalar")
}

fn secret(label: &str) -> [u8; 32] {
    sha256(format!("chatpay memo vector secret {label}").as_bytes()).0
}

struct Case {
    description: &'static str,
    sender: &'static str,
    nonce: u64,
    to: Vec<&'static str>,
    text: Vec<u8>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            description: "one payee, a short memo (64-byte padding)",
            sender: "alice",
            nonce: 1,
            to: vec!["bob"],
            text: "rent for March".as_bytes().to_vec(),
        },
        Case {
            description: "empty text",
            sender: "bob",
            nonce: 9,
            to: vec!["alice"],
            text: vec![],
        },
        Case {
            description: "a split bill: two payees, one twice (three readers)",
            sender: "carol",
            nonce: 2,
            to: vec!["alice", "bob", "alice"],
            text: "dinner at Luigi's \u{1F355}".as_bytes().to_vec(),
        },
        Case {
            description: "62 bytes: the largest of the 64-byte size",
            sender: "dave",
            nonce: 3,
            to: vec!["erin"],
            text: vec![b'x'; 62],
        },
        Case {
            description: "63 bytes: the 128-byte size",
            sender: "dave",
            nonce: 4,
            to: vec!["erin"],
            text: vec![b'y'; 63],
        },
        Case {
            description: "128 bytes: the 256-byte size",
            sender: "erin",
            nonce: 5,
            to: vec!["dave"],
            text: (0..128u8).collect(),
        },
        Case {
            description: "254 bytes, the longest",
            sender: "alice",
            nonce: u64::MAX,
            to: vec!["bob", "carol"],
            text: vec![0xff; 254],
        },
        Case {
            description: "the payer pays itself too (its slot is the last)",
            sender: "bob",
            nonce: 10,
            to: vec!["bob", "carol"],
            text: b"change".to_vec(),
        },
    ]
}

fn vector(c: &Case, index: usize) -> Value {
    let genesis = sha256(b"chatpay memo vector genesis");
    let sender = key(c.sender);
    let outputs: Vec<Output> =
        c.to.iter()
            .map(|who| Output {
                recipient: key(who).public_key().clone(),
                amount: 1,
            })
            .collect();
    let secrets = MemoSecrets {
        ephemeral: secret(&format!("ephemeral {index}")),
        content_key: secret(&format!("content {index}")),
    };
    let plain = Transfer::new(
        genesis,
        sender.public_key().clone(),
        c.nonce,
        1,
        outputs.clone(),
        Memo::None,
    )
    .unwrap();
    let ad = plain.memo_associated_data();
    let readers = plain.memo_readers();
    let envelope = memo::encrypt(&c.text, &readers, &ad, &secrets).unwrap();
    let t = Transfer::new(
        genesis,
        sender.public_key().clone(),
        c.nonce,
        1,
        outputs,
        Memo::Encrypted(envelope.clone()),
    )
    .unwrap();
    let mut reader_labels: Vec<&str> = Vec::new();
    for who in c.to.iter().chain(std::iter::once(&c.sender)) {
        let k = key(who);
        if readers.contains(&k.public_key()) && !reader_labels.contains(who) {
            reader_labels.push(who);
            // Every reader opens it with the code too.
            assert_eq!(memo::decrypt(&t, &k).unwrap(), c.text, "{}", c.description);
        }
    }
    // Slot order is the readers' order, not the order readers are listed
    // here: the vector gives each reader's key and its slot.
    let readers_json: Vec<Value> = reader_labels
        .iter()
        .map(|who| {
            let k = key(who);
            let slot = readers.iter().position(|r| *r == k.public_key()).unwrap();
            json!({
                "secret_key_hex": hex::encode(k.to_bytes()),
                "public_key_hex": hex::encode(k.public_key().as_bytes()),
                "slot": slot,
            })
        })
        .collect();
    let outsider = key("mallory");
    assert!(memo::decrypt(&t, &outsider).is_err());
    json!({
        "description": c.description,
        "genesis_hash_hex": genesis.to_hex(),
        "sender_public_key_hex": hex::encode(sender.public_key().as_bytes()),
        "nonce": c.nonce,
        "readers_in_slot_order_hex": readers.iter().map(|r: &&PublicKey| hex::encode(r.as_bytes())).collect::<Vec<_>>(),
        "readers": readers_json,
        "associated_data_hex": hex::encode(&ad),
        "ephemeral_secret_hex": hex::encode(secrets.ephemeral),
        "content_key_hex": hex::encode(secrets.content_key),
        "text_hex": hex::encode(&c.text),
        "envelope_hex": hex::encode(&envelope),
    })
}

#[test]
fn memo_vectors_match_the_code() {
    let vectors: Vec<Value> = cases()
        .iter()
        .enumerate()
        .map(|(i, c)| vector(c, i))
        .collect();
    let text = serde_json::to_string_pretty(&vectors).unwrap() + "\n";
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../proto/testdata/memo_vectors.json"
    );
    if std::env::var_os("CHATPAY_UPDATE_VECTORS").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(path).unwrap_or_default(),
        text,
        "memo vectors changed; regenerate with CHATPAY_UPDATE_VECTORS=1 if intended"
    );
}

#[test]
fn an_envelope_signed_for_another_nonce_or_network_does_not_open() {
    let c = &cases()[0];
    let v = vector(c, 0);
    let envelope = hex::decode(v["envelope_hex"].as_str().unwrap()).unwrap();
    let bob = key("bob");
    let outputs = vec![Output {
        recipient: bob.public_key().clone(),
        amount: 1,
    }];
    let genesis = sha256(b"chatpay memo vector genesis");
    for (network, nonce) in [(genesis, c.nonce + 1), (Hash([1; 32]), c.nonce)] {
        let moved = Transfer::new(
            network,
            key(c.sender).public_key().clone(),
            nonce,
            1,
            outputs.clone(),
            Memo::Encrypted(envelope.clone()),
        )
        .unwrap();
        assert!(memo::decrypt(&moved, &bob).is_err());
    }
}
