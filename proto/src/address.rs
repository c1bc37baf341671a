//! Addresses: bech32m over the 33-byte compressed public key.
//!
//! `address = bech32m(hrp, compressed_sec1_public_key)`, lowercase, with the
//! human-readable part (hrp) fixed by genesis (default `cp`). Because the
//! whole public key is in the address, anyone can verify signatures of, or
//! encrypt to, an account from its address alone.

use crate::crypto::{PublicKey, SignatureError};
use bech32::primitives::decode::{CheckedHrpstringError, ChecksumError, UncheckedHrpstring};
use bech32::{Bech32, Bech32m, Hrp};
use std::fmt;

/// Human-readable part used when genesis does not name one.
pub const DEFAULT_HRP: &str = "cp";

/// Longest hrp chatpay accepts.
const MAX_HRP_LEN: usize = 16;

/// Why a string is not a valid address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not even the shape of a bech32 string (separator, characters, case).
    #[error("not a bech32m string: {reason}")]
    Malformed {
        /// What the bech32 parser objected to.
        reason: String,
    },
    /// The checksum does not match (a typo, or a truncated address).
    #[error("address checksum is wrong (typo or truncated address)")]
    BadChecksum,
    /// A valid bech32 (BIP-173) checksum where bech32m (BIP-350) is required.
    #[error("address uses the bech32 checksum; chatpay addresses use bech32m")]
    WrongVariant,
    /// The human-readable part belongs to another network.
    #[error("address is for network '{found}', expected '{expected}'")]
    WrongHrp {
        /// The hrp this chain uses.
        expected: String,
        /// The hrp found in the address.
        found: String,
    },
    /// The payload is not 33 bytes.
    #[error("address payload must be 33 bytes, got {len}")]
    WrongLength {
        /// Payload length received.
        len: usize,
    },
    /// The payload is 33 bytes but not a point on secp256k1.
    #[error("address does not encode a valid secp256k1 public key")]
    InvalidPoint,
    /// Decodes, but is not the one canonical encoding of its key (padding bits).
    #[error("address is not in canonical form")]
    NonCanonical,
    /// An hrp that chatpay does not allow.
    #[error("invalid hrp '{hrp}': use 1 to {MAX_HRP_LEN} lowercase ASCII letters or digits")]
    InvalidHrp {
        /// The refused hrp.
        hrp: String,
    },
}

impl AddressError {
    /// Stable machine-readable name of the error (used in test vectors and APIs).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::BadChecksum => "bad_checksum",
            Self::WrongVariant => "wrong_variant",
            Self::WrongHrp { .. } => "wrong_hrp",
            Self::WrongLength { .. } => "wrong_length",
            Self::InvalidPoint => "invalid_point",
            Self::NonCanonical => "non_canonical",
            Self::InvalidHrp { .. } => "invalid_hrp",
        }
    }
}

/// Checks that `hrp` is usable as a chain's human-readable part.
pub fn validate_hrp(hrp: &str) -> Result<(), AddressError> {
    let ok = !hrp.is_empty()
        && hrp.len() <= MAX_HRP_LEN
        && hrp
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(AddressError::InvalidHrp {
            hrp: hrp.to_owned(),
        })
    }
}

/// An account address: an hrp and a public key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    hrp: String,
    key: PublicKey,
}

impl Address {
    /// The address of `key` on a chain with human-readable part `hrp`.
    pub fn new(hrp: &str, key: PublicKey) -> Result<Self, AddressError> {
        validate_hrp(hrp)?;
        Ok(Self {
            hrp: hrp.to_owned(),
            key,
        })
    }

    /// Parses `s`, which must be a lowercase (or all-uppercase) bech32m string
    /// with hrp `expected_hrp` over a valid 33-byte compressed public key.
    pub fn parse(s: &str, expected_hrp: &str) -> Result<Self, AddressError> {
        let unchecked = UncheckedHrpstring::new(s).map_err(|e| AddressError::Malformed {
            reason: CheckedHrpstringError::from(e).to_string(),
        })?;
        let found = unchecked.hrp().to_lowercase();
        if found != expected_hrp {
            return Err(AddressError::WrongHrp {
                expected: expected_hrp.to_owned(),
                found,
            });
        }
        match unchecked.validate_checksum::<Bech32m>() {
            Ok(()) => {}
            Err(ChecksumError::InvalidResidue(_)) => {
                return Err(if unchecked.has_valid_checksum::<Bech32>() {
                    AddressError::WrongVariant
                } else {
                    AddressError::BadChecksum
                });
            }
            Err(e) => {
                return Err(AddressError::Malformed {
                    reason: e.to_string(),
                });
            }
        }
        let checked = unchecked.remove_checksum::<Bech32m>();
        let payload: Vec<u8> = checked.byte_iter().collect();
        if payload.len() != PublicKey::LEN {
            return Err(AddressError::WrongLength { len: payload.len() });
        }
        let key = PublicKey::from_slice(&payload).map_err(|e| match e {
            SignatureError::PublicKeyLength { len } => AddressError::WrongLength { len },
            _ => AddressError::InvalidPoint,
        })?;
        let address = Self::new(&found, key)?;
        // Non-zero padding bits would give a second spelling of the same key.
        if address.to_string() != s.to_ascii_lowercase() {
            return Err(AddressError::NonCanonical);
        }
        Ok(address)
    }

    /// The human-readable part.
    pub fn hrp(&self) -> &str {
        &self.hrp
    }

    /// The public key this address names.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// Consumes the address, returning its public key.
    pub fn into_public_key(self) -> PublicKey {
        self.key
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse(&self.hrp).map_err(|_| fmt::Error)?;
        bech32::encode_lower_to_fmt::<Bech32m, _>(f, hrp, self.key.as_bytes())
            .map_err(|_| fmt::Error)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn addr() -> Address {
        let mut sk = [0u8; 32];
        sk[31] = 1;
        Address::new(
            "cp",
            SecretKey::from_slice(&sk).unwrap().public_key().clone(),
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_uppercase() {
        let a = addr();
        let s = a.to_string();
        assert!(s.starts_with("cp1"));
        assert_eq!(Address::parse(&s, "cp").unwrap(), a);
        assert_eq!(Address::parse(&s.to_uppercase(), "cp").unwrap(), a);
    }

    #[test]
    fn distinct_errors() {
        let s = addr().to_string();
        // Flip one data character.
        let mut typo: Vec<char> = s.chars().collect();
        let i = 10;
        typo[i] = if typo[i] == 'q' { 'p' } else { 'q' };
        let typo: String = typo.into_iter().collect();
        assert_eq!(Address::parse(&typo, "cp"), Err(AddressError::BadChecksum));
        assert!(matches!(
            Address::parse(&s, "tcp"),
            Err(AddressError::WrongHrp { .. })
        ));
        let hrp = Hrp::parse("cp").unwrap();
        let short = bech32::encode::<Bech32m>(hrp, &[2u8; 32]).unwrap();
        assert_eq!(
            Address::parse(&short, "cp"),
            Err(AddressError::WrongLength { len: 32 })
        );
        let old = bech32::encode::<Bech32>(hrp, addr().public_key().as_bytes()).unwrap();
        assert_eq!(Address::parse(&old, "cp"), Err(AddressError::WrongVariant));
        // x = 5 has no point on secp256k1 (5^3 + 7 = 132 is a non-residue mod p).
        let mut bad = [0u8; 33];
        bad[0] = 2;
        bad[32] = 5;
        let off_curve = bech32::encode::<Bech32m>(hrp, &bad).unwrap();
        assert_eq!(
            Address::parse(&off_curve, "cp"),
            Err(AddressError::InvalidPoint)
        );
        assert!(matches!(
            Address::parse("cp1", "cp"),
            Err(AddressError::Malformed { .. })
        ));
        assert!(matches!(
            Address::parse("", "cp"),
            Err(AddressError::Malformed { .. })
        ));
        let mixed = format!("{}{}", &s[..5], s[5..].to_uppercase());
        assert!(matches!(
            Address::parse(&mixed, "cp"),
            Err(AddressError::Malformed { .. })
        ));
    }

    #[test]
    fn hrp_rules() {
        assert!(validate_hrp("cp").is_ok());
        assert!(validate_hrp("").is_err());
        assert!(validate_hrp("CP").is_err());
        assert!(validate_hrp("a-b").is_err());
    }
}
