//! The wallet: accounts on one chain, paying, checking finality, and
//! following incoming payments.

use crate::client::{NodeClient, RawClient, is_unavailable};
use crate::home::{PendingTx, WalletHome};
use crate::incoming::{Cursor, IncomingPayment};
mod paid;
pub use paid::RequestPayment;

use crate::memo::{self, MemoSecrets};
use crate::verify;
use crate::{ChainInfo, WalletError};
use chatpay_proto::state::Direction;
use chatpay_proto::{
    Address, FinalityProof, Memo, Output, PaymentReference, PublicKey, ReceiptCode, SecretKey,
    SignedTransfer, Transfer, TxId, max_faulty, memo_associated_data, memo_readers, pb,
};
use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

/// How often a wallet asks whether a transaction is final.
const POLL: Duration = Duration::from_millis(200);
/// Blocks between two saves of the highest proven height: a restarted
/// wallet refuses state more than this (and `MAX_LAG`) below what it saw.
const SAVE_PROVEN_EVERY: u64 = 64;
/// How long `account` waits for a chain that cannot show a committed
/// block yet (one just started).
const ACCOUNT_PATIENCE: Duration = Duration::from_secs(10);
/// A transaction not seen final or pending this long is submitted again.
const RESUBMIT_AFTER: Duration = Duration::from_secs(5);

/// An account ready to sign.
#[derive(Clone)]
pub struct Signer {
    /// Account name.
    pub name: String,
    /// Its address.
    pub address: Address,
    key: SecretKey,
}

impl Signer {
    /// The account's secret key (to open its memos with
    /// [`crate::memo::decrypt`]; never shown or sent).
    pub fn key(&self) -> &SecretKey {
        &self.key
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}, {})", self.name, self.address)
    }
}

/// Committed state of an account, verified against the validator set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountState {
    /// Balance, base units.
    pub balance: u64,
    /// Last committed nonce.
    pub nonce: u64,
    /// Number of entries in the account's history.
    pub history_count: u64,
    /// Running hash of the history (docs/protocol.md, "Account history").
    pub history_hash: chatpay_proto::Hash,
    /// The committed height it is proven at.
    pub height: u64,
}

/// A final payment, verified against the validator set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The transaction.
    pub tx_id: TxId,
    /// Block height.
    pub height: u64,
    /// Outcome (`Success`, or why it took no effect).
    pub receipt: ReceiptCode,
    /// Fee, base units.
    pub fee: u64,
    /// Total paid to recipients, base units.
    pub amount: u64,
}

impl Payment {
    /// Whether the money moved.
    pub fn is_success(&self) -> bool {
        self.receipt == ReceiptCode::Success
    }
}

/// A page of an account's history, verified against the account's proven
/// history hash: no entry changed, left out or added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The height the history is verified at.
    pub height: u64,
    /// How many entries the account's history has in all.
    pub total: u64,
    /// The newest entries, newest first.
    pub entries: Vec<HistoryEntry>,
}

/// One line of an account's history: a transfer that moved its balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The transaction.
    pub tx_id: TxId,
    /// Where it is.
    pub cursor: Cursor,
    /// Sender.
    pub from: Address,
    /// Recipients other than this account, each once, in output order
    /// (for a payment received, the others paid by the same transfer, as
    /// in a split).
    pub to: Vec<Address>,
    /// Received: the amount to this account. Sent: what its balance went
    /// down by (the amounts to others and the fee).
    pub amount: u64,
    /// Whether this account sent it.
    pub outgoing: bool,
    /// Its number in the account's history, from 1.
    pub number: u64,
    /// Memo (lossy UTF-8): a public memo, an encrypted one opened with a
    /// key given to [`Wallet::read_memos_of`], or `(encrypted memo)`.
    pub memo: String,
    /// Whether the memo was sent encrypted (only its payer and payees can
    /// read it).
    pub memo_encrypted: bool,
    /// Outcome.
    pub receipt: ReceiptCode,
}

/// What a payment carries besides its recipients and amounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentDetails {
    /// The memo text (empty: none). Encrypted for the payer and the payees
    /// unless `public_memo` (docs/wallet.md, "Memos").
    pub memo: String,
    /// Send the memo in clear, readable by everyone, for ever.
    pub public_memo: bool,
    /// The fee; `None` pays the chain's minimum.
    pub fee: Option<u64>,
    /// The reference of the payment request it pays.
    pub reference: Option<PaymentReference>,
    /// The last block timestamp (ms since the Unix epoch) it may be
    /// included at; `None` never expires.
    pub expires_at_ms: Option<u64>,
}

impl PaymentDetails {
    /// An encrypted memo and nothing else.
    pub fn memo(memo: &str) -> Self {
        Self {
            memo: memo.into(),
            ..Self::default()
        }
    }
}

/// A wallet connected to a chain.
pub struct Wallet {
    home: WalletHome,
    chain: ChainInfo,
    validators: Vec<PublicKey>,
    genesis: chatpay_proto::Hash,
    client: Arc<NodeClient>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    finality_timeout: Duration,
    /// The proven height last saved in the home.
    saved_height: std::sync::atomic::AtomicU64,
    /// Keys that open encrypted memos, by account ([`Wallet::read_memos_of`]).
    memo_keys: Mutex<HashMap<PublicKey, SecretKey>>,
}

fn node_error(s: &Status) -> WalletError {
    WalletError::Node(format!("{:?}: {}", s.code(), s.message()))
}

/// The chain `nodes` are on, as they report it (genesis hash, validator
/// set); every one that answers must report the same. Nothing is pinned
/// or checked against a pinned chain: this is what `chatpay repin` shows
/// before it pins.
///
/// # Errors
/// When none answers, or two report different chains.
pub async fn network_chain(nodes: &[String]) -> Result<ChainInfo, WalletError> {
    let client = NodeClient::new(nodes)?;
    let mut chain: Option<(String, ChainInfo)> = None;
    let mut last = String::new();
    for s in client.statuses().await {
        match &s.status {
            Ok(status) => {
                let info = ChainInfo::from_status(status)?;
                match &chain {
                    None => chain = Some((s.url.clone(), info)),
                    Some((first, c))
                        if c.genesis_hash != info.genesis_hash
                            || c.validators != info.validators =>
                    {
                        return Err(WalletError::WrongChain {
                            node: s.url.clone(),
                            expected: format!(
                                "{} ({}, as {first} says)",
                                c.chain_id,
                                &c.genesis_hash[..16]
                            ),
                            found: format!("{} ({})", info.chain_id, &info.genesis_hash[..16]),
                        });
                    }
                    Some(_) => {}
                }
            }
            Err(e) => last = format!("{}: {e}", s.url),
        }
    }
    chain
        .map(|(_, c)| c)
        .ok_or_else(|| WalletError::Unreachable {
            tried: client.urls(),
            last,
        })
}

impl Wallet {
    /// Connects to `nodes`. The first time, the chain (genesis hash and
    /// validator set) is pinned from the validators, which must all agree;
    /// afterwards every validator must be on the pinned chain.
    pub async fn connect(home: WalletHome, nodes: &[String]) -> Result<Self, WalletError> {
        let client = NodeClient::new(nodes)?;
        let statuses = client.statuses().await;
        let mut reachable = Vec::new();
        let mut last = String::new();
        for s in &statuses {
            match &s.status {
                Ok(status) => reachable.push((s.url.clone(), ChainInfo::from_status(status)?)),
                Err(e) => last = format!("{}: {e}", s.url),
            }
        }
        let pinned = home.chain()?;
        let Some((_, first)) = reachable.first() else {
            return Err(WalletError::Unreachable {
                tried: client.urls(),
                last,
            });
        };
        let chain = pinned.unwrap_or_else(|| first.clone());
        for (url, info) in &reachable {
            if info.genesis_hash != chain.genesis_hash || info.validators != chain.validators {
                return Err(WalletError::WrongChain {
                    node: url.clone(),
                    expected: format!("{} ({})", chain.chain_id, &chain.genesis_hash[..16]),
                    found: format!("{} ({})", info.chain_id, &info.genesis_hash[..16]),
                });
            }
        }
        if home.chain()?.is_none() {
            home.pin_chain(&chain)?;
        }
        let saved = home.proven_height()?;
        client.set_floor(saved);
        Ok(Self {
            validators: chain.validator_keys()?,
            genesis: chain.genesis()?,
            home,
            chain,
            client: Arc::new(client),
            locks: Mutex::new(HashMap::new()),
            finality_timeout: Duration::from_secs(60),
            saved_height: std::sync::atomic::AtomicU64::new(saved),
            memo_keys: Mutex::new(HashMap::new()),
        })
    }

    /// Opens the encrypted memos of `signer`'s account from now on (in
    /// [`Wallet::history`] and incoming payments): the wallet keeps its key
    /// in memory for that, as a chat app keeps an unlocked account's.
    pub fn read_memos_of(&self, signer: &Signer) {
        self.memo_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(signer.key.public_key().clone(), signer.key.clone());
    }

    /// The memo of `transfer` as the account `me` sees it, and whether it
    /// is encrypted.
    fn memo_for(&self, transfer: &Transfer, me: &PublicKey) -> (String, bool) {
        let keys = self.memo_keys.lock().unwrap_or_else(|e| e.into_inner());
        let text = memo::read(transfer, keys.get(me));
        (text.display(), transfer.memo().is_encrypted())
    }

    /// How long `pay` waits for finality before giving up (default 60 s).
    pub fn with_finality_timeout(mut self, timeout: Duration) -> Self {
        self.finality_timeout = timeout;
        self
    }

    /// The chain.
    pub fn chain(&self) -> &ChainInfo {
        &self.chain
    }

    /// The home directory.
    pub fn home(&self) -> &WalletHome {
        &self.home
    }

    /// The validators.
    pub fn nodes(&self) -> &NodeClient {
        &self.client
    }

    /// Account `name`, unlocked with `password`.
    pub fn signer(&self, name: &str, password: &str) -> Result<Signer, WalletError> {
        let key = self.home.secret_key(name, password)?;
        Ok(Signer {
            name: name.into(),
            address: self.chain.address(key.public_key()),
            key,
        })
    }

    /// The address of account `name` (no password needed).
    pub fn address(&self, name: &str) -> Result<Address, WalletError> {
        Ok(self.chain.address(&self.home.account(name)?.key()?))
    }

    /// Committed state of `address`, proven against the validator set: the
    /// first validator (in preference order) whose answer verifies, at a
    /// height no more than [`crate::client::MAX_LAG`] blocks below the
    /// highest one already proven to this wallet. A validator whose answer
    /// does not verify, or is stale, is named in the error if no other
    /// answers, and asked last from then on.
    pub async fn account(&self, address: &Address) -> Result<AccountState, WalletError> {
        let started = tokio::time::Instant::now();
        loop {
            match self.account_once(address).await {
                // No block can be shown committed yet (a chain just
                // started): they come within a few blocks.
                Err(WalletError::Node(m)) if m.starts_with("Unavailable") => {
                    if started.elapsed() > ACCOUNT_PATIENCE {
                        return Err(WalletError::Node(m));
                    }
                    tokio::time::sleep(POLL).await;
                }
                done => return done,
            }
        }
    }

    /// Asks f + 1 validators at once (so at least one honest one) and
    /// keeps the freshest answer that verifies: a validator serving old
    /// state cannot hold the wallet's view back while another answers.
    async fn account_once(&self, address: &Address) -> Result<AccountState, WalletError> {
        let request = pb::GetAccountRequest {
            address: address.to_string(),
            include_proof: true,
        };
        let key = address.public_key();
        let floor = self.client.highest_proven();
        let answers = self
            .client
            .call_many(
                max_faulty(self.validators.len()) + 1,
                |mut c: RawClient| {
                    let request = request.clone();
                    async move { c.get_account(request).await }
                },
                |_| false,
            )
            .await;
        let mut best: Option<verify::ProvenAccount> = None;
        let mut failure = None;
        for (url, answer) in answers {
            let answer = match answer {
                Ok(a) => a,
                Err(s) => {
                    failure.get_or_insert_with(|| node_error(&s));
                    continue;
                }
            };
            match verify::check_account(answer, key, &self.genesis, &self.validators) {
                Err(what) => {
                    self.client.lied(&url, &what);
                    failure = Some(WalletError::Lied { node: url, what });
                }
                // Old state presented as current: behind, or replaying.
                Ok(p) if p.height.saturating_add(crate::client::MAX_LAG) < floor => {
                    let what = format!(
                        "it answered at height {}, and height {floor} is already proven",
                        p.height
                    );
                    self.client.behind(&url, &what);
                    if !matches!(failure, Some(WalletError::Lied { .. })) {
                        failure = Some(WalletError::Behind { node: url, what });
                    }
                }
                Ok(p) => {
                    self.client.proven(&url, p.height);
                    if best.is_none_or(|b| p.height > b.height) {
                        best = Some(p);
                    }
                }
            }
        }
        let proven = best.ok_or_else(|| {
            failure.unwrap_or_else(|| WalletError::Unreachable {
                tried: self.client.urls(),
                last: "no answer".into(),
            })
        })?;
        self.save_proven(proven.height)?;
        Ok(AccountState {
            balance: proven.account.balance,
            nonce: proven.account.nonce,
            history_count: proven.account.history_count,
            history_hash: proven.account.history_hash,
            height: proven.height,
        })
    }

    /// Saves `height` as proven once it is [`SAVE_PROVEN_EVERY`] above the
    /// height last saved, so that a restarted wallet still knows old
    /// state when it is served some.
    fn save_proven(&self, height: u64) -> Result<(), WalletError> {
        use std::sync::atomic::Ordering;
        let saved = self.saved_height.load(Ordering::Relaxed);
        if height >= saved.saturating_add(SAVE_PROVEN_EVERY) {
            self.home.save_proven_height(height)?;
            self.saved_height.fetch_max(height, Ordering::Relaxed);
        }
        Ok(())
    }

    fn lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.into())
            .or_default()
            .clone()
    }

    /// Pays `amount` to `to` with an encrypted `memo` and waits until the
    /// payment is final.
    pub async fn pay(
        &self,
        from: &Signer,
        to: &Address,
        amount: u64,
        memo: &str,
    ) -> Result<Payment, WalletError> {
        self.pay_many(from, &[(to.clone(), amount)], memo).await
    }

    /// Pays several recipients in one transfer (one fee, all or nothing),
    /// e.g. splitting a bill, and waits until it is final.
    pub async fn pay_many(
        &self,
        from: &Signer,
        to: &[(Address, u64)],
        memo: &str,
    ) -> Result<Payment, WalletError> {
        self.pay_many_with_fee(from, to, memo, None).await
    }

    /// [`Wallet::pay_many`] with a fee above the chain's minimum (`None`:
    /// the minimum). A fee below the minimum is refused before signing.
    pub async fn pay_many_with_fee(
        &self,
        from: &Signer,
        to: &[(Address, u64)],
        memo: &str,
        fee: Option<u64>,
    ) -> Result<Payment, WalletError> {
        let details = PaymentDetails {
            fee,
            ..PaymentDetails::memo(memo)
        };
        self.pay_with(from, to, &details).await
    }

    /// Pays several recipients in one transfer carrying `details` (memo,
    /// its privacy, fee, reference, expiry), and waits until it is final.
    pub async fn pay_with(
        &self,
        from: &Signer,
        to: &[(Address, u64)],
        details: &PaymentDetails,
    ) -> Result<Payment, WalletError> {
        let minimum = self.chain.fee_per_transfer;
        let fee = details.fee.unwrap_or(minimum);
        if fee < minimum {
            return Err(WalletError::BadAmount {
                input: self.chain.format(fee),
                reason: format!("the fee must be at least {}", self.chain.format(minimum)),
            });
        }
        let signed = self.sign_next(from, to, details, fee).await?;
        let payment = self.wait_final(&signed).await;
        if payment.is_ok() {
            self.forget_pending(&from.name, &signed).await?;
        }
        payment
    }

    /// Drops `tx`, now final, from account `name`'s pending transfers.
    async fn forget_pending(&self, name: &str, tx: &SignedTransfer) -> Result<(), WalletError> {
        let lock = self.lock(name);
        let _guard = lock.lock().await;
        let mut state = self.home.state(name)?;
        let id = hex::encode(tx.tx_id().0);
        state.pending.retain(|p| p.tx_id != id);
        self.home.save_state(name, &state)
    }

    /// The transfers of account `name` signed and not yet seen final, by
    /// nonce (a payment whose wait timed out stays here until it is).
    ///
    /// # Errors
    /// When the wallet's state cannot be read.
    pub fn pending(&self, name: &str) -> Result<Vec<SignedTransfer>, WalletError> {
        let mut state = self.home.state(name)?;
        state.pending.sort_by_key(|p| p.nonce);
        state.pending.iter().map(decode_pending).collect()
    }

    /// Submits `from`'s pending transfers again, oldest first, unchanged
    /// (never re-signed), each to f + 1 validators, and waits for each to
    /// be final; the final ones leave the pending list. Returns them in
    /// nonce order.
    ///
    /// # Errors
    /// As [`Wallet::pay`]; what is not final yet stays pending.
    pub async fn retry(&self, from: &Signer) -> Result<Vec<Payment>, WalletError> {
        {
            // As before a payment: an expired one's nonce is filled, so the
            // ones after it can be ordered.
            let lock = self.lock(&from.name);
            let _guard = lock.lock().await;
            let account = self.account(&from.address).await?;
            let fee = self.chain.fee_per_transfer;
            self.resubmit_pending(from, account.nonce, fee).await?;
        }
        let mut done = Vec::new();
        for tx in self.pending(&from.name)? {
            // A refusal for good (its nonce taken by another) shows in the
            // wait: nothing else can commit it.
            let _ = self.submit(&tx).await;
            let payment = self.wait_final(&tx).await?;
            self.forget_pending(&from.name, &tx).await?;
            done.push(payment);
        }
        Ok(done)
    }

    /// Cancels `from`'s oldest pending transfer: signs a transfer of the
    /// smallest unit to its own account with the same nonce and a fee one
    /// minimum fee above, which validators take in place of the pending
    /// one, and waits until one of the two is final. Returns the one that
    /// committed: the cancel, or the original if it was ordered first.
    ///
    /// # Errors
    /// `Invalid` when nothing is pending; otherwise as [`Wallet::pay`].
    pub async fn cancel(&self, from: &Signer) -> Result<Payment, WalletError> {
        let Some(old) = self.pending(&from.name)?.into_iter().next() else {
            return Err(WalletError::Invalid("nothing pending to cancel".into()));
        };
        let t = old.transfer();
        let fee = t.fee().saturating_add(self.chain.fee_per_transfer);
        let cancel = self.self_transfer(from, t.nonce(), fee, b"cancel")?;
        if let Err(e) = self.submit(&cancel).await {
            // Refused: the nonce is used (by the original, if it committed),
            // or the cancel cannot be paid; the original stays pending.
            return match self.verified(&old.tx_id()).await {
                Ok(Some((record, _))) => {
                    self.forget_pending(&from.name, &old).await?;
                    Ok(payment_of(&old, &record))
                }
                _ => Err(e),
            };
        }
        {
            // Once admitted, the cancel takes the nonce's place in the
            // pending list, so the original is never submitted again.
            let lock = self.lock(&from.name);
            let _guard = lock.lock().await;
            let mut state = self.home.state(&from.name)?;
            state.pending.retain(|p| p.nonce != t.nonce());
            state.pending.push(pending_record(&cancel));
            self.home.save_state(&from.name, &state)?;
        }
        let outcome = match self.wait_final(&cancel).await {
            Ok(payment) => Ok(payment),
            // Too late: the original may have been ordered first.
            Err(e) => match self.verified(&old.tx_id()).await {
                Ok(Some((record, _))) => Ok(payment_of(&old, &record)),
                _ => Err(e),
            },
        };
        if outcome.is_ok() {
            self.forget_pending(&from.name, &cancel).await?;
        }
        outcome
    }

    /// A transfer of the smallest unit from `from` to itself with `nonce`
    /// and `fee` and a public `memo`: what takes a nonce's place when its
    /// transfer is cancelled or expired.
    fn self_transfer(
        &self,
        from: &Signer,
        nonce: u64,
        fee: u64,
        memo: &[u8],
    ) -> Result<SignedTransfer, WalletError> {
        let me = from.key.public_key().clone();
        let output = Output {
            recipient: me.clone(),
            amount: 1,
        };
        Ok(
            Transfer::new(self.genesis, me, nonce, fee, vec![output], memo.to_vec())
                .map_err(|e| WalletError::Invalid(format!("invalid transfer: {e}")))?
                .sign(&from.key),
        )
    }

    /// Submits `from`'s pending transfers above `committed_nonce` again, in
    /// nonce order, and returns the account's state with those still
    /// pending (saved) and what they will debit. The caller holds the
    /// account's lock. A transfer refused for good is dropped with those
    /// after it; one refused as expired has its nonce filled by a transfer
    /// to oneself (at `fee` or the fee that replaces it) and those after it
    /// stay.
    async fn resubmit_pending(
        &self,
        from: &Signer,
        committed_nonce: u64,
        fee: u64,
    ) -> Result<(crate::home::AccountState, u64), WalletError> {
        let mut state = self.home.state(&from.name)?;
        state.pending.retain(|p| p.nonce > committed_nonce);
        state.pending.sort_by_key(|p| p.nonce);
        let mut pending_debit = 0u64;
        let mut keep = 0;
        for i in 0..state.pending.len() {
            let mut tx = decode_pending(&state.pending[i])?;
            // Idempotent: the same bytes, so the same tx id. One the network
            // now refuses for good can never commit, nor can any after it
            // (their nonces depend on it): they are dropped, and their
            // nonces reused. None of them was ever reported final.
            let mut answer = self.submit(&tx).await;
            if matches!(&answer, Err(WalletError::Refused { reason, .. }) if reason == "expired") {
                // Expired unordered, by the chain's time on every validator
                // asked (f + 1, so an honest one): no later block can
                // include it. The ones after it are still signed and valid,
                // and anyone holding them can submit them again, so dropping
                // them and reusing their nonces could let one commit after a
                // new payment took its nonce. Its nonce is filled with a
                // transfer to oneself instead (with the fee that replaces it
                // in a mempool that has not dropped it yet), and they stay.
                let t = tx.transfer();
                let bumped = t.fee().saturating_add(self.chain.fee_per_transfer);
                tx = self.self_transfer(from, t.nonce(), fee.max(bumped), b"expired")?;
                state.pending[i] = pending_record(&tx);
                self.home.save_state(&from.name, &state)?;
                answer = self.submit(&tx).await;
                if let Err(e @ WalletError::Refused { .. }) = &answer {
                    if !matches!(e, WalletError::Refused { reason, .. } if reason == "stale_nonce")
                    {
                        // Kept, with everything after it: never a nonce
                        // reused while a signed transfer may still take it.
                        return Err(answer.unwrap_err());
                    }
                }
            }
            match answer {
                // Committed meanwhile: the nonce filter drops it next time.
                Err(WalletError::Refused { reason, .. }) if reason == "stale_nonce" => {}
                Err(WalletError::Refused { .. }) => break,
                _ => {}
            }
            pending_debit = pending_debit.saturating_add(debit(&tx));
            keep += 1;
        }
        state.pending.truncate(keep);
        self.home.save_state(&from.name, &state)?;
        Ok((state, pending_debit))
    }

    /// The transfer `from` signs with `nonce`: the memo encrypted for its
    /// payees and payer unless `details.public_memo`.
    fn transfer(
        &self,
        from: &Signer,
        nonce: u64,
        fee: u64,
        outputs: Vec<Output>,
        details: &PaymentDetails,
    ) -> Result<Transfer, WalletError> {
        let invalid = |e: String| WalletError::Invalid(format!("invalid transfer: {e}"));
        let sender = from.key.public_key().clone();
        let memo = if details.memo.is_empty() {
            Memo::None
        } else if details.public_memo {
            Memo::Public(details.memo.as_bytes().to_vec())
        } else {
            let readers = memo_readers(&sender, &outputs);
            let ad = memo_associated_data(&self.genesis, &sender, nonce);
            let secrets = MemoSecrets::random();
            let envelope = memo::encrypt(details.memo.as_bytes(), &readers, &ad, &secrets)
                .map_err(|e| invalid(e.to_string()))?;
            Memo::Encrypted(envelope)
        };
        let transfer = Transfer::new(self.genesis, sender, nonce, fee, outputs, memo)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(transfer
            .with_expiry(details.expires_at_ms.unwrap_or(0))
            .with_reference(details.reference))
    }

    /// Reserves the next nonce, signs, records the transaction as pending
    /// (durably, before it leaves), and submits it. Earlier pending
    /// transactions are resubmitted unchanged, never re-signed.
    async fn sign_next(
        &self,
        from: &Signer,
        to: &[(Address, u64)],
        details: &PaymentDetails,
        fee: u64,
    ) -> Result<SignedTransfer, WalletError> {
        let lock = self.lock(&from.name);
        let _guard = lock.lock().await;
        let account = self.account(&from.address).await?;
        let (mut state, pending_debit) = self.resubmit_pending(from, account.nonce, fee).await?;
        let nonce = state
            .pending
            .iter()
            .map(|p| p.nonce)
            .max()
            .unwrap_or(account.nonce)
            + 1;
        let outputs: Vec<Output> = to
            .iter()
            .map(|(a, amount)| Output {
                recipient: a.public_key().clone(),
                amount: *amount,
            })
            .collect();
        let transfer = self.transfer(from, nonce, fee, outputs, details)?;
        let needed = to
            .iter()
            .try_fold(fee, |sum, (_, a)| sum.checked_add(*a))
            .ok_or_else(|| WalletError::BadAmount {
                input: "total".into(),
                reason: "amounts overflow".into(),
            })?;
        let available = account.balance.saturating_sub(pending_debit);
        if needed > available {
            return Err(WalletError::InsufficientFunds {
                balance: self.chain.format(available),
                needed: self.chain.format(needed),
            });
        }
        let signed = transfer.sign(&from.key);
        state.pending.push(pending_record(&signed));
        self.home.save_state(&from.name, &state)?;
        if let Err(e) = self.submit(&signed).await {
            if !matches!(e, WalletError::Unreachable { .. }) {
                // Refused for good: forget it so the nonce is reused.
                state.pending.retain(|p| p.nonce != nonce);
                self.home.save_state(&from.name, &state)?;
            }
            return Err(e);
        }
        Ok(signed)
    }

    /// Submits `tx` to f + 1 validators at once (f: the most that may be
    /// faulty), so that at least one honest validator has it and no single
    /// one can censor it. Returns when f + 1 admitted it, or shortly
    /// after the first did (the others finish on their own; the
    /// resubmission every 5 s until final asks f + 1 again). Refused only when every validator asked answered
    /// with a refusal; when some did not answer, the outcome is unknown
    /// and `Unreachable` is returned (the transaction stays pending).
    async fn submit(&self, tx: &SignedTransfer) -> Result<(), WalletError> {
        let request = pb::SubmitTransactionRequest {
            transaction: Some(tx.into()),
        };
        let admitted = |r: &Result<pb::SubmitTransactionResponse, Status>| match r {
            Ok(_) => true,
            Err(s) => s.code() == Code::AlreadyExists,
        };
        let wanted = max_faulty(self.validators.len()) + 1;
        let mut holders = 0;
        let answers = self
            .client
            .call_many(
                wanted,
                |mut c: RawClient| {
                    let request = request.clone();
                    async move { c.submit_transaction(request).await }
                },
                |r| {
                    holders += usize::from(admitted(r));
                    holders >= wanted
                },
            )
            .await;
        if answers.iter().any(|(_, r)| admitted(r)) {
            return Ok(());
        }
        let mut refusal = None;
        let mut unknown = None;
        for (url, answer) in &answers {
            let Err(s) = answer else { continue };
            if is_unavailable(s) || s.code() == Code::ResourceExhausted {
                unknown.get_or_insert_with(|| format!("{url}: {}", s.message()));
            } else {
                refusal.get_or_insert_with(|| WalletError::Refused {
                    reason: s
                        .metadata()
                        .get("chatpay-reason")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("refused")
                        .to_string(),
                    message: s.message().to_string(),
                });
            }
        }
        match (unknown, refusal) {
            (None, Some(refusal)) => Err(refusal),
            (last, _) => Err(WalletError::Unreachable {
                tried: answers.into_iter().map(|(url, _)| url).collect(),
                last: last.unwrap_or_else(|| "no validator answered".into()),
            }),
        }
    }

    /// Waits until `tx` is committed with a finality proof that verifies
    /// against the pinned validator set. An answer that does not verify is
    /// ignored (another validator is asked); if none verifies in time, the
    /// payment is not reported.
    async fn wait_final(&self, tx: &SignedTransfer) -> Result<Payment, WalletError> {
        let id = tx.tx_id();
        let started = tokio::time::Instant::now();
        let mut last_submit = started;
        let mut rejected: Option<String> = None;
        loop {
            match self.verified(&id).await {
                Ok(Some((record, _))) => return Ok(payment_of(tx, &record)),
                Ok(None) => {}
                Err(e) => rejected = Some(e.to_string()),
            }
            if started.elapsed() > self.finality_timeout {
                return Err(match rejected {
                    Some(reason) => WalletError::Unverified(reason),
                    None => WalletError::Timeout {
                        tx_id: id.to_string(),
                        seconds: self.finality_timeout.as_secs(),
                    },
                });
            }
            if last_submit.elapsed() > RESUBMIT_AFTER {
                let _ = self.submit(tx).await;
                last_submit = tokio::time::Instant::now();
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The committed record of `id` with a verified finality proof, from the
    /// first validator whose answer verifies; `Ok(None)` while none has a
    /// complete proof yet; `Err` if some answer failed verification and none
    /// verified.
    async fn verified(&self, id: &TxId) -> Result<Option<(Committed, FinalityProof)>, WalletError> {
        let request = pb::GetTransactionRequest {
            tx_id: id.0.to_vec(),
            include_proof: true,
        };
        let mut failure = None;
        let found = self
            .client
            .call_until(
                |mut c: RawClient| {
                    let request = request.clone();
                    async move { c.get_transaction(request).await }
                },
                |url, answer| match self.check(id, answer.ok()?) {
                    Ok(found) => {
                        if let Some((_, proof)) = &found {
                            // The certified block's parent is committed.
                            self.client
                                .proven(url, proof.commit_header.height.saturating_sub(1));
                        }
                        found
                    }
                    Err(e) => {
                        failure = Some(format!("{url}: {e}"));
                        None
                    }
                },
            )
            .await;
        match (found, failure) {
            (Some(found), _) => Ok(Some(found)),
            (None, Some(f)) => Err(WalletError::Unverified(f)),
            (None, None) => Ok(None),
        }
    }

    /// Verifies one validator's answer about `id`.
    fn check(
        &self,
        id: &TxId,
        response: pb::GetTransactionResponse,
    ) -> Result<Option<(Committed, FinalityProof)>, WalletError> {
        use pb::get_transaction_response::Status as S;
        let Some(S::Committed(committed)) = response.status else {
            return Ok(None);
        };
        let Some(proof) = response.proof else {
            return Err(WalletError::Unverified("committed without a proof".into()));
        };
        if proof.commit_header.is_none() {
            return Ok(None); // the committing block is not committed yet
        }
        let proof = FinalityProof::try_from(proof)
            .map_err(|e| WalletError::Unverified(format!("malformed proof: {e}")))?;
        let record = Committed::from_pb(committed)?;
        if record.tx.tx_id() != *id {
            return Err(WalletError::Unverified(
                "answer is about another transaction".into(),
            ));
        }
        proof
            .verify(
                id,
                record.receipt,
                record.height,
                record.index,
                &self.genesis,
                &self.validators,
            )
            .map_err(|e| WalletError::Unverified(e.to_string()))?;
        Ok(Some((record, proof)))
    }

    /// The newest `limit` entries of `address`'s history, newest first,
    /// verified against its proven account: each entry is the transfer the
    /// account's history hash commits to at that place, and none is left
    /// out or added.
    pub async fn history(&self, address: &Address, limit: u32) -> Result<History, WalletError> {
        self.history_before(address, None, Some(limit)).await
    }

    /// Up to `limit` (all when `None`) verified entries of `address`'s
    /// history numbered below `before` (from the newest when `None`),
    /// newest first. Pages are read from the newest down, each checked
    /// against the proven history hash, so an older page is as verified as
    /// the newest.
    ///
    /// # Errors
    /// As [`Wallet::history`].
    pub async fn history_before(
        &self,
        address: &Address,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<History, WalletError> {
        let state = self.account(address).await?;
        let limit = limit.map_or(u64::MAX, |l| u64::from(l.max(1)));
        let below = before.unwrap_or(u64::MAX);
        if below <= 1 {
            // Entries are numbered from 1: nothing is older.
            return Ok(History {
                height: state.height,
                total: state.history_count,
                entries: Vec::new(),
            });
        }
        let mut expected = (state.history_count, state.history_hash);
        let mut cursor = None;
        let mut entries = Vec::new();
        while expected.0 > 0 && (entries.len() as u64) < limit {
            // The entries numbered `below` and up are read only to chain
            // down to it; the page takes the ones wanted below it too.
            let skipped = (expected.0 + 1).saturating_sub(below);
            let wanted = skipped.saturating_add(limit - entries.len() as u64);
            let size = u32::try_from(wanted.min(u64::from(MAX_PAGE))).expect("at most a page");
            let page = self
                .verified_page(address, expected, state.height, cursor, size)
                .await?;
            let Some(oldest) = page.entries.first() else {
                break;
            };
            cursor = Some((oldest.entry.height, oldest.entry.index));
            expected = (page.count_before, page.hash_before);
            entries.extend(
                page.entries
                    .iter()
                    .rev()
                    .filter(|v| v.number < below)
                    .map(|v| self.history_entry(v, address.public_key())),
            );
        }
        entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(History {
            height: state.height,
            total: state.history_count,
            entries,
        })
    }

    /// The entry `v` of the history of the account `me`.
    fn history_entry(&self, v: &verify::Verified, me: &PublicKey) -> HistoryEntry {
        let transfer = v.reported.tx.transfer();
        let (memo, memo_encrypted) = self.memo_for(transfer, me);
        let mut to: Vec<Address> = Vec::new();
        for o in transfer.outputs().iter().filter(|o| o.recipient != *me) {
            let address = self.chain.address(&o.recipient);
            if !to.contains(&address) {
                to.push(address);
            }
        }
        HistoryEntry {
            tx_id: v.entry.tx_id,
            cursor: cursor_of(v),
            from: self.chain.address(transfer.sender()),
            to,
            amount: v.entry.amount,
            outgoing: v.entry.direction == Direction::Sent,
            number: v.number,
            memo,
            memo_encrypted,
            receipt: ReceiptCode::Success,
        }
    }

    /// One page of `address`'s history at or below `at_height`, strictly
    /// before `before` (the newest when `None`), whose newest entry must be
    /// number `count` with running hash `hash` after it: the first page
    /// that verifies, from the validators in preference order.
    async fn verified_page(
        &self,
        address: &Address,
        (count, hash): (u64, chatpay_proto::Hash),
        at_height: u64,
        before: Option<(u64, u32)>,
        limit: u32,
    ) -> Result<verify::Page, WalletError> {
        let request = pb::ListTransactionsRequest {
            address: address.to_string(),
            cursor: before.map_or_else(Vec::new, |(h, i)| {
                let mut c = h.to_be_bytes().to_vec();
                c.extend_from_slice(&i.to_be_bytes());
                c
            }),
            limit,
            at_height,
        };
        let key = address.public_key();
        self.ask_verified(
            |mut c: RawClient| {
                let request = request.clone();
                async move { c.list_transactions(request).await }
            },
            |_, answer| verify::check_page(answer, key, (count, hash), limit, at_height),
        )
        .await
    }

    /// Asks the validators in preference order until one's answer passes
    /// `check`. One whose answer fails it is a liar: named in the error
    /// (when no other answer passes) and asked last from then on.
    async fn ask_verified<T, R, F, Fut>(
        &self,
        call: F,
        mut check: impl FnMut(&str, T) -> Result<R, String>,
    ) -> Result<R, WalletError>
    where
        F: Fn(RawClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut failure = None;
        let found = self
            .client
            .call_until(call, |url, answer| match answer.map(|a| check(url, a)) {
                Ok(Ok(found)) => Some(found),
                Ok(Err(what)) => {
                    self.client.lied(url, &what);
                    failure = Some(WalletError::Lied {
                        node: url.to_string(),
                        what,
                    });
                    None
                }
                Err(s) => {
                    failure.get_or_insert_with(|| node_error(&s));
                    None
                }
            })
            .await;
        found.ok_or_else(|| {
            failure.unwrap_or_else(|| WalletError::Unreachable {
                tried: self.client.urls(),
                last: "no answer".into(),
            })
        })
    }

    /// The verified entries of `address`'s history after `from` up to the
    /// proven state `to`, oldest first.
    async fn entries_between(
        &self,
        address: &Address,
        from: &Cursor,
        to: &AccountState,
    ) -> Result<Vec<verify::Verified>, WalletError> {
        let mut expected = (to.history_count, to.history_hash);
        let mut before = None;
        let mut newest_first: Vec<verify::Verified> = Vec::new();
        while expected.0 > from.history_count {
            let want = (expected.0 - from.history_count).min(u64::from(MAX_PAGE));
            let limit = u32::try_from(want).expect("at most MAX_PAGE");
            let page = self
                .verified_page(address, expected, to.height, before, limit)
                .await?;
            let Some(oldest) = page.entries.first() else {
                break; // count_before == count: cannot happen for a page that verified
            };
            before = Some((oldest.entry.height, oldest.entry.index));
            expected = (page.count_before, page.hash_before);
            newest_first.extend(page.entries.into_iter().rev());
        }
        if expected != (from.history_count, chatpay_proto::Hash(from.history_hash)) {
            return Err(WalletError::Unverified(format!(
                "the proven history does not pass through the cursor (entry {} at height {})",
                from.history_count, from.height
            )));
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Final, verified payments to `address` after `after` (from the
    /// beginning of the chain when `None`), in chain order, then new ones as
    /// they commit. Store each payment's cursor and pass it back after a
    /// restart: nothing is reported twice and nothing is skipped.
    ///
    /// Every payment reported is an entry of the account's history, checked
    /// against the account's proven history hash, so a validator cannot
    /// add, change or hide one. The validator's stream only says when to
    /// look: one whose stream skips an entry, or announces one that no
    /// proof shows, is reported as an [`WalletError::Lied`] item and asked
    /// last from then on; the stream goes on with the others. It ends with
    /// an error item if no validator can be reached for a while.
    pub fn incoming(
        self: &Arc<Self>,
        address: &Address,
        after: Option<Cursor>,
    ) -> ReceiverStream<Result<IncomingPayment, WalletError>> {
        let (tx, rx) = mpsc::channel(64);
        let wallet = self.clone();
        let address = address.clone();
        tokio::spawn(async move {
            if let Err(e) = wallet.follow(&address, after, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        ReceiverStream::new(rx)
    }

    async fn follow(
        &self,
        address: &Address,
        after: Option<Cursor>,
        out: &mpsc::Sender<Result<IncomingPayment, WalletError>>,
    ) -> Result<(), WalletError> {
        // A cursor of a wallet before account histories: start from the
        // first entry, and report nothing at or before it.
        let legacy = after.filter(|c| c.history_count == 0 && c.height > 0);
        let mut at = after.filter(|_| legacy.is_none()).unwrap_or_default();
        let mut failures = 0u32;
        loop {
            let before = at;
            let error = match self.follow_once(address, &mut at, legacy, out).await {
                Ok(Flow::ReceiverGone) => return Ok(()),
                Ok(Flow::Again) => None,
                Err(e) => Some(e),
            };
            if at != before {
                failures = 0;
            }
            let Some(e) = error else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if matches!(e, WalletError::Invalid(_)) {
                return Err(e); // the caller's cursor: no retry helps
            }
            failures += 1;
            if failures > MAX_FOLLOW_FAILURES {
                return Err(e);
            }
            // One validator's failure or lie: say so, and go on with the
            // others.
            if matches!(e, WalletError::Lied { .. } | WalletError::Behind { .. })
                && out.send(Err(e)).await.is_err()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One subscription: reports verified entries after `at` (moving it)
    /// until the stream ends or its validator is caught lying.
    async fn follow_once(
        &self,
        address: &Address,
        at: &mut Cursor,
        legacy: Option<Cursor>,
        out: &mpsc::Sender<Result<IncomingPayment, WalletError>>,
    ) -> Result<Flow, WalletError> {
        let request = pb::SubscribeAccountRequest {
            address: address.to_string(),
            from_height: at.height,
        };
        let (url, stream) = self
            .client
            .call_named(|mut c: RawClient| {
                let request = request.clone();
                async move { c.subscribe_account(request).await }
            })
            .await?;
        let mut stream = stream.map_err(|s| node_error(&s))?;
        let mut watch = StreamWatch::new(url, at.history_count);
        loop {
            let state = self.account(address).await?;
            if state.history_count < at.history_count && state.height >= at.height {
                return Err(WalletError::Invalid(format!(
                    "invalid cursor: it is at entry {} (height {}), and {address} has {} \
                     entries at height {}: a cursor of another account or chain",
                    at.history_count, at.height, state.history_count, state.height
                )));
            }
            let mut lie = None;
            if state.history_count > at.history_count {
                for v in &self.entries_between(address, at, &state).await? {
                    if let Err(e) = watch.check(v) {
                        lie.get_or_insert(e);
                    }
                    *at = cursor_of(v);
                    if let Some(p) = self.payment(v, address.public_key(), legacy) {
                        if out.send(Ok(p)).await.is_err() {
                            return Ok(Flow::ReceiverGone);
                        }
                    }
                }
            }
            let lie = lie.or_else(|| watch.settled(at.history_count, self.finality_timeout).err());
            let wait = if watch.ahead(at.history_count) {
                POLL
            } else {
                IDLE_POLL
            };
            let lie = match lie {
                Some(lie) => Some(lie),
                // Wait for an event (or look anyway after `wait`), then take
                // every event already there before looking again.
                None => match tokio::time::timeout(wait, stream.message()).await {
                    Ok(Ok(Some(event))) => watch.drain(event, &mut stream).await.err(),
                    // The validator went away: subscribe again from `at`.
                    Ok(Ok(None) | Err(_)) => return Ok(Flow::Again),
                    Err(_) => None,
                },
            };
            if let Some(lie) = lie {
                self.client.lied(&watch.url, &lie.to_string());
                if out.send(Err(lie)).await.is_err() {
                    return Ok(Flow::ReceiverGone);
                }
                return Ok(Flow::Again); // subscribe again, to another validator
            }
        }
    }

    /// The incoming payment a verified entry is, if it is one to report.
    fn payment(
        &self,
        v: &verify::Verified,
        me: &PublicKey,
        legacy: Option<Cursor>,
    ) -> Option<IncomingPayment> {
        let position = (v.entry.height, v.entry.index);
        if v.entry.direction != Direction::Received
            || legacy.is_some_and(|c| position <= (c.height, c.index))
        {
            return None;
        }
        let transfer = v.reported.tx.transfer();
        let (memo, memo_encrypted) = self.memo_for(transfer, me);
        Some(IncomingPayment {
            tx_id: v.entry.tx_id,
            from: self.chain.address(transfer.sender()),
            amount: v.entry.amount,
            memo,
            memo_encrypted,
            cursor: cursor_of(v),
        })
    }
}

/// How a signed transfer waits in the wallet's state until final.
fn pending_record(tx: &SignedTransfer) -> PendingTx {
    PendingTx {
        nonce: tx.transfer().nonce(),
        tx_id: hex::encode(tx.tx_id().0),
        signed: hex::encode(pb::SignedTransaction::from(tx).encode_to_vec()),
    }
}

/// The payment `tx` made, as its committed `record` shows.
fn payment_of(tx: &SignedTransfer, record: &Committed) -> Payment {
    Payment {
        tx_id: tx.tx_id(),
        height: record.height,
        receipt: record.receipt,
        fee: tx.transfer().fee(),
        amount: tx.transfer().outputs().iter().map(|o| o.amount).sum(),
    }
}

/// Where a verified entry is: its position, number and the running
/// history hash after it.
fn cursor_of(v: &verify::Verified) -> Cursor {
    Cursor {
        height: v.entry.height,
        index: v.entry.index,
        history_count: v.number,
        history_hash: v.hash_after.0,
    }
}

/// Largest history page asked for (the validators' maximum).
const MAX_PAGE: u32 = 100;
/// How often `incoming` looks for new entries when the stream is quiet.
const IDLE_POLL: Duration = Duration::from_secs(2);

/// Consecutive failures (no validator answering, all lying) before
/// `incoming` gives up.
const MAX_FOLLOW_FAILURES: u32 = 10;

/// Events taken from a stream at once before the proofs are read again.
const DRAIN_MOST: usize = 256;

/// How one subscription ended.
enum Flow {
    /// The stream ended or lied: subscribe again.
    Again,
    /// The receiver of the payments hung up.
    ReceiverGone,
}

/// Verified entries a [`StreamWatch`] remembers, to check what a stream
/// announces after the proofs showed it.
const VERIFIED_MEMORY: usize = 4_096;

/// What one validator's account stream announced, checked against the
/// verified history.
struct StreamWatch {
    url: String,
    /// Tx ids it announced, by entry number, not yet verified.
    announced: std::collections::BTreeMap<u64, TxId>,
    /// Tx ids of the latest verified entries, by entry number.
    verified: std::collections::BTreeMap<u64, TxId>,
    /// The last entry number it announced.
    last: u64,
    /// The highest entry number verified.
    proven: u64,
    /// Since when it has been ahead of the proven history.
    ahead_since: Option<tokio::time::Instant>,
}

impl StreamWatch {
    fn new(url: String, verified: u64) -> Self {
        Self {
            url,
            announced: Default::default(),
            verified: Default::default(),
            last: verified,
            proven: verified,
            ahead_since: None,
        }
    }

    fn lie(&self, what: String) -> WalletError {
        WalletError::Lied {
            node: self.url.clone(),
            what,
        }
    }

    fn mismatch(&self, n: u64, announced: &TxId, proven: &TxId) -> WalletError {
        self.lie(format!(
            "its stream announced {announced} as entry {n}, the proven entry is {proven}"
        ))
    }

    /// An event: its entry number must follow the last one announced, and
    /// an entry already verified must be the same transfer.
    fn event(&mut self, event: &pb::AccountEvent) -> Result<(), WalletError> {
        let n = event.history_index;
        let id = event
            .transaction
            .as_ref()
            .and_then(|t| chatpay_proto::Hash::from_slice(&t.tx_id))
            .ok_or_else(|| self.lie(format!("entry {n} of its stream has no tx id")))?;
        if let Some(proven) = self.verified.get(&n) {
            if *proven != id {
                return Err(self.mismatch(n, &id, proven));
            }
        }
        if n <= self.last {
            return Ok(()); // a replay of what the wallet already has
        }
        if n != self.last + 1 {
            return Err(self.lie(format!(
                "its account stream went from entry {} to entry {n}, skipping a payment",
                self.last
            )));
        }
        self.last = n;
        if n > self.proven {
            self.announced.insert(n, id);
        }
        Ok(())
    }

    /// `event`, then every event already received.
    async fn drain(
        &mut self,
        event: pb::AccountEvent,
        stream: &mut tonic::Streaming<pb::AccountEvent>,
    ) -> Result<(), WalletError> {
        self.event(&event)?;
        for _ in 0..DRAIN_MOST {
            match tokio::time::timeout(Duration::from_millis(1), stream.message()).await {
                Ok(Ok(Some(event))) => self.event(&event)?,
                _ => break,
            }
        }
        Ok(())
    }

    /// A verified entry: the stream must have announced it (if it got that
    /// far) as the same transfer.
    fn check(&mut self, v: &verify::Verified) -> Result<(), WalletError> {
        if let Some(id) = self.announced.remove(&v.number) {
            if id != v.entry.tx_id {
                return Err(self.mismatch(v.number, &id, &v.entry.tx_id));
            }
        }
        self.verified.insert(v.number, v.entry.tx_id);
        self.proven = self.proven.max(v.number);
        while self.verified.len() > VERIFIED_MEMORY {
            self.verified.pop_first();
        }
        Ok(())
    }

    /// Whether the stream announced entries the proofs do not show yet.
    fn ahead(&self, verified: u64) -> bool {
        self.last > verified
    }

    /// Fails when the stream has announced entries that no proof shows
    /// for longer than `patience`.
    fn settled(&mut self, verified: u64, patience: Duration) -> Result<(), WalletError> {
        if !self.ahead(verified) {
            self.ahead_since = None;
            return Ok(());
        }
        let since = *self
            .ahead_since
            .get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() > patience {
            return Err(self.lie(format!(
                "its stream announced entry {} and no proof shows past entry {verified}",
                self.last
            )));
        }
        Ok(())
    }
}

/// A committed transaction as a validator reported it (unverified until a
/// proof says otherwise).
#[derive(Debug, Clone)]
struct Committed {
    tx: SignedTransfer,
    height: u64,
    index: u32,
    receipt: ReceiptCode,
}

impl Committed {
    fn from_pb(c: pb::CommittedTransaction) -> Result<Self, WalletError> {
        let bad = |m: String| WalletError::Unverified(m);
        let tx = c
            .transaction
            .ok_or_else(|| bad("committed transaction without its transaction".into()))?;
        let tx = SignedTransfer::try_from(tx).map_err(|e| bad(e.to_string()))?;
        let receipt = c
            .receipt
            .ok_or_else(|| bad("committed without a receipt".into()))?;
        let receipt = chatpay_proto::Receipt::try_from(receipt).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            tx,
            height: c.height,
            index: c.index,
            receipt: receipt.code,
        })
    }
}

fn decode_pending(p: &PendingTx) -> Result<SignedTransfer, WalletError> {
    let bytes = hex::decode(&p.signed)
        .map_err(|_| WalletError::Corrupt("pending transaction is not hex".into()))?;
    let wire = pb::SignedTransaction::decode(bytes.as_slice())
        .map_err(|e| WalletError::Corrupt(format!("pending transaction: {e}")))?;
    SignedTransfer::try_from(wire)
        .map_err(|e| WalletError::Corrupt(format!("pending transaction: {e}")))
}

fn debit(tx: &SignedTransfer) -> u64 {
    let t = tx.transfer();
    t.outputs()
        .iter()
        .fold(t.fee(), |sum, o| sum.saturating_add(o.amount))
}
