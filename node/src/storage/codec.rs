//! Byte encodings of stored values (shared by both stores so they agree).

use super::{HistoryEntry, Result, StoreError, StoredBlock, TxRecord};
use chatpay_proto::{
    Account, BlockHeader, Hash, PublicKey, QuorumCertificate, Receipt, SignedTransfer, TxId, pb,
};
use prost::Message;

fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

pub fn u64_value(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub fn decode_u64(bytes: &[u8], what: &'static str) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| corrupt(what, "not 8 bytes"))?;
    Ok(u64::from_be_bytes(arr))
}

/// Account value: balance (8) ‖ nonce (8) ‖ history count (8) ‖ history hash (32).
pub fn account_value(a: &Account) -> [u8; 56] {
    let mut out = [0u8; 56];
    out[..8].copy_from_slice(&a.balance.to_be_bytes());
    out[8..16].copy_from_slice(&a.nonce.to_be_bytes());
    out[16..24].copy_from_slice(&a.history_count.to_be_bytes());
    out[24..].copy_from_slice(&a.history_hash.0);
    out
}

pub fn decode_account(bytes: &[u8]) -> Result<Account> {
    if bytes.len() != 56 {
        return Err(corrupt(
            "account",
            format!(
                "{} bytes, not 56 (a database of an older layout: reset it)",
                bytes.len()
            ),
        ));
    }
    Ok(Account {
        balance: decode_u64(&bytes[..8], "account balance")?,
        nonce: decode_u64(&bytes[8..16], "account nonce")?,
        history_count: decode_u64(&bytes[16..24], "account history count")?,
        history_hash: Hash::from_slice(&bytes[24..]).expect("32 bytes"),
    })
}

pub fn decode_key(bytes: &[u8]) -> Result<PublicKey> {
    PublicKey::from_slice(bytes).map_err(|e| corrupt("account key", e))
}

pub fn block_value(header: &BlockHeader, tx_ids: impl Iterator<Item = Hash>) -> Vec<u8> {
    pb::BlockRecord {
        header: Some(header.into()),
        tx_ids: tx_ids.map(|id| id.0.to_vec()).collect(),
    }
    .encode_to_vec()
}

pub fn decode_block(bytes: &[u8], certificate: Option<QuorumCertificate>) -> Result<StoredBlock> {
    let record = pb::BlockRecord::decode(bytes).map_err(|e| corrupt("block", e))?;
    let header = record.header.ok_or_else(|| corrupt("block", "no header"))?;
    let header = BlockHeader::try_from(header).map_err(|e| corrupt("block header", e))?;
    let tx_ids = record
        .tx_ids
        .iter()
        .map(|id| Hash::from_slice(id).ok_or_else(|| corrupt("block tx id", "not 32 bytes")))
        .collect::<Result<Vec<_>>>()?;
    Ok(StoredBlock {
        header,
        tx_ids,
        certificate,
    })
}

pub fn certificate_value(qc: &QuorumCertificate) -> Vec<u8> {
    pb::QuorumCertificate::from(qc).encode_to_vec()
}

pub fn decode_certificate(bytes: &[u8]) -> Result<QuorumCertificate> {
    let wire = pb::QuorumCertificate::decode(bytes).map_err(|e| corrupt("certificate", e))?;
    QuorumCertificate::try_from(wire).map_err(|e| corrupt("certificate", e))
}

pub fn tx_value(tx: &SignedTransfer, height: u64, index: u32, receipt: &Receipt) -> Vec<u8> {
    pb::CommittedTransaction {
        transaction: Some(tx.into()),
        tx_id: Vec::new(), // the key already is the id
        height,
        index,
        receipt: Some(receipt.into()),
    }
    .encode_to_vec()
}

pub fn decode_tx(bytes: &[u8]) -> Result<TxRecord> {
    let wire = pb::CommittedTransaction::decode(bytes).map_err(|e| corrupt("transaction", e))?;
    let tx = wire
        .transaction
        .ok_or_else(|| corrupt("transaction", "no transaction"))?;
    let receipt = wire
        .receipt
        .ok_or_else(|| corrupt("transaction", "no receipt"))?;
    Ok(TxRecord {
        transaction: SignedTransfer::try_from(tx).map_err(|e| corrupt("transaction", e))?,
        height: wire.height,
        index: wire.index,
        receipt: Receipt::try_from(receipt).map_err(|e| corrupt("receipt", e))?,
    })
}

/// History key: public key (33) ‖ height (8) ‖ index (4).
pub fn history_key(key: &PublicKey, height: u64, index: u32) -> [u8; 45] {
    let mut out = [0u8; 45];
    out[..33].copy_from_slice(key.as_bytes());
    out[33..41].copy_from_slice(&height.to_be_bytes());
    out[41..].copy_from_slice(&index.to_be_bytes());
    out
}

/// Reference index key: reference (32) ‖ height (8) ‖ index (4).
pub fn reference_key(reference: &Hash, height: u64, index: u32) -> [u8; 44] {
    let mut out = [0u8; 44];
    out[..32].copy_from_slice(&reference.0);
    out[32..40].copy_from_slice(&height.to_be_bytes());
    out[40..].copy_from_slice(&index.to_be_bytes());
    out
}

/// A reference index row: its position and tx id.
pub fn decode_reference(key: &[u8], value: &[u8]) -> Result<((u64, u32), TxId)> {
    let (Ok(key), Some(id)) = (<[u8; 44]>::try_from(key), Hash::from_slice(value)) else {
        return Err(corrupt("reference index", "row of the wrong length"));
    };
    let height = u64::from_be_bytes(key[32..40].try_into().expect("8 bytes"));
    let index = u32::from_be_bytes(key[40..].try_into().expect("4 bytes"));
    Ok(((height, index), id))
}

/// History value: tx id (32) ‖ number (8) ‖ running hash before (32).
pub fn history_value(entry: &HistoryEntry) -> [u8; 72] {
    let mut out = [0u8; 72];
    out[..32].copy_from_slice(&entry.tx_id.0);
    out[32..40].copy_from_slice(&entry.number.to_be_bytes());
    out[40..].copy_from_slice(&entry.hash_before.0);
    out
}

pub fn decode_history(key: &[u8], value: &[u8]) -> Result<HistoryEntry> {
    if key.len() != 45 {
        return Err(corrupt("history key", format!("{} bytes", key.len())));
    }
    if value.len() != 72 {
        return Err(corrupt("history value", format!("{} bytes", value.len())));
    }
    let height = decode_u64(&key[33..41], "history height")?;
    let index = u32::from_be_bytes(key[41..45].try_into().expect("4 bytes"));
    Ok(HistoryEntry {
        position: (height, index),
        tx_id: Hash::from_slice(&value[..32]).expect("32 bytes"),
        number: decode_u64(&value[32..40], "history number")?,
        hash_before: Hash::from_slice(&value[40..]).expect("32 bytes"),
    })
}

/// State value key: tree key (32) ‖ version (8).
pub fn state_value_key(key_hash: &Hash, version: u64) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(&key_hash.0);
    out[32..].copy_from_slice(&version.to_be_bytes());
    out
}

/// A state value key read back: (tree key, version); `None` if it is not one.
pub fn decode_state_value_key(key: &[u8]) -> Option<(Hash, u64)> {
    let key: &[u8; 40] = key.try_into().ok()?;
    let version = u64::from_be_bytes(key[32..].try_into().expect("8 bytes"));
    Some((Hash::from_slice(&key[..32]).expect("32 bytes"), version))
}

/// Stored state value: owner length (1: 0, or 33 for an account) ‖ the
/// account's public key ‖ the tree leaf. The tree hashes only the leaf;
/// the key lets a snapshot carry who owns each account leaf.
pub fn state_value(owner: Option<&[u8; PublicKey::LEN]>, leaf: &[u8]) -> Vec<u8> {
    let owner = owner.map_or(&[][..], |k| &k[..]);
    let mut out = Vec::with_capacity(1 + owner.len() + leaf.len());
    out.push(u8::try_from(owner.len()).expect("a key is 33 bytes"));
    out.extend_from_slice(owner);
    out.extend_from_slice(leaf);
    out
}

/// A stored state value read back: (owner, leaf). The owner's key is not
/// parsed (a snapshot serves it as bytes).
pub fn decode_state_value(bytes: &[u8]) -> Result<(Option<[u8; PublicKey::LEN]>, &[u8])> {
    let (&len, rest) = bytes
        .split_first()
        .ok_or_else(|| corrupt("state value", "empty"))?;
    let (owner, leaf) = rest
        .split_at_checked(usize::from(len))
        .ok_or_else(|| corrupt("state value", "shorter than its owner"))?;
    let owner = match len {
        0 => None,
        _ => Some(
            owner
                .try_into()
                .map_err(|_| corrupt("state value", "an owner of another length"))?,
        ),
    };
    Ok((owner, leaf))
}
