//! The wallet: accounts on one chain, paying, checking finality, and
//! following incoming payments.

use crate::client::{NodeClient, RawClient};
use crate::home::{PendingTx, WalletHome};
use crate::incoming::{Cursor, IncomingPayment};
use crate::{ChainInfo, PaymentRequest, WalletError};
use chatpay_proto::{
    Address, FinalityProof, Output, PublicKey, ReceiptCode, SecretKey, SignedTransfer, Transfer,
    TxId, pb,
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

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}, {})", self.name, self.address)
    }
}

/// Committed state of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountState {
    /// Balance, base units.
    pub balance: u64,
    /// Last committed nonce.
    pub nonce: u64,
    /// Height it was read at.
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

/// One line of an account's history (as the validator reports it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The transaction.
    pub tx_id: TxId,
    /// Where it is.
    pub cursor: Cursor,
    /// Sender.
    pub from: Address,
    /// Amount to this account (incoming) or to others (outgoing).
    pub amount: u64,
    /// Whether this account sent it.
    pub outgoing: bool,
    /// Memo (lossy UTF-8).
    pub memo: String,
    /// Outcome.
    pub receipt: ReceiptCode,
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
}

fn node_error(s: &Status) -> WalletError {
    WalletError::Node(format!("{:?}: {}", s.code(), s.message()))
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
        Ok(Self {
            validators: chain.validator_keys()?,
            genesis: chain.genesis()?,
            home,
            chain,
            client: Arc::new(client),
            locks: Mutex::new(HashMap::new()),
            finality_timeout: Duration::from_secs(60),
        })
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

    /// Committed balance and nonce of `address`.
    pub async fn account(&self, address: &Address) -> Result<AccountState, WalletError> {
        let request = pb::GetAccountRequest {
            address: address.to_string(),
        };
        let r = self
            .client
            .call(|mut c: RawClient| {
                let request = request.clone();
                async move { c.get_account(request).await }
            })
            .await?
            .map_err(|s| node_error(&s))?;
        let account = r.account.unwrap_or_default();
        Ok(AccountState {
            balance: account.balance,
            nonce: account.nonce,
            height: r.height,
        })
    }

    fn lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.into())
            .or_default()
            .clone()
    }

    /// Pays `amount` to `to` and waits until the payment is final.
    pub async fn pay(
        &self,
        from: &Signer,
        to: &Address,
        amount: u64,
        memo: &str,
    ) -> Result<Payment, WalletError> {
        self.pay_many(from, &[(to.clone(), amount)], memo).await
    }

    /// Pays a request link (its amount must be set).
    pub async fn pay_request(
        &self,
        from: &Signer,
        request: &PaymentRequest,
    ) -> Result<Payment, WalletError> {
        let amount = request.amount.ok_or_else(|| {
            WalletError::BadRequest("the link has no amount; pay it with an amount".into())
        })?;
        let memo = request.memo.as_deref().unwrap_or("");
        self.pay(from, &request.address, amount, memo).await
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
        let minimum = self.chain.fee_per_transfer;
        let fee = fee.unwrap_or(minimum);
        if fee < minimum {
            return Err(WalletError::BadAmount {
                input: self.chain.format(fee),
                reason: format!("the fee must be at least {}", self.chain.format(minimum)),
            });
        }
        let signed = self.sign_next(from, to, memo, fee).await?;
        let payment = self.wait_final(&signed).await;
        if payment.is_ok() {
            let lock = self.lock(&from.name);
            let _guard = lock.lock().await;
            let mut state = self.home.state(&from.name)?;
            let id = hex::encode(signed.tx_id().0);
            state.pending.retain(|p| p.tx_id != id);
            self.home.save_state(&from.name, &state)?;
        }
        payment
    }

    /// Reserves the next nonce, signs, records the transaction as pending
    /// (durably, before it leaves), and submits it. Earlier pending
    /// transactions are resubmitted unchanged, never re-signed.
    async fn sign_next(
        &self,
        from: &Signer,
        to: &[(Address, u64)],
        memo: &str,
        fee: u64,
    ) -> Result<SignedTransfer, WalletError> {
        let lock = self.lock(&from.name);
        let _guard = lock.lock().await;
        let account = self.account(&from.address).await?;
        let mut state = self.home.state(&from.name)?;
        state.pending.retain(|p| p.nonce > account.nonce);
        state.pending.sort_by_key(|p| p.nonce);
        let mut pending_debit = 0u64;
        let mut keep = 0;
        for p in &state.pending {
            let tx = decode_pending(p)?;
            // Idempotent: the same bytes, so the same tx id. One the network
            // now refuses for good can never commit, nor can any after it
            // (their nonces depend on it): they are dropped, and their
            // nonces reused. None of them was ever reported final.
            match self.submit(&tx).await {
                // Committed meanwhile: the nonce filter drops it next time.
                Err(WalletError::Refused { reason, .. }) if reason == "stale_nonce" => {}
                Err(WalletError::Refused { .. }) => break,
                _ => {}
            }
            pending_debit = pending_debit.saturating_add(debit(&tx));
            keep += 1;
        }
        state.pending.truncate(keep);
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
        let transfer = Transfer::new(
            &self.chain.chain_id,
            from.key.public_key().clone(),
            nonce,
            fee,
            outputs,
            memo.as_bytes().to_vec(),
        )
        .map_err(|e| WalletError::BadRequest(e.to_string()))?;
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
        state.pending.push(PendingTx {
            nonce,
            tx_id: hex::encode(signed.tx_id().0),
            signed: hex::encode(pb::SignedTransaction::from(&signed).encode_to_vec()),
        });
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

    async fn submit(&self, tx: &SignedTransfer) -> Result<(), WalletError> {
        let request = pb::SubmitTransactionRequest {
            transaction: Some(tx.into()),
        };
        let answer = self
            .client
            .call(|mut c: RawClient| {
                let request = request.clone();
                async move { c.submit_transaction(request).await }
            })
            .await?;
        match answer {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            Err(s) => {
                let reason = s
                    .metadata()
                    .get("chatpay-reason")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("refused")
                    .to_string();
                Err(WalletError::Refused {
                    reason,
                    message: s.message().to_string(),
                })
            }
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
                Ok(Some((record, _))) => {
                    return Ok(Payment {
                        tx_id: id,
                        height: record.height,
                        receipt: record.receipt,
                        fee: tx.transfer().fee(),
                        amount: tx.transfer().outputs().iter().map(|o| o.amount).sum(),
                    });
                }
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
                    Ok(found) => found,
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

    /// Recent history of `address`, newest first (as reported by one
    /// validator; `incoming` verifies).
    pub async fn history(
        &self,
        address: &Address,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, WalletError> {
        let request = pb::ListTransactionsRequest {
            address: address.to_string(),
            cursor: vec![],
            limit,
        };
        let r = self
            .client
            .call(|mut c: RawClient| {
                let request = request.clone();
                async move { c.list_transactions(request).await }
            })
            .await?
            .map_err(|s| node_error(&s))?;
        let me = address.public_key();
        r.transactions
            .into_iter()
            .map(|t| {
                let c = Committed::from_pb(t)?;
                let transfer = c.tx.transfer();
                let outgoing = transfer.sender() == me;
                let amount = transfer
                    .outputs()
                    .iter()
                    .filter(|o| outgoing || o.recipient == *me)
                    .map(|o| o.amount)
                    .sum();
                Ok(HistoryEntry {
                    tx_id: c.tx.tx_id(),
                    cursor: Cursor {
                        height: c.height,
                        index: c.index,
                    },
                    from: self.chain.address(transfer.sender()),
                    amount,
                    outgoing,
                    memo: String::from_utf8_lossy(transfer.memo()).into_owned(),
                    receipt: c.receipt,
                })
            })
            .collect()
    }

    /// Final, verified payments to `address` after `after` (from the
    /// beginning of the chain when `None`), in chain order, then new ones as
    /// they commit. Store each payment's cursor and pass it back after a
    /// restart: nothing is reported twice and nothing is skipped. The stream
    /// ends with an error item if no validator can be reached for a while.
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
        mut after: Option<Cursor>,
        out: &mpsc::Sender<Result<IncomingPayment, WalletError>>,
    ) -> Result<(), WalletError> {
        let me = address.public_key().clone();
        let mut failures = 0u32;
        let mut misplaced = 0u32;
        let mut reported = std::collections::VecDeque::new();
        loop {
            let request = pb::SubscribeAccountRequest {
                address: address.to_string(),
                from_height: after.map_or(0, |c| c.height),
            };
            let subscribed = self
                .client
                .call(|mut c: RawClient| {
                    let request = request.clone();
                    async move { c.subscribe_account(request).await }
                })
                .await;
            let mut stream = match subscribed {
                Ok(Ok(s)) => s,
                Ok(Err(s)) => return Err(node_error(&s)),
                Err(e) => {
                    failures += 1;
                    if failures > 10 {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            failures = 0;
            loop {
                let event = match stream.message().await {
                    Ok(Some(event)) => event,
                    // The validator went away: subscribe again from the cursor.
                    Ok(None) | Err(_) => break,
                };
                let Some(t) = event.transaction else { continue };
                let c = Committed::from_pb(t)?;
                match self.take_payment(&me, c, &mut after, &mut reported).await? {
                    Taken::Payment(payment) => {
                        if out.send(Ok(*payment)).await.is_err() {
                            return Ok(()); // the receiver hung up
                        }
                    }
                    Taken::Nothing => {}
                    // The validator lied about where a payment is: ask
                    // again after a pause (the next call may reach another
                    // validator), and give up on a stream that keeps lying.
                    Taken::Misplaced => {
                        misplaced += 1;
                        if misplaced > MAX_MISPLACED {
                            return Err(WalletError::Unverified(
                                "the validators' account streams keep placing payments where their proofs do not".into(),
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
        }
    }

    /// Verifies one event of an account stream. Nothing the validator says
    /// moves the cursor: only a payment to `me`, checked with its finality
    /// proof, does, to the height and index the proof shows. A payment
    /// already reported (by tx id, or at or before the cursor) is not
    /// reported again.
    async fn take_payment(
        &self,
        me: &chatpay_proto::PublicKey,
        c: Committed,
        after: &mut Option<Cursor>,
        reported: &mut std::collections::VecDeque<TxId>,
    ) -> Result<Taken, WalletError> {
        let transfer = c.tx.transfer();
        let amount: u64 = transfer
            .outputs()
            .iter()
            .filter(|o| o.recipient == *me)
            .map(|o| o.amount)
            .sum();
        let id = c.tx.tx_id();
        if amount == 0 || transfer.sender() == me || reported.contains(&id) {
            return Ok(Taken::Nothing);
        }
        let (record, _) = self.wait_verified(&id).await?;
        let cursor = Cursor {
            height: record.height,
            index: record.index,
        };
        if (c.height, c.index) != (cursor.height, cursor.index) {
            return Ok(Taken::Misplaced);
        }
        if after.is_some_and(|a| cursor <= a) {
            return Ok(Taken::Nothing);
        }
        *after = Some(cursor);
        if reported.len() == REPORTED_MEMORY {
            reported.pop_front();
        }
        reported.push_back(id);
        if record.receipt != ReceiptCode::Success {
            return Ok(Taken::Nothing);
        }
        Ok(Taken::Payment(Box::new(IncomingPayment {
            tx_id: id,
            from: self.chain.address(transfer.sender()),
            amount,
            memo: String::from_utf8_lossy(transfer.memo()).into_owned(),
            cursor,
        })))
    }

    async fn wait_verified(&self, id: &TxId) -> Result<(Committed, FinalityProof), WalletError> {
        let started = tokio::time::Instant::now();
        loop {
            match self.verified(id).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(e) if started.elapsed() > self.finality_timeout => return Err(e),
                Err(_) => {}
            }
            if started.elapsed() > self.finality_timeout {
                return Err(WalletError::Timeout {
                    tx_id: id.to_string(),
                    seconds: self.finality_timeout.as_secs(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Streams that misplaced a payment before `incoming` gives up.
const MAX_MISPLACED: u32 = 10;

/// Tx ids of the latest incoming payments reported, kept to report none
/// twice within one stream.
const REPORTED_MEMORY: usize = 4_096;

/// What one stream event gave.
enum Taken {
    /// A verified payment to report.
    Payment(Box<IncomingPayment>),
    /// Nothing to report.
    Nothing,
    /// The stream placed a payment elsewhere than its proof does.
    Misplaced,
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
