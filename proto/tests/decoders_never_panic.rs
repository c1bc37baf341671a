//! Property tests: every decoder answers hostile input with an error, never a
//! panic, and valid values survive a round trip.

use chatpay_proto::{
    Address, BlockHeader, MerkleProof, Output, QuorumCertificate, Receipt, SecretKey,
    SignedTransfer, Transfer, format_amount, parse_amount, pb,
};
use proptest::prelude::*;
use prost::Message;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        ..ProptestConfig::default()
    }
}

fn valid_wire() -> Vec<u8> {
    let sk = SecretKey::from_slice(&[7; 32]).unwrap();
    let to = SecretKey::from_slice(&[8; 32])
        .unwrap()
        .public_key()
        .clone();
    let t = Transfer::new(
        chatpay_proto::Hash([1; 32]),
        sk.public_key().clone(),
        1,
        10,
        vec![Output {
            recipient: to,
            amount: 3,
        }],
        b"hi".to_vec(),
    )
    .unwrap();
    pb::SignedTransaction::from(&t.sign(&sk)).encode_to_vec()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn address_parse_never_panics(s in "\\PC{0,100}") {
        let _ = Address::parse(&s, "cp");
    }

    #[test]
    fn address_parse_bech32_alphabet(s in "cp1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{0,70}") {
        // Random data in the right alphabet: almost always a checksum error,
        // never a panic, and whatever parses re-encodes to itself.
        if let Ok(a) = Address::parse(&s, "cp") {
            prop_assert_eq!(a.to_string(), s);
        }
    }

    #[test]
    fn amount_parse_never_panics(s in "\\PC{0,40}", decimals in 0u8..=20) {
        let _ = parse_amount(&s, decimals);
    }

    #[test]
    fn amount_digits_round_trip(units: u64, decimals in 0u8..=18) {
        prop_assert_eq!(parse_amount(&format_amount(units, decimals), decimals), Ok(units));
    }

    #[test]
    fn amount_numeric_strings(s in "[0-9]{0,25}(\\.[0-9]{0,20})?", decimals in 0u8..=18) {
        let _ = parse_amount(&s, decimals);
    }

    #[test]
    fn random_bytes_to_signed_transfer(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(wire) = pb::SignedTransaction::decode(bytes.as_slice()) {
            if let Ok(t) = SignedTransfer::try_from(wire) {
                let _ = t.verify();
            }
        }
    }

    #[test]
    fn mutated_valid_transfer(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = valid_wire();
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] ^= b | 1;
        }
        if let Ok(wire) = pb::SignedTransaction::decode(bytes.as_slice()) {
            if let Ok(t) = SignedTransfer::try_from(wire) {
                let _ = t.verify();
            }
        }
    }

    #[test]
    fn random_bytes_to_ledger_types(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(w) = pb::BlockHeader::decode(bytes.as_slice()) {
            if let Ok(h) = BlockHeader::try_from(w) {
                let _ = h.hash();
            }
        }
        if let Ok(w) = pb::QuorumCertificate::decode(bytes.as_slice()) {
            if let Ok(q) = QuorumCertificate::try_from(w) {
                let _ = q.verify(&chatpay_proto::ChainBinding::genesis(chatpay_proto::sha256(b"g")), &[]);
            }
        }
        if let Ok(w) = pb::MerkleProof::decode(bytes.as_slice()) {
            if let Ok(p) = MerkleProof::try_from(w) {
                let _ = p.verify(&chatpay_proto::sha256(b"leaf"), &chatpay_proto::sha256(b"root"));
            }
        }
        if let Ok(w) = pb::Receipt::decode(bytes.as_slice()) {
            let _ = Receipt::try_from(w);
        }
    }
}
