//! Payment requests a chat app posts as a message:
//! `chatpay:<address>?amount=<decimal>&memo=<text>&label=<text>&ref=<hex>&exp=<unix s>&net=<hex>`
//! (the shape of BIP21 and Solana Pay links; docs/wallet.md, "Payment
//! links"). `ref` is the request's 32-byte payment reference (the app that
//! made the request finds the payment by it), `exp` when it expires, `net`
//! the first 16 hex digits of the network's genesis hash. Unknown
//! parameters are ignored unless they start with `req-`, which must be
//! understood.

use crate::{ChainInfo, WalletError};
use chatpay_proto::{Address, Hash, MAX_MEMO_BYTES, PaymentReference};

/// Hex digits of the genesis hash a link names its network by.
pub const NETWORK_PREFIX_HEX: usize = 16;

/// How long a request stays payable unless told otherwise.
pub const DEFAULT_REQUEST_TTL_SECS: u64 = 24 * 60 * 60;

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
    /// The request's payment reference: the payment carries it, and the
    /// requester finds the payment by it (`FindPayment`).
    pub reference: Option<PaymentReference>,
    /// When the request expires (seconds since the Unix epoch): it is not
    /// paid after, and the payment carries it as its expiry.
    pub expires_at: Option<u64>,
    /// The network it is for: a prefix of its genesis hash (hex).
    pub network: Option<String>,
}

/// Every byte but RFC 3986's unreserved characters (ALPHA, DIGIT, "-",
/// ".", "_", "~") is percent-encoded in a link's values.
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl PaymentRequest {
    /// A new request to `address` on `chain`, with a fresh random reference,
    /// expiring `ttl_secs` from now.
    pub fn new(address: Address, chain: &ChainInfo, ttl_secs: u64) -> Self {
        let mut reference = [0u8; 32];
        getrandom::fill(&mut reference).expect("the operating system provides randomness");
        Self {
            address,
            amount: None,
            memo: None,
            label: None,
            reference: Some(Hash(reference)),
            expires_at: Some(unix_now_secs().saturating_add(ttl_secs)),
            network: Some(chain.genesis_hash[..NETWORK_PREFIX_HEX].to_owned()),
        }
    }

    /// Refuses a request that expired, by the clock `now_secs`.
    pub fn check_not_expired(&self, now_secs: u64) -> Result<(), WalletError> {
        match self.expires_at {
            Some(at) if now_secs > at => Err(WalletError::BadRequest(format!(
                "this payment request expired {} ago (at {at} s since the Unix epoch); \
                 ask for a new link",
                duration_text(now_secs - at)
            ))),
            _ => Ok(()),
        }
    }

    /// The payment's expiry in ms: the request's, if it has one.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.expires_at.map(|s| s.saturating_mul(1000))
    }
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
            reference: None,
            expires_at: None,
            network: None,
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
                "ref" => request.reference = Some(parse_reference(&value)?),
                "exp" => {
                    let at = value.parse::<u64>().map_err(|_| {
                        bad(format!(
                            "exp must be seconds since the Unix epoch, got {value:?}"
                        ))
                    })?;
                    request.expires_at = Some(at);
                }
                "net" => request.network = Some(check_network(&value, chain)?),
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
        let reference = self.reference.map(|r| r.to_hex());
        let expires = self.expires_at.map(|e| e.to_string());
        let query = [
            ("amount", amount.as_deref()),
            ("memo", self.memo.as_deref()),
            ("label", self.label.as_deref()),
            ("ref", reference.as_deref()),
            ("exp", expires.as_deref()),
            ("net", self.network.as_deref()),
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

/// Seconds since the Unix epoch by this machine's clock.
pub fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn duration_text(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} days", s / 86_400),
    }
}

fn parse_reference(value: &str) -> Result<PaymentReference, WalletError> {
    let bytes = hex::decode(value).ok().filter(|b| b.len() == 32);
    bytes.and_then(|b| Hash::from_slice(&b)).ok_or_else(|| {
        WalletError::BadRequest(format!(
            "ref must be 64 hex digits (a 32-byte payment reference), got {value:?}"
        ))
    })
}

/// A link's `net`: 8 to 64 lowercase hex digits that must start this
/// wallet's network's genesis hash.
fn check_network(value: &str, chain: &ChainInfo) -> Result<String, WalletError> {
    let hex_digits = value
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !(8..=64).contains(&value.len()) || !hex_digits {
        return Err(WalletError::BadRequest(format!(
            "net must be 8 to 64 lowercase hex digits of a genesis hash, got {value:?}"
        )));
    }
    if !chain.genesis_hash.starts_with(value) {
        return Err(WalletError::BadRequest(format!(
            "this link is for another network (genesis {value}…); this wallet is on {} \
             (genesis {}…): paying it here would pay on the wrong network",
            chain.chain_id,
            &chain.genesis_hash[..NETWORK_PREFIX_HEX]
        )));
    }
    Ok(value.to_owned())
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
            reference: Some(Hash([0xab; 32])),
            expires_at: Some(1_800_000_000),
            network: Some("00".repeat(8)),
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
            reference: None,
            expires_at: None,
            network: None,
            ..r
        };
        assert_eq!(PaymentRequest::parse(&bare.to_link(&c), &c).unwrap(), bare);
    }

    #[test]
    fn expired_requests_are_refused_and_new_ones_are_fresh() {
        let c = chain();
        let address = c.address(SecretKey::generate().public_key());
        let a = PaymentRequest::new(address.clone(), &c, 60);
        let b = PaymentRequest::new(address, &c, 60);
        assert_ne!(
            a.reference, b.reference,
            "each request gets its own reference"
        );
        assert_eq!(a.network.as_deref(), Some(&c.genesis_hash[..16]));
        let at = a.expires_at.unwrap();
        a.check_not_expired(at).unwrap();
        let e = a.check_not_expired(at + 3_600).unwrap_err().to_string();
        assert!(e.contains("expired 60 min ago"), "{e}");
        assert_eq!(PaymentRequest::parse(&a.to_link(&c), &c).unwrap(), a);
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
        assert!(err(format!("chatpay:{addr}?ref=abcd")).contains("64 hex digits"));
        assert!(err(format!("chatpay:{addr}?exp=soon")).contains("exp must be"));
        assert!(err(format!("chatpay:{addr}?net=1234567890abcdef")).contains("another network"));
        assert!(err(format!("chatpay:{addr}?net=00")).contains("8 to 64"));
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
                reference: Some(Hash([3; 32])),
                expires_at: Some(1_800_000_000),
                network: None,
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
