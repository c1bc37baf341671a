//! Conversions between consensus messages and their `chatpay.v1` wire form.
//! Wire values are hostile: sizes are capped before anything is parsed, and
//! every error names the field at fault. Signatures are checked later,
//! against the validator set, by the receiver.

use super::messages::{Block, Proposal, Timeout, TimeoutCertificate, TimeoutSignature, Vote};
use super::sync::SyncedBlock;
use crate::genesis::MAX_VALIDATORS;
use chatpay_proto::{
    BlockHeader, ConversionError, QuorumCertificate, SignedTransfer, hash_field, pb,
    signature_field,
};

/// Most transactions a block may carry.
pub const MAX_BLOCK_TXS: usize = 10_000;

/// A consensus message off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsensusMessage {
    /// A leader's proposal.
    Proposal(Box<Proposal>),
    /// A vote.
    Vote(Vote),
    /// A timeout.
    Timeout(Timeout),
}

type Result<T> = std::result::Result<T, ConversionError>;

fn qc(q: Option<pb::QuorumCertificate>, field: &str) -> Result<QuorumCertificate> {
    let q = q.ok_or_else(|| ConversionError::missing(field))?;
    QuorumCertificate::try_from(q).map_err(|e| e.within(field))
}

impl TryFrom<pb::Block> for Block {
    type Error = ConversionError;

    fn try_from(b: pb::Block) -> Result<Self> {
        if b.transactions.len() > MAX_BLOCK_TXS {
            return Err(ConversionError::invalid(
                "block.transactions",
                format!("at most {MAX_BLOCK_TXS}, got {}", b.transactions.len()),
            ));
        }
        let header = b
            .header
            .ok_or_else(|| ConversionError::missing("block.header"))?;
        let header = BlockHeader::try_from(header).map_err(|e| e.within("block"))?;
        let transactions = b
            .transactions
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                SignedTransfer::try_from(t)
                    .map_err(|e| e.within(&format!("block.transactions[{i}]")))
            })
            .collect::<Result<Vec<_>>>()?;
        if header.tx_count as usize != transactions.len() {
            return Err(ConversionError::invalid(
                "block.header.tx_count",
                format!(
                    "{} for {} transactions",
                    header.tx_count,
                    transactions.len()
                ),
            ));
        }
        let justify = qc(b.justify, "block.justify")?;
        Ok(Block {
            header,
            transactions,
            justify,
        })
    }
}

impl From<&Block> for pb::Block {
    fn from(b: &Block) -> Self {
        pb::Block {
            header: Some((&b.header).into()),
            transactions: b.transactions.iter().map(Into::into).collect(),
            justify: Some((&b.justify).into()),
        }
    }
}

impl TryFrom<pb::Vote> for Vote {
    type Error = ConversionError;

    fn try_from(v: pb::Vote) -> Result<Self> {
        Ok(Vote {
            block_hash: hash_field(&v.block_hash, "vote.block_hash")?,
            round: v.round,
            height: v.height,
            voter: v.sender,
            signature: signature_field(&v.signature, "vote.signature")?,
        })
    }
}

impl From<&Vote> for pb::Vote {
    fn from(v: &Vote) -> Self {
        pb::Vote {
            block_hash: v.block_hash.0.to_vec(),
            round: v.round,
            height: v.height,
            sender: v.voter,
            signature: v.signature.as_bytes().to_vec(),
        }
    }
}

impl TryFrom<pb::Timeout> for Timeout {
    type Error = ConversionError;

    fn try_from(t: pb::Timeout) -> Result<Self> {
        Ok(Timeout {
            round: t.round,
            high_qc: qc(t.high_qc, "timeout.high_qc")?,
            sender: t.sender,
            signature: signature_field(&t.signature, "timeout.signature")?,
            last_round_tc: t
                .last_round_tc
                .map(|tc| {
                    TimeoutCertificate::try_from(tc).map_err(|e| e.within("timeout.last_round_tc"))
                })
                .transpose()?,
        })
    }
}

impl From<&Timeout> for pb::Timeout {
    fn from(t: &Timeout) -> Self {
        pb::Timeout {
            round: t.round,
            high_qc: Some((&t.high_qc).into()),
            sender: t.sender,
            signature: t.signature.as_bytes().to_vec(),
            last_round_tc: t.last_round_tc.as_ref().map(Into::into),
        }
    }
}

impl TryFrom<pb::TimeoutCertificate> for TimeoutCertificate {
    type Error = ConversionError;

    fn try_from(t: pb::TimeoutCertificate) -> Result<Self> {
        if t.signatures.len() > MAX_VALIDATORS {
            return Err(ConversionError::invalid(
                "timeout_certificate.signatures",
                format!("at most {MAX_VALIDATORS}, got {}", t.signatures.len()),
            ));
        }
        let signatures = t
            .signatures
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let field = format!("timeout_certificate.signatures[{i}].signature");
                Ok(TimeoutSignature {
                    sender: s.sender,
                    high_qc_round: s.high_qc_round,
                    signature: signature_field(&s.signature, &field)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TimeoutCertificate {
            round: t.round,
            signatures,
        })
    }
}

impl From<&TimeoutCertificate> for pb::TimeoutCertificate {
    fn from(t: &TimeoutCertificate) -> Self {
        pb::TimeoutCertificate {
            round: t.round,
            signatures: t
                .signatures
                .iter()
                .map(|s| pb::TimeoutSignature {
                    sender: s.sender,
                    high_qc_round: s.high_qc_round,
                    signature: s.signature.as_bytes().to_vec(),
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::Proposal> for Proposal {
    type Error = ConversionError;

    fn try_from(p: pb::Proposal) -> Result<Self> {
        let block = Block::try_from(p.block.ok_or_else(|| ConversionError::missing("block"))?)?;
        if p.sender != block.header.proposer {
            return Err(ConversionError::invalid(
                "sender",
                format!(
                    "{} is not the block's proposer {}",
                    p.sender, block.header.proposer
                ),
            ));
        }
        let timeout_certificate = p
            .timeout_certificate
            .map(TimeoutCertificate::try_from)
            .transpose()?;
        Ok(Proposal {
            block,
            timeout_certificate,
            signature: signature_field(&p.signature, "signature")?,
        })
    }
}

impl From<&Proposal> for pb::Proposal {
    fn from(p: &Proposal) -> Self {
        pb::Proposal {
            block: Some((&p.block).into()),
            timeout_certificate: p.timeout_certificate.as_ref().map(Into::into),
            sender: p.block.header.proposer,
            signature: p.signature.as_bytes().to_vec(),
        }
    }
}

impl TryFrom<pb::ConsensusMessage> for ConsensusMessage {
    type Error = ConversionError;

    fn try_from(m: pb::ConsensusMessage) -> Result<Self> {
        use pb::consensus_message::Message;
        match m
            .message
            .ok_or_else(|| ConversionError::missing("message"))?
        {
            Message::Proposal(p) => Ok(Self::Proposal(Box::new(Proposal::try_from(p)?))),
            Message::Vote(v) => Ok(Self::Vote(Vote::try_from(v)?)),
            Message::Timeout(t) => Ok(Self::Timeout(Timeout::try_from(t)?)),
        }
    }
}

impl From<&ConsensusMessage> for pb::ConsensusMessage {
    fn from(m: &ConsensusMessage) -> Self {
        use pb::consensus_message::Message;
        let message = match m {
            ConsensusMessage::Proposal(p) => Message::Proposal(p.as_ref().into()),
            ConsensusMessage::Vote(v) => Message::Vote(v.into()),
            ConsensusMessage::Timeout(t) => Message::Timeout(t.into()),
        };
        pb::ConsensusMessage {
            message: Some(message),
        }
    }
}

impl ConsensusMessage {
    /// The validator the message claims to be from (its signature, checked
    /// by the receiver, proves it).
    pub fn sender(&self) -> u32 {
        match self {
            Self::Proposal(p) => p.block.header.proposer,
            Self::Vote(v) => v.voter,
            Self::Timeout(t) => t.sender,
        }
    }
}

impl TryFrom<pb::CertifiedBlock> for SyncedBlock {
    type Error = ConversionError;

    fn try_from(c: pb::CertifiedBlock) -> Result<Self> {
        let block = Block::try_from(c.block.ok_or_else(|| ConversionError::missing("block"))?)?;
        let certificate = c
            .certificate
            .map(|q| QuorumCertificate::try_from(q).map_err(|e| e.within("certificate")))
            .transpose()?;
        Ok(SyncedBlock { block, certificate })
    }
}

impl From<&SyncedBlock> for pb::CertifiedBlock {
    fn from(s: &SyncedBlock) -> Self {
        pb::CertifiedBlock {
            block: Some((&s.block).into()),
            certificate: s.certificate.as_ref().map(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatpay_proto::{Output, SecretKey, Transfer, sha256};
    use proptest::prelude::*;
    use prost::Message as _;

    fn key(n: u8) -> SecretKey {
        let mut b = [0u8; 32];
        b[31] = n + 1;
        SecretKey::from_slice(&b).unwrap()
    }

    fn sample_qc(round: u64) -> QuorumCertificate {
        let block_hash = sha256(&round.to_be_bytes());
        let chain = chatpay_proto::ChainBinding::genesis(sha256(b"genesis"));
        let digest = Vote::digest(&chain, &block_hash, round, round);
        QuorumCertificate {
            block_hash,
            round,
            height: round,
            signatures: (0..3)
                .map(|i| chatpay_proto::ValidatorSignature {
                    validator: i,
                    signature: key(i as u8).sign_digest(&digest),
                })
                .collect(),
        }
    }

    fn sample_proposal() -> Proposal {
        let tx = Transfer::new(
            chatpay_proto::Hash([3; 32]),
            key(5).public_key().clone(),
            1,
            1,
            vec![Output {
                recipient: key(6).public_key().clone(),
                amount: 2,
            }],
            vec![],
        )
        .unwrap()
        .sign(&key(5));
        let justify = sample_qc(3);
        let header = BlockHeader {
            genesis_hash: sha256(b"g"),
            height: 4,
            round: 5,
            parent_hash: justify.block_hash,
            proposer: 1,
            timestamp_ms: 9,
            tx_count: 1,
            tx_root: sha256(b"r"),
            state_root: sha256(b"s"),
        };
        let block = Block {
            header,
            transactions: vec![tx],
            justify,
        };
        let tc = TimeoutCertificate {
            round: 4,
            signatures: vec![TimeoutSignature {
                sender: 2,
                high_qc_round: 3,
                signature: key(2).sign(b"t"),
            }],
        };
        Proposal {
            signature: key(1).sign(b"p"),
            block,
            timeout_certificate: Some(tc),
        }
    }

    fn messages() -> Vec<ConsensusMessage> {
        let vote = Vote {
            block_hash: sha256(b"b"),
            round: 7,
            height: 6,
            voter: 3,
            signature: key(3).sign(b"v"),
        };
        let timeout = Timeout {
            round: 8,
            high_qc: sample_qc(6),
            sender: 0,
            signature: key(0).sign(b"t"),
            last_round_tc: None,
        };
        vec![
            ConsensusMessage::Proposal(Box::new(sample_proposal())),
            ConsensusMessage::Vote(vote),
            ConsensusMessage::Timeout(timeout),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in messages() {
            let wire = pb::ConsensusMessage::from(&m);
            let bytes = wire.encode_to_vec();
            let back =
                ConsensusMessage::try_from(pb::ConsensusMessage::decode(bytes.as_slice()).unwrap())
                    .unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn errors_name_the_field() {
        let mut p = pb::Proposal::from(&sample_proposal());
        p.sender = 2;
        assert_eq!(Proposal::try_from(p).unwrap_err().field(), "sender");
        let mut p = pb::Proposal::from(&sample_proposal());
        p.block.as_mut().unwrap().header.as_mut().unwrap().tx_count = 2;
        assert_eq!(
            Proposal::try_from(p).unwrap_err().field(),
            "block.header.tx_count"
        );
        let mut p = pb::Proposal::from(&sample_proposal());
        p.block.as_mut().unwrap().transactions[0].signature.pop();
        assert_eq!(
            Proposal::try_from(p).unwrap_err().field(),
            "block.transactions[0].signature"
        );
        let mut p = pb::Proposal::from(&sample_proposal());
        p.block.as_mut().unwrap().justify = None;
        assert_eq!(Proposal::try_from(p).unwrap_err().field(), "block.justify");
        let mut p = pb::Proposal::from(&sample_proposal());
        p.timeout_certificate.as_mut().unwrap().signatures =
            vec![pb::TimeoutSignature::default(); MAX_VALIDATORS + 1];
        assert_eq!(
            Proposal::try_from(p).unwrap_err().field(),
            "timeout_certificate.signatures"
        );
        let mut v = pb::Vote::from(&Vote {
            block_hash: sha256(b"b"),
            round: 1,
            height: 1,
            voter: 0,
            signature: key(0).sign(b"v"),
        });
        v.block_hash.truncate(31);
        assert_eq!(Vote::try_from(v).unwrap_err().field(), "vote.block_hash");
        let t = pb::Timeout {
            round: 1,
            high_qc: None,
            sender: 0,
            signature: vec![1; 64],
            last_round_tc: None,
        };
        assert_eq!(Timeout::try_from(t).unwrap_err().field(), "timeout.high_qc");
        let empty = pb::ConsensusMessage { message: None };
        assert_eq!(
            ConsensusMessage::try_from(empty).unwrap_err().field(),
            "message"
        );
        let mut b = pb::Block::from(&sample_proposal().block);
        b.transactions = vec![b.transactions[0].clone(); MAX_BLOCK_TXS + 1];
        assert_eq!(
            Block::try_from(b).unwrap_err().field(),
            "block.transactions"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            if let Ok(wire) = pb::ConsensusMessage::decode(bytes.as_slice()) {
                let _ = ConsensusMessage::try_from(wire);
            }
        }

        #[test]
        fn mutated_messages_never_panic(which in 0usize..3, flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
            let mut bytes = pb::ConsensusMessage::from(&messages()[which]).encode_to_vec();
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] ^= b | 1;
            }
            if let Ok(wire) = pb::ConsensusMessage::decode(bytes.as_slice()) {
                let _ = ConsensusMessage::try_from(wire);
            }
        }
    }
}
