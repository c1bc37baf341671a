//! Payment requests a chat app posts as a message:
//! `chatpay:<address>?amount=<decimal>&memo=<text>&label=<text>`
//! (the shape of BIP21 and Solana Pay links). Unknown parameters are
//! ignored unless they start with `req-`, which must be understood.

use crate::{ChainInfo, WalletError};
use chatpay_proto::{Address, MAX_MEMO_BYTES};

/// URI scheme of payment links.
pub const SCHEME: &str = "chatpay";

/// A request for money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// Who to pay.
    pub address: Address,
    /// How much, in base units (absent: the payer chooses).
    pub amount: Option<u64>,
    /// Memo to put in the transfer (what it is for).
    pub memo: Option<String>,
    /// Who is asking (shown to the payer, not sent on chain).
    pub label: Option<String>,
}

/// Every byte but RFC 3986's unreserved characters (ALPHA, DIGIT, "-",
/// ".", "_", "~") is percent-encoded in a link's values.
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl PaymentRequest {
    /// Parses a link; every part is checked (address checksum and prefix,
    /// amount decimals, memo size).
    pub fn parse(link: &str, chain: &ChainInfo) -> Result<Self, WalletError> {
        let bad = |m: String| WalletError::BadRequest(m);
        let url = url::Url::parse(link.trim()).map_err(|e| bad(format!("not a link: {e}")))?;
        if url.scheme() != SCHEME {
            return Err(bad(format!(
                "scheme must be {SCHEME}:, got {}:",
                url.scheme()
            )));
        }
        let address = chain.parse_address(url.path())?;
        let mut request = Self {
            address,
            amount: None,
            memo: None,
            label: None,
        };
        let mut seen = std::collections::HashSet::new();
        for (key, value) in url.query_pairs() {
            if !seen.insert(key.to_string()) {
                return Err(bad(format!("parameter {key:?} appears twice")));
            }
            match key.as_ref() {
                "amount" => request.amount = Some(chain.parse_amount(&value)?),
                "memo" => {
                    if value.len() > MAX_MEMO_BYTES {
                        return Err(bad(format!(
                            "memo is {} bytes, at most {MAX_MEMO_BYTES}",
                            value.len()
                        )));
                    }
                    request.memo = Some(value.into_owned());
                }
                "label" => request.label = Some(value.into_owned()),
                other if other.starts_with("req-") => {
                    return Err(bad(format!(
                        "required parameter {other:?} is not supported"
                    )));
                }
                _ => {}
            }
        }
        Ok(request)
    }

    /// The link text. Values are percent-encoded as RFC 3986 says (a
    /// space is `%20`, not the `+` of HTML forms, which BIP21 readers do
    /// not all take for a space); everything but unreserved characters is
    /// encoded.
    pub fn to_link(&self, chain: &ChainInfo) -> String {
        let amount = self
            .amount
            .map(|a| chatpay_proto::format_amount(a, chain.decimals));
        let query = [
            ("amount", amount.as_deref()),
            ("memo", self.memo.as_deref()),
            ("label", self.label.as_deref()),
        ]
        .into_iter()
        .filter_map(|(key, value)| {
            let value = percent_encoding::utf8_percent_encode(value?, NOT_UNRESERVED);
            Some(format!("{key}={value}"))
        })
        .collect::<Vec<_>>()
        .join("&");
        if query.is_empty() {
            format!("{SCHEME}:{}", self.address)
        } else {
            format!("{SCHEME}:{}?{query}", self.address)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatpay_proto::SecretKey;

    pub(super) fn chain() -> ChainInfo {
        ChainInfo {
            chain_id: "c".into(),
            genesis_hash: "00".repeat(32),
            hrp: "cp".into(),
            decimals: 6,
            symbol: "CPY".into(),
            fee_per_transfer: 1,
            validators: vec![],
        }
    }

    #[test]
    fn links_round_trip_with_escaping() {
        let c = chain();
        let r = PaymentRequest {
            address: c.address(SecretKey::generate().public_key()),
            amount: Some(2_500_000),
            memo: Some("pizza & drinks = 50% off?".into()),
            label: Some("Alice".into()),
        };
        let link = r.to_link(&c);
        assert!(link.starts_with("chatpay:cp1"), "{link}");
        assert!(link.contains("amount=2.5"), "{link}");
        assert!(
            link.contains("memo=pizza%20%26%20drinks%20%3D%2050%25%20off%3F"),
            "{link}"
        );
        // A link a form encoder wrote (`+` for a space) still reads.
        let plus = link.replace("%20", "+");
        assert_eq!(PaymentRequest::parse(&plus, &c).unwrap(), r);
        assert_eq!(PaymentRequest::parse(&link, &c).unwrap(), r);
        let bare = PaymentRequest {
            amount: None,
            memo: None,
            label: None,
            ..r
        };
        assert_eq!(PaymentRequest::parse(&bare.to_link(&c), &c).unwrap(), bare);
    }

    #[test]
    fn bad_links_say_what_is_wrong() {
        let c = chain();
        let addr = c.address(SecretKey::generate().public_key()).to_string();
        let err = |link: String| PaymentRequest::parse(&link, &c).unwrap_err().to_string();
        assert!(err(format!("bitcoin:{addr}")).contains("scheme"));
        assert!(err(format!("chatpay:{addr}?amount=1.0000001")).contains("amount"));
        assert!(err(format!("chatpay:{addr}?amount=0")).contains("more than zero"));
        assert!(err(format!("chatpay:{addr}?amount=1&amount=2")).contains("twice"));
        assert!(err(format!("chatpay:{addr}?req-expiry=5")).contains("req-expiry"));
        let mut typo = addr.clone();
        typo.replace_range(10..11, if &addr[10..11] == "q" { "p" } else { "q" });
        assert!(err(format!("chatpay:{typo}")).contains("invalid address"));
        let long = "x".repeat(MAX_MEMO_BYTES + 1);
        assert!(err(format!("chatpay:{addr}?memo={long}")).contains("memo"));
        // Unknown optional parameters are ignored.
        assert!(PaymentRequest::parse(&format!("chatpay:{addr}?foo=bar"), &c).is_ok());
    }
}

#[cfg(test)]
mod fuzz {
    use super::tests::chain;
    use super::*;
    use chatpay_proto::SecretKey;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

        /// Any text: an error or a request, never a panic.
        #[test]
        fn any_text_parses_or_is_refused(s in "\\PC{0,200}") {
            let _ = PaymentRequest::parse(&s, &chain());
        }

        /// Corrupted valid links: whatever parses formats back to itself.
        #[test]
        fn corrupted_links_round_trip_or_are_refused(
            amount in 1u64..u64::MAX / 2,
            memo in "\\PC{0,40}",
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>()), 0..4),
        ) {
            let c = chain();
            let r = PaymentRequest {
                address: c.address(SecretKey::from_slice(&[7; 32]).unwrap().public_key()),
                amount: Some(amount),
                memo: Some(memo),
                label: None,
            };
            let mut link: Vec<char> = r.to_link(&c).chars().collect();
            for (i, ch) in edits {
                let i = i.index(link.len());
                link[i] = ch;
            }
            let link: String = link.into_iter().collect();
            if let Ok(parsed) = PaymentRequest::parse(&link, &c) {
                prop_assert_eq!(PaymentRequest::parse(&parsed.to_link(&c), &c).unwrap(), parsed);
            }
        }
    }
}
