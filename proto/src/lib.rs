//! chatpay wire protocol and canonical signing.
//!
//! This crate is what every other part of chatpay, and every client in any
//! language, agrees on:
//!
//! ```text
//!   .proto (package chatpay.v1) ──prost──▶ pb::*  (wire types, untrusted)
//!                                            │ TryFrom, names the bad field
//!                                            ▼
//!   domain types: Transfer, SignedTransfer, Address, PublicKey, Signature,
//!                 BlockHeader, QuorumCertificate, Receipt, ...
//!                                            │ signing_bytes() (docs/protocol.md)
//!                                            ▼
//!   tx id = SHA-256(signing bytes); signature = ECDSA/secp256k1 over it, low S
//! ```
//!
//! Invariants:
//! - A domain value always satisfies the structural limits of the protocol
//!   (lengths, counts, valid curve points); only conversions that check them
//!   construct one from wire data.
//! - Signing bytes are a fixed, domain-tagged, length-prefixed layout, never a
//!   protobuf re-encoding, so two different transfers never share them.
//! - Decoding hostile input returns an error; it never panics.

mod address;
mod amount;
mod convert;
mod crypto;
mod finality;
mod hash;
mod ledger;
mod merkle;
pub mod state;
mod transfer;

/// Generated protobuf and gRPC types for package `chatpay.v1`.
///
/// Values of these types come from the network and are untrusted; convert them
/// into domain types with `TryFrom` before acting on them.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("chatpay.v1");

    /// Encoded `FileDescriptorSet` of `chatpay.v1`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("chatpay_v1_descriptor");
}

pub use address::{Address, AddressError, DEFAULT_HRP, validate_hrp};
pub use amount::{AmountError, DEFAULT_DECIMALS, MAX_DECIMALS, format_amount, parse_amount};
pub use convert::{ConversionError, hash_field, signature_field};
pub use crypto::{PublicKey, SecretKey, Signature, SignatureError};
pub use finality::{
    AccountProof, AccountProofError, CommitProof, FinalityError, FinalityProof, MAX_COMMIT_PATH,
};
pub use hash::{Hash, TxId, sha256};
pub use ledger::{
    Account, BlockHeader, CertificateError, ChainBinding, QuorumCertificate, Receipt, ReceiptCode,
    ValidatorSignature, max_faulty, proposal_signing_bytes, quorum, timeout_certificate_digest,
    timeout_signing_bytes, vote_signing_bytes,
};
pub use merkle::{MerkleError, MerkleProof, merkle_leaf, merkle_root};
pub use transfer::{
    ENCRYPTED_MEMO_SCHEME, MAX_CHAIN_ID_BYTES, MAX_ENCRYPTED_MEMO_BYTES, MAX_ENCRYPTED_MEMO_TEXT,
    MAX_MEMO_BYTES, MAX_OUTPUTS, MEMO_DOMAIN_TAG, MEMO_HEADER_BYTES, MEMO_PADDED_SIZES,
    MEMO_SLOT_BYTES, MEMO_TAG_BYTES, Memo, Output, PaymentReference, SignedTransfer,
    TRANSFER_DOMAIN_TAG, TRANSFER_VERSION, Transfer, TransferError, memo_associated_data,
    memo_readers, validate_chain_id,
};
