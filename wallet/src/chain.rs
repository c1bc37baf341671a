//! The chain a wallet is on, pinned the first time it talks to validators.

use crate::WalletError;
use chatpay_proto::{Address, Hash, PublicKey, format_amount, parse_amount, pb};
use serde::{Deserialize, Serialize};

/// What a wallet trusts about its chain: the validator set whose
/// certificates it accepts, and how amounts and addresses look.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChainInfo {
    /// Chain id (signed into every transfer).
    pub chain_id: String,
    /// Genesis hash, hex.
    pub genesis_hash: String,
    /// Address prefix.
    pub hrp: String,
    /// Display decimals.
    pub decimals: u8,
    /// Display symbol.
    pub symbol: String,
    /// Minimum fee per transfer, base units.
    pub fee_per_transfer: u64,
    /// Validator public keys, hex, in index order.
    pub validators: Vec<String>,
}

impl ChainInfo {
    /// From a validator's status (trusted only as far as the caller checks).
    pub fn from_status(s: &pb::GetStatusResponse) -> Result<Self, WalletError> {
        let decimals = u8::try_from(s.decimals)
            .map_err(|_| WalletError::Unverified(format!("decimals {}", s.decimals)))?;
        let validators = s
            .validators
            .iter()
            .map(|v| {
                PublicKey::from_slice(&v.public_key)
                    .map(|k| hex::encode(k.as_bytes()))
                    .map_err(|e| WalletError::Unverified(format!("validator key: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if validators.is_empty() || s.genesis_hash.len() != 32 {
            return Err(WalletError::Unverified(
                "status without validators or genesis hash".into(),
            ));
        }
        Ok(Self {
            chain_id: s.chain_id.clone(),
            genesis_hash: hex::encode(&s.genesis_hash),
            hrp: s.hrp.clone(),
            decimals,
            symbol: s.symbol.clone(),
            fee_per_transfer: s.fee_per_transfer,
            validators,
        })
    }

    /// The validator keys.
    pub fn validator_keys(&self) -> Result<Vec<PublicKey>, WalletError> {
        self.validators
            .iter()
            .map(|v| {
                hex::decode(v)
                    .ok()
                    .and_then(|b| PublicKey::from_slice(&b).ok())
                    .ok_or_else(|| WalletError::Corrupt("validator key in chain.json".into()))
            })
            .collect()
    }

    /// The genesis hash.
    pub fn genesis(&self) -> Result<Hash, WalletError> {
        hex::decode(&self.genesis_hash)
            .ok()
            .and_then(|b| Hash::from_slice(&b))
            .ok_or_else(|| WalletError::Corrupt("genesis hash in chain.json".into()))
    }

    /// `units` as a person reads it: "1.5 CPY".
    pub fn format(&self, units: u64) -> String {
        format!("{} {}", format_amount(units, self.decimals), self.symbol)
    }

    /// A decimal amount a person typed ("1.5") in base units.
    pub fn parse_amount(&self, text: &str) -> Result<u64, WalletError> {
        let units = parse_amount(text, self.decimals).map_err(|e| WalletError::BadAmount {
            input: text.into(),
            reason: e.to_string(),
        })?;
        if units == 0 {
            return Err(WalletError::BadAmount {
                input: text.into(),
                reason: "must be more than zero".into(),
            });
        }
        Ok(units)
    }

    /// An address a person typed or pasted.
    pub fn parse_address(&self, text: &str) -> Result<Address, WalletError> {
        Address::parse(text.trim(), &self.hrp).map_err(|e| WalletError::BadAddress {
            input: text.into(),
            reason: e.to_string(),
        })
    }

    /// The address of `key`.
    pub fn address(&self, key: &PublicKey) -> Address {
        Address::new(&self.hrp, key.clone()).expect("the pinned prefix is valid")
    }
}
